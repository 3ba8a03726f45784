"""The time-to-accuracy phase (``run --seeds N``, ``bench.training.tta``): every training backend
trained N times, seeds and backends interleaved by blocks of steps, each run stopped at the target
on the validation split; one ``tta`` cell per backend with its per-seed table."""

from __future__ import annotations

import sys
from dataclasses import replace

import pandas as pd

from bench.engines.backends import Backend
from bench.measure.rounds import interleave
from bench.phase import Phase, register
from bench.plumbing import console
from bench.scheduling.cells import failure_of
from bench.scheduling.context import ModelWork, PhaseContext
from bench.storage.keys import CellKey
from bench.training.train import TrainJob, train_blocks
from bench.training.tta import seed_row, tta_figures, validation_splits


class TtaPhase(Phase):
    name = "tta"
    title = "Time to accuracy"
    about = "time to the target accuracy over seeds, as MLPerf Training measures it (--seeds N)"
    order = 30
    section = "time-to-accuracy"

    def enabled(self, cfg) -> bool:
        return super().enabled(cfg) and cfg.seeds > 1

    def cells(self, cfg, model: str, trainers: set[str], reference: str) -> list[CellKey]:
        return [CellKey(model, b, "tta") for b in cfg.backends if b in trainers]

    def run(self, ctx: PhaseContext, work: ModelWork) -> None:
        tta_backends(ctx, work.model, [b for b in work.trainers() if work.todo(b, "tta")])


def tta_backends(ctx: PhaseContext, model: str, backends: list[Backend]) -> None:
    if not backends:
        return
    cfg = ctx.cfg
    t = replace(cfg.train_for(model), stop_at_target=True)
    splits: dict[str, tuple] = {}
    runs, runs_of = {}, {}
    for b in backends:
        if b.device not in splits:
            splits[b.device] = validation_splits(ctx.mnist, t.normalization, b.device, t.limit_train,
                                                 cfg.validation_images)
        train, val = splits[b.device]
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            runs[f"{b.name} seed {seed}"] = train_blocks(TrainJob(model, b, train, val, t, seed, cfg.backend_options))
            runs_of.setdefault(b.name, []).append((seed, f"{b.name} seed {seed}"))
    with console.stage(f"time to accuracy {model} ({len(backends)} backends x {cfg.seeds} seeds, interleaved)",
                       1, "phase") as st:
        results = interleave(runs)
        st.update()
    for b in backends:
        test = ctx.splits(model, b.device)[1]
        rows, failure = [], None
        for seed, name in runs_of[b.name]:
            result = results[name]
            if isinstance(result, Exception):
                failure = failure or failure_of(result)
                continue
            rows.append(seed_row(seed, result, test, b))
        if failure is not None:
            print(f"warning: {model} {b.name} tta: {failure[0]}: {failure[1]}", file=sys.stderr)
            ctx.writer.write_status(model, b, "tta", *failure)
            continue
        seeds = pd.DataFrame(rows)
        summary = {**tta_figures(seeds), "target_accuracy": t.target_accuracy, "validation_images":
                   cfg.validation_images, "batch_size_train": t.batch_size, "optimizer": t.optimizer,
                   "schedule": t.schedule, "lr": t.lr, "max_epochs": t.epochs, "dropout": t.dropout,
                   "label_smoothing": t.label_smoothing, "augment": t.augment, "normalization": t.normalization,
                   "evals_per_epoch": t.evals_per_epoch, "channels_last": cfg.backend_options.channels_last}
        ctx.writer.write(model, b, "tta", {"summary": pd.DataFrame([summary]), "seeds": seeds})


TTA = register(TtaPhase())
