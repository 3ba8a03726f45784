"""``torch`` imported on first use. Commands that only parse arguments (``--help``, a bad flag)
answer in a fraction of a second instead of waiting ~1.5 s for torch; everything that touches
``torch.<name>`` imports it then."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands in for a module until an attribute is read; each attribute is then cached on the
    stand-in, so hot paths pay the import lookup once."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        object.__setattr__(self, attr, value)
        return value


torch = LazyModule("torch")
