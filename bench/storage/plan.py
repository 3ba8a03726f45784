"""The plan: every cell a run's configuration asks for, as typed keys, in the order the run works
through them. It is made once when the run starts and stored with it (``meta.json``'s ``plan``, as
cell ids). The runner takes its work from it (a cell is still to run when it is planned and its
folder is missing: the same test serves a fresh run and ``--resume``), an unavailable backend's
skipped rows are its planned cells, torchrun's ranks train the cells planned for their world size
and a failed world size writes an error row for each of them, closing a run checks the cells on
disk against it, and a report of an unfinished run lists the planned cells it lacks."""

from __future__ import annotations

from bench.storage.keys import MACHINE, CellKey
from bench.storage.schema import Phase


def plan(cfg, trainers: set[str], reference: str) -> list[CellKey]:
    """Per model and backend: training (or export, for backends that do not train), inference at
    each batch size, time to accuracy (``--seeds`` > 1, training backends), serving (``--scenarios``);
    a torchrun run plans one training cell per model, backend and world size instead. When no
    backend of the run trains, ``reference`` is trained for the others to run its weights.
    ``cfg``: a ``bench.config.types.RunConfig``; ``trainers``: the backends that train (the registry's
    answer, given by the caller: storage reads no registry, so a report can read a plan without one)."""

    if cfg.distributed.enabled:
        return [CellKey(m, b, Phase.TRAIN, None, f"ws{ws}") for ws in cfg.distributed.world_sizes
                for m in cfg.models for b in cfg.backends]
    cells = []
    for model in cfg.models:
        if not trainers & set(cfg.backends):
            cells.append(CellKey(model, reference, Phase.TRAIN))
        for name in cfg.backends:
            trains = name in trainers
            cells.append(CellKey(model, name, Phase.TRAIN if trains else Phase.EXPORT))
            cells += [CellKey(model, name, Phase.INFER, bs) for bs in cfg.infer.batch_sizes]
            if trains and cfg.seeds > 1:
                cells.append(CellKey(model, name, Phase.TTA))
            if cfg.serve.scenarios:
                cells.append(CellKey(model, name, Phase.SERVE))
    return cells


def stored_plan(meta: dict) -> list[CellKey]:
    """The plan a run folder stored (empty for runs made before runs stored one)."""
    out = []
    for cell in meta.get("plan") or []:
        try:
            out.append(CellKey.parse(str(cell)))
        except ValueError:
            continue
    return out


def missing_cells(meta: dict, present: set[str]) -> list[CellKey]:
    """The planned cells whose folders (ids) ``present`` lacks."""
    return [k for k in stored_plan(meta) if k.id not in present]


def unplanned_cells(meta: dict, present: set[str]) -> list[str]:
    """Cell folders the plan does not name (machine groups aside)."""
    planned = {k.id for k in stored_plan(meta)}
    out = []
    for cell in sorted(present - planned):
        try:
            key = CellKey.parse(cell)
        except ValueError:
            out.append(cell)
            continue
        if key.backend != MACHINE and key.phase not in (Phase.DYNAMICS, Phase.PROFILE):
            out.append(cell)
    return out
