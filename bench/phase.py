"""What a phase is, and the registry of them: one kind of cell (training, inference, time to
accuracy, serving, dynamics, a data-parallel training, or a plugin's own), declared once as an
engine is. A phase states its options, the cells it plans for a model, the tables those cells write
and the report section that shows them, and runs its missing cells; the plan, the runner, the CLI's
options, the result schema and the report iterate what is registered here and name no phase.

A phase from outside the package is one module that subclasses ``Phase`` and calls ``register``
(``tests/plugin_phase.py``); loaded through ``$MNIST_BENCH_PLUGINS``, its options are run options,
its cells are planned, run, resumed and exported, and a report renders them from the run's own
files (meta.json's ``catalog`` keeps each phase's title and tables), without the plugin."""

from __future__ import annotations

from typing import Any, ClassVar

from bench.config.types import PHASE_OPTION_CLASSES
from bench.storage.keys import CellKey
from bench.storage.schema import Table, declare_phase


class Phase:
    """One kind of cell. ``run(ctx, work)`` receives the run's ``bench.scheduling.context.PhaseContext``
    (configuration, writer, splits, machine) and the model's ``ModelWork`` (the cells still missing,
    the backends available here, and what earlier phases made: trained and prepared models)."""

    name: ClassVar[str]  # the registry's key; lowercase letters, as it may be a cell id's phase
    title: ClassVar[str]  # its heading in the report
    about: ClassVar[str] = ""  # one line: what its cells measure
    order: ClassVar[int] = 100  # where it runs among a model's phases (built-ins 10-50: after them)
    options: ClassVar[type | None] = None  # its own options dataclass (a ``key`` and ``option`` fields)
    tables: ClassVar[tuple[Table, ...]] = ()  # the tables its cells write beside their summary
    section: ClassVar[str | None] = None  # the built-in report section showing its cells (None: its own)

    def enabled(self, cfg: Any) -> bool:
        """Whether a run's configuration (``RunConfig``) asks for this phase. A torchrun run measures
        data-parallel training only: every other phase is off in it; a run limited to some phases
        (``cfg.only``: ``mnist-bench profile``) has only those."""
        return not cfg.distributed.enabled and (not cfg.only or self.name in cfg.only)

    def cells(self, cfg: Any, model: str, trainers: set[str], reference: str) -> list[CellKey]:
        """The cells it plans for ``model`` (``trainers``: the backends that train; ``reference``:
        the backend whose weights the others run when none of the run's backends trains)."""
        return []

    def run(self, ctx: Any, work: Any) -> None:
        """Run this phase's cells that ``work.missing`` names, writing each through ``ctx.writer``;
        a cell that fails is an error row and the run goes on."""
        raise NotImplementedError

    def entry(self) -> dict:
        """What a report needs of this phase (stored in meta.json's ``catalog``)."""
        return {"name": self.name, "title": self.title, "about": self.about, "section": self.section,
                "tables": [{"name": t.name, "description": t.description} for t in self.tables]}


_REGISTRY: dict[str, Phase] = {}


def register(phase: Phase) -> Phase:
    """Add (or replace) a phase: its name and tables become legal in result files, its options run
    options (their group in --help is the one its fields declare)."""
    declare_phase(phase.name, phase.tables)
    if phase.options is not None and phase.options not in PHASE_OPTION_CLASSES:
        PHASE_OPTION_CLASSES.append(phase.options)
    _REGISTRY[phase.name] = phase
    return phase


def unregister(name: str) -> None:
    """Remove a phase and its options (a test's plugin, for the length of a block)."""
    phase = _REGISTRY.pop(name, None)
    if phase is not None and phase.options in PHASE_OPTION_CLASSES:
        PHASE_OPTION_CLASSES.remove(phase.options)


def registered() -> list[Phase]:
    """Every registered phase in the order a model's phases run."""
    return sorted(_REGISTRY.values(), key=lambda p: p.order)


def plan(cfg: Any, trainers: set[str], reference: str) -> list[CellKey]:
    """Every cell a run's configuration asks for, model by model, phase by phase, in the order the
    runner works through them (stored with the run: ``bench.storage.plan``). ``trainers``: the
    backends that train (the engine registry's answer, given by the caller)."""
    active = [p for p in registered() if p.enabled(cfg)]
    return [key for model in cfg.models for p in active for key in p.cells(cfg, model, trainers, reference)]


def catalog() -> list[dict]:
    """Each registered phase's entry, as a run stores it."""
    return [p.entry() for p in registered()]
