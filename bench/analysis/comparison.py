"""Runs compared cell by cell: each run's cells matched with a baseline run's, with intervals and a
test (``compare_runs``), the same cells relative to each run's reference (``compare_relative``), what
differs in their environments, and the regression gate's two questions (``regressions``,
``unjudged``). Pure analysis: ``reports.compare_page`` renders it, ``mnist-bench compare`` prints it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import BenchError
from bench.analysis.paired import compare_relative, compare_runs, conservative, geomean_speedup
from bench.analysis.ranked import cell_rounds
from bench.storage import calibration
from bench.storage.load import load_paths
from bench.storage.meta import environment
from bench.storage.results import RunTables


@dataclass
class Comparison:
    baseline: str
    runs: list[str]
    values: pd.DataFrame  # per (run, cell, round)
    matched: pd.DataFrame  # per run and matched cell: ratio, interval, verdict
    relative: pd.DataFrame  # per run and matched cell: its ratio to the reference against the baseline run's
    geomean: pd.DataFrame
    environment: pd.DataFrame  # fields that differ between runs
    accuracy: pd.DataFrame
    memory: pd.DataFrame
    normalized: bool


def compare(paths: list[Path], baseline: str | None = None, normalize: bool = False,
            calibration_files: list[Path] | None = None) -> Comparison:
    """``calibration_files``: where to look for this machine's run-to-run variation (default: the
    calibration.json beside each compared run folder)."""
    loaded = [load_paths([Path(p)]) for p in paths]
    runs = [rid for rt in loaded for rid in rt.meta]
    if len(runs) < 2:
        raise BenchError("compare needs at least two runs (result folders or pytest-benchmark JSON files)")
    rt = RunTables()
    for one in loaded:
        rt.meta.update(one.meta)
        for k, df in one.tables.items():
            rt.tables[k] = pd.concat([rt.tables[k], df], ignore_index=True) if k in rt.tables else df
    base = _resolve_baseline(baseline, paths, loaded)
    files = calibration_files if calibration_files is not None else \
        [Path(p).parent / calibration.CALIBRATION_FILE for p in paths]
    machines = calibration.load(list(dict.fromkeys(files)))
    per_run = {rid: machines[calibration.machine_key(m)]["phases"] for rid, m in rt.meta.items()
               if calibration.machine_key(m) in machines}
    values = cell_rounds(rt)
    matched = compare_runs(values, base, per_run)
    if normalize:
        values = cell_rounds(rt, normalize=True)
        matched = conservative(matched, compare_runs(values, base, per_run))
    env = environment(rt.meta)
    differ = env[env.drop(columns="field").nunique(axis=1, dropna=False) > 1]
    differ = differ[~differ.field.isin(["start_time", "end_time", "command_line"])]
    relative = compare_relative(values, base, calibration=per_run)
    return Comparison(base, runs, values, matched, relative, geomean_speedup(matched), differ,
                      _side_by_side(rt, "accuracy"), _side_by_side(rt, "memory"), normalize)


def _resolve_baseline(baseline: str | None, paths: list[Path], loaded: list[RunTables]) -> str:
    if baseline is None:
        return next(iter(loaded[0].meta))
    for p, rt in zip(paths, loaded):
        if baseline in rt.meta or Path(baseline).resolve() == Path(p).resolve():
            return baseline if baseline in rt.meta else next(iter(rt.meta))
    legal = [str(p) for p in paths] + [r for rt in loaded for r in rt.meta]
    raise BenchError(f"--baseline {baseline!r} is none of the compared runs; legal values: {', '.join(legal)}")


def _side_by_side(rt: RunTables, what: str) -> pd.DataFrame:
    s = rt["summary"]
    if s.empty:
        return pd.DataFrame()
    if what == "accuracy":
        d, index, col = s[(s.phase == "train") & (s.status == "ok")], ["model", "backend"], "test_accuracy"
    else:
        d, index, col = s[s.status == "ok"], ["model", "backend", "phase", "batch_size"], "peak_rss_bytes"
    if d.empty or col not in d:
        return pd.DataFrame()
    return d.pivot_table(index=index, columns="run_id", values=col, aggfunc="first", dropna=False).reset_index()


def regressions(c: Comparison, fail_above_pct: float) -> pd.DataFrame:
    """Cells significantly slower than the baseline by more than ``fail_above_pct`` percent."""
    m = c.matched
    if m.empty:
        return m
    return m[(m.time_ratio_low > 1) & ((m.time_ratio - 1) * 100 > fail_above_pct)]


def unjudged(c: Comparison) -> pd.DataFrame:
    """Cells the comparison cannot judge (no interval: too few rounds, or runs of an uncalibrated
    machine): a regression gate must not pass them silently."""
    m = c.matched
    return m if m.empty else m[~m.judged]
