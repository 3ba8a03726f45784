"""The data-parallel training phase (``--launcher torchrun``): one ``train`` cell per model, backend
and world size (its suffix ``wsN``). Its cells are run by torchrun's ranks (``bench.distributed.launch``
starts them, each rank takes its world size's cells from the stored plan), not by the runner."""

from __future__ import annotations

from bench.phase import Phase, register
from bench.storage.keys import CellKey


class DistributedPhase(Phase):
    name = "distributed"
    title = "Data-parallel scaling"
    about = "DistributedDataParallel training over torchrun's ranks, per world size"
    order = 15
    section = "scaling"

    def enabled(self, cfg) -> bool:
        return cfg.distributed.enabled

    def cells(self, cfg, model: str, trainers: set[str], reference: str) -> list[CellKey]:
        return [CellKey(model, b, "train", None, f"ws{ws}") for ws in cfg.distributed.world_sizes
                for b in cfg.backends]

    def run(self, ctx, work) -> None:
        raise RuntimeError("a data-parallel run's cells are trained by torchrun's ranks (bench.distributed.launch)")


DISTRIBUTED = register(DistributedPhase())
