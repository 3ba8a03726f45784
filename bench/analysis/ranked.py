"""A run's rounds as one table and the backends ranked from them: per (run, cell, round) the
cell's value (from its raw ``timings``; time to accuracy: per seed), and the ranking every
consumer reads (the glance, the verdict, the terminal, the exports), with each cell's own headline
figure and the explanation of its verdict. Table assembly only: the ratios and their intervals are
``bench.analysis.paired``'s."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.breakdown import explanations
from bench.analysis.paired import rank_backends
from bench.measure.metrics import paired_metric
from bench.storage import catalog
from bench.storage.keys import group_names
from bench.storage.results import RunTables

KEYS = ["model", "phase", "batch_size"]


def cell_rounds(rt: RunTables, normalize: bool = False) -> pd.DataFrame:
    """One row per (run, cell, round): the cell's seconds per sample in that round (the median of
    its calls, or its training block), with model, backend, phase and batch size. ``normalize``
    scales each round by the machine's control workload in that round (relative to the median
    control time over everything given), so a slow minute of the machine is not read as a slow
    backend."""
    timings, s = rt["timings"], rt["summary"]
    if timings.empty or s.empty:
        return pd.DataFrame(columns=["run_id", "cell_id", "round", "value", "model", "backend", *KEYS[1:]])
    t = timings.assign(value=timings.seconds / timings.samples)
    if "process" not in t:
        t["process"] = 0
    v = t.groupby(["run_id", "cell_id", "round"], as_index=False).agg(value=("value", "median"),
                                                                      process=("process", "first"))
    if "world_size" in s:  # data-parallel cells: one job per world size, never interleaved, so never paired
        s = s[s.world_size.isna()]
    meta = s[["run_id", "cell_id", "model", "backend", "phase", "batch_size"]]
    v = v.merge(meta, on=["run_id", "cell_id"])
    v["batch_size"] = v.batch_size.where(v.phase != "train")  # training rounds pair across batch settings
    machine = rt["machine"]
    if normalize and not machine.empty:
        v["group"] = group_names(v.model, v.phase, v.batch_size)
        control = "control_min_ms" if "control_min_ms" in machine else "control_ms"
        m = machine.rename(columns={control: "control"})
        v = v.merge(m[["run_id", "group", "round", "control"]], on=["run_id", "group", "round"], how="left")
        v["value"] = v.value * (m.control.median() / v.control).fillna(1.0)
        v = v.drop(columns=["group", "control"])
    return v


def ranked_backends(rt: RunTables) -> pd.DataFrame:
    """Backends ranked per model, phase and batch size with their paired intervals (one bootstrap
    per report: the glance, the verdict, the terminal and the exports all read this). Each row's
    samples/s is its cell's own headline figure from the summary, so it is one value everywhere;
    ``why``: an inference verdict against the reference explained by its time breakdown."""
    ranked = rank_backends(cell_rounds(rt), baseline=catalog.reference())
    s = rt["summary"]
    if ranked.empty or s.empty:
        return _with_tta(ranked, rt)
    from bench.analysis.columns import with_metric_columns

    s = with_metric_columns(s)
    if "world_size" in s:
        s = s[s.world_size.isna()]
    s = s[s.status == "ok"]
    head = s.assign(headline=s[paired_metric("train")].where(s.phase == "train", s[paired_metric("infer")]),
                    batch_size=s.batch_size.where(s.phase != "train"))
    head = head[["run_id", "model", "backend", "phase", "batch_size", "headline"]].astype({"batch_size": float})
    out = ranked.astype({"batch_size": float}).merge(head, on=["run_id", "model", "backend", "phase", "batch_size"],
                                                     how="left")
    out = _with_tta(out.assign(samples_per_s=out.headline.fillna(out.samples_per_s)).drop(columns="headline"), rt)
    return out.assign(why=explanations(out, rt, catalog.reference()))  # where the time goes


def seed_rounds(rt: RunTables) -> pd.DataFrame:
    """``run --seeds``: one row per (run, time-to-accuracy cell, seed), the seed as the round and its
    training seconds to the target as the value (inf where it never got there: slower than any run
    that did). A seed is the same initial weights and data order on every backend, so seeds pair."""
    seeds = rt.with_cells("seeds", ("model", "backend", "phase"))
    if seeds.empty:
        return pd.DataFrame(columns=["run_id", "cell_id", "round", "value", "model", "backend", *KEYS[1:]])
    value = seeds.time_to_accuracy_s.astype(float).where(seeds.reached.astype(bool), np.inf)
    return seeds.assign(round=seeds.seed, value=value, batch_size=np.nan)[
        ["run_id", "cell_id", "round", "value", "model", "backend", "phase", "batch_size"]]


def _with_tta(ranked: pd.DataFrame, rt: RunTables) -> pd.DataFrame:
    """``ranked`` and, below it, the time-to-accuracy ranking (phase ``tta``): backends ordered by
    their median seconds to the target over all seeds, a missed seed counted slower than any that
    reached it (a backend no seed of which reached it is not ranked), each against the fastest and
    the baseline paired by seed, over the seeds both reached. The figure shown is the cell's own
    ``tta_median_s`` (over the seeds that reached the target), as in every other table."""
    values = seed_rounds(rt)
    reached = values[np.isfinite(values.value.astype(float))]
    values = values.merge(reached[["run_id", "model", "backend"]].drop_duplicates())
    if values.empty:
        return ranked
    tta = rank_backends(values, baseline=catalog.reference()).assign(samples_per_s=np.nan)
    s = rt["summary"]
    own = s[(s.phase == "tta") & (s.status == "ok")][["run_id", "model", "backend", paired_metric("tta")]]
    tta = tta.merge(own, on=["run_id", "model", "backend"], how="left")
    return pd.concat([ranked, tta], ignore_index=True) if not ranked.empty else tta
