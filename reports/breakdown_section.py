"""Where the time goes: per model, batch 1 and the largest batch, each backend's call broken into
categories (bench.measure.breakdown: matmul & conv, elementwise & activation, casts & layout,
memory, other operators, framework overhead), side by side, with the table behind the chart."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.analysis.breakdown import breakdown_frame
from bench.measure.breakdown import AGREEMENT, CATEGORIES
from bench.storage.catalog import backend_rank, model_rank
from reports.blocks import img, table, warn
from reports.charts import to_image
from reports.section import ReportContext, Section

_COLORS = dict(zip(CATEGORIES, ["#4c72b0", "#55a868", "#dd8452", "#8172b3", "#937860", "#c7c7c7"]))


def _frame(ctx: ReportContext) -> pd.DataFrame | None:
    b = breakdown_frame(ctx.rt)
    if b.empty:
        return None
    keys = [*ctx.first, "model", "batch_size", "backend"]
    wide = b.pivot_table(index=keys, columns="name", values="seconds_per_call", aggfunc="first")
    wide = wide[[c for c in CATEGORIES if c in wide]].rename(columns=lambda c: f"{c} (s)")
    facts = b.groupby(keys)[["wall_s_per_call", "timed_s_per_call", "wall_vs_timed", "profiled_s_per_call",
                             "profiler_s_per_operator", "page_faults_per_call", "calls"]].first()
    out = wide.join(facts).reset_index()
    return out.sort_values(keys, key=lambda c: c.map(model_rank) if c.name == "model" else
                           c.map(backend_rank) if c.name == "backend" else c, kind="stable").reset_index(drop=True)


def _chart(frame: pd.DataFrame) -> bytes | None:
    models = list(dict.fromkeys(frame.model))
    sizes = {m: sorted(frame[frame.model == m].batch_size.unique()) for m in models}
    panels = [(m, s) for m in models for s in dict.fromkeys([sizes[m][0], sizes[m][-1]])]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.1 + 0.42 * frame.backend.nunique() * len(panels)),
                             squeeze=False)
    for ax, (model, bs) in zip(axes[:, 0], panels):
        d = frame[(frame.model == model) & (frame.batch_size == bs)]
        left = np.zeros(len(d))
        for c in CATEGORIES:
            us = d[f"{c} (s)"].fillna(0).clip(lower=0).to_numpy() * 1e6
            ax.barh(d.backend, us, left=left, color=_COLORS[c], label=c, height=0.6)
            left += us
        ax.set_title(f"{model}, batch {int(bs)}: µs per call, by where it goes", fontsize=10, loc="left")
        ax.invert_yaxis()
        ax.tick_params(labelsize=8)
    axes[0, 0].legend(fontsize=8, ncols=3, loc="lower left", bbox_to_anchor=(0, 1.12), frameon=False)
    fig.tight_layout()
    return to_image(fig)


def _render(ctx: ReportContext, frame: pd.DataFrame | None) -> str:
    if frame is None or frame.empty:
        return ""
    off = frame[(frame.wall_vs_timed - 1).abs() > AGREEMENT]
    parts = ['<p class="note">A pass of its own after the timing: each backend\'s call run under its engine\'s '
             "profiler (ONNX Runtime's per-node profile, otherwise torch.profiler's operators by self time), the "
             "operators grouped by what they do, each less the profiler's own cost per record (what the profiled "
             "call took beyond the plain one, spread over the operators it recorded); framework overhead is the "
             "plain call's wall time less its operators (Python, dispatch, the session's own work). The "
             "verdict's \"where the gap goes\" reads the differences against the reference from here.</p>"]
    if len(off):
        faster = off[off.wall_vs_timed < 1]
        cells = "; ".join(f"{r.model} {r.backend} batch {int(r.batch_size)} {r.wall_vs_timed:.2f}×"
                          for r in off.itertuples())
        why = ("each ran faster alone in the pass than interleaved with the others in the rounds: the "
               "interleaving itself slows it" if len(faster) == len(off) else
               "the pass's call ran in another state than the rounds' (the interleaving, the machine's speed, the "
               "allocator's history)")
        parts.append(warn(f"{len(off)} of {len(frame)} calls of the pass differ from their timed call by more than "
                          f"{AGREEMENT:.0%} ({cells}): {why}; their shares are of the pass's call, and a verdict "
                          "that rests on them says it is not explained"))
    parts.append(img(_chart(frame), "where the time goes"))
    parts.append(table(frame, "breakdown-table"))
    return "\n".join(parts)


SECTION = Section("breakdown", "Where the time goes", _render, frame=_frame)
