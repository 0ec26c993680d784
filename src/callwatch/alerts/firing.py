"""Alert rules firing: on each assembled call, and on windows of calls on a schedule."""

import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, case, func, or_, select, update
from sqlalchemy.orm import Session

from callwatch import ids
from callwatch.alerts import expressions, rules, windows
from callwatch.alerts.windows import WindowSpec
from callwatch.db import insert_ignore, memo
from callwatch.downstream import deliveries
from callwatch.downstream.effects import Effects, StreamEntry
from callwatch.downstream.streams import ALERTS_STREAM
from callwatch.model.call_metrics import percentile
from callwatch.model.records import CallRecord
from callwatch.tables import Alert, AlertRule, Call

OPEN = "open"  # the dedupe key of a window rule's open alert; its id once resolved
TRIGGERED, RESOLVED = "alert.triggered", "alert.resolved"
log = logging.getLogger("callwatch.alerts")


def _call_rules(session: Session, org_id: str) -> list[AlertRule]:
    """The org's enabled per-call rules, read once per transaction (a batch assembles many)."""

    def read() -> list[AlertRule]:
        query = (
            select(AlertRule)
            .where(AlertRule.org_id == org_id, AlertRule.kind == "call")
            .where(AlertRule.enabled.is_(True))
            .order_by(AlertRule.id)
        )
        return list(session.scalars(query))

    return memo(session, ("call rules", org_id), read)


def on_call(session: Session, call: Call, record: CallRecord, now: datetime) -> Effects:
    """The per-call rules of the call's org that this record fires, as effects."""
    effects = Effects()
    for rule in _call_rules(session, call.org_id):
        if rule.agent_id not in (None, call.agent_id):
            continue
        if rule.source_id not in (None, call.source_id):
            continue
        node = _expression(rule)
        if node is None or not expressions.matches(node, record):
            continue
        value, threshold = _figures(node, record)
        alert = Alert(
            id=ids.new_id("alert"),
            org_id=call.org_id,
            rule_id=rule.id,
            dedupe_key=call.id,  # one alert per rule and call, however often it is assembled
            call_id=call.id,
            window_start=None,
            window_end=None,
            value=value,
            threshold=threshold,
            state="fired",
            triggered_at=now,
            resolved_at=None,
        )
        if _insert(session, alert):
            log.info("alert fired", extra={"rule_id": rule.id, "call_id": call.id})
            effects.add(_announce(session, TRIGGERED, alert, rule, call.agent_id, call.source_id))
    return effects


def evaluate_windows(session: Session, now: datetime) -> Effects:
    """Every window rule evaluated over its last N minutes: alerts opened or resolved.

    An open alert stays open while too few calls are there to judge; a disabled rule's open
    alert resolves."""
    effects = Effects()
    open_alerts = {
        alert.rule_id: alert
        for alert in session.scalars(
            select(Alert)
            .join(AlertRule, Alert.rule_id == AlertRule.id)
            .where(AlertRule.kind == "window", Alert.dedupe_key == OPEN)
        )
    }
    for rule in session.scalars(
        select(AlertRule).where(AlertRule.kind == "window").order_by(AlertRule.id)
    ).all():
        current = open_alerts.get(rule.id)
        spec = _window(rule)
        if spec is None or not rule.enabled:
            if current is not None:
                effects.add(_resolve(session, current, rule, now))
            continue
        start = now - timedelta(minutes=spec.minutes)
        found = windows.measure(spec.metric, tally(session, rule, spec, start, now))
        verdict = windows.judge(spec, found)
        if verdict == "firing" and current is None:
            alert = Alert(
                id=ids.new_id("alert"),
                org_id=rule.org_id,
                rule_id=rule.id,
                dedupe_key=OPEN,
                call_id=None,
                window_start=start,
                window_end=now,
                value=found.value,
                threshold=spec.threshold,
                state="open",
                triggered_at=now,
                resolved_at=None,
            )
            if _insert(session, alert):
                log.info("alert opened", extra={"rule_id": rule.id, "value": found.value})
                effects.add(_announce(session, TRIGGERED, alert, rule, *_scope(rule)))
        elif verdict == "clear" and current is not None:
            effects.add(_resolve(session, current, rule, now))
    return effects


def tally(
    session: Session, rule: AlertRule, spec: WindowSpec, start: datetime, end: datetime
) -> windows.Tally:
    """The calls of the rule's org (and agent, source) assembled in (start, end]."""
    where: list[ColumnElement[bool]] = [
        Call.org_id == rule.org_id,
        Call.assembled_at > start,
        Call.assembled_at <= end,
    ]
    if rule.agent_id is not None:
        where.append(Call.agent_id == rule.agent_id)
    if rule.source_id is not None:
        where.append(Call.source_id == rule.source_id)
    failed = case((or_(Call.status == "failed", Call.end_reason == "error"), 1), else_=0)
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(failed), 0),
            func.count(Call.answered_at),
            func.count(Call.latency_turn_p95_ms),
            func.avg(Call.latency_turn_p95_ms),
            func.count(Call.cost_total),
            func.avg(Call.cost_total),
        ).where(*where)
    ).one()
    p95 = None
    if spec.metric == "latency_p95_ms" and row[3]:
        values = session.scalars(
            select(Call.latency_turn_p95_ms).where(*where, Call.latency_turn_p95_ms.is_not(None))
        )
        p95 = percentile(sorted(value for value in values if value is not None), 95)
    return windows.Tally(
        calls=int(row[0]),
        failed=int(row[1]),
        answered=int(row[2]),
        latency_count=int(row[3]),
        latency_mean=_float(row[4]),
        latency_p95=p95,
        cost_count=int(row[5]),
        cost_mean=_float(row[6]),
    )


def _resolve(session: Session, alert: Alert, rule: AlertRule, now: datetime) -> Effects:
    """Close an open alert (once, even if two evaluations race) and free the rule's key."""
    closed = session.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.dedupe_key == OPEN)
        .values(state="resolved", dedupe_key=alert.id, resolved_at=now)
        .returning(Alert.id)
        .execution_options(synchronize_session=False)
    )
    if closed.first() is None:
        return Effects()
    session.expire(alert)
    log.info("alert resolved", extra={"rule_id": rule.id, "alert_id": alert.id})
    return _announce(session, RESOLVED, alert, rule, *_scope(rule))


def _scope(rule: AlertRule) -> tuple[str | None, str | None]:
    """The agent and source a window rule's alerts concern (none: all of the org's)."""
    return rule.agent_id, rule.source_id


def _insert(session: Session, alert: Alert) -> bool:
    """Store the alert unless its rule already has one under the same key."""
    table = Alert.__table__
    row = {column.key: getattr(alert, column.key) for column in table.columns}
    statement = insert_ignore(session, table).returning(table.c.id)  # type: ignore[arg-type]
    return session.execute(statement, row).first() is not None


def _announce(
    session: Session,
    event_type: str,
    alert: Alert,
    rule: AlertRule,
    agent_id: str | None,
    source_id: str | None,
) -> Effects:
    data = rules.payload(alert, rule, agent_id, source_id)
    at = alert.resolved_at if event_type == RESOLVED else alert.triggered_at
    assert at is not None
    return Effects(
        deliveries.fan_out(session, alert.org_id, event_type, data, f"{event_type}:{alert.id}", at),
        [StreamEntry(ALERTS_STREAM, event_type, alert.org_id, alert.call_id, data)],
    )


def _expression(rule: AlertRule) -> expressions.Node | None:
    try:
        return expressions.parse(rule.expression or "")
    except expressions.ExpressionError as exc:  # checked when saved; a later version may differ
        log.warning("alert rule skipped: %s", exc, extra={"rule_id": rule.id})
        return None


def _window(rule: AlertRule) -> WindowSpec | None:
    try:
        return WindowSpec.model_validate(rule.window)
    except ValidationError as exc:
        log.warning("alert rule skipped: %s", exc, extra={"rule_id": rule.id})
        return None


def _figures(node: expressions.Node, record: CallRecord) -> tuple[float | None, float | None]:
    """The value and threshold of an expression with one numeric comparison; else none."""
    terms = expressions.numeric_terms(node)
    if len(terms) != 1:
        return None, None
    value: Any = expressions.resolve(record, terms[0].path)
    threshold = terms[0].value
    assert isinstance(threshold, float)
    return (None if value is None else float(value)), threshold


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
