"""A section for each phase a run declares without a built-in section of its own (a plugin's phase,
``bench.phase``): its cells' summary rows, then each table its cells wrote, joined with what each
cell is. The phase's title, one-line description and tables come from the run's own files (meta.json's
``catalog``), so a report renders it in a process that never imported the plugin."""

from __future__ import annotations

import html

import pandas as pd

from bench.storage.catalog import backend_rank, model_rank, phases
from reports.blocks import table
from reports.section import ReportContext, Section

_HEADER = ["model", "backend", "device", "precision", "engine", "batch_size", "status", "reason"]


def sections() -> list[Section]:
    """One section per declared phase that no built-in section shows, in the order first declared."""
    return [_section(entry) for entry in phases() if not entry.get("section")]


def _section(entry: dict) -> Section:
    name = str(entry["name"])
    tables = [str(t["name"]) for t in entry.get("tables") or [] if isinstance(t, dict) and "name" in t]

    def frame(ctx: ReportContext) -> pd.DataFrame | None:
        """The phase's summary rows: the header, then every column a cell of it filled."""
        s = ctx.summary
        rows = s[s.phase == name] if not s.empty else s
        if rows.empty:
            return None
        rows = rows.assign(_m=rows.model.map(lambda m: model_rank(m)[0]),
                           _b=rows.backend.map(lambda b: backend_rank(b)[0]))
        rows = rows.sort_values(["_m", "_b", "batch_size"]).drop(columns=["_m", "_b"]).dropna(axis=1, how="all")
        own = [c for c in rows.columns if c not in (*_HEADER, "run_id", "cell_id", "phase")]
        return rows[[c for c in ctx.first + _HEADER + own if c in rows]]

    def render(ctx: ReportContext, summary: pd.DataFrame | None) -> str:
        if summary is None:
            return ""
        about = f'<p class="note">{html.escape(str(entry.get("about") or ""))}</p>' if entry.get("about") else ""
        parts = [about, table(summary, f"{name}-summary")]
        for t in tables:
            rows = _table_rows(ctx, name, t)
            if rows is not None:
                parts.append(f"<h3>{html.escape(t)}</h3>{table(rows, f'{name}-{t}')}")
        return "".join(parts)

    return Section(f"phase-{name}", str(entry.get("title") or name), render, frame=frame)


def _table_rows(ctx: ReportContext, phase: str, name: str) -> pd.DataFrame | None:
    """A table of the phase's cells, each row led by its cell's model and backend (batch size where
    the phase plans one per batch size)."""
    if name not in ctx.rt.tables:
        return None
    df = ctx.rt.with_cells(name, ("model", "backend", "batch_size", "phase"))
    df = df[df.phase == phase] if "phase" in df else df.iloc[:0]
    if df.empty:
        return None
    df = df.dropna(axis=1, how="all")
    lead = [c for c in ctx.first + ["model", "backend", "batch_size"] if c in df]
    return df[lead + [c for c in df.columns if c not in (*lead, "run_id", "cell_id", "phase")]]
