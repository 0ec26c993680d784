"""The query API for people in a terminal: a small HTTP client and tables that fit the terminal."""

import io
import os
import shutil
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.table import Table

from callwatch.model.records import CallRecord, Cost, Stats
from callwatch.pipeline.quarantine import QuarantinePage
from callwatch.query.queries import CallPage
from callwatch.query.stats import Aggregate, StatsResult

TIMEOUT_S = 30.0
Params = tuple[tuple[str, str], ...]


class ApiError(Exception):
    """Why a request failed, in one line."""


# Starlette's TestClient is an httpx.Client too: tests pass one in.
Http = httpx.Client


@dataclass(frozen=True)
class Api:
    url: str
    key: str
    http: Http | None = None

    def calls(self, params: Params) -> dict[str, Any]:
        return self.json("GET", "/api/calls", params)

    def call(self, call_id: str) -> dict[str, Any]:
        return self.json("GET", f"/api/calls/{quote(call_id, safe='')}")

    def stats(self, params: Params) -> dict[str, Any]:
        return self.json("GET", "/api/stats", params)

    def quarantine(self, params: Params) -> dict[str, Any]:
        return self.json("GET", "/api/quarantine", params)

    def json(self, method: str, path: str, params: Params = (), body: Any = None) -> dict[str, Any]:
        """The JSON object the API answers with; {} for an empty answer (204)."""
        with self._client() as http:
            response = self._call(http.request, method, path, params, body)
            return self._checked(response, empty_ok=method != "GET")

    def source(self, method: str, source_id: str, action: str = "", body: Any = None) -> Any:
        """`GET|PATCH|DELETE /api/sources/{id}`, or `POST /api/sources/{id}/{action}`."""
        path = f"/api/sources/{quote(source_id, safe='')}" + (f"/{action}" if action else "")
        return self.json(method, path, (), body)

    def download(self, path: str, params: Params, out: IO[bytes]) -> int:
        """Stream the answer into `out` as it arrives; the bytes written."""
        written = 0
        with self._client() as http, self._call(http.stream, "GET", path, params) as response:
            if response.status_code >= 400:
                response.read()
                self._checked(response, empty_ok=False)
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
        return written

    @contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        if self.http is not None:
            yield self.http
        else:
            with httpx.Client(timeout=TIMEOUT_S) as http:
                yield http

    def _call(
        self, send: Callable[..., Any], method: str, path: str, params: Params, body: Any = None
    ) -> Any:
        base = self.url.rstrip("/")
        headers = {"authorization": f"Bearer {self.key}", "accept": "application/json"}
        extra = {} if body is None else {"json": body}
        try:
            return send(method, base + path, params=params, headers=headers, **extra)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise ApiError(f"cannot reach {base}: is `callwatch up` running?") from None
        except httpx.TransportError as exc:
            raise ApiError(f"{method} {base + path}: {type(exc).__name__}: {exc}") from None

    def _checked(self, response: httpx.Response, *, empty_ok: bool) -> dict[str, Any]:
        if empty_ok and response.status_code < 400 and not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise ApiError(problem_line(response.status_code, body, response.reason_phrase))
        if not isinstance(body, dict):
            raise ApiError(f"{self.url.rstrip('/')} did not answer with JSON: is it callwatch?")
        return body


def problem_line(status: int, body: Any, reason: str) -> str:
    """`422 limit: Input should be …` from a problem+json body."""
    if not isinstance(body, dict):
        return f"{status} {reason}"
    field, detail = body.get("field"), str(body.get("detail") or "")
    if field and detail.startswith(f"{field}: "):
        detail = detail[len(field) + 2 :]
    label = field or body.get("title") or reason
    return f"{status} {label}: {detail}" if detail else f"{status} {label}"


LIST_HEADER = (
    "STARTED (UTC)",
    "ID",
    "AGENT",
    "STATUS",
    "END REASON",
    "DURATION",
    "COST",
    "RECORDING",
)


def call_table(body: dict[str, Any]) -> list[str]:
    page = CallPage.model_validate(body)
    rows = [_call_row(CallRecord.model_validate(item)) for item in page.items]
    footer = f"{len(rows)} of {page.total} calls" + (f" (skipped {page.skip})" if page.skip else "")
    return [*table(LIST_HEADER, rows, right={5, 6}), footer] if rows else [footer]


def _call_row(record: CallRecord) -> list[str]:
    return [
        _time(record.created_at or record.initiated_at, "%Y-%m-%d %H:%M"),
        record.id,
        record.agent_id or "-",
        record.status or "-",
        record.end_reason or "-",
        _duration(record.duration_s),
        _cost(record.cost),
        record.recording.status,
    ]


QUARANTINE_HEADER = ("QUARANTINED (UTC)", "EVENT", "SOURCE", "PROVIDER CALL ID", "CALL", "REASON")


def quarantine_table(body: dict[str, Any]) -> list[str]:
    page = QuarantinePage.model_validate(body)
    rows = [
        [
            _time(item.quarantined_at),
            item.id,
            item.source,
            item.provider_call_id or "-",
            item.call_id or "-",
            item.reason,
        ]
        for item in page.items
    ]
    footer = f"{len(rows)} of {page.total} quarantined events" + (
        f" (skipped {page.skip})" if page.skip else ""
    )
    return [*table(QUARANTINE_HEADER, rows), footer] if rows else [footer]


def call_view(body: dict[str, Any]) -> list[str]:
    record = CallRecord.model_validate(body)
    turn, done = record.latency.turn or Stats(), record.assembly
    fields = {
        "call": f"{record.id}  ({record.provider} {record.provider_call_id}, "
        f"source {record.source})",
        "agent": _words(record.agent_id, record.agent_name and f"({record.agent_name})"),
        "campaign": record.campaign_id or "-",
        "direction": _words(record.direction, record.channel),
        "numbers": f"{record.from_number or '?'} -> {record.to_number or '?'}",
        "status": _words(record.status, record.end_reason and f"({record.end_reason})"),
        "started": _utc(record.created_at or record.initiated_at),
        "answered": _utc(record.answered_at),
        "ended": _utc(record.ended_at),
        "duration": _duration(record.duration_s),
        "latency": f"turn p50 {_ms(turn.p50)}, p95 {_ms(turn.p95)}; "
        f"first word {_ms(record.latency.time_to_first_word_ms)}",
        "cost": _cost_parts(record.cost),
        "recording": _words(record.recording.status, record.recording.url),
        "summary": (record.analysis and record.analysis.summary) or "-",
        "assembly": ", ".join(
            [done.state, f"{done.attempts} attempt{'' if done.attempts == 1 else 's'}"]
            + ([f"at {_utc(done.assembled_at)}"] if done.assembled_at else [])
            + ([f"last error: {done.last_error}"] if done.last_error else [])
        ),
    }
    timeline = [[_time(entry.at), entry.status or "-", entry.event] for entry in record.timeline]
    return [
        *(f"{name:<10} {value}" for name, value in fields.items()),
        "timeline (UTC)",
        *(f"  {line}" for line in _columns(timeline, indent=2)),
    ]


def stats_table(body: dict[str, Any]) -> list[str]:
    result = StatsResult.model_validate(body)
    currencies = [totals.currency for totals in result.overall.cost]
    header = [
        (result.group_by or "group").upper(),
        "CALLS",
        "ANSWER RATE",
        "COMPLETED",
        "FAILED",
        "DURATION MEAN",
        "DURATION P95",
        "TURN P50 MEAN",
        *(f"COST {currency or '(none)'}" for currency in currencies),
    ]
    rows = [
        _stats_row("all", result.overall, currencies),
        *(_stats_row(group.key or "(none)", group, currencies) for group in result.groups),
    ]
    return table(header, rows, right=range(1, len(header)))


def _stats_row(label: str, aggregate: Aggregate, currencies: list[str | None]) -> list[str]:
    totals = {entry.currency: entry.total for entry in aggregate.cost}
    rate = aggregate.answer_rate
    return [
        label,
        str(aggregate.calls),
        "-" if rate is None else f"{rate:.1%}",
        str(aggregate.by_status.get("completed", 0)),
        str(aggregate.by_status.get("failed", 0)),
        _duration(aggregate.duration_s.mean),
        _duration(aggregate.duration_s.p95),
        _ms(aggregate.turn_latency_p50_ms.mean),
        *(_amount(totals[c]) if c in totals else "-" for c in currencies),
    ]


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> list[str]:
    return _columns([header, *rows], right, header=True)


def width() -> int | None:
    """The terminal's columns; $COLUMNS when set; else None: piped output is never cut."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


UNBOUNDED = 100_000  # rich needs a width; a table without a terminal takes what it needs


def _columns(
    rows: Sequence[Sequence[str]],
    right: Collection[int] = (),
    *,
    header: bool = False,
    indent: int = 0,
) -> list[str]:
    """Rows as a rich table without borders; cells fold (never cut) to fit the width."""
    if not rows:
        return []
    grid = Table(box=None, show_header=header, pad_edge=False, padding=(0, 1), header_style="")
    for index in range(len(rows[0])):
        grid.add_column(
            rows[0][index] if header else "",
            justify="right" if index in right else "left",
            overflow="fold",
        )
    for row in rows[1:] if header else rows:
        grid.add_row(*row)
    available = width()
    console = Console(
        file=io.StringIO(),
        width=UNBOUNDED if available is None else max(20, available - indent),
        no_color=True,
        highlight=False,
        emoji=False,
        markup=False,
    )
    with console.capture() as captured:
        console.print(grid)
    return [line.rstrip() for line in captured.get().splitlines()]


def _words(*parts: str | None) -> str:
    return " ".join(part for part in parts if part) or "-"


def _time(value: datetime | None, layout: str = "%Y-%m-%d %H:%M:%S") -> str:
    if value is None:
        return "-"
    return (value.astimezone(UTC) if value.tzinfo else value).strftime(layout)


def _utc(value: datetime | None) -> str:
    return "-" if value is None else f"{_time(value)} UTC"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, rest = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _amount(value: float) -> str:
    return f"{value:.4f}"


def _cost(cost: Cost | None) -> str:
    if cost is None or cost.total is None:
        return "-"
    return _words(_amount(cost.total), cost.currency)


def _cost_parts(cost: Cost | None) -> str:
    if cost is None:
        return "-"
    parts = ("llm", "stt", "tts", "telephony", "platform")
    known = ", ".join(
        f"{part} {_amount(value)}" for part in parts if (value := getattr(cost, part)) is not None
    )
    return _words(_cost(cost), known and f"({known})")
