"""The dynamics cell: analyses of one training cell recorded with ``--dynamics``, read back from
its files, so ``run --dynamics`` and ``mnist-bench dynamics RUN`` share one path. The model's
reference backend gets the landscape analyses (and, in a run, the line to the same training from
the next seed); every other training backend is analysed against the reference's final weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bench.data.mnist import Mnist, make_split
from bench.dynamics.analyses import (
    ANALYSES,
    DynamicsConfig,
    Plane,
    Trajectory,
    analyse,
    analyse_against,
    seed_connectivity,
    shared_plane,
    travelled,
)
from bench.dynamics.recording import load_checkpoints
from bench.engines.backends import REFERENCE, get_backend
from bench.plumbing import console
from bench.storage.results import RunWriter


@dataclass(frozen=True)
class Across:
    """What a model's other recorded trainings give one cell's analyses: the reference's training
    cell (None: this one is the reference), the plane of every backend's trajectory, and the
    reference's final weights from the next seed (the reference's cell only; None: no seed line)."""

    reference_dir: Path | None = None
    plane: Plane | None = None
    other_seed: torch.Tensor | None = None


def model_plane(cell_dirs: list[Path], reference_dir: Path) -> Plane:
    """The plane of every recorded training of a model, around its reference's final weights."""
    final = load_checkpoints(reference_dir / "checkpoints.pt")[1][-1]
    return shared_plane([load_checkpoints(d / "checkpoints.pt")[1] for d in cell_dirs], final)


def dynamics_cell(cell_dir: Path, mnist: Mnist, dcfg: DynamicsConfig, progress: bool = False,
                  across: Across = Across()) -> dict[str, pd.DataFrame]:
    """Analyse the training cell in ``cell_dir``, as its model's reference or against it
    (``across``); returns the dynamics cell's tables."""
    summary = pd.read_parquet(cell_dir / "summary.parquet").iloc[0]
    t = Trajectory(summary.model, *load_checkpoints(cell_dir / "checkpoints.pt"))
    b = get_backend(summary.backend)
    device = b.device if b.unavailable_reason() is None else "cpu"
    norm = summary.get("normalization", "minmax")
    train = make_split(mnist.train_images, mnist.train_labels, norm, device)
    test = make_split(mnist.test_images, mnist.test_labels, norm, device)
    ref = across.reference_dir
    against = None if ref is None else pd.read_parquet(ref / "summary.parquet").backend.iloc[0]
    what = "landscape analyses" if against is None else f"against {against}"
    with console.stage(f"dynamics {summary.model} {summary.backend} ({what} on {device})",
                       ANALYSES if against is None else 3, "analysis", enabled=progress) as st:
        step = lambda name: st.update(note=name)  # noqa: E731
        if against is None:
            landscape, timings = analyse(t, train, test, dcfg, step, across.plane)
            if across.other_seed is not None:
                landscape = pd.concat([landscape, seed_connectivity(t.model, t.checkpoints[-1], across.other_seed,
                                                                    train, dcfg)], ignore_index=True)
        else:
            plane = across.plane or model_plane([cell_dir, ref], ref)
            landscape, timings = analyse_against(t, plane, train, test, dcfg, step)
    row = {"analysis_device": device, "checkpoints": len(t.steps), "landscape_subset": dcfg.subset,
           "grid": dcfg.grid, "reference_backend": against or summary.backend, **travelled(t.checkpoints), **timings}
    return {"summary": pd.DataFrame([row]), "landscape": landscape}


def reference_of(backends: list[str]) -> str:
    """The backend a model's other training backends are analysed against: the reference backend
    when it trained with dynamics, else the first that did."""
    return REFERENCE if REFERENCE in backends else backends[0]


def analyse_run(run_dir: Path, mnist: Mnist, dcfg: DynamicsConfig, progress: bool = False) -> list[Path]:
    """``mnist-bench dynamics RUN``: (re-)analyse every training cell of a run that recorded dynamics,
    each model's reference first (the line to another seed needs a training, so a run's own)."""
    writer = RunWriter(run_dir)
    cells: dict[str, dict[str, Path]] = {}
    for checkpoints in sorted((run_dir / "cells").glob("*/checkpoints.pt")):
        summary = pd.read_parquet(checkpoints.parent / "summary.parquet").iloc[0]
        cells.setdefault(summary.model, {})[summary.backend] = checkpoints.parent
    written = []
    for model, by_backend in cells.items():
        ref = reference_of(list(by_backend))
        plane = model_plane(list(by_backend.values()), by_backend[ref])
        for backend in [ref, *(b for b in by_backend if b != ref)]:
            across = Across(None if backend == ref else by_backend[ref], plane)
            tables = dynamics_cell(by_backend[backend], mnist, dcfg, progress, across)
            written.append(writer.write(model, get_backend(backend), "dynamics", tables))
    return written
