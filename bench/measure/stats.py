"""Pure statistics over timing samples: a cell's latency figures and the three interval procedures
(docs/measurement.md); no clocks, no torch."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, stdtrit  # imported with the module, not between two rounds


def summarize(samples_s) -> dict[str, float]:
    """Latency statistics (milliseconds) over per-call samples in seconds. A cell's speed is not
    among them: it is a figure of its rounds (``bench.measure.figures``)."""
    a = np.asarray(samples_s, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples to summarize")
    q25, p50, q75, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99])
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    cv = std / mean if mean > 0 else float("nan")
    return {
        "n_samples": int(a.size),
        "mean_latency_ms": mean * 1e3,
        "std_latency_ms": std * 1e3,
        "min_latency_ms": float(a.min()) * 1e3,
        "p50_latency_ms": float(p50) * 1e3,
        "p90_latency_ms": float(p90) * 1e3,
        "p99_latency_ms": float(p99) * 1e3,
        "iqr_latency_ms": float(q75 - q25) * 1e3,
        "cv": cv,
    }


def relative_gap(a: float, b: float) -> float:
    """|a - b| relative to the larger of the two (0 when both are 0)."""
    top = max(abs(a), abs(b))
    return abs(a - b) / top if top > 0 else 0.0


# -- intervals: the bootstrap of medians, the signed-rank interval, one widening (two intervals as one)
# Every interval this tool prints is a 95% interval.


def _t975(df: int) -> float:
    """Student's t, 97.5% quantile."""
    return float(stdtrit(df, 0.975))


def _expanded_quantiles(n: int) -> tuple[float, float]:
    """Percentiles of the expanded percentile bootstrap interval (Hesterberg 2015): the plain
    percentile interval is too narrow for small samples; widen it to the t-interval's width."""
    if n < 2:
        return 0.0, 100.0
    tail = 1 - float(ndtr((n / (n - 1)) ** 0.5 * _t975(n - 1)))
    return 100 * tail, 100 * (1 - tail)


def bootstrap_ci(values, stat=np.median, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% expanded percentile bootstrap interval of ``stat`` over ``values`` (e.g. round medians)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return float("nan"), float("nan")
    if a.size == 1:
        return float(a[0]), float(a[0])
    rng = np.random.default_rng(seed)
    boots = stat(a[rng.integers(0, a.size, (n_boot, a.size))], axis=-1)
    lo, hi = _expanded_quantiles(a.size)
    return float(np.percentile(boots, lo)), float(np.percentile(boots, hi))


def median_ratio_interval(base: dict, other: dict, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of median(other) / median(base), the quotient every table shows, from a paired
    bootstrap over rounds: ``base`` and ``other`` map a round to its value; a round both were
    measured in is drawn for both together (it keeps their pairing: a drift of that round moves
    both), a round only one side has is drawn for that side alone; with no round in common (two
    runs), each side is drawn on its own. Expanded percentile interval (``_expanded_quantiles``) on
    the shared rounds' count (unpaired: the smaller side's). NaN with fewer than 2 shared rounds, or
    fewer than 2 rounds a side when none is shared."""
    shared = sorted(set(base) & set(other))
    if len(shared) == 1 or min(len(base), len(other)) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(shared), (n_boot, len(shared)))

    def medians(side: dict) -> np.ndarray:
        paired = np.array([side[k] for k in shared], dtype=np.float64).reshape(-1)[draw]
        own = [side[k] for k in side if k not in base or k not in other]
        if own:
            alone = np.asarray(own, dtype=np.float64)
            paired = np.concatenate([paired, alone[rng.integers(0, len(own), (n_boot, len(own)))]], axis=1)
        return np.median(paired, axis=1)

    ratios = medians(other) / medians(base)
    lo, hi = _expanded_quantiles(len(shared) or min(len(base), len(other)))
    # a missed time-to-accuracy seed counts as an infinite time: interpolating between infinite
    # draws gives NaN, so such draws are read at the nearest rank
    method = "linear" if np.isfinite(ratios).all() else "nearest"
    return float(np.percentile(ratios, lo, method=method)), float(np.percentile(ratios, hi, method=method))


def quotient(base: dict, other: dict) -> dict:
    """``other`` / ``base`` of two independent ratios (ratio, ratio_low, ratio_high each), e.g. the
    same backend-to-reference ratio in two runs: the quotient, and its interval with each side's
    log half-widths added in quadrature (the lower end from ``other``'s lower and ``base``'s upper
    side, and the other way round), as ``widened`` adds a variation measured elsewhere."""
    logs = {k: np.log([other[k], base[k]]) for k in ("ratio", "ratio_low", "ratio_high")}
    point = logs["ratio"][0] - logs["ratio"][1]
    down = np.hypot(logs["ratio"][0] - logs["ratio_low"][0], logs["ratio_high"][1] - logs["ratio"][1])
    up = np.hypot(logs["ratio_high"][0] - logs["ratio"][0], logs["ratio"][1] - logs["ratio_low"][1])
    return {"ratio": float(np.exp(point)), "ratio_low": float(np.exp(point - down)),
            "ratio_high": float(np.exp(point + up))}


def walsh_interval(a: np.ndarray) -> tuple[float, float]:
    """The 95% confidence interval of the Hodges-Lehmann estimate that inverts Wilcoxon's
    signed-rank test: order statistics k and N + 1 - k of the N = n(n+1)/2 Walsh averages, k from
    the exact signed-rank distribution. Rank-based, so a few wild rounds cannot stretch it. Below
    6 pairs no interval reaches 95%; it is then [min, max] of the Walsh averages (coverage 1 - 2^(1-n))."""
    a = np.asarray(a, dtype=np.float64)
    n = a.size
    i, j = np.triu_indices(n)
    walsh = np.sort((a[i] + a[j]) / 2)
    k = _signed_rank_k(n)
    return float(walsh[k - 1]), float(walsh[walsh.size - k])


def _signed_rank_k(n: int) -> int:
    """The largest k >= 1 with P(T < k) <= 2.5% under the signed-rank null (T: sum of the ranks of
    the positive differences), from its exact distribution."""
    pmf = np.zeros(n * (n + 1) // 2 + 1)
    pmf[0] = 1.0
    for r in range(1, n + 1):  # each rank is in the positive sum or not, with probability 1/2
        pmf = (pmf + np.concatenate([np.zeros(r), pmf[:-r]])) / 2
    return max(1, int(np.searchsorted(np.cumsum(pmf), 0.025, side="right")))


def widened(r: dict, sigma: float, df: int, scale: float = 1.0) -> dict:
    """A ratio's interval (``r``: ratio, ratio_low, ratio_high) widened by a variation it cannot see
    itself: ``sigma``, the standard deviation of a log ratio measured elsewhere (between the worker
    processes of a run, or between runs by ``mnist-bench calibrate``) on ``df`` degrees of freedom,
    times ``scale`` (sqrt(2) for two runs, 1 / sqrt(N) for an estimate pooled over N processes).
    The extra half-width t(df) * sigma * scale is added in quadrature to the larger side's
    half-width on the log scale; the estimate stays where it is. The one widening of every interval."""
    if sigma <= 0 or df < 1 or not np.isfinite([r["ratio"], r["ratio_low"], r["ratio_high"]]).all():
        return r
    log_r = np.log(r["ratio"])
    inside = max(log_r - np.log(r["ratio_low"]), np.log(r["ratio_high"]) - log_r)
    half = float(np.hypot(inside, _t975(df) * sigma * scale))
    return {**r, "ratio_low": float(np.exp(log_r - half)), "ratio_high": float(np.exp(log_r + half))}
