import numpy as np
import pytest

from bench.measure.accuracy import classification_metrics
from bench.measure.stats import relative_gap, summarize


def test_summarize_known_values():
    s = summarize([0.001, 0.002, 0.003, 0.004], batch_size=10)
    assert s["n_samples"] == 4
    assert s["mean_latency_ms"] == pytest.approx(2.5)
    assert s["p50_latency_ms"] == pytest.approx(2.5)
    assert s["std_latency_ms"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert s["iqr_latency_ms"] == pytest.approx(1.5)
    assert s["samples_per_s"] == pytest.approx(10 / 0.0025)
    assert s["cv"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2.5)
    assert s["unstable"] is True


def test_stable_cell_not_flagged():
    assert summarize([0.01, 0.0101, 0.0099, 0.01])["unstable"] is False


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
