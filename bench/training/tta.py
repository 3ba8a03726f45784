"""Time to accuracy as MLPerf Training measures it (``run --seeds N``): each training backend is
trained N times with different seeds, interleaved by blocks of steps as training already is, each
run stopped at the first check that reaches the target accuracy. The checks run on a validation
split held out from the training images (``validation_images`` of them, one fixed random draw), never on the
test split, whose accuracy is reported apart. The headline is MLPerf's: drop the fastest and the
slowest run, the mean of the rest; beside it the median over seeds with its 95% interval, how many
seeds reached the target, and the training and evaluation seconds apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bench import ConfigError
from bench.data.mnist import Split, make_split
from bench.engines.backends import Backend
from bench.measure.stats import bootstrap_ci
from bench.training.train import evaluate

VALIDATION_SEED = 0  # the held-out images are one fixed draw, the same for every seed, backend and run


def validation_splits(mnist, normalization: str, device: str, limit_train: int | None, validation_images: int
                      ) -> tuple[Split, Split]:
    """(training, validation): ``validation_images`` training images drawn at random (one fixed
    draw, ``VALIDATION_SEED``) are held out; training is the rest (its first ``limit_train`` in
    that draw's order). Disjoint by construction. A random draw rather than the file's last images:
    for the MLP those read 0.2-0.3 points above the test split at the end of training, a random draw
    0.1-0.2 below it (``python -m benchmarks.validation_split``; docs/measurement.md)."""
    n = len(mnist.train_labels)
    if not 0 < validation_images < n:
        raise ConfigError(f"validation_images must be in [1, {n - 1}], got {validation_images}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    keep, held = order[: n - validation_images], order[n - validation_images:]
    if limit_train is not None:
        keep = keep[:limit_train]
    train = make_split(mnist.train_images[keep], mnist.train_labels[keep], normalization, device)
    val = make_split(mnist.train_images[held], mnist.train_labels[held], normalization, device)
    return train, val


def mlperf_time(times: list[float]) -> float:
    """MLPerf Training's aggregate of per-seed times to target: drop the fastest and the slowest,
    the mean of the rest (all of them below three runs); NaN when any run did not reach it."""
    a = np.asarray(times, dtype=np.float64)
    if a.size == 0 or np.isnan(a).any():
        return float("nan")
    if a.size >= 3:
        a = np.sort(a)[1:-1]
    return float(a.mean())


def tta_figures(seeds: pd.DataFrame) -> dict:
    """A backend's row from its per-seed runs (``time_to_accuracy_s`` NaN where a run never reached
    the target)."""
    t = seeds.time_to_accuracy_s.to_numpy(dtype=np.float64)
    reached = t[~np.isnan(t)]
    low, high = bootstrap_ci(reached) if reached.size else (float("nan"), float("nan"))
    return {"tta_mlperf_s": mlperf_time(list(t)), "tta_median_s": float(np.median(reached)) if reached.size
            else float("nan"), "tta_median_ci_low_s": low, "tta_median_ci_high_s": high,
            "seeds": len(seeds), "seeds_reached": int(reached.size), "all_reached": bool(reached.size == len(seeds)),
            "tta_train_s": float(seeds.train_s.mean()), "tta_eval_s": float(seeds.eval_s.mean()),
            "validation_accuracy": float(seeds.validation_accuracy.mean()),
            "test_accuracy": float(seeds.test_accuracy.mean()), "epochs_mean": float(seeds.epochs_run.mean())}


def seed_row(seed: int, result, test: Split, backend: Backend) -> dict:
    """One seed's run: its time to target on the validation split, and the final model's test accuracy."""
    s = result.summary
    _, test_acc, _ = evaluate(result.model, test, backend)
    return {"seed": seed, "reached": bool(s["time_to_accuracy_s"] == s["time_to_accuracy_s"]),
            "time_to_accuracy_s": s["time_to_accuracy_s"], "train_s": s["train_s"], "eval_s": s["eval_s"],
            "epochs_run": s["epochs_run"], "steps": s["steps"], "validation_accuracy": s["test_accuracy"],
            "test_accuracy": test_acc, "diverged": result.diverged or ""}
