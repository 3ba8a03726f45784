"""ONNX Runtime on the CPU vs PyTorch eager, batch 1 and 1024, both models: ORT's default
session next to tuned variants (graph optimization level, intra/inter-op threads), measured
side by side in one process with the harness's inference benchmark.

    python benchmarks/ort_tuning.py [--budget-s 1.0]
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from bench.config.build import InferConfig
from bench.data.mnist import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.engines.onnxruntime import OrtOptions
from bench.measure.latency import benchmark_call, input_batch
from bench.scheduling.cells import calibration_images
from models import build_model

VARIANTS = {
    "default (all, threads 0/0)": BackendOptions(),
    "basic, threads 0/0": BackendOptions().with_engine(OrtOptions(ort_opt_level="basic")),
    "all, intra 1": BackendOptions().with_engine(OrtOptions(ort_intra_threads=1)),
    "all, intra 2, inter 1": BackendOptions().with_engine(OrtOptions(ort_intra_threads=2, ort_inter_threads=1)),
    "all, intra 4": BackendOptions().with_engine(OrtOptions(ort_intra_threads=4)),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget-s", type=float, default=1.0)
    p.add_argument("--batch-sizes", default="1,1024")
    args = p.parse_args()
    m = resolve_mnist()
    test = make_split(m.test_images, m.test_labels, "minmax", "cpu")
    calibration = calibration_images(make_split(m.train_images, m.train_labels, "minmax", "cpu", 1024))
    cfg = InferConfig(budget_s=args.budget_s, warmup_calls=5, min_repeats=10)
    eager_backend, ort_backend = get_backend("cpu-fp32"), get_backend("onnxruntime-cpu")

    def measure(prepared, bs):
        x = prepared.to_input(input_batch(test.x, bs))
        return benchmark_call(lambda: prepared.predict(x), prepared.clock_device, cfg, bs)

    rows = []
    for name in ("mlp", "cnn"):
        torch.manual_seed(0)
        model = build_model(name).eval()
        eager_prepared = eager_backend.engine.prepare(model, eager_backend, BackendOptions(), calibration)
        sessions = {label: ort_backend.engine.prepare(model, ort_backend, opts, calibration)
                    for label, opts in VARIANTS.items()}
        for bs in map(int, args.batch_sizes.split(",")):
            eager = measure(eager_prepared, bs)
            rows.append({"model": name, "batch": bs, "engine": "pytorch eager", "p50_ms": eager["p50_latency_ms"],
                         "cv": eager["cv"], "vs_eager": 1.0})
            for label, prepared in sessions.items():
                r = measure(prepared, bs)
                rows.append({"model": name, "batch": bs, "engine": f"onnxruntime {label}",
                             "p50_ms": r["p50_latency_ms"], "cv": r["cv"],
                             "vs_eager": eager["p50_latency_ms"] / r["p50_latency_ms"]})
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(f"torch threads {torch.get_num_threads()}; vs_eager = eager p50 / this p50 (> 1: faster than eager)")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
