"""Report sections "Verdict" (who wins, per model and phase, with intervals; ties called ties) and
"Machine" (the control workload's speed index over the run, and the run's warnings)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import pandas as pd

from bench.results import RunTables
from reports.blocks import img, nbytes, si, table, warn
from reports.charts import to_image
from reports.comparison import rank_backends, round_values
from reports.summary import backend_rank, model_rank

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


def _speed_text(r, unstable: bool) -> str:
    """One glance cell: samples/s, its speed against the fastest with the interval, and marks."""
    text = f"{si(r.samples_per_s)}/s"
    if r.standing == "fastest":
        text += " ★ fastest"
    else:
        text += f" · {_interval(r, 'time_vs_fastest')}" + (" = tie" if r.standing == "tie with fastest" else "")
    return text + (" ⚠ unstable" if unstable else "")


def glance_table(rt: RunTables, ranked: pd.DataFrame, run_id: str, model: str) -> pd.DataFrame:
    """Per backend of one model: training and inference (batch 1 and the largest batch) against the
    fastest, accuracy, peak memory and what did not end ok, each mark in its own cell."""
    s = rt["summary"]
    s = s[(s.run_id == run_id) & (s.model == model)]
    r = ranked[(ranked.run_id == run_id) & (ranked.model == model)]
    sizes = sorted(r[r.phase == "infer"].batch_size.dropna().unique())
    phases = [("train", None)] + [("infer", b) for b in dict.fromkeys([sizes[0], sizes[-1]] if sizes else [])]
    train = s[(s.phase == "train") & (s.status == "ok")]
    parity = train["parity_argmax_agreement"] if "parity_argmax_agreement" in train else pd.Series(dtype=float)
    reference = train[parity.isna()] if len(parity) else train
    base_acc = reference.test_accuracy.iloc[0] if len(reference) and "test_accuracy" in reference else float("nan")
    rows = []
    for backend, g in sorted(s.groupby("backend", sort=False), key=lambda bg: backend_rank(bg[0])):
        row = {"backend": backend}
        for phase, bs in phases:
            label = "training" if phase == "train" else f"inference, batch {int(bs)}"
            hit = r[(r.backend == backend) & (r.phase == phase) & ((r.batch_size == bs) if bs else True)]
            cell = g[(g.phase == phase) & ((g.batch_size == bs) if bs else True)]
            done = cell[cell.status == "ok"] if len(cell) else cell
            if len(hit):
                unstable = bool(cell.unstable.fillna(False).astype(bool).any()) if "unstable" in cell else False
                row[label] = _speed_text(hit.iloc[0], unstable)
            elif phase == "train" and "world_size" in done and done.world_size.notna().any():
                row[label] = "; ".join(f"{si(c.train_samples_per_s)}/s × {int(c.world_size)} rank"
                                       f"{'' if c.world_size == 1 else 's'}"
                                       for c in done.sort_values("world_size").itertuples()) + " (see Scaling)"
            elif len(cell) and (cell.status != "ok").any():
                row[label] = str(cell.status.iloc[0])
            else:
                row[label] = "–"
        t = g[(g.phase == "train") & (g.status == "ok")]
        delta = g["parity_accuracy_delta_pts"].dropna() if "parity_accuracy_delta_pts" in g else pd.Series()
        if len(t) and "test_accuracy" in t and t.test_accuracy.notna().any():
            row["accuracy"] = f"{t.test_accuracy.iloc[0] * 100:.2f}%"
        elif len(delta) and base_acc == base_acc:
            row["accuracy"] = f"{base_acc * 100 + delta.iloc[0]:.2f}% (Δ {delta.iloc[0]:+.2f} pts)"
        else:
            row["accuracy"] = "–"
        rss = g.peak_rss_bytes.max() if "peak_rss_bytes" in g else float("nan")
        row["peak memory"] = nbytes(rss) if rss == rss else "–"
        if "cuda_max_allocated_bytes" in g and g.cuda_max_allocated_bytes.notna().any():
            row["peak memory"] += f" (GPU {nbytes(g.cuda_max_allocated_bytes.max())})"
        bad = g[g.status != "ok"]
        row["status"] = "ok" if bad.empty else "; ".join(
            f"{b.phase}{'' if pd.isna(b.batch_size) else f' bs={int(b.batch_size)}'}: {b.status}"
            + (f" ({b.reason})" if isinstance(b.reason, str) and b.reason and b.status != "skipped" else "")
            for b in bad.itertuples())
        if not bad.empty and (bad.status == "skipped").all():
            row["status"] = f"skipped: {bad.reason.dropna().iloc[0] if bad.reason.notna().any() else ''}"
        rows.append(row)
    return pd.DataFrame(rows)


def ranked_backends(rt: RunTables) -> pd.DataFrame:
    """Backends ranked per model, phase and batch size with their paired intervals (one bootstrap
    per report: the glance, the verdict and its export all read this)."""
    return rank_backends(round_values(rt), baseline=BASELINE)


def render_glance(rt: RunTables, ranked: pd.DataFrame) -> str:
    """The first screen: per model, every backend's training and inference speed against the
    fastest (with intervals), accuracy, memory and marks."""
    s = rt["summary"]
    if s.empty or not s.phase.isin(["train", "infer"]).any():
        return ""
    if ranked.empty:  # nothing timed ended ok: the table still says what happened to each cell
        ranked = pd.DataFrame(columns=["run_id", "model", "phase", "batch_size", "backend", "standing"])
    s = s[s.phase.isin(["train", "infer", "export"])]
    parts = ['<h2 id="at-a-glance">At a glance</h2>',
             '<p class="note">★ the fastest backend of a column; the others as a share of its speed with the 95% '
             "interval of the paired ratio (= tie: the interval holds 1); ⚠ unstable: the median moved by more than "
             "10% between rounds. Details in the Verdict below.</p>"]
    several = s.run_id.nunique() > 1
    groups = s[["run_id", "model"]].drop_duplicates()
    groups = groups.iloc[sorted(range(len(groups)), key=lambda i: (groups.run_id.iloc[i] if several else "",
                                                                    model_rank(groups.model.iloc[i])))]
    for run_id, model in groups.itertuples(index=False):
        heading = f"{model}" + (f" · run {run_id}" if several else "")
        parts += [f"<h3>{html.escape(heading)}</h3>",
                  table(glance_table(rt, ranked, run_id, model), f"glance-{run_id}-{model}" if several
                        else f"glance-{model}")]
    return "\n".join(parts)


def verdict_frame(ranked: pd.DataFrame) -> pd.DataFrame:
    """The verdict in raw numbers: per model, phase and batch size, backends ranked, with their speed
    against the fastest and against the baseline as ratios with 95% intervals."""
    if ranked.empty:
        return ranked
    out = ranked.assign(speed_vs_fastest=1 / ranked.time_vs_fastest,
                        speed_vs_fastest_low=1 / ranked.time_vs_fastest_high,
                        speed_vs_fastest_high=1 / ranked.time_vs_fastest_low)
    keep = ["run_id", "model", "phase", "batch_size", "backend", "standing", "samples_per_s", "speed_vs_fastest",
            "speed_vs_fastest_low", "speed_vs_fastest_high", "time_vs_baseline", "time_vs_baseline_low",
            "time_vs_baseline_high", "vs_baseline", "rounds"]
    return out[[c for c in keep if c in out]]


def render_verdict(ranked: pd.DataFrame) -> str:
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
    return to_image(fig)


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
