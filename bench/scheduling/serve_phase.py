"""The serving phase: each prepared inference backend of a model served to MLPerf LoadGen's
scenarios (``bench.serving``) in a process of its own (``bench.scheduling.serve_worker``), one
``serve`` cell per backend with LoadGen's logs in it."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.engines.backends import Backend
from bench.phase import Phase, register
from bench.plumbing import console, scratch
from bench.scheduling.cells import calibration_images, guarded
from bench.scheduling.context import ModelWork, PhaseContext
from bench.scheduling.fresh import handed_over
from bench.storage.keys import CellKey
from bench.storage.results import stored_summary_row


class ServePhase(Phase):
    name = "serve"
    title = "Deployment scenarios (MLPerf LoadGen)"
    about = "each prepared inference backend served to LoadGen's scenarios (--scenarios)"
    order = 50
    section = "deployment-scenarios"

    def enabled(self, cfg) -> bool:
        return super().enabled(cfg) and bool(cfg.serve.scenarios)

    def cells(self, cfg, model: str, trainers: set[str], reference: str) -> list[CellKey]:
        return [CellKey(model, b, "serve") for b in cfg.backends]

    def run(self, ctx: PhaseContext, work: ModelWork) -> None:
        serve_backends(ctx, work, [b for b in work.ready if work.todo(b, "serve")])


def serve_backends(ctx: PhaseContext, work: ModelWork, backends: list[Backend]) -> None:
    from bench.serving.loadgen import unavailable_reason

    reason, scenarios, model = unavailable_reason(), ", ".join(ctx.cfg.serve.scenarios), work.model
    with console.stage(f"serve {model} (MLPerf LoadGen: {scenarios})", len(backends), "backend") as st:
        for b in backends:
            if reason is not None:
                ctx.writer.write_status(model, b, "serve", "skipped", reason)
            else:
                guarded(ctx.writer, model, b, "serve", lambda b=b: serve_backend(ctx, model, b, work.weights[b.name],
                                                                                 work.prepared[b.name]))
            st.update(note=b.name)


def serve_backend(ctx: PhaseContext, model: str, b: Backend, weights, prepared) -> None:
    """One backend's scenarios, served in a process of their own (``bench.scheduling.serve_worker``)
    prepared from ``weights`` (``--call-limit-s 0``: here, by ``prepared``); where they end early,
    an error row with the tests done and every LoadGen log kept."""
    from bench.scheduling.serve_worker import ServeJob, ServingFailed, serve_here, serve_in_child
    from bench.serving.scenarios import ServePlan
    from models import get_spec

    cfg = ctx.cfg.serve
    test = ctx.splits(model, b.device)[1]
    plan = ServePlan(cfg.scenarios, cfg.scenario_seconds, cfg.latency_bound_ms or get_spec(model).latency_bound_ms,
                     cfg.max_batch, cfg.batch_timeout_us, cfg.server_steps, offline_batch=_fastest_batch(ctx, model, b))
    job = ServeJob(test.x, test.y, plan, cfg.call_limit_s)
    with scratch.temporary() as tmp:
        try:
            if cfg.call_limit_s > 0:  # in a process of its own, which prepares the backend again from its weights
                calibration = calibration_images(ctx.splits(model, "cpu")[0])
                tables = serve_in_child(job, handed_over(model, {b.name: weights}, ctx.cfg, calibration), Path(tmp))
            else:
                tables = serve_here(prepared, job, Path(tmp))
        except ServingFailed as e:
            print(f"warning: {model} {b.name} serve: error: {e}", file=sys.stderr)
            tables = {"summary": pd.DataFrame([{"status": "error", "reason": str(e)[:500]}]),
                      **({"scenarios": e.rows} if len(e.rows) else {})}
        logs = Path(tmp) / "loadgen"
        files = {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(logs.rglob("*")) if p.is_file()}
    ctx.writer.write(model, b, "serve", tables, files=files)


def _fastest_batch(ctx: PhaseContext, model: str, b: Backend) -> int:
    """The batch size of the backend's fastest inference cell (samples/s) in this run: the Offline
    SUT's batch; the largest planned batch when none ended ok."""
    best, batch = -1.0, max(ctx.cfg.infer.batch_sizes)
    for bs in ctx.cfg.infer.batch_sizes:
        speed = ctx.infer_speeds.get((model, b.name, bs))
        if speed is None:  # timed before a --resume: its cell says
            row = stored_summary_row(ctx.writer.run_dir, CellKey(model, b.name, "infer", bs))
            speed = float(row.get("samples_per_s", -1)) if row is not None and row.get("status") == "ok" else None
        if speed is not None and speed > best:
            best, batch = speed, bs
    return batch


SERVE = register(ServePhase())
