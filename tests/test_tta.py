"""Time to accuracy as MLPerf Training states it (``run --seeds N``): the aggregate, the held-out
validation split, and the cells of a tiny run."""

import math

import pandas as pd
import pytest

from bench.tta import mlperf_time, tta_figures, validation_splits


def test_mlperf_drops_the_fastest_and_the_slowest_seed():
    assert mlperf_time([10.0, 1.0, 4.0, 6.0, 100.0]) == pytest.approx((4.0 + 6.0 + 10.0) / 3)
    assert mlperf_time([3.0, 5.0]) == 4.0  # fewer than three runs: the mean of all
    assert math.isnan(mlperf_time([3.0, float("nan"), 5.0]))  # a seed that missed: no MLPerf figure


def test_a_backends_row_counts_the_seeds_that_reached_the_target():
    seeds = pd.DataFrame({"time_to_accuracy_s": [2.0, float("nan"), 3.0, 4.0], "train_s": [2.0, 9.0, 3.0, 4.0],
                          "eval_s": [0.1] * 4, "validation_accuracy": [0.99, 0.97, 0.99, 0.99],
                          "test_accuracy": [0.98] * 4, "epochs_run": [1, 3, 1, 2]})
    f = tta_figures(seeds)
    assert f["seeds"] == 4 and f["seeds_reached"] == 3 and f["all_reached"] is False
    assert math.isnan(f["tta_mlperf_s"]) and f["tta_median_s"] == 3.0
    assert f["tta_median_ci_low_s"] <= 3.0 <= f["tta_median_ci_high_s"]


def test_the_validation_split_is_held_out_from_training(mnist_path):
    from bench import ConfigError
    from bench.data import resolve_mnist

    m = resolve_mnist(mnist_path, fill_cache=False)
    train, val = validation_splits(m, "minmax", "cpu", None, 5000)
    assert len(val) == 5000 and len(train) == len(m.train_labels) - 5000
    assert (val.y == m.train_labels[-5000:]).all()  # the last images, never among the trained ones
    train, _ = validation_splits(m, "minmax", "cpu", 1000, 5000)
    assert len(train) == 1000 and (train.y == m.train_labels[:1000]).all()
    with pytest.raises(ConfigError, match="validation_images"):
        validation_splits(m, "minmax", "cpu", None, len(m.train_labels))


def test_run_seeds_writes_a_tta_cell_per_training_backend(mnist_path, tmp_path):
    from bench.cli import main
    from bench.storage.results import read_run

    args = ["--models", "mlp", "--backends", "cpu-fp32,onnxruntime-cpu", "--limit-train", "1024", "--batch-size",
            "64", "--limit-test", "300", "--batch-sizes", "1", "--budget-s", "0.02", "--epochs", "2", "--seeds", "3",
            "--target-accuracy", "0.5", "--validation-images", "1000", "--threads", "2", "--export", "csv"]
    assert main(["run", "--data-dir", str(mnist_path), "--out", str(tmp_path), *args]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rt = read_run(run_dir)
    tta = rt["summary"][rt["summary"].phase == "tta"]
    assert list(tta.backend) == ["cpu-fp32"]  # the backends that train
    row = tta.iloc[0]
    assert row.status == "ok" and row.seeds == 3 and row.validation_images == 1000
    seeds = rt["seeds"]
    assert sorted(seeds.seed) == [0, 1, 2] and seeds.validation_accuracy.notna().all()
    reached = seeds[seeds.reached]
    assert (reached.validation_accuracy >= 0.5).all() and (reached.time_to_accuracy_s <= reached.train_s).all()
    assert row.seeds_reached == len(reached)
    assert '<h2 id="time-to-accuracy">Time to accuracy</h2>' in (run_dir / "report.html").read_text()
    assert (run_dir / "export" / "time-to-accuracy.csv").is_file()
