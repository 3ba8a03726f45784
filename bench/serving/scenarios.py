"""The deployment scenarios of one prepared backend, driven by LoadGen: AccuracyOnly once (its
logged outputs against the harness's own predictions), SingleStream, MultiStream, Offline, and the
Server search for the highest arrival rate LoadGen calls VALID under the latency bound, with and
without dynamic batching; then where a served query's time goes, at the rate the search found.

These are shortened runs (seconds, not MLPerf's ten minutes): figures of this harness, never
MLPerf submission results."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.serving.loadgen import LOG_FILES, MULTI_STREAM_SAMPLES, TestSpec, result_row, run_test, trace_samples
from bench.serving.sut import BatchingSUT, DirectSUT, ServedModel


class ScenarioFailed(RuntimeError):
    """The backend raised while serving one of LoadGen's tests: that backend's scenarios end there.
    ``rows``: the scenario rows of the tests done; a fixed scenario's test whose calls raised ran to
    its end and is the last row (not VALID, with the reason); a Server search's tests are not kept."""

    def __init__(self, reason: str, scenario: str, rows: pd.DataFrame) -> None:
        super().__init__(f"the backend raised while serving LoadGen's queries ({scenario}): {reason}")
        self.scenario, self.rows = scenario, rows


@dataclass(frozen=True)
class ServePlan:
    scenarios: tuple[str, ...]
    seconds: float  # LoadGen's minimum duration of each performance test
    latency_bound_ms: float  # Server: p99 bound
    max_batch: int  # dynamic batching: most samples per call
    batch_timeout_us: int  # dynamic batching: longest wait of the oldest queued sample
    server_steps: int  # LoadGen Server tests per search
    offline_batch: int  # Offline: the SUT's batch (the sweep's fastest)
    accuracy_batch: int = 1000  # the chunks the harness's own predictions are computed in


def search_server(run: Callable[[float], dict], start_qps: float, steps: int) -> list[dict]:
    """The highest target QPS that ``run`` (one LoadGen Server test) reports VALID: from
    ``start_qps``, doubling while VALID and halving while INVALID until the edge is bracketed, then
    halving the bracket geometrically. Every test is one row (``step``, ``target_qps`` and its
    result); the answer is the largest VALID target."""
    points, low, high, qps = [], None, None, start_qps
    for step in range(steps):
        result = run(qps)
        points.append({"step": step, "target_qps": qps, **result})
        if result["valid"]:
            low = qps if low is None else max(low, qps)
        else:
            high = qps if high is None else min(high, qps)
        if low is None:
            qps = qps / 2
        elif high is None:
            qps = qps * 2
        else:
            qps = math.sqrt(low * high)
    return points


def max_valid_qps(points: list[dict]) -> float:
    valid = [p["target_qps"] for p in points if p["valid"]]
    return max(valid) if valid else float("nan")


def _call_seconds(served: ServedModel, batch: int, calls: int = 20) -> float:
    """The median time of one call at ``batch`` (after two untimed calls): sizes LoadGen's queries."""
    idx = list(range(batch))
    for _ in range(2):
        served.classes(idx)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        served.classes(idx)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class BackendScenarios:
    """The scenarios of one backend; ``log_root`` keeps LoadGen's summary and detail logs per test."""

    def __init__(self, served: ServedModel, labels: torch.Tensor, plan: ServePlan, log_root: Path) -> None:
        self.served, self.labels, self.plan, self.log_root = served, labels, plan, log_root
        self.n = len(labels)
        self.tests = 0
        self.failure: str | None = None
        self._call_s: dict[int, float] = {}

    def call_seconds(self, batch: int) -> float:
        """A call's median time at ``batch``, measured once per backend (it sizes several tests)."""
        if batch not in self._call_s:
            self._call_s[batch] = _call_seconds(self.served, batch)
        return self._call_s[batch]

    def _run(self, sut, spec: TestSpec, name: str) -> dict:
        if self.failure is not None:  # the backend raised in an earlier test: no more tests of it
            raise RuntimeError(self.failure)
        log_dir = self.log_root / f"{self.tests:02d}-{name}"
        self.tests += 1
        try:
            detail = run_test(sut.issue, sut.flush, self.n, spec, log_dir)
        finally:
            if isinstance(sut, BatchingSUT):
                sut.stop()
        keep = {*LOG_FILES, *(["mlperf_log_trace.json"] if spec.trace else []),
                *(["mlperf_log_accuracy.json"] if spec.accuracy else [])}  # the last two: read, then dropped
        for f in log_dir.iterdir():
            if f.name not in keep:
                f.unlink()
        self.failure = self.failure or sut.failure
        row = {**result_row(detail), "log": log_dir.name}
        if sut.failure is not None:  # the test ran to its end, the failed calls answered with no class
            row.update(valid=False, loadgen_reason=f"the backend raised: {sut.failure}")
        return row

    def accuracy(self) -> dict:
        """AccuracyOnly: every test image once (Offline, in the harness's chunks), the classes
        LoadGen logged against the labels and against the harness's own predictions."""
        sut = DirectSUT(self.served, aligned=self.plan.accuracy_batch)
        row = self._run(sut, TestSpec("offline", accuracy=True, expected_qps=1.0, min_duration_s=0.0), "accuracy")
        logged = json.loads((self.log_root / row["log"] / "mlperf_log_accuracy.json").read_text())
        (self.log_root / row["log"] / "mlperf_log_accuracy.json").unlink()  # 10,000 records, read here
        order = np.array([r["qsl_idx"] for r in logged])
        classes = np.array([int.from_bytes(bytes.fromhex(r["data"]), "little", signed=True) for r in logged])
        labels = self.labels.cpu().numpy()
        harness = torch.cat([torch.from_numpy(self.served.classes(list(range(i, min(i + self.plan.accuracy_batch,
                                                                                 self.n)))))
                             for i in range(0, self.n, self.plan.accuracy_batch)]).numpy()
        return {"loadgen_accuracy": float((classes == labels[order]).mean()) if len(order) else float("nan"),
                "harness_accuracy": float((harness == labels).mean()),
                "loadgen_samples": int(len(set(order.tolist()))),
                "accuracy_matches": bool(len(order) == self.n and (classes == harness[order]).all())}

    def fixed(self, scenario: str) -> dict:
        """SingleStream, MultiStream or Offline: one test, sized from the backend's own call time."""
        p = self.plan
        if scenario == "offline":
            rate = p.offline_batch / self.call_seconds(p.offline_batch)
            spec, sut = TestSpec("offline", min_duration_s=p.seconds, expected_qps=rate), DirectSUT(
                self.served, p.offline_batch)
        else:
            batch = 1 if scenario == "single-stream" else MULTI_STREAM_SAMPLES
            expected = int(self.call_seconds(batch) * 1e9)
            # MultiStream's p99 over queries needs 662 of them for LoadGen's early stopping to hold
            spec = TestSpec(scenario, min_duration_s=p.seconds, expected_latency_ns=expected,
                            min_queries=64 if scenario == "single-stream" else 662)
            sut = DirectSUT(self.served, batch)
        return {"scenario": scenario, "batching": False, **self._run(sut, spec, scenario)}

    def _server(self, qps: float, batching: bool, trace: bool = False) -> tuple[dict, DirectSUT | BatchingSUT]:
        """One Server test: its result row, and the SUT with its per-sample records."""
        p = self.plan
        sut = BatchingSUT(self.served, p.max_batch, p.batch_timeout_us) if batching else DirectSUT(self.served)
        spec = TestSpec("server", min_duration_s=p.seconds, target_qps=qps,
                        latency_bound_ns=int(p.latency_bound_ms * 1e6), trace=trace, coalesce=batching)
        return self._run(sut, spec, f"server-{'batching' if batching else 'direct'}-{qps:.0f}qps"), sut

    def server(self, batching: bool, start: float | None = None) -> list[dict]:
        """One search; ``start`` defaults to half the rate one caller could sustain (a call, plus
        LoadGen's and the callback's ~50 us). Batching searches start from twice the direct one's
        answer, so their tests go to the edge rather than to finding it."""
        start = start or 0.5 / (self.call_seconds(1) + 50e-6)
        points = search_server(lambda q: self._server(q, batching)[0], start, self.plan.server_steps)
        return [{"scenario": "server", "batching": batching, **pt} for pt in points]

    def breakdown(self, qps: float) -> pd.DataFrame:
        """Where each served query's time goes at ``qps`` (Server, no batching): LoadGen's issue
        delay (its scheduled arrival to its issue call: the queue behind the previous queries), the
        hand-over to the call, the call itself, the answer, from LoadGen's trace and the harness's
        own clock; a call over 10x the median call is marked a stall."""
        row, sut = self._server(qps, batching=False, trace=True)
        log_dir = self.log_root / row["log"]
        trace = trace_samples(log_dir / "mlperf_log_trace.json")
        (log_dir / "mlperf_log_trace.json").unlink(missing_ok=True)
        records = pd.DataFrame(sut.records, columns=["sample_seq", "sample_idx", "issued_ns", "start_ns",
                                                             "end_ns", "answered_ns", "batch"])
        d = trace.merge(records, on=["sample_seq", "sample_idx"])  # the same sample by LoadGen's and our count
        out = pd.DataFrame({"sample_seq": d.sample_seq, "latency_ms": d.latency_ns / 1e6,
                            "issue_delay_ms": d.issue_delay_ns / 1e6,
                            "handover_ms": (d.start_ns - d.issued_ns) / 1e6, "call_ms": (d.end_ns - d.start_ns) / 1e6,
                            "answer_ms": (d.answered_ns - d.end_ns) / 1e6})
        out["other_ms"] = out.latency_ms - out[["issue_delay_ms", "handover_ms", "call_ms", "answer_ms"]].sum(axis=1)
        out["stalled_call"] = out.call_ms > 10 * out.call_ms.median()
        return out.assign(target_qps=qps, valid=row["valid"], p99_ms=row["p99_ms"])


def serve_tables(served: ServedModel, labels: torch.Tensor, plan: ServePlan, log_root: Path,
                 progress: Callable[[str, list[dict]], None] = lambda *_: None) -> dict[str, pd.DataFrame]:
    """Every planned scenario of one backend: the ``scenarios`` table (one row per LoadGen test),
    the ``served`` breakdown and the cell's summary figures. ``progress(scenario, rows)`` is told
    each scenario before it starts, with the rows of the tests done."""
    if log_root.exists():
        shutil.rmtree(log_root)
    s = BackendScenarios(served, labels, plan, log_root)
    rows: list[dict] = []
    scenario = "accuracy"

    def checked(result):
        if s.failure is not None:  # the backend raised inside a LoadGen test: its row (not VALID) goes too
            rows.extend([result] if isinstance(result, dict) and "log" in result else [])
            raise RuntimeError(s.failure)
        return result

    try:
        progress(scenario, rows)
        summary = checked(s.accuracy())
        for scenario in plan.scenarios:
            progress(scenario, rows)
            if scenario == "server":
                rows += checked(s.server(batching=False))
                best = max_valid_qps([r for r in rows if r["scenario"] == "server" and not r["batching"]])
                rows += checked(s.server(batching=True, start=2 * best if best == best else None))
            else:
                rows.append(checked(s.fixed(scenario)))
    except Exception as e:  # noqa: BLE001 - the backend's failure ends its scenarios, with what was done
        raise ScenarioFailed(s.failure or f"{type(e).__name__}: {e}".splitlines()[0][:300], scenario,
                             pd.DataFrame(rows)) from e
    tables = {"scenarios": pd.DataFrame(rows)}
    summary.update(scenario_figures(tables["scenarios"]), scenario_seconds=plan.seconds,
                   latency_bound_ms=plan.latency_bound_ms, max_batch=plan.max_batch,
                   batch_timeout_us=plan.batch_timeout_us, offline_batch=plan.offline_batch)
    if "server" in plan.scenarios:  # at the highest VALID rate without batching (else the lowest tried)
        progress("the served queries' breakdown", rows)
        direct = tables["scenarios"].query("scenario == 'server' and not batching")
        valid = direct[direct.valid]
        tables["served"] = checked(s.breakdown(float(valid.target_qps.max() if len(valid) else
                                                     direct.target_qps.min())))
    summary["loadgen_tests"] = s.tests
    return {"summary": pd.DataFrame([summary]), **tables}


def scenario_figures(rows: pd.DataFrame) -> dict:
    """The headline figure of each scenario, as MLPerf states it."""
    out: dict = {}
    if rows.empty:
        return out
    by = {k: g for k, g in rows.groupby(["scenario", "batching"])}
    if ("single-stream", False) in by:
        out["single_stream_p90_ms"] = float(by["single-stream", False].p90_ms.iloc[0])
    if ("multi-stream", False) in by:
        out["multi_stream_p99_ms"] = float(by["multi-stream", False].p99_ms.iloc[0])
    if ("offline", False) in by:
        out["offline_samples_per_s"] = float(by["offline", False].achieved_qps.iloc[0])
    for batching, name in ((False, "server_max_valid_qps"), (True, "server_max_valid_qps_batching")):
        if ("server", batching) in by:
            out[name] = max_valid_qps(by["server", batching].to_dict("records"))
    if "server_max_valid_qps" in out and "server_max_valid_qps_batching" in out:
        out["batching_gain"] = out["server_max_valid_qps_batching"] / out["server_max_valid_qps"]
    out["loadgen_valid_tests"] = int(rows.valid.sum())
    return out
