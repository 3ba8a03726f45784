"""A plugin backend that fails only where it is served: ``cpu-fp32-faulty`` runs the reference's
weights in eager mode, and a call of exactly 8 images (a MultiStream query, a batch size the tests
never time) raises where ``$FAULTY_SERVING`` is ``raise`` and never returns where it is ``hang``.
Loaded in a fresh process (a serving process) with ``MNIST_BENCH_PLUGINS=tests.plugin_faulty_serving``;
``registered()`` adds it inside one process for the length of a block."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace

from bench.engines.eager import EagerEngine
from tests.plugin_engine import install, registering

FAULTY_BATCH = 8


class FaultyEngine(EagerEngine):
    name = "faulty-eager"
    trains = False
    reference = False

    def prepare(self, model, backend, options, calibration):
        real = super().prepare(model, backend, options, calibration)

        def predict(x):
            mode = os.environ.get("FAULTY_SERVING", "")
            if len(x) == FAULTY_BATCH and mode == "raise":
                raise RuntimeError("the model fell over")
            while len(x) == FAULTY_BATCH and mode == "hang":
                time.sleep(1.0)
            return real.predict(x)

        return replace(real, predict=predict)


def _rows():
    from bench.engines.backends import Backend

    engine = FaultyEngine()
    return engine, {"cpu-fp32-faulty": Backend("cpu-fp32-faulty", engine, "cpu", "fp32")}


@contextlib.contextmanager
def registered():
    with registering(*_rows()) as rows:
        yield rows


if __name__ in os.environ.get("MNIST_BENCH_PLUGINS", "").split(","):  # loaded as a plugin: registered for good
    install(*_rows())
