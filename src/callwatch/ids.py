"""Prefixed, time-ordered random identifiers (`call_…`, `evt_…`) and secret tokens."""

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
    return f"{prefix}_{_base32hex(value)}"


_DIGITS = "0123456789abcdefghijklmnopqrstuv"
_PAIRS = [high + low for high in _DIGITS for low in _DIGITS]


def _base32hex(value: int) -> str:
    """The first 26 digits of RFC 4648 base32hex (lower case) of a 128-bit value, 10 bits at a
    time: `base64.b32hexencode` is pure Python and three times slower."""
    padded = value << 2
    return "".join([_PAIRS[(padded >> shift) & 1023] for shift in range(120, -10, -10)])


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
