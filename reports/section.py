"""What a report section is: one object with a name, a title, the table it computes from the run's
tables (what ``export`` writes) and how it renders. The report, ``export`` and the table of contents
iterate one ordered list of them (``reports.html.SECTIONS``); ``compare`` has its own list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from bench.storage.results import RunTables


@dataclass
class ReportContext:
    """What every section reads: the run tables, derived once."""

    rt: RunTables
    report_dir: Path = field(default_factory=Path)

    @cached_property
    def ranked(self) -> pd.DataFrame:
        from bench.analysis.ranked import ranked_backends

        return ranked_backends(self.rt)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """The summary with every metric's columns present (missing values where a cell lacks one)."""
        from bench.analysis.columns import with_metric_columns
        from bench.measure.figures import with_stability

        s = self.rt["summary"]
        return s if s.empty else with_stability(with_metric_columns(s))

    @cached_property
    def ok(self) -> pd.DataFrame:
        return self.summary[self.summary.status == "ok"] if not self.summary.empty else self.summary

    @property
    def several(self) -> bool:
        return not self.summary.empty and self.summary.run_id.nunique() > 1

    @property
    def first(self) -> list[str]:
        """The leading columns of a table: run_id when the report holds several runs."""
        return ["run_id"] if self.several else []


@dataclass(frozen=True)
class Section:
    name: str  # the anchor in the page and the file name of its export
    title: str  # the heading, and its entry in the table of contents
    render: Callable[[ReportContext, pd.DataFrame | None], str]  # the body under the heading; "" leaves it out
    frame: Callable[[ReportContext], pd.DataFrame | None] | None = None  # its table in raw units (exported)


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A plain table: a fresh index, unnamed columns, batch sizes as numbers (missing for training)."""
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    if "batch_size" in df:
        df["batch_size"] = pd.to_numeric(df.batch_size, errors="coerce")
    return df


def frames_of(sections: list[Section], ctx: ReportContext) -> dict[str, pd.DataFrame]:
    """Each section's table by its name, for the sections that compute one."""
    out = {}
    for s in sections:
        frame = s.frame(ctx) if s.frame is not None else None
        if frame is not None:
            out[s.name] = tidy(frame)
    return out


def rendered(sections: list[Section], ctx: ReportContext) -> list[tuple[Section, str]]:
    """The sections that have something to show, with their bodies, in order."""
    frames = frames_of(sections, ctx)
    out = []
    for s in sections:
        body = s.render(ctx, frames.get(s.name))
        if body:
            out.append((s, body))
    return out
