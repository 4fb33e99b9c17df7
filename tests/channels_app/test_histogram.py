"""Log-bucket latency histograms: merged by adding counts, percentiles read within a bucket."""

from __future__ import annotations

import math
import random

from channels_app import histogram


def filled(values) -> histogram.Histogram:
    h: histogram.Histogram = {}
    for v in values:
        histogram.observe(h, v)
    return h


def test_bounds_are_log_spaced_and_fixed():
    ratios = {round(b / a, 3) for a, b in zip(histogram.BOUNDS, histogram.BOUNDS[1:], strict=False)}
    assert ratios == {round(10 ** (1 / histogram.PER_DECADE), 3)}
    assert histogram.BOUNDS[0] == 0.001 and histogram.BOUNDS[-1] == 1000


def test_a_value_lands_in_the_first_bucket_whose_bound_is_not_below_it():
    assert histogram.bucket_of(0) == 0
    assert histogram.bucket_of(0.001) == 0
    assert histogram.bucket_of(0.0011) == 1
    assert histogram.BOUNDS[histogram.bucket_of(0.05)] >= 0.05
    assert histogram.bucket_of(5000) == histogram.OVERFLOW


def test_merging_adds_counts_and_gives_the_percentiles_of_all_values():
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.04), 0.8) for _ in range(5000)]
    parts = [filled(values[i::3]) for i in range(3)]
    merged = histogram.merge(parts)
    assert merged == filled(values)
    assert histogram.total(merged) == 5000
    exact = sorted(values)
    for q in (0.5, 0.95, 0.99):
        estimate = histogram.percentile(merged, q)
        truth = exact[int(q * len(exact)) - 1]
        # within one bucket's width (58%), and in practice much closer
        assert truth / 1.6 <= estimate <= truth * 1.6, (q, estimate, truth)
        assert abs(estimate - truth) / truth < 0.15, (q, estimate, truth)


def test_percentiles_are_ordered_and_inside_the_observed_buckets():
    h = filled([0.002] * 50 + [0.2] * 45 + [3.0] * 5)
    p50, p95, p99 = (histogram.percentile(h, q) for q in (0.5, 0.95, 0.99))
    assert p50 <= p95 <= p99
    for estimate, value in ((p50, 0.002), (p95, 0.2), (p99, 3.0)):
        index = histogram.bucket_of(value)
        assert histogram.BOUNDS[index - 1] < estimate <= histogram.BOUNDS[index]


def test_an_empty_histogram_has_no_percentile():
    assert histogram.percentile({}, 0.95) is None


def test_cumulative_buckets_end_with_everything_at_infinity():
    h = filled([0.01, 0.5, 2000])
    rows = histogram.cumulative(h)
    assert rows[-1] == (math.inf, 3)
    assert rows[-2][1] == 2  # 2,000 s is above the last bound
    assert [count for _, count in rows] == sorted(count for _, count in rows)
