"""Structured logs: one JSON object per line, with call_id and source when known.

A webhook URL's token is the only credential of unsigned platforms: no log line carries one, only
its `token_ref` (a short hash that cannot be turned back), wherever the URL appears.
"""

import hashlib
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

REF_PREFIX = "ref-"
# The token segment of a webhook path or URL, unless it is a ref already.
_WEBHOOK_TOKEN = re.compile(r"(/webhooks/)(?!" + REF_PREFIX + r")([^/?#\s\"'\\]+)")


def token_ref(secret: str) -> str:
    """How a token, key or secret may appear in a log: 12 hex digits of its SHA-256."""
    digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
    return REF_PREFIX + digest[:12]


def redact_path(text: str) -> str:
    """`text` (a path, URL, message or traceback) with each webhook token as its `token_ref`."""
    if "/webhooks/" not in text:
        return text
    return _WEBHOOK_TOKEN.sub(lambda found: found[1] + token_ref(found[2]), text)


class Redacting(logging.Filter):
    """For loggers that are not ours (uvicorn's access and error logs put the path in args)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_path(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_path(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # The whole line: exception messages and tracebacks can embed a URL too.
        return redact_path(json.dumps(line, default=str))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("callwatch")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("uvicorn.access", "uvicorn.error"):
        server_log = logging.getLogger(name)
        if not any(isinstance(known, Redacting) for known in server_log.filters):
            server_log.addFilter(Redacting())
