"""``mnist-bench export``: the report's tables as files. CSV and JSON carry raw numbers (JSON with a
schema version and the runs it came from); Markdown carries the numbers as the report shows them,
in human units, as pipe tables that paste into a README."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bench import ConfigError
from bench.storage.load import load_paths
from bench.storage.results import atomic_write_text
from reports.blocks import cell_text, unit_for
from reports.html import section_frames
from reports.section import ReportContext
from reports.verdict_section import verdict_table

FORMATS = ("csv", "json", "markdown")
SCHEMA_VERSION = 1  # of the exported JSON: {"schema_version", "section", "runs", "columns", "rows"}
RUN_FIELDS = ("name", "start_time", "hostname", "cpu_model", "gpu_name", "torch", "git_commit", "command_line")


def parse_formats(value: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip() for f in str(value).split(",") if f.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if not formats or bad:
        raise ConfigError(f"unknown export format {', '.join(map(repr, bad)) or repr(value)}; legal values: "
                          f"{', '.join(FORMATS)} (comma-separated for several)")
    return formats


def jsonable(df: pd.DataFrame) -> list[list]:
    """Rows of plain Python values; NaN and missing values as null."""
    def plain(v):
        if hasattr(v, "item"):  # numpy scalars
            v = v.item()
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return None
        return v
    return [[plain(v) for v in row] for row in df.astype(object).itertuples(index=False, name=None)]


def markdown(df: pd.DataFrame) -> str:
    """A GitHub pipe table, numbers in the report's human units."""
    units = [unit_for(str(c)) for c in df.columns]
    esc = lambda t: str(t).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |",
             "| " + " | ".join("---" for _ in df.columns) + " |"]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(esc(cell_text(v, u)[0]) for v, u in zip(row, units)) + " |")
    return "\n".join(lines) + "\n"


def _empty(df: pd.DataFrame) -> bool:
    """No rows, or only rows of missing values: a section with nothing to say is left out."""
    return df is None or df.empty or df.drop(columns=[c for c in ("run_id", "model", "backend") if c in df]).isna(
    ).all().all()


def export(paths: list[Path], formats: tuple[str, ...], output: Path | None = None) -> list[Path]:
    """Write every section of the report of ``paths`` that holds something in each format to
    ``output`` (default: an ``export`` folder in the first run folder); returns the files written."""
    rt = load_paths([Path(p) for p in paths])
    ctx = ReportContext(rt)
    frames = {name: f for name, f in section_frames(rt, ctx).items() if not _empty(f)}
    if not frames:
        raise ConfigError(f"{', '.join(map(str, paths))}: no completed cells to export")
    if output is None:
        first = Path(paths[0])
        output = (first if first.is_dir() else first.parent) / "export"
    runs = [{"run_id": rid, **{k: m.get(k) for k in RUN_FIELDS if k in m}} for rid, m in rt.meta.items()]
    written = []
    for fmt in formats:
        for name, df in frames.items():
            if fmt == "csv":
                path, text = output / f"{name}.csv", df.to_csv(index=False)
            elif fmt == "json":
                path = output / f"{name}.json"
                text = json.dumps({"schema_version": SCHEMA_VERSION, "section": name, "runs": runs,
                                   "columns": [str(c) for c in df.columns], "rows": jsonable(df)}, indent=1,
                                  allow_nan=False, default=str)
            else:  # the table a person pastes: the verdict in words, as the report shows it
                shown = verdict_table(ctx.ranked) if name == "verdict" else df
                path, text = output / f"{name}.md", markdown(shown)
            atomic_write_text(path, text)
            written.append(path)
    return written


def read_json_export(path: Path) -> pd.DataFrame:
    """An exported JSON section back as the table it was written from."""
    d = json.loads(Path(path).read_text())
    if d.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{path}: export schema version {d.get('schema_version')!r}; this reader knows "
                          f"{SCHEMA_VERSION}")
    return pd.DataFrame(d["rows"], columns=d["columns"])
