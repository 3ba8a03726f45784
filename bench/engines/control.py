"""Control engines, for checking a comparison or a CI gate against a known truth: an A/A twin of
eager PyTorch, and eager PyTorch made a known factor slower. Registered nowhere by default:
``registered()`` adds them for a block of code in this process, and
``MNIST_BENCH_PLUGINS=benchmarks.stat_backends`` in fresh processes. They live in the package, not
in ``benchmarks/``, because the test suite and the statistics check both use them."""

from __future__ import annotations

import contextlib
import os
import statistics
import time

from bench.engines.base import Prepared
from bench.engines.eager import EagerEngine
from bench.measure.clocks import clock_for, time_calls

SLOWDOWN = 1.10


class TwinEngine(EagerEngine):
    """Eager PyTorch under another name: an A/A twin of ``cpu-fp32``."""

    name = "eager-twin"
    reference = False


class SlowedEngine(EagerEngine):
    """Eager PyTorch inference made ``slowdown`` times slower, as the harness times it: each call is
    the real call plus a busy-wait of (slowdown - 1) x (that call's own duration + the harness's
    per-call overhead), less this wrapper's own cost. The overhead is calibrated per input shape
    (21 calls timed inside and as the harness times them); the wrapper's cost once, on a call that
    does nothing (2,001 calls each way). So the slowdown tracks the machine's drift call by call."""

    name = "eager-slowed"
    trains = False
    reference = False

    def __init__(self, slowdown: float | None = None) -> None:
        self.slowdown = slowdown  # None: $MNIST_BENCH_SLOWDOWN when the model is prepared, else SLOWDOWN


    def prepare(self, model, backend, options, calibration) -> Prepared:
        real = super().prepare(model, backend, options, calibration)
        slowdown = self.slowdown or float(os.environ.get("MNIST_BENCH_SLOWDOWN", SLOWDOWN))
        clock = clock_for(real.clock_device)
        overhead_s: dict[tuple, float] = {}

        def slowed(call, key, extra: float):
            start = time.perf_counter()
            out = call()
            inner = time.perf_counter() - start
            end = time.perf_counter() + (slowdown - 1) * (inner + overhead_s.get(key, 0.0)) - extra
            while time.perf_counter() < end:
                pass
            return out, inner

        def noop():
            return None

        plain, _ = time_calls(lambda: slowed(noop, None, float("inf")), clock, 2001)
        bare, _ = time_calls(noop, clock, 2001)
        wrapper_cost = max(0.0, statistics.median(plain) - statistics.median(bare))

        def predict(x):
            if x.shape not in overhead_s:
                inner = []
                outer, _ = time_calls(lambda: inner.append(slowed(lambda: real.predict(x), None,
                                                                  float("inf"))[1]), clock, 21)
                overhead_s[x.shape] = max(0.0, statistics.median(outer) - statistics.median(inner))
            return slowed(lambda: real.predict(x), x.shape, wrapper_cost)[0]

        return Prepared(predict, real.clock_device, real.to_input, real.to_logits, real.facts)


@contextlib.contextmanager
def registered(slowdown: float | None = None):
    """Register ``cpu-fp32-twin`` and ``cpu-fp32-slowed`` (``slowdown`` times slower; None: as
    ``SlowedEngine`` reads it) for the duration of a block, in this process only."""
    from bench.engines import ENGINES
    from bench.engines.backends import BACKENDS, Backend

    added = {"cpu-fp32-twin": Backend("cpu-fp32-twin", TwinEngine(), "cpu", "fp32"),
             "cpu-fp32-slowed": Backend("cpu-fp32-slowed", SlowedEngine(slowdown), "cpu", "fp32")}
    engines = {b.engine.name: b.engine for b in added.values()}
    ENGINES.update(engines)
    BACKENDS.update(added)
    try:
        yield added
    finally:
        for name in added:
            BACKENDS.pop(name)
        for name in engines:
            ENGINES.pop(name)
