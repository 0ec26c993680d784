"""Server-drawn charts: the geometry of SVG bars, computed here and drawn by the templates."""

from collections.abc import Sequence
from dataclasses import dataclass

from callwatch.model.records import Latency

ROW_HEIGHT = 22
LABEL_WIDTH = 120
BAR_AREA = 360
COLUMN_AREA_HEIGHT = 120
MIN_COLUMNS = 10


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    title: str
    kind: str  # bars: across, a row each; columns: up, left to right


def _scale(values: Sequence[float], room: float) -> float:
    top = max(values, default=0.0)
    return room / top if top > 0 else 0.0


def horizontal(title: str, rows: Sequence[tuple[str, float, str]]) -> Chart:
    """One bar per (label, value, text) row, longest value across the full width."""
    factor = _scale([value for _, value, _ in rows], BAR_AREA)
    bars = [
        Bar(
            label=label,
            value=value,
            x=LABEL_WIDTH,
            y=index * ROW_HEIGHT + 4,
            width=max(value * factor, 1.0),
            height=ROW_HEIGHT - 8,
            text=text,
        )
        for index, (label, value, text) in enumerate(rows)
    ]
    return Chart(LABEL_WIDTH + BAR_AREA + 90, len(rows) * ROW_HEIGHT + 4, bars, title, "bars")


def columns(title: str, points: Sequence[tuple[str, float, str]]) -> Chart:
    """One column per (label, value, text) point over time, left to right; room for at least
    MIN_COLUMNS, so a day or two are not drawn across the whole width."""
    width = max(len(points), MIN_COLUMNS) * 28
    factor = _scale([value for _, value, _ in points], COLUMN_AREA_HEIGHT)
    bars = []
    for index, (label, value, text) in enumerate(points):
        height = max(value * factor, 1.0)
        bars.append(
            Bar(label, value, index * 28 + 4, COLUMN_AREA_HEIGHT - height + 4, 20, height, text)
        )
    return Chart(width + 8, COLUMN_AREA_HEIGHT + 24, bars, title, "columns")


def stage_latencies(latency: Latency) -> Chart:
    """p50 and p95 of each stage the record has, and the time to first word."""
    rows: list[tuple[str, float, str]] = []
    for stage in ("stt", "llm", "tts", "turn"):
        stats = getattr(latency, stage)
        if stats is None:
            continue
        for name in ("p50", "p95"):
            value = getattr(stats, name)
            if value is not None:
                rows.append((f"{stage} {name}", value, f"{value:,.0f} ms"))
    if latency.time_to_first_word_ms is not None:
        value = latency.time_to_first_word_ms
        rows.append(("first word", value, f"{value:,.0f} ms"))
    return horizontal("Stage latencies (ms)", rows)
