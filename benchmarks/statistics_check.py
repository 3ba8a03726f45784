"""Does the tool's statistics say the truth on this machine? A/A and power checks.

- A/A across runs: the same configuration run twice back to back; ``compare`` should call >= 90%
  of cells "no significant difference".
- A/A inside a run: ``cpu-fp32`` and an identical twin (``cpu-fp32-twin``, the same engine) in one
  run; their paired ratio should lie within +-5% of 1 in >= 90% of cells.
- Power: ``cpu-fp32`` against a backend exactly 10% slower (``cpu-fp32-slowed``: the same predict
  plus a busy-wait of 10% of the real call); >= 90% of its cells should be reported significantly
  slower, with intervals that cover 1.10.

    python benchmarks/statistics_check.py [--rounds 7] [--budget-s 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import pandas as pd

from bench.backends import BACKENDS, Backend
from bench.config import build_config
from bench.engines import ENGINES
from bench.engines.base import Prepared
from bench.engines.eager import EagerEngine
from bench.measure.clocks import clock_for, time_calls
from bench.results import read_run
from bench.runner import Runner
from reports.compare import compare
from reports.comparison import rank_backends, round_values

SLOWDOWN = 1.10


class TwinEngine(EagerEngine):
    """Eager PyTorch under another name: an A/A twin of ``cpu-fp32``."""

    name = "eager-twin"
    reference = False


class SlowedEngine(EagerEngine):
    """Eager PyTorch inference made ``slowdown`` times slower, as the harness times it: each call is
    the real call plus a busy-wait of (slowdown - 1) x (that call's own duration + the harness's
    per-call overhead), less this wrapper's own cost. The overhead is calibrated per input shape
    (21 calls timed inside and as the harness times them); the wrapper's cost once, on a call that
    does nothing (2,001 calls each way). So the slowdown tracks the machine's drift call by call."""

    name = "eager-slowed"
    trains = False
    reference = False

    def __init__(self, slowdown: float = SLOWDOWN) -> None:
        self.slowdown = slowdown

    def prepare(self, model, backend, options, calibration) -> Prepared:
        real = super().prepare(model, backend, options, calibration)
        clock = clock_for(real.clock_device)
        overhead_s: dict[tuple, float] = {}

        def slowed(call, key, extra: float):
            start = time.perf_counter()
            out = call()
            inner = time.perf_counter() - start
            end = time.perf_counter() + (self.slowdown - 1) * (inner + overhead_s.get(key, 0.0)) - extra
            while time.perf_counter() < end:
                pass
            return out, inner

        def noop():
            return None

        plain, _ = time_calls(lambda: slowed(noop, None, float("inf")), clock, 2001)
        bare, _ = time_calls(noop, clock, 2001)
        wrapper_cost = max(0.0, statistics.median(plain) - statistics.median(bare))

        def predict(x):
            if x.shape not in overhead_s:
                inner = []
                outer, _ = time_calls(lambda: inner.append(slowed(lambda: real.predict(x), None,
                                                                  float("inf"))[1]), clock, 21)
                overhead_s[x.shape] = max(0.0, statistics.median(outer) - statistics.median(inner))
            return slowed(lambda: real.predict(x), x.shape, wrapper_cost)[0]

        return Prepared(predict, real.clock_device, real.to_input, real.to_logits, real.facts)


@contextlib.contextmanager
def extra_backends():
    """Register the twin and the slowed backend for the duration of a check."""
    added = {"cpu-fp32-twin": Backend("cpu-fp32-twin", TwinEngine(), "cpu", "fp32"),
             "cpu-fp32-slowed": Backend("cpu-fp32-slowed", SlowedEngine(), "cpu", "fp32")}
    engines = {b.engine.name: b.engine for b in added.values()}
    ENGINES.update(engines)
    BACKENDS.update(added)
    try:
        yield
    finally:
        for name in added:
            BACKENDS.pop(name)
        for name in engines:
            ENGINES.pop(name)


def run(values: dict, out: Path) -> Path:
    return Runner(build_config({**values, "out": str(out)}), progress=False).run()


def aa_across_runs(values: dict, out: Path) -> dict:
    first, second = run(values, out / "aa1"), run(values, out / "aa2")
    m = compare([first, second]).matched
    normalized = compare([first, second], normalize=True).matched
    return {"cells": len(m), "no_significant_difference": float((~m.significant).mean()),
            "no_significant_difference_normalized": float((~normalized.significant).mean()), "table": m}


def aa_inside_run(values: dict, out: Path) -> dict:
    with extra_backends():  # registered in this process only: their rounds run here (processes 1)
        run_dir = run({**values, "backends": "cpu-fp32,cpu-fp32-twin", "processes": 1}, out / "twin")
    ranked = rank_backends(round_values(read_run(run_dir)), baseline="cpu-fp32")
    twin = ranked[ranked.backend == "cpu-fp32-twin"]
    within = (twin.time_vs_baseline - 1).abs() <= 0.05
    return {"cells": len(twin), "within_5pct": float(within.mean()), "table": twin}


def power(values: dict, out: Path) -> dict:
    with extra_backends():
        run_dir = run({**values, "backends": "cpu-fp32,cpu-fp32-slowed", "processes": 1}, out / "power")
    ranked = rank_backends(round_values(read_run(run_dir)), baseline="cpu-fp32")
    slowed = ranked[(ranked.backend == "cpu-fp32-slowed") & (ranked.phase == "infer")]
    detected = slowed.time_vs_baseline_low > 1
    covers = (slowed.time_vs_baseline_low <= SLOWDOWN) & (SLOWDOWN <= slowed.time_vs_baseline_high)
    return {"cells": len(slowed), "detected": float(detected.mean()), "covers_1.10": float(covers.mean()),
            "table": slowed}


def main() -> None:
    import tempfile

    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget-s", type=float, default=0.5)
    p.add_argument("--batch-sizes", default="1,32,256")
    p.add_argument("--limit-train", type=int, default=4096)
    p.add_argument("--processes", type=int, default=1, help="worker processes the rounds are spread over")
    p.add_argument("--checks", default="aa-runs,aa-inside,power")
    p.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = p.parse_args()
    values = {"models": "mlp,cnn", "backends": "cpu-fp32,onnxruntime-cpu", "epochs": 1,
              "limit_train": args.limit_train, "limit_test": 2000, "batch_sizes": args.batch_sizes,
              "rounds": args.rounds, "budget_s": args.budget_s, "processes": args.processes}
    checks = {"aa-runs": ("A/A across runs", aa_across_runs),
              "aa-inside": ("A/A inside a run", aa_inside_run), "power": ("power (10% slower)", power)}
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.checks.split(","):
            name, check = checks[key]
            result = check(values, args.out or Path(tmp))
            cols = [c for c in ("model", "backend", "phase", "batch_size", "time_ratio", "time_ratio_low",
                                "time_ratio_high", "time_vs_baseline", "time_vs_baseline_low",
                                "time_vs_baseline_high", "verdict", "vs_baseline") if c in result["table"]]
            print(f"\n== {name}: " + ", ".join(f"{k} {v:.0%}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in result.items() if k != "table"))
            print(pd.DataFrame(result["table"])[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
