"""Deployment scenarios through MLPerf LoadGen: the search, the log readers, the SUTs under real
LoadGen tests (tiny durations), and ``run --scenarios`` end to end on a tiny subset."""

import contextlib
import importlib.util
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.engines.base import Prepared
from bench.serving.loadgen import read_detail, result_row, trace_samples
from bench.serving.scenarios import ScenarioFailed, ServePlan, max_valid_qps, search_server, serve_tables
from bench.serving.sut import ServedModel

needs_loadgen = pytest.mark.skipif(importlib.util.find_spec("mlperf_loadgen") is None,
                                   reason="mlcommons-loadgen not installed")


def test_the_server_search_brackets_then_narrows_the_edge():
    edge = 1234.0
    points = search_server(lambda q: {"valid": q <= edge}, start_qps=100.0, steps=9)
    assert [p["step"] for p in points] == list(range(9))
    best = max_valid_qps(points)
    assert edge / 1.1 <= best <= edge  # within 10% after nine tests
    # doubling while VALID, then never a VALID rate above an INVALID one
    assert [p["target_qps"] for p in points[:5]] == [100.0, 200.0, 400.0, 800.0, 1600.0]
    invalid = [p["target_qps"] for p in points if not p["valid"]]
    assert all(p["target_qps"] < min(invalid) for p in points if p["valid"])


def test_the_server_search_goes_down_from_an_invalid_start():
    points = search_server(lambda q: {"valid": q <= 30.0}, start_qps=1000.0, steps=8)
    assert [p["target_qps"] for p in points[:4]] == [1000.0, 500.0, 250.0, 125.0]
    best, above = max_valid_qps(points), min(p["target_qps"] for p in points if not p["valid"])
    assert best <= 30.0 < above and above / best <= 2 ** 0.5  # the edge within the last bracket
    assert max_valid_qps(search_server(lambda q: {"valid": False}, 10.0, 3)) != max_valid_qps(points)


def test_loadgen_records_are_read_with_the_reason_of_an_invalid_run(tmp_path):
    def line(key, value):
        return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1.0})

    detail = tmp_path / "mlperf_log_detail.txt"
    detail.write_text("\n".join([
        line("result_validity", "INVALID"), line("result_min_duration_met", True),
        line("result_perf_constraints_met", False), line("early_stopping_met", False),
        line("result_completed_samples_per_sec", 950.5), line("result_scheduled_samples_per_sec", 1000.0),
        line("result_99.00_percentile_latency_ns", 12_500_000), line("result_90.00_percentile_latency_ns", 2_000_000),
        line("result_query_count", 480), ":::MLLOG {not json", "a line LoadGen did not write"]))
    row = result_row(read_detail(detail))
    assert row["valid"] is False and row["loadgen_reason"] == "not met: perf_constraints, early_stopping"
    assert row["achieved_qps"] == 950.5 and row["p99_ms"] == 12.5 and row["p90_ms"] == 2.0
    assert row["queries"] == 480 and row["p50_ms"] != row["p50_ms"]  # not logged: missing, not 0


def test_the_trace_gives_each_sample_and_skips_the_lines_that_are_not_json(tmp_path):
    trace = tmp_path / "mlperf_log_trace.json"
    trace.write_text('{"traceEvents":[\n'
                     '{"name":"Sample","cat":"default","ph":"b","pid":1,"id":0,"ts":1.0,"args":{"sample_seq":0,'
                     '"query_seq":0,"sample_idx":17,"issue_start_ns":70,"complete_ns":9000}},\n'
                     '{"name":"Sample","cat":"default","ph":"e","pid":1,"id":0,"ts":2.0},\n'
                     '{"name":"LogDetail","ph":"X","args":{"key":""loadgen_version""}},\n'
                     '{"name":"Sample","cat":"default","ph":"b","pid":1,"id":1,"ts":3.0,"args":{"sample_seq":1,'
                     '"query_seq":1,"sample_idx":4,"issue_start_ns":300,"complete_ns":5000}},\n'
                     '{"name":"LastTrace"}\n]}')
    t = trace_samples(trace)
    assert t.to_dict("list") == {"sample_seq": [0, 1], "sample_idx": [17, 4], "issue_delay_ns": [70, 300],
                                 "latency_ns": [9000, 5000]}


def _served(mnist_path, n=600, delay_s=0.0, fail=False, fail_batch: int | None = None):
    """A small served model; ``fail``: every call raises; ``fail_batch``: calls of that many images raise."""
    from bench.data.mnist import make_split, resolve_mnist

    m = resolve_mnist(mnist_path, fill_cache=False)
    test = make_split(m.test_images, m.test_labels, "minmax", "cpu", n)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 10)).eval()
    batches = []

    def predict(x):
        if fail or len(x) == fail_batch:
            raise RuntimeError("the model fell over")
        batches.append(len(x))
        if delay_s:
            time.sleep(delay_s)
        with torch.no_grad():
            return net(x)

    return ServedModel(Prepared(predict, "cpu"), test.x), test.y, batches


@pytest.mark.slow
@needs_loadgen
def test_every_scenario_under_loadgen_with_its_logs_and_the_same_predictions(mnist_path, tmp_path):
    served, labels, batches = _served(mnist_path, delay_s=0.0002)
    plan = ServePlan(("single-stream", "multi-stream", "server", "offline"), seconds=0.05, latency_bound_ms=20.0,
                     max_batch=8, batch_timeout_us=2000, server_steps=3, offline_batch=64, accuracy_batch=250)
    tables = serve_tables(served, labels, plan, tmp_path / "loadgen")
    s = tables["summary"].iloc[0]
    # AccuracyOnly: every image once, LoadGen's logged classes are the harness's own predictions
    assert s.loadgen_samples == len(labels) and bool(s.accuracy_matches) and s.loadgen_accuracy == s.harness_accuracy
    t = tables["scenarios"]
    assert list(t.drop_duplicates(["scenario", "batching"])[["scenario", "batching"]].itertuples(index=False)) == [
        ("single-stream", False), ("multi-stream", False), ("server", False), ("server", True), ("offline", False)]
    assert (t[t.scenario == "server"].groupby("batching").size() == 3).all()
    assert t.p99_ms.notna().all() and (t.queries > 0).all() and t.valid.dtype == bool
    assert s.loadgen_tests == len(t) + 2  # and the accuracy test and the breakdown's
    for log in t.log:  # LoadGen's own summary and detail are kept for every test
        assert {p.name for p in (tmp_path / "loadgen" / log).iterdir()} == {"mlperf_log_summary.txt",
                                                                            "mlperf_log_detail.txt"}
    assert max(batches) <= max(plan.offline_batch, plan.accuracy_batch)
    served_rows = tables["served"]
    assert len(served_rows) > 0 and (served_rows.latency_ms > 0).all() and (served_rows.call_ms > 0).all()
    # the parts add up to LoadGen's latency, up to the clock hand-over between LoadGen and the harness
    parts = served_rows[["issue_delay_ms", "handover_ms", "call_ms", "answer_ms", "other_ms"]].sum(axis=1)
    assert ((parts - served_rows.latency_ms).abs() < 1e-9).all()


@pytest.mark.slow
@needs_loadgen
def test_dynamic_batching_serves_queued_queries_together_up_to_max_batch(mnist_path, tmp_path):
    from bench.serving.scenarios import BackendScenarios

    served, labels, batches = _served(mnist_path, delay_s=0.002)  # 2 ms a call: queries queue at 2,000/s
    plan = ServePlan(("server",), seconds=0.1, latency_bound_ms=50.0, max_batch=4, batch_timeout_us=1000,
                     server_steps=1, offline_batch=64)
    row, sut = BackendScenarios(served, labels, plan, tmp_path)._server(2000.0, batching=True)
    sizes = [r[-1] for r in sut.records]
    assert max(sizes) <= 4 and max(sizes) > 1 and len(sizes) == row["queries"]


@pytest.mark.slow
@needs_loadgen
def test_a_backend_that_raises_ends_its_scenarios_with_the_reason(mnist_path, tmp_path):
    served, labels, _ = _served(mnist_path, fail=True)
    plan = ServePlan(("server",), seconds=0.05, latency_bound_ms=20.0, max_batch=4, batch_timeout_us=500,
                     server_steps=2, offline_batch=64)
    with pytest.raises(ScenarioFailed, match="the model fell over") as failed:
        serve_tables(served, labels, plan, tmp_path / "loadgen")
    # the accuracy test raised first: no scenario row, its LoadGen logs kept for the cell
    assert failed.value.scenario == "accuracy" and failed.value.rows.empty
    assert (tmp_path / "loadgen" / "00-accuracy" / "mlperf_log_summary.txt").exists()


@pytest.mark.slow
@needs_loadgen
def test_a_backend_that_raises_in_a_later_scenario_keeps_the_tests_before_it(mnist_path, tmp_path):
    """The accuracy test and SingleStream pass; the backend then raises at Offline's batch of 64
    (sizing the test, before LoadGen starts it): the error names the scenario, the rows are the
    tests done, and their LoadGen logs are kept."""
    served, labels, _ = _served(mnist_path, fail_batch=64)
    plan = ServePlan(("single-stream", "offline"), seconds=0.05, latency_bound_ms=20.0, max_batch=4,
                     batch_timeout_us=500, server_steps=2, offline_batch=64, accuracy_batch=250)
    with pytest.raises(ScenarioFailed, match="the model fell over") as failed:
        serve_tables(served, labels, plan, tmp_path / "loadgen")
    assert failed.value.scenario == "offline"
    rows = failed.value.rows
    assert list(rows.scenario) == ["single-stream"] and not str(rows.loadgen_reason.iloc[0]).startswith("the backend")
    assert sorted(p.name for p in (tmp_path / "loadgen").iterdir()) == ["00-accuracy", "01-single-stream"]


TINY_SERVE = ["--models", "mlp", "--backends", "cpu-fp32,onnxruntime-cpu", "--limit-train", "1024", "--batch-size",
              "64", "--limit-test", "500", "--batch-sizes", "1,32", "--budget-s", "0.03", "--threads", "1",
              "--processes", "1", "--scenarios", "all", "--scenario-seconds", "0.05", "--server-steps", "2"]


@pytest.mark.slow
@needs_loadgen
def test_run_scenarios_writes_serve_cells_and_the_report_section(mnist_path, tmp_path):
    from bench.cli import main
    from bench.storage.results import read_run

    argv = [*TINY_SERVE, "--call-limit-s", "0", "--export", "csv"]  # served here (the faults below: in processes)
    assert main(["run", "--data-dir", str(mnist_path), "--out", str(tmp_path), *argv]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rt = read_run(run_dir)
    serve = rt["summary"][rt["summary"].phase == "serve"]
    assert sorted(serve.backend) == ["cpu-fp32", "onnxruntime-cpu"] and (serve.status == "ok").all()
    assert serve.accuracy_matches.all() and (serve.loadgen_tests == 2 + 2 + 2 * 2 + 1).all()
    tests = rt.with_cells("scenarios")  # whether a rate was VALID depends on the machine: not asserted
    assert len(tests) == 2 * (3 + 2 * 2) and set(tests.scenario) == {"single-stream", "multi-stream", "server",
                                                                       "offline"}
    assert (run_dir / "cells" / "mlp__onnxruntime-cpu__serve" / "loadgen" / "00-accuracy"
            / "mlperf_log_summary.txt").is_file()
    page = (run_dir / "report.html").read_text()
    assert '<h2 id="deployment-scenarios">Deployment scenarios</h2>' in page and "not MLPerf results" in page
    exported = pd.read_csv(run_dir / "export" / "deployment-scenarios.csv")
    assert set(exported.backend) == {"cpu-fp32", "onnxruntime-cpu"}


FAULTY = [*TINY_SERVE[:TINY_SERVE.index("--backends")], "--backends", "cpu-fp32-faulty,cpu-fp32",
          *TINY_SERVE[TINY_SERVE.index("--backends") + 2:TINY_SERVE.index("--scenarios")],
          "--scenarios", "single-stream,multi-stream", "--no-report"]


def _faulty_run(mnist_path, tmp_path, monkeypatch, mode: str, *more: str):
    """A run serving the plugin backend that fails at MultiStream (``mode``: raise, hang) and then
    cpu-fp32, each in its serving process; the serve rows by backend and the run folder."""
    from bench import FAILED_CELLS_EXIT
    from bench.cli import main
    from bench.storage.results import read_run
    from tests.plugin_faulty_serving import registered

    monkeypatch.setenv("MNIST_BENCH_PLUGINS", "tests.plugin_faulty_serving")  # the serving processes' registry
    monkeypatch.setenv("FAULTY_SERVING", mode)
    with registered():
        code = main(["run", "--data-dir", str(mnist_path), "--out", str(tmp_path), *FAULTY, *more])
    assert code == FAILED_CELLS_EXIT
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    serve = read_run(run_dir)["summary"].query("phase == 'serve'").set_index("backend")
    assert serve.status.to_dict() == {"cpu-fp32-faulty": "error", "cpu-fp32": "ok"}  # the run went on
    cell = run_dir / "cells" / "mlp__cpu-fp32-faulty__serve"
    assert (cell / "loadgen" / "00-accuracy" / "mlperf_log_summary.txt").is_file()
    assert pd.read_parquet(cell / "scenarios.parquet").scenario.tolist() == ["single-stream"]  # the test done
    assert not list(run_dir.rglob(".scratch"))  # the serving processes' files went with them
    return serve, run_dir


@pytest.mark.slow
@needs_loadgen
def test_a_backend_that_raises_while_served_is_an_error_cell_with_its_logs_and_the_run_goes_on(mnist_path, tmp_path,
                                                                                             monkeypatch):
    serve, _ = _faulty_run(mnist_path, tmp_path, monkeypatch, "raise")
    reason = serve.reason["cpu-fp32-faulty"]
    assert "the model fell over" in reason and "(multi-stream)" in reason


@pytest.mark.slow
@needs_loadgen
def test_a_served_call_that_never_returns_is_ended_at_the_limit_and_the_run_goes_on(mnist_path, tmp_path,
                                                                                   monkeypatch):
    serve, _ = _faulty_run(mnist_path, tmp_path, monkeypatch, "hang", "--call-limit-s", "1.5")
    assert serve.reason["cpu-fp32-faulty"] == ("a call did not return within 1.5 s (multi-stream); its serving "
                                               "process was ended")
    assert not _serving_processes()  # the hung one was ended (its call sleeps forever), and reaped


def _serving_processes() -> list[str]:
    """This process's children that are serving processes (Linux's /proc)."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            with contextlib.suppress(OSError):  # gone since
                found += [pid] if b"serve_worker" in Path(f"/proc/{pid}/cmdline").read_bytes() else []
    return found


@pytest.mark.slow
def test_without_loadgen_serving_is_a_skipped_row_with_the_reason(mnist_path, tmp_path, monkeypatch):
    from bench.cli import main
    from bench.serving import loadgen
    from bench.storage.results import read_run

    monkeypatch.setattr(loadgen, "unavailable_reason", lambda: "mlcommons-loadgen not installed (test)")
    args = ["--backends", "cpu-fp32", "--models", "mlp", "--limit-train", "512", "--limit-test", "200",
            "--batch-sizes", "1", "--budget-s", "0.02", "--processes", "1", "--scenarios", "server", "--no-report"]
    assert main(["run", "--data-dir", str(mnist_path), "--out", str(tmp_path), *args]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    s = read_run(run_dir)["summary"]
    row = s[s.phase == "serve"].iloc[0]
    assert row.status == "skipped" and row.reason == "mlcommons-loadgen not installed (test)"


@pytest.mark.slow
@pytest.mark.cuda
@needs_loadgen
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_backends_are_served_too(mnist_path, tmp_path):
    from bench.cli import main
    from bench.storage.results import read_run

    args = [*TINY_SERVE[:2], "cuda-fp32,cuda-amp-fp16", *TINY_SERVE[4:]]
    assert main(["run", "--data-dir", str(mnist_path), "--out", str(tmp_path), *args, "--no-report"]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    serve = read_run(run_dir)["summary"].query("phase == 'serve'")
    assert len(serve) == 2 and (serve.status == "ok").all() and serve.accuracy_matches.all()
