"""What a report needs of the registries that made a run, stored with the run (meta.json's
``catalog``): the backends in the registry's order, the reference backend and the columns each
engine adds to the export table. A report reads these from the run's own files, so a run made with
a plugin backend renders in a process that has never imported the plugin (or any engine).

The process keeps one merged catalog: every catalog read from a run folder, and the installed
registry when a command offers it (``learn``), in the order first seen."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.storage.schema import Table, declare_phase

# A run folder written before runs stored their catalog compared every backend with this one.
DEFAULT_REFERENCE = "cpu-fp32"


@dataclass
class Catalog:
    backends: list[str] = field(default_factory=list)  # the registry's order
    fact_columns: list[str] = field(default_factory=list)  # engines' own columns of the export table
    reference: str | None = None  # the backend every ratio is taken against
    # each phase that made cells: name, title, about, section (a built-in section's name, or None),
    # tables ([{name, description}]) -- so a report renders a plugin phase's cells without the plugin
    phases: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"backends": list(self.backends), "fact_columns": list(self.fact_columns),
                "reference": self.reference or DEFAULT_REFERENCE, "phases": [dict(p) for p in self.phases]}


_KNOWN = Catalog()


def learn(entry: dict | Catalog | None) -> None:
    """Merge a stored catalog (meta.json's ``catalog``) or the installed registry's into the
    process's own: names not seen yet are appended; the first reference seen is kept."""
    if entry is None:
        return
    if isinstance(entry, Catalog):
        entry = entry.as_dict()
    if not isinstance(entry, dict):
        return
    for key in ("backends", "fact_columns"):
        known = getattr(_KNOWN, key)
        known += [str(n) for n in entry.get(key) or [] if str(n) not in known]
    if _KNOWN.reference is None and entry.get("reference"):
        _KNOWN.reference = str(entry["reference"])
    for phase in entry.get("phases") or []:
        _learn_phase(phase)


def _learn_phase(phase: dict) -> None:
    """A stored phase: its name and tables become legal to read; its entry is kept for the report."""
    try:
        tables = tuple(Table(str(t["name"]), str(t.get("description", "")), ()) for t in phase.get("tables") or [])
        declare_phase(str(phase["name"]), tables)
    except (KeyError, TypeError, ValueError, AttributeError):
        return  # a damaged entry: its cells are read as unknown, and named
    if all(p["name"] != phase["name"] for p in _KNOWN.phases):
        _KNOWN.phases.append(dict(phase))


def phases() -> list[dict]:
    """The phases the runs read so far declared (built-in ones included), in the order first seen."""
    return list(_KNOWN.phases)


def reference() -> str:
    return _KNOWN.reference or DEFAULT_REFERENCE


def backend_names() -> list[str]:
    return list(_KNOWN.backends)


def backend_rank(backend: str) -> tuple[int, str]:
    """Sort key: the registry's order (as stored with the runs), then backends no catalog names."""
    names = _KNOWN.backends
    return (names.index(backend), "") if backend in names else (len(names), backend)


def fact_columns() -> list[str]:
    return list(_KNOWN.fact_columns)


def model_rank(model: str) -> tuple[int, str]:
    """Sort key: the model registry's order, then models it does not know (from older result files)."""
    from models import model_names

    names = model_names()
    return (names.index(model), "") if model in names else (len(names), model)
