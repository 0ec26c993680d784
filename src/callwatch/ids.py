"""Prefixed, time-ordered random identifiers (`call_…`, `evt_…`) and secret tokens."""

import base64
import random
import secrets
import time


def new_id(prefix: str, millis: int | None = None, bits: int | None = None) -> str:
    """48 bits of milliseconds (now, unless given) then 80 random bits, in base32hex: sorts by
    creation time.

    Ids are not secrets, so the fast generator will do (the random module reseeds after fork).
    """
    millis = time.time_ns() // 1_000_000 if millis is None else millis
    value = millis << 80 | (random.getrandbits(80) if bits is None else bits)
    return f"{prefix}_{base64.b32hexencode(value.to_bytes(16)).decode()[:26].lower()}"


def new_token(prefix: str = "", nbytes: int = 24) -> str:
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"
