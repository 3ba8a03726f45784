"""The scheduler: decides which cells run in which order, and hands their tables to the writer.

config -> plan -> data -> phases -> result files. The plan (``bench.phase.plan``) is made from the
registered phases and stored with the run; per model, each registered phase (``bench.phase``: train,
dynamics, time to accuracy, infer, serve here, a plugin's after them) runs the plan's cells still
missing, so a fresh run and ``--resume`` take one path. Each cell is written as soon as it completes;
a backend that cannot run here becomes skipped rows with the reason; a cell that fails becomes an
error (or oom) row and the run goes on."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.config.build import RunConfig
from bench.data.mnist import resolve_mnist
from bench.engines.backends import REFERENCE, Backend, catalog, get_backend, probe, trainers
from bench.measure import process_state
from bench.measure.machine import warnings_for
from bench.phase import catalog as phase_catalog
from bench.phase import plan, registered
from bench.plumbing import scratch
from bench.plumbing.signals import StopRequested, graceful_stop
from bench.plumbing.stages import Stages, claim_start
from bench.scheduling import dynamics_phase, infer_phase, profile_phase, serve_phase, train_phase, tta_phase  # noqa: F401 - register
from bench.scheduling.context import MachineLog, ModelWork, PhaseContext, Splits
from bench.storage.plan import stored_plan
from bench.storage.results import check_writable
from bench.storage.run_folder import close_run, open_run


class Runner:
    def __init__(self, cfg: RunConfig, argv: list[str] | None = None, progress: bool = True,
                 resume: Path | None = None) -> None:
        """``resume``: a run folder whose missing cells this run completes (``cfg`` is its stored one)."""
        self.cfg, self.argv, self.progress, self.resume = cfg, argv, progress, resume
        self.ctx: PhaseContext | None = None  # made when the run folder opens
        self.started = claim_start()  # monotonic seconds: the command's start, or now

    def run(self) -> Path:
        """The whole matrix; returns the run folder. SIGINT and SIGTERM stop it between cells
        (StopRequested, with the run folder), its completed cells kept."""
        with graceful_stop():
            probed = self._start()
            return self._finish(lambda: [self._run_model(model, probed) for model in self.cfg.models])

    def _start(self) -> list[tuple[Backend, str | None]]:
        cfg, stages = self.cfg, Stages()
        stages.add("start-up", time.monotonic() - self.started)  # the interpreter, the imports, the configuration
        check_writable(cfg.out)
        process_state.apply(cfg.allocator)
        probed = probe(cfg.backends)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        with stages.timed("data"):
            self.mnist = resolve_mnist(cfg.data_dir)
        self.plan = plan(cfg, trainers(), REFERENCE)
        stored = {"catalog": {**catalog(), "phases": phase_catalog()}, "plan": [k.id for k in self.plan]}
        self.writer, self.meta = open_run(cfg, self.argv, self.mnist, self.resume, stored)
        self.plan = stored_plan(self.meta) or self.plan  # a resumed run works through the plan it stored
        scratch.use(self.writer.run_dir)  # its temporary files, and what a killed run left there gone
        self.ctx = PhaseContext(cfg, self.writer, self.mnist, Splits(cfg, self.mnist), MachineLog(self.writer),
                                self.progress, stages=stages)
        return probed

    def _finish(self, body) -> Path:
        status, extra = "interrupted", {}
        try:
            body()
            status = "complete"
        except StopRequested as stop:
            stop.run_dir, extra = self.writer.run_dir, {"stopped_by": stop.name}
            raise
        finally:
            stages = self.ctx.stages
            whole = time.monotonic() - self.started
            stages.add("other", max(0.0, whole - sum(r["seconds"] for r in stages.rows if r["part"] is None)))
            scratch.done()
            warnings = warnings_for(self.ctx.machine_log.frame(), threads=torch.get_num_threads())
            close_run(self.writer, self.meta, status, warnings, stages=self.ctx.stages.rows, **extra)
        return self.writer.run_dir

    def _run_model(self, model: str, probed) -> None:
        """The model's phases in their order, each taking its cells still missing from the plan; an
        unavailable backend's planned cells become skipped rows with the reason."""
        missing, unavailable = self._missing(), {b.name: reason for b, reason in probed if reason}
        for key in self.plan:
            reason = unavailable.get(key.backend)
            if key.model == model and reason and key.id in missing:
                self.writer.write_status(model, get_backend(key.backend), key.phase, "skipped", reason, key.batch_size)
        work = ModelWork(model, missing, [b for b, reason in probed if reason is None])
        for phase in registered():
            if phase.enabled(self.cfg):
                with self.ctx.stages.timed(phase.name, model):
                    phase.run(self.ctx, work)

    def _missing(self) -> set[str]:
        """The ids of the stored plan's cells that have no folder yet: the work left to do."""
        present = {p.name for p in (self.writer.run_dir / "cells").glob("*") if not p.name.startswith(".")}
        return {k.id for k in self.plan if k.id not in present}
