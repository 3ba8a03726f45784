"""The latency benchmark of one callable: the cold first call apart, explicit warm-up, then timed
repeats until a time budget. Every engine is reduced to a ``predict(batch)`` callable first
(``bench.engines``), so the timing code is the same for every row."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from bench.measure.figures import cell_speed
from bench.measure.rounds import Contender, measure_rounds
from bench.measure.stats import relative_gap, summarize

HOST_GAP_FLAG = 0.10  # event time vs host wall time disagreeing by more than this is flagged


def input_batch(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A batch of real test images; repeated when the batch is larger than the split."""
    reps = -(-batch_size // len(images))
    if reps > 1:
        images = images.repeat(reps, *[1] * (images.dim() - 1))
    return images[:batch_size].contiguous()


def call_figures(timings: pd.DataFrame, batch_size: int, clock_device: str) -> dict:
    """Statistics over every timed call of a cell (p50, p99, ...) and, on CUDA, how far the host's
    wall time and the device's event time disagree (``host_bound`` past HOST_GAP_FLAG)."""
    row = summarize(timings.seconds)
    if clock_device == "cuda":
        gap = relative_gap(float(timings.seconds.median()), float(timings.wall_seconds.median()))
        row.update(p50_wall_latency_ms=float(timings.wall_seconds.median()) * 1e3, event_wall_gap=gap,
                   host_bound=bool(gap > HOST_GAP_FLAG))
    return row


def benchmark_call(call: Callable[[], object], device: str, cfg, batch_size: int) -> dict:
    """Time ``call`` (one batch of ``batch_size``) alone on ``device``'s clock, in the same rounds an
    interleaved comparison uses (``bench.measure.rounds``, one contender); ``cfg`` is an
    InferConfig. The cold first call is apart; a call that raises is raised again."""
    c = Contender("call", call, device)
    measure_rounds([c], batch_size, cfg)
    if c.failure is not None:
        raise RuntimeError(f"{c.failure[0]}: {c.failure[1]}")
    timings = pd.DataFrame(c.rows)
    return {**call_figures(timings, batch_size, device), **cell_speed(timings, "infer"),
            "cold_first_call_ms": c.cold_first_call_ms, "warmup_calls": cfg.warmup_calls}
