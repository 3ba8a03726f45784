"""Ratios and their intervals from rounds (``bench.analysis.ranked.cell_rounds``): backends ranked
within a run with paired intervals, widened by what the run's processes showed, and cells matched
across runs. The statistics of comparisons; the procedures themselves live in ``bench.measure.stats``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.measure.between_processes import between_process_sigma
from bench.measure.figures import headline_rate, ratio_words, resolution, time_ratio
from bench.measure.stats import quotient, walsh_interval, widened
from bench.storage import catalog
from bench.storage.catalog import DEFAULT_REFERENCE, model_rank


def rank_backends(values: pd.DataFrame, baseline: str | None = DEFAULT_REFERENCE) -> pd.DataFrame:
    """Within each run, model, phase and batch size: backends ranked by their median round value,
    each with its paired ratio to the fastest and to ``baseline`` (time ratios: > 1 is slower) and
    the verdict in words. A backend whose interval against the fastest contains 1 ties with it.

    Where a model's rounds ran in two or more processes (``run --processes``), every interval of
    that model and phase is widened by how far its ratios to ``baseline`` moved between those
    processes beyond what their rounds explain (``process_spreads``), so it covers what one
    process cannot see; ``interval_from`` says which (rounds, rounds+processes)."""
    rows = []
    spreads = process_spreads(values, baseline)
    for (run_id, model, phase, bs), g in values.groupby(["run_id", "model", "phase", "batch_size"], dropna=False,
                                                         sort=False):
        by_backend = {b: d.set_index("round").value for b, d in g.groupby("backend")}
        medians = {b: float(s.median()) for b, s in by_backend.items()}
        fastest = min(medians, key=medians.get)
        spread = spreads.get((run_id, model, phase), _Spread())
        for b, series in by_backend.items():
            vs_fast = spread(_consistent(by_backend[fastest], series))
            row = {"run_id": run_id, "model": model, "phase": phase, "batch_size": bs, "backend": b,
                   "rounds": len(series), "samples_per_s": headline_rate(series),
                   **_columns("time_vs_fastest", vs_fast), "interval_from": spread.source}
            row["standing"] = ("fastest" if b == fastest else "tie with fastest"
                               if vs_fast["ratio_low"] <= 1 <= vs_fast["ratio_high"] else "slower")
            if baseline in by_backend and b != baseline:
                vs_base = spread(_consistent(by_backend[baseline], series))
                row.update(_columns("time_vs_baseline", vs_base), vs_baseline=_judged(vs_base, baseline)["verdict"])
            rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_m"] = out.model.map(model_rank)
    out["_p"] = out.phase != "train"  # training first, then inference by batch size
    out = out.sort_values(["run_id", "_m", "_p", "batch_size", "time_vs_fastest"], na_position="first")
    return out.drop(columns=["_m", "_p"]).reset_index(drop=True)


class _Spread:
    """Widens a group's intervals by its variation between processes (none with one process)."""

    def __init__(self, sigma: float = 0.0, df: int = 0, processes: int = 1) -> None:
        self.sigma, self.df, self.processes = sigma, df, processes
        self.source = "rounds+processes" if processes > 1 and df > 0 else "rounds"

    def __call__(self, r: dict) -> dict:
        return widened(r, self.sigma, self.df, 1 / np.sqrt(self.processes)) if self.source != "rounds" else r


def process_spreads(values: pd.DataFrame, baseline: str | None) -> dict[tuple, _Spread]:
    """Per (run, model, phase): how far its ratios to ``baseline`` moved between the run's
    processes beyond what their rounds explain, pooled over every batch size and backend of that
    model and phase (each (batch size, backend) cell's per-round log ratios, with the process each
    round ran in). Pooled per model rather than per batch size: with two processes a batch size's
    few backends give a few degrees of freedom only (Student's t of 4.3 on 2)."""
    out = {}
    if "process" not in values:
        values = values.assign(process=0)
    for (run, model, phase), g in values.groupby(["run_id", "model", "phase"], sort=False):
        processes = g.process.nunique()
        if processes < 2 or baseline not in set(g.backend):
            continue
        cells = []
        for _, size in g.groupby("batch_size", dropna=False):
            ref = size[size.backend == baseline][["round", "value"]].rename(columns={"value": "value_ref"})
            for _, d in size[size.backend != baseline].groupby("backend"):
                j = d.merge(ref, on="round")
                j = j[(j.value > 0) & (j.value_ref > 0)]
                cells.append((np.log(j.value / j.value_ref).to_numpy(), j.process.to_numpy()))
        out[(run, model, phase)] = _Spread(*between_process_sigma(cells), processes=processes)
    return out


def _consistent(base: pd.Series, other: pd.Series) -> dict:
    """The time ratio of two backends as every table shows it and the stopping rule judged it
    (``figures.time_ratio``: the quotient of their median rounds, so a share of the fastest is
    exactly the quotient of the samples/s shown, with its paired bootstrap interval); for time to
    accuracy with a missed seed, the same quotient with the signed-rank interval."""
    if np.isinf(base).any() or np.isinf(other).any():
        low, high = _censored_interval(base, other)
        return {"ratio": float(other.median() / base.median()), "ratio_low": low, "ratio_high": high}
    return time_ratio(base.dropna().to_dict(), other.dropna().to_dict())


def _censored_interval(base: pd.Series, other: pd.Series) -> tuple[float, float]:
    """A missed time-to-accuracy seed is an infinite time: slower than any seed that reached the
    target, with no value to resample. The interval is then the signed-rank (Walsh) interval of the
    per-seed log ratios, which orders such seeds by rank alone; seeds both sides missed say nothing
    and are left out. (A bootstrap of the median would read a one-in-a-hundred draw of the only
    seed that reached as a possible tie.)"""
    joined = pd.concat([base.rename("b"), other.rename("o")], axis=1, join="inner").dropna()
    joined = joined[~(np.isinf(joined.b) & np.isinf(joined.o))]
    with np.errstate(divide="ignore"):
        logs = np.log(joined.o.to_numpy(dtype=float)) - np.log(joined.b.to_numpy(dtype=float))
    if logs.size < 2 or (np.isposinf(logs).any() and np.isneginf(logs).any()):
        return float("nan"), float("nan")  # too few seeds, or misses on both sides: no ordering by rank
    low, high = walsh_interval(logs)
    return float(np.exp(low)), float(np.exp(high))


def _columns(name: str, r: dict) -> dict:
    """A ratio and its interval as a table's columns: ``name``, ``name``_low, ``name``_high."""
    return {name: r["ratio"], f"{name}_low": r["ratio_low"], f"{name}_high": r["ratio_high"]}


def _judged(r: dict, base: str) -> dict:
    """A ratio's resolution, whether its interval excludes 1 (NaN: not), and its words against ``base``."""
    return {"resolution": resolution(r["ratio_low"], r["ratio_high"]),
            "significant": bool(r["ratio_low"] > 1 or r["ratio_high"] < 1),
            "verdict": ratio_words(r["ratio"], r["ratio_low"], r["ratio_high"], base)}


BASELINE_RUN = "the baseline run"  # what a comparison across runs is a ratio to


def _cells(values: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Each run's cells' rounds by (run, model, backend, phase, batch size); training's NaN batch
    size as -1, so that keys of two runs match."""
    keys = ["run_id", "model", "backend", "phase", "batch_size"]
    return dict(iter(values.fillna({"batch_size": -1}).groupby(keys, sort=False)))


CANNOT_TELL = "cannot tell across runs on an uncalibrated machine (ratio {ratio:.3f}; see 'mnist-bench calibrate')"


def compare_runs(values: pd.DataFrame, baseline_run: str, calibration: dict[str, dict] | None = None) -> pd.DataFrame:
    """Cells matched across runs (model, backend, phase, batch size): each run's time ratio to the
    baseline run's, with a 95% interval that carries the variation between runs, and the verdict.
    Rounds of two runs were not measured side by side. The machine's speed moves between runs, and
    that move is shared by every process of a run, so no run can measure it alone (A/A runs with
    ``--processes 5`` here: 8 of 26 cells called different on the spread of their processes). So
    the interval needs both runs' machines calibrated (``calibration``: run_id -> its machine's
    per-phase run-to-run variation, from ``mnist-bench calibrate``): the in-run bootstrap of each
    side's rounds (``figures.time_ratio`` with no round in common) widened by that variation of
    both runs (``widened``).
    Otherwise the cell is unjudged ("cannot tell"), never a verdict its data cannot back."""
    rows = []
    cells = _cells(values)
    calibration = calibration or {}
    for (run_id, *key), o in cells.items():
        b = cells.get((baseline_run, *key))
        if run_id == baseline_run or b is None:
            continue
        key[3] = key[3] if key[3] >= 0 else np.nan  # training's batch size, NaN again
        sigma = [calibration.get(r, {}).get(key[2]) for r in (baseline_run, run_id)]
        # no round in common: each side's rounds resampled on their own
        r = time_ratio({("base", i): v for i, v in enumerate(b.value)},
                       {("other", i): v for i, v in enumerate(o.value)})
        if all(sigma):
            r, method = widened(r, *_pooled_sigma(sigma), np.sqrt(2)), "calibration"
        else:
            r, method = {**r, "ratio_low": np.nan, "ratio_high": np.nan}, "none"
        words = _judged(r, BASELINE_RUN)
        if method == "none" and np.isfinite(r["ratio"]):
            words["verdict"] = CANNOT_TELL.format(ratio=r["ratio"])
        rows.append({"run_id": run_id, "model": key[0], "backend": key[1], "phase": key[2], "batch_size": key[3],
                     "rounds_base": len(b), "rounds": len(o), "processes_base": b.process.nunique(),
                     "processes": o.process.nunique(), "interval_from": method, **_columns("time_ratio", r),
                     "judged": bool(np.isfinite([r["ratio_low"], r["ratio_high"]]).all()), **words})
    return pd.DataFrame(rows)


def _pooled_sigma(entries: list[dict]) -> tuple[float, int]:
    """Two runs' calibrated variations (``sigma``, ``df`` entries of calibration.json) as one:
    the root mean square of the sigmas, on the smaller degrees of freedom."""
    return float(np.sqrt(np.mean([e["sigma"] ** 2 for e in entries]))), min(e["df"] for e in entries)


def compare_relative(values: pd.DataFrame, baseline_run: str, reference: str | None = None,
                     calibration: dict[str, dict] | None = None) -> pd.DataFrame:
    """Cells matched across runs by what each run measured side by side: a backend's time relative
    to ``reference`` in the same run (machine drift cancels within the run), in each run against the
    same ratio in the baseline run: the quotient of the two runs' ratios, each with the paired
    interval its run's ranking shows, combined (``stats.quotient``). It answers "did this backend
    move against the reference?", which one run a side can back (``compare_runs``: "did its own
    figure move?", which needs the machine's run-to-run variation). Where both runs' machines are
    calibrated (``relative-<phase>`` from ``mnist-bench calibrate``), the combined interval is
    widened by that variation ("rounds+calibration"); else, where both runs timed the cell in two or
    more processes, each run's ratio is first widened by what its processes showed
    ("rounds+processes"), as a ratio measured in one process moves between processes by more than
    its rounds show (docs/measurement.md); else "rounds"."""
    rows = []
    calibration = calibration or {}
    reference = reference or catalog.reference()
    spreads = process_spreads(values, reference)
    series = {k: d.set_index("round").value for k, d in _cells(values).items()}
    for run_id, model, backend, phase, bs in series:
        keys = [(r, model, b, phase, bs) for r in (baseline_run, run_id) for b in (reference, backend)]
        if run_id == baseline_run or backend == reference or not all(k in series for k in keys):
            continue
        own = [_consistent(series[keys[0]], series[keys[1]]), _consistent(series[keys[2]], series[keys[3]])]
        sigma = [calibration.get(run, {}).get(f"relative-{phase}") for run in (baseline_run, run_id)]
        spread = [spreads.get((run, model, phase), _Spread()) for run in (baseline_run, run_id)]
        if all(sigma):
            r, source = widened(quotient(*own), *_pooled_sigma(sigma), np.sqrt(2)), "rounds+calibration"
        elif all(sp.source == "rounds+processes" for sp in spread):
            r, source = quotient(spread[0](own[0]), spread[1](own[1])), "rounds+processes"
        else:
            r, source = quotient(*own), "rounds"
        rows.append({"run_id": run_id, "model": model, "backend": backend, "phase": phase,
                     "batch_size": bs if bs >= 0 else np.nan, "interval_from": source, "reference": reference,
                     "vs_reference_base": own[0]["ratio"], "vs_reference": own[1]["ratio"],
                     **_columns("relative_ratio", r), **_judged(r, BASELINE_RUN)})
    return pd.DataFrame(rows)


def conservative(plain: pd.DataFrame, normalized: pd.DataFrame) -> pd.DataFrame:
    """``compare --normalize``: each cell's interval is the union of the plain and the normalized
    ones, so normalizing can never make a claim the plain comparison does not (the control workload
    tracks a whole machine's speed, not each backend's)."""
    if plain.empty:
        return normalized
    keys = ["run_id", "model", "backend", "phase", "batch_size"]
    p = plain.set_index(keys)
    out = normalized.set_index(keys).reindex(p.index)
    out["judged"] = out.judged & p.judged
    out["time_ratio_low"] = np.fmin(p.time_ratio_low, out.time_ratio_low).where(out.judged)
    out["time_ratio_high"] = np.fmax(p.time_ratio_high, out.time_ratio_high).where(out.judged)
    ratios = out.rename(columns=lambda c: c.replace("time_", "")).iterrows()
    words = pd.DataFrame([_judged(r, BASELINE_RUN) for _, r in ratios], index=out.index)
    out[words.columns] = words
    out["verdict"] = out.verdict.where(out.judged, p.verdict)
    return out.reset_index()


def geomean_speedup(matched: pd.DataFrame) -> pd.DataFrame:
    """Per run: the geometric mean over matched cells of the speedup against the baseline run
    (baseline time / this run's time; > 1: faster)."""
    if matched.empty:
        return pd.DataFrame(columns=["run_id", "cells", "geomean_speedup"])
    g = matched.groupby("run_id", sort=False).time_ratio
    return pd.DataFrame({"cells": g.size(), "geomean_speedup": np.exp(-g.apply(lambda r: np.log(r).mean()))}
                        ).reset_index()
