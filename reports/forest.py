"""The first screen's picture: per model, every backend's speed as a share of the fastest's, per
phase and batch size, a dot with the 95% interval of its paired ratio (a forest plot). The fastest
sits at 1; a backend whose whisker reaches 1 ties with it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.storage.catalog import backend_rank
from reports.charts import backend_color, to_image

_PHASE_ORDER = {"train": 0, "infer": 1, "tta": 2}


def _label(phase: str, batch_size) -> str:
    if phase == "train":
        return "training"
    if phase == "tta":
        return "time to accuracy"
    return f"inference, batch {int(batch_size)}"


def forest_rows(ranked: pd.DataFrame) -> pd.DataFrame:
    """One model's ranked rows in the plot's order, with speed shares and their intervals."""
    d = ranked.assign(share=1 / ranked.time_vs_fastest, low=1 / ranked.time_vs_fastest_high,
                      high=1 / ranked.time_vs_fastest_low,
                      _p=ranked.phase.map(_PHASE_ORDER).fillna(3), _b=ranked.batch_size.fillna(0),
                      _r=ranked.backend.map(lambda b: backend_rank(b)[0]))
    return d.sort_values(["_p", "_b", "_r"]).drop(columns=["_p", "_b", "_r"]).reset_index(drop=True)


def forest_chart(ranked: pd.DataFrame, title: str) -> bytes | None:
    """``ranked``: one run's and one model's rows of ``bench.analysis.ranked.ranked_backends``."""
    if ranked.empty or "time_vs_fastest" not in ranked:
        return None
    d = forest_rows(ranked)
    groups = list(dict.fromkeys(zip(d.phase, d.batch_size.fillna(-1))))
    y, ticks, labels, headings = [], [], [], []
    pos = 0.0
    for phase, bs in groups:  # each group under its own heading line, in the gap above its rows
        g = d[(d.phase == phase) & (d.batch_size.fillna(-1) == bs)]
        headings.append((pos, _label(phase, None if bs == -1 else bs)))
        pos += 0.9
        for b in g.backend:
            y.append(pos)
            ticks.append(pos)
            labels.append(b)
            pos += 1
        pos += 0.3
    y = np.array(y)
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.21 * (len(d) + 1.2 * len(groups))))
    shares = d.share.to_numpy(float)
    low = np.where(np.isfinite(d.low), d.low, shares)
    high = np.where(np.isfinite(d.high), d.high, shares)
    for i, r in d.iterrows():
        color = backend_color(r.backend)
        ax.plot([low[i], high[i]], [y[i], y[i]], color=color, lw=2, solid_capstyle="butt")
        ax.plot(shares[i], y[i], "D" if r.standing == "fastest" else "o", color=color, ms=5)
    ax.axvline(1, color="#999", lw=0.8, ls=":")
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xscale("log")
    lo = max(1e-3, float(np.nanmin(low)) * 0.8)
    ax.set_xlim(lo, 1.25)
    ax.set_ylim(pos - 0.3, -0.7)  # room above the first heading, below the last row
    marks = [m for m in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if m >= lo]
    ax.set_xticks(marks, [f"{m:g}" for m in marks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    for top, text in headings:
        ax.text(lo * 1.03, top, text, fontsize=8, color="#333", va="center", ha="left", weight="bold")
    ax.set_xlabel("speed as a share of the fastest (1 = fastest; whisker: 95% interval, reaching 1 = a tie)",
                  fontsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return to_image(fig)
