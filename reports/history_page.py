"""The history page: one figure over runs and commits, the way asv charts a benchmark over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.storage.results import atomic_write_text
from reports.blocks import img, table
from reports.charts import to_image
from reports.page import page
from reports.section import Section

RUNS = Section("runs", "Runs", lambda _ctx, _frame: "")  # the page's one section


def history_chart(s: pd.DataFrame, title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(s) + 3), 4))
    x = np.arange(len(s))
    low = (s.value - s.low).where(s.low.notna(), 0).clip(lower=0)
    high = (s.high - s.value).where(s.high.notna(), 0).clip(lower=0)
    ax.errorbar(x, s.value, yerr=[low, high], marker="o", capsize=3, lw=1)
    text = lambda v, other: v if isinstance(v, str) and v else other  # noqa: E731 (missing: NaN or None)
    labels = [f"{text(n, r)[-12:]}\n{text(c, '?')[:7]}" for r, n, c in zip(s.run_id, s.name, s.git_commit)]
    ax.set_xticks(x, labels, fontsize=8, rotation=30, ha="right")
    machines = s.hostname.fillna("?") + " · " + s.cpu_model.fillna("?")
    for i in np.flatnonzero(machines.ne(machines.shift()).to_numpy())[1:]:
        ax.axvline(i - 0.5, ls=":", c="grey")  # a change of machine: not a regression
    ax.set(title=title, ylabel=title.split(" · ")[0], xlabel="run (name or id) and commit, oldest first")
    return to_image(fig)


def history_file(metric: str, model: str, backend: str, batch_size: int | None) -> str:
    """The default page name: one page per figure followed, so following another never overwrites it."""
    return f"history-{metric}-{model}-{backend}{'' if batch_size is None else f'-bs{batch_size}'}.html"


def render_history(s: pd.DataFrame, metric: str, model: str, backend: str, batch_size: int | None,
                   output: Path) -> Path:
    batch = "" if batch_size is None else f" · batch {batch_size}"
    title = f"{metric} · {model} · {backend}{batch}"
    intro = ('<p>Each point a run (bars: its 95% interval where one was measured); a dotted line marks a change '
             "of machine. change: the move from the previous run on the same machine, called a step only beyond "
             "that machine's calibrated run-to-run variation.</p>")
    listing = s[["start_time", "run_id", "name", "git_commit", "hostname", "cpu_model", "gpu_name", "value", "low",
                 "high", *(["change"] if "change" in s else [])]].rename(columns={"value": metric})
    body = img(history_chart(s, title), "history chart") + table(listing, "history-table", raw=True)
    atomic_write_text(output, page(f"History: {title}", intro, [(RUNS, body)], toc=False))
    return output
