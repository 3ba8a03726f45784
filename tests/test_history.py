"""The results index: runs listed and named, a figure over runs, the index rebuilt from the files."""

import sqlite3

import pandas as pd
import pytest

from bench.cli import main
from bench.storage import run_index as history

from .conftest import TINY


@pytest.fixture(scope="module")
def named_runs(mnist_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("indexed")
    for name in ("baseline", "candidate"):
        assert main(["run", "--models", "mlp", "--backends", "cpu-fp32,onnxruntime-cpu", "--name", name,
                     "--data-dir", str(mnist_path), "--out", str(out), "--no-report", *TINY]) == 0
    return out


def _dump(root):
    with sqlite3.connect(history.db_path(root)) as con:
        return {t: pd.read_sql_query(f"SELECT * FROM {t} ORDER BY 1, 2, 3", con) for t in ("runs", "figures")}


@pytest.mark.slow
def test_runs_are_indexed_named_and_rebuilt(named_runs, capsys):
    before = _dump(named_runs)
    assert list(before["runs"].name) == ["baseline", "candidate"]
    assert all(p.endswith(n) for p, n in zip(before["runs"].path, before["runs"].name))
    assert {"train_samples_per_s", "test_accuracy", "p50_latency_ms"} <= set(before["figures"].metric)
    history.db_path(named_runs).unlink()
    assert main(["history", "--rebuild", "--results", str(named_runs)]) == 0
    after = _dump(named_runs)
    for t in before:
        pd.testing.assert_frame_equal(before[t], after[t])
    capsys.readouterr()
    assert main(["history", "--results", str(named_runs)]) == 0
    listing = capsys.readouterr().out
    assert "baseline" in listing and "candidate" in listing and "mlp train" in listing
    assert max(len(line) for line in listing.splitlines()) <= 100  # fits a terminal


@pytest.mark.slow
def test_names_work_where_folders_do(named_runs, tmp_path, capsys):
    results = ["--results", str(named_runs)]
    assert main(["report", "baseline", *results, "--output", str(tmp_path / "r.html")]) == 0
    assert main(["compare", "baseline", "candidate", *results, "--output", str(tmp_path / "c.html")]) == 0
    assert main(["export", "candidate", *results, "--format", "csv", "--output", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "summary.csv").exists()
    assert "baseline" in (tmp_path / "r.html").read_text()
    capsys.readouterr()
    assert main(["report", "no-such-run", *results, "--output", str(tmp_path / "n.html")]) == 2
    err = capsys.readouterr().err  # the problem and the legal values
    assert "no-such-run: no such folder, and no run of that name" in err
    assert "its named runs: baseline, candidate" in err


@pytest.mark.slow
def test_a_figure_over_runs(named_runs, tmp_path, capsys):
    assert main(["history", "--results", str(named_runs), "--metric", "p50_latency_ms", "--model", "mlp",
                 "--backend", "onnxruntime-cpu", "--batch-size", "1", "--output", str(tmp_path / "h.html")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("baseline" in line for line in lines) == 1 and sum("candidate" in line for line in lines) == 1
    page = (tmp_path / "h.html").read_text()
    assert "history-table" in page and "data:image/svg+xml;base64," in page
    assert main(["history", "--results", str(named_runs), "--metric", "speed"]) == 2
    assert "legal values: test_accuracy, train_samples_per_s" in capsys.readouterr().err
    assert main(["history", "--results", str(named_runs), "--metric", "test_accuracy", "--backend", "tpu"]) == 2
    assert "recorded: mlp/cpu-fp32" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["", "a b", "../x", "-x", "x" * 65])
def test_bad_run_names_are_refused(name, capsys):
    assert main(["run", f"--name={name}"]) == 2
    assert "run name" in capsys.readouterr().err


@pytest.mark.slow
def test_a_results_glob_that_catches_the_index_still_renders(named_runs, tmp_path, capsys):
    paths = sorted(str(p) for p in named_runs.iterdir())  # what results/* expands to
    assert any(p.endswith("history.sqlite") for p in paths)
    assert main(["report", *paths, "--output", str(tmp_path / "all.html")]) == 0
    assert "history.sqlite" not in capsys.readouterr().err


@pytest.mark.slow
def test_each_figure_followed_gets_its_own_page_and_marks_its_changes(named_runs, capsys):
    for metric in ("train_samples_per_s", "test_accuracy"):
        assert main(["history", "--results", str(named_runs), "--metric", metric]) == 0
    pages = sorted(p.name for p in named_runs.glob("history-*.html"))
    assert pages == ["history-test_accuracy-mlp-cpu-fp32.html", "history-train_samples_per_s-mlp-cpu-fp32.html"]
    out = capsys.readouterr().out
    assert "first on this machine" in out and "cannot tell: machine not calibrated" in out and "not a timing" in out


def test_a_step_is_called_only_beyond_the_calibrated_variation(tmp_path):
    """Three runs of one machine: +2% is inside a 5% run-to-run variation, -30% is a step (worse),
    and without a calibration nothing is called."""
    from bench.storage.calibration import machine_key

    meta = {"hostname": "h", "cpu_model": "c", "cpu_count": 2, "torch_threads": 2, "gpu_name": None}
    for i in range(3):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "meta.json").write_text(__import__("json").dumps(meta))
    s = pd.DataFrame({"value": [100.0, 102.0, 71.4], "path": [str(tmp_path / f"r{i}") for i in range(3)],
                      "hostname": "h", "cpu_model": "c"})
    calibrated = {machine_key(meta): {"phases": {"train": {"sigma": 0.05}}}}
    marks = history.mark_changes(s, "train_samples_per_s", calibrated).tolist()
    assert marks[0] == "first on this machine"
    assert marks[1].startswith("+2.0% (within run-to-run variation")
    assert marks[2].startswith("-30.0% step (worse)")
    assert all("cannot tell" in m for m in history.mark_changes(s, "train_samples_per_s", {})[1:])
    assert "not a timing" in history.mark_changes(s, "test_accuracy", calibrated)[1]


@pytest.mark.parametrize("content", [b"garbage, not a database", b"SQLite format 3\x00" + b"\x01" * 200])
def test_a_damaged_index_is_one_clear_line_and_rebuild_recreates_it(tmp_path, capsys, content):
    """history and a run named through the index answer a damaged index with one line (what is
    wrong, --rebuild) and exit 2; --rebuild recreates it, and no run folder is touched."""
    (tmp_path / "history.sqlite").write_bytes(content)
    for argv in (["history", "--results", str(tmp_path)], ["report", "some-name", "--results", str(tmp_path)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot be read" in err[0] and "--rebuild" in err[0] and "Traceback" not in err[0]
    assert main(["history", "--results", str(tmp_path), "--rebuild"]) == 0
    assert main(["history", "--results", str(tmp_path)]) == 0


def test_an_empty_index_is_an_empty_index(tmp_path, capsys):
    (tmp_path / "history.sqlite").write_bytes(b"")  # `touch`, or a first write cut short
    assert main(["history", "--results", str(tmp_path)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_locked_index_says_another_process_holds_it_not_to_rebuild(tmp_path, capsys, monkeypatch):
    """An index another process holds locked past the wait: one line that says so (a rebuild would
    delete what that process writes), exit 2."""
    import sqlite3

    from bench.storage import run_index

    monkeypatch.setattr(run_index, "LOCK_WAIT_S", 0.2)
    assert main(["history", "--results", str(tmp_path), "--rebuild"]) == 0
    holder = sqlite3.connect(tmp_path / "history.sqlite")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for argv in (["history", "--results", str(tmp_path)], ["report", "some-name", "--results", str(tmp_path)]):
            capsys.readouterr()
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "locked by another process" in err[0] and "--rebuild --results" not in err[0]
    finally:
        holder.close()


def _index_state(root, state):
    """Make ``root``'s index damaged or empty, or hold it locked; returns the lock holder (or None)."""
    path = history.db_path(root)
    if state == "damaged":
        path.write_bytes(b"garbage, not a database")
    elif state == "empty":
        path.write_bytes(b"")
    else:
        holder = sqlite3.connect(path)
        holder.execute("BEGIN EXCLUSIVE")
        return holder
    return None


@pytest.mark.slow
@pytest.mark.parametrize("state", ["damaged", "locked", "empty"])
def test_every_command_that_reads_the_index_answers_its_state_in_one_line(named_runs, mnist_path, tmp_path,
                                                                            state, capsys, monkeypatch):
    """history, compare and report by run name, and a run writing to the index, on a damaged, a
    locked and an empty index: no traceback; a reader that cannot read it says why in one line
    and exits 2 (an empty index holds no names: "no run of that name"); a run completes (exit 0) with one
    warning line where the index could not be updated, and no run folder is lost."""
    import shutil

    monkeypatch.setattr(history, "LOCK_WAIT_S", 0.2)
    root = tmp_path / "results"
    shutil.copytree(named_runs, root)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    holder = _index_state(root, state)
    try:
        readers = (["history", "--results", str(root)], ["compare", "baseline", "candidate", "--results", str(root)],
                   ["report", "baseline", "--results", str(root)])
        for argv in readers:
            capsys.readouterr()
            code = main(argv)
            err = capsys.readouterr().err.strip().splitlines()
            assert "Traceback" not in "\n".join(err), argv
            if state == "empty" and argv[0] == "history":
                assert code == 0, argv
                continue
            assert code == 2 and len(err) == 1, (argv, code, err)
            why = {"damaged": "cannot be read", "locked": "locked by another process",
                   "empty": "no run of that name"}[state]
            assert why in err[0], (argv, err)
        capsys.readouterr()
        assert main(["run", "--models", "mlp", "--backends", "cpu-fp32", "--data-dir", str(mnist_path),
                     "--out", str(root), "--no-report", *TINY]) == 0
        err = capsys.readouterr().err
        assert "Traceback" not in err
        warned = [line for line in err.splitlines() if "history.sqlite" in line]
        assert len(warned) == (0 if state == "empty" else 1), warned
    finally:
        if holder is not None:
            holder.close()
    assert set(folders) <= {p.name for p in root.iterdir() if p.is_dir()}  # no run folder lost
