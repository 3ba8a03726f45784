"""The dynamics cell: landscape analyses of one training cell recorded with ``--dynamics``, read
back from its files, so ``run --dynamics`` and ``mnist-bench dynamics RUN`` share one path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.data.mnist import Mnist, make_split
from bench.dynamics.analyses import ANALYSES, DynamicsConfig, analyse
from bench.dynamics.recording import load_checkpoints
from bench.engines.backends import get_backend
from bench.plumbing import console
from bench.storage.results import RunWriter


def dynamics_cell(cell_dir: Path, mnist: Mnist, dcfg: DynamicsConfig,
                  progress: bool = False) -> dict[str, pd.DataFrame]:
    """Analyse the training cell in ``cell_dir``; returns the dynamics cell's tables."""
    summary = pd.read_parquet(cell_dir / "summary.parquet").iloc[0]
    steps, checkpoints = load_checkpoints(cell_dir / "checkpoints.pt")
    b = get_backend(summary.backend)
    device = b.device if b.unavailable_reason() is None else "cpu"
    norm = summary.get("normalization", "minmax")
    train = make_split(mnist.train_images, mnist.train_labels, norm, device)
    test = make_split(mnist.test_images, mnist.test_labels, norm, device)
    with console.stage(f"dynamics {summary.model} {summary.backend} (landscape analyses on {device})", ANALYSES,
                       "analysis", enabled=progress) as st:
        landscape, timings = analyse(summary.model, steps, checkpoints, train, test, dcfg,
                                     on_analysis=lambda name: st.update(note=name))
    row = {"analysis_device": device, "checkpoints": len(steps), "landscape_subset": dcfg.subset, "grid": dcfg.grid,
           **timings}
    return {"summary": pd.DataFrame([row]), "landscape": landscape}


def analyse_run(run_dir: Path, mnist: Mnist, dcfg: DynamicsConfig, progress: bool = False) -> list[Path]:
    """``mnist-bench dynamics RUN``: (re-)analyse every training cell of a run that recorded dynamics."""
    writer = RunWriter(run_dir)
    written = []
    for checkpoints in sorted((run_dir / "cells").glob("*/checkpoints.pt")):
        summary = pd.read_parquet(checkpoints.parent / "summary.parquet").iloc[0]
        tables = dynamics_cell(checkpoints.parent, mnist, dcfg, progress)
        written.append(writer.write(summary.model, get_backend(summary.backend), "dynamics", tables))
    return written
