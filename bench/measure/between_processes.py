"""What varies between the processes of one run: the variation a process adds to a ratio beyond
its rounds (``run --processes N``); ``bench.measure.stats.widened`` widens an in-run interval by it."""

from __future__ import annotations

import numpy as np


def between_process_sigma(cells: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, int]:
    """How far a ratio moves between the processes of one run beyond what their rounds explain:
    ``cells`` holds, for each ratio of a group (one per backend), its per-round log ratios and the
    process each round ran in. Per cell, each process's median log ratio is one estimate; their
    variance across processes, less the sampling variance of a median of that process's rounds
    (robust: 1.2533 x 1.4826 MAD / sqrt(n)), is the variance a process adds. Pooled over the cells:
    (sigma of a log ratio between processes, degrees of freedom); (0, 0) without two processes."""
    excess, df = [], 0
    for logs, groups in cells:
        logs, groups = np.asarray(logs, dtype=np.float64), np.asarray(groups)
        keep = np.isfinite(logs)
        logs, groups = logs[keep], groups[keep]
        parts = [logs[groups == g] for g in np.unique(groups)]
        parts = [x for x in parts if x.size >= 2]
        if len(parts) < 2:
            continue
        medians = np.array([np.median(x) for x in parts])
        noise = np.mean([(1.2533 * 1.4826 * np.median(np.abs(x - np.median(x)))) ** 2 / x.size for x in parts])
        excess.append(medians.var(ddof=1) - noise)
        df += len(parts) - 1
    if not excess:
        return 0.0, 0
    return float(np.sqrt(max(0.0, np.mean(excess)))), df
