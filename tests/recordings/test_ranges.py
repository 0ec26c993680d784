"""Byte ranges as an audio player asks for them (RFC 9110 §14)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callwatch.recordings.ranges import Unsatisfiable, requested


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),  # a suffix longer than the file: all of it
        ("bytes=990-5000", (990, 999)),  # a last byte past the end: up to the end
        (" bytes=0-0 ", (0, 0)),
        ("bytes=0-1,5-6", None),  # several ranges: answered whole, as a server may
    ],
)
def test_a_satisfiable_range(header: str | None, span: tuple[int, int] | None) -> None:
    assert requested(header, 1000) == span


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("bytes=1000-", "Range: starts at or past the end of 1000 bytes"),
        ("bytes=5-4", "Range: its last byte is before its first"),
        ("bytes=-0", "Range: a suffix of zero bytes"),
        ("bytes=-", "Range: one `bytes=first-last`, `bytes=first-` or `bytes=-suffix`"),
        ("items=0-1", "Range: one `bytes=first-last`, `bytes=first-` or `bytes=-suffix`"),
        ("bytes=a-b", "Range: one `bytes=first-last`, `bytes=first-` or `bytes=-suffix`"),
        (
            "bytes=" + "9" * 30 + "-",
            "Range: one `bytes=first-last`, `bytes=first-` or `bytes=-suffix`",
        ),
    ],
)
def test_an_unsatisfiable_range(header: str, why: str) -> None:
    with pytest.raises(Unsatisfiable) as raised:
        requested(header, 1000)
    assert str(raised.value) == why


@given(
    size=st.integers(1, 10**12),
    first=st.one_of(st.none(), st.integers(0, 10**13)),
    last=st.one_of(st.none(), st.integers(0, 10**13)),
)
def test_any_range_answered_lies_within_the_file(
    size: int, first: int | None, last: int | None
) -> None:
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    try:
        span = requested(header, size)
    except Unsatisfiable:
        return
    assert span is not None
    start, end = span
    assert 0 <= start <= end < size
    if first is not None:
        assert start == first
    else:
        assert (start, end) == (max(0, size - (last or 0)), size - 1)
