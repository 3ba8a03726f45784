"""Pure statistics over timing samples: no clocks, no torch."""

from __future__ import annotations

import numpy as np

UNSTABLE_CV = 0.10  # a cell whose coefficient of variation exceeds this is flagged unstable


def summarize(samples_s, batch_size: int = 1) -> dict[str, float]:
    """Latency statistics (milliseconds) and throughput for per-call samples in seconds."""
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
        "unstable": bool(cv > UNSTABLE_CV),
        "samples_per_s": batch_size / float(p50) if p50 > 0 else float("nan"),
    }


def relative_gap(a: float, b: float) -> float:
    """|a - b| relative to the larger of the two (0 when both are 0)."""
    top = max(abs(a), abs(b))
    return abs(a - b) / top if top > 0 else 0.0
