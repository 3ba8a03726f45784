"""Paired, interleaved measurement. Things being compared are measured in rounds, in a balanced
order per round (``stats.balanced_orders``: A B, B A, ...), each round a short block after its own
warm-up, so a drift of the machine hits every side of a comparison alike and a ratio can be taken
per round. Every timed call is kept (``timings`` rows), with its round and timestamp."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from bench import BenchError
from bench.measure.clocks import clock_for, time_calls, timestamp, wall_time
from bench.measure.stats import balanced_orders
from bench.signals import check as check_stop


@dataclass
class Contender:
    """One thing to time: ``call`` runs one batch; ``clock_device`` picks its clock."""

    name: str
    call: Callable[[], object]
    clock_device: str
    rows: list[dict] = field(default_factory=list)  # the timed calls
    cold_first_call_ms: float = float("nan")
    failure: tuple[str, str] | None = None  # (status, reason) once a call raised


def measure_rounds(contenders: list[Contender], batch_size: int, cfg, machine=None, group: str = "",
                   process: int = 0) -> list[dict]:
    """Time each contender's call in ``cfg.rounds`` interleaved rounds; each round gives each
    contender ``cfg.warmup_calls`` untimed calls, then timed calls for ``cfg.budget_s / rounds``
    seconds (at least ``ceil(min_repeats / rounds)``, at most ``ceil(max_repeats / rounds)``).
    The cold first call is timed apart, before the rounds. A contender whose call raises is taken
    out with its failure (out of memory: "oom"); the others go on. Returns the machine's state per
    round (rows) when ``machine`` is given."""
    for c in contenders:
        _guard(c, lambda c=c: setattr(c, "cold_first_call_ms", time_calls(c.call, clock_for(c.clock_device), 1)[0][0]
                                      * 1e3))
    per_round_s = cfg.budget_s / cfg.rounds
    min_calls = max(1, math.ceil(cfg.min_repeats / cfg.rounds))
    max_calls = max(min_calls, math.ceil(cfg.max_repeats / cfg.rounds))
    orders = balanced_orders(len(contenders))
    states = []
    for r in range(cfg.rounds):
        check_stop()
        if machine is not None:
            states.append(machine.round(group, r))
        for position, i in enumerate(orders[r % len(orders)]):
            c = contenders[i]
            if c.failure is None:
                _guard(c, lambda c=c, position=position: _block(c, r, position, batch_size, cfg.warmup_calls,
                                                               per_round_s, min_calls, max_calls, process))
    return states


def _block(c: Contender, r: int, position: int, batch_size: int, warmup: int, seconds: float, min_calls: int,
           max_calls: int, process: int) -> None:
    clock = clock_for(c.clock_device)
    for _ in range(warmup):
        c.call()
    clock.sync()
    start, n = wall_time(), 0
    while n < max_calls and (n < min_calls or wall_time() - start < seconds):
        device_s, wall_s = time_calls(c.call, clock, 1)
        c.rows.append({"round": r, "process": process, "position": position, "call": n, "timestamp_s": timestamp(),
                       "seconds": device_s[0], "wall_seconds": wall_s[0], "samples": batch_size})
        n += 1


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


def round_values(timings: pd.DataFrame) -> pd.Series:
    """Seconds per sample in each round: the median over the round's timed calls (inference: one
    batch per call) or its block (training). The unit every ratio between backends is taken in."""
    if timings.empty:
        return pd.Series(dtype=float)
    return (timings["seconds"] / timings["samples"]).groupby(timings["round"]).median()


def round_stats(timings: pd.DataFrame, phase: str) -> dict:
    """A cell's round-level figures: the number of rounds, the median over rounds with its 95%
    bootstrap interval (inference: latency per call in ms; training: samples/s), and the
    between-round coefficient of variation, which sets the ``unstable`` flag."""
    from bench.measure.stats import UNSTABLE_CV, bootstrap_ci

    per_sample = round_values(timings).to_numpy()
    if per_sample.size == 0:
        return {"rounds": 0}
    cv = float(np.std(per_sample, ddof=1) / np.mean(per_sample)) if per_sample.size > 1 else 0.0
    out = {"rounds": int(per_sample.size), "between_round_cv": cv, "unstable": bool(cv > UNSTABLE_CV)}
    if phase == "train":
        rate = 1 / per_sample
        lo, hi = bootstrap_ci(rate)
        return {**out, "train_samples_per_s_rounds": float(np.median(rate)), "train_samples_per_s_ci_low": lo,
                "train_samples_per_s_ci_high": hi}
    ms = per_sample * int(timings["samples"].iloc[0]) * 1e3
    lo, hi = bootstrap_ci(ms)
    return {**out, "round_p50_ms": float(np.median(ms)), "round_p50_ci_low_ms": lo, "round_p50_ci_high_ms": hi}
