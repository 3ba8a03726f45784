"""Typed keys for what the result files name with strings: a cell (its folder, its ``cell_id``) and
a machine group (the ``group`` column of the machine rows, and the folder they are written to).
Every id is built here and nowhere else; readers compare keys, never split strings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.storage.schema import known_phases

_CELL = re.compile(r"(?P<model>[^_]+(?:_[^_]+)*?)__(?P<backend>.+?)__(?P<phase>[a-z]+)"
                   r"(?:_bs(?P<batch_size>\d+))?(?:_(?P<suffix>[A-Za-z0-9]+))?")


MACHINE = "machine"  # the backend part of a machine group's folder (``MachineGroup.folder``)


@dataclass(frozen=True)
class CellKey:
    model: str
    backend: str
    phase: str  # one of bench.storage.schema.Phase
    batch_size: int | None = None  # inference cells
    suffix: str = ""  # a variant of the same cell, such as a data-parallel world size (``ws2``)

    def __post_init__(self) -> None:
        if self.phase not in known_phases() and self.backend != MACHINE:
            raise ValueError(f"phase must be one of {', '.join(known_phases())}; got {self.phase!r}")

    @classmethod
    def parse(cls, cell_id: str) -> CellKey:
        """The key of a cell folder's name (``id``'s inverse); a ValueError for any other name."""
        m = _CELL.fullmatch(cell_id)
        if m is None or (m["phase"] not in known_phases() and m["backend"] != MACHINE):
            raise ValueError(f"{cell_id!r} is not a cell id")
        return cls(m["model"], m["backend"], m["phase"], int(m["batch_size"]) if m["batch_size"] else None,
                   m["suffix"] or "")

    @property
    def id(self) -> str:
        """The cell's folder name and its rows' ``cell_id``."""
        return (f"{self.model}__{self.backend}__{self.phase}" + (f"_bs{self.batch_size}" if self.batch_size else "")
                + (f"_{self.suffix}" if self.suffix else ""))


@dataclass(frozen=True)
class MachineGroup:
    """The rounds of one measurement whose machine state is recorded together: a model's interleaved
    training, or its inference at one batch size."""

    model: str
    phase: str  # train | infer
    batch_size: int | None = None

    @property
    def name(self) -> str:
        """The machine rows' ``group``: "mlp train", "mlp infer bs32"."""
        return f"{self.model} {self.phase}" + (f" bs{self.batch_size}" if self.phase == "infer" else "")

    @property
    def folder(self) -> str:
        """The folder the group's machine rows are written to."""
        return CellKey(self.model, MACHINE, self.phase, self.batch_size if self.phase == "infer" else None).id


def group_names(models, phases, batch_sizes) -> list[str]:
    """``MachineGroup.name`` of each (model, phase, batch size) of three columns."""
    return [MachineGroup(m, p, None if p == "train" else int(b)).name for m, p, b in zip(models, phases, batch_sizes)]
