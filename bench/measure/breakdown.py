"""Where the time of one call goes: a pass of its own after the timing (never inside a timed
round). The call is timed again plainly (its wall time, and the page faults it takes), then run
under the engine's own profiler (``Prepared.operators``: ONNX Runtime's per-node profile;
otherwise ``torch.profiler``'s operators by self time), and the operators are grouped into a few
categories a user can act on. What the operators do not account for is the framework's overhead
(the plain call's wall time less its operators: Python, dispatch, the session's own work), so the
categories sum to the plain call. A profiler costs time for every operator it records (about a
microsecond each here: a 50 µs call of two dozen operators takes twice as long profiled): what the
profiled call took beyond the plain one is spread evenly over the operators it recorded and taken
off each (``profiler_s_per_operator``). The table keeps the plain call (``wall_s_per_call``), the
profiled one and the rounds' median call (``timed_s_per_call``); where the plain call differs from
the timed one by more than ``AGREEMENT``, the report says so instead of reading the shares as the
timed call's."""

from __future__ import annotations

import re
import resource
import statistics
import time
from collections.abc import Callable

import pandas as pd

from bench.measure.clocks import clock_for, time_calls
from bench.plumbing import console
from bench.plumbing.lazy import torch

MATMUL, ELEMENTWISE, CASTS, MEMORY, OTHER, OVERHEAD = (
    "matmul & conv", "elementwise & activation", "casts & layout", "memory", "other operators", "framework overhead")
CATEGORIES = (MATMUL, ELEMENTWISE, CASTS, MEMORY, OTHER, OVERHEAD)
AGREEMENT = 0.15  # the pass's call within +-15% of the timed call: the breakdown describes that call
TOP_OPERATORS = 5
PASS_BUDGET_S = 0.08  # seconds of calls each way (plain, profiled) per cell, at least MIN_CALLS calls
MIN_CALLS, MAX_CALLS = 5, 400

_RULES = [  # (category, pattern on the operator's name without its namespace, lower case), first match wins
    # torch.compile: the compiled graph's own kernels (inductor's fused loops; its matmuls stay aten
    # operators) are recorded as one "Call CompiledFxGraph" record; its entry and guards are overhead
    (ELEMENTWISE, r"compiledfxgraph"),
    (OVERHEAD, r"torch-compiled region|dynamo|cache lookup|pregraph|profilerstep|record_function"),
    (CASTS, r"^(to|_to_copy|copy_|cast|contiguous|reshape|view|_reshape_alias|flatten|unflatten|permute|transpose"
            r"|t|expand|as_strided|unsqueeze|squeeze|clone|_unsafe_view|identity|quantizelinear|dequantizelinear"
            r"|dynamicquantizelinear|quantize_per_tensor|dequantize|reorder.*)$"),
    (MEMORY, r"^(empty|empty_strided|empty_like|resize_|zeros|zeros_like|fill_|zero_|new_empty.*|memcpy.*"
             r"|memset.*)$"),
    (MATMUL, r"addmm|^mm$|matmul|linear|conv|bmm|gemm|qlinear|integer|mkldnn"),
    (ELEMENTWISE, r"relu|add|mul|pool|dropout|softmax|sigmoid|tanh|gelu|fused|clamp|sub|div|norm|max|mean|sum"
                  r"|exp|log|where|threshold"),
]


def category_of(operator: str) -> str:
    name = operator.rsplit("::", 1)[-1].lower()
    return next((category for category, pattern in _RULES if re.search(pattern, name)), OTHER)


def torch_operators(predict: Callable, x, calls: int, device: str) -> tuple[dict[str, tuple[float, float]], float]:
    """Per operator, its self seconds per call and its records per call over ``calls`` calls under
    ``torch.profiler`` (on CUDA the kernels' device time), and the profiled call's wall seconds."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    predict(x)
    with console.quiet_stdio(), profile(activities=activities) as prof:  # kineto writes to fd 2 itself
        start = time.perf_counter()
        for _ in range(calls):
            predict(x)
        if device == "cuda":
            torch.cuda.synchronize()
        profiled = (time.perf_counter() - start) / calls
    out: dict[str, tuple[float, float]] = {}
    for e in prof.key_averages():
        us = e.self_device_time_total if device == "cuda" else e.self_cpu_time_total
        seconds, count = out.get(e.key, (0.0, 0.0))
        out[e.key] = (seconds + us / 1e6 / calls, count + e.count / calls)
    return out, profiled


def _calls_for(timed_s: float) -> int:
    return int(min(MAX_CALLS, max(MIN_CALLS, PASS_BUDGET_S / max(timed_s, 1e-7))))


def breakdown(prepared, x, timed_s: float) -> pd.DataFrame:
    """One call of ``prepared.predict(x)`` broken down (``timed_s``: the rounds' median call): a row
    per category (``kind`` "category", seconds per call and share of the call) and the top
    operators by self time (``kind`` "operator"), each with the pass's figures."""
    device = prepared.clock_device
    calls = _calls_for(timed_s)
    predict = prepared.predict
    for _ in range(3):  # warm again: the memory pass before this one handed the engine's caches back
        predict(x)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds, _ = time_calls(lambda: predict(x), clock_for(device), calls)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / calls
    wall = statistics.median(seconds)
    hook = getattr(prepared, "operators", None)
    recorded, profiled = hook(x, calls) if hook is not None else torch_operators(predict, x, calls, device)
    records = sum(n for _, n in recorded.values())
    cost = max(0.0, profiled - wall) / records if records else 0.0  # the profiler's, per record
    ops = {name: max(0.0, s - n * cost) for name, (s, n) in recorded.items()}
    ops = {name: s for name, s in ops.items() if s > 0}
    per_category = dict.fromkeys(CATEGORIES, 0.0)
    for name, s in ops.items():
        per_category[category_of(name)] += s
    operators_s = sum(v for k, v in per_category.items() if k != OVERHEAD)
    total = max(wall, operators_s)
    per_category[OVERHEAD] += total - operators_s
    common = {"calls": calls, "wall_s_per_call": total, "profiled_s_per_call": profiled,
              "profiler_s_per_operator": cost, "timed_s_per_call": timed_s,
              "wall_vs_timed": total / timed_s if timed_s > 0 else float("nan"), "page_faults_per_call": faults}
    rows = [{"kind": "category", "name": c, "category": c, "seconds_per_call": s,
             "share": s / total if total > 0 else float("nan"), **common} for c, s in per_category.items()]
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:TOP_OPERATORS]
    rows += [{"kind": "operator", "name": n, "category": category_of(n), "seconds_per_call": s,
              "share": s / total if total > 0 else float("nan"), **common} for n, s in top]
    return pd.DataFrame(rows)
