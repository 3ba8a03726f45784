"""A new metric is one declaration, a new report section one object in one list: each shows up in
every place that reads the declarations, with nothing else edited."""

import shutil

import pandas as pd

from bench.cli import main
from bench.storage.results import read_run


def test_a_new_metric_is_one_declaration(tiny_run, tmp_path, monkeypatch, capsys):
    """The cold first training step, which training cells already measure, declared as a metric:
    it appears in the summary (under its label), the Training table, the export, the history
    index and ``history --metric``, with no other file touched."""
    from bench.measure import metrics
    from reports.html import section_frames

    new = metrics.Metric("cold_step_s", "cold first step", "s", "lower", "train",
                         "seconds of the first training step, compiling and allocating included", summary="train")
    monkeypatch.setitem(metrics.METRICS, new.name, new)
    rt = read_run(tiny_run)
    frames = section_frames(rt)
    s = rt["summary"]
    trained = s[(s.phase == "train") & (s.status == "ok")]
    shown = frames["summary"].merge(trained[["model", "backend", "cold_step_s"]], on=["model", "backend"])
    assert len(shown) == len(trained) >= 2
    assert (shown["cold first step"] == shown.cold_step_s).all()
    assert "cold_step_s" in frames["training"]
    assert main(["export", str(tiny_run), "--format", "csv", "--output", str(tmp_path / "export")]) == 0
    assert "cold first step" in pd.read_csv(tmp_path / "export" / "summary.csv").columns
    results = tmp_path / "results"
    shutil.copytree(tiny_run, results / tiny_run.name)
    assert main(["history", "--results", str(results), "--rebuild"]) == 0
    capsys.readouterr()
    assert main(["history", "--results", str(results), "--metric", "cold_step_s", "--model", "mlp",
                 "--backend", "cpu-fp32", "--output", str(tmp_path / "h.html")]) == 0
    out = capsys.readouterr().out
    assert tiny_run.name in out and "cold_step_s" in out
    assert main(["history", "--results", str(results), "--metric", "nothing"]) == 2
    assert "cold_step_s" in capsys.readouterr().err


def test_a_new_section_is_one_object_in_one_list(tiny_run, tmp_path, monkeypatch):
    """A section defined here, added to the list: the report renders it under its heading, the table
    of contents links it, and export writes its table."""
    from reports import html
    from reports.section import Section

    def frame(ctx):
        s = ctx.summary
        return s[s.phase == "train"].groupby("model", as_index=False).test_accuracy.max()

    section = Section("best-accuracy", "Best accuracy", lambda ctx, f: html.run_sections.table(f, "best-table"), frame)
    monkeypatch.setattr(html, "SECTIONS", [*html.SECTIONS, section])
    page = html.render_report([tiny_run], tmp_path / "r.html").read_text()
    assert '<h2 id="best-accuracy">Best accuracy</h2>' in page and 'href="#best-accuracy"' in page
    assert 'id="best-table"' in page
    assert main(["export", str(tiny_run), "--format", "csv", "--output", str(tmp_path / "x")]) == 0
    exported = pd.read_csv(tmp_path / "x" / "best-accuracy.csv")
    assert set(exported.model) == {"mlp", "cnn"}
