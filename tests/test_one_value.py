"""One figure, one value: a run's headline figures read the same in the glance, the verdict, the
summary, the terminal, the exports and the history; one colour per backend in every chart."""

import base64
import re

import numpy as np
import pandas as pd
import pytest

from bench.analysis.ranked import ranked_backends
from bench.cli import main
from bench.commands import print_results
from bench.measure.metrics import METRICS
from bench.storage import run_index as history
from bench.storage.results import read_run
from reports.blocks import si
from reports.charts import backend_color
from reports.summary import planned_max_batch, summary_frame
from reports.verdict_section import glance_table


def _cells(rt):
    """(model, backend, phase, batch size, headline) of every timed cell that ended ok."""
    s = rt["summary"]
    ok = s[(s.status == "ok") & s.phase.isin(["train", "infer"])]
    return [(r.model, r.backend, r.phase, None if r.phase == "train" else int(r.batch_size),
             r.train_samples_per_s if r.phase == "train" else r.samples_per_s) for r in ok.itertuples()]


def test_one_run_reads_the_same_everywhere(tiny_run, tmp_path, capsys):
    rt = read_run(tiny_run)
    run_id = next(iter(rt.meta))
    cells = _cells(rt)
    assert any(c[2] == "train" for c in cells) and any(c[2] == "infer" for c in cells)
    ranked = ranked_backends(rt)
    assert main(["export", str(tiny_run), "--format", "csv", "--output", str(tmp_path)]) == 0
    verdict_csv = pd.read_csv(tmp_path / "verdict.csv")
    summary_csv = pd.read_csv(tmp_path / "summary.csv")
    capsys.readouterr()
    print_results(tiny_run)
    terminal = capsys.readouterr().out
    s = rt["summary"]
    frame = summary_frame(s, planned_max_batch(rt.meta))
    largest = max(c[3] for c in cells if c[3])
    for model, backend, phase, bs, value in cells:
        where = f"{model} {backend} {phase} {bs}"
        # the definition: 1 / the median over rounds of each round's median seconds per sample
        cell = s[(s.model == model) & (s.backend == backend) & (s.phase == phase)
                 & ((s.batch_size == bs) if bs else True)].cell_id.iloc[0]
        t = rt["timings"][rt["timings"].cell_id == cell]
        per_round = (t.seconds / t.samples).groupby(t["round"]).median()
        assert value == pytest.approx(1 / np.median(per_round), rel=1e-12), where
        # the verdict and its export
        same = (ranked.model == model) & (ranked.backend == backend) & (ranked.phase == phase)
        same &= (ranked.batch_size == bs) if bs else ranked.batch_size.isna()
        assert ranked[same].samples_per_s.iloc[0] == value, where
        row = verdict_csv[(verdict_csv.model == model) & (verdict_csv.backend == backend)
                          & (verdict_csv.phase == phase)
                          & ((verdict_csv.batch_size == bs) if bs else verdict_csv.batch_size.isna())]
        assert row.samples_per_s.iloc[0] == pytest.approx(value, rel=1e-12), where
        # every share of the fastest is the quotient of the figures shown, inside its interval
        r = ranked[same].iloc[0]
        fastest = ranked[(ranked.model == model) & (ranked.phase == phase) & (ranked.standing == "fastest")
                         & ((ranked.batch_size == bs) if bs else ranked.batch_size.isna())].iloc[0]
        assert 1 / r.time_vs_fastest == pytest.approx(value / fastest.samples_per_s, rel=1e-9), where
        if r.time_vs_fastest_low == r.time_vs_fastest_low:
            assert r.time_vs_fastest_low <= r.time_vs_fastest <= r.time_vs_fastest_high, where
        # the glance: the same number as text and as its sort key
        shown, keys = glance_table(rt, ranked, run_id, model)
        column = "training" if phase == "train" else f"inference, batch {bs}"
        if column in shown:
            i = shown.index[shown.backend == backend][0]
            assert shown.at[i, column].startswith(f"{si(value)}/s"), where
            assert keys.at[i, column] == value, where
        # the terminal's verdict lines
        assert re.search(rf"{re.escape(backend)}\s+{re.escape(si(value))}/s", terminal), where
        # the summary table, its export and the history index
        if phase == "train" or bs == largest:
            label = METRICS["train_samples_per_s"].label if phase == "train" else \
                f"{METRICS['samples_per_s'].label}, batch {bs}"
            f = frame[(frame.model == model) & (frame.backend == backend)]
            assert f[label].iloc[0] == value, where
            e = summary_csv[(summary_csv.model == model) & (summary_csv.backend == backend)]
            assert e[label].iloc[0] == pytest.approx(value, rel=1e-12), where
        name = "train_samples_per_s" if phase == "train" else "samples_per_s"
        series = history.series(tiny_run.parent, name, model, backend, bs)
        assert series[series.run_id == run_id].value.iloc[0] == pytest.approx(value, rel=1e-12), where


def _legend_colors(svg: str) -> dict[str, str]:
    """Legend entries of one SVG chart: label -> the colour of the mark drawn just before it."""
    out = {}
    for legend in re.findall(r'<g id="legend_\d+">(.*?)\n   </g>\n  </g>', svg, re.S) or [svg]:
        color = None
        for m in re.finditer(r'(?:fill|stroke): (#[0-9a-f]{6})|<text[^>]*>([^<]+)</text>', legend):
            if m.group(1) and m.group(1) not in ("#ffffff", "#cccccc", "#262626", "#000000"):
                color = m.group(1)
            elif m.group(2) and color is not None:
                out[m.group(2).strip()] = color
    return out


def test_one_colour_per_backend_in_every_chart(tiny_run):
    page = (tiny_run / "report.html").read_text()
    svgs = [base64.b64decode(b).decode() for b in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", page)]
    backends = set(read_run(tiny_run)["summary"].backend)
    seen = {}
    for svg in svgs:
        for label, color in _legend_colors(svg).items():
            if label in backends:
                assert color == backend_color(label), (label, color)
                seen.setdefault(label, set()).add(color)
    # each backend that ran appears in several charts, always in its one colour
    assert {"cpu-fp32", "onnxruntime-cpu"} <= set(seen)
    assert all(len(c) == 1 for c in seen.values()), seen


def test_backend_colours_are_fixed_and_distinct():
    from bench.engines.backends import backend_names, catalog
    from bench.storage.catalog import learn

    learn(catalog())  # the installed registry's order, as a command that offers it learns it
    colors = [backend_color(b) for b in backend_names()]
    assert len(set(colors)) == len(colors)
    assert backend_color("some-plugin-backend") == backend_color("some-plugin-backend")


def test_the_metrics_page_states_each_declared_metric():
    from .conftest import ROOT

    page = (ROOT / "docs" / "measurement.md").read_text()
    rows = {line.split(" | ")[0].strip("| `"): line for line in page.splitlines()
            if line.startswith("| `") and line.count(" | ") == 4}
    for m in METRICS.values():
        assert rows.get(m.name) == f"| `{m.name}` | {m.label} | {m.unit} | {m.better} | {m.definition} |", m.name


def test_a_long_table_is_collapsed_behind_a_one_line_summary_and_a_short_one_is_not():
    from reports.blocks import LONG_TABLE_ROWS, table

    short = table(pd.DataFrame({"x": range(LONG_TABLE_ROWS)}), "short")
    long = table(pd.DataFrame({"x": range(LONG_TABLE_ROWS + 1), "y": 1.0}), "long")
    assert "<details" not in short and short.count("<tr>") == LONG_TABLE_ROWS + 1
    assert long.startswith('<details class="long"><summary>The table: 13 rows × 2 columns')
    assert long.count("<tr>") == LONG_TABLE_ROWS + 2 and 'id="long"' in long  # every row is still there
