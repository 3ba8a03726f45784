"""Report section "Data-parallel scaling": training throughput and scaling efficiency against world
size, the share of a step spent in all-reduce, and the spread across ranks, from the cells a
``--launcher torchrun`` run wrote (summary rows with a ``world_size``, and the ``ranks`` table)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reports.blocks import img, table
from reports.charts import backend_color, to_image
from reports.section import ReportContext, Section

COLUMNS = ["model", "backend", "world_size", "nodes", "per_rank_batch", "global_batch", "scaling_batch",
           "train_samples_per_s", "train_samples_per_s_ci_low", "train_samples_per_s_ci_high", "efficiency",
           "step_s", "allreduce_per_step_s", "allreduce_span_per_step_s", "allreduce_share", "slowest_rank",
           "rank_spread", "test_accuracy",
           "dist_backend", "torch_threads_per_rank"]


def scaling_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per data-parallel training cell, with its scaling efficiency: throughput at N ranks
    over N times the throughput at 1 rank (same run, model, backend and batch mode)."""
    if "world_size" not in summary:
        return pd.DataFrame()
    d = summary[(summary.phase == "train") & summary.world_size.notna() & (summary.status == "ok")].copy()
    if d.empty:
        return d
    keys = ["run_id", "model", "backend", "scaling_batch"]
    one = d[d.world_size == 1][keys + ["train_samples_per_s"]].rename(columns={"train_samples_per_s": "one"})
    d = d.merge(one, on=keys, how="left")
    d["efficiency"] = d.train_samples_per_s / (d.world_size * d.one)
    d = d.sort_values(["model", "backend", "world_size"])
    return d[[c for c in COLUMNS if c in d]].reset_index(drop=True)


def scaling_chart(d: pd.DataFrame) -> bytes | None:
    if d.empty:
        return None
    models = list(dict.fromkeys(d.model))
    fig, axes = plt.subplots(len(models), 3, figsize=(15, 3.8 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        m = d[d.model == model]
        for backend, g in m.groupby("backend"):
            ax = axes[i, 0]
            ax.errorbar(g.world_size, g.train_samples_per_s, yerr=[
                (g.train_samples_per_s - g.train_samples_per_s_ci_low).clip(lower=0),
                (g.train_samples_per_s_ci_high - g.train_samples_per_s).clip(lower=0)], marker="o", capsize=3,
                label=backend, color=backend_color(backend))
            axes[i, 1].plot(g.world_size, g.efficiency, marker="o", label=backend, color=backend_color(backend))
        ws = np.arange(len(m))
        axes[i, 2].bar(ws, m.allreduce_share * 100, color="#c44e52", label="exposed all-reduce")
        axes[i, 2].set_xticks(ws, [f"{b}\n×{int(n)}" for b, n in zip(m.backend, m.world_size)], fontsize=8)
        axes[i, 0].set(title=f"{model}: training throughput", xlabel="world size (ranks)", ylabel="samples/s")
        axes[i, 1].axhline(1.0, ls="--", c="grey", lw=1)
        axes[i, 1].set(title=f"{model}: scaling efficiency", xlabel="world size (ranks)",
                       ylabel="throughput / (N × throughput at 1)", ylim=(0, 1.2))
        axes[i, 2].set(title=f"{model}: all-reduce share of a step", ylabel="% of step time", ylim=(0, 100))
        for ax in axes[i, :2]:
            ax.set_xticks(sorted(m.world_size.unique()))
            ax.legend(title="backend", fontsize=8)
    return to_image(fig)


def render(ctx: ReportContext, d: pd.DataFrame | None) -> str:
    if d is None or d.empty:
        return ""
    ranks = ctx.rt.with_cells("ranks", ("model", "backend", "world_size"))
    if not ranks.empty:
        ranks = ranks[[c for c in ["model", "backend", "world_size", "rank", "node_rank", "local_rank", "host",
                                   "steps", "rank_samples_per_s", "steady_s", "allreduce_s", "compute_s",
                                   "allreduce_span_s", "allreduce_share", "peak_rss_bytes"] if c in ranks]]
    return "\n".join([
        '<p class="note">DistributedDataParallel training launched by torchrun, one job per world size, measured one '
        "after another (not interleaved: compare them with that in mind). Throughput: the global batch times the "
        "steady-state steps over the slowest rank's time, its interval over blocks of steps. Efficiency: throughput "
        "at N ranks over N times the throughput at 1. All-reduce (and its share of a step): the exposed time, from "
        "the last bucket's launch (the backward pass has produced every gradient) to the last completion, the "
        "communication the backward pass did not hide; the span from the first launch, which overlaps the "
        "backward pass, is beside it. Rank spread: the slowest rank's "
        "time over the fastest's, minus one.</p>",
        img(scaling_chart(d), "data-parallel scaling", "Throughput (with its interval) and efficiency against "
            "world size; the share of each step spent in all-reduce."),
        table(d, "scaling-table"),
        f"<h3>{html.escape('Per rank')}</h3>" if not ranks.empty else "",
        table(ranks, "ranks-table") if not ranks.empty else ""])


SECTION = Section("scaling", "Data-parallel scaling", render, frame=lambda ctx: scaling_frame(ctx.summary))
