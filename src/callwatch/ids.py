"""Prefixed, time-ordered random identifiers (`call_…`, `evt_…`) and secret tokens."""

import base64
import random
import secrets
import threading
import time


def new_id(prefix: str, millis: int | None = None, bits: int | None = None) -> str:
    """48 bits of milliseconds (now, unless given) then 80 random bits, in base32hex: sorts by
    creation time, within a process also inside one millisecond.

    Ids are not secrets, so the fast generator will do (the random module reseeds after fork).
    """
    if millis is None and bits is None:
        value = _next_value()
    else:
        millis = time.time_ns() // 1_000_000 if millis is None else millis
        value = millis << 80 | (random.getrandbits(80) if bits is None else bits)
    return f"{prefix}_{base64.b32hexencode(value.to_bytes(16)).decode()[:26].lower()}"


_last = 0
_lock = threading.Lock()


def _next_value() -> int:
    """Now's milliseconds and random bits, above the last value this process made: ids made
    within one millisecond still sort in the order they were made."""
    global _last
    fresh = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    with _lock:
        _last = max(fresh, _last + 1)
        return _last


def new_token(prefix: str = "", nbytes: int = 24) -> str:
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"
