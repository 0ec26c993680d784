"""A fixed log-scale histogram: mergeable by adding counts, percentiles within 1 % of exact.

A value goes to a bin by its sign and `ceil(log_gamma(|value|))`, gamma = (1 + a) / (1 - a); the
bin's representative, 2·gamma^k / (gamma + 1), is within a relative error `a` (RELATIVE_ERROR) of
every value in the bin (as DDSketch's). Bins are fixed, so two histograms merge by adding their
counts bin by bin, and a count can be taken away again (a call whose record changes).

Bins keep the order of values, so the i-th smallest value of the histogram is the representative
of the bin that holds the i-th smallest value: a percentile interpolated between two of them (as
`percentile_cont` and `call_metrics.percentile` do) is within `a` of the exact one too, when
the two are of one sign (durations and latencies are never negative; between a negative and a
positive value the bound is on their sizes, not on the result). Values nearer to 0 than SMALLEST
count as 0 (an absolute error below 0.001, less than what the API shows).
"""

import bisect
import itertools
import math
from collections.abc import Iterable

RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
SMALLEST = 1e-3
_LOG_GAMMA = math.log(GAMMA)
_OFFSET = math.ceil(math.log(SMALLEST) / _LOG_GAMMA) - 1  # the smallest k maps to bin 1


def bin_of(value: float) -> int:
    """0 for (about) zero; 1, 2, … upwards for positive values; -1, -2, … for negative ones."""
    size = abs(value)
    if size < SMALLEST or math.isnan(size):
        return 0
    if math.isinf(size):
        size = 1e300
    index = math.ceil(math.log(size) / _LOG_GAMMA) - _OFFSET
    return index if value > 0 else -index


def value_of(bin: int) -> float:
    """The bin's representative value."""
    if bin == 0:
        return 0.0
    size = 2 * GAMMA ** (abs(bin) + _OFFSET) / (GAMMA + 1)
    return size if bin > 0 else -size


def percentiles(counts: Iterable[tuple[int, int]], quantiles: Iterable[float]) -> list[float]:
    """Interpolated percentiles (q in 0..1) of a histogram given as (bin, count) pairs.

    Counts of the same bin add up; bins whose count is not positive are left out. Empty: [].
    """
    merged: dict[int, int] = {}
    for bin, count in counts:
        merged[bin] = merged.get(bin, 0) + count
    ordered = sorted((bin, count) for bin, count in merged.items() if count > 0)
    if not ordered:
        return []
    # The rank just past each bin: the i-th smallest value is in the first bin whose end > i.
    ends = list(itertools.accumulate(count for _, count in ordered))
    total = ends[-1]

    def at(index: int) -> float:
        return value_of(ordered[min(bisect.bisect_right(ends, index), len(ordered) - 1)][0])

    results = []
    for q in quantiles:
        rank = q * (total - 1)
        low = math.floor(rank)
        below, above = at(low), at(min(low + 1, total - 1))
        results.append(below + (above - below) * (rank - low))
    return results
