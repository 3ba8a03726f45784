"""The stored plan: every cell a run's configuration asks for, as typed keys, in the order the run
works through them. The registered phases make it once when the run starts (``bench.phase.plan``)
and it is stored with the run (``meta.json``'s ``plan``, as cell ids); this module reads it back.
The runner takes its work from it (a cell is still to run when it is planned and its folder is
missing: the same test serves a fresh run and ``--resume``), an unavailable backend's
skipped rows are its planned cells, torchrun's ranks train the cells planned for their world size
and a failed world size writes an error row for each of them, closing a run checks the cells on
disk against it, and a report of an unfinished run lists the planned cells it lacks."""

from __future__ import annotations

from bench.storage.keys import MACHINE, CellKey
from bench.storage.schema import Phase


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
        # the dynamics command's cells; profile cells of runs made before profile was a planned phase
        if key.backend != MACHINE and key.phase not in (Phase.DYNAMICS, Phase.PROFILE):
            out.append(cell)
    return out
