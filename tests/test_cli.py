"""Bad input: one clear message, exit code 2, nothing half-written."""

import subprocess
import sys

import pytest

from bench.cli import main

from .conftest import ROOT


@pytest.mark.parametrize("args, message", [
    (["run", "--models", "lenet"], "unknown model 'lenet'; legal values: mlp, cnn"),
    (["run", "--backends", "cpu-fp64"], "legal values: cpu-fp32, cpu-bf16"),
    (["run", "--epochs", "0"], "epochs must be a positive integer"),
    (["run", "--batch-size", "-1"], "batch_size must be a positive integer"),
    (["run", "--threads", "0"], "threads must be >= 1"),
    (["run", "--limit-train", "0"], "limit_train must be a positive integer"),
])
def test_bad_input_exit_2_and_nothing_written(args, message, tmp_path, capsys):
    out = tmp_path / "results"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1
    assert not out.exists()


def test_missing_data_lists_sources(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "MNIST from --data-dir failed" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_output_fails_before_training(tmp_path, capsys, mnist_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", "--out", str(blocker / "x"), "--data-dir", str(mnist_path)]) == 2
    assert "not writable" in capsys.readouterr().err


def test_every_backend_unavailable(tmp_path, capsys, mnist_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    out = tmp_path / "results"
    assert main(["run", "--backends", "cuda-fp32,cuda-amp-bf16", "--out", str(out), "--data-dir",
                 str(mnist_path)]) == 2
    assert "every requested backend is unavailable: cuda-fp32: CUDA not available" in capsys.readouterr().err
    assert not any(out.iterdir())


def test_corrupt_file_exit_2(tmp_path, mnist_path, capsys):
    import shutil

    for f in mnist_path.iterdir():
        if not f.name.endswith(".gz") and "ubyte" in f.name:
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes((tmp_path / "train-labels-idx1-ubyte").read_bytes()[:-7])
    assert main(["data", "--data-dir", str(tmp_path)]) == 2
    assert "train-labels-idx1-ubyte: truncated IDX data" in capsys.readouterr().err


def test_argparse_errors_exit_2():
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--preset", "slow"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'slow'" in proc.stderr


def test_help_everywhere():
    for cmd in ([], ["run"], ["report"], ["data"], ["backends"]):
        proc = subprocess.run([sys.executable, "-m", "bench", *cmd, "--help"], cwd=ROOT, capture_output=True,
                              text=True)
        assert proc.returncode == 0 and "usage: mnist-bench" in proc.stdout


def test_data_command_fills_a_verified_cache(mnist_path, tmp_path, capsys):
    from bench.data.mnist import load_dir

    assert main(["data", "--data-dir", str(mnist_path), "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "source: --data-dir" in out and "cache filled" in out
    assert load_dir(tmp_path / "MNIST" / "raw")["train-labels-idx1-ubyte"].shape == (60000,)  # checksums pass


def test_version(capsys):
    from bench import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"mnist-bench {__version__}"


def test_help_states_every_default():
    """Every option with a default says it in --help (run's per preset and model where they differ)."""
    import argparse

    from bench.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "report", "compare", "export", "history", "backends", "data", "profile", "dynamics"} <= set(subs)
    for name, sub in subs.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreConstAction, argparse._HelpAction))
            if flag or action.dest in ("config", "resume", "output", "export", "baseline", "fail_above", "metric",
                                       "batch_size" if name == "history" else ""):
                continue  # switches, and options that name a file or a choice with no default value
            text = formatter._expand_help(action)
            assert "default" in text, f"{name} {action.option_strings[0]}: {text}"
    run_help = subs["run"].format_help()
    assert "(default: quick: 1; full: mlp 3, cnn 2)" in " ".join(run_help.split())


@pytest.mark.slow
def test_quiet_and_verbose(mnist_path, tmp_path, capsys):
    from .conftest import TINY

    common = ["run", "--models", "mlp", "--backends", "cpu-fp32", "--data-dir", str(mnist_path), *TINY,
              "--no-report"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "accuracy" in out and "train mlp cpu-fp32: done" in err and "infer mlp" in err  # a line per stage
    assert "verdict (samples/s" in out and "mlp · inference, batch 32:" in out
    assert main([*common, "-q", "--out", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    assert "accuracy" not in out and "results:" in out and "done" not in err


def test_help_parses_without_torch():
    """--help and argument errors answer before torch loads (it takes seconds to import)."""
    import subprocess
    import sys

    code = ("import sys\nfrom bench.cli import build_parser\nbuild_parser()\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_run_help_is_in_groups():
    from bench.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for group in ("what to run:", "training recipe:", "inference timing:", "backend options:",
                  "optimization dynamics:", "data-parallel training (torchrun):", "data and output:"):
        assert group in text
