"""Alert rules and stored alerts of an org; data functions take a Session and never commit."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from callwatch import ids
from callwatch.alerts import expressions, windows
from callwatch.alerts.windows import WindowSpec
from callwatch.errors import InvalidInput, NotFound
from callwatch.query.filters import Paging
from callwatch.tables import Alert, AlertRule, Source
from callwatch.validation import invalid

Kind = Literal["call", "window"]
AlertState = Literal["fired", "open", "resolved"]  # fired: a call alert; open → resolved: window
EXPRESSION_HELP = (
    "a condition on the call record, e.g. `latency.turn.p95 > 1500 and status in [completed]`"
)


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Kind = Field(description="call: tested on each assembled call; window: on a schedule")
    expression: str | None = Field(
        None, min_length=1, max_length=2000, description=f"call rules: {EXPRESSION_HELP}"
    )
    window: WindowSpec | None = Field(None, description="window rules: what to measure")
    agent_id: str | None = Field(None, min_length=1, max_length=200, description="only this agent")
    source: str | None = Field(
        None, min_length=1, max_length=200, description="only this source (name or id)"
    )
    enabled: bool = True


class RulePatch(BaseModel):
    """Any of a rule's fields; `null` clears `agent_id` and `source`. The kind cannot change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    kind: Kind | None = None
    expression: str | None = Field(None, min_length=1, max_length=2000)
    window: WindowSpec | None = None
    agent_id: str | None = Field(None, min_length=1, max_length=200)
    source: str | None = Field(None, min_length=1, max_length=200)
    enabled: bool | None = None


class RuleView(BaseModel):
    id: str
    name: str
    kind: Kind
    expression: str | None
    window: WindowSpec | None
    agent_id: str | None
    source: str | None = Field(description="the source's name, when the rule is limited to one")
    source_id: str | None
    enabled: bool
    condition: str = Field(description="the condition in words")
    created_at: datetime
    updated_at: datetime


class RuleList(BaseModel):
    items: list[RuleView]


class AlertQuery(Paging):
    rule_id: str | None = None
    state: AlertState | None = None
    call_id: str | None = None


class AlertView(BaseModel):
    id: str
    rule_id: str
    rule_name: str
    kind: Kind
    state: AlertState
    call_id: str | None = Field(description="call alerts: the call that fired it")
    window_start: datetime | None = Field(description="window alerts: the window that fired it")
    window_end: datetime | None
    value: float | None = Field(
        description="the measured value (call alerts: when the rule has one numeric comparison)"
    )
    threshold: float | None
    condition: str
    triggered_at: datetime
    resolved_at: datetime | None


class AlertPage(BaseModel):
    items: list[AlertView]
    total: int
    skip: int
    limit: int
    page: int | None = None


def create_rule(session: Session, org_id: str, data: RuleIn, now: datetime) -> RuleView:
    rule = AlertRule(id=ids.new_id("rule"), org_id=org_id, created_at=now)
    _apply(session, rule, data, now)
    session.add(rule)
    session.flush()
    return view(session, rule)


def update_rule(
    session: Session, org_id: str, rule_id: str, patch: RulePatch, now: datetime
) -> RuleView:
    rule = get_rule(session, org_id, rule_id)
    changes = patch.model_dump(exclude_unset=True)
    if "kind" in changes and changes["kind"] != rule.kind:
        raise InvalidInput("kind: a rule's kind cannot change; create a new rule", field="kind")
    current = view(session, rule).model_dump(include=set(RuleIn.model_fields))
    current["source"] = rule.source_id
    try:
        merged = RuleIn.model_validate(current | changes)
    except ValidationError as exc:
        raise invalid(exc) from None
    _apply(session, rule, merged, now)
    session.flush()
    return view(session, rule)


def delete_rule(session: Session, org_id: str, rule_id: str) -> None:
    """The rule and its alerts."""
    session.delete(get_rule(session, org_id, rule_id))


def get_rule(session: Session, org_id: str, rule_id: str) -> AlertRule:
    rule = session.get(AlertRule, rule_id)
    if rule is None or rule.org_id != org_id:
        raise NotFound(f"no alert rule {rule_id!r}")
    return rule


def list_rules(session: Session, org_id: str) -> list[RuleView]:
    found = session.scalars(
        select(AlertRule).where(AlertRule.org_id == org_id).order_by(AlertRule.id)
    )
    return [view(session, rule) for rule in found]


def view(session: Session, rule: AlertRule) -> RuleView:
    source = None if rule.source_id is None else session.get(Source, rule.source_id)
    return RuleView(
        id=rule.id,
        name=rule.name,
        kind=rule.kind,
        expression=rule.expression,
        window=None if rule.window is None else WindowSpec.model_validate(rule.window),
        agent_id=rule.agent_id,
        source=None if source is None else source.name,
        source_id=rule.source_id,
        enabled=rule.enabled,
        condition=condition(rule),
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def condition(rule: AlertRule) -> str:
    if rule.window is not None:
        return windows.describe(WindowSpec.model_validate(rule.window))
    return rule.expression or ""


def _apply(session: Session, rule: AlertRule, data: RuleIn, now: datetime) -> None:
    """Check `data` for a rule of its kind and write it onto `rule`."""
    if data.kind == "call":
        if data.window is not None:
            raise InvalidInput("window: only window rules have a window", field="window")
        if data.expression is None:
            raise InvalidInput(f"expression: required: {EXPRESSION_HELP}", field="expression")
        try:
            expressions.parse(data.expression)
        except expressions.ExpressionError as exc:
            raise InvalidInput(f"expression: {exc}", field="expression") from None
    else:
        if data.expression is not None:
            raise InvalidInput("expression: only call rules have an expression", field="expression")
        if data.window is None:
            raise InvalidInput(
                "window: required, e.g. "
                '{"metric": "failure_rate", "minutes": 15, "op": ">", "threshold": 0.2}',
                field="window",
            )
    rule.name, rule.kind, rule.enabled = data.name, data.kind, data.enabled
    rule.expression = data.expression
    rule.window = None if data.window is None else data.window.model_dump(mode="json")
    rule.agent_id = data.agent_id
    rule.source_id = None if data.source is None else _source_id(session, rule.org_id, data.source)
    rule.updated_at = now


def _source_id(session: Session, org_id: str, name_or_id: str) -> str:
    found = session.scalar(
        select(Source.id).where(
            Source.org_id == org_id, or_(Source.id == name_or_id, Source.name == name_or_id)
        )
    )
    if found is None:
        raise InvalidInput(f"source: no source {name_or_id!r} in this org", field="source")
    return found


def alert_view(alert: Alert, rule: AlertRule) -> AlertView:
    return AlertView(
        id=alert.id,
        rule_id=alert.rule_id,
        rule_name=rule.name,
        kind=rule.kind,
        state=alert.state,
        call_id=alert.call_id,
        window_start=alert.window_start,
        window_end=alert.window_end,
        value=alert.value,
        threshold=alert.threshold,
        condition=condition(rule),
        triggered_at=alert.triggered_at,
        resolved_at=alert.resolved_at,
    )


def list_alerts(session: Session, org_id: str, query: AlertQuery) -> AlertPage:
    """Newest first."""
    where = [Alert.org_id == org_id]
    for column, value in (
        (Alert.rule_id, query.rule_id),
        (Alert.state, query.state),
        (Alert.call_id, query.call_id),
    ):
        if value is not None:
            where.append(column == value)
    total = session.scalar(select(func.count()).select_from(Alert).where(*where)) or 0
    rows = session.execute(
        select(Alert, AlertRule)
        .join(AlertRule, Alert.rule_id == AlertRule.id)
        .where(*where)
        .order_by(Alert.triggered_at.desc(), Alert.id.desc())
        .offset(query.offset)
        .limit(query.limit)
    )
    return AlertPage(
        items=[alert_view(alert, rule) for alert, rule in rows],
        total=total,
        skip=query.offset,
        limit=query.limit,
        page=query.page,
    )


def get_alert(session: Session, org_id: str, alert_id: str) -> AlertView:
    found = session.execute(
        select(Alert, AlertRule)
        .join(AlertRule, Alert.rule_id == AlertRule.id)
        .where(Alert.id == alert_id, Alert.org_id == org_id)
    ).one_or_none()
    if found is None:
        raise NotFound(f"no alert {alert_id!r}")
    return alert_view(*found)


def payload(
    alert: Alert, rule: AlertRule, agent_id: str | None, source_id: str | None
) -> dict[str, Any]:
    """An alert event's data: the alert, plus the agent and source it concerns (for filters)."""
    return alert_view(alert, rule).model_dump(mode="json") | {
        "agent_id": agent_id,
        "source_id": source_id,
    }
