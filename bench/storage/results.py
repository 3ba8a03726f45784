"""Result files: one folder per run, one sub-folder per completed cell.

    results/<run-id>/meta.json              environment and configuration (see bench.storage.meta)
    results/<run-id>/samples.parquet        a few training images with labels (for the report)
    results/<run-id>/cells/<cell-id>/*.parquet   one file per table that the cell produced

A cell folder is written under a temporary name and renamed when complete, so an interrupted
run keeps every finished cell and never shows a half-written one. The tables (``SCHEMA``) are
tidy: one row per observation, units in the column names.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bench import BenchError
from bench.storage import catalog
from bench.storage.keys import CellKey
from bench.storage.schema import STATUSES, TABLES, known_phases

# Every table's declared columns, kinds and legal values: bench.storage.schema. Here by name, with
# what each holds.
SCHEMA = {name: table.description for name, table in TABLES.items()}


RESULTS_SCHEMA_VERSION = 2  # of a run folder (meta.json and the tables above); 1: before the version was written
ROW_HEADER = ("model", "backend", "device", "precision", "engine", "phase", "batch_size", "status", "reason")


def cell_id(model: str, backend: str, phase: str, batch_size: int | None = None, suffix: str = "") -> str:
    """``CellKey(...).id``: the cell's folder name."""
    return CellKey(model, backend, phase, batch_size, suffix).id


class RunWriter:
    """Owns one run folder's cells: their ids, the row header every summary row starts with, the
    status rows (skipped / error / oom) and the atomic writes."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @staticmethod
    def header(model: str, backend, phase: str, batch_size: int | None = None, status: str = "ok",
               reason: str = "") -> dict:
        """``backend``: a ``bench.engines.backends.Backend`` (name, device, precision, engine)."""
        if status not in STATUSES or phase not in known_phases():
            raise ValueError(f"status must be one of {', '.join(STATUSES)} and phase one of "
                             f"{', '.join(known_phases())}; "
                             f"got {status!r} and {phase!r}")
        return {"model": model, "backend": backend.name, "device": backend.device, "precision": backend.precision,
                "engine": backend.engine.name, "phase": str(phase), "batch_size": batch_size, "status": status,
                "reason": reason}

    def write(self, model: str, backend, phase: str, tables: dict[str, pd.DataFrame], batch_size: int | None = None,
              files: dict[str, bytes] | None = None, suffix: str = "") -> Path:
        """Write a completed cell; its ``summary`` table (one row of metrics) gets the row header. A
        cell that ended otherwise than ok (a diverged training) says so in its row's status and reason."""
        summary = tables.get("summary", pd.DataFrame([{}]))
        row = summary.iloc[0] if len(summary) else pd.Series(dtype=object)
        status = row.get("status", "ok") if isinstance(row.get("status", "ok"), str) else "ok"
        reason = row.get("reason") if isinstance(row.get("reason"), str) and row.get("reason") else ""
        head = pd.DataFrame([self.header(model, backend, phase, batch_size, status, reason)] * len(summary))
        metrics = summary.drop(columns=[c for c in ROW_HEADER if c in summary.columns]).reset_index(drop=True)
        tables = {**tables, "summary": pd.concat([head, metrics], axis=1)}
        return write_cell(self.run_dir, cell_id(model, backend.name, phase, batch_size, suffix), tables, files)

    def write_status(self, model: str, backend, phase: str, status: str, reason: str,
                     batch_size: int | None = None, suffix: str = "") -> Path:
        row = self.header(model, backend, phase, batch_size, status, reason)
        return write_cell(self.run_dir, cell_id(model, backend.name, phase, batch_size, suffix),
                          {"summary": pd.DataFrame([row])})


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


def check_writable(out: Path) -> None:
    """Fail before any work when the output folder cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise BenchError(f"output folder {out} is not writable: {e.strerror or e}") from None


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all; a failure is one BenchError naming the path
    and the OS error, with no temporary file left behind."""
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"cannot write {path}: it is a folder; give a file name")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        try:  # a read-only file system refuses the removal too: the message is the write's
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise BenchError(f"cannot write {path}: {e.strerror or e}") from None


def write_cell(run_dir: Path, cell_id: str, tables: dict[str, pd.DataFrame],
               files: dict[str, bytes] | None = None) -> Path:
    unknown = [name for name in tables if name not in TABLES]
    if unknown:
        raise ValueError(f"table {unknown[0]!r} is not in the results schema")
    for name, df in tables.items():
        wrong = TABLES[name].problems(df)
        if wrong:
            raise ValueError(f"cell {cell_id}: its {name} table breaks the results schema: {'; '.join(wrong)}")
    cells = run_dir / "cells"
    tmp = cells / f".tmp-{cell_id}"
    final = cells / cell_id
    try:
        cells.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, df in tables.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        for name, data in (files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchError(f"cannot write the results cell {final}: {e.strerror or e} "
                         "(completed cells are kept)") from None
    return final


def stored_summary_row(run_dir: Path, key: CellKey) -> pd.Series | None:
    """The summary row of one completed cell of a run folder, or None when it has none (yet)."""
    try:
        df = pd.read_parquet(Path(run_dir) / "cells" / key.id / "summary.parquet")
    except (OSError, ValueError):
        return None
    return df.iloc[0] if len(df) else None


def write_samples(run_dir: Path, mnist, count: int = 16) -> None:
    """A few training images with their labels, for the report (``samples.parquet``)."""
    pd.DataFrame({
        "index": range(count), "label": mnist.train_labels[:count].numpy(),
        "pixels": [mnist.train_images[i].numpy().tobytes() for i in range(count)],
    }).to_parquet(run_dir / "samples.parquet", index=False)


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str))


@dataclass
class RunTables:
    """All tables of one or more runs, concatenated, each row tagged with its run_id. ``problems``
    names every file that could not be read (damaged or foreign); the rest is here."""

    meta: dict[str, dict] = field(default_factory=dict)  # run_id -> meta.json
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    samples: pd.DataFrame | None = None
    run_dirs: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    def with_cells(self, df: pd.DataFrame | str, columns: tuple[str, ...] = ("model", "backend")) -> pd.DataFrame:
        """``df`` (or the table of that name), each row joined on (run_id, cell_id) with its cell's
        ``columns`` from the summary: the one join from a cell's table to what the cell is."""
        df = self[df] if isinstance(df, str) else df
        summary = self["summary"]
        if df.empty or summary.empty:
            return df.iloc[:0].assign(**{c: pd.Series(dtype=object) for c in columns if c not in df})
        keys = ["run_id", "cell_id"]
        return df.merge(summary[keys + [c for c in columns if c in summary and c not in df]], on=keys)


def _read_parquet(path: Path, problems: list[str]) -> pd.DataFrame | None:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any reader failure means the file is damaged: name it, go on
        detail = str(e).splitlines()[0][:160] if str(e) else ""
        problems.append(f"{path}: damaged, not read ({type(e).__name__}: {detail})")
        return None
    wrong = TABLES[path.stem].problems(df) if path.stem in TABLES else []
    if wrong:
        problems.append(f"{path}: not this tool's {path.stem} table ({'; '.join(wrong)}), not read")
        return None
    return df


def _read_meta(run_dir: Path, problems: list[str]) -> dict:
    path = run_dir / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    except (OSError, ValueError) as e:
        problems.append(f"{path}: damaged, not read ({str(e).splitlines()[0][:160]})")
        return {"run_id": run_dir.name, "status": "unknown (meta.json damaged)"}
    if meta.get("status") == "running" and not _process_alive(meta):
        meta = {**meta, "status": "killed"}  # its process is gone: it never finished nor was interrupted
    return meta


def _process_alive(meta: dict) -> bool:
    """Whether the process that wrote a "running" meta.json still runs (on another host: assume so)."""
    import platform

    pid = meta.get("pid")
    if not isinstance(pid, int) or meta.get("hostname") != platform.node():
        return True  # cannot tell from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_run(run_dir: Path, only: set[str] | None = None) -> RunTables:
    """Every readable table of one run folder (``only``: just these tables); damaged files are
    skipped and named in ``problems``."""
    run_dir = Path(run_dir)
    if not (run_dir / "meta.json").is_file():
        raise BenchError(f"{run_dir} is not a results folder (no meta.json)")
    problems: list[str] = []
    meta = _read_meta(run_dir, problems)
    catalog.learn(meta.get("catalog"))
    run_id = str(meta.get("run_id") or run_dir.name)
    frames: dict[str, list[pd.DataFrame]] = {}
    cells = run_dir / "cells"
    for cell in sorted(cells.iterdir()) if cells.is_dir() else []:
        if cell.name.startswith(".") or not cell.is_dir():
            continue  # an unfinished cell
        for f in sorted(cell.glob("*.parquet")):
            if f.stem not in TABLES:  # the built-in tables, and those a declared phase writes
                problems.append(f"{f}: not a table of this tool's results, not read")
                continue
            if only is not None and f.stem not in only:
                continue
            df = _read_parquet(f, problems)
            if df is None:
                continue
            df.insert(0, "cell_id", cell.name)
            df.insert(0, "run_id", run_id)
            frames.setdefault(f.stem, []).append(df)
    samples = run_dir / "samples.parquet"
    return RunTables(
        meta={run_id: meta},
        tables={k: pd.concat(v, ignore_index=True) for k, v in frames.items()},
        samples=_read_parquet(samples, problems) if samples.is_file() else None,
        run_dirs=[run_dir],
        problems=problems,
    )


def merge(runs: list[RunTables]) -> RunTables:
    merged = RunTables()
    for r in runs:
        merged.meta.update(r.meta)
        merged.run_dirs += r.run_dirs
        merged.problems += r.problems
        for k, df in r.tables.items():
            merged.tables[k] = pd.concat([merged.tables[k], df], ignore_index=True) if k in merged.tables else df
        if merged.samples is None:
            merged.samples = r.samples
    return merged
