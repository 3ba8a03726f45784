"""Where the time goes: per model, batch 1 and the largest batch, each backend's call broken into
categories (bench.measure.breakdown: matmul & conv, elementwise & activation, casts & layout,
memory, other operators, framework overhead), side by side, with the table behind the chart; and
each backend's training step by phase (data, forward, backward, optimizer) and by category."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.analysis.breakdown import breakdown_frame
from bench.measure.breakdown import AGREEMENT, CATEGORIES, STEP_PHASES
from bench.storage.catalog import backend_rank, model_rank
from reports.blocks import img, table, warn
from reports.charts import to_image
from reports.section import ReportContext, Section

_COLORS = dict(zip(CATEGORIES, ["#4c72b0", "#55a868", "#dd8452", "#8172b3", "#937860", "#c7c7c7"]))
_PHASE_COLORS = dict(zip(STEP_PHASES, ["#d9d9d9", "#1b9e77", "#d95f02", "#e7298a"]))  # apart from the kinds' colours


def _frame(ctx: ReportContext) -> pd.DataFrame | None:
    """One row per broken-down cell (inference calls, then training steps): seconds per call in each
    category and, for a step, in each phase, with the pass's figures."""
    b = breakdown_frame(ctx.rt, ("category", "phase"))
    if b.empty:
        return None
    keys = [*ctx.first, "model", "phase", "batch_size", "backend"]
    wide = b.set_index([*keys, "name"]).seconds_per_call.unstack("name")
    wide = wide[[c for c in (*CATEGORIES, *STEP_PHASES) if c in wide]].rename(columns=lambda c: f"{c} (s)")
    facts = [c for c in ("wall_s_per_call", "timed_s_per_call", "wall_vs_timed", "profiled_s_per_call",
                         "profiler_s_per_operator", "page_faults_per_call", "compiled_regions_per_call",
                         "graphs_compiled_in_pass", "calls") if c in b]
    out = wide.join(b.groupby(keys, dropna=False)[facts].first()).reset_index()
    out["_p"] = out.phase != "infer"  # inference calls first, then training steps
    order = [*ctx.first, "model", "_p", "batch_size", "backend"]
    out = out.sort_values(order, key=lambda c: c.map(model_rank) if c.name == "model" else
                          c.map(backend_rank) if c.name == "backend" else c, kind="stable")
    return out.drop(columns="_p").dropna(axis=1, how="all").reset_index(drop=True)


def _bars(ax, d: pd.DataFrame, parts: tuple[str, ...], colors: dict[str, str], title: str) -> None:
    left = np.zeros(len(d))
    for c in parts:
        us = d[f"{c} (s)"].fillna(0).clip(lower=0).to_numpy() * 1e6 if f"{c} (s)" in d else np.zeros(len(d))
        ax.barh(d.backend, us, left=left, color=colors[c], label=c, height=0.6)
        left += us
    ax.set_title(title, fontsize=10, loc="left")
    ax.invert_yaxis()
    ax.tick_params(labelsize=8)


def _chart(frame: pd.DataFrame) -> bytes | None:
    frame = frame[frame.phase == "infer"]
    models = list(dict.fromkeys(frame.model))
    sizes = {m: sorted(frame[frame.model == m].batch_size.unique()) for m in models}
    panels = [(m, s) for m in models for s in dict.fromkeys([sizes[m][0], sizes[m][-1]])]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.1 + 0.42 * frame.backend.nunique() * len(panels)),
                             squeeze=False)
    for ax, (model, bs) in zip(axes[:, 0], panels):
        _bars(ax, frame[(frame.model == model) & (frame.batch_size == bs)], CATEGORIES, _COLORS,
              f"{model}, batch {int(bs)}: µs per call, by where it goes")
    axes[0, 0].legend(fontsize=8, ncols=3, loc="lower left", bbox_to_anchor=(0, 1.12), frameon=False)
    fig.tight_layout()
    return to_image(fig)


def _step_chart(frame: pd.DataFrame) -> bytes | None:
    """Per model, each backend's training step by phase (left) and by category (right)."""
    frame = frame[frame.phase == "train"]
    models = list(dict.fromkeys(frame.model))
    if not models:
        return None
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 1.3 + 0.42 * frame.backend.nunique() * len(models)),
                             squeeze=False)
    for row, model in zip(axes, models):
        d = frame[frame.model == model]
        _bars(row[0], d, STEP_PHASES, _PHASE_COLORS, f"{model}: µs per training step, by phase")
        _bars(row[1], d, CATEGORIES, _COLORS, f"{model}: by kind of work")
        row[1].set_yticklabels([])
    for ax, ncols in ((axes[0, 0], 4), (axes[0, 1], 2)):
        ax.legend(fontsize=8, ncols=ncols, loc="lower left", bbox_to_anchor=(0, 1.12), frameon=False)
    fig.tight_layout()
    return to_image(fig)


def _render(ctx: ReportContext, frame: pd.DataFrame | None) -> str:
    if frame is None or frame.empty:
        return ""
    calls, steps = frame[frame.phase == "infer"], frame[frame.phase == "train"]
    parts = ['<p class="note">A pass of its own after the timing: each backend\'s call run under its engine\'s '
             "profiler (ONNX Runtime's per-node profile, otherwise torch.profiler's operators by self time), the "
             "operators grouped by what they do, each less the profiler's own cost per record (what the profiled "
             "call took beyond the plain one, spread over the operators it recorded); framework overhead is the "
             "plain call's wall time less its operators (Python, dispatch, autograd's and the session's own work). "
             "The verdict's \"where the gap goes\" reads the differences against the reference from here.</p>"]
    off = frame[(frame.wall_vs_timed - 1).abs() > AGREEMENT]
    if len(off):
        faster = off[off.wall_vs_timed < 1]
        cells = "; ".join(f"{r.model} {r.backend} {_what(r)} {r.wall_vs_timed:.2f}×" for r in off.itertuples())
        why = ("each ran faster alone in the pass than interleaved with the others in the rounds: the "
               "interleaving itself slows it" if len(faster) == len(off) else
               "the pass's call ran in another state than the rounds' (the interleaving, the machine's speed, the "
               "allocator's history)")
        parts.append(warn(f"{len(off)} of {len(frame)} calls of the pass differ from their timed call by more than "
                          f"{AGREEMENT:.0%} ({cells}): {why}; their shares are of the pass's call, and a verdict "
                          "that rests on them says it is not explained"))
    if len(calls):
        parts.append(img(_chart(frame), "where the time goes"))
        parts.append(table(calls.dropna(axis=1, how="all"), "breakdown-table"))
    if len(steps):
        parts.append("<h3>Training steps</h3>")
        parts.append('<p class="note">The run\'s own training step (its compiled forward, optimizer and '
                     "augmentation) run again after the training on further batches, its weights and optimizer "
                     "put back afterwards: each phase's median over the pass's steps (data: fetching and augmenting "
                     "the batch; forward: the loss; backward: zeroing the gradients and the backward pass; "
                     "optimizer: its step), and the step's operators by kind. For a compiled backend, the graphs it "
                     "enters per step (more than one: a graph break) and the graphs compiled during the pass.</p>")
        parts.append(img(_step_chart(frame), "where a training step's time goes"))
        steps = steps.dropna(axis=1, how="all").drop(columns=["phase", "batch_size"], errors="ignore")
        kinds = [f"{c} (s)" for c in CATEGORIES]
        parts.append(table(steps.drop(columns=kinds, errors="ignore"), "step-breakdown-table"))
        parts.append(table(steps[[c for c in steps if c in [*ctx.first, "model", "backend", *kinds]]],
                           "step-kinds-table"))
    return "\n".join(parts)


def _what(r) -> str:
    return "training step" if r.phase == "train" else f"batch {int(r.batch_size)}"


SECTION = Section("breakdown", "Where the time goes", _render, frame=_frame)
