"""A training verdict's explanation checked by removing its cause. The step breakdown
(bench/training/breakdown.py) says cpu-fp32-compile trains slower than cpu-fp32 because of its
compiled forward graph (no graph break, nothing recompiled, the optimizer's step the same): the
graph's own kernels take longer than eager's. One candidate cause is dropout's random mask, which
the compiled graph generates itself. Remove it (the model built with dropout off) and measure the
ratio of compiled to eager steps again, in paired interleaved rounds (eager, compiled, compiled,
eager, ...), each round a block of steps on the same batch.

    python -m benchmarks.step_breakdown_check [--models mlp,cnn] [--batch-size 64] [--rounds 15]

Prints, per model and dropout setting, the paired ratio with its 95% interval and where the
compiled step's extra time goes (by phase and by kind, from the step breakdown)."""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from bench.analysis.breakdown import why
from bench.config.types import TrainConfig
from bench.engines.backends import get_backend
from bench.engines.base import BackendOptions
from bench.measure.figures import time_ratio
from bench.training.breakdown import step_breakdown
from bench.training.train import build_optimizer, build_trainable, make_train_step

BLOCK = 5  # steps per timed block
PASSES = 3  # breakdown passes per backend


def _median(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Row by row, the median of the passes' figures."""
    keys = ["kind", "name"]
    numbers = pd.concat(tables).groupby(keys, sort=False).median(numeric_only=True).reset_index()
    return tables[0][keys + ["category"]].merge(numbers, on=keys)


def _steps(model_name: str, dropout: bool, batch_size: int) -> dict:
    steps = {}
    for name in ("cpu-fp32", "cpu-fp32-compile"):
        b = get_backend(name)
        model = build_trainable(model_name, b, BackendOptions(), seed=0, dropout=dropout)
        opt, _ = build_optimizer(model, TrainConfig(batch_size=batch_size), 1000)
        steps[name] = (make_train_step(b.engine.training_forward(model, b), b, opt), model)
    return steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    torch.manual_seed(0)
    x, y = torch.rand(args.batch_size, 1, 28, 28), torch.arange(args.batch_size) % 10
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.rounds} paired rounds of {BLOCK} steps")
    for model_name in args.models.split(","):
        for dropout in (True, False):
            steps = _steps(model_name, dropout, args.batch_size)
            for step, _ in steps.values():
                for _ in range(5):  # warm: the compiled graph is built on the first step
                    step(x, y)
            seconds: dict[str, list[float]] = {n: [] for n in steps}
            for r in range(args.rounds):
                for n in (list(steps) if r % 2 == 0 else list(reversed(steps))):
                    start = time.perf_counter()
                    for _ in range(BLOCK):
                        steps[n][0](x, y)
                    seconds[n].append((time.perf_counter() - start) / BLOCK)
            ratio = time_ratio(dict(enumerate(seconds["cpu-fp32"])), dict(enumerate(seconds["cpu-fp32-compile"])))
            tables = {n: [] for n in steps}
            for r in range(PASSES):  # alternating passes, each table the median of its passes' (drift moves one)
                for n in (list(steps) if r % 2 == 0 else list(reversed(steps))):
                    step, model = steps[n]
                    tables[n].append(step_breakdown(step, model, iter(lambda: (x, y), None), "cpu",
                                                    float(pd.Series(seconds[n]).median())))
            tables = {n: _median(t) for n, t in tables.items()}
            words = why(tables["cpu-fp32-compile"], tables["cpu-fp32"], ratio["ratio"])
            print(f"\n{model_name}, dropout {'on' if dropout else 'off'}: compiled step "
                  f"{ratio['ratio']:.2f}x eager [{ratio['ratio_low']:.2f}, {ratio['ratio_high']:.2f}] "
                  f"(eager {pd.Series(seconds['cpu-fp32']).median() * 1e3:.2f} ms, compiled "
                  f"{pd.Series(seconds['cpu-fp32-compile']).median() * 1e3:.2f} ms)\n  where the gap goes: {words}")


if __name__ == "__main__":
    main()
