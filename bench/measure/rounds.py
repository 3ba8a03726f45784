"""Paired, interleaved measurement. Things being compared are measured in rounds, in a balanced
order per round (``balanced_orders``: A B, B A, ...), each round a short block after its own
warm-up, so a drift of the machine hits every side of a comparison alike and a ratio can be taken
per round. Every timed call is kept (``timings`` rows), with its round and timestamp."""

from __future__ import annotations

import math
import resource
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import torch

from bench import BenchError
from bench.measure.clocks import clock_for, time_calls, timestamp, wall_time
from bench.measure.figures import resolution, time_ratio
from bench.plumbing.signals import check as check_stop


def balanced_orders(n: int) -> list[list[int]]:
    """Orders for measuring ``n`` things in rounds (a Williams design): across its rows each item
    takes each position equally often and follows each other item equally often, so neither a
    position in the round nor the item measured just before favours anyone."""
    if n <= 1:
        return [list(range(n))]
    first = [0]
    for k in range(1, n):
        first.append((first[-1] + (k if k % 2 else n - k)) % n)
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


@dataclass
class Contender:
    """One thing to time: ``call`` runs one batch; ``clock_device`` picks its clock."""

    name: str
    call: Callable[[], object]
    clock_device: str
    rows: list[dict] = field(default_factory=list)  # the timed calls
    cold_first_call_ms: float = float("nan")
    failure: tuple[str, str] | None = None  # (status, reason) once a call raised
    values: dict[int, float] = field(default_factory=dict)  # round -> its value (bench.measure.figures)
    typical_call_s: float = 0.0  # the median call of its last block (0: none yet)
    # shadow blocks (a list to fill: asked for) made as its timed blocks, taking their turns among the
    # round's blocks every SHADOW_EVERY rounds, kept apart from the timed calls: a breakdown's plain calls
    shadow: list[dict] | None = None


SHADOW_EVERY = 2


def measure_rounds(contenders: list[Contender], batch_size: int, cfg, machine=None, group: str = "",
                   process: int = 0, reference: str | None = None) -> list[dict]:
    """Time each contender's call in interleaved rounds: ``cfg.rounds`` rounds of every contender,
    then, while ``cfg.max_time_s`` lasts, more rounds of the contenders whose paired interval
    against ``reference`` or against the fastest is still wider than ``cfg.resolution_pct`` (the time
    goes where the contest is close). Each round gives each contender ``cfg.warmup_calls`` untimed
    calls (none when one call outlasts a block), then timed calls for ``cfg.budget_s / rounds``
    seconds (at least ``ceil(min_repeats / rounds)``, at most ``ceil(max_repeats / rounds)``).
    The cold first call is timed apart, before the rounds. A contender whose call raises is taken
    out with its failure (out of memory: "oom"); the others go on. Returns the machine's state per
    round (rows) when ``machine`` is given."""
    for c in contenders:
        _guard(c, lambda c=c: setattr(c, "cold_first_call_ms", time_calls(c.call, clock_for(c.clock_device), 1)[0][0]
                                      * 1e3))
    block = _BlockSpec.of(cfg, batch_size, process)
    for c in contenders:
        if c.failure is None:  # settle: allocators and caches reach their steady state before round 0
            _guard(c, lambda c=c: _settle(c, block))
    states: list[dict] = []

    def one_round(r: int, members: list[Contender]) -> None:
        check_stop()
        if machine is not None:
            states.append(machine.round(group, r))
        slots = [(c, False) for c in members]
        if r % SHADOW_EVERY == SHADOW_EVERY - 1:  # shadow blocks take their turns as members of their own
            slots += [(c, True) for c in members if c.shadow is not None]
        orders = balanced_orders(len(slots))
        for position, i in enumerate(orders[(r if len(slots) == len(members) else r // SHADOW_EVERY) % len(orders)]):
            c, shadow = slots[i]
            if c.failure is None:
                _guard(c, lambda c=c, position=position, shadow=shadow: _block(c, r, position, block, shadow))

    for r in range(cfg.rounds):
        one_round(r, contenders)
    r, start = cfg.rounds, wall_time()
    while cfg.resolution_pct > 0 and wall_time() - start < cfg.max_time_s:
        members = unresolved(contenders, cfg.resolution_pct / 100, reference)
        if not members:
            break
        one_round(r, members)
        r += 1
    if machine is not None:
        machine.close()
    return states


@dataclass(frozen=True)
class _BlockSpec:
    seconds: float  # timed seconds per block
    min_calls: int
    max_calls: int
    warmup_calls: int
    batch_size: int
    process: int

    @staticmethod
    def of(cfg, batch_size: int, process: int = 0) -> _BlockSpec:
        """The blocks ``cfg`` (an InferConfig) asks for: ``budget_s / rounds`` seconds each."""
        least = max(1, math.ceil(cfg.min_repeats / cfg.rounds))
        return _BlockSpec(cfg.budget_s / cfg.rounds, least, max(least, math.ceil(cfg.max_repeats / cfg.rounds)),
                          cfg.warmup_calls, batch_size, process)


def _settle(c: Contender, spec: _BlockSpec) -> None:
    """Untimed calls for one block's time (at least two): the first round is then no warm-up round,
    and the typical call time that sizes the blocks is known."""
    clock, times = clock_for(c.clock_device), []
    start = wall_time()
    while len(times) < 2 or (wall_time() - start < spec.seconds and len(times) < spec.max_calls):
        times.append(time_calls(c.call, clock, 1)[0][0])
    c.typical_call_s = float(np.median(times))


def _block(c: Contender, r: int, position: int, spec: _BlockSpec, shadow: bool = False) -> None:
    """One block: warm-up calls, then as many timed calls as fit a block at the contender's typical
    call time (the median of its previous block), so one stalled call does not end a block. A
    ``shadow`` block goes to ``c.shadow`` with the minor page faults per call, and leaves the
    contender's figures alone."""
    clock = clock_for(c.clock_device)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    warm = spec.warmup_calls if c.typical_call_s < spec.seconds else 0  # a call longer than a block warms itself
    for _ in range(warm):
        c.call()
    clock.sync()
    calls = min(spec.max_calls, max(spec.min_calls, int(spec.seconds / max(c.typical_call_s, 1e-9))))
    n, per_call, rows = 0, [], []
    while n < calls:
        device_s, wall_s = time_calls(c.call, clock, 1)
        rows.append({"round": r, "process": spec.process, "position": position, "call": n,
                     "timestamp_s": timestamp(), "seconds": device_s[0], "wall_seconds": wall_s[0],
                     "samples": spec.batch_size})
        per_call.append(device_s[0])
        n += 1
    if shadow:
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (calls + warm)
        c.shadow += [{**row, "page_faults_per_call": faults} for row in rows]
        return
    c.rows += rows
    c.typical_call_s = float(np.median(per_call))
    c.values[r] = float(np.median(per_call)) / spec.batch_size  # figures.round_values of these rows


def unresolved(contenders: list[Contender], target: float, reference: str | None) -> list[Contender]:
    """The contenders in a pair (each against ``reference`` and against the fastest) whose interval
    (``figures.time_ratio``: the estimate and interval every table prints) is still wider than
    +-``target``."""
    live = [c for c in contenders if c.failure is None and c.values]
    if len(live) < 2:
        return []
    medians = {c.name: float(np.median(list(c.values.values()))) for c in live}
    fastest = min(live, key=lambda c: medians[c.name])
    anchors = [a for a in live if a.name == reference] + ([fastest] if fastest.name != reference else [])
    need: set[str] = set()
    for c in live:
        for a in anchors:
            if a is c:
                continue
            r = time_ratio(a.values, c.values)
            if not resolution(r["ratio_low"], r["ratio_high"]) <= target:  # NaN: not resolved
                need |= {a.name, c.name}
    return [c for c in contenders if c.name in need]


def _guard(c: Contender, body: Callable[[], None]) -> None:
    try:
        body()
    except torch.cuda.OutOfMemoryError as e:
        c.failure = ("oom", str(e).splitlines()[0])
    except (KeyboardInterrupt, BenchError):
        raise
    except Exception as e:  # this contender failed; the rounds go on without it
        c.failure = ("error", f"{type(e).__name__}: {e}".splitlines()[0][:500])


def interleave(runs: dict[str, Generator], on_round: Callable[[int], None] | None = None) -> dict[str, object]:
    """Advance several generators (e.g. training runs yielding after each block of steps) one
    step per round, in a balanced order per round, until all are done. Returns each one's return
    value, or the exception it raised (KeyboardInterrupt and BenchError propagate). ``on_round(r)``
    is called before each round (machine state)."""
    names = list(runs)
    orders = balanced_orders(len(names))
    results: dict[str, object] = {}
    r = 0
    while len(results) < len(names):
        check_stop()
        if on_round is not None:
            on_round(r)
        for i in orders[r % len(orders)]:
            name = names[i]
            if name in results:
                continue
            try:
                next(runs[name])
            except StopIteration as done:
                results[name] = done.value
            except (KeyboardInterrupt, BenchError):
                raise
            except Exception as e:  # noqa: BLE001 - returned to the caller, which records it per backend
                results[name] = e
        r += 1
    return results
