"""pytest-benchmark JSON (``--benchmark-json`` or ``.benchmarks/*/*.json`` from autosave) read into
the same tables as a native run, so the report renders both alike (a mixed set too)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench import BenchError
from bench.measure.figures import speed_figures
from bench.measure.stats import summarize
from bench.storage.results import RunTables


def read_benchmark_json(path: Path) -> RunTables:
    """One pytest-benchmark file as a run; a file of another shape is one BenchError naming it."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: not a pytest-benchmark JSON file ({str(e).splitlines()[0][:160]})") from None
    try:
        return _tables(path, doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as e:
        raise BenchError(f"{path}: not a pytest-benchmark JSON file of this suite ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else 'wrong shape'})") from None


def _tables(path: Path, doc) -> RunTables:
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise ValueError("no 'benchmarks' list at the top level")
    benchmarks = doc["benchmarks"]
    run_id = f"pytest-benchmark:{path.stem}"
    rows, timings = [], []
    for b in benchmarks:
        info = b.get("extra_info", {})
        if "backend" not in info:
            continue  # a benchmark from another suite
        st = b["stats"]
        if not isinstance(st, dict):
            raise TypeError(f"benchmark {b.get('name')!r}: 'stats' is not an object")
        bs = int(info.get("batch_size", 1))
        if bs <= 0:
            raise ValueError(f"benchmark {b.get('name')!r}: batch_size {bs}")
        # raw round times are in the file when the run kept them (the default); else use its summary
        data = st.get("data")
        if data is not None:
            data = [float(t) for t in data]
        row = summarize(data) if data else {
            "n_samples": st["rounds"], "mean_latency_ms": st["mean"] * 1e3, "std_latency_ms": st["stddev"] * 1e3,
            "min_latency_ms": st["min"] * 1e3, "p50_latency_ms": st["median"] * 1e3, "p90_latency_ms": np.nan,
            "p99_latency_ms": np.nan, "iqr_latency_ms": st["iqr"] * 1e3, "cv": st["stddev"] / st["mean"]}
        phase = "train" if info.get("phase") == "train" else "infer"
        # each pytest-benchmark round (one call) is a round: the cell's speed is the one definition's
        row.update(speed_figures(np.asarray(data or [st["median"]], dtype=float) / bs, phase))
        if phase == "train":
            row["step_p50_ms"] = row["p50_latency_ms"]
            # a training step is not an inference call: keep only its throughput in training columns
            for k in ("p50_latency_ms", "p90_latency_ms", "p99_latency_ms"):
                row.pop(k)
        # each pytest-benchmark round (one call) is a round of its own for compare
        timings += [{"run_id": run_id, "cell_id": b["name"], "round": i, "process": 0, "call": 0, "seconds": t,
                     "samples": bs} for i, t in enumerate(data or [])]
        rows.append({"run_id": run_id, "cell_id": b["name"], "status": "ok", "reason": "", "source": "pytest-benchmark",
                     **{k: v for k, v in info.items() if k not in ("samples_per_s",)}, **row})
    if not rows:
        raise BenchError(f"{path}: no mnist-bench suite results in this pytest-benchmark file")
    machine = doc.get("machine_info", {})
    commit = doc.get("commit_info", {})
    meta = {"run_id": run_id, "start_time": doc.get("datetime"), "status": "complete",
            "hostname": machine.get("node"), "cpu_model": (machine.get("cpu") or {}).get("brand_raw"),
            "cpu_count": (machine.get("cpu") or {}).get("count"), "python": machine.get("python_version"),
            "torch": rows[0].get("torch"), "torch_threads": rows[0].get("threads"),
            "git_commit": commit.get("id"), "command_line": f"pytest-benchmark {doc.get('version', '')}"}
    tables = {"summary": pd.DataFrame(rows)}
    if timings:
        tables["timings"] = pd.DataFrame(timings)
    return RunTables(meta={run_id: meta}, tables=tables, run_dirs=[])
