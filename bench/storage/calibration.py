"""This machine's run-to-run variation, measured once (``mnist-bench calibrate``) and used by
``compare`` for runs whose rounds all ran in one process. Two runs of one configuration differ by
more than the rounds inside either shows (process layout, the machine's minute-to-minute speed);
a comparison of two such runs is honest only with that variation in its interval.

``calibrate`` runs one configuration K times, each in a fresh process, and stores per phase the
pooled standard deviation of a cell's log figure between runs, keyed by machine, in
``<results>/calibration.json``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench import BenchError
from bench.backends import REFERENCE
from bench.storage.results import atomic_write_text

CALIBRATION_FILE = "calibration.json"


def machine_key(meta: dict) -> str:
    """The machine a run ran on, as far as its timings are concerned."""
    return " | ".join(str(meta.get(k)) for k in ("hostname", "cpu_model", "cpu_count", "torch_threads", "gpu_name"))


def run_to_run_sigma(values: pd.DataFrame) -> dict[str, dict]:
    """Per phase: the pooled standard deviation between runs of each cell's log figure (the median
    of its round values), its degrees of freedom and the number of cells; and per phase as
    ``relative-<phase>`` the same for each backend's ratio to the reference measured in the same run.
    ``values``: round values (``reports.paired.cell_rounds``) of repeated runs of one configuration."""
    figures = values.groupby(["run_id", "model", "backend", "phase", "batch_size"], dropna=False).value.median()
    logs = np.log(figures).rename("log").reset_index()
    return {**_pooled(logs), **{f"relative-{k}": v for k, v in _pooled(_relative_logs(logs)).items()}}


def _relative_logs(logs: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Each cell's log figure minus its run's reference's in the same model, phase and batch size:
    the log of the ratio a run measured side by side (what ``compare``'s relative comparison reads)."""
    keys = ["run_id", "model", "phase", "batch_size"]
    ref = logs[logs.backend == reference].set_index(keys).log
    other = logs[logs.backend != reference]
    joined = other.join(ref.rename("ref_log"), on=keys)
    return joined.assign(log=joined.log - joined.ref_log).dropna(subset=["log"]).drop(columns="ref_log")


def _pooled(logs: pd.DataFrame) -> dict[str, dict]:
    out = {}
    for phase, d in logs.groupby("phase"):
        per_cell = d.groupby(["model", "backend", "batch_size"], dropna=False).log
        var, n = per_cell.var(ddof=1).dropna(), per_cell.size()
        n = n[var.index]
        if var.empty:
            continue
        dof = int((n - 1).sum())
        out[phase] = {"sigma": float(np.sqrt(((n - 1) * var).sum() / dof)), "df": dof, "cells": int(var.size),
                      "runs": int(n.max())}
    return out


def load(paths: list[Path]) -> dict[str, dict]:
    """Every calibration found in these files (machine key -> entry); unreadable files are skipped
    with a warning."""
    found: dict[str, dict] = {}
    for p in paths:
        if not p.is_file():
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            found.update({k: v for k, v in data.get("machines", {}).items() if k not in found})
        except (OSError, ValueError, AttributeError) as e:
            print(f"warning: {p}: not a calibration file ({type(e).__name__}); ignored", file=sys.stderr)
    return found


def save(results: Path, meta: dict, sigma: dict[str, dict], runs: list[str]) -> Path:
    path = results / CALIBRATION_FILE
    data = {"schema_version": 1, "machines": {}}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    data.setdefault("machines", {})[machine_key(meta)] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs,
        "command_line": meta.get("command_line"), "phases": sigma}
    atomic_write_text(path, json.dumps(data, indent=2))
    return path


def calibrate(run_args: list[str], repeats: int, results: Path) -> tuple[Path, dict]:
    """Run ``mnist-bench run RUN_ARGS`` ``repeats`` times, each in a fresh process, then store the
    run-to-run variation of their cells. Returns the calibration file and the variation per phase."""
    from bench.storage.results import read_run
    from reports.paired import cell_rounds

    if repeats < 2:
        raise BenchError(f"calibrate needs --repeats >= 2 to see a variation between runs, got {repeats}")
    run_dirs = []
    for i in range(repeats):
        before = {p for p in results.glob("*") if p.is_dir()}
        proc = subprocess.run([sys.executable, "-m", "bench", "run", *run_args, "--out", str(results), "--no-report",
                               "-q", "--name", "calibrate"], stdout=subprocess.DEVNULL)
        new = sorted(p for p in results.glob("*") if p.is_dir() and p not in before and not p.name.startswith("."))
        if proc.returncode not in (0, 4) or not new:
            raise BenchError(f"calibration run {i + 1} of {repeats} failed (exit {proc.returncode})")
        run_dirs.append(new[-1])
        print(f"calibrate: run {i + 1} of {repeats}: {new[-1]}")
    tables = [read_run(d) for d in run_dirs]
    values = pd.concat([cell_rounds(t) for t in tables], ignore_index=True)
    sigma = run_to_run_sigma(values)
    meta = next(iter(tables[0].meta.values()))
    return save(results, meta, sigma, [d.name for d in run_dirs]), sigma
