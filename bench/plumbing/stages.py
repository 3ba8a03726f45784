"""The harness's own time: a run's stages (start-up, data, each model's phases and the parts of
them that take long) on the wall clock, in the order they ran, for meta.json's ``stages``. Parts
(``part``) are inside their stage's time; a stage entered again adds to its row."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

_started: list[float | None] = [None]  # the command's start (``mark_start``), until a run claims it


@dataclass
class Stages:
    rows: list[dict] = field(default_factory=list)

    def add(self, stage: str, seconds: float, model: str | None = None, part: str | None = None) -> None:
        for row in self.rows:
            if (row["stage"], row["model"], row["part"]) == (stage, model, part):
                row["seconds"] = round(row["seconds"] + seconds, 3)
                return
        self.rows.append({"stage": stage, "model": model, "part": part, "seconds": round(seconds, 3)})

    def seconds(self, stage: str, model: str | None = None, part: str | None = None) -> float:
        return sum(r["seconds"] for r in self.rows if (r["stage"], r["model"], r["part"]) == (stage, model, part))

    @contextlib.contextmanager
    def timed(self, stage: str, model: str | None = None, part: str | None = None) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start, model, part)


def mark_start() -> None:
    """The command starts now (the CLI's entry, before any import of torch)."""
    _started[0] = time.monotonic()


def claim_start() -> float:
    """When the run now made started: the command's start if the CLI marked one and no run has
    claimed it yet, else now (a run made through the Python API, or a second run of one command,
    starts when it is made: its start-up is not the time since an earlier command)."""
    started, _started[0] = _started[0], None
    return time.monotonic() if started is None else started
