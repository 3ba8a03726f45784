"""What the tool prints while it works: progress bars (tqdm) on a terminal, one line per stage
otherwise, nothing but results and problems with ``-q``; third-party log noise silenced unless
``-v``. Warnings and errors always reach stderr."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager

from tqdm import tqdm

LEVELS = ("quiet", "normal", "verbose")
_state = {"level": "normal", "tty": None}


def setup(level: str = "normal", tty: bool | None = None) -> None:
    """Set the output level for this process (``tty``: None asks stderr)."""
    _state.update(level=level, tty=tty)
    if level != "verbose":
        silence_third_party()


def level() -> str:
    return _state["level"]


def is_verbose() -> bool:
    return _state["level"] == "verbose"


def _tty() -> bool:
    return sys.stderr.isatty() if _state["tty"] is None else bool(_state["tty"])


def info(message: str) -> None:
    """A progress line (stderr), left out with -q."""
    if _state["level"] != "quiet":
        print(message, file=sys.stderr, flush=True)


class Stage:
    """A stage's progress: a tqdm bar on a terminal; otherwise one line when it ends."""

    def __init__(self, desc: str, total: int | None, unit: str, enabled: bool = True) -> None:
        self.desc, self.total, self.unit, self.n, self.enabled = desc, total, unit, 0, enabled
        self.start = time.perf_counter()
        show_bar = enabled and _tty() and _state["level"] != "quiet"
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True,
                        disable=not show_bar)

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.n += n
        self.bar.update(n)
        if note:
            self.bar.set_postfix_str(note, refresh=False)

    def close(self, failed: bool = False) -> None:
        self.bar.close()
        if not self.enabled:
            return
        seconds = time.perf_counter() - self.start
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        end = "stopped" if failed else "done"
        units = self.unit if self.n == 1 else _plural(self.unit)
        info(f"{self.desc}: {end}, {count} {units} in {seconds:.1f} s")


def _plural(unit: str) -> str:
    if unit.endswith("is"):  # analysis, analyses
        return unit[:-2] + "es"
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")


@contextmanager
def stage(desc: str, total: int | None = None, unit: str = "step", enabled: bool = True):
    """``with stage("train mlp", total=n) as s: ... s.update()``."""
    s = Stage(desc, total, unit, enabled)
    try:
        yield s
    except BaseException:
        s.close(failed=True)
        raise
    s.close()


# Loggers and messages of libraries that talk on every run; -v lets them through.
_NOISY_LOGGERS = ("torch", "torch._dynamo", "torch._inductor", "torch.onnx", "torch.utils.cpp_extension", "onnxscript",
                  "onnx_ir", "onnxruntime")


def silence_third_party() -> None:
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # c10 warnings such as "No CUDA runtime is found"
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own lines
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    warnings.filterwarnings("ignore", module=r"(torch|onnxscript|onnx_ir|onnxruntime)(\.|$)")


@contextmanager
def quiet_stdio():
    """Hold back what C++ libraries write straight to the process's stdout and stderr (file
    descriptors 1 and 2: kineto's ``USDT`` lines, for instance); with -v it passes through."""
    if is_verbose():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
