import numpy as np
import pytest

from bench.measure.accuracy import classification_metrics
from bench.measure.stats import relative_gap, summarize


def test_summarize_known_values():
    s = summarize([0.001, 0.002, 0.003, 0.004])
    assert s["n_samples"] == 4
    assert s["mean_latency_ms"] == pytest.approx(2.5)
    assert s["p50_latency_ms"] == pytest.approx(2.5)
    assert s["std_latency_ms"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert s["iqr_latency_ms"] == pytest.approx(1.5)
    assert s["cv"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2.5)
    assert "samples_per_s" not in s and "unstable" not in s  # figures of rounds (bench.measure.figures)


def test_summarize_rejects_empty():
    with pytest.raises(ValueError):
        summarize([])


def test_relative_gap():
    assert relative_gap(1.0, 1.2) == pytest.approx(0.2 / 1.2)
    assert relative_gap(0, 0) == 0


def test_classification_metrics():
    true = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    cm, p, r, f1, support = classification_metrics(true, pred, n_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert p[1] == pytest.approx(2 / 3) and r[0] == pytest.approx(0.5) and f1[2] == 0
    assert support.tolist() == [2, 2, 1]


def test_median_ratio_interval_surrounds_the_quotient_of_medians_and_keeps_pairing():
    from bench.measure.stats import median_ratio_interval

    rng = np.random.default_rng(3)
    drift = rng.normal(0, 0.10, 20)  # the machine's speed per round, shared by both sides
    base = {r: 1.0 * np.exp(drift[r] + rng.normal(0, 0.01)) for r in range(20)}
    other = {r: 1.5 * np.exp(drift[r] + rng.normal(0, 0.01)) for r in range(20)}
    quotient = np.median(list(other.values())) / np.median(list(base.values()))
    lo, hi = median_ratio_interval(base, other)
    assert lo <= quotient <= hi
    assert lo < 1.5 < hi
    # the same values with the pairing broken (other's rounds shuffled) give a wider interval
    shuffled = dict(zip(other, rng.permutation(list(other.values()))))
    lo_u, hi_u = median_ratio_interval(base, shuffled)
    assert hi_u / lo_u > hi / lo
    # rounds only one side has (added for resolution) still count for that side's median
    more = {**other, 20: 9.0, 21: 9.0}
    assert median_ratio_interval(base, more)[1] >= hi
    assert all(np.isnan(median_ratio_interval({0: 1.0}, {0: 2.0})))
