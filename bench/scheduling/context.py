"""What a model's phases read and write, and nothing else of the scheduler: one typed context the
Runner builds once its run folder is open. A phase receives it (with the model and the backends it
works on) and writes its cells through ``writer``; it never reaches into the Runner."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bench.config.build import RunConfig
from bench.data.mnist import Mnist, Split, make_split
from bench.measure.machine import Machine
from bench.plumbing.stages import Stages
from bench.storage.keys import CellKey, MachineGroup
from bench.storage.results import RunWriter, write_cell


@dataclass
class Splits:
    """The train and test splits a model's configuration asks for, on a device, made once each."""

    cfg: RunConfig
    mnist: Mnist
    _made: dict[tuple, tuple[Split, Split]] = field(default_factory=dict)

    def __call__(self, model: str, device: str) -> tuple[Split, Split]:
        t = self.cfg.train_for(model)
        key = (device, t.normalization, t.limit_train, t.limit_test)
        if key not in self._made:
            m = self.mnist
            self._made[key] = (make_split(m.train_images, m.train_labels, t.normalization, device, t.limit_train),
                               make_split(m.test_images, m.test_labels, t.normalization, device, t.limit_test))
        return self._made[key]


@dataclass
class MachineLog:
    """The machine's state at every round, written per group (its ``machine`` rows) and kept for the
    run's closing warnings."""

    writer: RunWriter
    machine: Machine = field(default_factory=Machine)
    rows: list[dict] = field(default_factory=list)

    def record(self, group: MachineGroup, rows: list[dict]) -> None:
        if rows:
            self.rows += rows
            write_cell(self.writer.run_dir, group.folder, {"machine": pd.DataFrame(rows)})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


@dataclass
class PhaseContext:
    cfg: RunConfig
    writer: RunWriter
    mnist: Mnist
    splits: Splits
    machine_log: MachineLog
    progress: bool = True
    prepared_in_training: dict[tuple[str, str], object] = field(default_factory=dict)  # parity's, reused
    # samples/s of each inference cell timed ok in this process, by (model, backend, batch size)
    infer_speeds: dict[tuple[str, str, int], float] = field(default_factory=dict)
    # each backend's time breakdown measured after a batch size's rounds, until its cell is written
    breakdowns: dict[tuple[str, int], dict[str, pd.DataFrame]] = field(default_factory=dict)
    stages: Stages = field(default_factory=Stages)  # the run's own time, stage by stage (meta.json)

    @property
    def machine(self) -> Machine:
        return self.machine_log.machine

    def record_machine(self, group: MachineGroup, rows: list[dict]) -> None:
        self.machine_log.record(group, rows)


@dataclass
class ModelWork:
    """One model's work as its phases share it: the stored plan's cells still missing, the backends
    that run here, and what an earlier phase made for a later one (``bench.phase.Phase.run``)."""

    model: str
    missing: set[str]  # ids of the stored plan's cells that have no folder yet
    available: list  # the backends (``bench.engines.backends.Backend``) that run here
    trained: dict = field(default_factory=dict)  # train: each training backend's model that ended ok, by name
    source: object | None = None  # train: the weights the backends that do not train run
    prepared: dict = field(default_factory=dict)  # infer: each backend's prepared model, by name
    weights: dict = field(default_factory=dict)  # infer: the model each backend was prepared from, by name
    ready: list = field(default_factory=list)  # infer: the backends prepared for inference

    def todo(self, backend, phase: str, batch_size: int | None = None) -> bool:
        """Whether the plan's cell of ``backend`` (a Backend) in ``phase`` is still missing."""
        return CellKey(self.model, backend.name, phase, batch_size).id in self.missing

    def trainers(self) -> list:
        return [b for b in self.available if b.trains]
