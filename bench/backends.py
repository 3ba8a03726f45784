"""Backends: device + precision + engine, probed and configured in this one place.

Callers never branch on the device themselves: they ask the Backend for its device, its
autocast context, its grad scaler, and whether it is available (with the reason if not).
"""

from __future__ import annotations

import importlib.util
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache

import torch

from bench.config import BackendOptions

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Backend:
    name: str
    device: str  # cpu | cuda
    precision: str  # fp32 | bf16 | fp16 (bf16/fp16 through autocast)
    engine: str  # eager | compile | onnxruntime

    @property
    def trains(self) -> bool:
        """ONNX Runtime backends run inference on an exported, already trained model."""
        return self.engine != "onnxruntime"

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

    def autocast(self):
        if self.precision == "fp32" or self.engine == "onnxruntime":
            return nullcontext()
        return torch.autocast(device_type=self.device, dtype=self.dtype)

    def grad_scaler(self):
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
        if self.device == "cuda" and self.precision == "fp16":
            return torch.amp.GradScaler("cuda")
        return None

    def unavailable_reason(self) -> str | None:
        return _probe(self)

    def configure(self, options: BackendOptions) -> dict:
        """Apply the global switches this backend uses; returns them for the result rows."""
        settings = {"channels_last": options.channels_last}
        if self.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = options.tf32
            torch.backends.cudnn.allow_tf32 = options.tf32
            torch.backends.cudnn.benchmark = options.cudnn_benchmark
            settings.update(tf32=options.tf32, cudnn_benchmark=options.cudnn_benchmark)
        if self.engine == "onnxruntime":
            settings.update(
                ort_opt_level=options.ort_opt_level,
                ort_intra_threads=options.ort_intra_threads,
                ort_inter_threads=options.ort_inter_threads,
            )
        return settings


BACKENDS = {
    b.name: b
    for b in [
        Backend("cpu-fp32", "cpu", "fp32", "eager"),
        Backend("cpu-bf16", "cpu", "bf16", "eager"),
        Backend("cpu-fp32-compile", "cpu", "fp32", "compile"),
        Backend("cuda-fp32", "cuda", "fp32", "eager"),
        Backend("cuda-amp-fp16", "cuda", "fp16", "eager"),
        Backend("cuda-amp-bf16", "cuda", "bf16", "eager"),
        Backend("cuda-fp32-compile", "cuda", "fp32", "compile"),
        Backend("cuda-amp-bf16-compile", "cuda", "bf16", "compile"),
        Backend("onnxruntime-cpu", "cpu", "fp32", "onnxruntime"),
        Backend("onnxruntime-cuda", "cuda", "fp32", "onnxruntime"),
    ]
}


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_backend(name: str) -> Backend:
    return BACKENDS[name]


@cache
def _probe(b: Backend) -> str | None:
    if b.device == "cuda" and b.engine != "onnxruntime":
        if not torch.cuda.is_available():
            return "CUDA not available"
        if b.precision == "bf16" and not torch.cuda.is_bf16_supported():
            return f"bf16 not supported on {torch.cuda.get_device_name()}"
    if b.engine == "compile":
        if b.device == "cpu" and not (shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")):
            return "torch.compile on CPU needs a C++ compiler (none on PATH)"
        if b.device == "cuda" and importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs triton (not installed)"
    if b.engine == "onnxruntime":
        for module in ("onnx", "onnxruntime"):
            if importlib.util.find_spec(module) is None:
                return f"{module} not installed"
        if b.device == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "onnxruntime-gpu not installed (no CUDAExecutionProvider)"
    return None
