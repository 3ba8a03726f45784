"""The README's commands, run as a user would (on a small subset of the real data)."""

import re
import shlex

import pytest

from bench.cli import main

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)
COMMANDS = [line.strip() for block in BLOCKS for line in block.splitlines() if line.strip().startswith("mnist-bench ")]

# Appended to each command so it runs in seconds: the same code paths on fewer images.
SMALL = {
    "run": ["--limit-train", "1024", "--batch-size", "64", "--limit-test", "300", "--batch-sizes", "1,32",
            "--budget-s", "0.02", "--epochs", "1", "--models", "mlp"],
    "profile": ["--limit-train", "512", "--steps", "2"],
    "calibrate": ["--limit-train", "1024", "--batch-size", "64", "--limit-test", "300", "--batch-sizes", "1,32",
                  "--budget-s", "0.02", "--max-time-s", "0.5", "--epochs", "1", "--models", "mlp", "--backends",
                  "cpu-fp32", "--repeats", "2"],
    "dynamics": ["--grid", "4", "--subset", "100"],
}


def test_readme_has_the_two_commands():
    assert "mnist-bench run --preset quick" in COMMANDS
    test_command = next(line for b in BLOCKS for line in b.splitlines() if line.startswith("python -m pytest"))
    assert test_command.strip() in (ROOT / ".ci" / "run").read_text().splitlines()


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
