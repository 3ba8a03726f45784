"""Backends: a registry of rows (engine, device, precision, options). A backend's behaviour lives
on its engine (``bench.engines``); this module only answers the questions that depend on device
and precision alone: autocast, loss scaling, the global CUDA switches.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from bench import BenchError
from bench.engines import ENGINES, BackendOptions, Engine
from bench.plumbing.lazy import torch

_AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}  # torch dtypes by name: torch loads on first use


@dataclass(frozen=True, eq=False)
class Backend:
    name: str
    engine: Engine
    device: str  # cpu | cuda
    precision: str  # fp32 | bf16 | fp16 (bf16/fp16 through autocast) | int8 (quantized engines)
    options: dict[str, Any] = field(default_factory=dict)  # engine-specific, fixed per row

    @property
    def trains(self) -> bool:
        return self.engine.trains

    @property
    def is_reference(self) -> bool:
        """The fp32 output every other backend's parity is measured against."""
        return self.engine.reference and self.precision == "fp32"

    def autocast(self):
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        if dtype is None or not self.trains:
            return nullcontext()
        return torch.autocast(device_type=self.device, dtype=getattr(torch, dtype))

    def grad_scaler(self):
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
        if self.device == "cuda" and self.precision == "fp16":
            return torch.amp.GradScaler("cuda")
        return None

    def unavailable_reason(self) -> str | None:
        if self.name not in _PROBED:
            _PROBED[self.name] = self.engine.probe(self)
        return _PROBED[self.name]

    def configure(self, options: BackendOptions) -> dict:
        """Apply the global switches this backend uses; returns them for the result rows."""
        settings = {"channels_last": options.channels_last}
        if self.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = options.tf32
            torch.backends.cudnn.allow_tf32 = options.tf32
            torch.backends.cudnn.benchmark = options.cudnn_benchmark
            settings.update(tf32=options.tf32, cudnn_benchmark=options.cudnn_benchmark)
        return {**settings, **self.engine.settings(options), **self.options}


_PROBED: dict[str, str | None] = {}  # a backend is probed once per process


def _rows(*rows: tuple) -> dict[str, Backend]:
    return {name: Backend(name, ENGINES[engine], device, precision, *rest) for name, engine, device, precision, *rest
            in rows}


BACKENDS: dict[str, Backend] = _rows(
    # name, engine, device, precision[, options]
    ("cpu-fp32", "eager", "cpu", "fp32"),
    ("cpu-bf16", "eager", "cpu", "bf16"),
    ("cpu-fp32-compile", "compile", "cpu", "fp32"),
    ("cuda-fp32", "eager", "cuda", "fp32"),
    ("cuda-amp-fp16", "eager", "cuda", "fp16"),
    ("cuda-amp-bf16", "eager", "cuda", "bf16"),
    ("cuda-fp32-compile", "compile", "cuda", "fp32"),
    ("cuda-amp-bf16-compile", "compile", "cuda", "bf16"),
    ("onnxruntime-cpu", "onnxruntime", "cpu", "fp32"),
    ("onnxruntime-cuda", "onnxruntime", "cuda", "fp32"),
    # static before dynamic, so auto takes static: dynamic turns convolutions into ConvInteger, slower than fp32
    ("onnxruntime-int8-static", "onnxruntime-int8", "cpu", "int8", {"quantization": "static"}),
    ("onnxruntime-int8-dynamic", "onnxruntime-int8", "cpu", "int8", {"quantization": "dynamic"}),
)
REFERENCE = "cpu-fp32"  # trains the model that non-training backends run when no PyTorch backend did


def probe(names: list[str] | tuple[str, ...]) -> list[tuple[Backend, str | None]]:
    """Each named backend with the reason it cannot run here (None: it can); a BenchError when
    none of them can, a warning line for each that cannot."""
    probed = [(BACKENDS[n], BACKENDS[n].unavailable_reason()) for n in names]
    if all(reason for _, reason in probed):
        raise BenchError("every requested backend is unavailable: " + "; ".join(f"{b.name}: {r}" for b, r in probed))
    for b, reason in probed:
        if reason:
            print(f"warning: backend {b.name} skipped: {reason}", file=sys.stderr)
    return probed


AUTO = "auto"  # every backend available here, one per engine family and precision (see auto_choices)


def auto_choices() -> list[tuple[Backend, bool, str]]:
    """Every backend with whether ``--backends auto`` picks it and why (or why not).

    Auto takes, per engine family and precision, the first available row, CUDA before CPU (the
    registry's order otherwise), and always the reference ``cpu-fp32`` that every ratio is taken
    against. Rows of one family and precision differ in a fixed option only (int8 dynamic vs
    static quantization; the same engine on another device), so one of them speaks for the others."""
    order = sorted(BACKENDS.values(), key=lambda b: b.device != "cuda")  # stable: registry order within a device
    taken: dict[tuple[str, str], Backend] = {}
    for b in order:
        if b.unavailable_reason() is None:
            taken.setdefault((b.engine.name, b.precision), b)
    picked = set(taken.values()) | {BACKENDS[REFERENCE]}
    out = []
    for b in BACKENDS.values():
        reason = b.unavailable_reason()
        if b in picked:
            why = "the reference every ratio is taken against" if b.name == REFERENCE and \
                taken.get((b.engine.name, b.precision)) is not b else f"{b.engine.name} engine, {b.precision}"
        elif reason is not None:
            why = reason
        else:
            why = f"same engine and precision as {taken[(b.engine.name, b.precision)].name} (auto takes one per " \
                  "engine family and precision; name it to include it)"
        out.append((b, b in picked, why))
    return out


def auto_backends() -> tuple[str, ...]:
    return tuple(b.name for b, picked, _ in auto_choices() if picked)


def backend_names() -> list[str]:
    return list(BACKENDS)


def trainers() -> set[str]:
    """The backends that train (the others run a model trained by one of them)."""
    return {name for name, b in BACKENDS.items() if b.trains}


def engine_option_sets() -> dict[type, list[str]]:
    """Each engine's own options class (``Engine.options``) with the backends it applies to, in the
    registry's order (plugins' engines included)."""
    out: dict[type, list[str]] = {}
    for b in BACKENDS.values():
        cls = getattr(b.engine, "options", None)
        if cls is not None:
            out.setdefault(cls, []).append(b.name)
    return out


def catalog() -> dict:
    """What a report needs of this registry (``bench.storage.catalog``), stored with every run."""
    facts = (c for e in ENGINES.values() for c in getattr(e, "fact_columns", ()))
    return {"backends": backend_names(), "fact_columns": list(dict.fromkeys(facts)), "reference": REFERENCE}


def get_backend(name: str) -> Backend:
    return BACKENDS[name]


PLUGINS_ENV = "MNIST_BENCH_PLUGINS"


def load_plugins() -> None:
    """Import the modules named in $MNIST_BENCH_PLUGINS (comma-separated): each registers its own
    engines and backends on import, so that fresh processes (``--processes``, ``calibrate``) know
    them too."""
    for name in (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",")):
        if name:
            try:
                importlib.import_module(name)
            except ImportError as e:
                raise BenchError(f"${PLUGINS_ENV}: cannot import {name!r} ({e})") from None


load_plugins()
