"""Where the time of one call goes, measured in the state of the calls it explains: its plain calls
are shadow blocks made exactly as its timed blocks, taking their turns among them in the rounds'
balanced order every ``SHADOW_EVERY`` rounds, but kept apart from the timed calls
(``bench.measure.rounds``: the wall time, and the page faults the calls take); then one round of
calls under the engine's own profiler (``Prepared.operators``: ONNX Runtime's per-node profile;
otherwise ``torch.profiler``'s operators by self time), and the operators are grouped into a few
categories a user can act on. What the operators do not account for is the framework's overhead
(the plain call's wall time less its operators: Python, dispatch, the session's own work), so the
categories sum to the plain call. A profiler costs time for every operator it records (about a
microsecond each here: a 50 µs call of two dozen operators takes twice as long profiled): what the
profiled call took beyond the plain one is spread evenly over the operators it recorded and taken
off each (``profiler_s_per_operator``). The table keeps the plain call (``wall_s_per_call``), the
profiled one and the timed call of the same rounds (``timed_s_per_call``); where the plain call differs from
the timed one by more than ``AGREEMENT``, the report says so instead of reading the shares as the
timed call's."""

from __future__ import annotations

import re
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from bench.measure.clocks import clock_for, time_calls
from bench.plumbing import console
from bench.plumbing.lazy import torch

MATMUL, ELEMENTWISE, CASTS, MEMORY, OTHER, OVERHEAD = (
    "matmul & conv", "elementwise & activation", "casts & layout", "memory", "other operators", "framework overhead")
CATEGORIES = (MATMUL, ELEMENTWISE, CASTS, MEMORY, OTHER, OVERHEAD)
STEP_PHASES = ("data", "forward", "backward", "optimizer")  # a training step's (bench.training.breakdown)
AGREEMENT = 0.15  # the pass's call within +-15% of the timed call: the breakdown describes that call
TOP_OPERATORS = 5
PASS_BUDGET_S = 0.08  # seconds of calls each way (plain, profiled) per cell, at least MIN_CALLS calls
PASS_ROUNDS = 3  # a training step's pass: blocks of plain steps, interleaved as the timed blocks
# At most 100 profiled calls: reading a profile back costs more than the calls (torch's key_averages
# grows faster than its records: 0.13 s a look for 100 calls of the MLP at batch 1, 0.90 s for 400),
# and the category shares of 100 calls spread no wider over repeats than those of 400 (largest
# standard deviation of a share over eight cells 0.079 against 0.124; means within 0.02):
# python -m benchmarks.breakdown_calls, docs/results/breakdown_calls.txt.
MIN_CALLS, MAX_CALLS = 5, 100

_RULES = [  # (category, pattern on the operator's name without its namespace, lower case), first match wins
    # torch.compile: the compiled graph's own kernels (inductor's fused loops; its matmuls stay aten
    # operators) are recorded as one "Call CompiledFxGraph" record; its entry and guards are overhead.
    # Autograd's nodes ("AddmmBackward0", "evaluate_function: ...") and an optimizer's step record hold
    # the engine's and Python's own time around the operators they call: overhead too.
    (ELEMENTWISE, r"compiledfxgraph"),
    (OVERHEAD, r"torch-compiled region|dynamo|cache lookup|pregraph|profilerstep|record_function|^optimizer\."
               r"|evaluate_function|backward0$"),
    (CASTS, r"^(to|_to_copy|copy_|cast|contiguous|reshape|view|_reshape_alias|flatten|unflatten|permute|transpose"
            r"|t|expand|as_strided_?|unsqueeze|squeeze|clone|_unsafe_view|identity|quantizelinear|dequantizelinear"
            r"|dynamicquantizelinear|quantize_per_tensor|dequantize|reorder.*|detach|alias|resolve_conj|resolve_neg)$"),
    (MEMORY, r"^(empty|empty_strided|empty_like|resize_|zeros|zeros_like|ones_like|fill_|zero_|new_empty.*|memcpy.*"
             r"|memset.*)$"),
    (MATMUL, r"addmm|^mm$|matmul|linear|conv|bmm|gemm|qlinear|integer|mkldnn"),
    (ELEMENTWISE, r"relu|add|mul|pool|dropout|softmax|sigmoid|tanh|gelu|fused|clamp|sub|div|norm|max|mean|sum"
                  r"|exp|log|where|threshold|sqrt|lerp|pow|neg|reciprocal|bernoulli|loss|scatter|foreach|sign|abs"),
]


def category_of(operator: str) -> str:
    name = operator.rsplit("::", 1)[-1].lower()
    return next((category for category, pattern in _RULES if re.search(pattern, name)), OTHER)


def torch_operators(run: Callable[[], object], calls: int, device: str
                    ) -> tuple[dict[str, tuple[float, float]], float]:
    """Per operator, its self seconds per call and its records per call over ``calls`` calls of
    ``run`` under ``torch.profiler`` (on CUDA the kernels' device time), and the profiled call's wall
    seconds."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    run()
    with console.quiet_stdio(), profile(activities=activities) as prof:  # kineto writes to fd 2 itself
        start = time.perf_counter()
        for _ in range(calls):
            run()
        if device == "cuda":
            torch.cuda.synchronize()
        profiled = (time.perf_counter() - start) / calls
    out: dict[str, tuple[float, float]] = {}
    for e in prof.key_averages():
        us = e.self_device_time_total if device == "cuda" else e.self_cpu_time_total
        seconds, count = out.get(e.key, (0.0, 0.0))
        out[e.key] = (seconds + us / 1e6 / calls, count + e.count / calls)
    return out, profiled


def calls_for(timed_s: float, budget_s: float = PASS_BUDGET_S, most: int = MAX_CALLS) -> int:
    """Calls each way for a call of ``timed_s``: ``budget_s`` of them, MIN_CALLS to ``most``."""
    return int(min(most, max(MIN_CALLS, budget_s / max(timed_s, 1e-7))))


def attributed(recorded: dict[str, tuple[float, float]], profiled: float, wall: float
               ) -> tuple[dict[str, float], float]:
    """Each recorded operator's seconds per call with the profiler's own cost taken off (what the
    profiled call took beyond the plain one ``wall``, spread evenly over the records), and that cost
    per record. Where the operators would still outlast the plain call (the profiled calls ran
    slower than the profiler's cost explains: preempted on a busy machine, or that cost fell
    between the records), each operator keeps its share of the profiled call instead, in the plain
    call's seconds: the categories then sum to no more than the call they explain."""
    records = sum(n for _, n in recorded.values())
    cost = max(0.0, profiled - wall) / records if records else 0.0
    ops = {name: max(0.0, s - n * cost) for name, (s, n) in recorded.items()}
    if sum(ops.values()) > wall > 0:
        scale = wall / max(profiled, sum(s for s, _ in recorded.values()))
        ops = {name: s * scale for name, (s, _) in recorded.items()}
    return {name: s for name, s in ops.items() if s > 0}, cost


def category_rows(ops: dict[str, float], wall: float, common: dict) -> tuple[list[dict], float]:
    """Rows per category (``kind`` "category"; framework overhead: ``wall`` less the operators) and
    per top operator by self time (``kind`` "operator"), each with ``common``; and the call's total
    (``wall``, or the operators' sum where that is larger)."""
    per_category = dict.fromkeys(CATEGORIES, 0.0)
    for name, s in ops.items():
        per_category[category_of(name)] += s
    # the overhead is what the other operators leave of the call (the records of the framework's own
    # regions, such as a compiled region's entry, lie within it: counted once, there)
    operators_s = sum(v for k, v in per_category.items() if k != OVERHEAD)
    total = max(wall, operators_s)
    per_category[OVERHEAD] = total - operators_s

    def share(s: float) -> float:
        return s / total if total > 0 else float("nan")

    rows = [{"kind": "category", "name": c, "category": c, "seconds_per_call": s, "share": share(s), **common}
            for c, s in per_category.items()]
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:TOP_OPERATORS]
    rows += [{"kind": "operator", "name": n, "category": category_of(n), "seconds_per_call": s, "share": share(s),
              **common} for n, s in top]
    return rows, total


@dataclass
class Look:
    """One call's pass: the prepared engine, its input, the timed call it explains (``timed_s``) and
    its plain calls as the pass measured them, by the same estimator (``wall_s``; ``blocks``: how
    many blocks they came in; ``faults``: minor page faults per call)."""

    prepared: object
    x: object
    timed_s: float
    wall_s: float
    blocks: int = 1
    faults: float = float("nan")

    @staticmethod
    def of_rounds(prepared, x, timed: list[dict], shadow: list[dict]) -> Look:
        """The look whose plain calls are shadow blocks among timed blocks (rows of
        ``bench.measure.rounds``): the median of the plain calls against the median of the timed
        calls of the same rounds, those the shadow blocks ran in. Where a busy machine makes whole
        rounds slow, the plain and the timed calls then come from the same rounds, so the pass
        explains the calls beside it rather than those of rounds it did not run in."""
        plain, calls = pd.DataFrame(shadow), pd.DataFrame(timed)
        beside = calls[calls["round"].isin(plain["round"])]
        return Look(prepared, x, float((beside if not beside.empty else calls).seconds.median()),
                    float(plain.seconds.median()), plain["round"].nunique(), float(plain.page_faults_per_call.median()))

    def table(self, calls: int) -> pd.DataFrame:
        """Profiled calls (the engine's own profiler, or torch.profiler's), then the table."""
        predict, x, device = self.prepared.predict, self.x, self.prepared.clock_device
        hook = getattr(self.prepared, "operators", None)
        recorded, profiled = hook(x, calls) if hook is not None else torch_operators(lambda: predict(x), calls, device)
        ops, cost = attributed(recorded, profiled, self.wall_s)
        common = {"calls": calls, "pass_rounds": self.blocks, "profiled_s_per_call": profiled,
                  "profiler_s_per_operator": cost, "timed_s_per_call": self.timed_s,
                  "page_faults_per_call": self.faults}
        rows, total = category_rows(ops, self.wall_s, common)
        return breakdown_table(rows, total, self.timed_s)


def profiled_round(looks: dict[str, Look], order: list[int], on_error: Callable[[str, Exception], None]
                   ) -> dict[str, pd.DataFrame]:
    """Each look's call profiled in one round, in ``order`` (positions in ``looks``), its plain calls
    already timed (the contender's shadow blocks, ``bench.measure.rounds``: made as the timed ones,
    among them). A look whose profiler fails is left out (``on_error(name, exception)``); the others go on."""
    names, out = list(looks), {}
    for i in order:
        look = looks[names[i]]
        try:
            out[names[i]] = look.table(calls_for(look.timed_s))
        except Exception as e:  # noqa: BLE001 - the engine's profiler: its failure costs the cell its breakdown
            on_error(names[i], e)
    return out


def breakdown(prepared, x, timed_s: float) -> pd.DataFrame:
    """One call of ``prepared.predict(x)`` broken down alone (``timed_s``: its timed median call),
    its plain calls timed in one block: a row per category (``kind`` "category", seconds per call
    and share of the call) and the top operators by self time (``kind`` "operator")."""
    calls = calls_for(timed_s)
    for _ in range(3):
        prepared.predict(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds, _ = time_calls(lambda: prepared.predict(x), clock_for(prepared.clock_device), calls)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls
    return Look(prepared, x, timed_s, statistics.median(seconds), 1, faults).table(calls)


def breakdown_table(rows: list[dict], total: float, timed_s: float) -> pd.DataFrame:
    """The rows as the ``time_breakdown`` table: each with the pass's call (``wall_s_per_call``) and
    that call over the timed one (``wall_vs_timed``)."""
    return pd.DataFrame(rows).assign(wall_s_per_call=total,
                                     wall_vs_timed=total / timed_s if timed_s > 0 else float("nan"))
