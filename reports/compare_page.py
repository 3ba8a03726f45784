"""``mnist-bench compare A B [C ...]``: cells matched across result folders (also copied from other
machines) and pytest-benchmark JSON files, each run against a baseline run, with intervals and a
test; a terminal table, a self-contained compare.html, and a regression gate (--fail-above)."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from bench import REGRESSION_EXIT, BenchError  # noqa: F401 - REGRESSION_EXIT: the gate's exit code
from bench.analysis.comparison import Comparison
from bench.storage.catalog import model_rank
from bench.storage.results import atomic_write_text
from reports.blocks import img, table
from reports.charts import run_tags, to_image
from reports.page import page
from reports.section import Section
from reports.summary import text_frame


def text_table(c: Comparison) -> str:
    lines = [f"baseline: {c.baseline}" + (" (normalized by the control workload)" if c.normalized else "")]
    for row in c.environment.itertuples(index=False):
        lines.append("  differs: " + " | ".join(str(v) for v in row))
    if c.matched.empty:
        return "\n".join(lines + ["(no matching cells with raw timings)"])
    m = c.matched
    shown = pd.DataFrame({"run": m.run_id, "model": m.model, "backend": m.backend, "phase": m.phase,
                          "batch": [str(int(b)) if b == b else "–" for b in m.batch_size],
                          "verdict [95% CI]": m.verdict})
    bs = m.batch_size.fillna(0).to_numpy()
    order = sorted(range(len(m)), key=lambda i: (m.run_id.iloc[i], model_rank(m.model.iloc[i]),
                                                  m.phase.iloc[i] != "train", bs[i], m.backend.iloc[i]))
    shown = shown.iloc[order]
    if m.run_id.nunique() == 1:
        lines.append(f"run: {m.run_id.iloc[0]}")
        shown = shown.drop(columns="run")
    lines.append(text_frame(shown))
    ways = m.interval_from.value_counts()
    lines.append("intervals across runs: " + ", ".join(f"{n} from {_WAYS[w]}" for w, n in ways.items()))
    if ways.get("none", 0):
        lines.append(f"note: {ways['none']} of {len(m)} cells are unjudged: this machine has no calibration. Two runs "
                     "differ by the machine's speed from minute to minute, which every process of a run shares, so "
                     "no run shows it alone; 'mnist-bench calibrate' measures it once (stored beside the runs)")
    lines += relative_lines(c)
    for r in c.geomean.itertuples():
        lines.append(f"{r.run_id}: geometric-mean speedup {r.geomean_speedup:.3f}x over {r.cells} cells "
                     f"(> 1: faster than {c.baseline})")
    return "\n".join(lines)


_WAYS = {"calibration": "the in-run interval widened by this machine's run-to-run variation",
         "none": "nothing: unjudged"}


def speedup_chart(matched: pd.DataFrame) -> bytes | None:
    if matched.empty:
        return None
    d = matched.assign(label=[f"{r.model} {r.backend} {r.phase}" + ("" if pd.isna(r.batch_size) else
                                                                   f" bs{int(r.batch_size)}")
                              for r in matched.itertuples()])
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(d) + 1.5))
    y = np.arange(len(d))
    speed, low, high = 1 / d.time_ratio, 1 / d.time_ratio_high, 1 / d.time_ratio_low
    colors = np.where(d.significant, np.where(speed > 1, "tab:green", "tab:red"), "tab:gray")
    ax.barh(y, speed - 1, left=1, color=colors, xerr=[speed - low, high - speed], capsize=3)
    ax.axvline(1, c="k", lw=1)
    ax.set_yticks(y, d.label + " · " + run_tags(d.run_id))
    ax.set(xlabel="speedup against the baseline run (95% interval; grey: no significant difference)")
    return to_image(fig)


def distribution_chart(values: pd.DataFrame) -> bytes | None:
    if values.empty:
        return None
    d = values.assign(ms=values.value * 1e3 * values.batch_size.fillna(1), run=run_tags(values.run_id),
                      cell=values.model + " " + values.backend + " " + values.phase
                      + values.batch_size.map(lambda b: "" if pd.isna(b) else f" bs{int(b)}"))
    cells = list(dict.fromkeys(d.cell))
    cols = min(4, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, cell in zip(axes.flat, cells):
        sns.violinplot(d[d.cell == cell], x="run", y="ms", ax=ax, inner="point", cut=0)
        ax.set(title=cell, xlabel="", ylabel="ms per round")
        ax.title.set_fontsize(8)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    fig.tight_layout()
    return to_image(fig)


def compare_file(c: Comparison) -> str:
    """The default page name, from the runs it compares: another comparison never overwrites it."""
    others = "-".join(r for r in c.runs if r != c.baseline)
    name = f"compare-{c.baseline}-vs-{others}"
    return (name if len(name) <= 150 else f"{name[:120]}-and-{len(c.runs) - 2}-more") + ".html"


def relative_lines(c: Comparison) -> list[str]:
    """The relative comparison in the terminal: each backend against the reference of its own run."""
    rel = c.relative
    if rel.empty:
        return []
    widened = (rel.interval_from == "rounds+calibration").sum()
    lines = [f"relative to {rel.reference.iloc[0]} in the same run (what one run a side can back; no calibration "
             "needed): this run's ratio to the reference / the baseline run's; "
             + (f"{widened} of {len(rel)} intervals widened by this machine's calibrated variation of such ratios"
                if widened else "intervals from the rounds alone (a calibration would widen them by how far such "
                "ratios move between processes)")]
    shown = pd.DataFrame({"run": rel.run_id, "model": rel.model, "backend": rel.backend, "phase": rel.phase,
                          "batch": [str(int(b)) if b == b else "–" for b in rel.batch_size],
                          "baseline run": [f"{v:.3f}" for v in rel.vs_reference_base],
                          "this run": [f"{v:.3f}" for v in rel.vs_reference],
                          "relative verdict [95% CI]": rel.verdict})
    if rel.run_id.nunique() == 1:
        shown = shown.drop(columns="run")
    return lines + [text_frame(shown)]


_RELATIVE_NOTE = (
    '<p class="note">Each run measured every backend side by side with the reference, in the same minutes. '
    "vs_reference: a backend's time over the reference's in one run (the quotient of their medians over rounds); "
    "relative_ratio: this run's vs_reference over the baseline run's (above 1: the backend lost ground against the "
    "reference). Its 95% interval combines both runs' paired bootstraps over rounds. The machine's speed between "
    "the runs cancels inside each run's ratio, so this needs no calibration; but the ratio itself moves between "
    "processes by more than one process's rounds show, so where the machine is calibrated the interval is widened "
    "by how far such ratios moved between its calibration runs (interval_from). It answers whether a backend moved "
    "against the reference; the Speed section answers whether its own figure moved.</p>")

_SPEED_NOTE = (
    '<p class="note">time ratio = this run / the baseline run per matched cell (below 1: faster), the median over '
    "rounds with a 95% interval that carries the variation between runs (interval_from): the in-run bootstrap "
    "of each side's rounds widened by this machine's calibrated run-to-run variation ('mnist-bench calibrate'); "
    "without a calibration the cell is unjudged ('cannot tell'). No significant difference where the interval "
    "contains 1.</p>")

# The compare page, top to bottom (its sections read the Comparison, not a run's tables).
COMPARE_SECTIONS: list[Section] = [
    Section("environment-differences", "Environment differences",
            lambda c, _: table(c.environment, "environment-diff")),
    Section("speed", "Speed", lambda c, _: "".join([
        _SPEED_NOTE, img(speedup_chart(c.matched), "speedup against the baseline",
                         "Bars: speedup with its 95% interval."),
        table(c.matched, "compare-table"), table(c.geomean, "geomean-table")])),
    Section("relative", "Relative to the reference", lambda c, _: "" if c.relative.empty else "".join([
        _RELATIVE_NOTE, table(c.relative, "relative-table")])),
    Section("round-distributions", "Round distributions", lambda c, _: img(
        distribution_chart(c.values), "round distributions",
        "Each violin: one cell's round values in one run (ms per call for inference, per sample for training); "
        "dots are the rounds.")),
    Section("accuracy-and-memory", "Accuracy and memory",
            lambda c, _: table(c.accuracy, "accuracy-table") + table(c.memory, "memory-table")),
]


def render_compare(c: Comparison, output: Path) -> Path:
    intro = (f'<p class="note">Baseline: {html.escape(c.baseline)}; compared: '
             f'{html.escape(", ".join(r for r in c.runs if r != c.baseline))}'
             + (" · normalized by the control workload" if c.normalized else "") + "</p>")
    parts = [(s, s.render(c, None)) for s in COMPARE_SECTIONS]
    atomic_write_text(output, page("mnist-bench compare", intro, parts, toc=False))
    return output
