"""What the templates are given: only http(s) URLs, and figures as people read them."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from callwatch.dashboard.render import milliseconds, money, percent, safe_url, seconds, when


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
