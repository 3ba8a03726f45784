"""PyTorch eager mode: trains, and is the fp32 reference every other backend is compared to."""

from __future__ import annotations

from collections.abc import Callable

from bench.engines.base import BackendOptions, Prepared, torch_device_reason
from bench.plumbing.lazy import torch


def torch_prepared(forward: Callable, backend) -> Prepared:
    """A PyTorch forward as a no-grad predict under the backend's autocast, timed on its device."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), backend.autocast():
            return forward(x)

    return Prepared(predict, backend.device, to_input=lambda x: x.to(backend.device))


class EagerEngine:
    name = "eager"
    trains = True
    reference = True
    test_marks: tuple[str, ...] = ()

    def probe(self, backend) -> str | None:
        return torch_device_reason(backend)

    def settings(self, options: BackendOptions) -> dict:
        return {}

    def training_forward(self, model: torch.nn.Module, backend) -> Callable:
        return model

    def prepare(self, model: torch.nn.Module, backend, options: BackendOptions, calibration: torch.Tensor) -> Prepared:
        return torch_prepared(model.eval(), backend)

    def memory_device(self, backend) -> str:
        return backend.device
