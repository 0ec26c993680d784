"""What the templates are given: only http(s) URLs, and figures as people read them."""

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from callwatch.dashboard.render import (
    STATIC,
    milliseconds,
    money,
    percent,
    safe_url,
    seconds,
    when,
)


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://rec.example/a.wav", True),
        ("http://127.0.0.1:9/a.wav", True),
        ("javascript:alert(1)", False),
        (" JavaScript:alert(1)", False),
        ("data:audio/wav;base64,AAAA", False),
        ("vbscript:x", False),
        ("//evil.example/a.wav", False),
        ("/relative.wav", False),
        ("http://[::1", False),
        (None, False),
    ],
)
def test_only_http_urls_are_kept(url: str | None, kept: bool) -> None:
    assert safe_url(url) == (url if kept else None)


def test_figures_read_as_people_read_them() -> None:
    assert [seconds(None), seconds(4.25), seconds(61.4)] == ["—", "4.2 s", "1:01"]
    assert [milliseconds(None), milliseconds(1234.5)] == ["—", "1,234 ms"]
    assert [money(None), money(0.1, "USD"), money(2)] == ["—", "0.1000 USD", "2.0000"]
    assert [percent(None), percent(0.6667)] == ["—", "66.7 %"]
    berlin = datetime(2026, 11, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert [when(None), when(berlin), when(datetime(2026, 11, 1, 12, tzinfo=UTC))] == [
        "—",
        "2026-11-01 12:00:00 UTC",
        "2026-11-01 12:00:00 UTC",
    ]


def _luminance(colour: str) -> float:
    channels = [int(colour[index : index + 2], 16) / 255 for index in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(one: str, other: str) -> float:
    high, low = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_colours_pass_wcag_aa() -> None:
    css = (STATIC / "app.css").read_text()
    colours = dict(re.findall(r"--([a-z]+): (#[0-9a-f]{6})", css))
    white = "#ffffff"
    # (text, background) as the stylesheet pairs them.
    pairs = [
        (colours["ink"], colours["bg"]),
        (colours["muted"], colours["bg"]),
        (colours["muted"], colours["panel"]),
        (colours["link"], colours["bg"]),
        (colours["link"], colours["panel"]),
        (white, colours["top"]),
        (white, colours["accent"]),
        (white, colours["bad"]),
        (colours["good"], "#dcfce7"),
        (colours["bad"], "#fee2e2"),
        (colours["ink"], "#e5e7eb"),
        (colours["muted"], "#eef4ff"),
        (colours["muted"], "#f1f5f1"),
    ]
    assert [pair for pair in pairs if _contrast(*pair) < 4.5] == []
