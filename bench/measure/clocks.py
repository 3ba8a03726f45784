"""The clocks. One clock per device, chosen once: ``perf_counter_ns`` on the CPU, CUDA events
plus a synchronize on CUDA (with the host wall clock alongside, to catch host-bound loops).

A mark is taken before and after a region; ``sync()`` must be called before reading any
CUDA mark, so timing never depends on some unrelated call happening to synchronize.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.plumbing.lazy import torch


class CpuClock:
    device = "cpu"

    def mark(self) -> int:
        return time.perf_counter_ns()

    def sync(self) -> None:
        pass

    def seconds(self, start: int, end: int) -> float:
        return (end - start) / 1e9

    def wall_seconds(self, start: int, end: int) -> float:
        return (end - start) / 1e9


class CudaClock:
    device = "cuda"

    def mark(self):
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event, time.perf_counter_ns()

    def sync(self) -> None:
        torch.cuda.synchronize()

    def seconds(self, start, end) -> float:
        return start[0].elapsed_time(end[0]) / 1e3

    def wall_seconds(self, start, end) -> float:
        return (end[1] - start[1]) / 1e9


def wall_time() -> float:
    """The host's wall clock in seconds, for figures that are wall time by definition (a training
    run's elapsed time including evaluation); device work is timed with ``clock_for`` instead."""
    return time.perf_counter()


def timestamp() -> float:
    """Seconds since the epoch: when a sample was taken (for drift across a run), never a duration."""
    return time.time()


def clock_for(device: str):
    return CudaClock() if device == "cuda" else CpuClock()


def time_calls(fn: Callable[[], object], clock, n: int) -> tuple[list[float], list[float]]:
    """Time ``n`` separate calls of ``fn``: per-call device seconds and host wall seconds.

    Each call is synchronized before its end is read, so a CUDA latency is the full latency.
    """
    device_s, wall_s = [], []
    for _ in range(n):
        a = clock.mark()
        fn()
        b = clock.mark()
        clock.sync()
        wall_end = time.perf_counter_ns()
        device_s.append(clock.seconds(a, b))
        wall_s.append((wall_end - (a if isinstance(a, int) else a[1])) / 1e9)
    return device_s, wall_s


class Stopwatch:
    """One region on a device's clock, synchronized at both ends::

        with Stopwatch(device) as sw:
            work()
        sw.seconds
    """

    def __init__(self, device: str = "cpu") -> None:
        self.clock = clock_for(device)
        self.seconds = float("nan")

    def __enter__(self) -> Stopwatch:
        self.clock.sync()
        self._start = self.clock.mark()
        return self

    def __exit__(self, *exc) -> None:
        end = self.clock.mark()
        self.clock.sync()
        self.seconds = self.clock.seconds(self._start, end)
