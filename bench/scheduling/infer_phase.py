"""The inference phase: every available backend prepared from its trained weights (export, compile,
quantize: an ``export`` cell for a backend that does not train), then, batch size by batch size, all
of them timed in interleaved rounds (``bench.measure.rounds``), in this process or spread over
worker processes (``--processes``); one ``infer`` cell per backend and batch size, with its time
breakdown where ``--breakdown`` asks for one. It hands the serving phase the prepared models."""

from __future__ import annotations

import time

from bench.phase import Phase, register
from bench.plumbing import console
from bench.scheduling.cells import calibration_images
from bench.scheduling.context import ModelWork, PhaseContext
from bench.scheduling.phases import BREAKDOWN, RUNNING_HERE, prepare_backend, rounds_here, time_batch_size
from bench.scheduling.timing_workers import WorkerJob, rounds_in_workers
from bench.storage.keys import CellKey


class InferPhase(Phase):
    name = "infer"
    title = "Inference"
    about = "inference at each batch size, timed in interleaved rounds, with its time breakdown"
    order = 40
    section = "inference"

    def cells(self, cfg, model: str, trainers: set[str], reference: str) -> list[CellKey]:
        out = []
        for b in cfg.backends:
            out += [] if b in trainers else [CellKey(model, b, "export")]
            out += [CellKey(model, b, "infer", bs) for bs in cfg.infer.batch_sizes]
        return out

    def run(self, ctx: PhaseContext, work: ModelWork) -> None:
        # a batch size with any cell missing is measured again whole, so its backends stay paired by round
        redo = [bs for bs in ctx.cfg.infer.batch_sizes if any(work.todo(b, "infer", bs) for b in work.available)]
        work.weights = self._prepare(ctx, work, redo)
        if work.ready and redo:
            self._time(ctx, work, redo, work.weights)

    @staticmethod
    def _prepare(ctx: PhaseContext, work: ModelWork, redo: list[int]) -> dict:
        """Each backend prepared (``work.prepared``, ``work.ready``); returns the weights each was prepared from."""
        weights = {}
        title = f"prepare {work.model} (export, compile, quantize)"
        with ctx.stages.timed("infer", work.model, "prepare"), console.stage(title, len(work.available),
                                                                              "backend") as st:
            for b in work.available:
                work.prepared[b.name], weights[b.name] = prepare_backend(ctx, work.model, b, redo, work.todo,
                                                                         work.trained, work.source)
                st.update(note=b.name)
        work.ready = [b for b in work.available if work.prepared.get(b.name) is not None]
        return weights

    @staticmethod
    def _time(ctx: PhaseContext, work: ModelWork, redo: list[int], weights: dict) -> None:
        """The batch sizes ``redo`` timed: rounds in worker processes first (``--processes`` > 1), then
        this process's rounds (or, after workers, its memory pass), one batch size at a time."""
        model, ready, processes = work.model, work.ready, ctx.cfg.processes
        plural = "" if len(ready) == 1 else "s"
        measured = {}
        if processes > 1:
            train, test = ctx.splits(model, "cpu")
            here = [RUNNING_HERE, BREAKDOWN]
            start, before = time.perf_counter(), sum(ctx.stages.seconds("infer", model, p) for p in here)
            with console.stage(f"time {model} ({len(ready)} backend{plural}, interleaved rounds in {processes} "
                               "processes)", processes, "process") as st:
                job = WorkerJob(model, {b.name: weights[b.name] for b in ready}, redo, test.x,
                                calibration_images(train), ctx.cfg)
                measured = rounds_in_workers(
                    job, lambda bs, part: rounds_here(ctx, model, bs, ready, work.prepared, part),
                    on_process=lambda p: st.update(note=f"process {p}"))
            this_process = sum(ctx.stages.seconds("infer", model, p) for p in here) - before
            ctx.stages.add("infer", time.perf_counter() - start - this_process, model,
                           f"{processes - 1} worker process{'es' if processes > 2 else ''} (start, prepare, rounds)")
        what = "memory" if measured else "interleaved rounds"
        with console.stage(f"infer {model} ({len(ready)} backend{plural}, {what})", len(redo), "batch size") as st:
            for bs in redo:
                time_batch_size(ctx, model, bs, ready, work.prepared, measured.get(bs))
                st.update(note=f"bs={bs}")


INFER = register(InferPhase())
