"""Latency histograms with fixed, log-spaced buckets: merged by adding counts, so a percentile over
any window and any set of channels comes from every message in it, never from a sample.

Pure Python (no Django, no Redis): the store keeps ``{bucket index: count}`` per minute.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from typing import Final

# Upper bounds in seconds: five buckets a decade from 1 ms to 1,000 s (each 58% wider than the
# last), then everything slower in the last bucket. A percentile is read within its bucket's span.
PER_DECADE: Final = 5
BOUNDS: Final[tuple[float, ...]] = tuple(
    round(10 ** (-3 + i / PER_DECADE), 6) for i in range(6 * PER_DECADE + 1)
)
OVERFLOW: Final = len(BOUNDS)  # index of the bucket above the last bound

Histogram = dict[int, int]


def bucket_of(seconds: float) -> int:
    """Index of the bucket holding ``seconds``: the first whose upper bound is not below it."""
    return bisect.bisect_left(BOUNDS, max(0.0, seconds))


def observe(histogram: Histogram, seconds: float) -> None:
    index = bucket_of(seconds)
    histogram[index] = histogram.get(index, 0) + 1


def merge(histograms: Iterable[Mapping[int, int]]) -> Histogram:
    merged: Histogram = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[int(index)] = merged.get(int(index), 0) + int(count)
    return merged


def total(histogram: Mapping[int, int]) -> int:
    return sum(histogram.values())


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) in seconds, or None for an empty histogram.

    Interpolated geometrically inside the bucket that holds it (buckets are log-spaced, so this
    is the even spread); the first bucket starts at 0 and the overflow bucket reads as its floor.
    """
    count = total(histogram)
    if count == 0:
        return None
    rank = q * count
    seen = 0
    for index in sorted(histogram):
        in_bucket = histogram[index]
        if in_bucket <= 0:
            continue
        if seen + in_bucket >= rank:
            return _inside(index, (rank - seen) / in_bucket)
        seen += in_bucket
    return _inside(max(histogram), 1.0)


def _inside(index: int, fraction: float) -> float:
    if index >= OVERFLOW:
        return BOUNDS[-1]
    upper = BOUNDS[index]
    if index == 0:
        return upper * fraction
    lower = BOUNDS[index - 1]
    return lower * math.exp(math.log(upper / lower) * fraction)


def cumulative(histogram: Mapping[int, int]) -> list[tuple[float, int]]:
    """(upper bound, observations at or below it) for every bound, then (+inf, all): the shape
    Prometheus exposes as ``_bucket{le=...}``."""
    running = 0
    rows = []
    for index, bound in enumerate(BOUNDS):
        running += histogram.get(index, 0)
        rows.append((bound, running))
    rows.append((math.inf, running + histogram.get(OVERFLOW, 0)))
    return rows
