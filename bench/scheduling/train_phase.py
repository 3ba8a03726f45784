"""The training phase: every backend that trains does so in interleaved blocks of steps (one ``train``
cell each, ``bench.scheduling.phases.train_backends``); a resumed run loads the weights its completed
cells kept. It hands the later phases the trained models and the weights the backends that do not
train run (the fp32 reference's when it trained, else the first trained; when no backend of the run
trains, the reference is trained for them in a cell of its own)."""

from __future__ import annotations

import pandas as pd
import torch

from bench.engines.backends import REFERENCE, get_backend
from bench.phase import Phase, register
from bench.scheduling.context import ModelWork, PhaseContext
from bench.scheduling.phases import train_backends
from bench.storage.keys import CellKey
from bench.training.train import build_trainable


class TrainPhase(Phase):
    name = "train"
    title = "Training"
    about = "training in interleaved blocks of steps: throughput, accuracy, curves"
    order = 10
    section = "training"

    def cells(self, cfg, model: str, trainers: set[str], reference: str) -> list[CellKey]:
        own = [CellKey(model, b, "train") for b in cfg.backends if b in trainers]
        return own if own or not cfg.backends else [CellKey(model, reference, "train")]

    def run(self, ctx: PhaseContext, work: ModelWork) -> None:
        trainers = work.trainers()
        loaded = {b.name: load_trained(ctx, work.model, b) for b in trainers if not work.todo(b, "train")}
        work.trained = {name: m for name, m in loaded.items() if m is not None}
        work.trained.update(train_backends(ctx, work.model, [b for b in trainers if work.todo(b, "train")]))
        work.source = self._source(ctx, work)

    @staticmethod
    def _source(ctx: PhaseContext, work: ModelWork) -> torch.nn.Module | None:
        """The weights the backends that do not train run: the reference's when it trained, else the
        first trained; when none trained here, the reference's cell (loaded, or trained now)."""
        trained = work.trained
        source = next((trained[b.name] for b in work.available if b.name in trained and b.is_reference),
                      next(iter(trained.values()), None))
        if source is not None or all(b.trains for b in work.available):
            return source
        ref = get_backend(REFERENCE)
        if not work.todo(ref, "train"):
            return load_trained(ctx, work.model, ref)
        return train_backends(ctx, work.model, [ref], "reference for the non-training backends").get(ref.name)


def load_trained(ctx: PhaseContext, model: str, b) -> torch.nn.Module | None:
    """The weights a completed training cell kept (``model.pt``), or None when it did not end ok."""
    cell = ctx.writer.run_dir / "cells" / CellKey(model, b.name, "train").id
    try:
        if pd.read_parquet(cell / "summary.parquet").status.iloc[0] != "ok":
            return None
        net = build_trainable(model, b, ctx.cfg.backend_options, ctx.cfg.seed)
        net.load_state_dict(torch.load(cell / "model.pt", map_location=b.device, weights_only=True))
        return net
    except (OSError, RuntimeError, KeyError, IndexError, ValueError):
        return None


TRAIN = register(TrainPhase())
