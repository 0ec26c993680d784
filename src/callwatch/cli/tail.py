"""`callwatch tail calls|alerts`: follow an ops stream in the terminal, one line per entry."""

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from redis import Redis, RedisError

from callwatch.downstream.streams import ALERTS_STREAM, CALLS_STREAM
from callwatch.errors import CallwatchError

STREAMS = {"calls": CALLS_STREAM, "alerts": ALERTS_STREAM}
BLOCK_MS = 1000  # how long one XREAD waits; the loop goes on until stopped
BATCH = 100
# Alert payload fields worth a place on the line, in this order, when an entry has them.
ALERT_FIELDS = ("rule_name", "condition", "value", "threshold", "window_start", "window_end")


class TailError(CallwatchError):
    """Why the stream cannot be followed, in one line."""


@dataclass(frozen=True)
class Entry:
    id: str
    type: str
    org_id: str
    call_id: str | None
    payload: dict[str, Any]

    @classmethod
    def parse(cls, entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> "Entry":
        text = {_text(key): _text(value) for key, value in fields.items()}
        try:
            payload = json.loads(text.get("payload") or "{}")
        except ValueError:
            payload = {"payload": text.get("payload")}
        return cls(
            id=_text(entry_id),
            type=text.get("type", "?"),
            org_id=text.get("org_id", "?"),
            call_id=text.get("call_id") or None,
            payload=payload if isinstance(payload, dict) else {"payload": payload},
        )

    @property
    def at(self) -> datetime:
        """When Redis added it: the milliseconds of its stream id."""
        return datetime.fromtimestamp(int(self.id.split("-", 1)[0]) / 1000, UTC)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def line(entry: Entry) -> str:
    """The entry for people: time (UTC), type, org, call, then what matters for its kind."""
    head = [entry.at.strftime("%Y-%m-%d %H:%M:%S"), entry.type, entry.org_id, entry.call_id or "-"]
    return "  ".join([*head, _details(entry)]).rstrip()


def _details(entry: Entry) -> str:
    payload = entry.payload
    if entry.type == "call.assembled":
        return "  ".join(
            [
                f"agent {payload.get('agent_id') or '-'}",
                payload.get("status") or "-",
                payload.get("end_reason") or "-",
                _seconds(payload.get("duration_s")),
                _money(payload.get("cost_total"), payload.get("cost_currency")),
                f"recording {payload.get('recording') or '-'}",
                f"turn p95 {_ms(payload.get('turn_p95_ms'))}",
            ]
        )
    shown = [name for name in ALERT_FIELDS if payload.get(name) is not None]
    shown = shown or [name for name, value in payload.items() if _scalar(value)][:6]
    return "  ".join(f"{name} {payload[name]}" for name in shown)


def _seconds(value: Any) -> str:
    return f"{value:g} s" if isinstance(value, int | float) else "-"


def _money(total: Any, currency: Any) -> str:
    if not isinstance(total, int | float):
        return "-"
    return f"{total:.4f} {currency}" if currency else f"{total:.4f}"


def _ms(value: Any) -> str:
    return f"{value:.0f} ms" if isinstance(value, int | float) else "-"


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def json_line(entry: Entry) -> str:
    return json.dumps(
        {
            "id": entry.id,
            "type": entry.type,
            "org_id": entry.org_id,
            "call_id": entry.call_id,
            "payload": entry.payload,
        },
        separators=(",", ":"),
    )


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    return url if not password else url.replace(f":{password}@", ":***@", 1)


def connect(url: str) -> Redis:
    """A client that answered PING, or a TailError saying what to do."""
    try:
        client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=BLOCK_MS / 1000 + 10)
    except ValueError as exc:
        raise TailError(f"bad Redis URL {shown_url(url)!r}: {exc}; pass --redis-url") from exc
    try:
        client.ping()
    except RedisError as exc:
        client.close()
        raise TailError(
            f"cannot reach Redis at {shown_url(url)} ({exc}); is `callwatch up` (or your "
            "deployment's Redis) running? pass --redis-url or set CALLWATCH_REDIS_URL"
        ) from exc
    return client


def start_id(redis: Redis, stream: str, from_start: bool) -> str:
    """Where to read from: the beginning, or just after the newest entry there is now."""
    if from_start:
        return "0-0"
    newest: Any = redis.xrevrange(stream, count=1)
    return _text(newest[0][0]) if newest else "0-0"


def follow(
    redis: Redis,
    stream: str,
    after: str,
    emit: Callable[[Entry], None],
    *,
    count: int | None = None,
) -> int:
    """Emit each entry after `after` as it arrives; stops after `count` entries, if given.

    Returns how many were emitted; a lost connection is a TailError."""
    emitted = 0
    while count is None or emitted < count:
        want = BATCH if count is None else min(BATCH, count - emitted)
        try:
            reply: Any = redis.xread({stream: after}, count=want, block=BLOCK_MS)
        except RedisError as exc:
            raise TailError(f"lost Redis while following {stream} ({exc})") from exc
        for _, entries in reply.items() if isinstance(reply, dict) else reply or []:
            for entry_id, fields in entries:
                after = _text(entry_id)
                emit(Entry.parse(entry_id, fields))
                emitted += 1
    return emitted


def run(url: str, name: str, *, from_start: bool, as_json: bool, count: int | None) -> int:
    """Follow stream `name` (`calls` or `alerts`) until Ctrl-C or `count` entries; exit code."""
    stream = STREAMS[name]
    render = json_line if as_json else line
    redis = connect(url)
    try:
        try:
            after = start_id(redis, stream, from_start)
        except RedisError as exc:
            raise TailError(f"cannot read {stream} at {shown_url(url)} ({exc})") from exc
        print(
            f"following {stream} on {shown_url(url)}; Ctrl-C to stop", file=sys.stderr, flush=True
        )
        follow(redis, stream, after, lambda entry: print(render(entry), flush=True), count=count)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        redis.close()
    return 0
