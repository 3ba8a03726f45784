"""Report sections "Verdict" (who wins, per model and phase, with intervals; ties called ties) and
"Machine" (the control workload's speed index over the run, and the run's warnings)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import pandas as pd

from bench.results import RunTables
from reports.blocks import img, table, warn
from reports.charts import to_png
from reports.comparison import rank_backends, round_values

BASELINE = "cpu-fp32"


def _interval(r, prefix: str) -> str:
    ratio, low, high = (getattr(r, f"{prefix}{k}", float("nan")) for k in ("", "_low", "_high"))
    if ratio != ratio:
        return "–"
    return f"{1 / ratio:.2f}× [{1 / high:.2f}, {1 / low:.2f}]"


def verdict_table(ranked: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in ranked.itertuples():
        mark = {"fastest": "★ fastest", "tie with fastest": "= tie with fastest"}.get(r.standing, "slower")
        rows.append({"model": r.model, "phase": r.phase,
                     "batch": "–" if pd.isna(r.batch_size) else int(r.batch_size), "backend": r.backend,
                     "standing": mark, "samples/s": r.samples_per_s, "speed vs fastest [95% CI]":
                     _interval(r, "time_vs_fastest"), f"against {BASELINE}": getattr(r, "vs_baseline", "–"),
                     "rounds": r.rounds, **({"run": r.run_id} if ranked.run_id.nunique() > 1 else {})})
    return pd.DataFrame(rows).fillna("–")


def render_verdict(rt: RunTables, report_dir) -> str:
    ranked = rank_backends(round_values(rt), baseline=BASELINE)
    if ranked.empty:
        return ""
    return "\n".join([
        '<h2 id="verdict">Verdict</h2>',
        '<p class="note">Per model, phase and batch size, backends ranked by their median over interleaved '
        "rounds (training: blocks of steps). Speed vs fastest is a paired ratio over the rounds the two were "
        "measured side by side, with its 95% bootstrap interval; a backend whose interval contains 1 is a tie. "
        f"The last column compares with {BASELINE} the same way.</p>",
        table(verdict_table(ranked), "verdict-table")])


def speed_index_chart(machine: pd.DataFrame) -> bytes | None:
    if machine.empty:
        return None
    d = machine.sort_values("timestamp_s")
    fig, ax = plt.subplots(figsize=(10, 3))
    several = d.run_id.nunique() > 1
    for run_id, g in d.groupby("run_id"):
        t = g.timestamp_s - d.timestamp_s.min()
        tag = f"{run_id[-4:]} " if several else ""
        if "control_min_ms" in g:
            ax.plot(t, g.control_min_ms, "o-", ms=3, lw=1, label=f"{tag}fastest call (speed)")
        ax.plot(t, g.control_ms, "x", ms=4, label=f"{tag}median call (stalls show here)")
    ax.set(xlabel="seconds into the run", ylabel="control matmul (ms)", yscale="log",
           title="machine speed index: the same fixed matmul timed every round (higher is slower)")
    ax.legend(fontsize=8)
    return to_png(fig)


def render_machine(rt: RunTables, report_dir) -> str:
    machine = rt["machine"]
    warnings = [w for m in rt.meta.values() for w in m.get("warnings", [])]
    if machine.empty and not warnings:
        return ""
    cols = [c for c in ("control_ms", "control_min_ms", "loadavg_1m", "cpu_mhz", "steal_frac", "gpu_clock_mhz",
                        "gpu_temp_c") if c in machine]
    stats = machine[cols].describe().loc[["min", "50%", "max"]].T.reset_index(names="per round") if cols else None
    return "\n".join([
        '<h2 id="machine">Machine during the run</h2>',
        *[warn(f"{w}") for w in warnings],
        img(speed_index_chart(machine), "machine speed index",
            "A fixed 384×384 fp32 matrix multiply timed at the start of every round. A flat line means the "
            "machine kept its speed; steps or spikes are the machine, not a backend (paired ratios cancel them)."),
        table(stats, "machine-table") if stats is not None else "",
        f'<p class="note">{html.escape("steal_frac: share of CPU time the hypervisor gave to others in a round.")}'
        "</p>"])
