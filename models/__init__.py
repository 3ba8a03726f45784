"""Model registry: a new model is one module plus one ``register`` call.

Models here are plain ``nn.Module`` definitions; counting, timing and training live in ``bench/``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[[], nn.Module]] = {}


def register(name: str, factory: Callable[[], nn.Module]) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = factory


def model_names() -> list[str]:
    return list(_REGISTRY)


def build_model(name: str) -> nn.Module:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; legal values: {', '.join(model_names())}") from None
    return factory()


# Registration happens on import, one line per model.
from models.cnn import CNN  # noqa: E402
from models.mlp import MLP  # noqa: E402

register("mlp", MLP)
register("cnn", CNN)
