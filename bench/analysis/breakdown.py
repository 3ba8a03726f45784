"""Verdicts explained by where the time goes: for a backend against the reference at one batch
size, the categories of ``time_breakdown`` (bench.measure.breakdown) that account for the gap
between their calls, in seconds per call; for training, the phases of the step (data, forward,
backward, optimizer: bench.training.breakdown) and then the categories. The breakdown's plain calls
are shadow blocks among the rounds of one process (the run's first): where the ratio of the two
calls in the pass disagrees with the ratio of those rounds by more than ``AGREEMENT``, the words say
so instead of explaining; where those rounds' ratio differs from the verdict's (pooled over every
process), the words say whose calls they explain."""

from __future__ import annotations

import pandas as pd

from bench.measure.breakdown import AGREEMENT
from bench.measure.figures import round_values
from bench.plumbing.units import duration
from bench.storage.results import RunTables

KEYS = ["run_id", "model", "phase", "batch_size", "backend"]


def breakdown_frame(rt: RunTables, kinds: tuple[str, ...] = ("category",)) -> pd.DataFrame:
    """The rows of ``kinds`` of every cell's breakdown (inference calls and training steps), with the
    cell's model, backend, phase and batch size (none for a training step: its verdicts pair
    across batch settings)."""
    b = rt.with_cells("time_breakdown", ("model", "backend", "phase", "batch_size"))
    if b.empty or "kind" not in b:
        return pd.DataFrame()
    b = b[b.kind.isin(kinds)].reset_index(drop=True)
    b["batch_size"] = b.batch_size.astype(float).where(b.phase != "train")
    return b


def _us(seconds: float) -> str:
    """A signed duration: "+41 µs", "−2.1 ms"."""
    return ("+" if seconds >= 0 else "−") + duration(abs(seconds))


def _largest(other: pd.DataFrame, base: pd.DataFrame, gap: float, kind: str) -> tuple[list[tuple[str, float]], float]:
    """The (up to) two rows of ``kind`` whose differences go the gap's way, largest first, and the rest."""
    o = other[other.kind == kind].set_index("name").seconds_per_call
    b = base[base.kind == kind].set_index("name").seconds_per_call
    diffs = (o - b.reindex(o.index).fillna(0.0)).sort_values(ascending=gap < 0)
    picked = [(name, float(d)) for name, d in diffs.items() if d * gap > 0][:2]
    return picked, float(diffs.sum()) - sum(d for _, d in picked)


def _listed(picked: list[tuple[str, float]], rest: float, gap: float) -> str:
    words = "; ".join(f"{name} {_us(d)}" for name, d in picked)
    return words + (f"; the rest {_us(rest)}" if abs(rest) >= 0.1 * abs(gap) else "")


def _compiled(other: pd.DataFrame) -> str:
    """A compiled step's regions and recompilations, in words ("" where nothing was compiled)."""
    regions = float(other.get("compiled_regions_per_call", pd.Series([0.0])).fillna(0).iloc[0])
    if regions <= 0:
        return ""
    graphs = int(other.get("graphs_compiled_in_pass", pd.Series([0])).fillna(0).iloc[0])
    breaks = "one graph entered per step, no graph break" if regions <= 1 else (
        f"{regions:g} graphs entered per step: graph breaks")
    again = "none recompiled in the pass" if graphs == 0 else f"{graphs} compiled again during the pass"
    return f" (compiled: {breaks}; {again})"


def why(other: pd.DataFrame, base: pd.DataFrame, timed_ratio: float, flips: str = "") -> str:
    """Words for one backend's gap to the baseline from their breakdown rows (one cell each): by
    category for an inference call; for a training step, by phase of the step, then by category.
    ``flips``: what makes the two cells' rounds unfit to explain (``_flips``), said where they are not."""
    total_o, total_b = float(other.wall_s_per_call.iloc[0]), float(base.wall_s_per_call.iloc[0])
    ratio = total_o / total_b if total_b > 0 else float("nan")
    # the rounds the pass explains: its own process's (the verdict pools every process's)
    timed_o, timed_b = float(other.timed_s_per_call.iloc[0]), float(base.timed_s_per_call.iloc[0])
    here = timed_o / timed_b if timed_b > 0 else timed_ratio
    if not (abs(ratio / here - 1) <= AGREEMENT):
        return (f"not explained: in the breakdown's pass the ratio was {ratio:.2f}×, in the rounds it explains "
                f"{here:.2f}× (the two calls ran in another state than in the rounds{flips})")
    return _explained(other, base, total_o - total_b) + _where(here, timed_ratio)


def _where(here: float, timed_ratio: float) -> str:
    """Where the process whose calls were broken down differs from the verdict's ratio, it says so."""
    if abs(here / timed_ratio - 1) <= AGREEMENT:
        return ""
    return f" (the calls of the run's first process, where the ratio was {here:.2f}×; over all {timed_ratio:.2f}×)"


def _explained(other: pd.DataFrame, base: pd.DataFrame, gap: float) -> str:
    """The gap in words: by category for a call; by phase, then by category for a step."""
    unit = "step" if (other.kind == "phase").any() else "call"
    by_kind, rest = _largest(other, base, gap, "category")
    if unit == "step":
        by_phase, phase_rest = _largest(other, base, gap, "phase")
        if not by_phase:
            return f"no phase of the step accounts for the gap of {_us(gap)} per step"
        kinds = f" — by kind: {_listed(by_kind, rest, gap)}" if by_kind else ""
        return f"{_listed(by_phase, phase_rest, gap)}{kinds}: {_us(gap)} per step in all{_compiled(other)}"
    if not by_kind:
        return f"no category accounts for the gap of {_us(gap)} per call"
    return f"{_listed(by_kind, rest, gap)}: {_us(gap)} per call in all"


def explanations(ranked: pd.DataFrame, rt: RunTables, reference: str) -> pd.Series:
    """Per ranked row (its index): the words explaining an inference or training verdict against
    ``reference`` (missing where there is no breakdown, for ties, the reference itself and other phases)."""
    out = pd.Series(None, index=ranked.index, dtype=object)  # missing where there is nothing to explain
    b = breakdown_frame(rt, ("category", "phase"))
    if b.empty or ranked.empty:
        return out
    b = b.assign(batch_size=b.batch_size.fillna(0.0))  # a training step: no batch size (NaN never equals itself)
    cells = {k: g for k, g in b.groupby(KEYS, dropna=False)}
    slow = _slow_rounds(rt)
    for i, r in ranked.iterrows():
        if r.phase not in ("infer", "train") or r.backend == reference or pd.isna(r.get("time_vs_baseline")):
            continue
        if r.get("time_vs_baseline_low", 2) <= 1 <= r.get("time_vs_baseline_high", 0):
            continue  # a tie: no gap to explain
        bs = float(r.batch_size) if r.phase == "infer" else 0.0
        other = cells.get((r.run_id, r.model, r.phase, bs, r.backend))
        base = cells.get((r.run_id, r.model, r.phase, bs, reference))
        if other is not None and base is not None:
            flips = _flips({b: slow.get((r.run_id, r.model, r.phase, bs, b), 0.0) for b in (r.backend, reference)})
            out[i] = why(other, base, float(r.time_vs_baseline), flips)
    return out


FLIPPED = 2.0  # a round whose median call is over this many times the cell's fastest round's ran in a slow mode
FLIPS = 0.2  # a cell with this share of such rounds or more flips between modes: no pass can explain it


def _slow_rounds(rt: RunTables) -> dict[tuple, float]:
    """Per cell (``KEYS``, a training step's batch size 0): the share of its rounds in the run's first
    process (the one the pass ran in) whose value (``figures.round_values``: the median call or step
    per sample) is over ``FLIPPED`` times its fastest round's. 0 on a quiet machine (every cell of an
    idle quick run); with as many threads as cores and one core busy, the same call flips between
    modes many times apart from round to round."""
    t = rt.with_cells("timings", ("model", "backend", "phase", "batch_size"))
    if t.empty:
        return {}
    t = t[t.process == 0].assign(batch_size=lambda d: d.batch_size.astype(float).where(d.phase != "train", 0.0))
    shares = {}
    for key, cell in t.groupby(KEYS):
        values = round_values(cell)
        shares[key] = float((values > FLIPPED * values.min()).mean())
    return shares


def _flips(shares: dict[str, float]) -> str:
    """"; cpu-fp32's rounds flip between speeds: 40% over twice its fastest round" for each cell
    whose share of slow rounds is ``FLIPS`` or more ("" for none)."""
    return "".join(f"; {b}'s rounds flip between speeds: {share:.0%} of them over {FLIPPED:g}× its fastest round"
                   for b, share in shares.items() if share >= FLIPS)
