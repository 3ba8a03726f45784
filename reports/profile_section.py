"""Report section "Profile": top operators, the training-step breakdown, links to the traces."""

from __future__ import annotations

import html
import os

import matplotlib.pyplot as plt
import pandas as pd

from reports.blocks import img, table
from reports.charts import to_image
from reports.section import ReportContext, Section


def phase_breakdown(phases: pd.DataFrame) -> bytes | None:
    if phases.empty:
        return None
    cells = list(dict.fromkeys(phases.label))
    order = ["data", "forward", "backward", "optimizer"]
    panels = [("cpu_ms_per_step", "host (CPU) time")]
    if phases.device_ms_per_step.fillna(0).gt(0).any():
        panels.append(("device_ms_per_step", "CUDA time"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 0.6 * len(cells) + 1.8), squeeze=False)
    axes = list(axes[0])
    for ax, (col, title) in zip(axes, panels):
        pivot = phases.pivot_table(index="label", columns="phase", values=col).reindex(index=cells,
                                                                                       columns=order).fillna(0)
        pivot.plot.barh(stacked=True, ax=ax, legend=ax is axes[0])
        ax.set(title=f"training step breakdown: {title}", xlabel="ms per step", ylabel="")
    return to_image(fig)


def render(ctx: ReportContext, _frame=None) -> str:
    rt, report_dir = ctx.rt, ctx.report_dir
    ops = rt.with_cells("profile_ops")
    if ops.empty:
        return ""
    phases = rt.with_cells("profile_phases")
    phases["label"] = phases.model + " · " + phases.backend
    parts = ['<p class="note">torch.profiler over the active steps of a separate profiling run (never a timing '
             "run). Times are per step; operators sorted by self time.</p>",
             img(phase_breakdown(phases), "step breakdown",
                  "How one training step splits into data (batch slicing), forward, backward (incl. zero_grad) "
                  "and optimizer, from the profiler's record_function ranges.")]
    for (model, backend), g in ops.groupby(["model", "backend"]):
        top = g.head(15)[["name", "calls", "self_cpu_time_us", "cpu_time_total_us", "self_device_time_us",
                          "device_time_total_us", "flops"]]
        parts += [f"<h3>{html.escape(model)} · {html.escape(backend)}: top operators</h3>",
                  table(top, f"profile-ops-{model}-{backend}")]
    hta = rt.with_cells("profile_hta")
    if not hta.empty:
        parts += ["<h3>GPU time: compute, non-compute (copies, communication) and idle</h3>",
                  '<p class="note">HolisticTraceAnalysis\'s temporal breakdown of each CUDA trace.</p>',
                  table(hta.drop(columns=["run_id", "cell_id"]), "profile-hta")]
    links = []
    for run_dir in rt.run_dirs:
        for trace in sorted((run_dir / "profile").glob("*.pt.trace.json*")):
            rel = os.path.relpath(trace, report_dir)
            links.append(f'<li><a href="{html.escape(rel)}">{html.escape(trace.name)}</a></li>')
        if (run_dir / "profile").is_dir():
            tb = html.escape(str(run_dir / "profile"))
            links.append(f"<li>The same files in TensorBoard, for those with torch-tb-profiler (no longer developed): "
                         f"<code>tensorboard --logdir {tb}</code></li>")
    if links:
        parts += ["<p><b>Traces</b>: open one in Perfetto: go to ui.perfetto.dev, choose <i>Open trace file</i> and "
                  "pick the file (it is read in the browser, never uploaded), or drop it on chrome://tracing. "
                  "One trace per model and backend:</p><ul>", *links, "</ul>"]
    return "\n".join(parts)


SECTION = Section("profile", "Profile", render)
