"""Every declared metric ranked: per run, model, phase and batch size, the backends ordered by the
metric's value in its declared direction (``Metric.better``). A metric added to
``bench.measure.metrics`` is ranked here, in the verdict and in the terminal with no other edit.
Values are the summary's own (one figure per cell); the paired intervals of the timed figures are
``bench.analysis.paired``'s."""

from __future__ import annotations

import pandas as pd

from bench.analysis.columns import with_metric_columns
from bench.measure.metrics import METRICS, Metric
from bench.storage.catalog import model_rank

KEYS = ["run_id", "model", "phase", "batch_size"]


def _lead(m: Metric, best: float, second: float) -> float:
    """How far the best leads, as a factor >= 1 in the metric's better direction."""
    if not best or not second:
        return float("nan")
    return best / second if m.better == "higher" else second / best


def _ranked_one(m: Metric, cells: pd.DataFrame) -> list[dict]:
    rows = []
    for key, g in cells.groupby(KEYS, dropna=False, sort=False):
        g = g.dropna(subset=[m.name])
        if len(g) < 2:
            continue  # one backend has nothing to be ranked against
        g = g.sort_values(m.name, ascending=m.better == "lower", kind="stable")
        best, second = g.iloc[0], g.iloc[1]
        rows.append({**dict(zip(KEYS, key)), "metric": m.name, "label": m.label, "unit": m.unit, "better": m.better,
                     "best": best.backend, "best_value": best[m.name], "runner_up": second.backend,
                     "runner_up_value": second[m.name], "best_by": _lead(m, best[m.name], second[m.name]),
                     "backends": len(g)})
    return rows


def _collapsed(out: pd.DataFrame) -> pd.DataFrame:
    """A metric whose ranking is the same at every batch size (a backend's weights, its preparation)
    as one row without a batch size."""
    same = ["run_id", "model", "metric", "best", "best_value", "runner_up", "runner_up_value"]
    keep = []
    for _, g in out.groupby(["run_id", "model", "metric"], sort=False):
        if len(g) > 1 and len(g.drop_duplicates(subset=same)) == 1:
            g = g.head(1).assign(batch_size=float("nan"))
        keep.append(g)
    return pd.concat(keep, ignore_index=True) if keep else out


def best_by_metric(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per metric and (run, model, phase, batch size) with two or more backends that have a
    value: the best backend, its value, the runner-up's, and by how much the best leads (a factor
    >= 1 in the better direction)."""
    columns = [*KEYS, "metric", "label", "unit", "better", "best", "best_value", "runner_up", "runner_up_value",
               "best_by", "backends"]
    if summary.empty:
        return pd.DataFrame(columns=columns)
    s = with_metric_columns(summary)
    s = s[s.status == "ok"]
    if "world_size" in s:
        s = s[s.world_size.isna()]  # data-parallel rows are the Scaling section's
    rows = []
    for m in METRICS.values():
        rows += _ranked_one(m, s[s.phase == m.phase])
    out = _collapsed(pd.DataFrame(rows, columns=columns))
    if out.empty:
        return out
    order = list(METRICS)
    return out.sort_values(["run_id", "model", "metric", "batch_size"], key=lambda c: c.map(
        model_rank) if c.name == "model" else c.map(order.index) if c.name == "metric" else c,
                           kind="stable").reset_index(drop=True)
