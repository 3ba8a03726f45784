"""``torch.compile`` (Inductor): compiled training steps and a compiled inference forward. The
first call compiles; it is reported apart (cold_step_s, cold_first_call_ms) from the steady state."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable

from bench.engines.base import BackendOptions, Prepared
from bench.engines.eager import EagerEngine, torch_prepared
from bench.plumbing.lazy import torch


class CompileEngine(EagerEngine):
    name = "compile"
    reference = False
    test_marks = ("slow",)

    def probe(self, backend) -> str | None:
        reason = super().probe(backend)
        if reason:
            return reason
        if backend.device == "cpu" and not (shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")):
            return "torch.compile on CPU needs a C++ compiler (none on PATH)"
        if backend.device == "cuda" and importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs triton (not installed)"
        return None

    def training_forward(self, model: torch.nn.Module, backend) -> Callable:
        return torch.compile(model)

    def prepare(self, model: torch.nn.Module, backend, options: BackendOptions, calibration: torch.Tensor) -> Prepared:
        return torch_prepared(torch.compile(model.eval()), backend)

    def load_runtime(self, backend) -> None:
        """Compile and call a one-layer model once: Inductor's modules and its compile workers load
        here, not inside the first model's preparation."""
        layer = torch.nn.Linear(4, 2).to(backend.device).eval()
        with torch.no_grad():
            torch.compile(layer)(torch.zeros(2, 4, device=backend.device))
