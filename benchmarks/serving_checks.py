"""The deployment scenarios' own targets, measured (issue: MLPerf LoadGen scenarios).

    python benchmarks/serving_checks.py [--model mlp] [--backend onnxruntime-cpu] [--repeats 3]
           [--seconds 0.5] [--steps 7] [--tail-qps 2000] [--tail-seconds 5]

For one model and backend (trained once with the quick recipe on the first 12,000 images):

1. repeat: the Server search (one call per query, and dynamic batching) ``--repeats`` times; the
   highest VALID rate of each, its spread (max/min - 1), and whether each search's VALID tests have
   p99 rising with the rate;
2. tail: a Server test at ``--tail-qps`` for ``--tail-seconds``: the latency of the median and of the
   slowest 1% of queries, split into LoadGen's issue delay, the hand-over, the call, the answer,
   and the share of stalled calls (over 10x the median call);
3. agreement: the tight-loop batch-1 latency (``bench.measure.latency.benchmark_call``: the call
   alone), the same call through the SUT's path without LoadGen (index, call, argmax, numpy), and
   LoadGen's SingleStream p50 and p90: what each layer adds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.config.build import InferConfig, build_config
from bench.data.mnist import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.measure.latency import benchmark_call
from bench.scheduling.cells import calibration_images
from bench.serving.scenarios import BackendScenarios, ServePlan, max_valid_qps
from bench.serving.sut import ServedModel
from bench.training.train import TrainJob, train_model
from models import get_spec
from reports.serving_section import latency_bands


def prepared_backend(model: str, backend: str):
    cfg = build_config({"models": model, "backends": "cpu-fp32", "preset": "quick"})
    mnist = resolve_mnist(None)
    t = cfg.train_for(model)
    train = make_split(mnist.train_images, mnist.train_labels, t.normalization, "cpu", t.limit_train)
    test = make_split(mnist.test_images, mnist.test_labels, t.normalization, "cpu", None)
    net = train_model(TrainJob(model, get_backend("cpu-fp32"), train, test, t, 0, BackendOptions())).model.eval()
    b = get_backend(backend)
    return b.engine.prepare(net, b, BackendOptions(), calibration_images(train)), test


def repeat(scen: BackendScenarios, repeats: int) -> pd.DataFrame:
    rows = []
    for r in range(repeats):
        best = float("nan")
        for batching in (False, True):
            points = scen.server(batching, start=2 * best if batching and best == best else None)
            best = max_valid_qps(points)
            valid = sorted((p["target_qps"], p["p99_ms"], p["p50_ms"]) for p in points if p["valid"])
            invalid = [p["target_qps"] for p in points if not p["valid"]]
            p99, p50 = [v[1] for v in valid], [v[2] for v in valid]
            rows.append({"repeat": r + 1, "batching": batching, "max_valid_qps": max_valid_qps(points),
                         "tests": len(points), "valid_tests": len(valid),
                         # the search's premise: no VALID rate above an INVALID one
                         "valid_below_invalid": all(v[0] < min(invalid, default=float("inf")) for v in valid),
                         "p50_rises": all(a <= b * 1.05 for a, b in zip(p50, p50[1:])),
                         "p99_rises": all(a <= b for a, b in zip(p99, p99[1:])),
                         "valid (qps: p50/p99 ms)": " ".join(f"{q:.0f}:{m:.2f}/{v:.2f}" for q, v, m in valid)})
    return pd.DataFrame(rows)


def tail(scen: BackendScenarios, qps: float) -> pd.DataFrame:
    d = scen.breakdown(qps)
    print(f"  at {qps:.0f} QPS: LoadGen p99 {d.p99_ms.iloc[0]:.3f} ms, {'VALID' if d.valid.iloc[0] else 'INVALID'}; "
          f"{len(d)} queries")
    return pd.DataFrame(latency_bands(d)).round(4)


def agreement(prepared, test, seconds: float, log_root: Path) -> pd.DataFrame:
    x = prepared.to_input(test.x[:1])
    tight = benchmark_call(lambda: prepared.predict(x), prepared.clock_device, InferConfig(budget_s=0.3), 1)
    served = ServedModel(prepared, test.x)
    times = []
    for i in range(3000):
        t0 = time.perf_counter_ns()
        served.classes([i % len(test.x)])
        times.append(time.perf_counter_ns() - t0)
    plan = ServePlan(("single-stream",), seconds, 10.0, 32, 500, 1, 1)
    ss = BackendScenarios(served, test.y, plan, log_root).fixed("single-stream")
    return pd.DataFrame([{"layer": "tight loop: the call alone (p50)", "ms": tight["p50_latency_ms"]},
                         {"layer": "SUT path without LoadGen: index, call, argmax, numpy (p50)",
                          "ms": statistics.median(times) / 1e6},
                         {"layer": "LoadGen SingleStream p50", "ms": ss["p50_ms"]},
                         {"layer": "LoadGen SingleStream p90", "ms": ss["p90_ms"]}]).round(4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mlp")
    p.add_argument("--backend", default="onnxruntime-cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--tail-qps", type=float, default=2000.0)
    p.add_argument("--tail-seconds", type=float, default=5.0)
    p.add_argument("--only", choices=["repeat", "tail", "agreement"], help="one part only")
    a = p.parse_args()
    torch.set_num_threads(2)
    prepared, test = prepared_backend(a.model, a.backend)
    bound = get_spec(a.model).latency_bound_ms
    pd.set_option("display.width", 200)
    with tempfile.TemporaryDirectory() as tmp:
        plan = ServePlan(("server",), a.seconds, bound, 32, 500, a.steps, 1024)
        scen = BackendScenarios(ServedModel(prepared, test.x), test.y, plan, Path(tmp) / "repeat")
        if a.only in (None, "repeat"):
            print(f"1. Server search, {a.model} {a.backend}, p99 bound {bound:g} ms, {a.steps} tests of {a.seconds} s:")
            r = repeat(scen, a.repeats)
            print(r.to_string(index=False))
            for batching, g in r.groupby("batching"):
                q = g.max_valid_qps
                print(f"  batching={batching}: max VALID QPS {', '.join(f'{v:.0f}' for v in q)}; each within "
                      f"{(q / q.median() - 1).abs().max():.1%} of their median; max/min {q.max() / q.min():.3f}")
        if a.only in (None, "tail"):
            print("2. Tail at a fixed rate:")
            tail_plan = ServePlan(("server",), a.tail_seconds, bound, 32, 500, 1, 1024)
            print(tail(BackendScenarios(ServedModel(prepared, test.x), test.y, tail_plan, Path(tmp) / "tail"),
                       a.tail_qps).to_string(index=False))
        if a.only in (None, "agreement"):
            print("3. SingleStream against the tight loop:")
            print(agreement(prepared, test, a.seconds, Path(tmp) / "agree").to_string(index=False))
    flags = Path("/proc/cpuinfo").read_text().split()
    print(f"cpu flags: {' '.join(f for f in ('avx512_bf16', 'avx512f', 'avx2') if f in flags)}; "
          f"torch threads {torch.get_num_threads()}; numpy {np.__version__}")


if __name__ == "__main__":
    main()
