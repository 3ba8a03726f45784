"""The latency benchmark of one callable: the cold first call apart, explicit warm-up, then timed
repeats until a time budget. Every engine is reduced to a ``predict(batch)`` callable first
(``bench.engines``), so the timing code is the same for every row."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from bench.measure.clocks import clock_for, time_calls
from bench.measure.stats import relative_gap, summarize

HOST_GAP_FLAG = 0.10  # event time vs host wall time disagreeing by more than this is flagged


def input_batch(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A batch of real test images; repeated when the batch is larger than the split."""
    reps = -(-batch_size // len(images))
    if reps > 1:
        images = images.repeat(reps, *[1] * (images.dim() - 1))
    return images[:batch_size].contiguous()


def benchmark_call(call: Callable[[], object], device: str, cfg, batch_size: int) -> dict:
    """Time ``call`` (one batch of ``batch_size``) on ``device``'s clock; ``cfg`` is an InferConfig
    (warmup_calls, min_repeats, max_repeats, budget_s)."""
    clock = clock_for(device)
    cold_dev, _ = time_calls(call, clock, 1)
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
