"""A plugin engine with an option of its own, as a third party would write one: one module and its
registry rows. ``scaled-eager`` runs the reference's weights in eager mode with its logits multiplied
by ``--scaled-factor`` (the argmax is unchanged, so its parity holds), on the backend
``cpu-fp32-scaled``. Loaded in fresh processes with ``MNIST_BENCH_PLUGINS=tests.plugin_engine``;
``registered()`` adds it inside one process for the length of a block."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from typing import ClassVar

from bench import ConfigError
from bench.engines.eager import EagerEngine
from bench.plumbing.options import option


@dataclass(frozen=True)
class ScaledOptions:
    key: ClassVar[str] = "scaled-eager"
    scaled_factor: float = option(1.0, group="scaled-eager options", help="logits multiplied by this factor (> 0)")

    def __post_init__(self) -> None:
        if not self.scaled_factor > 0:
            raise ConfigError(f"scaled_factor must be > 0, got {self.scaled_factor}")


class ScaledEngine(EagerEngine):
    name = "scaled-eager"
    trains = False
    reference = False
    options = ScaledOptions
    fact_columns = ("scaled_factor",)

    def settings(self, options) -> dict:
        return {"scaled_factor": options.of(ScaledOptions).scaled_factor}

    def prepare(self, model, backend, options, calibration):
        real = super().prepare(model, backend, options, calibration)
        factor = options.of(ScaledOptions).scaled_factor
        return replace(real, predict=lambda x: real.predict(x) * factor,
                       facts={**real.facts, "scaled_factor": factor})


def _rows():
    from bench.engines.backends import Backend

    engine = ScaledEngine()
    return engine, {"cpu-fp32-scaled": Backend("cpu-fp32-scaled", engine, "cpu", "fp32")}


@contextlib.contextmanager
def registered():
    with registering(*_rows()) as rows:
        yield rows


def install(engine, rows: dict) -> None:
    """``engine`` and its backends ``rows`` registered (for good: a module loaded as a plugin)."""
    from bench.engines import ENGINES
    from bench.engines.backends import BACKENDS

    ENGINES[engine.name] = engine
    BACKENDS.update(rows)


@contextlib.contextmanager
def registering(engine, rows: dict):
    """``engine`` and its backends ``rows`` registered for the length of a block."""
    from bench.engines import ENGINES
    from bench.engines.backends import BACKENDS

    install(engine, rows)
    try:
        yield rows
    finally:
        for name in rows:
            BACKENDS.pop(name)
        ENGINES.pop(engine.name)


if __name__ in os.environ.get("MNIST_BENCH_PLUGINS", "").split(","):  # loaded as a plugin: registered for good
    install(*_rows())
