"""The process state's cost and repeatability, and an independent check of the harness's clock.

For each allocator (``--allocator`` of a run: tuned, system, jemalloc, tcmalloc), N fresh
processes, alternated (tuned, system, ..., tuned, system, ...) so the machine's drift hits every
allocator alike. Each process puts itself in that state exactly as a run does
(``bench.measure.process_state``), prepares cpu-fp32, cpu-bf16 and onnxruntime-cpu for the MLP and
the CNN (random weights; real test images as input), and at each batch size times every backend
twice, in the same process and on the same input:

- the harness: ``measure_rounds`` as a run calls it (interleaved rounds, blocks, warm-up), its
  figure the median over rounds of each round's median call;
- an independent clock: ``torch.utils.benchmark.Timer.blocked_autorange`` for the PyTorch
  backends, a plain ``session.run`` loop timed with ``time.perf_counter`` for ONNX Runtime.

Prints, per allocator, backend and batch size: the median call over processes, its spread over
processes (max/min - 1), the system allocator's figure against it, and the harness against the
independent clock.

    python -m benchmarks.process_state [--processes 5] [--allocators tuned,system,jemalloc]
        [--batch-sizes 1,256,1024] [--out docs/results/process_state.csv]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BACKENDS = ("cpu-fp32", "cpu-bf16", "onnxruntime-cpu")
MODELS = ("mlp", "cnn")


def child(allocator: str, sizes: list[int], threads: int) -> list[dict]:
    """One fresh process: the allocator's state, then every (model, backend, batch size)."""
    from bench.measure import process_state

    process_state.apply(allocator)
    import torch
    from torch.utils import benchmark as tb

    from bench.config.types import InferConfig
    from bench.data.mnist import make_split, resolve_mnist
    from bench.engines import BackendOptions
    from bench.engines.backends import get_backend
    from bench.measure.figures import headline_rate
    from bench.measure.latency import input_batch
    from bench.measure.rounds import Contender, measure_rounds
    from bench.training.train import build_trainable

    torch.set_num_threads(threads)
    mnist = resolve_mnist(None, fill_cache=False)
    test = make_split(mnist.test_images, mnist.test_labels, "standard", "cpu", 2000)
    calib = test.x[:256]
    options, rows = BackendOptions(), []
    cfg = InferConfig(rounds=8, budget_s=0.8, resolution_pct=0.0)
    for model_name in MODELS:
        prepared = {}
        for name in BACKENDS:
            b = get_backend(name)
            b.configure(options)
            net = build_trainable(model_name, b, options, 0)
            prepared[name] = b.engine.prepare(net, b, options, calib)
        for bs in sizes:
            inputs = {n: p.to_input(input_batch(test.x, bs)) for n, p in prepared.items()}
            contenders = [Contender(n, lambda p=p, x=inputs[n]: p.predict(x), p.clock_device)
                          for n, p in prepared.items()]
            measure_rounds(contenders, bs, cfg)
            for c in contenders:
                t = pd.DataFrame(c.rows)
                per_round = (t.seconds).groupby(t["round"]).median()
                harness_ms = 1e3 / headline_rate(per_round.to_numpy())
                independent_ms, how = _independent(prepared[c.name], inputs[c.name], tb)
                rows.append({"allocator": allocator, "pid": os.getpid(), "model": model_name, "backend": c.name,
                             "batch_size": bs, "harness_ms": harness_ms, "independent_ms": independent_ms,
                             "independent_clock": how, "failure": c.failure})
    return rows


def _independent(prepared, x, tb) -> tuple[float, str]:
    """The median call by a clock the harness does not own."""
    session = getattr(getattr(prepared.predict, "__self__", None), "session", None)  # an OrtSession's own
    if session is not None:  # ONNX Runtime: a plain loop over the InferenceSession
        feed = {session.get_inputs()[0].name: x}
        for _ in range(3):
            session.run(None, feed)
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < 1.5 or len(times) < 10:
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1e3, "session.run loop"
    timer = tb.Timer("predict(x)", globals={"predict": prepared.predict, "x": x}, num_threads=_threads())
    m = timer.blocked_autorange(min_run_time=1.5)
    return float(m.median) * 1e3, "torch Timer"


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=5)
    p.add_argument("--allocators", default="tuned,system")
    p.add_argument("--batch-sizes", default="1,256,1024")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="also write every process's rows (CSV)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.child:
        print(json.dumps(child(args.child, sizes, args.threads)))
        return 0
    from bench.measure import process_state

    allocators = args.allocators.split(",")
    for a in allocators:
        process_state.check_available(a)
    rows = []
    for i in range(args.processes):
        for a in allocators:
            env = dict(os.environ)
            env.pop("LD_PRELOAD", None)
            for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
                env.pop(k, None)
            if a in process_state.PRELOADED:
                env["LD_PRELOAD"] = str(process_state.library_path(a))
            cmd = [sys.executable, "-m", "benchmarks.process_state", "--child", a, "--batch-sizes", args.batch_sizes,
                   "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            rows += json.loads(out.stdout.strip().splitlines()[-1])
            print(f"process {i + 1}/{args.processes} {a}: done", file=sys.stderr)
    df = pd.DataFrame(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    print(report(df, allocators[0]))
    return 0


def report(df: pd.DataFrame, default: str) -> str:
    keys = ["model", "backend", "batch_size"]
    g = df.groupby(["allocator", *keys])
    t = g.harness_ms.agg(["median", "min", "max", "count"])
    t["spread"] = t["max"] / t["min"] - 1
    t["within_5pct_of_median"] = g.harness_ms.apply(lambda s: float((abs(s / s.median() - 1) <= 0.05).mean()))
    t["harness_vs_independent"] = g.apply(lambda d: float(np.median(d.harness_ms / d.independent_ms)))
    t = t.reset_index()
    base = t[t.allocator == default].set_index(keys)["median"]
    t["vs_" + default] = [m / base.get(tuple(k), np.nan) for m, k in zip(t["median"], t[keys].to_numpy())]
    order = {m: i for i, m in enumerate(MODELS)}
    t = t.sort_values(["model", "backend", "batch_size", "allocator"], key=lambda s: s.map(order) if s.name ==
                      "model" else s)
    return t.to_string(index=False, float_format=lambda v: f"{v:.3f}")


if __name__ == "__main__":
    sys.exit(main())
