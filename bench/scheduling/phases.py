"""The work the phase modules (``*_phase.py``, registered in ``bench.phase``) share, each a function
of the phase context (its configuration, writer, splits and machine: ``bench.scheduling.context``),
never of the scheduler itself: training in interleaved blocks (the train phase; the reference's
training for the backends that do not train), preparing each backend for inference, timing one
batch size in interleaved rounds (the infer phase, here and in its worker processes), and
profiling (the profile command)."""

from __future__ import annotations

import copy
import io
import sys

import pandas as pd
import torch

from bench.dynamics.recording import DynamicsRecorder
from bench.engines.backends import REFERENCE, Backend, get_backend
from bench.measure.breakdown import Look, profiled_round
from bench.measure.latency import input_batch
from bench.measure.rounds import Contender, balanced_orders, interleave, measure_rounds
from bench.scheduling.cells import (
    failure_of,
    guarded,
    infer_tables,
    memory_pass,
    prepare_cell,
    prepare_measured,
    train_cell,
)
from bench.scheduling.context import PhaseContext
from bench.storage.keys import MachineGroup
from bench.training.train import TrainJob

REDUCED_FORMATS = {"bf16": torch.bfloat16, "fp16": torch.float16}  # autocast's weight formats in the forward
# the parts of the infer stage measured in the rounds' process (``bench.plumbing.stages``)
RUNNING_HERE, BREAKDOWN = "rounds in this process", "profiled rounds (breakdown)"


def train_backends(ctx: PhaseContext, model: str, trainers: list[Backend], reason: str = ""
                   ) -> dict[str, torch.nn.Module]:
    """Train ``trainers`` in interleaved blocks of steps; writes their cells, returns the trained models."""
    cfg, runs, recorders = ctx.cfg.train_for(model), {}, {}
    for b in trainers:
        train, test = ctx.splits(model, b.device)
        if ctx.cfg.dynamics:  # every backend that trains, from the same initial weights and data order
            recorders[b.name] = DynamicsRecorder(cfg.epochs * train.train_steps(cfg.batch_size),
                                                 ctx.cfg.dynamics_every, REDUCED_FORMATS.get(b.precision))
        job = TrainJob(model, b, train, test, cfg, ctx.cfg.seed, ctx.cfg.backend_options)
        runs[b.name] = train_cell(job, b.configure(ctx.cfg.backend_options), ctx.mnist.test_images[: len(test)],
                                  recorders.get(b.name), ctx.progress, interleaved=len(trainers) > 1,
                                  breakdown=ctx.cfg.infer.breakdown != "off")
    states: list[dict] = []
    group = MachineGroup(model, "train")
    results = interleave(runs, on_round=lambda i: states.append(ctx.machine.round(group.name, i)))
    ctx.machine.close()
    ctx.record_machine(group, states)
    trained = {}
    for b in trainers:
        result = results[b.name]
        if isinstance(result, Exception):
            status, why = failure_of(result)
            print(f"warning: {model} {b.name} train: {status}: {why}", file=sys.stderr)
            ctx.writer.write_status(model, b, "train", status, why)
            continue
        tables, model_obj, prepared = result
        row = tables["summary"].iloc[0]
        ctx.stages.add("train", float(row.get("warmup_s", 0.0) or 0.0), model, "warm-up steps")
        ctx.stages.add("train", float(row.get("eval_s", 0.0) or 0.0), model, "evaluation")
        if tables["summary"].iloc[0].get("status") != "diverged":
            trained[b.name] = model_obj
            if prepared is not None:
                ctx.prepared_in_training[model, b.name] = prepared
        recorder = recorders.get(b.name)
        weights = io.BytesIO()
        torch.save({k: v.cpu() for k, v in model_obj.state_dict().items()}, weights)
        files = {"model.pt": weights.getvalue(), **(recorder.checkpoint_files() if recorder else {})}
        if reason and not (isinstance(tables["summary"].iloc[0].get("reason"), str)
                           and tables["summary"].iloc[0].get("reason")):
            tables = {**tables, "summary": tables["summary"].assign(reason=reason)}  # why it trained
        ctx.writer.write(model, b, "train", tables, files=files)
    return trained


def prepare_backend(ctx: PhaseContext, model: str, b: Backend, redo: list[int], todo, trained: dict, source
                    ) -> tuple[object | None, torch.nn.Module | None]:
    """Prepare one backend's trained model for inference (export, compile, quantize), or write why
    not. Returns the prepared model (None when there is none) and the weights it was prepared from."""
    export = not b.trains and todo(b, "export")
    serving = bool(ctx.cfg.serve.scenarios) and todo(b, "serve")  # a missing serve cell needs the prepared model
    if not redo and not export and not serving:
        return None, None
    if b.trains and b.name not in trained:
        for bs in redo:  # its training failed or diverged: its row says which
            ctx.writer.write_status(model, b, "infer", "skipped", "no trained model (training did not end ok)", bs)
        return None, None
    train, test = ctx.splits(model, b.device)
    settings = b.configure(ctx.cfg.backend_options)
    weights, prepared = trained.get(b.name, source), None
    if b.trains and (model, b.name) in ctx.prepared_in_training:
        prepared = ctx.prepared_in_training.pop((model, b.name))
    elif b.trains or (source is not None and not export):
        prepared = guarded(ctx.writer, model, b, "export", lambda: prepare_measured(
            b, weights, ctx.cfg.backend_options, train, test.x))
    elif source is not None:
        prepared = guarded(ctx.writer, model, b, "export", lambda: _written(ctx, model, b, "export", *prepare_cell(
            b, copy.deepcopy(source).cpu(), ctx.cfg.backend_options, settings, train, test)))
    if prepared is None:
        why = "preparing the model failed" if source is not None or b.trains else "no trained model to prepare"
        if export and source is None:
            ctx.writer.write_status(model, b, "export", "skipped", why)
        for bs in redo:
            ctx.writer.write_status(model, b, "infer", "skipped", why, bs)
    return prepared, weights


def time_batch_size(ctx: PhaseContext, model: str, bs: int, backends: list[Backend], prepared: dict,
                 measured: tuple | None = None) -> None:
    """Time every prepared backend at one batch size in interleaved rounds (in this process, or
    ``measured`` already by worker processes); one cell each. Memory is measured after the rounds:
    its heap trim would otherwise reset the allocator's history the rounds then run in."""
    cfg = ctx.cfg
    if measured is None:
        contenders, states = rounds_here(ctx, model, bs, backends, prepared, cfg.infer)
    else:
        contenders, states = measured
    inputs = _batch_inputs(ctx, model, bs, backends, prepared)
    broken_down = ctx.breakdowns.pop((model, bs), {})  # measured right after this process's rounds
    ctx.record_machine(MachineGroup(model, "infer", bs), states)
    memory = {}
    for c in contenders:
        b = get_backend(c.name)
        if c.failure is None:
            with ctx.stages.timed("infer", model, "memory"):
                memory[b.name] = guarded(ctx.writer, model, b, "infer", lambda: memory_pass(
                    prepared[b.name], inputs[b.name], b.engine.memory_device(b)), bs)
            if memory[b.name] is None:
                continue
        if c.failure is not None:
            print(f"warning: {model} {b.name} infer bs={bs}: {c.failure[0]}: {c.failure[1]}", file=sys.stderr)
            ctx.writer.write_status(model, b, "infer", *c.failure, batch_size=bs)
        else:
            tables = infer_tables(model, c, bs, cfg.infer, b.configure(cfg.backend_options), memory[b.name])
            if b.name in broken_down:
                tables["time_breakdown"] = broken_down[b.name]
            ctx.writer.write(model, b, "infer", tables, bs)
            ctx.infer_speeds[model, b.name, bs] = float(tables["summary"].iloc[0].get("samples_per_s", float("nan")))


def rounds_here(ctx: PhaseContext, model: str, bs: int, backends: list[Backend], prepared: dict, infer_cfg
                ) -> tuple[list[Contender], list[dict]]:
    """Interleaved rounds of every prepared backend at one batch size, in this process (all of a
    cell's rounds, or the first share of them under ``--processes``)."""
    inputs = _batch_inputs(ctx, model, bs, backends, prepared)
    broken_down = _broken_down(ctx.cfg.infer, bs)  # its calls' shadow blocks: the breakdown's plain calls
    contenders = [Contender(b.name, lambda p=prepared[b.name], x=inputs[b.name]: p.predict(x),
                            prepared[b.name].clock_device, shadow=[] if broken_down else None) for b in backends]
    with ctx.stages.timed("infer", model, RUNNING_HERE):
        states = measure_rounds(contenders, bs, infer_cfg, ctx.machine, group=MachineGroup(model, "infer", bs).name,
                                reference=REFERENCE)
    if broken_down:  # in the rounds' process and state, before the memory pass
        with ctx.stages.timed("infer", model, BREAKDOWN):
            ctx.breakdowns[model, bs] = _breakdowns(ctx, model, bs, contenders, prepared, inputs)
    return contenders, states


def _batch_inputs(ctx: PhaseContext, model: str, bs: int, backends: list[Backend], prepared: dict) -> dict:
    """Each backend's input for one batch size: the first ``bs`` test images in its own form."""
    return {b.name: prepared[b.name].to_input(input_batch(ctx.splits(model, b.device)[1].x, bs)) for b in backends}


def _written(ctx: PhaseContext, model: str, b: Backend, phase: str, tables: dict, value=None):
    ctx.writer.write(model, b, phase, tables)
    return value


def _broken_down(infer, bs: int) -> bool:
    """Whether ``--breakdown`` asks for this batch size's breakdown."""
    return infer.breakdown == "all" or (infer.breakdown == "ends" and bs in (min(infer.batch_sizes),
                                                                            max(infer.batch_sizes)))


def _breakdowns(ctx: PhaseContext, model: str, bs: int, contenders: list[Contender], prepared: dict, inputs: dict
                ) -> dict[str, pd.DataFrame]:
    """Each timed call's breakdown, explaining this process's rounds that its plain calls ran in: its plain
    calls are the contender's shadow blocks (made as its timed blocks, among them), then a round of
    profiled blocks (``profiled_round``); a profiler that fails costs its cell the breakdown, with
    a warning, never its timing."""
    looks = {c.name: Look.of_rounds(prepared[c.name], inputs[c.name], c.rows, c.shadow)
             for c in contenders if c.failure is None and c.rows and c.shadow}

    def warn(name: str, e: Exception) -> None:
        print(f"warning: {model} {name} infer bs={bs}: no time breakdown ({type(e).__name__}: {str(e)[:200]})",
              file=sys.stderr)

    return profiled_round(looks, balanced_orders(len(looks))[0], warn) if looks else {}
