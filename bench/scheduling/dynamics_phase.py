"""The dynamics phase: the landscape analyses (``bench.dynamics``) of each training cell that recorded
its dynamics (``--dynamics``: the first backend that trains each model) and has none yet, also on a
resumed run. It plans no cell of its own: a recorded training is what asks for it."""

from __future__ import annotations

from bench.config.types import DynamicsConfig
from bench.dynamics.cell import dynamics_cell
from bench.phase import Phase, register
from bench.scheduling.cells import guarded
from bench.scheduling.context import ModelWork, PhaseContext
from bench.storage.keys import CellKey


class DynamicsPhase(Phase):
    name = "dynamics"
    title = "Optimization dynamics"
    about = "gradient flow per layer, the loss landscape around the minimum"
    order = 20
    section = "dynamics"

    def run(self, ctx: PhaseContext, work: ModelWork) -> None:
        cells = ctx.writer.run_dir / "cells"
        for b in (b for b in work.trainers() if b.name in work.trained):
            train_dir = cells / CellKey(work.model, b.name, "train").id
            if (train_dir / "checkpoints.pt").is_file() and not (cells / CellKey(work.model, b.name,
                                                                                 "dynamics").id).is_dir():
                dcfg = DynamicsConfig(grid=ctx.cfg.grid, subset=ctx.cfg.subset)
                guarded(ctx.writer, work.model, b, "dynamics", lambda: ctx.writer.write(
                    work.model, b, "dynamics", dynamics_cell(train_dir, ctx.mnist, dcfg, ctx.progress)))


DYNAMICS = register(DynamicsPhase())
