"""Small statistics: percentiles and the median/min/max summary every table cell shows."""

import math
from collections.abc import Iterable, Sequence
from typing import TypedDict


class Summary(TypedDict):
    median: float
    min: float
    max: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 to 100) with linear interpolation; `values` need not be sorted."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def summarize(values: Iterable[float]) -> Summary | None:
    """Median, min and max of the finite values; None when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return Summary(median=median(finite), min=min(finite), max=max(finite))
