"""Where a training step's time goes, measured in the state of the steps it explains: its plain steps
are shadow blocks made as the timed blocks (as many steps), each right after one of them every
``SHADOW_EVERY`` blocks, in the same position among the backends trained beside it, and put back
afterwards (``StepShadow``); after the training, the step runs under ``torch.profiler``, whose
operators are grouped into the categories of an inference call (``bench.measure.breakdown``). The
step is the run's own (its compiled forward, its optimizer and scaler, its augmentation), on
further batches of the training split, timed plainly in its phases (data: fetching and augmenting
the batch; forward: the loss; backward: zeroing the gradients and the backward pass; optimizer: the
optimizer's step). The weights, the optimizer's state and the random streams are put back after
every block, so the trained model is the one the run trained; the learning-rate schedule is not
stepped (a one-cycle schedule refuses steps beyond its total, and its step costs microseconds).

What a compiled step adds is measured too: the compiled regions it enters per step (one per graph:
more than one for the forward means a graph break) and the graphs compiled during the pass (a
recompilation in the steady state)."""

from __future__ import annotations

import copy
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
import torch

from bench.measure.breakdown import (
    PASS_ROUNDS,
    STEP_PHASES,
    attributed,
    breakdown_table,
    calls_for,
    category_rows,
    torch_operators,
)
from bench.measure.clocks import clock_for

PASS_BUDGET_S = 0.12  # seconds of plain steps in all, MIN_CALLS to MAX_STEPS a block; at most PROFILED_STEPS profiled
MAX_STEPS = 20
PROFILED_STEPS = 8  # a profiled step records a few hundred operators: reading them back costs more than the step
WARM_STEPS = 3
_REGION = "torch-compiled region"


def _compiled_graphs() -> int:
    """Graphs torch.compile has compiled in this process so far (0 where it was never used)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return int(counters["stats"].get("unique_graphs", 0))


def _plain(step, batches: Iterator, steps: int, device: str, warm: int) -> list[list[float]]:
    """Each phase's seconds in each of ``steps`` plain steps, after ``warm`` untimed ones (each mark
    synchronized on CUDA, so a phase is its own device time). The random streams are put back
    afterwards, so the block leaves nothing behind for the training beside it."""
    rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if device == "cuda" else None)
    clock = clock_for(device)
    try:
        for _ in range(warm):  # warm again: whatever ran since the last block left its own caches behind
            step(*next(batches), schedule=False)
        marks = []
        for _ in range(steps):
            m = [clock.mark()]
            x, y = next(batches)
            x = step.prepare(x)
            m.append(clock.mark())
            loss = step.forward(x, y)
            m.append(clock.mark())
            step.backward(loss)
            m.append(clock.mark())
            step.update(schedule=False)
            m.append(clock.mark())
            marks.append(m)
        clock.sync()
    finally:
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state(rng[1])
    return [[clock.seconds(a, b) for a, b in zip(m, m[1:])] for m in marks]


def _medians(blocks: list[list[list[float]]]) -> dict[str, float]:
    """Each phase's and the whole step's seconds: the median over blocks of each block's median step."""
    per_block = [{**{p: statistics.median(s[i] for s in steps) for i, p in enumerate(STEP_PHASES)},
                  "step": statistics.median(sum(s) for s in steps)} for steps in blocks]
    return {k: statistics.median(b[k] for b in per_block) for k in (*STEP_PHASES, "step")}


@contextmanager
def _put_back(step, model: torch.nn.Module, device: str):
    """The model's weights, the optimizer's and the scaler's state and the random streams as they
    were, whatever the steps inside did; the model in training mode meanwhile."""
    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(step.opt.state_dict()),
             copy.deepcopy(step.scaler.state_dict()) if step.scaler is not None else None,
             torch.get_rng_state(), torch.cuda.get_rng_state() if device == "cuda" else None)
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        model.load_state_dict(saved[0])
        step.opt.load_state_dict(saved[1])
        if saved[2] is not None:
            step.scaler.load_state_dict(saved[2])
        torch.set_rng_state(saved[3])
        if saved[4] is not None:
            torch.cuda.set_rng_state(saved[4])
        model.train(was_training)


@dataclass
class StepShadow:
    """Shadow blocks of a training run: plain steps made as its timed blocks (as many steps), each
    right after one of them, every ``SHADOW_EVERY`` blocks, in the same position among the backends
    trained beside it; the weights, the optimizer's state and the random streams put back after
    each, so the training goes on as if none had run. The breakdown's plain steps."""

    step: object
    model: torch.nn.Module
    batches: Iterator
    device: str
    blocks: list[list[list[float]]] = field(default_factory=list)

    def block(self, steps: int) -> None:
        with _put_back(self.step, self.model, self.device):
            self.blocks.append(_plain(self.step, self.batches, steps, self.device, 0))  # warm: its timed block


def step_breakdown(step, model: torch.nn.Module, batches: Iterator, device: str, timed_s: float,
                   blocks: list[list[list[float]]] | None = None) -> pd.DataFrame:
    """One training step of ``step`` (``bench.training.train.TrainStep``, ``model`` its weights)
    broken down, ``timed_s`` the timed blocks' median step: its plain steps are ``blocks``
    (``StepShadow``'s, made among the timed blocks) and, where fewer than ``PASS_ROUNDS``, blocks
    of plain steps now; then the profiled steps. Returns rows per phase (``kind`` "phase"), per
    category and per top operator (as an inference call's), each with the pass's figures. The
    model's weights, the optimizer's state and the random streams are restored afterwards."""
    steps = calls_for(timed_s, PASS_BUDGET_S / PASS_ROUNDS, MAX_STEPS)
    with _put_back(step, model, device):
        graphs = _compiled_graphs()
        blocks = list(blocks or [])  # too few shadow blocks (a short training): the rest now
        blocks += [_plain(step, batches, steps, device, WARM_STEPS if r == 0 else 1)
                   for r in range(PASS_ROUNDS - len(blocks))]
        phases = _medians(blocks)
        recorded, profiled = torch_operators(lambda: step(*next(batches), schedule=False),
                                             min(steps, PROFILED_STEPS), device)
        recompiled = _compiled_graphs() - graphs
    regions = sum(n for name, (_, n) in recorded.items() if name.lower().startswith(_REGION))
    wall = phases["step"]
    ops, cost = attributed(recorded, profiled, wall)
    common = {"calls": len(blocks[0]), "pass_rounds": len(blocks), "profiled_s_per_call": profiled,
              "profiler_s_per_operator": cost, "timed_s_per_call": timed_s, "compiled_regions_per_call": regions,
              "graphs_compiled_in_pass": recompiled}
    rows, total = category_rows(ops, wall, common)
    rows += [{"kind": "phase", "name": p, "category": p, "seconds_per_call": phases[p],
              "share": phases[p] / total if total > 0 else float("nan"), **common} for p in STEP_PHASES]
    return breakdown_table(rows, total, timed_s)
