"""Model registry: a new model is one module plus one ``register`` call with its facts.

Models here are plain ``nn.Module`` definitions; counting, timing and training live in ``bench/``.
Each entry carries what the rest of the harness needs to know about the model (its accuracy
target, its training recipes per preset, whether NHWC applies, its input shape), so config, CLI
help, the pytest-benchmark suite and the report read them from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    # the model class, or "module:Class" (imported when a model is built, so that the registry's
    # facts are read without importing torch)
    factory: Callable[[], nn.Module] | str
    target_accuracy: float | None = None  # test accuracy for time_to_accuracy_s, in [0, 1]; None: TrainConfig's
    # training settings per preset (quick | full), over the preset's defaults
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels_last: bool = False  # whether NHWC (--channels-last) applies to this model
    input_shape: tuple[int, ...] = (1, 28, 28)  # one sample, without the batch dimension
    # deployment scenarios: the Server scenario's p99 latency bound (ms), for a served query of one
    # image; sized for a shared 2-core CPU, where scheduler ticks of a few ms reach the p99
    latency_bound_ms: float = 10.0


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def model_names() -> list[str]:
    """Registered models in registration order (also the order of reports and tables)."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; legal values: {', '.join(model_names())}") from None


def build_model(name: str) -> nn.Module:
    factory = get_spec(name).factory
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory()


# Registration happens on import, one call per model.
# The full recipes are the fastest to the target in benchmarks/recipe_search.py (5 seeds each, on the
# held-out validation split; docs/BENCHMARKS.md, "Time to accuracy"); with the full preset's
# channels-last and the cpu-bf16 backend they reach it in about a tenth of the plain recipe's time.
_FAST = {"schedule": "onecycle", "dropout": False, "normalization": "standard", "evals_per_epoch": 16}
register(ModelSpec(
    "mlp", "models.mlp:MLP",
    recipes={"quick": {}, "full": {**_FAST, "epochs": 3, "lr": 5e-3, "batch_size": 256, "label_smoothing": 0.1}},
))
register(ModelSpec(
    "cnn", "models.cnn:CNN", target_accuracy=0.99, channels_last=True, latency_bound_ms=15.0,
    recipes={"quick": {"schedule": "onecycle", "lr": 3e-3},
             "full": {**_FAST, "epochs": 2, "lr": 8e-3, "batch_size": 128, "label_smoothing": 0.2}},
))
