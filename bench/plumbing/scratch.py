"""Where a run's temporary files live: a hidden folder of its run folder (``.scratch``), not the
system's temporary folder, so a run killed with SIGKILL, or a timing worker killed with it, leaves
nothing there; the next start or ``--resume`` of that run removes what a killed one left, and a
run that ends removes the folder. Its child processes inherit it through the environment.
Every temporary folder of a run (LoadGen's logs, ONNX Runtime's export and profiler files) is
made by ``temporary``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SCRATCH = ".scratch"  # its name in a run folder
ENV = "MNIST_BENCH_SCRATCH"  # the folder, for this process and its children


def use(run_dir: Path) -> Path:
    """The run in ``run_dir`` starts: its scratch folder, emptied of what a killed run left."""
    folder = Path(run_dir) / SCRATCH
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[ENV] = str(folder)
    return folder


def done() -> None:
    """The run ends (completed, stopped or failed): its scratch folder goes."""
    folder = os.environ.pop(ENV, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def temporary(prefix: str | None = None) -> tempfile.TemporaryDirectory:
    """A temporary folder in the run's scratch folder (outside a run: the system's)."""
    folder = os.environ.get(ENV)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=folder if folder and os.path.isdir(folder) else None)
