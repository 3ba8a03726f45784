"""How a configuration field declares itself a run option: its default, its help text (legal
values included) and its group in --help. The CLI's run options are generated from these fields."""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any

# The CLI's option groups, in the order --help lists them.
WHAT, TRAIN, INFER, SERVE, BACKEND, DYNAMICS, PROFILE, DIST, OUTPUT = (
    "what to run", "training recipe", "inference timing", "deployment scenarios (MLPerf LoadGen)", "backend options",
    "optimization dynamics", "torch.profiler traces", "data-parallel training (torchrun)", "data and output")
GROUPS = (WHAT, TRAIN, INFER, SERVE, BACKEND, DYNAMICS, PROFILE, DIST, OUTPUT)


def option(default: Any = MISSING, *, help: str, group: str, flag: bool = False, factory: Any = MISSING,
           choices: tuple[str, ...] | None = None) -> Any:
    """A configuration field that is also a run option: ``help`` (legal values included) is its
    --help text; ``flag``: a switch on the command line (--x turns it on); ``choices``: its legal
    values, where they are a fixed list."""
    metadata = {"help": help, "group": group, "flag": flag, "choices": choices}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)
