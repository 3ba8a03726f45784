"""Time to accuracy of candidate training recipes, against the plain recipe, back to back.

    python benchmarks/recipe_search.py [--model cnn|mlp] [--seeds 5] [--recipes plain,...] [--csv FILE]

Each recipe trains the registry's model (unchanged) on the training images less 5,000 held out at
random as the validation split that the stopping checks read (``bench.training.tta.validation_splits``),
until the model's target or the recipe's epoch limit. A recipe is a backend (its precision), the
training settings of ``TrainConfig`` (batch size, optimizer, schedule, learning rate, epochs,
dropout, label smoothing, augmentation, normalization, checks per epoch) and channels-last.

Seeds are the outer loop and every recipe runs once per seed in turn, so the plain recipe is
measured throughout the search rather than once at its start: a drift of the machine shows in its
spread. Per recipe: the MLPerf time to target (drop the fastest and slowest seed, mean of the
rest), the median, the ratio to the plain recipe's MLPerf time, how many seeds reached the target,
and the validation and test accuracy at the stop (their gap: how far the stopping check's split
reads from the test split).
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from bench.config.build import TrainConfig
from bench.data.mnist import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.training.train import TrainJob, evaluate, train_model
from bench.training.tta import mlperf_time, validation_splits

TARGETS = {"cnn": 0.99, "mlp": 0.98}
PLAIN = {"batch_size": 128, "lr": 1e-3, "optimizer": "adam", "schedule": "constant"}
# the settings every fast candidate shares: bf16 autocast, OneCycle, no dropout, label smoothing 0.1,
# standardized inputs, channels-last (CNN), 16 checks per epoch
FAST = {"optimizer": "adam", "schedule": "onecycle", "dropout": False, "label_smoothing": 0.1,
        "normalization": "standard", "evals_per_epoch": 16}

def _recipes(plain_epochs: int, before: dict, fast: dict, changes: dict[str, dict]) -> dict[str, dict]:
    """A model's candidates: each a flat dict of ``backend``, ``channels_last`` and TrainConfig
    fields; every row after ``fast`` is ``fast`` with one change."""
    return {"plain": {"backend": "cpu-fp32", "channels_last": False, **PLAIN, "epochs": plain_epochs},
            "full-before": {"channels_last": False, "optimizer": "adam", "schedule": "onecycle", **before},
            "fast": fast, **{name: {**fast, **change} for name, change in changes.items()}}


SMOOTHING = {"fast-smoothing-0.2": {"label_smoothing": 0.2}, "fast-no-smoothing": {"label_smoothing": 0.0}}
REGULARIZING = {"fast-dropout": {"dropout": True}, "fast-shift": {"augment": "shift"}}
# model -> recipe name -> its settings (the search's rows, in the order they run)
RECIPES = {
    "cnn": _recipes(  # plain: constant lr, so its epoch cap only ends a miss
        15, {"backend": "cpu-bf16", "batch_size": 256, "lr": 4e-3, "epochs": 3},
        {"backend": "cpu-bf16", "channels_last": True, **FAST, "batch_size": 128, "lr": 8e-3, "epochs": 2},
        {"fast-lr5e-3": {"lr": 5e-3}, "fast-bs256": {"batch_size": 256, "lr": 1.2e-2}, **SMOOTHING,
         **REGULARIZING, "fast-minmax": {"normalization": "minmax"}, "fast-4-checks": {"evals_per_epoch": 4},
         "fast-nchw": {"channels_last": False}, "fast-fp32": {"backend": "cpu-fp32"}}),
    "mlp": _recipes(
        15, {"backend": "cpu-fp32", "batch_size": 128, "lr": 2e-3, "epochs": 20},
        {"backend": "cpu-bf16", "channels_last": False, **FAST, "batch_size": 128, "lr": 3e-3, "epochs": 3},
        {"fast-2-epochs": {"epochs": 2}, "fast-lr5e-3": {"lr": 5e-3}, "fast-bs256": {"batch_size": 256, "lr": 5e-3},
         **SMOOTHING, **REGULARIZING, "fast-minmax": {"normalization": "minmax"},
         "fast-fp32": {"backend": "cpu-fp32"}}),
}
# the rows with the lowest MLPerf time over 5 seeds (docs/BENCHMARKS.md): the full preset's recipes
# (models/__init__.py; tests/test_config.py checks that the two agree)
WINNERS = {"cnn": "fast-smoothing-0.2", "mlp": "fast-bs256"}


def _settings(model: str, name: str) -> tuple[str, dict, bool]:
    """(backend, TrainConfig fields, channels_last) of a recipe."""
    fields = dict(RECIPES[model][name])
    return fields.pop("backend"), fields, fields.pop("channels_last")


_SPLITS: dict[str, tuple] = {}


def splits(mnist, normalization: str) -> tuple:
    """(training, validation, test) under one normalization, built once per search (on the CPU)."""
    if normalization not in _SPLITS:
        _SPLITS[normalization] = (*validation_splits(mnist, normalization, "cpu", None, 5000),
                                  make_split(mnist.test_images, mnist.test_labels, normalization, "cpu"))
    return _SPLITS[normalization]


def run(model: str, name: str, seed: int, mnist) -> dict:
    backend, fields, nhwc = _settings(model, name)
    b = get_backend(backend)
    cfg = TrainConfig(**fields, target_accuracy=TARGETS[model], stop_at_target=True, warmup_steps=0)
    train, val, test = splits(mnist, cfg.normalization)
    r = train_model(TrainJob(model, b, train, val, cfg, seed, BackendOptions(channels_last=nhwc)))
    s = r.summary
    return {"recipe": name, "seed": seed, "tta_s": s["time_to_accuracy_s"], "train_s": s["train_s"],
            "epochs": s["epochs_run"], "validation_accuracy": s["test_accuracy"],
            "test_accuracy": evaluate(r.model, test, b)[1]}


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per recipe, in the order they ran."""
    rows = []
    for name, d in runs.groupby("recipe", sort=False):
        backend, fields, nhwc = _settings(runs.attrs["model"], name)
        rows.append({"recipe": name, "backend": backend, "channels_last": nhwc,
                     **{k: fields.get(k, TrainConfig.__dataclass_fields__[k].default) for k in
                        ("batch_size", "lr", "epochs", "dropout", "label_smoothing", "augment", "normalization",
                         "evals_per_epoch")},
                     "seeds": len(d), "reached": int(d.tta_s.notna().sum()), "tta_mlperf_s": mlperf_time(list(d.tta_s)),
                     "tta_median_s": d.tta_s.median(), "tta_min_s": d.tta_s.min(), "tta_max_s": d.tta_s.max(),
                     "validation_accuracy": d.validation_accuracy.mean(), "test_accuracy": d.test_accuracy.mean(),
                     "test_minus_validation_pts": 100 * (d.test_accuracy - d.validation_accuracy).mean()})
    out = pd.DataFrame(rows)
    plain = out.set_index("recipe").tta_mlperf_s.get("plain", float("nan"))
    out.insert(out.columns.get_loc("tta_mlperf_s") + 1, "vs_plain", out.tta_mlperf_s / plain)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn", choices=sorted(RECIPES))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--recipes", default=None, help="comma-separated names (default: all of the model's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--csv", default=None, help="also write every run's row here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    names = a.recipes.split(",") if a.recipes else list(RECIPES[a.model])
    unknown = [n for n in names if n not in RECIPES[a.model]]
    if unknown:
        p.error(f"unknown recipe {', '.join(unknown)}; legal values: {', '.join(RECIPES[a.model])}")
    mnist = resolve_mnist(None)
    rows = []
    for seed in range(a.seeds):
        for name in names:
            rows.append(run(a.model, name, seed, mnist))
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
                  flush=True)
    runs = pd.DataFrame(rows)
    runs.attrs["model"] = a.model
    if a.csv:
        runs.to_csv(a.csv, index=False)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print(summarize(runs).round(4).to_string(index=False))
    flags = open("/proc/cpuinfo").read().split()
    print(f"model {a.model}, target {TARGETS[a.model]:.2%} on the validation split; cpu flags: "
          f"{' '.join(f for f in ('avx512_bf16', 'amx_bf16', 'avx512f', 'avx2') if f in flags)}; "
          f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
