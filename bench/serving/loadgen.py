"""Driving LoadGen: one test (a scenario in one mode) against a System Under Test, its logs kept in
a folder, its result read from LoadGen's detail log (one JSON record per line) and per-sample
timings from its trace. LoadGen is imported on first use; ``unavailable_reason`` says why not."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.plumbing.lazy import LazyModule

lg = LazyModule("mlperf_loadgen")  # imported on first use: the harness runs without LoadGen

SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
_LG_NAMES = {"single-stream": "SingleStream", "multi-stream": "MultiStream", "server": "Server",
             "offline": "Offline"}
MULTI_STREAM_SAMPLES = 8  # samples per MultiStream query, as MLPerf Inference sets it
LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")  # kept in the run folder


def unavailable_reason() -> str | None:
    if importlib.util.find_spec("mlperf_loadgen") is None:
        return "mlcommons-loadgen not installed (pip install mlcommons-loadgen)"
    return None


@dataclass(frozen=True)
class TestSpec:
    """One LoadGen test: what LoadGen is asked for."""

    scenario: str  # one of SCENARIOS
    accuracy: bool = False  # AccuracyOnly (every sample once, outputs logged) instead of PerformanceOnly
    min_duration_s: float = 0.5
    target_qps: float | None = None  # Server: the Poisson arrival rate
    latency_bound_ns: int | None = None  # Server: the p99 bound
    expected_latency_ns: int | None = None  # SingleStream / MultiStream: sizes the queries LoadGen generates
    expected_qps: float | None = None  # Offline: sizes the one query
    min_queries: int = 64
    trace: bool = False  # keep LoadGen's per-sample trace (read for the latency breakdown, then dropped)
    coalesce: bool = False  # Server: LoadGen hands queries that are due together over in one call


def run_test(issue: Callable, flush: Callable, n_samples: int, spec: TestSpec, log_dir: Path) -> dict:
    """Run one LoadGen test against ``issue`` (LoadGen's issue_queries callback) over a sample
    library of ``n_samples``; returns LoadGen's result record (``result_*`` keys and the
    effective settings) read from its detail log in ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, _LG_NAMES[spec.scenario])
    settings.mode = lg.TestMode.AccuracyOnly if spec.accuracy else lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(spec.min_duration_s * 1000)
    settings.max_duration_ms = int(spec.min_duration_s * 1000 * 20)
    settings.min_query_count = spec.min_queries
    if spec.scenario == "server":
        settings.server_target_qps = float(spec.target_qps)
        settings.server_target_latency_ns = int(spec.latency_bound_ns)
        settings.server_coalesce_queries = spec.coalesce
    elif spec.scenario == "offline":
        settings.offline_expected_qps = float(spec.expected_qps or 1000.0)
    elif spec.scenario == "single-stream":
        settings.single_stream_expected_latency_ns = int(spec.expected_latency_ns or 1_000_000)
    else:
        settings.multi_stream_samples_per_query = MULTI_STREAM_SAMPLES
        settings.multi_stream_expected_latency_ns = int(spec.expected_latency_ns or 1_000_000)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    log.log_output.copy_detail_to_stdout = False
    log.enable_trace = spec.trace
    sut = lg.ConstructSUT(issue, flush)
    qsl = lg.ConstructQSL(n_samples, n_samples, lambda _: None, lambda _: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return read_detail(log_dir / "mlperf_log_detail.txt")


def complete(samples, classes) -> None:
    """Answer LoadGen: each sample's predicted class as 4 bytes (int32), read by the accuracy check."""
    classes = np.ascontiguousarray(classes, dtype=np.int32)
    base = classes.ctypes.data
    lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, base + 4 * i, 4) for i, s in enumerate(samples)])
    # LoadGen copies what it logs before it returns, so ``classes`` may go after this


def read_detail(path: Path) -> dict:
    """LoadGen's detail log as {key: value} (the last record of a key wins)."""
    out = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                record = json.loads(line[len(":::MLLOG "):])
            except ValueError:
                continue
            out[record.get("key")] = record.get("value")
    return out


def result_row(detail: dict) -> dict:
    """The figures of one test in the harness's units: VALID or INVALID with LoadGen's reason, its
    achieved rate, the latency percentiles it reports (ms), its query count."""
    def ms(key: str) -> float:
        v = detail.get(key)
        return float(v) / 1e6 if isinstance(v, (int, float)) else float("nan")

    rate = next((detail[k] for k in ("result_completed_samples_per_sec", "result_samples_per_second",
                                     "result_qps_without_loadgen_overhead") if k in detail), float("nan"))
    reason = detail.get("result_invalid_reason") or ""
    if detail.get("result_validity") == "INVALID" and not reason:
        unmet = [k.removeprefix("result_").removesuffix("_met") for k in
                 ("result_min_duration_met", "result_min_queries_met", "result_perf_constraints_met",
                  "early_stopping_met") if detail.get(k) is False]
        reason = "not met: " + ", ".join(unmet) if unmet else ""
    per_query = "result_99.00_percentile_per_query_latency_ns" in detail  # MultiStream: a query of 8 samples
    return {
        "valid": detail.get("result_validity") == "VALID", "loadgen_reason": reason,
        "achieved_qps": float(rate), "scheduled_qps": float(detail.get("result_scheduled_samples_per_sec",
                                                                          float("nan"))),
        "p50_ms": ms("result_50.00_percentile_per_query_latency_ns" if per_query else
                     "result_50.00_percentile_latency_ns"),
        "p90_ms": ms("result_90.00_percentile_per_query_latency_ns" if per_query else
                     "result_90.00_percentile_latency_ns"),
        "p99_ms": ms("result_99.00_percentile_per_query_latency_ns" if per_query else
                     "result_99.00_percentile_latency_ns"),
        "max_ms": ms("result_max_query_latency_ns" if per_query else "result_max_latency_ns"),
        "queries": int(detail.get("result_query_count", 0) or 0),
    }


def trace_samples(path: Path) -> pd.DataFrame:
    """Per sample from LoadGen's trace, in the order LoadGen issued them: ``sample_seq``, the
    sample's index, LoadGen's issue delay (from its scheduled arrival to the issue call) and its
    latency (scheduled arrival to completion), in ns. The trace has one event per line (some of
    LoadGen's own lines are not valid JSON: they are skipped)."""
    columns = ["sample_seq", "sample_idx", "issue_delay_ns", "latency_ns"]
    rows = []
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return pd.DataFrame(columns=columns)
    for line in lines:
        if not line.startswith('{"name":"Sample"') or '"ph":"b"' not in line:
            continue
        try:
            a = json.loads(line.rstrip(",")).get("args", {})
        except ValueError:
            continue
        rows.append((a.get("sample_seq"), a.get("sample_idx"), a.get("issue_start_ns"), a.get("complete_ns")))
    return pd.DataFrame(rows, columns=columns)
