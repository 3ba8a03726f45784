"""Does the tool's statistics say the truth on this machine? The targets of the verdicts, measured.

Within a run (the quick preset, default flags, auto backends, two runs back to back):
  the paired interval width (high / low) of every backend against cpu-fp32 (median and largest),
  contradictions between the two runs (significantly faster in one, slower in the other) and the
  share of the same verdict; power: a backend exactly 10% slower than cpu-fp32 (``cpu-fp32-slowed``,
  the same predict plus a busy-wait of 10% of the call) reported slower in what share of cells.
Across runs: ``mnist-bench calibrate`` (3 runs, fresh processes), then three A/A runs of one
  configuration compared pairwise (default flags: uncalibrated, and with the calibration;
  ``--normalize`` too), and a run whose ``cpu-fp32-slowed`` is 25% slower compared with each.
With worker processes (``--checks processes``): two A/A runs and a 25% slower one, each with
  ``--processes N``, compared with the intervals the processes give (no calibration).
Wall time: each quick run's, against ``--quick-before-s`` (today's quick preset here).

Repeatability (``--checks repeat``): the same quick command twice, back to back, 3 pairs: how far
  each ratio to cpu-fp32 moves between the runs of a pair, and whether each interval holds the other.
Relative across runs (``--checks relative``): each backend against the reference of its own run,
  three A/A runs pairwise and a run whose ``cpu-fp32-slowed`` is 10% slower, one run a side
  (intervals widened by each run's processes), and widened by a calibration instead.

    python -m benchmarks.statistics_check [--checks within,power,across,repeat,relative] [--out DIR]
        [--reuse]   (read the runs already in --out again: the same measurements, today's analysis)

Every run is a fresh ``python -m bench run`` process; the extra backends reach those processes
through ``MNIST_BENCH_PLUGINS=benchmarks.stat_backends``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.comparison import compare
from bench.analysis.paired import rank_backends
from bench.analysis.ranked import cell_rounds
from bench.config.build import build_config
from bench.engines.control import SLOWDOWN, registered
from bench.scheduling.runner import Runner
from bench.storage.catalog import DEFAULT_REFERENCE as REFERENCE
from bench.storage.results import read_run


def run(values: dict, out: Path) -> Path:
    return Runner(build_config({**values, "out": str(out)}), progress=False).run()


def aa_inside_run(values: dict, out: Path) -> dict:
    with registered():  # in this process only: their rounds run here (processes 1)
        run_dir = run({**values, "backends": "cpu-fp32,cpu-fp32-twin", "processes": 1}, out / "twin")
    ranked = rank_backends(cell_rounds(read_run(run_dir)), baseline=REFERENCE)
    twin = ranked[ranked.backend == "cpu-fp32-twin"]
    within = (twin.time_vs_baseline - 1).abs() <= 0.05
    return {"cells": len(twin), "within_5pct": float(within.mean()), "table": twin}


def power(values: dict, out: Path, slowdown: float = SLOWDOWN) -> dict:
    with registered(slowdown):
        run_dir = run({**values, "backends": "cpu-fp32,cpu-fp32-slowed", "processes": 1}, out / "power")
    ranked = rank_backends(cell_rounds(read_run(run_dir)), baseline=REFERENCE)
    slowed = ranked[(ranked.backend == "cpu-fp32-slowed") & (ranked.phase == "infer")]
    detected = slowed.time_vs_baseline_low > 1
    covers = (slowed.time_vs_baseline_low <= slowdown) & (slowdown <= slowed.time_vs_baseline_high)
    return {"cells": len(slowed), "detected": float(detected.mean()), "covers": float(covers.mean()),
            "table": slowed}


# -- the targets, each run a fresh process ---------------------------------------------------------

REUSE = False  # --reuse: read runs already in --out again instead of making them


def fresh_run(out: Path, name: str, args: list[str], slowdown: float = SLOWDOWN, report: bool = False
              ) -> tuple[Path, float]:
    """``python -m bench run ARGS`` in a fresh process; returns its run folder and wall seconds.
    With ``--reuse``, a run of that name already in ``out`` is read again instead (wall time NaN):
    the same measurements analysed by today's code."""
    if REUSE and sorted(out.glob(f"*-{name}")):
        return sorted(out.glob(f"*-{name}"))[-1], float("nan")
    env = {**os.environ, "MNIST_BENCH_SLOWDOWN": str(slowdown),  # plugins only where the run names their backends
           "MNIST_BENCH_PLUGINS": "benchmarks.stat_backends" if "slowed" in " ".join(args) else ""}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "run", *args, "--out", str(out), "--name", name, "-q",
                    *([] if report else ["--no-report"])], env=env, check=True, stdout=subprocess.DEVNULL)
    return sorted(out.glob(f"*-{name}"))[-1], time.perf_counter() - start


def _category(low: float, high: float) -> str:
    return "slower" if low > 1 else "faster" if high < 1 else "tie"


def within(out: Path, preset_args: list[str]) -> dict:
    runs = [fresh_run(out, f"within{i}", preset_args, report=True) for i in (1, 2)]
    ranked = [rank_backends(cell_rounds(read_run(d)), baseline=REFERENCE) for d, _ in runs]
    pairs = [r[r.backend != "cpu-fp32"].set_index(["model", "phase", "batch_size", "backend"]) for r in ranked]
    widths = pd.concat([p.time_vs_baseline_high / p.time_vs_baseline_low for p in pairs])
    a, b = pairs[0], pairs[1].reindex(pairs[0].index)
    ca = [_category(lo, hi) for lo, hi in zip(a.time_vs_baseline_low, a.time_vs_baseline_high)]
    cb = [_category(lo, hi) for lo, hi in zip(b.time_vs_baseline_low, b.time_vs_baseline_high)]
    contradictions = sum({x, y} == {"faster", "slower"} for x, y in zip(ca, cb))
    table = a[["time_vs_baseline", "time_vs_baseline_low", "time_vs_baseline_high", "rounds"]].assign(
        verdict_1=ca, verdict_2=cb, ratio_2=b.time_vs_baseline).reset_index()
    return {"pairs": len(a), "median_width": float(widths.median()), "max_width": float(widths.max()),
            "cells_above_1.5": int((widths > 1.5).sum()), "contradictions": contradictions,
            "same_verdict": float(np.mean([x == y for x, y in zip(ca, cb)])),
            "wall_s": [round(w, 1) for _, w in runs], "table": table}


def power_fresh(out: Path, preset_args: list[str]) -> dict:
    run_dir, wall = fresh_run(out, "power", [*preset_args, "--backends", "cpu-fp32,cpu-fp32-slowed"])
    ranked = rank_backends(cell_rounds(read_run(run_dir)), baseline=REFERENCE)
    slowed = ranked[(ranked.backend == "cpu-fp32-slowed") & (ranked.phase == "infer")]
    return {"cells": len(slowed), "detected_slower": float((slowed.time_vs_baseline_low > 1).mean()),
            "covers_1.10": float(((slowed.time_vs_baseline_low <= SLOWDOWN)
                                  & (SLOWDOWN <= slowed.time_vs_baseline_high)).mean()),
            "wall_s": round(wall, 1), "table": slowed}


def across(out: Path, preset_args: list[str]) -> dict:
    from bench.commands import calibrate_runs as calibrate

    args = [*preset_args, "--backends", "cpu-fp32,onnxruntime-cpu,cpu-fp32-slowed"]
    os.environ.update(MNIST_BENCH_PLUGINS="benchmarks.stat_backends", MNIST_BENCH_SLOWDOWN="1.0")
    cal_path, sigma = calibrate(args, 3, out / "calibration")
    aa = [fresh_run(out, f"aa{i}", args, slowdown=1.0) for i in (1, 2, 3)]
    slow, slow_wall = fresh_run(out, "slow25", args, slowdown=1.25)
    rows, tables = {}, []
    for label, files, normalize in (("default flags (uncalibrated)", [], False),
                                    ("calibrated", [cal_path], False), ("calibrated --normalize", [cal_path], True)):
        m = pd.concat([compare([aa[i][0], aa[j][0]], normalize=normalize, calibration_files=files).matched
                       for i, j in ((0, 1), (1, 2), (0, 2))])
        rows[label] = _aa_summary(m)
        tables.append(m.assign(check=label))
    detect = _slowed_cells(pd.concat([compare([a, slow], calibration_files=[cal_path]).matched for a, _ in aa]))
    rows["25% slower, calibrated"] = _detection(detect, 1.25)
    return {"calibration": sigma, "results": rows, "wall_s": [round(w, 1) for _, w in aa] + [round(slow_wall, 1)],
            "table": pd.concat(tables + [detect.assign(check="25% slower")])}


def processes(out: Path, preset_args: list[str], n: int = 5) -> dict:
    """Across runs with ``--processes n`` (no calibration): two A/A runs and a run whose
    ``cpu-fp32-slowed`` is 25% slower; inference intervals from the worker processes."""
    args = [*preset_args, "--backends", "cpu-fp32,onnxruntime-cpu,cpu-fp32-slowed", "--processes", str(n)]
    aa = [fresh_run(out, f"proc-aa{i}", args, slowdown=1.0) for i in (1, 2)]
    slow, slow_wall = fresh_run(out, "proc-slow25", args, slowdown=1.25)
    m = compare([aa[0][0], aa[1][0]], calibration_files=[]).matched
    detect = _slowed_cells(pd.concat([compare([a, slow], calibration_files=[]).matched for a, _ in aa]))
    return {"processes": n, "A/A": _aa_summary(m), "25% slower": _detection(detect, 1.25),
            "wall_s": [round(w, 1) for _, w in aa] + [round(slow_wall, 1)],
            "table": pd.concat([m.assign(check="A/A"), detect.assign(check="25% slower")])}


def repeat(out: Path, preset_args: list[str], pairs: int = 3) -> dict:
    """The same command twice, back to back, ``pairs`` times (auto backends): how far each ratio to
    cpu-fp32 moves between the two runs of a pair, and whether each run's interval holds the other's ratio."""
    rows, walls = [], []
    for k in range(pairs):
        runs = [fresh_run(out, f"repeat{k}-{i}", preset_args) for i in (1, 2)]
        walls += [round(w, 1) for _, w in runs]
        ranked = [rank_backends(cell_rounds(read_run(d)), baseline=REFERENCE) for d, _ in runs]
        a, b = (r[r.backend != REFERENCE].set_index(["model", "phase", "batch_size", "backend"]) for r in ranked)
        b = b.reindex(a.index)
        rows.append(pd.DataFrame({"pair": k, "ratio_1": a.time_vs_baseline, "ratio_2": b.time_vs_baseline,
                                  "width_1": a.time_vs_baseline_high / a.time_vs_baseline_low,
                                  "width_2": b.time_vs_baseline_high / b.time_vs_baseline_low,
                                  "holds_2_in_1": (a.time_vs_baseline_low <= b.time_vs_baseline)
                                  & (b.time_vs_baseline <= a.time_vs_baseline_high),
                                  "holds_1_in_2": (b.time_vs_baseline_low <= a.time_vs_baseline)
                                  & (a.time_vs_baseline <= b.time_vs_baseline_high)}).reset_index())
    t = pd.concat(rows, ignore_index=True)
    t["move"] = np.maximum(t.ratio_2 / t.ratio_1, t.ratio_1 / t.ratio_2) - 1
    widths = pd.concat([t.width_1, t.width_2])
    return {"cells": len(t), "within_10pct": float((t.move <= 0.10).mean()), "beyond_20pct": int((t.move > 0.20).sum()),
            "largest_move": float(t.move.max()), "interval_holds_other": float(pd.concat([t.holds_2_in_1,
                                                                                          t.holds_1_in_2]).mean()),
            "median_width": float(widths.median()), "wall_s": walls, "table": t}


def relative(out: Path, preset_args: list[str]) -> dict:
    """The relative comparison across single runs: three A/A runs compared pairwise, and a run whose
    ``cpu-fp32-slowed`` is 10% slower (in that run only) compared with each; from the rounds alone,
    and widened by a calibration of the same configuration (``mnist-bench calibrate``, 3 runs)."""
    from bench.commands import calibrate_runs as calibrate

    args = [*preset_args, "--backends", "cpu-fp32,onnxruntime-cpu,cpu-fp32-slowed"]
    aa = [fresh_run(out, f"rel-aa{i}", args, slowdown=1.0) for i in (1, 2, 3)]
    slow, slow_wall = fresh_run(out, "rel-slow10", args, slowdown=1.10)
    os.environ.update(MNIST_BENCH_PLUGINS="benchmarks.stat_backends", MNIST_BENCH_SLOWDOWN="1.0")
    cal_path = out / "rel-calibration" / "calibration.json"
    if not (REUSE and cal_path.is_file()):
        cal_path, _ = calibrate(args, 3, out / "rel-calibration")
    results, tables = {}, []
    for label, files in (("no calibration", []), ("calibrated", [cal_path])):
        m = pd.concat([compare([aa[i][0], aa[j][0]], calibration_files=files).relative.assign(check="A/A")
                       for i, j in ((0, 1), (1, 2), (0, 2))])
        found = pd.concat([compare([a, slow], calibration_files=files).relative for a, _ in aa])
        found = found[found.backend == "cpu-fp32-slowed"].assign(check="10% slower")
        beyond = m[m.significant & ((m.relative_ratio_low > 1 + m.resolution)
                                    | (m.relative_ratio_high < 1 - m.resolution))]
        results[label] = {
            "A/A cells": len(m), "A/A no claim": float((~m.significant).mean()), "A/A claims": int(m.significant.sum()),
            "A/A claims beyond resolution": len(beyond),
            "A/A median width": float((m.relative_ratio_high / m.relative_ratio_low).median()),
            "10% slower cells": len(found), "found": float((found.relative_ratio_low > 1).mean()),
            "covers_1.10": float(((found.relative_ratio_low <= 1.10) & (1.10 <= found.relative_ratio_high)).mean())}
        tables.append(pd.concat([m, found]).assign(intervals=label))
    return {**results, "wall_s": [round(w, 1) for _, w in aa] + [round(slow_wall, 1)], "table": pd.concat(tables)}


def _aa_summary(m: pd.DataFrame) -> dict:
    claims = m[m.significant]
    beyond = claims[(claims.time_ratio_low > 1.25) | (claims.time_ratio_high < 1 / 1.25)]
    return {"cells": len(m), "no_claim": float((~m.significant).mean()), "significant": len(claims),
            "claims_beyond_25pct": len(beyond), "unjudged": int((~m.judged).sum())}


def _slowed_cells(matched: pd.DataFrame) -> pd.DataFrame:
    return matched[(matched.backend == "cpu-fp32-slowed") & (matched.phase == "infer")]


def _detection(cells: pd.DataFrame, factor: float) -> dict:
    return {"cells": len(cells), "detected": float((cells.time_ratio_low > 1).mean()),
            f"covers_{factor}": float(((cells.time_ratio_low <= factor) & (factor <= cells.time_ratio_high)).mean())}


def main() -> None:
    import json
    import tempfile

    p = argparse.ArgumentParser()
    p.add_argument("--checks", default="within,power,across")
    p.add_argument("--preset", default="quick")
    p.add_argument("--processes", type=int, default=5, help="worker processes a side for the 'processes' check")
    p.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--quick-before-s", type=float, help="today's quick preset wall time here, for the ratio")
    p.add_argument("--reuse", action="store_true", help="read the runs already in --out again (by name) instead of "
                                                         "making new ones: the same measurements, today's analysis")
    args = p.parse_args()
    global REUSE
    REUSE = args.reuse
    preset_args = ["--preset", args.preset]
    checks = {"within": within, "power": power_fresh, "across": across, "repeat": repeat, "relative": relative,
              "processes": lambda out, preset: processes(out, preset, args.processes)}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for key in args.checks.split(","):
            result = checks[key](out, preset_args)
            table = result.pop("table")
            print(f"\n== {key}: {json.dumps(result, default=str)}")
            if key == "within" and args.quick_before_s:
                print(f"quick preset wall time: {result['wall_s']} s against {args.quick_before_s} s before "
                      f"(x{max(result['wall_s']) / args.quick_before_s:.2f})")
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
