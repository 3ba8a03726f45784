"""Report sections "Verdict" (who wins, per model and phase, with intervals; ties called ties) and
"Machine" (the control workload's speed index over the run, and the run's warnings)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import pandas as pd

from bench.analysis.columns import with_metric_columns
from bench.measure.figures import resolution, speed_share, with_stability
from bench.measure.metrics import paired_metric
from bench.storage import catalog
from bench.storage.catalog import backend_rank, model_rank
from bench.storage.results import RunTables
from reports.blocks import img, nbytes, si, table, warn
from reports.charts import to_image
from reports.forest import forest_chart
from reports.section import Section
from reports.summary import memory_frame, memory_row

TTA = paired_metric("tta")  # the column time to accuracy is ranked and shown in (a declaration)


def _share(r) -> str:
    """Speed as a share of the fastest's, with the interval: "0.63× [0.61, 0.65]"."""
    return speed_share(r.time_vs_fastest, r.time_vs_fastest_low, r.time_vs_fastest_high)


def _against_baseline(r) -> str:
    """A ranked row's verdict against the baseline, in the words ``rank_backends`` wrote."""
    if r.backend == catalog.reference():
        return "baseline"
    words = getattr(r, "vs_baseline", None)
    return words if isinstance(words, str) else "–"


def _why(r) -> str:
    because = getattr(r, "why", None)
    return because if isinstance(because, str) and because else "–"


def verdict_table(ranked: pd.DataFrame) -> pd.DataFrame:
    rows = []
    tta = "phase" in ranked and (ranked.phase == "tta").any()
    explained = "why" in ranked and (ranked.why.fillna("") != "").any()
    for r in ranked.itertuples():
        mark = {"fastest": "★ fastest", "tie with fastest": "= tie with fastest"}.get(r.standing, "slower")
        rows.append({"model": r.model, "phase": r.phase,
                     "batch": "–" if pd.isna(r.batch_size) else int(r.batch_size), "backend": r.backend,
                     "standing": mark, "samples/s": r.samples_per_s,
                     **({"time to target (s)": getattr(r, TTA, float("nan"))} if tta else {}),
                     "speed × fastest [95% CI]": "1" if r.standing == "fastest" else _share(r),
                     f"against {catalog.reference()}": _against_baseline(r),
                     **({"where the gap goes": _why(r)} if explained else {}),
                     "rounds": r.rounds, **({"run": r.run_id} if ranked.run_id.nunique() > 1 else {})})
    return pd.DataFrame(rows).astype(object).fillna("–")  # object: a dash in a column of numbers


def _speed_cell(r) -> tuple[str, float]:
    """One glance cell (text, sort key): samples/s, then ★ for the fastest or its share of the
    fastest's speed with the interval (= tie: the interval holds 1)."""
    text = f"{si(r.samples_per_s)}/s"
    if r.standing == "fastest":
        return text + " ★", r.samples_per_s
    return text + f" · {_share(r)}" + (" = tie" if r.standing == "tie with fastest" else ""), r.samples_per_s


def _tta_cell(r, cell: pd.DataFrame) -> tuple[str, float]:
    """One glance cell for time to accuracy: the median seconds over seeds, ★ or its speed as a
    share of the fastest's with the interval over seeds, and the seeds that missed the target."""
    text = f"{getattr(r, TTA):.3g} s"
    text += " ★" if r.standing == "fastest" else f" · {_share(r)}" + (" = tie" if r.standing == "tie with fastest"
                                                                      else "")
    if len(cell) and "seeds_reached" in cell and cell.seeds_reached.iloc[0] < cell.seeds.iloc[0]:
        text += f" ({int(cell.seeds_reached.iloc[0])}/{int(cell.seeds.iloc[0])} seeds reached it)"
    return text, getattr(r, TTA)


def _memory_cell(cost: pd.Series | None, big_bs) -> tuple[str, float]:
    """What the backend costs in memory (its ``memory_frame`` row): weights, preparation, one call
    at the largest batch."""
    if cost is None:
        return "–", float("nan")
    call = cost.get(f"call_bs{int(big_bs)}_bytes", float("nan")) if big_bs is not None else float("nan")
    gpu = " (GPU)" if cost.measured_as == "CUDA allocator" else ""
    parts = [nbytes(cost.weights_bytes) if cost.weights_bytes == cost.weights_bytes else "–",
             f"+{nbytes(cost.prepare_bytes)}{gpu}" if cost.prepare_bytes == cost.prepare_bytes else "–",
             f"+{nbytes(call)}{gpu}" if call == call else "–"]
    return ("–" if set(parts) == {"–"} else " · ".join(parts)), cost.weights_bytes


def _accuracy_cell(g: pd.DataFrame, base_acc: float) -> tuple[str, float]:
    """A backend's test accuracy: its own training's, or the reference's plus its parity delta."""
    t = g[(g.phase == "train") & (g.status == "ok")]
    delta = g["parity_accuracy_delta_pts"].dropna() if "parity_accuracy_delta_pts" in g else pd.Series()
    if len(t) and t.test_accuracy.notna().any():
        return f"{t.test_accuracy.iloc[0] * 100:.2f}%", t.test_accuracy.iloc[0]
    if len(delta) and base_acc == base_acc:
        acc = base_acc * 100 + delta.iloc[0]
        return f"{acc:.2f}% (Δ {delta.iloc[0]:+.2f} pts)", acc / 100
    return "–", float("nan")


def glance_table(rt: RunTables, ranked: pd.DataFrame, run_id: str, model: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per backend of one model: training and inference (batch 1 and the largest batch) against the
    fastest, accuracy, what it costs in memory and what did not end ok; with each cell's sort key."""
    s = with_metric_columns(rt["summary"])
    s = s[(s.run_id == run_id) & (s.model == model)]
    r = ranked[(ranked.run_id == run_id) & (ranked.model == model)]
    sizes = sorted(s[s.phase == "infer"].batch_size.dropna().unique())
    phases = [("train", None)] + [("infer", b) for b in dict.fromkeys([sizes[0], sizes[-1]] if sizes else [])]
    if (s.phase == "tta").any():
        phases.append(("tta", None))
    train = s[(s.phase == "train") & (s.status == "ok")]
    parity = train["parity_argmax_agreement"] if "parity_argmax_agreement" in train else pd.Series(dtype=float)
    reference = train[parity.isna()] if len(parity) else train
    base_acc = reference.test_accuracy.iloc[0] if len(reference) else float("nan")
    costs = memory_frame(s)
    rows, keys = [], []
    for backend, g in sorted(s.groupby("backend", sort=False), key=lambda bg: backend_rank(bg[0])):
        row, key = {"backend": backend}, {"backend": ""}
        for phase, bs in phases:
            label = {"train": "training", "tta": "time to accuracy"}.get(phase) or f"inference, batch {int(bs)}"
            hit = r[(r.backend == backend) & (r.phase == phase) & ((r.batch_size == bs) if bs else True)]
            cell = g[(g.phase == phase) & ((g.batch_size == bs) if bs else True)]
            done = cell[cell.status == "ok"] if len(cell) else cell
            figure = paired_metric(phase)
            row[label], key[label] = "–", float("nan")
            if len(hit):
                row[label], key[label] = (_tta_cell(hit.iloc[0], done) if phase == "tta" else
                                          _speed_cell(hit.iloc[0]))
            elif phase == "tta" and len(done):  # no seed reached the target: not ranked
                row[label], key[label] = f"not reached (0/{int(done.seeds.iloc[0])} seeds)", float("inf")
            elif phase == "train" and "world_size" in done and done.world_size.notna().any():
                row[label] = "; ".join(f"{si(c.train_samples_per_s)}/s × {int(c.world_size)} rank"
                                       f"{'' if c.world_size == 1 else 's'}"
                                       for c in done.sort_values("world_size").itertuples()) + " (see Scaling)"
            elif len(done) and done[figure].notna().any():  # no rounds to pair (older result files)
                mark = "" if r.empty else " (no paired rounds)"  # a run without any says so once, above
                row[label], key[label] = f"{si(done[figure].iloc[0])}/s{mark}", done[figure].iloc[0]
            elif len(cell) and (cell.status != "ok").any():
                row[label] = str(cell.status.iloc[0])
        row["accuracy"], key["accuracy"] = _accuracy_cell(g, base_acc)
        memory = f"memory: weights · preparation · one call{f' at batch {int(sizes[-1])}' if sizes else ''}"
        row[memory], key[memory] = _memory_cell(memory_row(costs, run_id, model, backend),
                                                sizes[-1] if sizes else None)
        bad = g[g.status != "ok"]
        row["status"] = "ok" if bad.empty else "; ".join(
            f"{b.phase}{'' if pd.isna(b.batch_size) else f' bs={int(b.batch_size)}'}: {b.status}"
            + (f" ({b.reason})" if isinstance(b.reason, str) and b.reason and b.status != "skipped" else "")
            for b in bad.itertuples())
        if not bad.empty and (bad.status == "skipped").all():
            row["status"] = f"skipped: {bad.reason.dropna().iloc[0] if bad.reason.notna().any() else ''}"
        key["status"] = ""
        rows.append(row)
        keys.append(key)
    return pd.DataFrame(rows), pd.DataFrame(keys)


def trust_text(rt: RunTables, ranked: pd.DataFrame) -> str:
    """How far the first screen can be trusted: what the paired intervals resolve, and the machine's
    state during the run with what to do about it."""
    parts = []
    if not ranked.empty:
        pairs = ranked[ranked.standing != "fastest"]
        res = [resolution(lo, hi) for lo, hi in zip(pairs.time_vs_fastest_low, pairs.time_vs_fastest_high)]
        res = pd.Series(res, dtype=float).dropna()
        if len(res):
            parts.append(f"Paired intervals resolve differences of {res.min():.1%} to {res.max():.1%} "
                         f"(median {res.median():.1%}) between backends; a gap smaller than a cell's interval "
                         "is called a tie.")
        parts.append(_processes_sentence(ranked))
        missing = ranked.time_vs_fastest_low.isna() & (ranked.standing != "fastest")
        if missing.any():
            parts.append(f"{int(missing.sum())} cell(s) have too few rounds for an interval.")
    warnings = [w for m in rt.meta.values() for w in m.get("warnings", [])]
    machine = rt["machine"]
    if warnings:
        parts.append("The machine was not quiet: " + "; ".join(warnings) + ". Single figures (samples/s) move "
                     "with it; the ratios between backends were measured side by side and cancel shared drift. "
                     "For steadier figures run on an idle machine; to narrow the ratios give rounds more time "
                     "(--max-time-s) or a tighter --resolution-pct.")
    elif not machine.empty:
        parts.append("The machine kept its speed during the run (no steal, drift or stall warnings).")
    parts += _across_runs(rt)
    stable = with_stability(rt["summary"])
    unstable = stable.unstable.fillna(False).astype(bool).sum() if "unstable" in stable else 0
    if unstable:
        parts.append(f"{int(unstable)} cell(s) moved between rounds far more than this run's typical cell (marked "
                     "'unstable' in the Training and Inference tables, with why): their single figure is "
                     "uncertain, their paired ratio is not made less so.")
    if ranked.empty and not rt["summary"].empty:
        when = "; ".join(f"run {rid}: {str(m.get('start_time', '?'))[:10]}, torch {m.get('torch', '?')}, "
                         f"{m.get('gpu_name') or m.get('cpu_model') or 'unknown machine'}"
                         for rid, m in rt.meta.items())
        parts.append(f"These result files hold no paired rounds ({when}; written before the harness kept them): "
                     "each figure is shown as it was measured, with no ratios, intervals or verdict.")
    return " ".join(parts)


def _processes_sentence(ranked: pd.DataFrame) -> str:
    """Whether the intervals cover how far a ratio moves between processes."""
    source = ranked.get("interval_from", pd.Series(dtype=str))
    infer = source[ranked.phase != "train"] if "phase" in ranked else source
    if (infer == "rounds+processes").any():
        return ("Inference rounds ran in two or more processes (--processes), and each inference interval also "
                "holds how far its ratios moved between them, so a fresh run of this command should land inside it; "
                "training rounds ran in this process only.")
    return ("Every interval comes from the rounds of one process: a fresh process can move a ratio further "
            "(--processes 2, the default, samples a second one).")


def _across_runs(rt: RunTables) -> list[str]:
    """What the machine's calibration (``mnist-bench calibrate``, beside the run folders) says about
    comparing these single figures with another run's."""
    from bench.storage.calibration import CALIBRATION_FILE, load, machine_key

    files = list(dict.fromkeys(d.parent / CALIBRATION_FILE for d in rt.run_dirs))
    found = load([f for f in files if f.is_file()]) if files else {}
    out = []
    for meta in rt.meta.values():
        phases = (found.get(machine_key(meta)) or {}).get("phases", {})
        if phases:
            spread = ", ".join(f"{p} {v['sigma']:.1%}" for p, v in phases.items())
            out.append(f"Between runs on this machine a single figure varies by {spread} (sd of its log, from "
                       "'mnist-bench calibrate'): compare another run's figures with that in mind, or with "
                       "'mnist-bench compare'.")
            break
    return out


def _forest(ranked: pd.DataFrame, run_id: str, model: str, several: bool) -> str:
    title = f"{model}{f' · run {run_id}' if several else ''}: each backend's speed against the fastest"
    return img(forest_chart(ranked[(ranked.run_id == run_id) & (ranked.model == model)], title), title)


def render_glance(rt: RunTables, ranked: pd.DataFrame) -> str:
    """The first screen: per model, every backend's training and inference speed against the
    fastest (with intervals), accuracy, memory cost and marks, under a line that says how far to
    trust them."""
    s = rt["summary"]
    if s.empty or not s.phase.isin(["train", "infer"]).any():
        return ""
    if ranked.empty:  # nothing timed ended ok: the table still says what happened to each cell
        ranked = pd.DataFrame(columns=["run_id", "model", "phase", "batch_size", "backend", "standing",
                                       "time_vs_fastest_low", "time_vs_fastest_high"])
    s = s[s.phase.isin(["train", "infer", "export"])]
    several = s.run_id.nunique() > 1
    groups = s[["run_id", "model"]].drop_duplicates()
    groups = groups.iloc[sorted(range(len(groups)), key=lambda i: (groups.run_id.iloc[i] if several else "",
                                                                    model_rank(groups.model.iloc[i])))]
    parts = [_forest(ranked, run_id, model, several) for run_id, model in groups.itertuples(index=False)]
    parts += [f'<p class="trust"><b>How sure:</b> {html.escape(trust_text(rt, ranked))}</p>',
             '<p class="note">Speeds in samples/s (training: steady state; inference: per call at that batch '
             "size). ★ the fastest backend of a column; the others: their speed as a share of its speed, with the "
             "95% interval of the paired ratio (= tie: the interval holds 1). Memory: the weights, what preparing "
             "the backend added to the process, what one call at the largest batch added. Details in the Verdict "
             "below.</p>"]
    for run_id, model in groups.itertuples(index=False):
        heading = f"{model}" + (f" · run {run_id}" if several else "")
        shown, keys = glance_table(rt, ranked, run_id, model)
        parts += [f"<h3>{html.escape(heading)}</h3>",
                  table(shown, f"glance-{run_id}-{model}" if several else f"glance-{model}", keys=keys)]
    return "\n".join(parts)


def verdict_frame(ranked: pd.DataFrame) -> pd.DataFrame:
    """The verdict in raw numbers: per model, phase and batch size, backends ranked, with their speed
    against the fastest and against the baseline as speed ratios (> 1: faster) with 95% intervals."""
    if ranked.empty:
        return ranked
    out = ranked.assign(speed_vs_fastest=1 / ranked.time_vs_fastest,
                        speed_vs_fastest_low=1 / ranked.time_vs_fastest_high,
                        speed_vs_fastest_high=1 / ranked.time_vs_fastest_low)
    if "time_vs_baseline" in out:
        out = out.assign(speed_vs_baseline=1 / out.time_vs_baseline,
                         speed_vs_baseline_low=1 / out.time_vs_baseline_high,
                         speed_vs_baseline_high=1 / out.time_vs_baseline_low)
    keep = ["run_id", "model", "phase", "batch_size", "backend", "standing", "samples_per_s", TTA,
            "speed_vs_fastest",
            "speed_vs_fastest_low", "speed_vs_fastest_high", "speed_vs_baseline", "speed_vs_baseline_low",
            "speed_vs_baseline_high", "vs_baseline", "why", "rounds"]
    out = out[[c for c in keep if c in out]]
    return out if out.run_id.nunique() > 1 else out.drop(columns="run_id")


def verdict_lines(ranked: pd.DataFrame) -> list[str]:
    """The verdict for the terminal, as hyperfine prints one: per model and phase (inference: batch
    1 and the largest batch), the backends fastest first, each against the baseline."""
    lines = []
    if ranked.empty:
        return lines
    several = ranked.run_id.nunique() > 1
    groups = [(key, g) for key, g in ranked.groupby(["run_id", "model", "phase"], sort=False)]
    # training first, then inference, then time to accuracy
    groups.sort(key=lambda kg: (kg[0][0], model_rank(kg[0][1]), {"train": 0, "tta": 2}.get(kg[0][2], 1)))
    for (run_id, model, phase), g in groups:
        sizes = sorted(g.batch_size.dropna().unique())
        for bs in ([None] if phase in ("train", "tta") else dict.fromkeys([sizes[0], sizes[-1]] if sizes else [])):
            d = g if bs is None else g[g.batch_size == bs]
            what = {"train": "training", "tta": "time to accuracy (median over seeds)"}.get(phase) or \
                f"inference, batch {int(bs)}"
            lines.append(f"{model} · {what}" + (f" · run {run_id}" if several else "") + ":")
            width = max(len(b) for b in d.backend)
            for r in d.itertuples():
                mark = "★" if r.standing == "fastest" else "=" if r.standing == "tie with fastest" else " "
                words = _against_baseline(r)
                figure = f"{getattr(r, TTA):>7.3g} s" if phase == "tta" else f"{si(r.samples_per_s):>6}/s"
                lines.append(f"  {mark} {r.backend:<{width}}  {figure}  {words}")
                if _why(r) != "–":
                    lines.append(f"      where the gap goes: {_why(r)}")
    return lines


def render_verdict(ranked: pd.DataFrame) -> str:
    if ranked.empty:
        return ""
    return "\n".join([
        '<p class="note">Per model, phase and batch size, backends ranked by their median over interleaved '
        "rounds (training: blocks of steps; time to accuracy: seeds, each backend trained from the same initial "
        "weights and data order per seed, a seed that missed the target counted slower than any that reached it). "
        "samples/s is the cell's headline figure (1 / the median over rounds "
        "of seconds per sample), the same in every table and export. Speed × fastest is the quotient of the two "
        "cells' figures, with its 95% interval from a bootstrap of the rounds the two were measured side by side "
        "in, drawn together (time to accuracy with a missed seed: the signed-rank interval of the per-seed "
        "ratios); a backend whose interval contains 1 is a tie. The last column compares with "
        f"{catalog.reference()} the same way.</p>",
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
    cols = [c for c in ("control_ms", "control_min_ms", "loadavg_1m", "cpu_mhz", "steal_frac", "other_cores",
                        "minor_faults", "major_faults", "voluntary_switches", "involuntary_switches",
                        "gpu_clock_mhz", "gpu_temp_c") if c in machine]
    stats = machine[cols].describe().loc[["min", "50%", "max"]].T.reset_index(names="per round") if cols else None
    return "\n".join([
        *[warn(f"{w}") for w in warnings],
        img(speed_index_chart(machine), "machine speed index",
            "A fixed 384×384 fp32 matrix multiply timed at the start of every round. A flat line means the "
            "machine kept its speed; steps or spikes are the machine, not a backend (paired ratios cancel them)."),
        table(stats, "machine-table") if stats is not None else "",
        f'<p class="note">{html.escape(_MACHINE_NOTE)}</p>'])


_MACHINE_NOTE = ("steal_frac: share of CPU time the hypervisor gave to others in a round. other_cores: how many cores "
                 "other processes of this machine kept busy in the round. minor_faults, major_faults, "
                 "voluntary_switches, involuntary_switches: this process's own page faults and context switches in "
                 "the round (the run's own interference, as steal is the VM's).")


GLANCE = Section("at-a-glance", "At a glance", lambda ctx, _: render_glance(ctx.rt, ctx.ranked))
VERDICT = Section("verdict", "Verdict", lambda ctx, _: render_verdict(ctx.ranked),
                  frame=lambda ctx: verdict_frame(ctx.ranked))
MACHINE = Section("machine", "Machine during the run", lambda ctx, _: render_machine(ctx.rt, ctx.report_dir))
