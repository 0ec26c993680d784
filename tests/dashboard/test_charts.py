"""The SVG charts' geometry."""

from callwatch.dashboard.charts import Bar, Chart, columns, stage_latencies
from callwatch.model.records import Latency, Stats


def test_stage_latencies_draw_p50_and_p95_of_each_stage_and_the_first_word() -> None:
    latency = Latency(
        llm=Stats(p50=400, p95=800), turn=Stats(p50=600, p95=None), time_to_first_word_ms=200
    )
    chart = stage_latencies(latency)
    assert chart == Chart(
        width=570,
        height=92,
        title="Stage latencies (ms)",
        kind="bars",
        bars=[
            Bar("llm p50", 400, 120, 4, 180.0, 14, "400 ms"),
            Bar("llm p95", 800, 120, 26, 360.0, 14, "800 ms"),
            Bar("turn p50", 600, 120, 48, 270.0, 14, "600 ms"),
            Bar("first word", 200, 120, 70, 90.0, 14, "200 ms"),
        ],
    )


def test_columns_scale_to_the_tallest_and_keep_a_sliver_for_zero() -> None:
    chart = columns("Calls", [("d1", 2, "2"), ("d2", 0, "0"), ("d3", 4, "4")])
    assert [(bar.x, bar.y, bar.height) for bar in chart.bars] == [
        (4, 64.0, 60.0),
        (32, 123.0, 1.0),
        (60, 4.0, 120.0),
    ]
    assert (chart.width, chart.height) == (288, 144)  # room for ten columns
