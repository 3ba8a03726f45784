"""The scheduler: decides which cells run in which order, and hands their tables to the writer.

config -> data -> cells -> result files. Per model: the backends that train do so in interleaved
blocks of steps; every backend is prepared; then per batch size all backends are timed in
interleaved rounds (``bench.measure.rounds``). Each cell is written as soon as it completes; a
backend that cannot run here becomes skipped rows with the reason; a cell that fails becomes an
error (or oom) row and the run goes on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from bench.config.build import RunConfig
from bench.config.types import DynamicsConfig, ProfileConfig
from bench.data.mnist import resolve_mnist
from bench.dynamics.cell import dynamics_cell
from bench.engines.backends import REFERENCE, Backend, catalog, get_backend, probe, trainers
from bench.measure import process_state
from bench.measure.machine import warnings_for
from bench.plumbing import console
from bench.plumbing.signals import StopRequested, graceful_stop
from bench.scheduling.cells import (
    calibration_images,
    guarded,
)
from bench.scheduling.context import MachineLog, PhaseContext, Splits
from bench.scheduling.phases import prepare_backend, profile_backend, rounds_here, time_batch_size, train_backends
from bench.scheduling.serve_phase import serve_backends
from bench.scheduling.timing_workers import WorkerJob, rounds_in_workers
from bench.scheduling.tta_phase import tta_backends
from bench.storage.plan import plan, stored_plan
from bench.storage.results import cell_id, check_writable
from bench.storage.run_folder import close_run, open_run
from bench.training.train import build_trainable


class Runner:
    def __init__(self, cfg: RunConfig, argv: list[str] | None = None, progress: bool = True,
                 resume: Path | None = None) -> None:
        """``resume``: a run folder whose missing cells this run completes (``cfg`` is its stored one)."""
        self.cfg, self.argv, self.progress, self.resume = cfg, argv, progress, resume
        self.ctx: PhaseContext | None = None  # made when the run folder opens

    def run(self) -> Path:
        """The whole matrix; returns the run folder. SIGINT and SIGTERM stop it between cells
        (StopRequested, with the run folder), its completed cells kept."""
        with graceful_stop():
            probed = self._start()
            return self._finish(lambda: [self._run_model(model, probed) for model in self.cfg.models])

    def profile(self, model: str, pcfg: ProfileConfig) -> Path:
        """Profile training steps of ``model`` on each available backend (never timed)."""
        with graceful_stop():
            return self._profile(model, pcfg)

    def _profile(self, model: str, pcfg: ProfileConfig) -> Path:
        probed = self._start()

        def body() -> None:
            with console.stage(f"profile {model}", len(probed), "backend") as st:
                for b, reason in probed:
                    profile_backend(self.ctx, model, b, reason, pcfg)
                    st.update(note=b.name)

        return self._finish(body)

    def _start(self) -> list[tuple[Backend, str | None]]:
        cfg = self.cfg
        check_writable(cfg.out)
        process_state.apply(cfg.allocator)
        probed = probe(cfg.backends)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.mnist = resolve_mnist(cfg.data_dir)
        self.plan = plan(cfg, trainers(), REFERENCE)
        stored = {"catalog": catalog(), "plan": [k.id for k in self.plan]}
        self.writer, self.meta = open_run(cfg, self.argv, self.mnist, self.resume, stored)
        self.plan = stored_plan(self.meta) or self.plan  # a resumed run works through the plan it stored
        self.ctx = PhaseContext(cfg, self.writer, self.mnist, Splits(cfg, self.mnist), MachineLog(self.writer),
                                self.progress)
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
            close_run(self.writer, self.meta, status, warnings_for(self.ctx.machine_log.frame()), **extra)
        return self.writer.run_dir

    def _run_model(self, model: str, probed) -> None:
        cfg, sizes = self.cfg, self.cfg.infer.batch_sizes
        missing = self._missing()
        todo = lambda b, phase, bs=None: cell_id(model, b.name, phase, bs) in missing  # noqa: E731
        available = [b for b, reason in probed if reason is None]
        unavailable = {b.name: (b, reason) for b, reason in probed if reason}
        for key in (k for k in self.plan if k.model == model and k.backend in unavailable):
            b, reason = unavailable[key.backend]
            if todo(b, key.phase, key.batch_size):
                self.writer.write_status(model, b, key.phase, "skipped", reason, key.batch_size)
        trainers = [b for b in available if b.trains]
        trained = {b.name: m for b in trainers if not todo(b, "train") and (m := self._load_trained(model, b))}
        trained.update(train_backends(self.ctx, model, [b for b in trainers if todo(b, "train")]))
        self._dynamics(model, [b for b in trainers if b.name in trained])
        if cfg.seeds > 1:
            tta_backends(self.ctx, model, [b for b in trainers if todo(b, "tta")])
        # the non-training backends run the fp32 reference's weights when it trained, else the first trained
        source = next((trained[b.name] for b in available if b.name in trained and b.is_reference),
                      next(iter(trained.values()), None))
        if source is None and any(not b.trains for b in available):
            ref = get_backend(REFERENCE)
            source = self._load_trained(model, ref) if not todo(ref, "train") else train_backends(self.ctx,
                model, [ref], "reference for the non-training backends").get(REFERENCE)
        # a batch size with any cell missing is measured again whole, so its backends stay paired by round
        redo = [bs for bs in sizes if any(todo(b, "infer", bs) for b in available)]
        prepared, weights = {}, {}  # weights: the trained model each backend was prepared from
        with console.stage(f"prepare {model} (export, compile, quantize)", len(available), "backend") as st:
            for b in available:
                prepared[b.name], weights[b.name] = prepare_backend(self.ctx, model, b, redo, todo, trained, source)
                st.update(note=b.name)
        ready = [b for b in available if prepared.get(b.name) is not None]
        measured = {}
        plural = "" if len(ready) == 1 else "s"
        if cfg.processes > 1 and ready and redo:
            train, test = self.ctx.splits(model, "cpu")
            with console.stage(f"time {model} ({len(ready)} backend{plural}, interleaved rounds in {cfg.processes} "
                               "processes)", cfg.processes, "process") as st:
                job = WorkerJob(model, {b.name: weights[b.name] for b in ready}, redo, test.x,
                                calibration_images(train), cfg)
                measured = rounds_in_workers(job, lambda bs, part: rounds_here(self.ctx, model, bs, ready, prepared,
                                                                               part),
                                             on_process=lambda p: st.update(note=f"process {p}"))
        if ready and redo:
            what = "memory" if measured else "interleaved rounds"
            with console.stage(f"infer {model} ({len(ready)} backend{plural}, {what})", len(redo),
                               "batch size") as st:
                for bs in redo:
                    time_batch_size(self.ctx, model, bs, ready, prepared, measured.get(bs))
                    st.update(note=f"bs={bs}")
        if cfg.serve.scenarios:
            serve_backends(self.ctx, model, [b for b in ready if todo(b, "serve")], prepared)

    def _missing(self) -> set[str]:
        """The ids of the stored plan's cells that have no folder yet: the work left to do."""
        present = {p.name for p in (self.writer.run_dir / "cells").glob("*") if not p.name.startswith(".")}
        return {k.id for k in self.plan if k.id not in present}

    def _dynamics(self, model: str, trainers: list[Backend]) -> None:
        """Landscape analyses of each training cell that recorded dynamics and has none yet (also on resume)."""
        cells = self.writer.run_dir / "cells"
        for b in trainers:
            train_dir = cells / cell_id(model, b.name, "train")
            if (train_dir / "checkpoints.pt").is_file() and not (cells / cell_id(model, b.name, "dynamics")).is_dir():
                dcfg = DynamicsConfig(grid=self.cfg.grid, subset=self.cfg.subset)
                guarded(self.writer, model, b, "dynamics", lambda: self.writer.write(
                    model, b, "dynamics", dynamics_cell(train_dir, self.mnist, dcfg, self.progress)))

    def _load_trained(self, model: str, b: Backend) -> torch.nn.Module | None:
        """The weights a completed training cell kept (``model.pt``), or None when it did not end ok."""
        cell = self.writer.run_dir / "cells" / cell_id(model, b.name, "train")
        try:
            if pd.read_parquet(cell / "summary.parquet").status.iloc[0] != "ok":
                return None
            net = build_trainable(model, b, self.cfg.backend_options, self.cfg.seed)
            net.load_state_dict(torch.load(cell / "model.pt", map_location=b.device, weights_only=True))
            return net
        except (OSError, RuntimeError, KeyError, IndexError, ValueError):
            return None

