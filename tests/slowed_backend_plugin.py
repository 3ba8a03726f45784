"""A pytest plugin for a subprocess running the benchmark suite: ``cpu-fp32`` inference made about
five times slower (a busy wait after each call), so ``--benchmark-compare-fail`` has a real
regression to catch. Loaded with ``-p tests.slowed_backend_plugin``."""

import time
from dataclasses import replace

from bench.engines import backends
from bench.engines.eager import EagerEngine


class SlowedEager(EagerEngine):
    def prepare(self, model, backend, options, calibration):
        real = super().prepare(model, backend, options, calibration)

        def predict(x):
            start = time.perf_counter()
            out = real.predict(x)
            end = time.perf_counter() + 4 * (time.perf_counter() - start) + 1e-3
            while time.perf_counter() < end:
                pass
            return out

        return replace(real, predict=predict)


backends.BACKENDS["cpu-fp32"] = replace(backends.BACKENDS["cpu-fp32"], engine=SlowedEager())
