"""Memory, one definition each (see README "Memory numbers"):

- ``peak_rss_bytes``: the process's resident-set high-water mark during the cell. On Linux the
  mark is reset at the start of each cell (``/proc/self/clear_refs``), so it is per cell
  (``rss_scope == "cell"``); elsewhere it is the process lifetime high-water (``"process"``).
- ``cuda_max_allocated_bytes`` / ``cuda_max_reserved_bytes``: ``torch.cuda.max_memory_allocated``
  (tensors alive at the peak) and ``max_memory_reserved`` (what the caching allocator held),
  both reset at the start of the cell.
- ``ort_session_rss_bytes``: growth of the process RSS across creating the ONNX Runtime session
  and its first inference (ORT exposes no allocator statistics for the CPU provider).
- ``rss_growth_bytes``: what the cell itself cost the process: its RSS high-water minus the RSS
  at its start, after a garbage collection and ``malloc_trim`` handed freed heap back to the
  system, so every cell starts from the same kind of baseline and memory freed by the cell
  before is not reused unseen. ``cuda_growth_bytes``: the same for the CUDA allocator (peak
  allocated minus allocated at the start).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
from pathlib import Path

from bench.plumbing.lazy import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def current_rss_bytes() -> int:
    return _status_kb("VmRSS") * 1024 if _STATUS.exists() else 0


def _status_kb(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _trim_heap() -> None:
    """Return freed memory to the system (glibc's ``malloc_trim``; elsewhere a collection only)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _reset_rss_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_bytes() -> int:
    if _STATUS.exists():
        return _status_kb("VmHWM") * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


class CellMemory:
    """Context manager measuring one cell's memory peaks; read ``.values`` after exit."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.values: dict[str, object] = {}

    def __enter__(self) -> CellMemory:
        _trim_heap()
        self._scope = "cell" if _reset_rss_peak() else "process"
        self._start = current_rss_bytes()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        peak = _rss_peak_bytes()
        self.values = {"peak_rss_bytes": peak, "rss_scope": self._scope}
        if self._scope == "cell" and self._start:
            self.values["rss_growth_bytes"] = max(0, peak - self._start)
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.values["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
            self.values["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved()
            self.values["cuda_growth_bytes"] = max(0, torch.cuda.max_memory_allocated() - self._cuda_start)
