"""The cells a run's configuration asks for: what ``--resume`` still has to run and what a report
of an unfinished run lists as missing."""

from __future__ import annotations

from bench.engines.backends import BACKENDS
from bench.storage.results import cell_id


def planned_cells(config: dict) -> list[tuple[str, str, str, int | None]]:
    """(model, backend, phase, batch size) of every cell the stored configuration (meta.json's
    ``config``) plans: training (or export, for backends that do not train), inference at each
    batch size, and serving when it asks for scenarios. Backends this installation does not know are
    left out."""
    try:
        models, backends = list(config["models"]), list(config["backends"])
        sizes = [int(b) for b in config["infer"]["batch_sizes"]]
    except (KeyError, TypeError, ValueError):
        return []
    cells = []
    for model in models:
        for name in backends:
            b = BACKENDS.get(name)
            if b is None:
                continue
            cells.append((model, name, "train" if b.trains else "export", None))
            cells += [(model, name, "infer", bs) for bs in sizes]
            if b.trains and int(config.get("seeds") or 1) > 1:
                cells.append((model, name, "tta", None))
            if (config.get("serve") or {}).get("scenarios"):
                cells.append((model, name, "serve", None))
    return cells


def missing_cells(config: dict, present: set[str]) -> list[tuple[str, str, str, int | None]]:
    return [c for c in planned_cells(config) if cell_id(*c) not in present]
