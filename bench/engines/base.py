"""The engine protocol: what every engine module implements, and what it hands back.

An engine turns a trained ``nn.Module`` into a ``predict(batch)`` function (exporting, compiling
or quantizing as needed) and, if it ``trains``, also runs the training forward pass. Everything
engine-specific lives behind these few methods, so the runner, the cells, the pytest-benchmark
suite and the report never branch on an engine's name.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bench import ConfigError
from bench.plumbing.lazy import torch
from bench.plumbing.options import BACKEND, option

if TYPE_CHECKING:
    from bench.engines.backends import Backend

ORT_OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class BackendOptions:
    """Switches that apply across backends (each engine records the ones it uses)."""

    tf32: bool = option(False, group=BACKEND, flag=True, help="allow TF32 matmul/conv in CUDA fp32 backends")
    cudnn_benchmark: bool = option(False, group=BACKEND, flag=True, help="enable cudnn.benchmark autotuning (CUDA)")
    channels_last: bool = option(False, group=BACKEND, flag=True, help="NHWC memory format for the models whose "
                                                                       "registry entry allows it (the CNN)")
    ort_opt_level: str = option("all", group=BACKEND, choices=ORT_OPT_LEVELS,
                                help="ONNX Runtime graph optimization: disable | basic | extended | all")
    ort_intra_threads: int = option(0, group=BACKEND, help="ONNX Runtime intra-op threads; 0 leaves the choice to it")
    ort_inter_threads: int = option(0, group=BACKEND, help="ONNX Runtime inter-op threads; 0 leaves the choice to it")
    # ONNX Runtime's intra-op threads spin between runs by default; beside torch's OpenMP threads on
    # a few cores that spinning made the next PyTorch block ~2x slower (CNN, batch 32, 2 cores), so
    # interleaved rounds measured the interference, not the backends. off: they sleep between runs.
    ort_spinning: bool = option(False, group=BACKEND, help="on | off: ONNX Runtime's threads spin between runs (off: "
                                                           "their spinning slows the PyTorch backends interleaved "
                                                           "with them)")

    def __post_init__(self) -> None:
        if self.ort_opt_level not in ORT_OPT_LEVELS:
            raise ConfigError(f"ort_opt_level must be one of {', '.join(ORT_OPT_LEVELS)}; got {self.ort_opt_level!r}")
        for name in ("ort_intra_threads", "ort_inter_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class Prepared:
    """A trained model made ready by an engine: ``predict`` takes one batch in the engine's input
    form (``to_input`` makes it from a torch batch) and returns its output (``to_logits`` reads it).

    ``clock_device`` names the clock that times ``predict`` ("cuda": events plus synchronize;
    "cpu": the host clock, right for engines whose call returns only when its outputs are ready).
    ``facts`` are the preparation's own figures (export, quantization, session creation, the cold
    first call), reported apart from the steady-state timing.
    """

    predict: Callable[[Any], Any]
    clock_device: str
    to_input: Callable[[torch.Tensor], Any] = lambda x: x
    to_logits: Callable[[Any], torch.Tensor] = lambda out: out
    facts: dict[str, Any] = field(default_factory=dict)
    # hands memory the engine keeps for reuse back to the system (ONNX Runtime's arena), so a
    # memory measurement that follows starts from the model alone
    release: Callable[[], None] = lambda: None

    def logits(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """fp32 CPU logits for ``images``, in order."""
        outs = [self.to_logits(self.predict(self.to_input(images[i : i + batch_size])))
                for i in range(0, len(images), batch_size)]
        return torch.cat([o.float().cpu() for o in outs])


class Engine(Protocol):
    name: str  # the result rows' ``engine`` column
    trains: bool  # True: trains models itself (PyTorch); False: runs a model trained by a PyTorch backend
    reference: bool  # True: its fp32 output is the parity reference for every other backend
    test_marks: tuple[str, ...]  # pytest markers of its rows in the benchmark suite (besides the device's)
    # Optional: ``fact_columns``, the summary columns of its preparation's own figures and settings
    # (``Prepared.facts``, ``settings``), shown in the report's Export and preparation section.

    def probe(self, backend: Backend) -> str | None:
        """Why ``backend`` cannot run on this machine, or None when it can."""

    def settings(self, options: BackendOptions) -> dict[str, Any]:
        """The options this engine uses, recorded in its result rows."""

    def training_forward(self, model: torch.nn.Module, backend: Backend) -> Callable:
        """The forward used in training steps (only engines that train)."""

    def prepare(self, model: torch.nn.Module, backend: Backend, options: BackendOptions,
                calibration: torch.Tensor) -> Prepared:
        """Make a trained model ready for inference. ``calibration``: a fixed batch of normalized
        training images (CPU) for engines that calibrate."""

    def memory_device(self, backend: Backend) -> str:
        """Where this engine's inference memory is measured: "cuda" (PyTorch's allocator) or "cpu" (RSS)."""

    # Optional: ``load_runtime(backend) -> None`` loads the engine's libraries once per process
    # (exporter, session runtime, compiler), so the memory a model's preparation is charged with
    # is the model's and not the libraries' that the first model of a run happened to load.


def load_runtime(backend: Backend) -> None:
    """The engine's ``load_runtime`` hook, once per engine and device in a process. Afterwards the
    objects alive (the libraries' registries and caches, several hundred thousand once the ONNX
    exporter has run) leave the garbage collector's sight (``gc.freeze``): the collection before
    each memory measurement then scans only what came later (0.09 s down to 0.004 s here)."""
    hook = getattr(backend.engine, "load_runtime", None)
    if hook is not None and (backend.engine.name, backend.device) not in _LOADED:
        _LOADED.add((backend.engine.name, backend.device))
        hook(backend)
        gc.collect()
        gc.freeze()


_LOADED: set[tuple[str, str]] = set()


def missing_module(*modules: str) -> str | None:
    """"<module> not installed" for the first of ``modules`` that cannot be imported."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed"
    return None


def torch_device_reason(backend: Backend) -> str | None:
    """Whether PyTorch can run ``backend``'s device and precision here."""
    if backend.device != "cuda":
        return None
    if not torch.cuda.is_available():
        return "CUDA not available"
    if backend.precision == "bf16" and not torch.cuda.is_bf16_supported():
        return f"bf16 not supported on {torch.cuda.get_device_name()}"
    return None
