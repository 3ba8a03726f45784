"""Cells: functions that take what they need and return their result tables (``bench.storage.results.SCHEMA``).
They never write; the runner hands their tables to the run's writer. Row headers (model, backend,
phase, status, ...) are the writer's; a cell returns its metrics only."""

from __future__ import annotations

import copy
import sys
import traceback
from collections.abc import Callable, Generator

import pandas as pd
import torch
from torch import nn

from bench import BenchError
from bench.config.build import InferConfig
from bench.data.mnist import Split
from bench.engines import BackendOptions, Prepared
from bench.engines.backends import Backend
from bench.engines.base import load_runtime
from bench.measure.accuracy import classification_tables, misclassified, parity
from bench.measure.cost import model_cost, training_utilization
from bench.measure.figures import cell_speed
from bench.measure.latency import call_figures
from bench.measure.memory import CellMemory
from bench.measure.rounds import Contender
from bench.plumbing import console
from bench.plumbing.signals import check as check_stop
from bench.storage.results import RunWriter
from bench.training.breakdown import step_breakdown
from bench.training.train import TrainJob, predict_logits, train_blocks

Tables = dict[str, pd.DataFrame]
CALIBRATION_IMAGES = 512  # engines that calibrate (static int8) see the first N training images, normalized


def calibration_images(train: Split) -> torch.Tensor:
    return train.x[:CALIBRATION_IMAGES].cpu()


def weights_bytes(model: nn.Module) -> int:
    """The bytes of a PyTorch model's parameters and buffers as they are held."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def prepare_measured(b: Backend, model: nn.Module, options: BackendOptions, train: Split,
                     sample: torch.Tensor) -> Prepared:
    """The engine's preparation (export, quantize, session, compile wrapper) and its first call on
    one image (where lazy work such as compiling happens), with what they cost in memory, added to
    the prepared model's facts: ``prepare_rss_growth_bytes`` (and ``prepare_cuda_growth_bytes``),
    and ``weights_bytes``: the ONNX file an ONNX Runtime engine runs, else the parameters' bytes."""
    own_weights = weights_bytes(model)
    load_runtime(b)
    with CellMemory(b.engine.memory_device(b)) as mem:
        prepared = b.engine.prepare(model, b, options, calibration_images(train))
        prepared.predict(prepared.to_input(sample[:1]))
    growth = {f"prepare_{k}": v for k, v in mem.values.items() if k in ("rss_growth_bytes", "cuda_growth_bytes")}
    prepared.facts.update(growth, weights_bytes=prepared.facts.get("onnx_bytes", own_weights))
    return prepared


def train_cell(job: TrainJob, settings: dict, test_images: torch.Tensor, recorder=None, progress: bool = False,
               interleaved: bool = False, breakdown: bool = False
               ) -> Generator[dict, None, tuple[Tables, nn.Module, Prepared | None]]:
    """Train and time one model on one backend, yielding after each timed block of steps (so
    backends can train in interleaved blocks); returns its tables, the trained model, and the
    engine's prepared model when parity needed one (None for the reference), for reuse.
    ``test_images``: the uint8 test images behind ``test`` (for the misclassified table);
    ``breakdown``: where a step's time goes (``time_breakdown``), its plain steps made among the
    timed blocks and its profiled steps after the training."""
    b, cfg, train, test = job.backend, job.cfg, job.train, job.test
    cost = model_cost(job.model)
    with CellMemory(b.device) as mem:
        result = yield from train_blocks(job, progress, recorder, breakdown=breakdown)
    memory = {**mem.values, "rss_scope": "interleaved"} if interleaved else mem.values
    speed = cell_speed(result.blocks, "train")
    row = {**settings, **cost, **result.summary, **memory, **speed,
           **training_utilization(cost["train_flops_per_sample"], speed.get("train_samples_per_s", float("nan")),
                                  b.device, b.precision),
           "epochs": cfg.epochs, "optimizer": cfg.optimizer, "schedule": cfg.schedule, "lr": cfg.lr,
           "seed": job.seed, "normalization": cfg.normalization, "interleaved": interleaved}
    found = None
    if breakdown and not result.diverged:  # after the last timed block, before anything is prepared
        found = _step_breakdown(result, job, speed.get("train_samples_per_s", float("nan")))
    prepared = None
    if result.diverged:
        row.update(status="diverged", reason=result.diverged)
    elif not b.is_reference:
        reference = predict_logits(result.model.eval(), test)
        prepared = prepare_measured(b, result.model, job.options, train, test.x)
        row.update(parity(reference, prepared.logits(test.x), test.y))
    row["weights_bytes"] = weights_bytes(result.model)
    tables = {
        "summary": pd.DataFrame([row]),
        "timings": result.blocks,
        "epochs": result.epochs,
        "curve": result.curve,
        **classification_tables(test.y, result.test_preds),
        "misclassified": misclassified(test_images, test.y, result.test_preds),
    }
    if recorder is not None:
        tables.update(recorder.tables())
    if found is not None:
        tables["time_breakdown"] = found
    return tables, result.model, prepared


def _step_breakdown(result, job: TrainJob, samples_per_s: float) -> pd.DataFrame | None:
    """The training step's time breakdown (its plain steps the shadow blocks made among the timed
    ones), or None with a warning: a profiler that fails costs the cell its breakdown, never its
    training."""
    timed_s = job.cfg.batch_size / samples_per_s if samples_per_s > 0 else float("nan")
    blocks = result.shadow.blocks if result.shadow is not None else None
    try:
        return step_breakdown(result.step, result.model, result.more_batches, job.backend.device, timed_s, blocks)
    except Exception as e:  # noqa: BLE001 - the profiler's failure is a note
        print(f"warning: {job.model} {job.backend.name} train: no time breakdown ({type(e).__name__}: "
              f"{str(e)[:200]})", file=sys.stderr)
        return None


def prepare_cell(b: Backend, reference: torch.nn.Module, options: BackendOptions, settings: dict, train: Split,
                 test: Split) -> tuple[Tables, Prepared]:
    """Prepare a model trained elsewhere for an engine that does not train (export, quantize, create
    a session); its facts and its parity against the fp32 reference on the same weights."""
    with CellMemory(b.engine.memory_device(b)) as mem:
        prepared = prepare_measured(b, copy.deepcopy(reference), options, train, test.x)
    ref_logits = predict_logits(copy.deepcopy(reference).to(test.x.device).eval(), test)
    row = {**settings, **prepared.facts, **mem.values, **parity(ref_logits, prepared.logits(test.x), test.y)}
    return {"summary": pd.DataFrame([row])}, prepared


def memory_pass(prepared: Prepared, x, device: str, calls: int = 2) -> dict:
    """Memory of a few untimed calls of ``prepared`` on one batch (before its timed rounds), and
    what its preparation cost (from its facts, so every inference cell of a backend carries it)."""
    prepared.release()
    with CellMemory(device) as mem:
        for _ in range(calls):
            prepared.predict(x)
    keep = ("prepare_rss_growth_bytes", "prepare_cuda_growth_bytes", "weights_bytes")
    return {**mem.values, **{k: v for k, v in prepared.facts.items() if k in keep}}


def infer_tables(model_name: str, contender: Contender, batch_size: int, cfg: InferConfig, settings: dict,
                 memory: dict) -> Tables:
    """An inference cell's tables from its timed calls: statistics over every call (p50, p99, ...),
    the round-level figures with their interval, and the raw ``timings``."""
    cost = model_cost(model_name)
    timings = pd.DataFrame(contender.rows)
    speed = cell_speed(timings, "infer")
    row = {**settings, "params": cost["params"], "infer_flops_per_sample": cost["infer_flops_per_sample"],
           **call_figures(timings, batch_size, contender.clock_device), **speed, **memory,
           "cold_first_call_ms": contender.cold_first_call_ms, "warmup_calls": cfg.warmup_calls,
           "achieved_flops_per_s": cost["infer_flops_per_sample"] * speed.get("samples_per_s", float("nan"))}
    return {"summary": pd.DataFrame([row]), "timings": timings}


def failure_of(e: BaseException) -> tuple[str, str]:
    """The status row words for a cell that raised: ("oom" | "error", one-line reason)."""
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return "oom", str(e).splitlines()[0]
    return "error", f"{type(e).__name__}: {e}".splitlines()[0][:500]


def guarded(writer: RunWriter, model: str, b: Backend, phase: str, body: Callable, batch_size: int | None = None):
    """Run one cell's ``body``; a failure becomes an error (or oom) row, the run goes on, and None
    is returned. Bad input (BenchError) and interrupts stop the run."""
    check_stop()
    try:
        return body()
    except (KeyboardInterrupt, BenchError):
        raise
    except Exception as e:  # the cell failed: recorded as an error (or oom) row, the run goes on
        status, reason = failure_of(e)
        if console.is_verbose():
            traceback.print_exc(file=sys.stderr)
    where = f"{model} {b.name} {phase}" + ("" if batch_size is None else f" bs={batch_size}")
    print(f"warning: {where}: {status}: {reason}", file=sys.stderr)
    writer.write_status(model, b, phase, status, reason, batch_size)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return None
