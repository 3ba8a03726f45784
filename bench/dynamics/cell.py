"""The dynamics cell: analyses of one training cell recorded with ``--dynamics``, read back from
its files, so ``run --dynamics`` and ``mnist-bench dynamics RUN`` share one path. The model's
reference backend gets the landscape analyses (and, in a run, the line to the same training from
the next seed); every other training backend is analysed against the reference's final weights."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from bench.data.mnist import Mnist, make_split
from bench.dynamics.analyses import (
    ANALYSES,
    DynamicsConfig,
    Trajectory,
    analyse,
    analyse_against,
    seed_connectivity,
    travelled,
)
from bench.dynamics.recording import load_checkpoints
from bench.engines.backends import REFERENCE, get_backend
from bench.plumbing import console
from bench.storage.results import RunWriter


def dynamics_cell(cell_dir: Path, mnist: Mnist, dcfg: DynamicsConfig, progress: bool = False,
                  reference_dir: Path | None = None, other_seed: torch.Tensor | None = None
                  ) -> dict[str, pd.DataFrame]:
    """Analyse the training cell in ``cell_dir``: against the reference's training cell
    ``reference_dir``, or (None) as the reference, with ``other_seed`` the final weights of its
    training from the next seed where there is one. Returns the dynamics cell's tables."""
    summary = pd.read_parquet(cell_dir / "summary.parquet").iloc[0]
    steps, checkpoints = load_checkpoints(cell_dir / "checkpoints.pt")
    b = get_backend(summary.backend)
    device = b.device if b.unavailable_reason() is None else "cpu"
    norm = summary.get("normalization", "minmax")
    train = make_split(mnist.train_images, mnist.train_labels, norm, device)
    test = make_split(mnist.test_images, mnist.test_labels, norm, device)
    against = None if reference_dir is None else pd.read_parquet(reference_dir / "summary.parquet").backend.iloc[0]
    what = "landscape analyses" if against is None else f"against {against}"
    with console.stage(f"dynamics {summary.model} {summary.backend} ({what} on {device})",
                       ANALYSES if against is None else 3, "analysis", enabled=progress) as st:
        if against is None:
            landscape, timings = analyse(Trajectory(summary.model, steps, checkpoints), train, test, dcfg,
                                         on_analysis=lambda name: st.update(note=name))
            if other_seed is not None:
                landscape = pd.concat([landscape, seed_connectivity(summary.model, checkpoints[-1], other_seed, train,
                                                                    dcfg)], ignore_index=True)
        else:
            reference_final = load_checkpoints(reference_dir / "checkpoints.pt")[1][-1]
            landscape, timings = analyse_against(Trajectory(summary.model, steps, checkpoints), reference_final,
                                                 train, test, dcfg, on_analysis=lambda name: st.update(note=name))
    row = {"analysis_device": device, "checkpoints": len(steps), "landscape_subset": dcfg.subset, "grid": dcfg.grid,
           "reference_backend": against or summary.backend, **travelled(checkpoints), **timings}
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
        for backend in [ref, *(b for b in by_backend if b != ref)]:
            tables = dynamics_cell(by_backend[backend], mnist, dcfg, progress,
                                   None if backend == ref else by_backend[ref])
            written.append(writer.write(model, get_backend(backend), "dynamics", tables))
    return written
