"""Metadata carried by every run: versions, machine, threads, seed, commit, command line."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.plumbing.lazy import torch  # imported on first use: reading a meta.json needs no torch


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def collect_metadata(config=None, argv: list[str] | None = None) -> dict:
    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "onnx": _version("onnx"),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda_available": torch.cuda.is_available(),
        "gpu_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
        "command_line": " ".join(argv if argv is not None else sys.argv),
    }
    if config is not None:
        from bench.measure.process_state import describe

        meta["process_state"] = describe(config.allocator)
        meta["seed"] = config.seed
        meta["config"] = _jsonable(asdict(config))
    return meta


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


ENVIRONMENT = ["start_time", "end_time", "status", "hostname", "cpu_model", "cpu_count", "gpu_name", "torch_threads",
               "process_state",
               "python", "torch", "torchvision", "onnxruntime", "numpy", "cuda_version", "seed", "git_commit",
               "data_source", "command_line"]


def environment(meta: dict[str, dict]):
    """Per environment field, its value in each run (``meta``: run id -> meta.json)."""
    import pandas as pd

    from bench.measure.process_state import summary_line

    def shown(m: dict, k: str) -> str:
        if k == "process_state" and isinstance(m.get(k), dict):
            return summary_line(m[k])
        return str(m.get(k, "–" if k != "process_state" else "not recorded"))

    return pd.DataFrame([{"field": k, **{rid: shown(m, k) for rid, m in meta.items()}} for k in ENVIRONMENT])
