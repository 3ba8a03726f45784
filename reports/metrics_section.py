"""The verdict by every declared metric: per model, phase and batch size, the backend that is best
by each metric's own direction (``bench.analysis.ranking``), with the runner-up and the lead. A
metric declared in ``bench.measure.metrics`` appears here and in the export with no other edit."""

from __future__ import annotations

import pandas as pd

from bench.analysis.ranking import best_by_metric
from reports.blocks import in_unit, table
from reports.section import ReportContext, Section


def _frame(ctx: ReportContext) -> pd.DataFrame | None:
    ranked = best_by_metric(ctx.rt["summary"])
    if ranked.empty:
        return None
    return ranked if ctx.several else ranked.drop(columns="run_id")


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in frame.itertuples():
        rows.append({**({"run": r.run_id} if "run_id" in frame else {}), "model": r.model, "metric": r.label,
                     "batch": "–" if pd.isna(r.batch_size) else int(r.batch_size),
                     "better": r.better, "best": f"{r.best} ({in_unit(r.best_value, r.unit)})",
                     "runner-up": f"{r.runner_up} ({in_unit(r.runner_up_value, r.unit)})",
                     "lead": "–" if r.best_by != r.best_by else f"{r.best_by:.2f}×", "backends": r.backends})
    return pd.DataFrame(rows)


def _render(ctx: ReportContext, frame: pd.DataFrame | None) -> str:
    if frame is None or frame.empty:
        return ""
    return "\n".join([
        '<p class="note">Every declared metric, each ranked in its own better direction (higher or lower), per '
        "model, phase and batch size: the cell's own figure, one value per cell. The lead is the best's figure "
        "over the runner-up's (higher is better) or the runner-up's over the best's (lower is better). The "
        "paired intervals of the timed figures are in the verdict above; these figures carry none, so a small "
        "lead here is not a difference.</p>",
        table(_shown(frame), "by-metric-table")])


SECTION = Section("by-metric", "Verdict by every metric", _render, frame=_frame)
