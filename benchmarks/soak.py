"""Soak: N small runs in a row into one results folder, with ``compare`` (against the first run) and
``history`` between them, looking for growth under long use. Per run it records the wall time, the
peak resident memory of the run's process tree (the run and the timing worker it waited for, from
``wait4``) and of compare and history, the files left in the system's temporary folder since the
soak began, the temporary files left in the run folder (its hidden ``.scratch``, which holds the
timing workers' and every other temporary file of the run until it ends), and
the size of the run index. Each series' slope per run is given with its 95% interval (least
squares, a bootstrap over the runs), so growth is told from the machine's noise.

    python benchmarks/soak.py [--runs 20] [--out /tmp/soak] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--models", "mlp", "--backends", "cpu-fp32,onnxruntime-cpu", "--limit-train", "1024", "--limit-test", "500",
       "--batch-size", "64", "--batch-sizes", "1,32", "--epochs", "1", "--budget-s", "0.08", "--processes", "2",
       "--no-report", "-q"]


def measured(args: list[str]) -> tuple[float, float, int]:
    """``python -m bench args``: its wall seconds, the peak RSS (MiB) of its process tree and its exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode not in (0, 4):
        raise SystemExit(f"mnist-bench {' '.join(args[:3])} ... failed ({proc.returncode}): {err[-800:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode


def slope(values: list[float], resamples: int = 4000) -> str:
    """The least-squares slope per run with its 95% interval (percentile bootstrap over the runs,
    seeded)."""
    if len(values) < 3:
        return "n/a"
    x, y = np.arange(len(values), dtype=float), np.asarray(values, dtype=float)
    rng, fits = np.random.default_rng(0), []
    for _ in range(resamples):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0:
            fits.append(np.polyfit(x[i], y[i], 1)[0])
    low, high = np.percentile(fits, [2.5, 97.5])
    return f"{np.polyfit(x, y, 1)[0]:+.3g} per run [{low:+.3g}, {high:+.3g}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "mnist-bench-soak")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "MNIST" / "raw")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.gettempdir())
    before = {p.name for p in tmp.iterdir()}
    rows = []
    for i in range(a.runs):
        wall, rss, _ = measured(["run", *RUN, "--data-dir", str(a.data_dir), "--out", str(a.out),
                                 "--name", f"soak{i}"])
        run_dir = next(a.out.glob(f"*-soak{i}"))
        cmp_wall, cmp_rss, _ = measured(["compare", str(next(a.out.glob("*-soak0"))), str(run_dir), "--results",
                                         str(a.out), "--output", str(a.out / "compare.html")])
        hist_wall, hist_rss, _ = measured(["history", "--results", str(a.out)])
        left = sorted({p.name for p in tmp.iterdir()} - before - {a.out.name})
        row = {"run": i, "wall_s": round(wall, 2), "peak_rss_mib": round(rss, 1), "compare_s": round(cmp_wall, 2),
               "compare_peak_rss_mib": round(cmp_rss, 1), "history_s": round(hist_wall, 2),
               "history_peak_rss_mib": round(hist_rss, 1), "temp_files_left": len(left),
               "run_folder_leftovers": len([p for p in run_dir.rglob("*") if ".scratch" in p.parts or p.name.startswith(
                   ".workers-")]),
               "index_kib": round((a.out / "history.sqlite").stat().st_size / 1024, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{a.runs} runs on {platform.processor() or platform.machine()} "
          f"({os.cpu_count()} CPUs): slope per run, 95% interval")
    for key in rows[0]:
        if key != "run":
            values = [r[key] for r in rows]
            print(f"  {key:22s} first {values[0]:>8g}  last {values[-1]:>8g}  {slope(values)}")
    left = sorted({p.name for p in tmp.iterdir()} - before - {a.out.name})
    print(f"left in {tmp} since the soak began: {left or 'nothing'}")


if __name__ == "__main__":
    main()
