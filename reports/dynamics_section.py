"""Report section "Optimization dynamics": MLP and CNN side by side, each chart with a
two-line caption saying how to read it."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from bench.analysis.basins import COLUMNS, basins
from bench.storage.catalog import backend_rank, model_rank
from bench.storage.results import RunTables
from reports.blocks import cols, img, table, warn
from reports.charts import backend_color, to_image
from reports.section import ReportContext, Section


def _by_model(rt: RunTables, name: str) -> dict[str, pd.DataFrame]:
    """A table's rows per model, of each model's reference backend only (the one the landscape
    analyses are of; runs made before every backend recorded its dynamics have one backend)."""
    d = rt.with_cells(name)
    if d.empty:
        return {}
    s = rt["summary"]
    refs = s[(s.phase == "dynamics") & (s.backend == s.reference_backend)] if "reference_backend" in s else s.iloc[:0]
    keep = set(zip(refs.model, refs.backend))
    firsts = d.groupby("model").backend.first()
    d = d[[(m, b) in keep or (m not in set(refs.model) and b == firsts[m]) for m, b in zip(d.model, d.backend)]]
    return {m: g for m, g in sorted(d.groupby("model"), key=lambda kv: model_rank(kv[0]))}


def _paths(rt: RunTables, land: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Per model shown, the pca_path rows of every backend analysed on the reference's plane."""
    d = rt.with_cells("landscape")
    d = d[d.analysis == "pca_path"]
    return {m: d[d.model == m] if (d.model == m).any() else g[g.analysis == "pca_path"] for m, g in land.items()}


def connectivity(rt: RunTables):
    """Per model: the loss on the line from the reference's final weights to each backend's, and to
    the reference's from the next seed (dashed): the answer to "the same minimum?" at a glance."""
    land = rt.with_cells("landscape")
    if land.empty or not land.analysis.isin(["connectivity"]).any():
        return None
    lines = land[land.analysis.isin(["connectivity", "seed_connectivity"])]
    models = sorted(lines.model.unique(), key=model_rank)
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models):
        d = lines[lines.model == model]
        for (backend, analysis), g in sorted(d.groupby(["backend", "analysis"]), key=lambda kv: backend_rank(kv[0][0])):
            g = g.sort_values("x")
            seed = analysis == "seed_connectivity"
            ax.plot(g.x, g.loss, "--" if seed else "o-", ms=3, color="0.4" if seed else backend_color(backend),
                    label=f"{backend}, next seed" if seed else backend)
        ax.set(yscale="log", xlabel="α (0: the reference's final weights, 1: the other training's)", ylabel="loss",
               title=f"{model}: the line between two trainings' minima")
        ax.legend(fontsize=8)
    return to_image(fig)


def _across(ctx: ReportContext, frame: pd.DataFrame | None) -> str:
    if frame is None or frame.empty:
        return ""
    said = "".join(f"<li>{html.escape(f'{r.model}: {r.words}')}</li>" for r in frame.itertuples())
    chart = img(connectivity(ctx.rt), "connectivity",
                "Loss on the straight line between the reference backend's final weights (α=0) and each other "
                "backend's (α=1), log scale; dashed: the same line to the reference trained from the next seed. A "
                "line that stays low joins one basin; a hump as high as the dashed one means another minimum.")
    return (f"<h3>Across backends: the same minimum?</h3><ul>{said}</ul>{chart}"
            + table(cols(frame, [c for c in ctx.first + COLUMNS if c != "words"]), "basins-table"))


def _panels(n: int, height: float = 4.0, projection=None):
    """Side-by-side panels (MLP, CNN) laid out so that a twin axis's label and a colour bar keep
    clear of the next panel."""
    fig = plt.figure(figsize=(6.4 * n, height), layout="constrained")
    fig.get_layout_engine().set(wspace=0.12)
    axes = [fig.add_subplot(1, n, i + 1, projection=projection) for i in range(n)]
    return fig, axes


def layer_lines(layers: dict[str, pd.DataFrame], column: str, ylabel: str, guide: float | None = None):
    if not layers:
        return None
    fig, axes = _panels(len(layers))
    for ax, (model, d) in zip(axes, layers.items()):
        sns.lineplot(d, x="step", y=column, hue="layer", ax=ax, lw=0.8, estimator=None)
        ax.set(yscale="log", title=f"{model}: {ylabel}", ylabel=ylabel)
        if guide:
            ax.axhline(guide, ls="--", c="k", lw=1)
        ax.legend(fontsize=7)
    return to_image(fig)


def interpolation(land: dict[str, pd.DataFrame]):
    fig, axes = _panels(len(land))
    for ax, (model, d) in zip(axes, land.items()):
        d = d[d.analysis == "interpolation"].sort_values("x")
        ax.plot(d.x, d.loss, "o-", ms=3, label="loss")
        ax.set(yscale="log", xlabel="α (0: initial weights, 1: final weights)", ylabel="loss", title=model)
        ax2 = ax.twinx()
        ax2.plot(d.x, d.accuracy, "s-", ms=3, c="tab:orange", label="accuracy")
        ax2.set_ylabel("accuracy", color="tab:orange")
    return to_image(fig)


def contour(land: dict[str, pd.DataFrame], analysis: str, paths: dict[str, pd.DataFrame] | None = None):
    """``paths``: per model, the pca_path rows of every backend (one trajectory each, over the
    reference's contour on their shared plane); None: the random plane's contour alone."""
    fig, axes = _panels(len(land), 4.8)
    for ax, (model, d) in zip(axes, land.items()):
        s = d[d.analysis == analysis]
        if s.empty:
            continue
        grid = s.pivot_table(index="y", columns="x", values="loss")
        cs = ax.contourf(grid.columns, grid.index, np.log10(grid.values), levels=20, cmap="viridis")
        ax.contour(grid.columns, grid.index, np.log10(grid.values), levels=20, colors="white", linewidths=0.3)
        fig.colorbar(cs, ax=ax, label="log10 loss")
        title = f"{model}: loss around the final weights"
        if paths is not None:
            several = paths[model].backend.nunique() > 1
            for backend, p in sorted(paths[model].groupby("backend"), key=lambda kv: backend_rank(kv[0])):
                p = p.sort_values("step")
                color = backend_color(backend) if several else "red"
                ax.plot(p.x, p.y, "o-", c=color, ms=3, lw=1, label=backend)
                ax.plot(p.x.iloc[-1], p.y.iloc[-1], "*", c=color, ms=11)
            ax.plot(p.x.iloc[0], p.y.iloc[0], "k^", ms=7, label="init")
            var = d[d.analysis == "pca_variance"].sort_values("x").value.tolist() + [np.nan, np.nan]
            ax.set(xlabel=f"PC1 ({var[0]:.1%} of variance)", ylabel=f"PC2 ({var[1]:.1%} of variance)")
            ax.legend(fontsize=8)
            title = f"{model}: trajectories in their PCA plane" if several else f"{model}: trajectory in its PCA plane"
        else:
            ax.plot(0, 0, "r*", ms=11)
            ax.set(xlabel="direction 1 (filter-normalized)", ylabel="direction 2")
        ax.set_title(title)
    return to_image(fig)


def surface3d(land: dict[str, pd.DataFrame]):
    fig, axes = _panels(len(land), 4.8, projection="3d")
    for ax, (model, d) in zip(axes, land.items()):
        s = d[d.analysis == "surface"]
        grid = s.pivot_table(index="y", columns="x", values="loss")
        gx, gy = np.meshgrid(grid.columns, grid.index)
        ax.plot_surface(gx, gy, np.log10(grid.values), cmap="viridis", linewidth=0)
        ax.set(title=f"{model}: log10 loss surface", xlabel="d1", ylabel="d2")
    return to_image(fig)


def perturbation(land: dict[str, pd.DataFrame]):
    fig, axes = _panels(len(land))
    for ax, (model, d) in zip(axes, land.items()):
        p = d[d.analysis == "perturbation"]
        sns.lineplot(p, x="x", y="accuracy", errorbar="sd", marker="o", ax=ax)
        ax.set(title=f"{model}: accuracy under weight perturbation", xlabel="perturbation scale "
               "(filter-normalized)", ylabel="test accuracy", ylim=(0, 1))
    return to_image(fig)


def sharpness(land: dict[str, pd.DataFrame]):
    fig, axes = _panels(len(land))
    for ax, (model, d) in zip(axes, land.items()):
        s = d[d.analysis == "sharpness"]
        for step, g in s.groupby("step"):
            ax.plot(g.x, g.value, "o-", ms=3, label=f"step {int(step)}")
        ax.set(title=f"{model}: top Hessian eigenvalue (power iteration)", xlabel="iteration",
               ylabel="eigenvalue estimate")
        ax.legend(fontsize=8)
    return to_image(fig)


def render(ctx: ReportContext, frame: pd.DataFrame | None = None) -> str:
    rt = ctx.rt
    s = rt["summary"]
    layers = _by_model(rt, "dynamics_layers")
    land = _by_model(rt, "landscape")
    if not layers and not land:
        return ""
    parts = ['<p class="note">Recorded with --dynamics on every training backend; the charts below the comparison '
             "are of each model's reference backend; landscapes evaluated in eval mode on the first training images "
             "(see the timing table).</p>", _across(ctx, frame)]
    charts = [
        (lambda: layer_lines(layers, "grad_norm", "gradient norm"), "gradient flow",
         "Gradient norm of each layer at every recorded step, log scale. Backpropagation at work: layers far "
         "from the loss get smaller (vanishing) or larger (exploding) gradients; flat lines mean a layer stopped "
         "learning."),
        (lambda: layer_lines(layers, "update_ratio", "update / weight", guide=1e-3), "update ratio",
         "Size of each step's actual weight change relative to the weights (||Δθ||/||θ||), log scale. The dashed "
         "line at 1e-3 is the usual healthy level: far above, training is unstable; far below, it barely moves."),
        (lambda: interpolation(land), "interpolation",
         "Loss (blue) and accuracy (orange) on the straight line from the initial (α=0) to the final (α=1) "
         "weights. A monotone fall means no barrier separates the start from the minimum along this line."),
        (lambda: contour(land, "surface"), "surface contour",
         "Loss on a plane through the final weights (red star) spanned by two random filter-normalized "
         "directions. Wide, round basins mean a flat minimum; tight contours mean a sharp one."),
        (lambda: contour(land, "pca_surface", _paths(rt, land)), "trajectory",
         "Every training backend's path (from ▲ to its ★) projected on the top two PCA directions of all their "
         "checkpoints, over the reference's loss in that plane (one colour per backend; red when one backend "
         "recorded). The axis labels give the variance each direction explains: trust the picture only as far as "
         "those percentages."),
        (lambda: surface3d(land), "3d surface",
         "The random-plane loss surface in 3D (log scale). The same data as the contour plot, for seeing the "
         "shape of the basin."),
        (lambda: perturbation(land), "perturbation",
         "Test accuracy when the final weights are moved along random filter-normalized directions, mean ± sd "
         "over directions. A curve that stays high longer marks a flatter, more robust minimum."),
        (lambda: sharpness(land), "sharpness",
         "Top Hessian eigenvalue of the training loss at checkpoints, by power iteration; each line shows its "
         "convergence. Larger values mean a sharper minimum in its steepest direction."),
    ]
    for make, alt, caption in charts:
        try:
            parts.append(img(make(), alt, caption))
        except (KeyError, ValueError, IndexError) as e:  # the tables lack what this chart needs: say so in place
            parts.append(warn(f"Chart '{alt}' not drawn: the recorded tables lack its data ({type(e).__name__}: {e})."))
    dyn = s[s.phase == "dynamics"]
    if not dyn.empty:
        timing = ["model", "backend", "reference_backend", "analysis_device", "checkpoints", "distance_from_init",
                  "path_length", "landscape_subset", "grid", "surface_points", "interpolation_s", "surface_s",
                  "pca_surface_s", "connectivity_s", "perturbation_s", "sharpness_s"]
        parts.append(table(cols(dyn, timing), "dynamics-table"))
    return "\n".join(parts)


def _frame(ctx: ReportContext) -> pd.DataFrame | None:
    """Each training backend against its model's reference (``bench.analysis.basins``), exported."""
    b = basins(ctx.rt)
    return None if b.empty else b[[c for c in ctx.first + COLUMNS if c in b]]


SECTION = Section("optimization-dynamics", "Optimization dynamics", render, frame=_frame)
