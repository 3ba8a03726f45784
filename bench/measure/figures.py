"""One home per figure. A cell's headline speed, its interval, a ratio between two cells with its
interval, the resolution of that interval, the stability mark and the words for a ratio are
computed here and nowhere else: the stopping rule of the rounds, the summary, torchrun's rows, the
ranking, the verdict, the terminal, the exports, history and compare all call these functions.

A round's value is the median seconds per sample of its calls (inference) or its block of steps
(training). A cell's speed is 1 / the median of its rounds' values; a ratio between two cells is
the quotient of those medians, with a paired bootstrap interval over the rounds both were
measured in (``bench.measure.stats.median_ratio_interval``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.measure.stats import bootstrap_ci, median_ratio_interval

# A cell whose rounds moved by more than this (coefficient of variation between rounds) *and* by
# more than UNSTABLE_FACTOR times the run's typical cell of the same phase is marked unstable. A
# fixed bar alone marks most cells on a shared, noisy machine and then says nothing.
UNSTABLE_CV = 0.10
UNSTABLE_FACTOR = 3.0


def round_values(timings: pd.DataFrame) -> pd.Series:
    """Round -> its value: the median seconds per sample of the round's calls or steps."""
    if timings.empty:
        return pd.Series(dtype=float)
    return (timings["seconds"] / timings["samples"]).groupby(timings["round"]).median()


def headline_rate(seconds_per_sample) -> float:
    """Samples per second from per-round seconds per sample: 1 / their median."""
    m = float(np.median(np.asarray(seconds_per_sample, dtype=np.float64)))
    return 1 / m if m > 0 else float("nan")


def speed_figures(seconds_per_sample, phase: str) -> dict:
    """A cell's headline speed from its rounds' values (seconds per sample): ``samples_per_s``
    (``train_samples_per_s`` for training) with its 95% bootstrap interval, the number of rounds and
    their coefficient of variation (what the stability mark reads)."""
    per_sample = np.asarray(seconds_per_sample, dtype=np.float64)
    if per_sample.size == 0:
        return {"rounds": 0}
    cv = float(np.std(per_sample, ddof=1) / np.mean(per_sample)) if per_sample.size > 1 else 0.0
    low, high = bootstrap_ci(per_sample)
    name = "train_samples_per_s" if phase == "train" else "samples_per_s"
    return {"rounds": int(per_sample.size), "between_round_cv": cv, name: headline_rate(per_sample),
            f"{name}_ci_low": 1 / high, f"{name}_ci_high": 1 / low}


def cell_speed(timings: pd.DataFrame, phase: str) -> dict:
    """``speed_figures`` of a cell's timed calls or steps and, for inference, the median call
    latency over rounds with its interval."""
    values = round_values(timings).to_numpy()
    out = speed_figures(values, phase)
    if phase == "train" or values.size == 0:
        return out
    low, high = bootstrap_ci(values)
    batch = int(timings["samples"].iloc[0])
    return {**out, "round_p50_ms": float(np.median(values)) * batch * 1e3, "round_p50_ci_low_ms": low * batch * 1e3,
            "round_p50_ci_high_ms": high * batch * 1e3}


def time_ratio(base: dict, other: dict) -> dict:
    """``other``'s time over ``base``'s (round -> value each; > 1: slower): the quotient of their
    median round values, with the paired bootstrap interval over the rounds both were measured in.
    The stopping rule judges this interval and every table prints it."""
    b = [v for v in base.values() if np.isfinite(v)]
    o = [v for v in other.values() if np.isfinite(v)]
    ratio = float(np.median(o) / np.median(b)) if b and o and np.median(b) > 0 else float("nan")
    low, high = median_ratio_interval(base, other)
    return {"ratio": ratio, "ratio_low": low, "ratio_high": high}


def resolution(low: float, high: float) -> float:
    """The half-width of a ratio's interval as a fraction (sqrt(high / low) - 1): the smallest
    difference that interval could tell from none. NaN without an interval."""
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0:
        return float("nan")
    return float(np.sqrt(high / low) - 1)


def speed_share(time_ratio_: float, low: float, high: float) -> str:
    """A time ratio as a share of the other's speed with its interval: "0.63× [0.61, 0.65]"."""
    if not (low == low and high == high):
        return f"{1 / time_ratio_:.2f}× (no interval: too few rounds)"
    return f"{1 / time_ratio_:.2f}× [{1 / high:.2f}, {1 / low:.2f}]"


def ratio_words(time_ratio_: float, low: float, high: float, base: str) -> str:
    """A time ratio (this / ``base``) and its interval in the words of speed: "2.60× faster than
    cpu-fp32 [2.40, 2.90]", "1.61× slower than ...", a tie with the smallest difference its interval
    could have shown, or unjudged without an interval."""
    if not time_ratio_ == time_ratio_:
        return "–"
    if not (low == low and high == high):
        return f"unjudged: too few rounds for an interval ({1 / time_ratio_:.2f}× the speed of {base})"
    if high < 1:
        return f"{1 / time_ratio_:.2f}× faster than {base} [{1 / high:.2f}, {1 / low:.2f}]"
    if low > 1:
        return f"{time_ratio_:.2f}× slower than {base} [{low:.2f}, {high:.2f}]"
    return (f"tie with {base} ({1 / time_ratio_:.2f}× [{1 / high:.2f}, {1 / low:.2f}]; any difference below "
            f"{resolution(low, high):.1%} would show)")


def with_stability(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the stability mark: ``unstable`` where a cell's rounds moved by more than
    UNSTABLE_CV and more than UNSTABLE_FACTOR times the median of the run's cells of the same phase,
    and ``unstable_why`` in words (missing where not unstable)."""
    if summary.empty or "between_round_cv" not in summary:
        return summary
    s = summary.copy()
    cv = pd.to_numeric(s.between_round_cv, errors="coerce")
    ok = s.status.eq("ok") & cv.notna()
    typical = cv[ok].groupby([s.run_id[ok], s.phase[ok]]).median()
    base = pd.Series([typical.get((r, p), float("nan")) for r, p in zip(s.run_id, s.phase)], index=s.index)
    flag = ok & (cv > UNSTABLE_CV) & (cv > UNSTABLE_FACTOR * base)
    s["unstable"] = flag
    s["unstable_why"] = [f"rounds moved {c:.0%} (CV), {c / t:.1f}× this run's typical {t:.0%}" if f else None
                         for f, c, t in zip(flag, cv, base)]
    return s
