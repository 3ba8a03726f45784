"""The profile phase: training steps of each training backend recorded with torch.profiler
(``bench.training.profiling``), never timed: a trace per backend in the run folder's ``profile/``
(Perfetto, TensorBoard) and one ``profile`` cell with its top operators and the step's phases.
Part of a run with ``--profile-steps N``; alone with ``mnist-bench profile``, whose run has this
phase only (``RunConfig.only``). A backend that does not train is a skipped row with the reason."""

from __future__ import annotations

import sys

from bench.config.types import ProfileOptions
from bench.engines.backends import Backend
from bench.phase import Phase, register
from bench.plumbing import console
from bench.scheduling.cells import guarded
from bench.scheduling.context import ModelWork, PhaseContext
from bench.storage.keys import CellKey
from bench.training.profiling import profile_cell
from bench.training.train import TrainJob

TRACES = "profile"  # the run folder's traces


class ProfilePhase(Phase):
    name = "profile"
    title = "Profile"
    about = "training steps of each training backend recorded with torch.profiler (--profile-steps), never timed"
    order = 60
    options = ProfileOptions
    section = "profile"

    def enabled(self, cfg) -> bool:
        return super().enabled(cfg) and cfg.options_of(ProfileOptions).profile_steps > 0

    def cells(self, cfg, model: str, trainers: set[str], reference: str) -> list[CellKey]:
        return [CellKey(model, b, self.name, cfg.train_for(model).batch_size) for b in cfg.backends]

    def run(self, ctx: PhaseContext, work: ModelWork) -> None:
        todo = [b for b in work.available if work.todo(b, self.name, ctx.cfg.train_for(work.model).batch_size)]
        with console.stage(f"profile {work.model}", len(todo), "backend") as st:
            for b in todo:
                profile_backend(ctx, work.model, b, ctx.cfg.options_of(ProfileOptions))
                st.update(note=b.name)


def profile_backend(ctx: PhaseContext, model: str, b: Backend, options: ProfileOptions) -> None:
    """One backend's training steps profiled at the model's training batch size (its cell's)."""
    tcfg = ctx.cfg.train_for(model)
    if not b.trains:
        why = f"{b.engine.name} does not train, and profile covers training steps"
        print(f"warning: {model} {b.name} profile: skipped: {why}", file=sys.stderr)
        ctx.writer.write_status(model, b, "profile", "skipped", why, tcfg.batch_size)
        return
    settings = b.configure(ctx.cfg.backend_options)
    job = TrainJob(model, b, *ctx.splits(model, b.device), tcfg, ctx.cfg.seed, ctx.cfg.backend_options)
    guarded(ctx.writer, model, b, "profile", lambda: ctx.writer.write(model, b, "profile", profile_cell(
        job, settings, options, ctx.writer.run_dir / TRACES), tcfg.batch_size), tcfg.batch_size)


PROFILE = register(ProfilePhase())
