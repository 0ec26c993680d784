"""What was sent (the sender's account) against what the database holds, after the run settles.

- every webhook was answered 202 in the end (none given up, none refused);
- 202 replies = inbox rows: every event id a 202 named is an inbox row, and an inbox row no
  202 named belongs to a webhook whose earlier attempt went unanswered (stored, reply lost);
- inbox rows = applied events (processed and joined to a call); one that cannot be is
  counted apart with its reason;
- calls sent = call records, each assembled or failed with a reason; none missing, none twice.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tests.faults.sender import DEADLINE_S, Played, Webhook

UNFINISHED = ("pending", "fetching", "awaiting_recording")


@dataclass
class Ledger:
    calls_sent: int = 0
    webhooks_sent: int = 0
    attempts: int = 0
    answered_202: int = 0
    given_up: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # a final 4xx
    slow: list[str] = field(default_factory=list)  # replies (or none) slower than DEADLINE_S
    # A 5xx other than a 503 with Retry-After: what the receiver answers when it cannot store.
    server_errors: list[str] = field(default_factory=list)
    accepted_ids: int = 0
    inbox_rows: int = 0
    applied: int = 0
    not_applied: list[str] = field(default_factory=list)  # (id, reason)
    named_but_absent: list[str] = field(default_factory=list)  # a 202 named it, no row
    unexplained_rows: list[str] = field(default_factory=list)  # a row no 202 accounts for
    call_rows: int = 0
    assembled: int = 0
    failed_with_reason: list[str] = field(default_factory=list)
    failed_without_reason: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    missing_calls: list[str] = field(default_factory=list)  # sent, no record
    duplicated: list[str] = field(default_factory=list)  # a record sent calls do not account for

    def figures(self) -> dict[str, Any]:
        return {
            name: len(value) if isinstance(value, list) else value
            for name, value in vars(self).items()
        }

    def problems(self) -> dict[str, list[str]]:
        return {
            name: value[:20]
            for name, value in vars(self).items()
            if isinstance(value, list) and value
        }


def wait_settled(url: str, timeout_s: float) -> float:
    """Seconds until no inbox row is unprocessed and no call unfinished (or the timeout)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            with psycopg.connect(url, autocommit=True) as connection:
                waiting = connection.execute(
                    "SELECT (SELECT count(*) FROM inbox WHERE processed_at IS NULL)"
                    " + (SELECT count(*) FROM calls WHERE assembly_state = ANY(%s))",
                    (list(UNFINISHED),),
                ).fetchone()
        except psycopg.OperationalError:
            waiting = None
        if waiting is not None and waiting[0] == 0:
            return time.monotonic() - began
        time.sleep(0.5)
    return time.monotonic() - began


def account(url: str, played: list[Played], platform_of: dict[str, str]) -> Ledger:
    """The ledger of a run: `platform_of` maps source ids to the platform names played."""
    # A call the platform sends nothing about (Burki's unanswered ones) has nothing to record.
    played = [call for call in played if call.webhooks]
    ledger = Ledger(calls_sent=len(played))
    webhooks = [webhook for call in played for webhook in call.webhooks]
    by_body: dict[str, list[Webhook]] = {}
    named: set[str] = set()
    for webhook in webhooks:
        ledger.webhooks_sent += 1
        ledger.attempts += len(webhook.attempts)
        by_body.setdefault(webhook.content.decode(), []).append(webhook)
        named.update(webhook.events)
        status = webhook.final_status
        if status == 202:
            ledger.answered_202 += 1
        elif status is None or status >= 500 or status == 429:
            ledger.given_up.append(_show(webhook))
        else:
            ledger.refused.append(_show(webhook))
        for attempt in webhook.attempts:
            status = attempt.status or 0
            if status >= 500 and (status != 503 or not attempt.retry_after):
                ledger.server_errors.append(
                    f"{status} retry-after={attempt.retry_after} {attempt.error[:200]} "
                    f"{webhook.platform} {webhook.call_id}"
                )
            if attempt.latency_s > DEADLINE_S:
                ledger.slow.append(
                    f"{attempt.latency_s:.2f} s {attempt.status or attempt.error} "
                    f"{webhook.platform} {webhook.call_id}"
                )
    ledger.accepted_ids = len(named)

    with psycopg.connect(url, autocommit=True) as connection:
        inbox = connection.execute(
            "SELECT id, raw_body, processed_at IS NOT NULL, call_id, last_error FROM inbox"
        ).fetchall()
        calls = connection.execute(
            "SELECT source_id, provider_call_id, assembly_state, assembly_last_error FROM calls"
        ).fetchall()

    ledger.inbox_rows = len(inbox)
    ids = {row[0] for row in inbox}
    ledger.named_but_absent = sorted(named - ids)
    for event_id, raw_body, processed, call_id, last_error in inbox:
        if processed and call_id is not None:
            ledger.applied += 1
        else:
            ledger.not_applied.append(f"{event_id}: processed={processed} reason={last_error}")
        if event_id in named:
            continue
        senders = by_body.get(raw_body, [])
        if not any(webhook.lost_reply and webhook.final_status == 202 for webhook in senders):
            ledger.unexplained_rows.append(f"{event_id}: {raw_body[:120]}")

    owners = [
        _owner(played, platform_of.get(source_id, "?"), pcid) for source_id, pcid, _, _ in calls
    ]
    records = Counter(owners)
    ledger.call_rows = len(calls)
    ledger.missing_calls = [
        f"{call.platform} {call.call_id}" for index, call in enumerate(played) if not records[index]
    ]
    ledger.duplicated = [
        f"{played[index].platform} {played[index].call_id}: {count} records"
        for index, count in records.items()
        if index is not None and count > 1
    ] + [
        f"{platform_of.get(s, '?')} {pcid}: no call sent"
        for (s, pcid, _, _), index in zip(calls, owners, strict=True)
        if index is None
    ]
    for source_id, pcid, state, error in calls:
        name = f"{platform_of.get(source_id, '?')} {pcid}"
        if state == "assembled":
            ledger.assembled += 1
        elif state in UNFINISHED:
            ledger.unfinished.append(f"{name}: {state}")
        elif error:
            ledger.failed_with_reason.append(f"{name}: {state}: {error[:200]}")
        else:
            ledger.failed_without_reason.append(f"{name}: {state}")
    return ledger


def _owner(played: list[Played], platform: str, provider_call_id: str) -> int | None:
    """The call sent that a record belongs to: the platform's id for it, or an id its
    webhooks carry (Telnyx's call session, a platform's own task id)."""
    quoted = f'"{provider_call_id}"'.encode()
    for index, call in enumerate(played):
        if call.platform != platform:
            continue
        if provider_call_id in call.ids:
            return index
        if any(
            quoted in webhook.content or provider_call_id.encode() in webhook.content
            for webhook in call.webhooks
        ):
            return index
    return None


def _show(webhook: Webhook) -> str:
    last = webhook.attempts[-1] if webhook.attempts else None
    outcome = "no attempt" if last is None else f"{last.status or last.error} {last.error[:200]}"
    return f"{webhook.platform} {webhook.call_id}: {len(webhook.attempts)} attempts, {outcome}"
