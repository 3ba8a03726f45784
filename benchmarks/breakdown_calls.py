"""How many profiled calls a breakdown needs. Each cell of the breakdown pass profiles up to
``MAX_CALLS`` calls (bench/measure/breakdown.py); reading a profile back costs more than the calls.
This repeats the breakdown of one call at two counts, alternately, and prints per count the median
time the profiled look took and each category's mean share with its standard deviation over the
repeats: the count is enough where its spread is no wider than the larger count's.

    python -m benchmarks.breakdown_calls [--counts 100,400] [--repeats 6] [--threads 2]

Models untrained (the shares depend on the shapes, not the weights), eager fp32 and ONNX Runtime,
batches 1 and 32."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from bench.engines.base import BackendOptions, Prepared
from bench.engines.onnxruntime import OrtSession, export_onnx
from bench.measure.breakdown import Look
from models import build_model


def _plain_s(prepared: Prepared, x, calls: int = 200) -> float:
    for _ in range(5):
        prepared.predict(x)
    start = time.perf_counter()
    for _ in range(calls):
        prepared.predict(x)
    return (time.perf_counter() - start) / calls


def _cells(model_name: str, folder: Path) -> dict[str, Prepared]:
    model = build_model(model_name).eval()
    path = folder / f"{model_name}.onnx"
    export_onnx(model, path)
    ort = OrtSession(path, "cpu", BackendOptions())
    eager = Prepared(model, "cpu")
    onnx = Prepared(ort.run, "cpu", to_input=lambda x: x.numpy(), operators=ort.operators)
    return {"cpu-fp32": eager, "onnxruntime-cpu": onnx}


def _spread(prepared: Prepared, x, counts: list[int], repeats: int) -> dict[int, tuple[float, pd.DataFrame]]:
    """Per count: the median seconds a look took, and the category shares of each repeat (columns)."""
    shares: dict[int, list[pd.Series]] = {n: [] for n in counts}
    cost: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(repeats):
        for n in counts:
            wall = _plain_s(prepared, x)
            start = time.perf_counter()
            table = Look(prepared, x, wall, wall).table(n)
            cost[n].append(time.perf_counter() - start)
            shares[n].append(table[table.kind == "category"].set_index("name").share)
    return {n: (statistics.median(cost[n]), pd.concat(shares[n], axis=1)) for n in counts}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="100,400")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for model_name in ("mlp", "cnn"):
            cells = _cells(model_name, Path(tmp))
            for bs in (1, 32):
                for backend, prepared in cells.items():
                    x = prepared.to_input(torch.randn(bs, 1, 28, 28))
                    parts = []
                    for n, (seconds, df) in _spread(prepared, x, counts, args.repeats).items():
                        mean, sd = df.mean(axis=1), df.std(axis=1)
                        shown = mean[mean > 0.05].index
                        parts.append(f"{n} calls: {seconds:.3f} s a look, largest sd {sd[shown].max():.3f} ("
                                     + ", ".join(f"{k} {mean[k]:.2f}±{sd[k]:.3f}" for k in shown) + ")")
                    print(f"{model_name} batch {bs} {backend}: " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
