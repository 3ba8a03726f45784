"""The harness's own time: a run's stages (start-up, data, each model's phases and the parts of
them that take long) on the wall clock, in the order they ran, for meta.json's ``stages``. Parts
(``part``) are inside their stage's time; a stage entered again adds to its row."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

_started = [time.monotonic()]  # the command's start (``mark_start``), else this module's import


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


def since_start() -> float:
    """Seconds since the command started."""
    return time.monotonic() - _started[0]
