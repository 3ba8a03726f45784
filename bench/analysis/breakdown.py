"""Verdicts explained by where the time goes: for a backend against the reference at one batch
size, the categories of ``time_breakdown`` (bench.measure.breakdown) that account for the gap
between their calls, in seconds per call and as a share of the gap. The breakdown is a pass of its
own after the timing: where the ratio of the two calls in that pass disagrees with the timed ratio
by more than ``AGREEMENT``, the words say so instead of explaining."""

from __future__ import annotations

import pandas as pd

from bench.measure.breakdown import AGREEMENT
from bench.plumbing.units import duration
from bench.storage.results import RunTables

KEYS = ["run_id", "model", "batch_size", "backend"]


def breakdown_frame(rt: RunTables) -> pd.DataFrame:
    """The category rows of every inference cell's breakdown, with the cell's model, backend and batch size."""
    b = rt.with_cells("time_breakdown", ("model", "backend", "phase", "batch_size"))
    if b.empty or "kind" not in b:
        return pd.DataFrame()
    return b[b.kind == "category"].reset_index(drop=True)


def _us(seconds: float) -> str:
    """A signed duration: "+41 µs", "−2.1 ms"."""
    return ("+" if seconds >= 0 else "−") + duration(abs(seconds))


def why(other: pd.DataFrame, base: pd.DataFrame, timed_ratio: float) -> str:
    """Words for one backend's gap to the baseline from their category rows (one cell each)."""
    o, b = other.set_index("name"), base.set_index("name")
    total_o, total_b = float(o.wall_s_per_call.iloc[0]), float(b.wall_s_per_call.iloc[0])
    ratio = total_o / total_b if total_b > 0 else float("nan")
    if not (abs(ratio / timed_ratio - 1) <= AGREEMENT):
        return (f"not explained: in the breakdown's pass the ratio was {ratio:.2f}×, timed {timed_ratio:.2f}× "
                "(the two calls ran in another state than in the rounds)")
    gap = total_o - total_b
    diffs = (o.seconds_per_call - b.seconds_per_call.reindex(o.index).fillna(0.0)).sort_values(
        ascending=gap < 0)
    picked = [(name, d) for name, d in diffs.items() if d * gap > 0][:2]
    if not picked:
        return f"no category accounts for the gap of {_us(gap)} per call"
    rest = gap - sum(d for _, d in picked)
    words = "; ".join(f"{name} {_us(d)}" for name, d in picked)
    if abs(rest) >= 0.1 * abs(gap):
        words += f"; the rest {_us(rest)}"
    return f"{words}: {_us(gap)} per call in all"


def explanations(ranked: pd.DataFrame, rt: RunTables, reference: str) -> pd.Series:
    """Per ranked row (its index): the words explaining an inference verdict against ``reference``
    (missing where there is no breakdown, for ties, the reference itself and other phases)."""
    out = pd.Series(None, index=ranked.index, dtype=object)  # missing where there is nothing to explain
    b = breakdown_frame(rt)
    if b.empty or ranked.empty:
        return out
    cells = {k: g for k, g in b.groupby(KEYS, dropna=False)}
    for i, r in ranked.iterrows():
        if r.phase != "infer" or r.backend == reference or pd.isna(r.get("time_vs_baseline")):
            continue
        if r.get("time_vs_baseline_low", 2) <= 1 <= r.get("time_vs_baseline_high", 0):
            continue  # a tie: no gap to explain
        other = cells.get((r.run_id, r.model, float(r.batch_size), r.backend))
        base = cells.get((r.run_id, r.model, float(r.batch_size), reference))
        if other is not None and base is not None:
            out[i] = why(other, base, float(r.time_vs_baseline))
    return out
