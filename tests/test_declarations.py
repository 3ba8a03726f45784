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


def _summary(values: dict[str, list[float]], column: str) -> pd.DataFrame:
    """A summary of one run: per backend, inference at batch 1 and 32 with ``column``'s values."""
    rows = []
    for backend, per_batch in values.items():
        for bs, v in zip((1, 32), per_batch):
            rows.append({"run_id": "r", "cell_id": f"mlp__{backend}__infer_bs{bs}", "model": "mlp",
                         "backend": backend, "phase": "infer", "batch_size": bs, "status": "ok", column: v})
    return pd.DataFrame(rows)


def test_a_metric_declared_better_higher_is_ranked_in_the_verdict_with_no_other_edit(monkeypatch):
    """Declared with better="higher", a metric is ranked best-first by its value (and flips with
    better="lower"): in the analysis and in the report's verdict by every metric."""
    from bench.analysis.ranking import best_by_metric
    from bench.measure import metrics
    from bench.storage.results import RunTables
    from reports import metrics_section
    from reports.section import ReportContext

    new = metrics.Metric("samples_per_joule", "samples per joule", "samples/s", "higher", "infer",
                         "inference samples per joule of package energy")
    monkeypatch.setitem(metrics.METRICS, new.name, new)
    summary = _summary({"cpu-fp32": [10.0, 400.0], "cpu-bf16": [7.0, 900.0], "onnxruntime-cpu": [30.0, 500.0]},
                       new.name)
    ranked = best_by_metric(summary).set_index(["metric", "batch_size"])
    assert ranked.loc[("samples_per_joule", 1), "best"] == "onnxruntime-cpu"
    assert ranked.loc[("samples_per_joule", 1), "runner_up"] == "cpu-fp32"
    assert ranked.loc[("samples_per_joule", 1), "best_by"] == 3.0
    assert ranked.loc[("samples_per_joule", 32), "best"] == "cpu-bf16"
    ctx = ReportContext(RunTables(tables={"summary": summary}))
    section = metrics_section.SECTION
    html = section.render(ctx, section.frame(ctx))
    assert "samples per joule" in html and "onnxruntime-cpu (30/s)" in html
    monkeypatch.setitem(metrics.METRICS, new.name, metrics.Metric(
        "samples_per_joule", "samples per joule", "samples/s", "lower", "infer", "the same, read the other way"))
    assert best_by_metric(summary).set_index(["metric", "batch_size"]).loc[("samples_per_joule", 1), "best"] \
        == "cpu-bf16"


def test_each_phase_that_pairs_rounds_declares_the_figure_it_is_shown_in():
    from bench.measure.metrics import paired_metric

    assert [paired_metric(p) for p in ("train", "infer", "tta")] == ["train_samples_per_s", "samples_per_s",
                                                                      "tta_median_s"]
