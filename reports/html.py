"""One self-contained report.html (charts embedded as PNG data URIs) built from result files: the
sections of ``SECTIONS``, in order, in the one page shell."""

from __future__ import annotations

import html
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bench.storage.load import load_paths
from bench.storage.results import RunTables, atomic_write_text
from reports import (
    breakdown_section,
    dynamics_section,
    metrics_section,
    phase_section,
    profile_section,
    run_sections,
    scaling_section,
    serving_section,
    tta_section,
    verdict_section,
)
from reports.page import page
from reports.section import ReportContext, Section, frames_of, rendered

# The report, top to bottom; ``export`` writes the table of each one that has a frame.
SECTIONS: list[Section] = [
    verdict_section.GLANCE,
    run_sections.PROBLEMS,
    verdict_section.VERDICT,
    metrics_section.SECTION,
    breakdown_section.SECTION,
    run_sections.ENVIRONMENT_SECTION,
    run_sections.SUMMARY,
    run_sections.TRAINING,
    tta_section.SECTION,
    run_sections.INFERENCE,
    serving_section.SECTION,
    run_sections.PARITY,
    run_sections.EXPORT,
    run_sections.MEMORY,
    run_sections.ACCURACY,
    run_sections.SKIPPED,
    verdict_section.MACHINE,
    scaling_section.SECTION,
    dynamics_section.SECTION,
    profile_section.SECTION,
]


def all_sections() -> list[Section]:
    """``SECTIONS``, with a section after serving for each phase the runs read so far declared
    without a built-in one (a plugin's: ``reports.phase_section``)."""
    at = SECTIONS.index(serving_section.SECTION) + 1
    return [*SECTIONS[:at], *phase_section.sections(), *SECTIONS[at:]]


def section_frames(rt: RunTables, ctx: ReportContext | None = None) -> dict[str, pd.DataFrame]:
    """The report's tables by section name, in raw units: what the HTML shows and what
    ``mnist-bench export`` writes."""
    return frames_of(all_sections(), ctx or ReportContext(rt))


def render_report(paths: list[Path], output: Path | None = None) -> Path:
    rt = load_paths([Path(p) for p in paths])
    for problem in rt.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if output is None:
        first = Path(paths[0])
        output = (first if first.is_dir() else first.parent) / "report.html"
    intro = (f'<p class="note">Runs: {", ".join(html.escape(r) for r in rt.meta)} · rendered '
             f'{datetime.now(UTC).isoformat(timespec="seconds")} from result files only. Click a column header to '
             "sort a table.</p>")
    atomic_write_text(output, page("mnist-bench report", intro, rendered(all_sections(),
                                                                    ReportContext(rt, output.parent))))
    return output
