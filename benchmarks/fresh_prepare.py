"""How long a fresh process (a timing worker of ``run --processes N``, a serving process) takes to
prepare a model's backends from what the run's process hands it (``bench.scheduling.fresh``):
the run's process prepares the ONNX backends once (its own fp32 export), hands over the weights
and what the engines made, and a new Python process times ``prepare_again`` on that spec, a few
times. Run it from two checkouts to compare their preparation.

    python -m benchmarks.fresh_prepare [--models mlp,cnn] [--repeats 3]

Prints per model each fresh process's ``prepare_again`` seconds and its imports' seconds."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import models
from bench.config.build import build_config
from bench.engines.backends import get_backend
from bench.scheduling.fresh import handed_over

BACKENDS = ("cpu-fp32", "cpu-bf16", "cpu-fp32-compile", "onnxruntime-cpu", "onnxruntime-int8-static")
CHILD = ("import sys, time; t0 = time.perf_counter(); import torch; from bench.scheduling.fresh import prepare_again; "
         "spec = torch.load(sys.argv[1], weights_only=False); t = time.perf_counter(); prepare_again(spec); "
         "print(f'{time.perf_counter() - t:.2f} {t - t0:.2f}')")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    cfg = build_config({"preset": "quick", "backends": ",".join(BACKENDS)})
    calibration = torch.randn(512, 1, 28, 28)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            torch.manual_seed(0)
            net = models.build_model(model).eval()
            for name in BACKENDS:
                b = get_backend(name)
                if not b.engine.trains:
                    b.engine.prepare(net, b, cfg.backend_options, calibration)  # as the run's process does
            spec = Path(tmp) / f"{model}.pt"
            torch.save(handed_over(model, {name: net for name in BACKENDS}, cfg, calibration), spec)
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, "-c", CHILD, str(spec)], capture_output=True, text=True,
                                     check=True)
                prepare_s, imports_s = out.stdout.split()
                print(f"{model}: prepare_again {prepare_s} s (imports {imports_s} s)", flush=True)


if __name__ == "__main__":
    main()
