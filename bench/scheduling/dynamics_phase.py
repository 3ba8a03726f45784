"""The dynamics phase (``--dynamics``): every training backend's recorded training analysed, also on
a resumed run. Per model, the reference backend (``bench.dynamics.cell.reference_of``) gets the
landscape analyses and the line from its final weights to those of the same training from the next
seed (trained here, untimed: the scale a barrier is read against); every other training backend is
analysed against the reference's final weights (linear mode connectivity, perturbation, sharpness).
It plans no cell of its own: a recorded training is what asks for it."""

from __future__ import annotations

import sys

import torch

from bench.config.types import DynamicsConfig
from bench.dynamics.cell import Across, dynamics_cell, model_plane, reference_of
from bench.dynamics.recording import flat_params
from bench.engines.backends import get_backend
from bench.measure.rounds import interleave
from bench.phase import Phase, register
from bench.scheduling.cells import guarded
from bench.scheduling.context import ModelWork, PhaseContext
from bench.storage.keys import CellKey
from bench.training.train import TrainJob, train_blocks

OTHER_SEED = "the next seed's training"  # a stage's part: the scale a barrier is read against


class DynamicsPhase(Phase):
    name = "dynamics"
    title = "Optimization dynamics"
    about = "gradient flow per layer, the loss landscape, and whether every backend reaches the reference's basin"
    order = 20
    section = "optimization-dynamics"

    def run(self, ctx: PhaseContext, work: ModelWork) -> None:
        cells = ctx.writer.run_dir / "cells"
        train_dirs = {b.name: cells / CellKey(work.model, b.name, "train").id for b in work.trainers()
                      if b.name in work.trained}
        recorded = {name: d for name, d in train_dirs.items() if (d / "checkpoints.pt").is_file()}
        missing = [n for n in recorded if not (cells / CellKey(work.model, n, "dynamics").id).is_dir()]
        if not missing:
            return
        ref = reference_of(list(recorded))
        dcfg = DynamicsConfig(grid=ctx.cfg.grid, subset=ctx.cfg.subset)
        plane = model_plane(list(recorded.values()), recorded[ref])
        for name in sorted(missing, key=lambda n: n != ref):  # the reference first
            b = get_backend(name)
            if name == ref:
                with ctx.stages.timed("dynamics", work.model, OTHER_SEED):
                    across = Across(plane=plane, other_seed=_other_seed(ctx, work.model, b))
            else:
                across = Across(recorded[ref], plane)
            guarded(ctx.writer, work.model, b, "dynamics", lambda: ctx.writer.write(
                work.model, b, "dynamics", dynamics_cell(recorded[name], ctx.mnist, dcfg, ctx.progress, across)))


def _other_seed(ctx: PhaseContext, model: str, b) -> torch.Tensor | None:
    """The final weights of ``b``'s training from the run's next seed (untimed, unrecorded); None
    with a warning when it fails (the reference's cell then lacks the seed line, never its analyses)."""
    train, test = ctx.splits(model, b.device)
    job = TrainJob(model, b, train, test, ctx.cfg.train_for(model), ctx.cfg.seed + 1, ctx.cfg.backend_options)
    result = interleave({"other seed": train_blocks(job)})["other seed"]
    if isinstance(result, Exception):
        print(f"warning: {model} {b.name} dynamics: no seed line (its training from seed {ctx.cfg.seed + 1} "
              f"failed: {type(result).__name__}: {str(result)[:200]})", file=sys.stderr)
        return None
    return flat_params(result.model)


DYNAMICS = register(DynamicsPhase())
