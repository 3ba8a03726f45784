"""The commands behind ``mnist-bench``: each takes the parsed arguments, turns them into explicit
values (a typed configuration, paths) and calls the harness or the reports."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench import FAILED_CELLS_EXIT, BenchError
from bench.plumbing import console

FAILED_STATUSES = ("error", "oom", "diverged")


def _resolve(paths: list[Path], root: Path) -> list[Path]:
    from bench.storage.run_index import resolve_run

    return [resolve_run(p, root) for p in paths]


def _run_values(args: argparse.Namespace, *also: str) -> dict:
    """The configuration values of a run's options (``build_config``'s input), less the command's
    own flags and ``also``."""
    own = ("command", "no_report", "preset_old_name", "resume", "export", "level", *also)
    return {k: v for k, v in vars(args).items() if k not in own}


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.config.build import build_config
    from bench.scheduling.runner import Runner

    values = _run_values(args)
    if args.export is not None:
        from reports.export import parse_formats

        formats = parse_formats(args.export)  # refused before anything runs
    if args.preset_old_name:
        values["profile"] = args.preset_old_name  # build_config warns and reads it as the preset
    if args.resume is not None:
        from bench.config.build import resume_config
        from bench.storage.run_index import resolve_run

        resume = resolve_run(args.resume, Path(args.out or "results"))
        cfg = resume_config(resume, {k: v for k, v in values.items() if v is not None})
    else:
        resume, cfg = None, build_config(values)
    from bench.measure import process_state

    relaunched = process_state.enter(cfg.allocator, argv)  # before any worker or torchrun rank starts
    if relaunched is not None:
        return relaunched
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
    _report_and_export(run_dir, not args.no_report, formats if args.export is not None else None)
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


def _report_and_export(run_dir: Path, report: bool, formats: tuple[str, ...] | None) -> None:
    """After a run: its report (timed: the run's last stage) and its exports, then where its
    results are and, as the last line, how its own time was spent."""
    if report:
        import time

        from bench.storage.run_folder import add_stage
        from reports.html import render_report

        start = time.perf_counter()
        html = render_report([run_dir])
        add_stage(run_dir, "report", time.perf_counter() - start)
        print(f"report: {html}")
    if formats is not None:
        from reports.export import export

        print(f"export: {len(export([run_dir], formats))} files in {run_dir / 'export'}")
    print(f"results: {run_dir}")
    _say_stages(run_dir)


def _say_stages(run_dir: Path) -> None:
    """The run's own time, the terminal's last line (meta.json's ``stages``)."""
    import json

    from bench.analysis.stages import stage_sentence

    try:
        sentence = stage_sentence(json.loads((run_dir / "meta.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return
    if sentence:
        print(sentence)


def print_results(run_dir: Path):
    """The run's summary table, then its verdict as hyperfine prints one (-q: the verdict only);
    returns the summary."""
    from bench.analysis.ranked import ranked_backends
    from bench.engines.backends import REFERENCE
    from bench.storage.results import read_run
    from reports.summary import planned_max_batch, summary_table
    from reports.verdict_section import verdict_lines

    rt = read_run(run_dir, only={"summary", "timings", "seeds", "time_breakdown"})
    if console.level() != "quiet":
        print(summary_table(rt["summary"], planned_max_batch(rt.meta)))
    ranked = ranked_backends(rt)
    lines = verdict_lines(ranked)
    if lines:
        figures = "samples/s" + ("; time to accuracy: seconds" if (ranked.phase == "tta").any() else "")
        print(f"\nverdict ({figures}; against {REFERENCE} with the 95% interval of the paired ratio; ★ fastest, "
              "= tie with the fastest):")
        print("\n".join(lines))
    if (rt["summary"].phase == "dynamics").any():
        from bench.analysis.basins import basins

        said = basins(read_run(run_dir, only={"summary", "landscape", "dynamics_layers"}))
        if not said.empty:
            print("\ndynamics (does each backend reach the reference's minimum?):")
            print("\n".join(f"  {r.model}: {r.words}" for r in said.itertuples()))
    return rt["summary"]


def cmd_profile(args: argparse.Namespace, argv: list[str]) -> int:
    """A run of the profile phase alone (``bench.scheduling.profile_phase``) for one model."""
    from dataclasses import replace

    from bench import ConfigError
    from bench.config.build import build_config
    from bench.engines.backends import BACKENDS
    from bench.scheduling.runner import Runner

    for flag, value, least in (("--steps", args.steps, 1), ("--wait", args.wait, 0), ("--warmup", args.warmup, 0)):
        if value < least:  # refused before any run, by the command's own names
            raise ConfigError(f"{flag} must be >= {least}, got {value}")
    cfg = build_config({"models": args.model, "backends": args.backend, "batch_size": args.batch_size,
                        "seed": args.seed, "threads": args.threads, "limit_train": args.limit_train,
                        "data_dir": args.data_dir, "out": args.out, "channels_last": args.channels_last,
                        "profile_steps": args.steps, "profile_wait": args.wait, "profile_warmup": args.warmup,
                        "record_shapes": args.record_shapes, "profile_memory": args.profile_memory,
                        "with_stack": args.with_stack})
    if not any(BACKENDS[b].trains for b in cfg.backends):
        trainers = ", ".join(n for n, b in BACKENDS.items() if b.trains)
        raise ConfigError(f"profile covers training steps, and {', '.join(cfg.backends)} does not train; "
                          f"legal values: {trainers}")
    run_dir = Runner(replace(cfg, only=("profile",)), argv=["mnist-bench", *argv], progress=False).run()
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
    from bench.config.types import DynamicsConfig
    from bench.data.mnist import resolve_mnist
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
    from bench import REGRESSION_EXIT, ConfigError
    from bench.analysis.comparison import compare, regressions, unjudged
    from reports.compare_page import compare_file, render_compare, text_table

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


def calibrate_runs(run_args: list[str], repeats: int, results: Path) -> tuple[Path, dict]:
    """Run ``mnist-bench run RUN_ARGS`` ``repeats`` times, each in a fresh process, then store the
    run-to-run variation of their cells. Returns the calibration file and the variation per phase."""
    from bench.analysis.calibration import run_to_run_sigma
    from bench.analysis.ranked import cell_rounds
    from bench.storage.calibration import save
    from bench.storage.results import read_run

    if repeats < 2:
        raise BenchError(f"calibrate needs --repeats >= 2 to see a variation between runs, got {repeats}")
    run_dirs = []
    for i in range(repeats):
        before = {p for p in results.glob("*") if p.is_dir()}
        proc = subprocess.run([sys.executable, "-m", "bench", "run", *run_args, "--out", str(results), "--no-report",
                               "-q", "--name", "calibrate"], stdout=subprocess.DEVNULL)
        new = sorted(p for p in results.glob("*") if p.is_dir() and p not in before and not p.name.startswith("."))
        if proc.returncode not in (0, 4) or not new:
            raise BenchError(f"calibration run {i + 1} of {repeats} failed (exit {proc.returncode})")
        run_dirs.append(new[-1])
        print(f"calibrate: run {i + 1} of {repeats}: {new[-1]}")
    tables = [read_run(d) for d in run_dirs]
    import pandas as pd

    values = pd.concat([cell_rounds(t) for t in tables], ignore_index=True)
    sigma = run_to_run_sigma(values)
    meta = next(iter(tables[0].meta.values()))
    return save(results, meta, sigma, [d.name for d in run_dirs]), sigma


def cmd_calibrate(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.config.build import build_config

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
    path, sigma = calibrate_runs(run_args, args.repeats, cfg.out)
    for phase, v in sigma.items():
        print(f"calibrate: {phase}: a cell's figure varies by {v['sigma']:.1%} (sd of its log) from run to run "
              f"({v['cells']} cells x {v['runs']} runs, {v['df']} degrees of freedom)")
    print(f"calibration: {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data.mnist import fill_cache, resolve_mnist

    m = resolve_mnist(args.data_dir, cache_root=args.cache)
    print(f"MNIST verified: {len(m.train_labels)} training and {len(m.test_labels)} test images; "
          f"source: {m.source}")
    if not m.source.startswith("cache"):
        print(f"cache filled: {fill_cache(m, args.cache)}")
    return 0


def cmd_defaults() -> int:
    from bench.config.build import defaults_toml

    print(defaults_toml(), end="")
    return 0


def cmd_backends() -> int:
    from bench.engines.backends import auto_choices

    print(f"{'backend':24s} {'auto':4s} {'here':11s} why")
    for b, picked, why in auto_choices():
        here = "available" if b.unavailable_reason() is None else "unavailable"
        print(f"{b.name:24s} {'yes' if picked else 'no':4s} {here:11s} {why}")
    print("--backends auto (the default) runs the rows marked yes; name backends to choose others.")
    return 0


