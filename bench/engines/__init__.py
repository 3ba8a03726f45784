"""Engines as plug-ins: each module implements ``bench.engines.base.Engine``; ``ENGINES`` maps
the names used in backend rows to engine objects. A new engine is one module plus one line here;
a new backend of an existing engine is one row in ``bench.engines.backends``."""

from __future__ import annotations

from bench.engines.base import BackendOptions, Engine, Prepared
from bench.engines.compile import CompileEngine
from bench.engines.eager import EagerEngine
from bench.engines.onnxruntime import OnnxRuntimeEngine
from bench.engines.onnxruntime_int8 import OnnxRuntimeInt8Engine

ENGINES: dict[str, Engine] = {e.name: e for e in (EagerEngine(), CompileEngine(), OnnxRuntimeEngine(),
                                                  OnnxRuntimeInt8Engine())}

__all__ = ["ENGINES", "BackendOptions", "Engine", "Prepared"]
