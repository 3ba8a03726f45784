"""The process state a measurement runs in, chosen on purpose and recorded with it: the C
allocator (and its settings) and OpenMP's threads.

Why it is an input of every figure: glibc's malloc serves a request above its mmap threshold
with a fresh mapping that is page-faulted on every use, and it moves that threshold up with what
the process freed before (up to 32 MiB). A 25 MB activation is then reused or faulted in on every
call depending on the process's history: the same CNN call at batch 256 measured 28 or 47 ms in
two fresh processes. ``tuned`` fixes the thresholds at start, so every buffer below 256 MiB is
reused from the heap in every process; ``jemalloc`` and ``tcmalloc`` are caching allocators
(PyTorch's CPU performance guide recommends them), preloaded into a fresh process; ``system``
leaves glibc's defaults as they are, so their cost is a figure a user can see.

Child processes (timing workers, torchrun ranks) inherit the state through the environment:
glibc reads ``MALLOC_*_`` at start, the dynamic loader ``LD_PRELOAD``."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench import BenchError
from bench.plumbing.children import child_env, wait_for

ALLOCATORS = ("tuned", "system", "jemalloc", "tcmalloc")
DEFAULT_ALLOCATOR = "tuned"
MIB = 1 << 20
# glibc's mallopt parameters (malloc.h) and the environment variables glibc reads at start for them
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TUNED = {"mmap_threshold_bytes": 256 * MIB, "trim_threshold_bytes": 512 * MIB}
_TUNED_ENV = {"mmap_threshold_bytes": "MALLOC_MMAP_THRESHOLD_", "trim_threshold_bytes": "MALLOC_TRIM_THRESHOLD_"}
_MALLOPT = {"mmap_threshold_bytes": _M_MMAP_THRESHOLD, "trim_threshold_bytes": _M_TRIM_THRESHOLD}
# preloaded allocators: the shared library's file name (Debian: libjemalloc2, libtcmalloc-minimal4)
PRELOADED = {"jemalloc": ("libjemalloc.so.2", "libjemalloc2"),
             "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4")}
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
OPENMP_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_PROC_BIND", "OMP_PLACES", "GOMP_SPINCOUNT",
              "KMP_BLOCKTIME", "KMP_AFFINITY", "MKL_NUM_THREADS")
_RELAUNCHED = "MNIST_BENCH_ALLOCATOR_PRELOADED"  # set in the relaunched process: never relaunch twice


def library_path(allocator: str) -> Path | None:
    """Where a preloaded allocator's shared library is on this machine (None: not installed)."""
    name = PRELOADED[allocator][0]
    for d in _LIB_DIRS:
        if (Path(d) / name).is_file():
            return Path(d) / name
    found = ctypes.util.find_library(name.split(".so")[0].removeprefix("lib"))
    return Path(found) if found and Path(found).is_absolute() else None


def check_available(allocator: str) -> None:
    """Refuse an allocator that cannot be had here, naming what to install (a ConfigError-like BenchError)."""
    if allocator not in ALLOCATORS:
        raise BenchError(f"allocator must be one of {', '.join(ALLOCATORS)}; got {allocator!r}")
    if allocator in PRELOADED and library_path(allocator) is None:
        lib, package = PRELOADED[allocator]
        raise BenchError(f"allocator {allocator}: {lib} is not installed here (Debian: apt-get install {package}); "
                         f"use --allocator {' or '.join(a for a in ALLOCATORS if a not in PRELOADED)} instead")
    if allocator == "tuned" and not _is_glibc():
        raise BenchError(f"allocator tuned sets glibc's malloc thresholds, and this C library is "
                         f"{platform.libc_ver()[0] or 'not glibc'}; use --allocator system")


def _is_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def loaded(allocator: str) -> bool:
    """Whether a preloaded allocator is mapped into this process."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return PRELOADED[allocator][0].split(".so")[0] in maps


def needs_relaunch(allocator: str) -> bool:
    """A preloaded allocator must be in the process from its start: a process without it runs the
    command again in a child that has it (``relaunch``)."""
    return allocator in PRELOADED and not loaded(allocator) and not os.environ.get(_RELAUNCHED)


def relaunch(allocator: str, argv: list[str]) -> int:
    """Run ``mnist-bench argv`` in a fresh process with the allocator preloaded; its exit code."""
    env = {**os.environ, _RELAUNCHED: allocator,
           "LD_PRELOAD": " ".join(filter(None, [str(library_path(allocator)), os.environ.get("LD_PRELOAD")]))}
    proc = subprocess.Popen([sys.executable, "-m", "bench", *argv], env=child_env(env))
    wait_for(proc, forward=True)  # a stop asked of this process is the child's, which keeps its cells
    return proc.returncode


def enter(allocator: str, argv: list[str]) -> int | None:
    """A command's way into the allocator's state, taken once before anything runs: refused where
    it cannot be had, a preloaded allocator by running the command again in a child that has it
    (its exit code), else applied here (None)."""
    check_available(allocator)
    if needs_relaunch(allocator):
        return relaunch(allocator, argv)
    _apply(allocator)
    return None


_APPLIED: set[str] = set()  # the allocator state this process is in, once applied


def apply(allocator: str) -> None:
    """Put this process (and, through the environment, the processes it starts) in the allocator's
    state, once per process (a run started through ``enter`` finds it done)."""
    if allocator not in _APPLIED:
        check_available(allocator)
        _apply(allocator)


def _apply(allocator: str) -> None:
    """``tuned``: glibc's mmap and trim thresholds fixed (``mallopt``; fixing either also stops
    glibc moving them). ``system``: nothing changed. A preloaded one is there from start."""
    if allocator == "tuned":
        libc = ctypes.CDLL("libc.so.6")
        for key, value in TUNED.items():
            if libc.mallopt(_MALLOPT[key], value) != 1:
                raise BenchError(f"glibc refused mallopt({key}={value})")
            os.environ[_TUNED_ENV[key]] = str(value)
    elif allocator in PRELOADED and not loaded(allocator):
        raise BenchError(f"allocator {allocator} must be preloaded at start: run through mnist-bench, which does so")
    _APPLIED.add(allocator)


def describe(allocator: str) -> dict:
    """The ``process_state`` record of ``meta.json``: the allocator and its settings, OpenMP's
    library and settings, and the thread counts, as this process has them."""
    import torch

    settings: dict = {}
    if allocator == "tuned":
        settings = dict(TUNED)
    elif allocator == "system":
        settings = {v: os.environ[v] for v in _TUNED_ENV.values() if v in os.environ} or {"thresholds": "glibc's "
                                                                                          "dynamic defaults"}
    library = (str(library_path(allocator)) if allocator in PRELOADED else
               f"glibc {platform.libc_ver()[1]}" if _is_glibc() else platform.libc_ver()[0] or "unknown")
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return {"allocator": allocator, "allocator_library": library, "allocator_settings": settings,
            "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "openmp_library": _openmp_library(), "openmp_env": {k: os.environ[k] for k in OPENMP_ENV
                                                                if k in os.environ},
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "cpus_allowed": affinity}


def _openmp_library() -> str:
    """The OpenMP runtime mapped into this process (GNU libgomp, Intel's libiomp5 or LLVM's libomp)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    found = sorted({Path(line.split()[-1]).name for line in maps.splitlines()
                    if any(k in line for k in ("libgomp", "libiomp", "libomp"))})
    return ", ".join(found) or "none loaded"


def summary_line(state: dict) -> str:
    """One line for the environment table."""
    settings = state.get("allocator_settings") or {}
    shown = ", ".join(f"{k}={_bytes(v)}" for k, v in settings.items())
    omp = ", ".join(f"{k}={v}" for k, v in (state.get("openmp_env") or {}).items()) or "OpenMP defaults"
    return (f"{state.get('allocator', '?')} ({state.get('allocator_library', '?')}{'; ' + shown if shown else ''}); "
            f"{state.get('openmp_library', '?')}: {omp}; torch threads {state.get('torch_threads', '?')}, "
            f"interop {state.get('torch_interop_threads', '?')}, CPUs allowed {state.get('cpus_allowed', '?')}")


def _bytes(v) -> str:
    return f"{v // MIB} MiB" if isinstance(v, int) and v >= MIB else str(v)

