"""Registers the statistics check's backends on import (``cpu-fp32-twin``, ``cpu-fp32-slowed``) so
that fresh processes know them too: ``MNIST_BENCH_PLUGINS=benchmarks.stat_backends``. The slowed
backend's factor is ``$MNIST_BENCH_SLOWDOWN`` (default 1.10)."""

from bench.engines import ENGINES
from bench.engines.backends import BACKENDS, Backend
from bench.engines.control import SlowedEngine, TwinEngine

for _b in (Backend("cpu-fp32-twin", TwinEngine(), "cpu", "fp32"),
           Backend("cpu-fp32-slowed", SlowedEngine(), "cpu", "fp32")):
    ENGINES.setdefault(_b.engine.name, _b.engine)
    BACKENDS.setdefault(_b.name, _b)
