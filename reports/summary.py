"""The readable summary table: one row per model x backend, from the summary result table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis.columns import with_metric_columns
from bench.measure.metrics import METRICS
from bench.storage.catalog import backend_rank, model_rank


def figures() -> list[str]:
    """The summary's figures, in the metrics' declared order: those a metric declares a summary place for."""
    return [m.name for m in METRICS.values() if m.summary]

MEMORY = ["weights_bytes", "prepare_rss_growth_bytes", "rss_growth_bytes"]

def planned_max_batch(meta: dict[str, dict]) -> dict[str, int]:
    """Per run: the largest inference batch size its configuration asked for."""
    out = {}
    for run_id, m in meta.items():
        try:
            out[run_id] = max(int(b) for b in m["config"]["infer"]["batch_sizes"])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def summary_frame(summary: pd.DataFrame, max_batch: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per (model, backend): training, inference at batch 1 and at the largest batch the run
    planned (``max_batch`` per run; else the largest it has a row for), and what the backend costs
    in memory. Values are the summary's own (raw units); headers are the metrics' labels. A missing
    or failed cell is an empty figure, never another batch size's."""
    summary = summary[summary.phase.isin(["train", "infer", "export"])] if not summary.empty else summary
    if summary.empty:
        return pd.DataFrame()
    summary = with_metric_columns(summary)
    if "world_size" in summary and summary.world_size.notna().any():  # data-parallel cells: a row per world size
        ws = summary.world_size
        summary = summary.assign(backend=summary.backend.where(ws.isna(), summary.backend + " ×" + ws.astype(
            "Int64").astype(str)))
    if "run_id" not in summary:
        summary = summary.assign(run_id="")
    several = summary.run_id.nunique() > 1
    infer_all = summary[summary.phase == "infer"]
    sizes = {r: (max_batch or {}).get(r, g.batch_size.max()) for r, g in infer_all.groupby("run_id")}
    big_sizes = set(sizes.values())
    big_label = f"batch {int(next(iter(big_sizes)))}" if len(big_sizes) == 1 else "largest batch"
    where = {"train": "", "batch1": ", batch 1", "largest": f", {big_label}"}
    shown = figures()
    label = {m: METRICS[m].label + where[METRICS[m].summary] for m in shown}
    memory = {m: METRICS[m].label for m in MEMORY}
    memory["rss_growth_bytes"] += f", {big_label}"
    costs = memory_frame(summary)  # what each backend costs, as the Memory section and the glance show it
    rows = []
    for (run_id, model, backend), g in summary.groupby(["run_id", "model", "backend"], sort=False):
        train = g[(g.phase == "train") & (g.status == "ok")]
        infer = g[(g.phase == "infer") & (g.status == "ok")]
        statuses = sorted(set(g.status))
        status = ",".join(statuses)
        if statuses != ["ok"]:
            reasons = [r for r in g.reason.dropna().unique() if r]
            status += f" ({reasons[0]})" if reasons else ""
        row = {"run": run_id, "model": model, "backend": backend, "status": status}
        cells = {"train": train, "batch1": infer[infer.batch_size == 1],
                 "largest": infer[infer.batch_size == sizes.get(run_id)]}
        for m in shown:
            cell = cells[METRICS[m].summary]
            row[label[m]] = cell[m].iloc[0] if len(cell) and m in cell else float("nan")
        cost = memory_row(costs, run_id, model, backend)
        size = sizes.get(run_id)
        call = f"call_bs{int(size)}_bytes" if size is not None and size == size else ""
        row[memory["weights_bytes"]] = cost["weights_bytes"] if cost is not None else float("nan")
        row[memory["prepare_rss_growth_bytes"]] = cost["prepare_bytes"] if cost is not None else float("nan")
        row[memory["rss_growth_bytes"]] = cost.get(call, float("nan")) if cost is not None else float("nan")
        rows.append(row)
    order = ["run", "model", "backend", *(label[m] for m in shown), *memory.values(), "status"]
    df = pd.DataFrame(rows)[order]
    df = df.sort_values("backend", key=lambda b: b.map(backend_rank), kind="stable")
    df = df.sort_values("model", key=lambda m: m.map(model_rank), kind="stable").reset_index(drop=True)
    return df if several else df.drop(columns="run")


def summary_table(summary: pd.DataFrame, max_batch: dict[str, int] | None = None) -> str:
    df = summary_frame(summary, max_batch)
    if "status" in df:  # the terminal keeps the reason short; the report and the files hold it whole
        df = df.assign(status=df.status.map(lambda t: t if len(t) <= 60 else t[:59] + "…"))
    return text_frame(df) if len(df) else "(no results)"


def text_frame(df: pd.DataFrame, units: dict[str, str] | None = None) -> str:
    """Any table for the terminal, numbers in the report's human units (``units``: a column's unit
    taken from another name's, such as a metric's). A header longer than its values wraps onto a
    second line at a space, so the table stays narrow."""
    if df.empty:
        return "(nothing recorded)"
    from reports.blocks import cell_text, unit_for

    units = units or {}
    columns = []
    for c in df.columns:
        cells = [cell_text(v, unit_for(units.get(str(c), str(c))))[0] for v in df[c]]
        width = max(len(v) for v in cells)
        head = _wrap_header(str(c), width)
        width = max(width, *(len(h) for h in head))
        left = all(not _numeric(v) for v in cells)
        columns.append((head, cells, width, left))
    lines = []
    for i in range(max(len(h) for h, *_ in columns)):
        lines.append(" ".join((h[i] if i < len(h) else "").ljust(w) if left else
                              (h[i] if i < len(h) else "").rjust(w) for h, _, w, left in columns).rstrip())
    for r in range(len(df)):
        lines.append(" ".join(cells[r].ljust(w) if left else cells[r].rjust(w)
                              for _, cells, w, left in columns).rstrip())
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return text in ("–", "") or text[0].isdigit() or text[0] in "-+.∞−"


def _wrap_header(header: str, width: int) -> list[str]:
    """The header on one line, or on two split at the space that makes the wider half narrowest."""
    if len(header) <= width or " " not in header:
        return [header]
    spaces = [i for i, ch in enumerate(header) if ch == " "]
    best = min(spaces, key=lambda i: max(i, len(header) - i - 1))
    return [header[:best], header[best + 1:]]


def memory_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """What each backend costs in memory, one row per (run, model, backend), each figure measured
    against the memory held just before it (``bench.measure.memory``): its weights, what preparing
    it added (export, quantization, session, compiling, and the first call), and what one call added
    at each batch size. On CUDA the allocator's growth, else the process's resident set."""
    s = with_metric_columns(summary)
    ok = s[(s.status == "ok") & s.phase.isin(["train", "infer", "export"])]
    if ok.empty or ok.weights_bytes.isna().all():
        return pd.DataFrame()
    rows = []
    for (run_id, model, backend), g in ok.groupby(["run_id", "model", "backend"], sort=False):
        cuda = "cuda_growth_bytes" in g and g.cuda_growth_bytes.notna().any()
        call, prep = ("cuda_growth_bytes", "prepare_cuda_growth_bytes") if cuda else \
            ("rss_growth_bytes", "prepare_rss_growth_bytes")
        row = {"run_id": run_id, "model": model, "backend": backend,
               "measured_as": "CUDA allocator" if cuda else "process RSS",
               "weights_bytes": g.weights_bytes.dropna().iloc[0] if g.weights_bytes.notna().any() else np.nan,
               "prepare_bytes": g[prep].dropna().iloc[0] if prep in g and g[prep].notna().any() else np.nan}
        for r in g[g.phase == "infer"].sort_values("batch_size").itertuples():
            row[f"call_bs{int(r.batch_size)}_bytes"] = getattr(r, call, np.nan)
        rows.append(row)
    out = pd.DataFrame(rows)
    calls = sorted([c for c in out.columns if c.startswith("call_bs")], key=lambda c: int(c[7:-6]))
    out = out[["run_id", "model", "backend", "measured_as", "weights_bytes", "prepare_bytes", *calls]]
    out = out.sort_values("backend", key=lambda b: b.map(backend_rank), kind="stable")
    return out.sort_values("model", key=lambda m: m.map(model_rank), kind="stable").reset_index(drop=True)


def memory_row(memory: pd.DataFrame, run_id: str, model: str, backend: str) -> pd.Series | None:
    """One backend's row of ``memory_frame``, or None."""
    if memory.empty:
        return None
    hit = memory[(memory.run_id == run_id) & (memory.model == model) & (memory.backend == backend)]
    return hit.iloc[0] if len(hit) else None
