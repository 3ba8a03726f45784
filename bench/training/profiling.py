"""Profiling: ``torch.profiler`` over training steps with a wait/warm-up/active schedule.

Runs apart from every timing run (its overhead never reaches a timing). Writes one trace per
model and backend, ``<run>/profile/<model>_<backend>.<ms>.pt.trace.json``: a Chrome trace-event
file that Perfetto (https://ui.perfetto.dev, "Open trace file") and chrome://tracing open, named as
torch-tb-profiler expects, so ``tensorboard --logdir <run>/profile`` finds the same file. Plus tidy
operator tables for the report and, for CUDA traces when the optional ``hta``
(HolisticTraceAnalysis) package is installed, its temporal breakdown of GPU time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from bench.config.types import ProfileOptions, TrainConfig
from bench.measure.breakdown import STEP_PHASES
from bench.plumbing import console, scratch
from bench.training.train import TrainJob, build_optimizer, build_trainable, endless_batches, make_train_step

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler library's own logging off the terminal


def profile_training(job: TrainJob, pcfg: ProfileOptions, trace_dir: Path) -> dict[str, pd.DataFrame]:
    """Profile ``pcfg.total_steps`` training steps at ``job.cfg.batch_size`` (with the default optimizer of
    that batch size); returns the tables ``profile_ops`` and ``profile_phases``."""
    model_name, backend, train, batch_size, seed = job.model, job.backend, job.train, job.cfg.batch_size, job.seed
    model = build_trainable(model_name, backend, job.options, seed)
    steps_per_epoch = train.train_steps(batch_size)
    opt, _ = build_optimizer(model, TrainConfig(batch_size=batch_size), max(steps_per_epoch, pcfg.total_steps))
    step = make_train_step(backend.engine.training_forward(model, backend), backend, opt,
                           scaler=backend.grad_scaler())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if backend.device == "cuda" else [])
    trace_dir.mkdir(parents=True, exist_ok=True)
    worker = f"{model_name}_{backend.name}"

    written: list[Path] = []

    def on_ready(prof) -> None:
        # written once, under the name torch-tb-profiler looks for (as tensorboard_trace_handler would)
        written.append(trace_dir / f"{worker}.{time.time_ns() // 1_000_000}.pt.trace.json")
        prof.export_chrome_trace(str(written[-1]))

    generator = torch.Generator().manual_seed(seed)
    batches = endless_batches(train, batch_size, generator)
    model.train()
    plan = schedule(wait=pcfg.profile_wait, warmup=pcfg.profile_warmup, active=pcfg.profile_steps, repeat=1)
    with console.quiet_stdio(), profile(activities=activities, schedule=plan, on_trace_ready=on_ready,
                                        record_shapes=pcfg.record_shapes, profile_memory=pcfg.profile_memory,
                                        with_stack=pcfg.with_stack, with_flops=True, acc_events=True) as prof:
        for _ in range(pcfg.total_steps):
            with record_function("step.data"):
                x, y = next(batches)
            with record_function("step.forward"):
                loss = step.forward(x, y)
            with record_function("step.backward"):
                step.backward(loss)
            with record_function("step.optimizer"):
                step.update()
            prof.step()
    tables = operator_tables(prof.key_averages(), pcfg.profile_steps)
    if backend.device == "cuda" and written:
        tables["profile_hta"] = hta_breakdown(written[-1])
    return tables


def hta_breakdown(trace: Path) -> pd.DataFrame:
    """HolisticTraceAnalysis's temporal breakdown of a CUDA trace (GPU time in compute, non-compute
    such as copies and communication, and idle), when the optional ``hta`` package is installed;
    otherwise (or when it fails) one row saying why."""
    try:
        from hta.trace_analysis import TraceAnalysis
    except ImportError:
        return pd.DataFrame([{"note": "HolisticTraceAnalysis not installed (pip install HolisticTraceAnalysis)"}])
    with scratch.temporary() as tmp:  # HTA reads every trace of a folder as one job's ranks
        os.symlink(trace.resolve(), Path(tmp) / trace.name)
        try:
            with console.quiet_stdio():
                df = TraceAnalysis(trace_dir=tmp).get_temporal_breakdown(visualize=False)
        except Exception as e:  # a third-party analysis: its failure is a note, never a lost profile
            print(f"warning: HolisticTraceAnalysis could not analyse {trace.name}: {e}", file=sys.stderr)
            return pd.DataFrame([{"note": f"HolisticTraceAnalysis failed: {type(e).__name__}: {e}"}])
    return pd.DataFrame(df).reset_index(drop=True).assign(trace=trace.name)


def profile_cell(job: TrainJob, settings: dict, pcfg: ProfileOptions, trace_dir: Path) -> dict[str, pd.DataFrame]:
    """The profile cell: the operator and phase tables plus a summary row of the profiler's settings."""
    tables = profile_training(job, pcfg, trace_dir)
    row = {**settings, "profile_steps_active": pcfg.profile_steps, "profile_steps_wait": pcfg.profile_wait,
           "profile_steps_warmup": pcfg.profile_warmup, "record_shapes": pcfg.record_shapes,
           "profile_memory": pcfg.profile_memory, "with_stack": pcfg.with_stack}
    return {"summary": pd.DataFrame([row]), **tables}


def operator_tables(averages, active_steps: int) -> dict[str, pd.DataFrame]:
    rows = []
    for e in averages:
        rows.append({
            "name": e.key,
            "calls": e.count,
            "self_cpu_time_us": e.self_cpu_time_total,
            "cpu_time_total_us": e.cpu_time_total,
            "self_device_time_us": getattr(e, "self_device_time_total", 0.0),
            "device_time_total_us": getattr(e, "device_time_total", 0.0),
            "flops": e.flops or 0,
        })
    ops = pd.DataFrame(rows)
    phases = ops[ops.name.isin([f"step.{p}" for p in STEP_PHASES])].copy()
    phases["phase"] = phases.name.str.removeprefix("step.")
    phases["cpu_ms_per_step"] = phases.cpu_time_total_us / 1e3 / active_steps
    phases["device_ms_per_step"] = phases.device_time_total_us / 1e3 / active_steps
    ops = ops[~ops.name.str.startswith(("step.", "ProfilerStep"))]
    ops = ops.sort_values(["self_device_time_us", "self_cpu_time_us"], ascending=False).reset_index(drop=True)
    return {"profile_ops": ops, "profile_phases": phases[["phase", "cpu_ms_per_step", "device_ms_per_step"]]}
