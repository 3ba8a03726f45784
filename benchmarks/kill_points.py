"""Does a run stopped inside its timing workers or its LoadGen scenarios leave nothing behind? At
seeded points, a small run with two timing processes and two scenarios per backend gets SIGTERM or
SIGKILL (alternately) while a timing worker is running or while LoadGen's scenarios are; 3 s later
no process of the run may be alive, the temporary folder it was given ($TMPDIR, empty at its start)
must hold nothing beyond what a run left to finish leaves there (the libraries' own caches: a
first, uninterrupted run names them), every cell completed before the signal must still be there
and readable, and
``--resume`` must complete the run and remove what the killed one left in the run folder.

    python -m benchmarks.kill_points [--points 10] [--seed 0] [--out DIR] [--data-dir DIR]

A point is where the run is (inside a worker, inside the scenarios) plus a delay drawn from the
seed; the table prints each point's figures and the last line the count that met all four.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench.storage.results import read_run

RUN = ["--models", "mlp", "--backends", "cpu-fp32,onnxruntime-cpu", "--limit-train", "2000", "--epochs", "1",
       "--batch-sizes", "1,32", "--processes", "2", "--scenarios", "single-stream,offline",
       "--scenario-seconds", "0.5", "--no-report"]
WORKER = "bench.scheduling.timing_workers"
WHERE = ("a timing worker", "the scenarios")
SIGNALS = (signal.SIGTERM, signal.SIGKILL)


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, command line)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                out[int(d.name)] = (int(ppid), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue
    return out


def _family(root: int) -> set[int]:
    """``root`` and every live descendant of it."""
    procs, found, grew = _processes(), {root}, True
    while grew:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found & set(procs)


def _inside(where: str, proc: subprocess.Popen, out: Path, tmp: Path) -> bool:
    """Whether the run is at ``where`` now (the scenarios: LoadGen's log folder exists, in the run
    folder's scratch or in the temporary folder the run was given)."""
    if where == WHERE[0]:
        return any(WORKER in _processes().get(pid, (0, ""))[1] for pid in _family(proc.pid) - {proc.pid})
    runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
    return bool(runs) and any([*(runs[0] / ".scratch").glob("*/loadgen"), *tmp.glob("*/loadgen")])


def _cells(run_dir: Path) -> set[str]:
    cells = run_dir / "cells"
    return {p.name for p in cells.iterdir() if not p.name.startswith(".")} if cells.is_dir() else set()


def _env(tmp: Path, data_dir: str | None) -> dict:
    return {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1",
            **({"MNIST_BENCH_DATA": data_dir} if data_dir else {})}


def caches(out: Path, data_dir: str | None) -> set[str]:
    """What an uninterrupted run leaves in an empty temporary folder (the libraries' own caches)."""
    tmp = out / "uninterrupted-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "bench", "run", *RUN, "--out", str(out / "uninterrupted")],
                   env=_env(tmp, data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return {p.name for p in tmp.iterdir()}


def one_point(i: int, rng: random.Random, out: Path, data_dir: str | None, kept_by_any: set[str]) -> dict:
    """A fresh run stopped at point ``i``, checked, then resumed."""
    where, sig = WHERE[i % 2], SIGNALS[(i // 2) % 2]
    delay = rng.uniform(0, 1.0)
    folder, tmp = out / f"point{i}", out / f"point{i}-tmp"
    for p in (folder, tmp):
        shutil.rmtree(p, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = _env(tmp, data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", *RUN, "--out", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not _inside(where, proc, folder, tmp) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    family = _family(proc.pid) if proc.poll() is None else set()
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    before = _cells(run_dir)
    sent = proc.poll() is None
    signalled = time.perf_counter()
    if sent:
        proc.send_signal(sig)
    proc.communicate(timeout=120)
    stop_s = time.perf_counter() - signalled
    time.sleep(3.0)
    alive = sorted(_family(proc.pid) | (family & set(_processes())))
    left = sorted(p.name for p in tmp.iterdir() if p.name not in kept_by_any)
    kept = before <= _cells(run_dir) and read_run(run_dir).problems == []
    start = time.perf_counter()
    resumed = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", str(run_dir), "--no-report"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    meta = json.loads((run_dir / "meta.json").read_text())
    complete = resumed.returncode == 0 and meta["status"] == "complete" and _cells(run_dir) >= set(meta["plan"])
    scratch_left = (run_dir / ".scratch").exists()
    return {"point": i, "where": where, "signal": sig.name if sent else "none (run had ended)",
            "delay_s": round(delay, 2), "exit": proc.returncode, "stopped_in_s": round(stop_s, 2),
            "processes_of_run": len(family),
            "alive_3s_later": len(alive), "left_in_tmp": len(left), "cells_before": len(before),
            "cells_kept": kept, "resume_completes": complete, "scratch_left_after_resume": scratch_left,
            "resume_s": round(time.perf_counter() - start, 1),
            "ok": sent and not alive and not left and kept and complete and not scratch_left}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/kill_points"))
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    rng = random.Random(args.seed)
    kept_by_any = caches(args.out, args.data_dir)
    print(f"an uninterrupted run leaves in its temporary folder: {', '.join(sorted(kept_by_any)) or 'nothing'}")
    rows = []
    for i in range(args.points):
        rows.append(one_point(i, rng, args.out, args.data_dir, kept_by_any))
        print(pd.DataFrame([rows[-1]]).to_string(index=False, header=i == 0), flush=True)
    table = pd.DataFrame(rows)
    print(f"{int(table.ok.sum())} of {len(table)} points: no process of the run alive 3 s after the signal, "
          f"nothing left in its temporary folder beyond those caches, every completed cell kept, --resume completed "
          f"(seed {args.seed})")


if __name__ == "__main__":
    main()
