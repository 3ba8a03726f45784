"""The results index: ``<results>/history.sqlite`` (Python's sqlite3), one row per run and one per
headline figure of each cell, so runs can be listed, found by name and a figure followed over runs
and commits. The Parquet files stay the truth: the index is rebuilt from them at any time."""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from bench import BenchError, ConfigError
from bench.measure.metrics import METRICS, metric
from bench.plumbing.lazy import LazyModule
from bench.plumbing.values import NAME_PATTERN
from bench.storage import catalog

pd = LazyModule("pandas")  # imported on first use: --help and name checks stay fast

DB_NAME = "history.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, name TEXT, path TEXT, start_time TEXT, end_time TEXT, status TEXT,
    hostname TEXT, cpu_model TEXT, gpu_name TEXT, git_commit TEXT, torch TEXT, preset TEXT,
    models TEXT, backends TEXT);
CREATE TABLE IF NOT EXISTS figures (
    run_id TEXT, model TEXT, backend TEXT, phase TEXT, batch_size INTEGER, metric TEXT,
    value REAL, low REAL, high REAL);
CREATE INDEX IF NOT EXISTS figures_key ON figures (metric, model, backend, phase, batch_size);
"""
LOCK_WAIT_S = 5.0  # how long a reader or writer waits for another process's lock (sqlite's timeout)


def db_path(root: Path) -> Path:
    return Path(root) / DB_NAME


def _connect(root: Path) -> sqlite3.Connection:
    con = sqlite3.connect(db_path(root), timeout=LOCK_WAIT_S)
    con.executescript(SCHEMA)
    return con


def _run_row(run_dir: Path, meta: dict) -> dict:
    cfg = meta.get("config") or {}
    return {"run_id": meta.get("run_id") or run_dir.name, "name": meta.get("name"), "path": str(run_dir.resolve()),
            "start_time": meta.get("start_time"), "end_time": meta.get("end_time"), "status": meta.get("status"),
            "hostname": meta.get("hostname"), "cpu_model": meta.get("cpu_model"), "gpu_name": meta.get("gpu_name"),
            "git_commit": meta.get("git_commit"), "torch": meta.get("torch"), "preset": cfg.get("preset"),
            "models": ",".join(cfg.get("models") or []), "backends": ",".join(cfg.get("backends") or [])}


def _figure_rows(run_id: str, summary: pd.DataFrame) -> list[tuple]:
    rows = []
    ok = summary[summary.status == "ok"] if "status" in summary else summary.iloc[:0]
    for r in ok.to_dict("records"):
        bs = r.get("batch_size")
        bs = None if bs is None or pd.isna(bs) else int(bs)
        ws = r.get("world_size")
        phase = r["phase"] if ws is None or pd.isna(ws) else f"{r['phase']}_ws{int(ws)}"  # data-parallel apart
        for m in METRICS.values():
            value = r.get(m.name)
            if value is None or pd.isna(value):
                continue
            lo, hi = (r.get(c) for c in m.ci) if m.ci else (None, None)
            rows.append((run_id, r["model"], r["backend"], phase, bs, m.name, float(value),
                         None if lo is None or pd.isna(lo) else float(lo),
                         None if hi is None or pd.isna(hi) else float(hi)))
    return rows


def index_run(run_dir: Path, root: Path | None = None) -> str:
    """Add (or replace) one run folder in its results root's index; returns its run id."""
    from bench.storage.results import read_run

    run_dir = Path(run_dir)
    root = Path(root) if root is not None else run_dir.parent
    rt = read_run(run_dir, only={"summary"})
    (run_id, meta), = rt.meta.items()
    row = _run_row(run_dir, meta)
    with closing(_connect(root)) as con, con:
        con.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        con.execute("DELETE FROM figures WHERE run_id = ?", (run_id,))
        con.execute(f"INSERT INTO runs ({','.join(row)}) VALUES ({','.join('?' * len(row))})", list(row.values()))
        con.executemany("INSERT INTO figures VALUES (?,?,?,?,?,?,?,?,?)", _figure_rows(run_id, rt["summary"]))
    return run_id


def try_index_run(run_dir: Path) -> None:
    """Index a run that just ended; a failure is a warning (the run's files are what counts)."""
    try:
        index_run(run_dir)
    except (sqlite3.Error, OSError, BenchError, ValueError) as e:
        print(f"warning: {db_path(Path(run_dir).parent)} not updated ({e}); "
              f"mnist-bench history --rebuild recreates it", file=sys.stderr)


def rebuild(root: Path) -> list[str]:
    """Delete the index and rebuild it from every run folder under ``root``; returns the run ids."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"results folder {root} does not exist")
    db_path(root).unlink(missing_ok=True)
    indexed = []
    for meta in sorted(root.glob("*/meta.json")):
        if meta.parent.name.startswith("."):  # a run folder still being created (.new-<run id>)
            continue
        try:
            indexed.append(index_run(meta.parent, root))
        except (BenchError, ValueError, OSError) as e:
            print(f"warning: {meta.parent} left out of the index: {e}", file=sys.stderr)
    _connect(root).close()  # an empty index when there is no run
    return indexed


def _read(root: Path, sql: str, params: tuple = ()) -> pd.DataFrame:
    if not db_path(root).exists():
        raise ConfigError(f"no index at {db_path(root)}; run 'mnist-bench history --rebuild --results {root}' "
                          "or run a benchmark first")
    try:
        with closing(_reader(root)) as con:
            return pd.read_sql_query(sql, con, params=params)
    except (sqlite3.Error, pd.errors.DatabaseError) as e:
        raise _unusable(root, e) from None


def _reader(root: Path) -> sqlite3.Connection:
    """A connection to read the index: an empty file (`touch`, a first write cut short) is an empty
    index, given its tables; any other file is read as it is (a foreign one is never written)."""
    if db_path(root).stat().st_size == 0:
        return _connect(root)
    return sqlite3.connect(db_path(root), timeout=LOCK_WAIT_S)


def _unusable(root: Path, e: Exception) -> BenchError:
    """A damaged, locked or foreign index, in one line that says how to recreate it (the run
    folders are untouched)."""
    why = str(e).rsplit(": ", 1)[-1] if isinstance(e, pd.errors.DatabaseError) else str(e)
    if "locked" in why:  # another process writes it: waiting is the cure, not a rebuild
        return BenchError(f"the run index {db_path(root)} is locked by another process writing it (a run or "
                          f"'history --rebuild') and stayed so for {LOCK_WAIT_S:g} s; try again when it ends")
    return BenchError(f"the run index {db_path(root)} cannot be read ({why}); "
                      f"'mnist-bench history --rebuild --results {root}' recreates it from the run folders")


def list_runs(root: Path) -> pd.DataFrame:
    """Runs, oldest first, narrow enough for a terminal: when, what, which commit, and per model the
    reference backend's training samples/s (``history --metric`` follows any figure in full)."""
    runs = _read(root, "SELECT * FROM runs ORDER BY start_time")
    figs = _read(root, "SELECT * FROM figures")
    out = pd.DataFrame({"run": runs.name.where(runs.name.notna() & (runs.name != ""), runs.run_id),
                        "started": runs.start_time.str[:16].str.replace("T", " "), "status": runs.status,
                        "commit": runs.git_commit.str[:8], "preset": runs.preset, "host": runs.hostname})
    ref = figs[(figs.backend == catalog.reference()) & (figs.phase == "train") & (figs.metric == "train_samples_per_s")]
    for model in dict.fromkeys(figs.model):
        out[f"{model} train samples/s"] = runs.run_id.map(ref[ref.model == model].set_index("run_id").value)
    return out


def series(root: Path, name: str, model: str, backend: str, batch_size: int | None = None) -> pd.DataFrame:
    """One figure over runs, oldest first: value, interval, run, name, commit, machine. A training
    figure that inference cells also record (peak RSS) is read per batch size when one is given."""
    m = metric(name)
    per_batch = m.phase == "infer" or (m.phase == "train" and batch_size is not None)
    sql = ("SELECT f.value, f.low, f.high, f.batch_size, r.run_id, r.name, r.start_time, r.git_commit, r.hostname, "
           "r.cpu_model, r.gpu_name, r.path FROM figures f JOIN runs r USING (run_id) WHERE f.metric = ? "
           "AND f.model = ? AND f.backend = ? AND f.phase = ?")
    params: tuple = (name, model, backend, "infer" if per_batch else m.phase)
    if per_batch:
        if batch_size is None:
            raise ConfigError(f"{name} is measured per batch size; give --batch-size")
        sql += " AND f.batch_size = ?"
        params += (batch_size,)
    out = _read(root, sql + " ORDER BY r.start_time", params)
    if out.empty:
        have = _read(root, "SELECT DISTINCT model, backend FROM figures WHERE metric = ?", (name,))
        legal = ", ".join(f"{mo}/{b}" for mo, b in have.itertuples(index=False)) or "none"
        raise ConfigError(f"no {name} recorded for model {model!r}, backend {backend!r}"
                          f"{'' if batch_size is None else f', batch size {batch_size}'}; recorded: {legal}")
    return out


def resolve_run(value: str | Path, root: Path = Path("results")) -> Path:
    """A run given as a folder, a run id or a ``--name``: the folder. Names are looked up in
    ``root``'s index (the latest run with that name)."""
    path = Path(value)
    if path.exists() or not NAME_PATTERN.fullmatch(str(value)) or not db_path(root).exists():
        return path
    try:
        with closing(_reader(root)) as con:
            hit = con.execute("SELECT path FROM runs WHERE run_id = ? OR name = ? ORDER BY start_time DESC LIMIT 1",
                              (str(value), str(value))).fetchone()
            names = [r[0] for r in con.execute("SELECT DISTINCT name FROM runs WHERE name IS NOT NULL ORDER BY name")]
    except sqlite3.Error as e:
        raise _unusable(root, e) from None
    if hit:
        return Path(hit[0])
    known = f"its named runs: {', '.join(names)}" if names else "it holds no named run"
    raise BenchError(f"{value}: no such folder, and no run of that name or id in {db_path(root)} ({known})")


def mark_changes(s: pd.DataFrame, name: str, calibration: dict[str, dict]) -> pd.Series:
    """Per run of a ``series``: whether its figure stepped from the previous run on the same machine.
    A speed figure varies from run to run by the machine's calibrated variation (``mnist-bench
    calibrate``: the sd of its log, per phase), so a step is a move beyond 1.96 * sqrt(2) of it
    (both runs vary); on an uncalibrated machine the change cannot be told from that variation."""
    import json
    import math

    from bench.storage.calibration import machine_key

    m = metric(name)
    out, previous = [], {}
    for r in s.itertuples():
        try:
            meta = json.loads((Path(r.path) / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            meta = {}
        key = machine_key(meta) if meta else f"{r.hostname} | {r.cpu_model}"
        before = previous.get(key)
        previous[key] = r.value
        if before is None:
            out.append("first on this machine")
            continue
        change = r.value / before - 1 if before else float("nan")
        if m.unit not in ("samples/s", "ms"):
            out.append(f"{change:+.1%} (not a timing: no noise model)")
            continue
        sigma = (calibration.get(key) or {}).get("phases", {}).get(m.phase, {}).get("sigma")
        if sigma is None:
            out.append(f"{change:+.1%} (cannot tell: machine not calibrated)")
        elif abs(math.log(r.value / before)) > 1.96 * math.sqrt(2) * sigma:
            better = (change > 0) == (m.better == "higher")
            out.append(f"{change:+.1%} step ({'better' if better else 'worse'})")
        else:
            out.append(f"{change:+.1%} (within run-to-run variation ±{1.96 * math.sqrt(2) * sigma:.0%})")
    return pd.Series(out, index=s.index, name="change")
