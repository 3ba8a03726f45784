"""Analyses of recorded training runs: interpolation, surfaces, PCA trajectory, perturbation,
sharpness. Output: one tidy ``landscape`` table (see ``bench.storage.results.SCHEMA``).

Evaluation data (fixed and documented): the first ``subset`` training images for losses and
surfaces, the first ``perturb_test`` test images for the perturbation-accuracy curve, and the
first ``sharpness_subset`` training images for the Hessian. Models are in eval mode.
"""

from __future__ import annotations

import pandas as pd
import torch

from bench.config.types import DynamicsConfig
from bench.data.mnist import Split
from bench.dynamics.landscape import (
    LandscapeEvaluator,
    filter_normalized_direction,
    pca_directions,
    top_hessian_eigenvalue,
    unflatten,
)
from bench.measure.clocks import Stopwatch
from models import build_model

ANALYSES = 5  # interpolation, surface, pca_surface, perturbation, sharpness


def analyse(model_name: str, steps: list[int], checkpoints: torch.Tensor, train: Split, test: Split,
            cfg: DynamicsConfig, on_analysis=None) -> tuple[pd.DataFrame, dict]:
    device = train.x.device
    model = build_model(model_name).to(device).eval()
    x, y = train.x[: cfg.subset], train.y[: cfg.subset]
    ev = LandscapeEvaluator(model, x, y)
    final = unflatten(model, checkpoints[-1].to(device))
    init = unflatten(model, checkpoints[0].to(device))
    g = torch.Generator().manual_seed(cfg.seed)
    rows: list[dict] = []
    timings: dict[str, float] = {}

    def timed(name, fn):
        with Stopwatch(device.type) as sw:
            out = fn()
        timings[f"{name}_s"] = sw.seconds
        if on_analysis is not None:
            on_analysis(name)
        return out

    # 1D interpolation init -> final: theta(a) = init + a * (final - init)
    alphas = torch.linspace(-0.25, 1.25, cfg.interp_points)
    delta = {k: final[k] - init[k] for k in final}
    loss, acc = timed("interpolation", lambda: ev.evaluate_plane(init, delta, None, alphas, torch.zeros_like(alphas)))
    rows += [{"analysis": "interpolation", "x": a, "loss": lo, "accuracy": ac}
             for a, lo, ac in zip(alphas.tolist(), loss.tolist(), acc.tolist())]

    # 2D surface on a random filter-normalized plane around the final weights
    d1 = filter_normalized_direction(final, g)
    d2 = filter_normalized_direction(final, g)
    axis = torch.linspace(-cfg.span, cfg.span, cfg.grid)
    gx, gy, loss, acc = timed("surface", lambda: ev.surface(final, d1, d2, axis, axis))
    timings["surface_points"] = gx.numel()
    rows += [{"analysis": "surface", "x": a, "y": b, "loss": lo, "accuracy": ac}
             for a, b, lo, ac in zip(gx.reshape(-1).tolist(), gy.reshape(-1).tolist(), loss.reshape(-1).tolist(),
                                     acc.reshape(-1).tolist())]

    # PCA plane of the trajectory, with the loss contours in that plane
    v1, v2, ratio, coords = pca_directions(checkpoints, checkpoints[-1])
    rows += [{"analysis": "pca_variance", "x": i + 1, "value": r} for i, r in enumerate(ratio.tolist())]
    p1, p2 = unflatten(model, v1.to(device)), unflatten(model, v2.to(device))
    lo_x, hi_x = _padded(coords[:, 0])
    lo_y, hi_y = _padded(coords[:, 1])
    gx, gy, loss, acc = timed("pca_surface", lambda: ev.surface(
        final, p1, p2, torch.linspace(lo_x, hi_x, cfg.grid), torch.linspace(lo_y, hi_y, cfg.grid)))
    rows += [{"analysis": "pca_surface", "x": a, "y": b, "loss": lo, "accuracy": ac}
             for a, b, lo, ac in zip(gx.reshape(-1).tolist(), gy.reshape(-1).tolist(), loss.reshape(-1).tolist(),
                                     acc.reshape(-1).tolist())]
    loss, acc = ev.evaluate_points([unflatten(model, c.to(device)) for c in checkpoints])
    rows += [{"analysis": "pca_path", "x": c[0], "y": c[1], "step": s, "loss": lo, "accuracy": ac}
             for c, s, lo, ac in zip(coords.tolist(), steps, loss.tolist(), acc.tolist())]

    # accuracy under weight perturbation (test subset), several directions
    test_ev = LandscapeEvaluator(model, test.x[: cfg.perturb_test], test.y[: cfg.perturb_test])
    scales = torch.tensor(cfg.perturb_scales)

    def perturb():
        for k in range(cfg.perturb_directions):
            d = filter_normalized_direction(final, g)
            loss, acc = test_ev.evaluate_plane(final, d, None, scales, torch.zeros_like(scales))
            rows.extend({"analysis": "perturbation", "x": s, "y": k, "loss": lo, "accuracy": ac}
                        for s, lo, ac in zip(scales.tolist(), loss.tolist(), acc.tolist()))

    timed("perturbation", perturb)

    # sharpness: top Hessian eigenvalue of the training loss at a few checkpoints
    picks = sorted({round(i * (len(steps) - 1) / max(1, cfg.sharpness_checkpoints - 1))
                    for i in range(cfg.sharpness_checkpoints)})
    xs, ys = train.x[: cfg.sharpness_subset], train.y[: cfg.sharpness_subset]

    def sharpness():
        for i in picks:
            est = top_hessian_eigenvalue(model, unflatten(model, checkpoints[i].to(device)), xs, ys,
                                         cfg.sharpness_iters, cfg.seed)
            rows.extend({"analysis": "sharpness", "x": it + 1, "step": steps[i], "value": e}
                        for it, e in enumerate(est))

    timed("sharpness", sharpness)
    return pd.DataFrame(rows), timings


def _padded(v: torch.Tensor, pad: float = 0.25) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    width = max(hi - lo, 1e-3)
    return lo - pad * width, hi + pad * width
