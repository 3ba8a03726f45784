"""Nothing lost, every failure answered: refused settings, diverged and failed cells with their exit
code, damaged result files, write errors, escaping, signals, and resume after a kill at random
points."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import models
from bench.cli import main
from bench.storage.results import read_run, write_cell, write_json
from reports.html import render_report

from .conftest import ROOT, TINY


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "5000", "--limit-train", "2000"], "batch_size 5000 is larger than the training set (2,000"),
    (["--limit-train", "5"], "batch_size 128 is larger than the training set (5 images"),
    (["--lr", "inf"], "lr must be a number in (0, 10]"),
    (["--lr", "1e30"], "lr must be a number in (0, 10]"),
    (["--lr", "nan"], "lr must be a number in (0, 10]"),
    (["--seed", "99999999999999999999999"], "seed must be in [0, 4294967295]"),
    (["--processes", "0"], "processes must be >= 1"),
    (["--rounds", "0"], "rounds must be a positive integer"),
])
def test_settings_that_cannot_measure_anything_are_refused_up_front(args, message, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1 and not out.exists()


@pytest.mark.parametrize("content, message", [
    (None, "is a folder"),
    (b"\xff\xfe epochs = 1", "is not UTF-8"),
    (b"out = 5", "out must be a folder path"),
    (b"data_dir = 5", "data_dir must be a folder path"),
    (b'config = "other.toml"', "config files do not nest"),
])
def test_config_file_problems_are_one_line(content, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "results").exists()


class Exploding(nn.Sequential):
    """A model whose loss turns non-finite once training starts: its output is scaled by a
    parameter that the first update sends to infinity."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(784, 10))
        self.scale = nn.Parameter(torch.tensor(1e38))

    def forward(self, x):
        return super().forward(x) * self.scale * self.scale


def _tiny(tmp_path, mnist_path, *extra):
    return ["run", *TINY, "--data-dir", str(mnist_path), "--out", str(tmp_path), *extra]


@pytest.mark.slow
def test_a_diverged_training_is_a_diverged_row_and_the_exit_code_says_so(mnist_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(models._REGISTRY, "exploding", models.ModelSpec("exploding", Exploding))
    rc = main(_tiny(tmp_path, mnist_path, "--models", "exploding,mlp", "--backends", "cpu-fp32"))
    assert rc == 4 and "did not end ok (1 diverged)" in capsys.readouterr().err
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    s = read_run(run_dir)["summary"].set_index(["model", "phase", "batch_size"], drop=False)
    train = s[(s.model == "exploding") & (s.phase == "train")].iloc[0]
    assert train.status == "diverged" and "non-finite" in train.reason and train.steps < 32  # stopped early
    infer = s[(s.model == "exploding") & (s.phase == "infer")]
    assert (infer.status == "skipped").all() and infer.reason.str.contains("training did not end ok").all()
    assert (s[s.model == "mlp"].status == "ok").all()  # the run went on


@pytest.mark.slow
def test_a_failed_cell_gives_exit_code_4_and_the_others_complete(mnist_path, tmp_path, monkeypatch, capsys):
    import bench.engines.onnxruntime as ort_engine

    def broken(*a, **k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(ort_engine, "export_onnx", broken)
    monkeypatch.setattr(ort_engine, "_EXPORTS", {})  # an earlier test's export of the same weights is not reused
    assert main(_tiny(tmp_path, mnist_path, "--models", "mlp", "--backends", "cpu-fp32,onnxruntime-cpu")) == 4
    assert "1 error" in capsys.readouterr().err


@pytest.mark.slow
def test_write_errors_are_one_line_and_leave_no_temporary_file(tiny_run, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["report", str(tiny_run), "--output", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(tiny_run), "--output", str(blocker / "r.html")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {blocker / 'r.html'}" in err and "Traceback" not in err
    assert not list(tmp_path.rglob(".*.tmp"))


def test_data_cache_on_an_unwritable_path_is_one_line(mnist_path, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["data", "--data-dir", str(mnist_path), "--cache", str(blocker / "cache")]) == 2
    assert "cannot write the MNIST cache" in capsys.readouterr().err


MARKUP = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def test_markup_from_result_files_is_escaped_everywhere(tmp_path):
    """A crafted folder whose names and reasons carry markup: the report shows it as text."""
    run = tmp_path / "run"
    write_json(run / "meta.json", {"run_id": f"r{MARKUP}", "status": "complete", "hostname": MARKUP,
                                   "command_line": MARKUP, "warnings": [MARKUP]})
    head = {"model": f"m{MARKUP}", "backend": f"b{MARKUP}", "device": "cpu", "precision": "fp32",
            "engine": MARKUP, "batch_size": None}
    write_cell(run, "c1", {"summary": pd.DataFrame([{**head, "phase": "train", "status": "ok", "reason": "",
                                                      "test_accuracy": 0.9, "train_samples_per_s": 10.0}]),
                           "profile_ops": pd.DataFrame([{"name": MARKUP, "calls": 1, "self_cpu_time_us": 1.0,
                                                         "cpu_time_total_us": 1.0, "self_device_time_us": 0.0,
                                                         "device_time_total_us": 0.0, "flops": 0}]),
                           "profile_phases": pd.DataFrame([{"phase": "forward", "cpu_ms_per_step": 1.0,
                                                            "device_ms_per_step": 0.0}])})
    write_cell(run, "c2", {"summary": pd.DataFrame([{**head, "phase": "infer", "batch_size": 1, "status": "error",
                                                      "reason": MARKUP}])})
    page = render_report([run], tmp_path / "r.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and 'id="profile-ops-m"' not in page
    assert page.count("<script>") == 1 and page.index("<script>") > page.rindex("</table>")  # the report's own
    assert "&lt;script&gt;" in page


@pytest.mark.slow
def test_damaged_files_are_named_and_the_rest_renders(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(tiny_run, run)
    victim = next((run / "cells").glob("mlp__cpu-fp32__infer_bs1")) / "summary.parquet"
    victim.write_bytes(b"not parquet at all")
    (run / "cells" / "cnn__cpu-fp32__train" / "epochs.parquet").write_bytes(b"")
    html = render_report([run], tmp_path / "r.html").read_text()
    err = capsys.readouterr().err
    assert str(victim) in err and "damaged" in err and str(victim) in html
    assert "summary-table" in html and "cnn" in html
    (run / "meta.json").write_text("{not json")
    html = render_report([run], tmp_path / "r2.html").read_text()
    assert "meta.json: damaged" in html


def test_a_pytest_benchmark_file_gives_one_row_per_benchmark_of_this_suite(tmp_path):
    """A well-formed file: each benchmark of this suite is one summary row with its own figures;
    a benchmark of another suite (no backend in extra_info) is left out."""
    from bench.storage.pytest_benchmark import read_benchmark_json

    def bench(name, info, data):
        stats = {"rounds": len(data), "mean": sum(data) / len(data), "stddev": 0.0, "min": min(data),
                 "median": sorted(data)[len(data) // 2], "iqr": 0.0, "data": data}
        return {"name": name, "extra_info": info, "stats": stats}

    doc = {"benchmarks": [
        bench("infer-mlp-cpu-fp32-bs32", {"model": "mlp", "backend": "cpu-fp32", "phase": "infer", "batch_size": 32},
              [0.002, 0.003, 0.004]),
        bench("train-cnn-cpu-fp32", {"model": "cnn", "backend": "cpu-fp32", "phase": "train", "batch_size": 64},
              [0.010, 0.020, 0.030]),
        bench("someone-else", {}, [1.0, 2.0, 3.0])]}
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(doc))
    s = read_benchmark_json(path)["summary"].set_index("cell_id")
    assert list(s.index) == ["infer-mlp-cpu-fp32-bs32", "train-cnn-cpu-fp32"]
    infer, train = s.loc["infer-mlp-cpu-fp32-bs32"], s.loc["train-cnn-cpu-fp32"]
    assert infer.p50_latency_ms == pytest.approx(3.0) and infer.samples_per_s == pytest.approx(32 / 0.003)
    assert train.train_samples_per_s == pytest.approx(64 / 0.020) and pd.isna(train.p50_latency_ms)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(
                        st.sampled_from(["benchmarks", "stats", "extra_info", "name", "data", "backend", "rounds",
                                         "median", "mean", "batch_size", "phase"]), children, max_size=5),
                    max_leaves=20))
def test_any_json_shape_is_read_or_named_in_one_line(tmp_path_factory, doc):
    from bench import BenchError
    from bench.storage.pytest_benchmark import read_benchmark_json

    path = tmp_path_factory.mktemp("json") / "bench.json"
    path.write_text(json.dumps(doc))
    try:
        rt = read_benchmark_json(path)
    except BenchError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:  # read: a run of this file, one summary row at most per benchmark of this suite
        assert set(rt.meta) == {f"pytest-benchmark:{path.stem}"}
        assert len(rt["summary"]) <= len(doc["benchmarks"])
        assert rt["summary"].empty or set(rt["summary"].backend) <= {
            str(b["extra_info"]["backend"]) for b in doc["benchmarks"]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200), st.sampled_from(["summary.parquet", "timings.parquet", "meta"]))
def test_garbled_result_files_never_raise_past_the_reader(tmp_path_factory, blob, which):
    run = tmp_path_factory.mktemp("run")
    write_json(run / "meta.json", {"run_id": "r", "status": "complete"})
    row = {"model": "mlp", "backend": "cpu-fp32", "phase": "train", "status": "ok"}
    write_cell(run, "mlp__cpu-fp32__train", {"summary": pd.DataFrame([row])})
    target = run / "meta.json" if which == "meta" else run / "cells" / "mlp__cpu-fp32__train" / which
    target.write_bytes(blob)
    rt = read_run(run)
    named = any(p.startswith(str(target)) for p in rt.problems)
    if which == "meta":  # a JSON object is a meta.json (its fields may be missing); anything else is named
        try:
            readable = isinstance(json.loads(blob.decode("utf-8")), dict)
        except ValueError:
            readable = False
        assert readable != named
    else:  # 200 random bytes are never a Parquet table (it starts and ends with PAR1)
        assert named and which.removesuffix(".parquet") not in rt.tables
    assert all("\n" not in p for p in rt.problems)


def test_a_running_folder_whose_process_is_gone_reads_as_killed(tmp_path):
    import platform

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_json(tmp_path / "meta.json", {"run_id": "r", "status": "running", "pid": int(dead.stdout),
                                        "hostname": platform.node()})
    assert read_run(tmp_path).meta["r"]["status"] == "killed"


# -- signals and resume ----------------------------------------------------------------------------

KILL_RUN = ["--models", "mlp", "--backends", "cpu-fp32,onnxruntime-cpu", "--limit-train", "512", "--batch-size", "64",
            "--limit-test", "200", "--batch-sizes", "1,8", "--budget-s", "0.06", "--rounds", "3", "--threads", "1",
            "--processes", "1", "--no-report"]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
# Kill points per test run: two fresh runs each stopped by a signal, and each of those runs'
# resumes stopped once more with the next signal (4 kill points; which signal starts is drawn
# too, so each signal stops fresh runs and resumes alike over time). A kill point is a position
# in the run, not a time, so it lands mid-run on a slow or loaded machine too: "after k completed
# cells, plus a delay of up to a third of a second". The signals, k and the delay are drawn from a
# seed that is new on every test run and named in every failure, so every point of the run is
# covered over time and any failure can be replayed: MNIST_BENCH_KILL_SEED=<seed>.
KILL_CHAINS = 2


def _start(args, mnist_path):
    env = {**os.environ, "MNIST_BENCH_DATA": str(mnist_path), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "bench", "run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cells(run_dir):
    cells = run_dir / "cells"
    return sorted(p.name for p in cells.iterdir() if not p.name.startswith(".")) if cells.is_dir() else []


def _runs(out):
    return [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")] if out.exists() else []


def _kill_at(proc, out, cells_done, delay_s, sig, where):
    """Signal ``proc`` ``delay_s`` after its run folder (in ``out``) holds ``cells_done`` cells;
    its exit code and stderr, the code checked."""
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        runs = _runs(out)
        if runs and len(_cells(runs[0])) >= cells_done:
            break
        time.sleep(0.01)
    time.sleep(delay_s)
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 128 + sig, -sig), (where, proc.returncode, err[-2000:])
    return proc.returncode, err


def _check_stopped(run_dir, rc, sig, err, expected, html_path, where) -> bool:
    """What a stopped run leaves: a resume hint, readable cells, a report that says so. True when
    the run stopped before completing."""
    if rc == 128 + sig:
        assert "Traceback" not in err and f"resume with: mnist-bench run --resume {run_dir}" in err, (where, err)
    rt = read_run(run_dir)  # every completed cell readable
    assert rt.problems == [], where
    status = rt.meta[next(iter(rt.meta))]["status"]
    if status == "complete":
        return False
    html = render_report([run_dir], html_path).read_text()
    assert status in ("interrupted", "killed") and "did not finish" in html, where
    missing = [m for m in set(expected) - set(_cells(run_dir)) if "__machine__" not in m]
    assert not missing or "missing-" in html, where  # the report lists the cells still to run
    return True


def _chain(mnist_path, tmp_path, expected, name, sig, k, delay, rng, where) -> bool:
    """A fresh run stopped by ``sig`` ``delay`` s after ``k`` cells; when it stopped mid-run, its
    resume stopped too (the next signal, further on), then resumed to the end. True when stopped
    mid-run."""
    out = tmp_path / name
    rc, err = _kill_at(_start([*KILL_RUN, "--out", str(out)], mnist_path), out, k, delay, sig, where)
    if not _runs(out):
        return False  # killed before the run folder existed: nothing half-written
    (run_dir,) = _runs(out)
    if not _check_stopped(run_dir, rc, sig, err, expected, tmp_path / f"{name}.html", where):
        return False
    sig2, done = SIGNALS[(SIGNALS.index(sig) + 1) % 3], len(_cells(run_dir))
    k2, delay2 = rng.randrange(done, len(expected)), rng.uniform(0, 0.33)
    where2 = f"{where}; its resume {sig2.name} {delay2:.2f} s after {k2} cells"
    resume = _start(["--resume", str(run_dir), "--no-report"], mnist_path)
    rc2, err2 = _kill_at(resume, out, k2, delay2, sig2, where2)
    _check_stopped(run_dir, rc2, sig2, err2, expected, tmp_path / f"{name}b.html", where2)
    assert main(["run", "--resume", str(run_dir), "--no-report"]) == 0, where2
    assert _cells(run_dir) == expected, where2
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "complete", where2
    return True


@pytest.mark.slow
def test_killed_at_random_points_every_completed_cell_survives_and_resume_completes(mnist_path, tmp_path):
    seed = int(os.environ.get("MNIST_BENCH_KILL_SEED") or random.SystemRandom().randrange(10**6))
    print(f"kill points drawn from MNIST_BENCH_KILL_SEED={seed}")
    reference = _start([*KILL_RUN, "--out", str(tmp_path / "reference")], mnist_path)
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-2000:]
    (ref_dir,) = _runs(tmp_path / "reference")
    expected = _cells(ref_dir)
    rng = random.Random(seed)
    stopped_mid_run = 0
    for i in range(KILL_CHAINS):
        sig = SIGNALS[(seed + i) % 3]
        k, delay = rng.randrange(len(expected)), rng.uniform(0, 0.33)
        where = f"MNIST_BENCH_KILL_SEED={seed}: chain {i}, {sig.name} {delay:.2f} s after {k} cells"
        stopped_mid_run += _chain(mnist_path, tmp_path, expected, f"kill{i}", sig, k, delay, rng, where)
    if not stopped_mid_run:  # every drawn point fell after the run's end: one more, at its start
        where = f"MNIST_BENCH_KILL_SEED={seed}: chain {KILL_CHAINS}, SIGKILL at the run's start"
        assert _chain(mnist_path, tmp_path, expected, "kill-start", signal.SIGKILL, 0, 0.0, rng, where), where


def test_profiling_a_backend_that_does_not_train_is_refused(tmp_path, capsys):
    assert main(["profile", "--backend", "onnxruntime-cpu", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "does not train; legal values: cpu-fp32" in err and not (tmp_path / "o").exists()


def test_a_damaged_raw_file_beside_a_good_gz_is_named(mnist_path, tmp_path, capsys):
    import gzip
    import shutil

    from bench.data.mnist import MNIST_FILES, load_dir

    for name in MNIST_FILES:  # the .gz files (made from the raw ones where the folder has only those)
        if (mnist_path / f"{name}.gz").exists():
            shutil.copy(mnist_path / f"{name}.gz", tmp_path / f"{name}.gz")
        else:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress((mnist_path / name).read_bytes(), compresslevel=1))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\xea\x60truncated")
    assert load_dir(tmp_path)["train-labels-idx1-ubyte"].shape == (60000,)
    err = capsys.readouterr().err
    assert "train-labels-idx1-ubyte: truncated IDX data" in err and "used train-labels-idx1-ubyte.gz instead" in err


@pytest.mark.slow
def test_when_the_reference_training_fails_every_planned_cell_still_gets_a_row(mnist_path, tmp_path, monkeypatch,
                                                                              capsys):
    import bench.scheduling.cells as cells
    from bench.storage.plan import missing_cells

    def broken(*a, **k):
        raise RuntimeError("training exploded")
        yield  # a generator, as train_blocks is

    monkeypatch.setattr(cells, "train_blocks", broken)
    assert main(_tiny(tmp_path, mnist_path, "--models", "mlp", "--backends", "onnxruntime-cpu")) == 4
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rt = read_run(run_dir)
    s = rt["summary"].set_index(["backend", "phase"])
    assert s.loc[("cpu-fp32", "train"), "status"] == "error"  # the reference for the exported model
    assert s.loc[("onnxruntime-cpu", "export"), "reason"] == "no trained model to prepare"
    meta = next(iter(rt.meta.values()))
    assert missing_cells(meta, set(rt["summary"].cell_id)) == []


def test_a_read_only_file_system_is_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    """The write fails and so does the removal of its temporary file (EROFS): one line, exit 2."""
    import errno
    from pathlib import Path

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "write_text", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    assert main(["report", str(tiny_run), "--output", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Read-only file system" in err and "Traceback" not in err


def test_a_table_of_a_foreign_schema_is_named_and_skipped(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cell = next((run / "cells").glob("mlp__cpu-fp32__infer_bs*"))
    pd.DataFrame({"a": [1], "b": ["x"]}).to_parquet(cell / "summary.parquet")
    pd.DataFrame({"a": [1.0]}).to_parquet(cell / "timings.parquet")
    assert main(["report", str(run), "--output", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert "not this tool's summary table (no model, backend, phase, status column)" in err
    assert "not this tool's timings table" in err and "Traceback" not in err
    assert main(["export", str(run), "--format", "csv", "--output", str(tmp_path / "x")]) == 0


def test_profile_says_why_it_skips_a_backend_that_does_not_train(mnist_path, tmp_path, capsys):
    assert main(["profile", "--model", "mlp", "--backend", "cpu-fp32,onnxruntime-cpu", "--steps", "1",
                 "--limit-train", "512", "--data-dir", str(mnist_path), "--out", str(tmp_path), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "mlp onnxruntime-cpu profile: skipped: onnxruntime does not train" in err
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = read_run(run)["summary"]
    assert rows[rows.backend == "onnxruntime-cpu"].status.tolist() == ["skipped"]


def _workers_of(run_dir) -> list[int]:
    """The pids of the timing workers whose files are in ``run_dir`` (their command line names them)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and "timing_workers" in cmd and str(run_dir) in cmd:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_run_stopped_while_its_worker_times_takes_the_worker_with_it(sig, mnist_path, tmp_path):
    """SIGTERM or SIGKILL to a run while its second timing process works: within 3 s no worker is
    left; a SIGTERM stops the run at once (exit 143, its completed cells kept, no worker files); after
    a SIGKILL, --resume removes the files the worker left and completes the run."""
    args = [*KILL_RUN[:-3], "--processes", "2", "--no-report", "--out", str(tmp_path)]
    proc = _start(args, mnist_path)
    deadline, workers, run_dir = time.monotonic() + 240, [], None
    while not workers and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
        run_dir = next(iter(_runs(tmp_path)), None)
        workers = _workers_of(run_dir) if run_dir is not None else []
    assert workers, "the run ended before its worker started"
    time.sleep(0.5)
    signalled = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and time.monotonic() - signalled < 10, err[-2000:]
        assert not list(run_dir.rglob(".workers-*"))
    time.sleep(max(0.0, 3 - (time.monotonic() - signalled)))
    assert not _workers_of(run_dir)
    kept = {p: p.read_bytes() for p in (run_dir / "cells").glob("*__*__*/*.parquet")}
    assert any(p.parent.name.endswith("__train") for p in kept)
    if sig == signal.SIGTERM:
        return  # resuming after a stop is the kill-chain test's; after a SIGKILL, the worker's files go
    resumed = _start(["--resume", str(run_dir), "--no-report"], mnist_path)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    assert not list(run_dir.rglob(".workers-*"))
    assert {p: p.read_bytes() for p in kept} == kept
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "complete"
