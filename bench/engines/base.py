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

from bench.plumbing.lazy import torch
from bench.plumbing.options import BACKEND, option

if TYPE_CHECKING:
    from bench.engines.backends import Backend

@dataclass(frozen=True)
class BackendOptions:
    """Switches that apply across backends (each engine records the ones it uses), and each engine's
    own options (``engine_options``: an engine's ``options`` dataclass by its ``key``)."""

    tf32: bool = option(False, group=BACKEND, flag=True, help="allow TF32 matmul/conv in CUDA fp32 backends")
    cudnn_benchmark: bool = option(False, group=BACKEND, flag=True, help="enable cudnn.benchmark autotuning (CUDA)")
    channels_last: bool = option(False, group=BACKEND, flag=True, help="NHWC memory format for the models whose "
                                                                       "registry entry allows it (the CNN)")
    engine_options: dict[str, Any] = field(default_factory=dict)

    def of(self, cls: type):
        """This run's values of an engine's options (``cls``: its ``options`` dataclass); its
        defaults where the run gave none."""
        found = self.engine_options.get(cls.key)
        return found if isinstance(found, cls) else cls()

    def with_engine(self, *sets: Any) -> BackendOptions:
        """A copy with these engine option sets (each under its class's ``key``)."""
        from dataclasses import replace

        return replace(self, engine_options={**self.engine_options, **{type(s).key: s for s in sets}})


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
    # per operator, its seconds and its records per call over ``calls`` calls on an input, from the
    # engine's own profiler, and the profiled call's seconds (bench.measure.breakdown); None: torch.profiler
    operators: Callable[[Any, int], tuple[dict[str, tuple[float, float]], float]] | None = None

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
    # Optional: ``options``, a frozen dataclass of the engine's own run options (a ``key`` ClassVar
    # naming the set; fields declared with ``bench.plumbing.options.option``): they become command
    # line flags and TOML keys of their own --help group, apply to this engine's backends only and
    # reach it as ``options.of(ThatClass)``.

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

    # Optional: ``handed_over() -> object`` and ``take_over(state) -> None``: what this process made
    # that a fresh process preparing the same weights may read instead of making it again (the ONNX
    # engines' fp32 export), handed to timing workers and serving processes by bench.scheduling.fresh.
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
