"""Do the verdicts' explanations hold? Per quick run: how many verdicts against the reference that
are not ties, at a batch size the breakdown covers (``--breakdown ends``: the smallest and the
largest) or in training, carry an explanation ("where the gap goes") rather than "not explained", and how many
of the breakdown's calls and steps lie within the agreement bar (15%) of their timed call.

    python -m benchmarks.explanations_check [--runs 3] [--busy 1] [--out DIR] [--reuse]

``--busy K``: the last K runs have another process busy on one core beside them (a Python loop),
stopped when the run ends. ``--reuse``: read the run folders already in ``--out`` again.
Every run is a fresh ``python -m bench run --preset quick`` process.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench.analysis.ranked import ranked_backends
from bench.measure.breakdown import AGREEMENT
from bench.storage.results import read_run


def quick_run(out: Path, busy: bool, data_dir: str | None) -> tuple[Path, float]:
    """One quick run in a fresh process (with a busy loop beside it when ``busy``); its folder and wall time."""
    out.mkdir(parents=True, exist_ok=True)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the busy loop goes with this script
    try:
        cmd = [sys.executable, "-m", "bench", "run", "--preset", "quick", "--out", str(out), "--no-report"]
        subprocess.run(cmd + (["--data-dir", data_dir] if data_dir else []), check=True, stdout=subprocess.DEVNULL)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir, time.perf_counter() - start


def figures(run_dir: Path) -> dict:
    """The run's explained verdicts and the breakdown's agreement with the timed calls."""
    rt = read_run(run_dir)
    ranked = ranked_backends(rt)
    judged = ranked[ranked.phase.isin(["infer", "train"]) & ranked.time_vs_baseline.notna()]
    non_tie = judged[(judged.time_vs_baseline_low > 1) | (judged.time_vs_baseline_high < 1)]
    words = non_tie.why.fillna("")
    explained = words.ne("") & ~words.str.startswith("not explained")
    b = rt["time_breakdown"]
    per_cell = b.groupby("cell_id").wall_vs_timed.first() if not b.empty else pd.Series(dtype=float)
    within = ((per_cell - 1).abs() <= AGREEMENT)
    return {"run": run_dir.name, "non_tie_verdicts": len(non_tie), "with_breakdown": int(words.ne("").sum()),
            "explained": int(explained.sum()), "not_explained": int(words.str.startswith("not explained").sum()),
            "breakdown_cells": len(per_cell), "within_15pct": int(within.sum()),
            "off": "; ".join(f"{c} {v:.2f}x" for c, v in per_cell[~within].items())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--busy", type=int, default=1, help="how many of the last runs have a busy process beside them")
    p.add_argument("--out", type=Path, default=Path("results/explanations_check"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--reuse", action="store_true")
    args = p.parse_args()
    rows = []
    for i in range(args.runs):
        folder = args.out / f"run{i}"
        busy = i >= args.runs - args.busy
        if args.reuse:
            (run_dir,) = [q for q in folder.iterdir() if q.is_dir()]
            wall = float("nan")
        else:
            run_dir, wall = quick_run(folder, busy, args.data_dir)
        rows.append({**figures(run_dir), "busy_beside": busy, "wall_s": round(wall, 1)})
        print(pd.DataFrame([rows[-1]]).drop(columns="off").to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print(table.drop(columns="off").to_string(index=False))
    for r in table.itertuples():
        share = r.explained / r.with_breakdown if r.with_breakdown else float("nan")
        agree = r.within_15pct / r.breakdown_cells if r.breakdown_cells else float("nan")
        print(f"{r.run}: {r.explained} of {r.with_breakdown} non-tie verdicts with a breakdown explained ({share:.0%}; "
              f"{r.non_tie_verdicts} non-tie verdicts in all, the others at batch sizes not broken down); "
              f"{r.within_15pct} of {r.breakdown_cells} breakdown calls within {AGREEMENT:.0%} ({agree:.0%})"
              + (f"; off: {r.off}" if r.off else ""))


if __name__ == "__main__":
    main()
