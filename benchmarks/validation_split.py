"""How the held-out validation split reads against the test split: the file's last 5,000 training
images against a random draw of 5,000 (``bench.training.tta.validation_splits``), each model trained to the
end of its fast recipe (no stopping), the final weights evaluated on both.

    python -m benchmarks.validation_split [--models mlp,cnn] [--seeds 3]

A validation split whose accuracy sits above the test split's lets a run meet its target on
easier digits; this measures by how much, for both ways of holding images out.
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
from bench.training.tta import validation_splits
from benchmarks.recipe_search import _settings

HELD_OUT = 5000


def splits(mnist, draw: str, normalization: str):
    if draw == "random":
        return validation_splits(mnist, normalization, "cpu", None, HELD_OUT)
    keep = len(mnist.train_labels) - HELD_OUT
    return (make_split(mnist.train_images[:keep], mnist.train_labels[:keep], normalization, "cpu"),
            make_split(mnist.train_images[keep:], mnist.train_labels[keep:], normalization, "cpu"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--seeds", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(2)
    mnist = resolve_mnist(None)
    rows = []
    for model in a.models.split(","):
        backend, fields, nhwc = _settings(model, "fast")
        cfg = TrainConfig(**{**fields, "evals_per_epoch": 1}, target_accuracy=1.0, warmup_steps=0)
        b = get_backend(backend)
        test = make_split(mnist.test_images, mnist.test_labels, cfg.normalization, "cpu")
        for draw in ("last", "random"):
            train, val = splits(mnist, draw, cfg.normalization)
            for seed in range(a.seeds):
                r = train_model(TrainJob(model, b, train, val, cfg, seed, BackendOptions(channels_last=nhwc)))
                rows.append({"model": model, "held_out": draw, "seed": seed,
                             "validation_accuracy": evaluate(r.model, val, b)[1],
                             "test_accuracy": evaluate(r.model, test, b)[1]})
                print(rows[-1], flush=True)
    d = pd.DataFrame(rows)
    d["validation_minus_test_pts"] = 100 * (d.validation_accuracy - d.test_accuracy)
    print(d.groupby(["model", "held_out"], sort=False)[["validation_accuracy", "test_accuracy",
                                                        "validation_minus_test_pts"]].agg(["min", "max"]).round(4)
          .to_string())


if __name__ == "__main__":
    main()
