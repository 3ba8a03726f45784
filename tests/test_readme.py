"""The README's commands, run as a user would (on a small subset of the real data)."""

import re
import shlex

import pytest

from bench.cli import main

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
PAGES = [README] + [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]  # the README and its docs/ pages
BLOCKS = [b for page in PAGES for b in re.findall(r"```bash\n(.*?)```", page, re.S)]
COMMANDS = [line.strip() for block in BLOCKS for line in block.splitlines() if line.strip().startswith("mnist-bench ")]

# Appended to each command so it runs in seconds: the same code paths on fewer images.
SMALL = {
    "run": ["--limit-train", "1024", "--batch-size", "64", "--limit-test", "300", "--batch-sizes", "1,32",
            "--budget-s", "0.02", "--max-time-s", "0.5", "--epochs", "1", "--models", "mlp", "--processes", "1",
            "--threads", "1"],
    "profile": ["--limit-train", "512", "--steps", "2"],
    "calibrate": ["--limit-train", "1024", "--batch-size", "64", "--limit-test", "300", "--batch-sizes", "1,32",
                  "--budget-s", "0.02", "--max-time-s", "0.5", "--epochs", "1", "--models", "mlp", "--backends",
                  "cpu-fp32", "--repeats", "2", "--processes", "1", "--threads", "1"],
    "dynamics": ["--grid", "4", "--subset", "100"],
}


def test_readme_output_is_what_the_commands_printed():
    """Every output block the README quotes is lines of a file its example script wrote
    (scripts/readme_example.sh), and every docs/ page it links to exists."""
    quoted = re.findall(r"<!-- from (\S+) -->\n```text\n(.*?)```", README, re.S)
    assert len(quoted) >= 3
    for path, block in quoted:
        source = (ROOT / path).read_text().splitlines()
        lines = block.rstrip("\n").splitlines()
        starts = [i for i, line in enumerate(source) if line == lines[0]]
        assert any(source[i:i + len(lines)] == lines for i in starts), f"README block not in {path}"
    for link in re.findall(r"\]\(((?:docs|scripts)/[^)#]+)\)", README):
        assert (ROOT / link).exists(), link
    assert len(README.splitlines()) <= 200


def test_readme_has_the_two_commands():
    assert "mnist-bench run --preset quick" in COMMANDS
    pytest_lines = [line.split("#")[0].strip() for b in BLOCKS for line in b.splitlines()
                    if line.startswith("python -m pytest")]
    # CI runs the first as written, adding only the report of the slowest tests; the second is the fast lane
    assert f"{pytest_lines[0]} --durations=15" in (ROOT / ".ci" / "run").read_text().splitlines()
    assert pytest_lines[1] == 'python -m pytest -m "not slow"'


@pytest.mark.slow
def test_readme_commands_run(mnist_path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_BENCH_DATA", str(mnist_path))
    run_dir = None
    assert COMMANDS, "no mnist-bench commands found in README.md"
    for command in COMMANDS:
        args = shlex.split(command)[1:]
        if args[0] == "compare" and run_dir is not None:
            # a second run to compare the first with
            assert main(["run", *SMALL["run"], "--backends", "cpu-fp32,onnxruntime-cpu", "--out", "other"]) == 0
            other = next(p for p in (tmp_path / "other").iterdir() if p.is_dir())
            args = [a.replace("results/<other-run-id>", str(other)) for a in args]
        if run_dir is not None:
            args = [a.replace("results/<run-id>", str(run_dir)) for a in args]
        if "<run-id>" in " ".join(args):
            pytest.fail(f"README command needs a run before it: {command}")
        args += SMALL.get(args[0], [])
        if args[0] == "run" and run_dir is not None and "--backends" not in args:
            # the first run covers auto; the rest stay short (data-parallel runs train: no ONNX Runtime)
            args += ["--backends", "cpu-fp32" if "--launcher" in args else "cpu-fp32,onnxruntime-cpu"]
        if args[0] == "dynamics":
            # analyses need a run recorded with --dynamics
            assert main(["run", "--dynamics", *SMALL["run"], "--backends", "cpu-fp32", "--out", "dyn"]) == 0
            dyn = next(p for p in (tmp_path / "dyn").iterdir() if p.is_dir())
            args = [a.replace(str(run_dir), str(dyn)) for a in args]
        assert main(args) == 0, command
        out = capsys.readouterr().out
        if args[0] == "run" and run_dir is None:
            run_dir = next(p for p in (tmp_path / "results").iterdir() if p.is_dir())
            assert (run_dir / "report.html").exists() and "report:" in out


def test_the_quick_run_time_the_readme_states_is_its_meta():
    import json
    from datetime import datetime

    (meta,) = (ROOT / "docs" / "results" / "readme" / "results").glob("*/meta.json")
    m = json.loads(meta.read_text())
    seconds = (datetime.fromisoformat(m["end_time"]) - datetime.fromisoformat(m["start_time"])).total_seconds()
    assert f"The quick run took {seconds:.0f} s" in README
