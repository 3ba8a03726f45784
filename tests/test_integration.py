"""`mnist-bench run` end to end on a small subset of the real data."""

import json
from pathlib import Path

import pytest
import torch

from bench.storage.results import read_run
from tests.table_shape import table_shape


def test_run_writes_results_and_report(tiny_run):
    meta = json.loads((tiny_run / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["torch"] and meta["cpu_count"] >= 1
    assert meta["seed"] == 0 and meta["torch_threads"] == 1 and "--limit-train" in meta["command_line"]
    assert (tiny_run / "report.html").stat().st_size > 50_000
    s = read_run(tiny_run)["summary"]
    # 2 models x (cpu-fp32: train + 2 infer, onnxruntime-cpu: export + 2 infer, cuda-fp32: 3 rows)
    assert len(s) == 2 * 9
    ok = s[s.status == "ok"]
    train = ok[ok.phase == "train"].set_index("model")
    assert (train.test_accuracy > 0.5).all()  # far above chance (0.1) after one epoch on 2,048 images
    assert (train.train_samples_per_s > 0).all() and (train.cold_step_s > 0).all()
    assert (train.peak_rss_bytes > 0).all() and (train.mfu > 0).all()
    infer = ok[ok.phase == "infer"]
    assert set(infer.batch_size) == {1, 32} and (infer.samples_per_s > 0).all()
    assert (infer.p50_latency_ms <= infer.p99_latency_ms).all()


def test_the_run_records_its_own_stages_and_says_them(tiny_run):
    """meta.json's stages: start-up, data, each model's phases with their long parts, the report;
    the report's environment says them in one sentence."""
    stages = json.loads((tiny_run / "meta.json").read_text())["stages"]
    whole = {(r["stage"], r["model"]) for r in stages if r["part"] is None}
    assert {("start-up", None), ("data", None), ("report", None)} <= whole
    assert {("train", "mlp"), ("infer", "mlp"), ("train", "cnn"), ("infer", "cnn")} <= whole
    parts = {r["part"] for r in stages if r["stage"] == "infer" and r["part"]}
    assert {"prepare", "rounds in this process", "memory", "profiled rounds (breakdown)"} <= parts
    assert all(r["seconds"] >= 0 for r in stages)
    for model in ("mlp", "cnn"):  # a stage's parts lie inside it
        infer = [r for r in stages if r["stage"] == "infer" and r["model"] == model]
        assert sum(r["seconds"] for r in infer if r["part"]) <= next(r for r in infer if r["part"] is None)[
            "seconds"] + 0.01
    page = (tiny_run / "report.html").read_text()
    assert "The run took" in page and "infer" in page.split("The run took")[1][:300]


def test_skipped_and_onnx_rows(tiny_run):
    import torch

    s = read_run(tiny_run)["summary"]
    cuda = s[s.backend == "cuda-fp32"]
    if torch.cuda.is_available():  # the run's every CUDA cell then ran
        assert len(cuda) and (cuda.status == "ok").all()
    else:
        assert len(cuda) and (cuda.status == "skipped").all() and (cuda.reason == "CUDA not available").all()
    export = s[(s.backend == "onnxruntime-cpu") & (s.phase == "export")]
    assert (export.status == "ok").all()
    assert (export.parity_max_abs_logit_diff <= 1e-4).all()
    assert (export.parity_argmax_agreement >= 0.999).all()
    assert (export.onnx_bytes > 0).all() and (export.opset >= 17).all()


def test_training_tables(tiny_run):
    rt = read_run(tiny_run)
    curve, epochs = rt["curve"], rt["epochs"]
    assert len(epochs) == 2 and (epochs.compute_s > epochs.data_s).all()
    assert (curve.groupby("cell_id").train_s.apply(lambda x: x.is_monotonic_increasing)).all()
    classes = rt["classes"]
    assert len(classes) == 20 and classes.f1.between(0, 1).all()
    confusion = rt["confusion"]
    assert confusion.groupby("cell_id")["count"].sum().eq(500).all()
    mis = rt["misclassified"]
    assert (mis.label != mis.pred).all() and mis.pixels.map(len).eq(784).all()
    assert rt.samples is not None and len(rt.samples) == 16 and set(rt.samples.label) <= set(range(10))


def test_report_rebuilds_from_files(tiny_run, tmp_path):
    from reports.html import render_report

    html = render_report([tiny_run], tmp_path / "again.html").read_text()
    for needle in ("summary-table", "Environment", "infer-table", "parity-table", "memory-table",
                   "data:image/svg+xml;base64,", "CUDA not available",
                   "memory: weights", "At a glance", "How sure:", "nav class=\"toc\""):
        assert needle in html
    assert "http://" not in html and "https://" not in html  # opens offline


def test_exports_round_trip(tiny_run, tmp_path, capsys):
    """CSV and JSON read back into the report's own tables; Markdown holds the same rows."""
    import pandas as pd

    from bench.analysis.ranked import ranked_backends
    from bench.cli import main
    from reports.export import SCHEMA_VERSION, _empty, read_json_export
    from reports.html import section_frames
    from reports.verdict_section import verdict_table

    rt = read_run(tiny_run)
    frames = section_frames(rt)
    assert {"summary", "verdict", "training", "inference", "memory"} <= set(frames)
    assert main(["export", str(tiny_run), "--format", "csv,json,markdown", "--output", str(tmp_path)]) == 0
    def rows(d):  # missing values as None, numbers as floats to 12 significant digits
        def value(v):
            if v is None or (not isinstance(v, str) and pd.isna(v)):
                return None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(f"{float(v):.12g}")
            return v
        return [[value(v) for v in r] for r in d.astype(object).itertuples(index=False)]

    for name, df in frames.items():
        if _empty(df):  # a section with nothing to say is left out
            assert not (tmp_path / f"{name}.csv").exists() and not (tmp_path / f"{name}.md").exists()
            continue
        for back in (pd.read_csv(tmp_path / f"{name}.csv"), read_json_export(tmp_path / f"{name}.json")):
            assert list(back.columns) == list(df.columns)
            assert rows(back) == rows(df), name
        lines = (tmp_path / f"{name}.md").read_text().splitlines()
        if name == "verdict":  # Markdown holds the verdict as the report shows it: in words
            df = verdict_table(ranked_backends(rt))
        assert lines[0] == "| " + " | ".join(map(str, df.columns)) + " |" and len(lines) == len(df) + 2
        firsts = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
        assert firsts == [str(v) for v in df.iloc[:, 0]]
    import json

    assert json.loads((tmp_path / "summary.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert main(["export", str(tiny_run), "--format", "xml"]) == 2
    assert "legal values: csv, json, markdown" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the recorded shape is that of a CPU-only machine")
def test_result_tables_keep_their_shape(tiny_run):
    """The cells, tables, columns, dtypes and configuration-fixed values of the tiny run are those
    recorded in tests/data/tiny_shape.json (regenerate it only for an intended change)."""
    expected = json.loads((Path(__file__).parent / "data" / "tiny_shape.json").read_text())
    assert json.loads(json.dumps(table_shape(tiny_run), sort_keys=True)) == expected


def test_the_tiny_run_holds_exactly_its_plan(tiny_run):
    """Every planned cell has its folder, every cell folder is planned (machine rows aside), and
    closing the run found nothing to warn about against the plan; the catalog is stored with it."""
    from bench.storage.plan import missing_cells, unplanned_cells

    meta = json.loads((tiny_run / "meta.json").read_text())
    present = {p.name for p in (tiny_run / "cells").iterdir()}
    assert meta["plan"] and missing_cells(meta, present) == [] and unplanned_cells(meta, present) == []
    assert not [w for w in meta.get("warnings", []) if "plan" in w]
    assert meta["catalog"]["reference"] == "cpu-fp32" and "onnxruntime-cpu" in meta["catalog"]["backends"]


def test_every_table_number_is_in_human_units(tiny_run, tmp_path):
    """No table of the report or of the Markdown export prints a number in scientific notation
    (seconds as "1.49e-04"): durations, rates and sizes take their units."""
    import re

    from bench.cli import main

    sci = re.compile(r"\d\.\d+e[-+]\d\d")
    html = (tiny_run / "report.html").read_text()
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells and not [c for c in cells if sci.search(c)]
    assert main(["export", str(tiny_run), "--format", "markdown", "--output", str(tmp_path)]) == 0
    for md in tmp_path.glob("*.md"):
        rows = [line for line in md.read_text().splitlines() if line.startswith("|")]
        assert rows and not [r for r in rows if sci.search(r)], md.name
