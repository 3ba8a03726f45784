"""A plugin phase with an option of its own, as a third party would write one: one module that
declares a phase and registers it. ``norms`` (``--norms``): after training, each trained model's
weights per layer (parameters, L2 norm, largest magnitude), one ``norms`` cell per model and training
backend with a ``weight_norms`` table. Loaded in fresh processes with
``MNIST_BENCH_PLUGINS=tests.plugin_phase``; ``registered()`` adds it inside one process for the
length of a block."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from bench.phase import Phase, register, unregister
from bench.plumbing.options import option
from bench.storage.keys import CellKey
from bench.storage.schema import Column, Table


@dataclass(frozen=True)
class NormsOptions:
    key: ClassVar[str] = "norms"
    norms: bool = option(False, group="weight norms", flag=True,
                         help="after training, each trained model's weight norms per layer (the norms phase)")


class NormsPhase(Phase):
    name = "norms"
    title = "Weight norms"
    about = "each trained model's weights per layer: parameters, L2 norm, largest magnitude"
    options = NormsOptions
    tables = (Table("weight_norms", "norms: one row per parameter tensor",
                    (Column("layer", "str", True), Column("parameters", "int", True), Column("l2_norm", "float"),
                     Column("max_abs", "float"))),)

    def enabled(self, cfg) -> bool:
        return super().enabled(cfg) and cfg.options_of(NormsOptions).norms

    def cells(self, cfg, model: str, trainers: set[str], reference: str) -> list[CellKey]:
        return [CellKey(model, b, self.name) for b in cfg.backends if b in trainers]

    def run(self, ctx, work) -> None:
        for b in (b for b in work.trainers() if work.todo(b, self.name)):
            net = work.trained.get(b.name)
            if net is None:
                ctx.writer.write_status(work.model, b, self.name, "skipped", "no trained model (training did not "
                                                                             "end ok)")
                continue
            rows = [{"layer": n, "parameters": p.numel(), "l2_norm": float(p.detach().float().norm()),
                     "max_abs": float(p.detach().float().abs().max())} for n, p in net.named_parameters()]
            norms = pd.DataFrame(rows)
            summary = pd.DataFrame([{"parameters": int(norms.parameters.sum()),
                                     "l2_norm": float((norms.l2_norm ** 2).sum() ** 0.5)}])
            ctx.writer.write(work.model, b, self.name, {"summary": summary, "weight_norms": norms})


@contextlib.contextmanager
def registered():
    register(NormsPhase())
    try:
        yield
    finally:
        unregister(NormsPhase.name)


if __name__ in os.environ.get("MNIST_BENCH_PLUGINS", "").split(","):  # loaded as a plugin: registered for good
    register(NormsPhase())
