"""Analyses of recorded training runs: interpolation, surfaces, PCA trajectory, perturbation,
sharpness. Output: one tidy ``landscape`` table (see ``bench.storage.results.SCHEMA``).

Evaluation data (fixed and documented): the first ``subset`` training images for losses and
surfaces, the first ``perturb_test`` test images for the perturbation-accuracy curve, and the
first ``sharpness_subset`` training images for the Hessian. Models are in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Trajectory:
    """A recorded training: its model's name, the steps of its checkpoints and the flattened weights
    at each (initialization first, final last)."""

    model: str
    steps: list[int]
    checkpoints: torch.Tensor


@dataclass(frozen=True)
class Plane:
    """One plane for every training backend of a model: the top two principal directions of all
    their checkpoints around the reference's final weights, with the variance each explains, so
    their trajectories are drawn over one loss contour."""

    v1: torch.Tensor
    v2: torch.Tensor
    ratio: torch.Tensor
    final: torch.Tensor  # the reference's final weights: the plane's origin
    low: tuple[float, float]  # the corner of every trajectory's coordinates, padded
    high: tuple[float, float]

    def coords(self, checkpoints: torch.Tensor) -> torch.Tensor:
        m = checkpoints - self.final
        return torch.stack([m @ self.v1, m @ self.v2], dim=1)


def shared_plane(trajectories: list[torch.Tensor], reference_final: torch.Tensor) -> Plane:
    """The plane of ``trajectories`` (each a training's checkpoints, flattened) around ``reference_final``."""
    v1, v2, ratio, coords = pca_directions(torch.cat(trajectories), reference_final)
    (lo_x, hi_x), (lo_y, hi_y) = _padded(coords[:, 0]), _padded(coords[:, 1])
    return Plane(v1, v2, ratio, reference_final, (lo_x, lo_y), (hi_x, hi_y))


def analyse_against(t: Trajectory, plane: Plane, train: Split, test: Split, cfg: DynamicsConfig,
                    on_analysis=None) -> tuple[pd.DataFrame, dict]:
    """The analyses of a training that another backend of the same model is the reference for: the
    line from the reference's final weights (``plane.final``) to this one's (linear mode
    connectivity), its path on the model's shared plane, accuracy under perturbation, and the
    sharpness at the final weights."""
    steps, checkpoints, device = t.steps, t.checkpoints, train.x.device
    model = build_model(t.model).to(device).eval()
    x, y = train.x[: cfg.subset], train.y[: cfg.subset]
    run = _Analyses(model, LandscapeEvaluator(model, x, y), unflatten(model, checkpoints[-1].to(device)),
                    unflatten(model, checkpoints[0].to(device)), cfg, on_analysis)
    run.connectivity("connectivity", unflatten(model, plane.final.to(device)), run.final)
    run.path(plane, steps, checkpoints)
    run.perturbation(test)
    run.sharpness(steps[-1:], checkpoints[-1:], train)
    return pd.DataFrame(run.rows), run.timings


def seed_connectivity(model_name: str, final: torch.Tensor, other_seed: torch.Tensor, train: Split,
                      cfg: DynamicsConfig) -> pd.DataFrame:
    """The line from a training's final weights to those of the same training from another seed:
    the scale a barrier between backends is read against."""
    model = build_model(model_name).to(train.x.device).eval()
    run = _Analyses(model, LandscapeEvaluator(model, train.x[: cfg.subset], train.y[: cfg.subset]),
                    unflatten(model, final.to(train.x.device)), {}, cfg)
    run.connectivity("seed_connectivity", run.final, unflatten(model, other_seed.to(train.x.device)))
    return pd.DataFrame(run.rows)


def travelled(checkpoints: torch.Tensor) -> dict[str, float]:
    """How far a training went: the straight distance from its initial to its final weights, and
    the length of its path through the checkpoints."""
    steps = checkpoints[1:] - checkpoints[:-1]
    return {"distance_from_init": float((checkpoints[-1] - checkpoints[0]).norm()),
            "path_length": float(steps.norm(dim=1).sum()) if len(steps) else 0.0}


def analyse(t: Trajectory, train: Split, test: Split, cfg: DynamicsConfig, on_analysis=None,
            plane: Plane | None = None) -> tuple[pd.DataFrame, dict]:
    """The five analyses of one recorded training, in order (one seeded generator draws every random
    direction, so the order is part of the result): rows of every analysis and each one's seconds.
    ``plane``: the model's shared plane of every backend's trajectory (default: this one's own)."""
    steps, checkpoints, device = t.steps, t.checkpoints, train.x.device
    model = build_model(t.model).to(device).eval()
    x, y = train.x[: cfg.subset], train.y[: cfg.subset]
    run = _Analyses(model, LandscapeEvaluator(model, x, y), unflatten(model, checkpoints[-1].to(device)),
                    unflatten(model, checkpoints[0].to(device)), cfg, on_analysis)
    run.interpolation()
    run.surface()
    run.pca(steps, checkpoints, plane or shared_plane([checkpoints], checkpoints[-1]))
    run.perturbation(test)
    run.sharpness(steps, checkpoints, train)
    return pd.DataFrame(run.rows), run.timings


@dataclass
class _Analyses:
    model: torch.nn.Module
    ev: LandscapeEvaluator  # the training subset's loss and accuracy
    final: dict
    init: dict
    cfg: DynamicsConfig
    on_analysis: object = None
    rows: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.device = next(iter(self.final.values())).device
        self.g = torch.Generator().manual_seed(self.cfg.seed)

    def timed(self, name, fn):
        with Stopwatch(self.device.type) as sw:
            out = fn()
        self.timings[f"{name}_s"] = sw.seconds
        if self.on_analysis is not None:
            self.on_analysis(name)
        return out

    def _grid_rows(self, analysis: str, gx, gy, loss, acc) -> None:
        self.rows += [{"analysis": analysis, "x": a, "y": b, "loss": lo, "accuracy": ac}
                      for a, b, lo, ac in zip(gx.reshape(-1).tolist(), gy.reshape(-1).tolist(),
                                              loss.reshape(-1).tolist(), acc.reshape(-1).tolist())]

    def interpolation(self) -> None:
        """1D interpolation init -> final: theta(a) = init + a * (final - init)."""
        alphas = torch.linspace(-0.25, 1.25, self.cfg.interp_points)
        delta = {k: self.final[k] - self.init[k] for k in self.final}
        loss, acc = self.timed("interpolation", lambda: self.ev.evaluate_plane(self.init, delta, None, alphas,
                                                                               torch.zeros_like(alphas)))
        self.rows += [{"analysis": "interpolation", "x": a, "loss": lo, "accuracy": ac}
                      for a, lo, ac in zip(alphas.tolist(), loss.tolist(), acc.tolist())]

    def connectivity(self, analysis: str, start: dict, end: dict) -> None:
        """Loss and accuracy on the straight line from ``start`` (alpha 0) to ``end`` (alpha 1): a
        barrier along it means two basins (Frankle et al. 2020, linear mode connectivity)."""
        alphas = torch.linspace(0, 1, self.cfg.connect_points)
        delta = {k: end[k] - start[k] for k in start}
        loss, acc = self.timed(analysis, lambda: self.ev.evaluate_plane(start, delta, None, alphas,
                                                                        torch.zeros_like(alphas)))
        self.rows += [{"analysis": analysis, "x": a, "loss": lo, "accuracy": ac}
                      for a, lo, ac in zip(alphas.tolist(), loss.tolist(), acc.tolist())]

    def surface(self) -> None:
        """2D surface on a random filter-normalized plane around the final weights."""
        d1 = filter_normalized_direction(self.final, self.g)
        d2 = filter_normalized_direction(self.final, self.g)
        axis = torch.linspace(-self.cfg.span, self.cfg.span, self.cfg.grid)
        gx, gy, loss, acc = self.timed("surface", lambda: self.ev.surface(self.final, d1, d2, axis, axis))
        self.timings["surface_points"] = gx.numel()
        self._grid_rows("surface", gx, gy, loss, acc)

    def pca(self, steps: list[int], checkpoints: torch.Tensor, plane: Plane) -> None:
        """The PCA plane of the trajectories, with the loss contours in that plane around its origin
        (these final weights) and this training's path on it."""
        model, device, grid = self.model, self.device, self.cfg.grid
        self.rows += [{"analysis": "pca_variance", "x": i + 1, "value": r} for i, r in enumerate(plane.ratio.tolist())]
        p1, p2 = unflatten(model, plane.v1.to(device)), unflatten(model, plane.v2.to(device))
        gx, gy, loss, acc = self.timed("pca_surface", lambda: self.ev.surface(
            self.final, p1, p2, torch.linspace(plane.low[0], plane.high[0], grid),
            torch.linspace(plane.low[1], plane.high[1], grid)))
        self._grid_rows("pca_surface", gx, gy, loss, acc)
        self.path(plane, steps, checkpoints)

    def path(self, plane: Plane, steps: list[int], checkpoints: torch.Tensor) -> None:
        """This training's checkpoints on ``plane``, with the loss and accuracy at each."""
        loss, acc = self.ev.evaluate_at([unflatten(self.model, c.to(self.device)) for c in checkpoints])
        self.rows += [{"analysis": "pca_path", "x": c[0], "y": c[1], "step": s, "loss": lo, "accuracy": ac}
                      for c, s, lo, ac in zip(plane.coords(checkpoints).tolist(), steps, loss.tolist(), acc.tolist())]

    def perturbation(self, test: Split) -> None:
        """Accuracy under weight perturbation (test subset), several directions."""
        cfg = self.cfg
        test_ev = LandscapeEvaluator(self.model, test.x[: cfg.perturb_test], test.y[: cfg.perturb_test])
        scales = torch.tensor(cfg.perturb_scales)
        moved = scales != 0  # scale 0 is the final weights themselves, the same in every direction: once

        def perturb():
            still = test_ev.evaluate_at([self.final]) if not moved.all() else None
            for k in range(cfg.perturb_directions):
                d = filter_normalized_direction(self.final, self.g)
                loss, acc = torch.empty(len(scales)), torch.empty(len(scales))
                loss[moved], acc[moved] = test_ev.evaluate_plane(self.final, d, None, scales[moved],
                                                                 torch.zeros(int(moved.sum())))
                if still is not None:
                    loss[~moved], acc[~moved] = still[0], still[1]
                self.rows.extend({"analysis": "perturbation", "x": s, "y": k, "loss": lo, "accuracy": ac}
                                 for s, lo, ac in zip(scales.tolist(), loss.tolist(), acc.tolist()))

        self.timed("perturbation", perturb)

    def sharpness(self, steps: list[int], checkpoints: torch.Tensor, train: Split) -> None:
        """Sharpness: the top Hessian eigenvalue of the training loss at a few checkpoints."""
        cfg, model = self.cfg, self.model
        picks = sorted({round(i * (len(steps) - 1) / max(1, cfg.sharpness_checkpoints - 1))
                        for i in range(cfg.sharpness_checkpoints)})
        xs, ys = train.x[: cfg.sharpness_subset], train.y[: cfg.sharpness_subset]

        def sharpness():
            for i in picks:
                est = top_hessian_eigenvalue(model, unflatten(model, checkpoints[i].to(self.device)), xs, ys,
                                             cfg.sharpness_iters, cfg.seed)
                self.rows.extend({"analysis": "sharpness", "x": it + 1, "step": steps[i], "value": e}
                                 for it, e in enumerate(est))

        self.timed("sharpness", sharpness)


def _padded(v: torch.Tensor, pad: float = 0.25) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    width = max(hi - lo, 1e-3)
    return lo - pad * width, hi + pad * width
