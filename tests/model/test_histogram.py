"""The fixed log-scale histogram: bins keep order, percentiles within 1 % of the exact ones."""

from hypothesis import given
from hypothesis import strategies as st

from callwatch.model import histogram
from callwatch.model.call_metrics import percentile

values = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False)
# Durations and latencies: never negative. (An interpolation between a negative and a positive
# value is not within 1 % of the exact one: its errors do not cancel, the value does.)
positive = st.floats(min_value=0, max_value=1e7)


@given(st.lists(positive, min_size=1, max_size=300), st.booleans())
def test_percentiles_are_within_the_stated_error_of_exact_ones(
    samples: list[float], negated: bool
) -> None:
    samples = [-value for value in samples] if negated else samples
    bins = [(histogram.bin_of(value), 1) for value in samples]

    approximate = histogram.percentiles(bins, (0.0, 0.5, 0.95, 1.0))

    ordered = sorted(samples)
    for q, value in zip((0, 50, 95, 100), approximate, strict=True):
        exact = percentile(ordered, q)
        # An interpolation between two values within 1 % is within 1 % of theirs; below SMALLEST
        # a value counts as 0 (and each side of the interpolation may be such a value).
        bound = histogram.RELATIVE_ERROR * max(abs(v) for v in (exact, value)) + 2e-3
        assert abs(value - exact) <= bound * 1.000001


@given(values, values)
def test_bins_keep_the_order_of_values(a: float, b: float) -> None:
    low, high = sorted((a, b))

    assert histogram.bin_of(low) <= histogram.bin_of(high)


@given(st.floats(min_value=1e-3, max_value=1e12))
def test_a_bins_representative_is_within_one_percent_of_each_value_in_it(value: float) -> None:
    for signed in (value, -value):
        represented = histogram.value_of(histogram.bin_of(signed))

        assert abs(represented - signed) <= histogram.RELATIVE_ERROR * abs(signed) * 1.000001


def test_counts_merge_by_adding_and_are_taken_away_again() -> None:
    first = [(histogram.bin_of(v), 1) for v in (1.0, 2.0, 3.0)]
    second = [(histogram.bin_of(v), 1) for v in (10.0, 20.0)]
    taken = [(histogram.bin_of(20.0), -1)]

    assert histogram.percentiles(first + second + taken, (1.0,)) == histogram.percentiles(
        [(histogram.bin_of(10.0), 1)], (1.0,)
    )
    assert histogram.percentiles([], (0.5,)) == []
