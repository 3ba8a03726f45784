"""Time to accuracy of candidate training recipes, against the plain recipe, back to back.

    python benchmarks/recipe_search.py [--model cnn] [--seeds 1] [--target 0.99] [--recipes plain,full,...]

Each recipe trains the registry's model (unchanged) on the training images less the last 5,000,
which are held out as the validation split the stopping checks read (``bench.tta``), until the
target or its epoch limit. Reported per recipe: training seconds to the target (checks excluded),
the ratio to the plain recipe measured in the same invocation, the validation and test accuracy.
The recipes are orders of the same run one after another (plain first and last), so a drift of the
machine shows as a difference between the two plain rows.
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import torch

from bench.backends import get_backend
from bench.config import TrainConfig
from bench.data import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.train import evaluate, train_model
from bench.tta import validation_splits

# name -> (backend, TrainConfig fields, channels_last)
RECIPES = {
    "plain": ("cpu-fp32", {"batch_size": 128, "lr": 1e-3, "optimizer": "adam", "schedule": "constant", "epochs": 8},
              False),
    "full": ("cpu-bf16", {"batch_size": 256, "lr": 4e-3, "optimizer": "adam", "schedule": "onecycle", "epochs": 3},
             False),
    "bs256-lr1e-2-2ep": ("cpu-bf16", {"batch_size": 256, "lr": 1e-2, "optimizer": "adam", "schedule": "onecycle",
                                      "epochs": 2}, False),
    "bs512-lr1e-2-2ep": ("cpu-bf16", {"batch_size": 512, "lr": 1e-2, "optimizer": "adam", "schedule": "onecycle",
                                      "epochs": 2}, False),
    "bs256-lr1e-2-2ep-nhwc": ("cpu-bf16", {"batch_size": 256, "lr": 1e-2, "optimizer": "adam",
                                           "schedule": "onecycle", "epochs": 2}, True),
    "bs256-lr8e-3-1ep": ("cpu-bf16", {"batch_size": 256, "lr": 8e-3, "optimizer": "adam", "schedule": "onecycle",
                                      "epochs": 1}, False),
}


def run(model: str, name: str, seed: int, target: float, mnist, evals_per_epoch: int) -> dict:
    backend, fields, nhwc = RECIPES[name]
    b = get_backend(backend)
    cfg = TrainConfig(**fields, target_accuracy=target, stop_at_target=True, evals_per_epoch=evals_per_epoch,
                      warmup_steps=0)
    train, val = validation_splits(mnist, cfg.normalization, b.device, None, 5000)
    test = make_split(mnist.test_images, mnist.test_labels, cfg.normalization, b.device)
    r = train_model(model, b, train, val, cfg, seed, BackendOptions(channels_last=nhwc))
    s = r.summary
    return {"recipe": name, "seed": seed, "backend": backend, "reached": s["time_to_accuracy_s"] == s[
        "time_to_accuracy_s"], "tta_s": s["time_to_accuracy_s"], "train_s": s["train_s"], "epochs": s["epochs_run"],
            "validation_accuracy": s["test_accuracy"], "test_accuracy": evaluate(r.model, test, b)[1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--evals-per-epoch", type=int, default=4)
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    mnist = resolve_mnist(None)
    names = [n for n in a.recipes.split(",") if n]
    order = names + (["plain"] if names and names[0] == "plain" else [])  # plain again at the end: the drift
    rows = [run(a.model, n, seed, a.target, mnist, a.evals_per_epoch) for seed in range(a.seeds) for n in order]
    d = pd.DataFrame(rows)
    plain = d[d.recipe == "plain"].tta_s
    base = statistics.median(plain) if len(plain) and plain.notna().all() else float("nan")
    d["vs_plain"] = d.tta_s / base
    pd.set_option("display.width", 200)
    print(d.round(4).to_string(index=False))
    flags = open("/proc/cpuinfo").read().split()
    print(f"cpu flags: {' '.join(f for f in ('avx512_bf16', 'amx_bf16', 'avx512f') if f in flags)}; "
          f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
