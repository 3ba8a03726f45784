"""Time to accuracy as MLPerf Training states it (``run --seeds N``): the aggregate, the held-out
validation split, and the cells of a tiny run."""

import math

import pandas as pd
import pytest
import torch

from bench.training.tta import mlperf_time, tta_figures, validation_splits


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


def _fingerprints(x):
    """One number per image (a fixed random projection), to compare sets of images."""
    w = torch.randn(x[0].numel(), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return sorted((x.reshape(len(x), -1).double() @ w).tolist())


def test_the_validation_split_is_held_out_from_training(mnist_path):
    from bench import ConfigError
    from bench.data.mnist import make_split, resolve_mnist

    m = resolve_mnist(mnist_path, fill_cache=False)
    train, val = validation_splits(m, "minmax", "cpu", None, 5000)
    assert len(val) == 5000 and len(train) == len(m.train_labels) - 5000
    everything = make_split(m.train_images, m.train_labels, "minmax", "cpu")
    # together they are the training set, each image once: none of the held-out images is trained on
    assert _fingerprints(torch.cat([train.x, val.x])) == _fingerprints(everything.x)
    assert sorted(train.y.tolist() + val.y.tolist()) == sorted(m.train_labels.tolist())
    # a random draw (every class, not the file's last images), the same draw every time
    assert not (val.y == m.train_labels[-5000:]).all() and len(set(val.y.tolist())) == 10
    again = validation_splits(m, "minmax", "cpu", 1000, 5000)
    assert (again[1].y == val.y).all() and len(again[0]) == 1000 and (again[0].y == train.y[:1000]).all()
    with pytest.raises(ConfigError, match="validation_images"):
        validation_splits(m, "minmax", "cpu", None, len(m.train_labels))


def _tta_tables(times: dict[str, list[float]]):
    """A run's tables with one ``tta`` cell per backend and its per-seed times (NaN: missed)."""
    import numpy as np

    from bench.storage.results import RunTables

    summary = pd.DataFrame([{"run_id": "r", "cell_id": f"cnn-{b}-tta", "model": "cnn", "backend": b, "phase": "tta",
                             "status": "ok", "batch_size": np.nan, "seeds": len(t),
                             "seeds_reached": int(np.isfinite(t).sum()), "tta_median_s": float(np.nanmedian(t))
                             if np.isfinite(t).any() else np.nan} for b, t in times.items()])
    seeds = pd.DataFrame([{"run_id": "r", "cell_id": f"cnn-{b}-tta", "seed": i, "reached": bool(v == v),
                           "time_to_accuracy_s": v, "train_s": v if v == v else 20.0}
                          for b, t in times.items() for i, v in enumerate(t)])
    return RunTables(meta={"r": {}}, tables={"summary": summary, "seeds": seeds})


def test_the_verdict_ranks_backends_by_time_to_accuracy_paired_by_seed():
    from bench.analysis.ranked import ranked_backends
    from reports.verdict_section import verdict_lines

    nan = float("nan")
    rt = _tta_tables({"cpu-fp32": [10.0, 12.0, 11.0, 13.0, 10.5, 12.5, 11.5],
                      "cpu-bf16": [5.0, 6.1, 5.4, 6.4, 5.3, 6.2, 5.8],
                      "cpu-missed": [1.0, nan, nan, nan, nan, nan, nan],  # fastest once, missed the rest
                      "cpu-never": [nan] * 7})
    ranked = ranked_backends(rt)
    assert list(ranked.backend) == ["cpu-bf16", "cpu-fp32", "cpu-missed"]  # never reached: not ranked
    assert (ranked.phase == "tta").all() and ranked.samples_per_s.isna().all()
    fastest, fp32 = ranked.iloc[0], ranked.iloc[1]
    assert fastest.standing == "fastest" and fastest.tta_median_s == 5.8
    assert fp32.standing == "slower" and fp32.time_vs_fastest_low > 1.5  # paired by seed: a clear 2x
    assert fp32.time_vs_fastest == pytest.approx(11.5 / 5.8)
    assert "faster than cpu-fp32" in fastest.vs_baseline
    # ranked last: a missed seed counts slower than any that reached; shown: its cell's median over reached seeds
    assert ranked.iloc[2].tta_median_s == 1.0 and ranked.iloc[2].standing == "slower"
    lines = verdict_lines(ranked)
    assert lines[0] == "cnn · time to accuracy (median over seeds):" and "★ cpu-bf16" in lines[1]
    assert "5.8 s" in lines[1]


@pytest.mark.slow
def test_run_seeds_writes_a_tta_cell_per_training_backend(mnist_path, tmp_path, capsys):
    from bench.cli import main
    from bench.storage.results import read_run

    args = ["--models", "mlp", "--backends", "cpu-fp32,onnxruntime-cpu", "--limit-train", "1024", "--batch-size",
            "64", "--limit-test", "300", "--batch-sizes", "1", "--budget-s", "0.02", "--epochs", "2", "--seeds", "3",
            "--target-accuracy", "0.5", "--validation-images", "1000", "--threads", "1", "--processes", "1",
            "--export", "csv"]
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
    page = (run_dir / "report.html").read_text()
    assert '<h2 id="time-to-accuracy">Time to accuracy</h2>' in page
    assert ">time to accuracy<" in page  # the glance's column
    assert "mlp · time to accuracy (median over seeds):" in capsys.readouterr().out  # the terminal's verdict
    assert (run_dir / "export" / "time-to-accuracy.csv").is_file()


def test_label_smoothing_and_the_shift_reach_the_training_step():
    import torch.nn.functional as F

    from bench.data.mnist import augmenter
    from bench.engines.backends import get_backend
    from bench.training.train import make_train_step

    b = get_backend("cpu-fp32")
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    losses = {}
    for smoothing, augment in ((0.0, "none"), (0.2, "none"), (0.2, "shift")):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights stay, the loss is the first
        step = make_train_step(model, b, opt, label_smoothing=smoothing, augment=augmenter(augment, 3))
        losses[smoothing, augment] = float(step(x, y))
        if augment == "none":
            assert losses[smoothing, augment] == pytest.approx(
                F.cross_entropy(model(x), y, label_smoothing=smoothing).item(), rel=1e-6)
    assert losses[0.0, "none"] != losses[0.2, "none"]
    shift = augmenter("shift", 3)
    expected = F.cross_entropy(model(shift(x)), y, label_smoothing=0.2).item()
    assert losses[0.2, "shift"] == pytest.approx(expected, rel=1e-6)  # the step saw the shifted batch
