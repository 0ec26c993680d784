"""HTTP byte ranges (RFC 9110 §14): the one range an audio player asks for when it seeks."""

import re

_ONE_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


class Unsatisfiable(Exception):
    """A range this file cannot answer (416)."""


def requested(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte (inclusive) of the range asked for; None: the whole file (no
    Range, or several ranges, which a server may answer whole). Raises Unsatisfiable."""
    if header is None:
        return None
    text = header.strip()
    if text.startswith("bytes=") and "," in text:
        return None
    found = _ONE_RANGE.fullmatch(text)
    if found is None or found.groups() == ("", ""):
        raise Unsatisfiable("Range: one `bytes=first-last`, `bytes=first-` or `bytes=-suffix`")
    first, last = found.groups()
    if not first:  # the last `last` bytes
        if int(last) == 0:
            raise Unsatisfiable("Range: a suffix of zero bytes")
        return max(0, size - int(last)), size - 1
    start = int(first)
    if last and int(last) < start:
        raise Unsatisfiable("Range: its last byte is before its first")
    if start >= size:
        raise Unsatisfiable(f"Range: starts at or past the end of {size} bytes")
    return start, min(int(last), size - 1) if last else size - 1
