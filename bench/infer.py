"""The inference benchmark: the cold first call apart, explicit warm-up, then timed repeats
until a time budget. Every engine is reduced to a ``predict(batch)`` callable first, so the
timing code is the same for eager, compiled and ONNX Runtime rows."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from bench.backends import Backend
from bench.config import InferConfig
from bench.stats import relative_gap, summarize
from bench.timing import CpuClock, clock_for, time_calls

HOST_GAP_FLAG = 0.10  # event time vs host wall time disagreeing by more than this is flagged


def torch_predictor(model: torch.nn.Module, backend: Backend) -> Callable[[torch.Tensor], torch.Tensor]:
    model.eval()
    forward = torch.compile(model) if backend.engine == "compile" else model

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), backend.autocast():
            return forward(x)

    return predict


def input_batch(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A batch of real test images; repeated when the batch is larger than the split."""
    reps = -(-batch_size // len(images))
    return images.repeat(reps, 1, 1, 1)[:batch_size].contiguous() if reps > 1 else images[:batch_size].contiguous()


def benchmark_call(call: Callable[[], object], device: str, cfg: InferConfig, batch_size: int,
                   clock=None) -> dict:
    """Time ``call`` (one batch of ``batch_size``) the same way for every engine."""
    clock = clock or clock_for(device)
    cold_dev, cold_wall = time_calls(call, clock, 1)
    for _ in range(cfg.warmup_calls):
        call()
    clock.sync()
    device_s: list[float] = []
    wall_s: list[float] = []
    start = time.perf_counter()
    while len(device_s) < cfg.max_repeats and (
        len(device_s) < cfg.min_repeats or time.perf_counter() - start < cfg.budget_s
    ):
        d, w = time_calls(call, clock, 1)
        device_s += d
        wall_s += w
    row = summarize(device_s, batch_size)
    row["cold_first_call_ms"] = cold_dev[0] * 1e3
    row["warmup_calls"] = cfg.warmup_calls
    if clock.device == "cuda":
        gap = relative_gap(float(np.median(device_s)), float(np.median(wall_s)))
        row.update(p50_wall_latency_ms=float(np.median(wall_s)) * 1e3, event_wall_gap=gap,
                   host_bound=bool(gap > HOST_GAP_FLAG))
    return row


def benchmark_torch(model, backend: Backend, images: torch.Tensor, batch_size: int, cfg: InferConfig) -> dict:
    predict = torch_predictor(model, backend)
    x = input_batch(images, batch_size)
    return benchmark_call(lambda: predict(x), backend.device, cfg, batch_size)


def benchmark_ort(session_call: Callable[[np.ndarray], object], images: torch.Tensor, batch_size: int,
                  cfg: InferConfig) -> dict:
    x = input_batch(images.cpu(), batch_size).numpy()
    # ORT's run() returns only when its outputs are ready, so the host clock is the right one.
    return benchmark_call(lambda: session_call(x), "cpu", cfg, batch_size, clock=CpuClock())
