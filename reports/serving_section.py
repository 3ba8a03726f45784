"""Report section "Deployment scenarios": what MLPerf LoadGen measured when each inference backend
was served (``run --scenarios``): per model, the Server search's latency-throughput curve per
backend, the highest VALID rate with and without dynamic batching, SingleStream and MultiStream
beside the tight-loop latency, Offline throughput, the accuracy LoadGen logged, and where a served
query's time goes."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from bench.storage.catalog import backend_rank, model_rank
from reports.blocks import img, table
from reports.charts import backend_color, to_image
from reports.section import ReportContext, Section

COLUMNS = ["model", "backend", "server_max_valid_qps", "server_max_valid_qps_batching", "batching_gain",
           "single_stream_p90_ms", "tight_loop_p50_ms", "single_stream_vs_tight_loop", "multi_stream_p99_ms",
           "offline_samples_per_s", "offline_batch", "loadgen_accuracy", "harness_accuracy", "accuracy_matches",
           "latency_bound_ms", "scenario_seconds", "loadgen_tests"]


def serving_frame(ctx: ReportContext) -> pd.DataFrame | None:
    """One row per model and backend that was served, fastest Server rate first within a model."""
    s = ctx.summary
    if s.empty or not (s.phase == "serve").any():
        return None
    served = s[(s.phase == "serve") & (s.status == "ok")].copy()
    infer1 = s[(s.phase == "infer") & (s.status == "ok") & (s.batch_size == 1)]
    tight = infer1[["run_id", "model", "backend", "p50_latency_ms"]].rename(columns={"p50_latency_ms":
                                                                                    "tight_loop_p50_ms"})
    served = served.merge(tight, on=["run_id", "model", "backend"], how="left")
    if "single_stream_p90_ms" in served:
        served["single_stream_vs_tight_loop"] = served.single_stream_p90_ms / served.tight_loop_p50_ms
    qps = served["server_max_valid_qps"] if "server_max_valid_qps" in served else pd.Series(0.0, served.index)
    served = served.assign(_model=served.model.map(lambda m: model_rank(m)[0]), _qps=-qps.fillna(0),
                           _backend=served.backend.map(lambda b: backend_rank(b)[0]))
    served = served.sort_values(["_model", "_qps", "_backend"]).drop(columns=["_model", "_qps", "_backend"])
    return served[[c for c in ctx.first + COLUMNS if c in served]]


def _tests(ctx: ReportContext) -> pd.DataFrame:
    return ctx.rt.with_cells("scenarios")


def server_curves(tests: pd.DataFrame, bounds: dict[str, float]) -> bytes | None:
    """Per model: p99 latency against the offered (target) rate of every Server test, a line per
    backend (solid: one call per query; dashed: dynamic batching), filled where LoadGen said VALID."""
    d = tests[tests.scenario == "server"] if not tests.empty else tests
    if d.empty:
        return None
    models = sorted(d.model.unique(), key=model_rank)
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 5.6), squeeze=False,
                             constrained_layout=True)
    for ax, model in zip(axes[0], models):
        m = d[d.model == model]
        for (backend, batching), g in m.groupby(["backend", "batching"]):
            g = g.sort_values("target_qps")
            style = "--" if batching else "-"
            color = backend_color(backend)
            ax.plot(g.target_qps, g.p99_ms, style, color=color, lw=1.2,
                    label=f"{backend}{' (batching)' if batching else ''}")
            ax.scatter(g.target_qps, g.p99_ms, s=22, color=np.where(g.valid, color, "white"), edgecolors=color,
                       zorder=3)
        if model in bounds:
            ax.axhline(bounds[model], color="#b00", lw=0.8, ls=":")
            ax.text(ax.get_xlim()[0], bounds[model], " p99 bound", color="#b00", fontsize=8, va="bottom")
        ax.set(xscale="log", yscale="log", xlabel="offered queries/s (Poisson arrivals)", ylabel="p99 latency (ms)",
               title=f"{model}: Server scenario (filled: VALID)")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.18), ncol=2, frameon=False)
    return to_image(fig)


LATENCY_PARTS = ["latency_ms", "issue_delay_ms", "handover_ms", "call_ms", "answer_ms", "other_ms"]


def latency_bands(served: pd.DataFrame) -> list[dict]:
    """The mean of each part of a served query's latency (a ``served`` table of one test), for the
    median queries (the 40th-60th percentile) and for the tail (the slowest 1%)."""
    lat = served.latency_ms
    bands = {"median queries": served[(lat >= lat.quantile(0.4)) & (lat <= lat.quantile(0.6))],
             "slowest 1%": served[lat >= lat.quantile(0.99)]}
    return [{"queries": band, **b[LATENCY_PARTS].mean().to_dict(), "stalled_calls": float(b.stalled_call.mean()),
             "n": len(b)} for band, b in bands.items()]


def breakdown_frame(ctx: ReportContext) -> pd.DataFrame:
    """Per backend: ``latency_bands`` of its breakdown test."""
    d = ctx.rt.with_cells("served")
    if d.empty:
        return d
    return pd.DataFrame([{"model": model, "backend": backend, "at_qps": g.target_qps.iloc[0], **band}
                         for (model, backend), g in d.groupby(["model", "backend"]) for band in latency_bands(g)])


NOTE = ("MLPerf Inference's four scenarios, driven by MLPerf LoadGen (mlcommons-loadgen) against each backend "
        "prepared as in the Inference section. <b>These are shortened runs</b> (each LoadGen test lasts "
        "--scenario-seconds, MLPerf's rules ask 600 s and far more queries): they are this harness's figures, not "
        "MLPerf results. Server: the highest Poisson arrival rate LoadGen reported VALID (p99 under the bound), "
        "found by a search of --server-steps tests, without and with dynamic batching (queued queries served "
        "together, up to --max-batch or --batch-timeout-us); one run, so no interval. SingleStream p90 includes "
        "LoadGen's Python callback, which the tight-loop p50 does not: their ratio is what serving adds. "
        "AccuracyOnly: every test image once; accuracy_matches says the classes LoadGen logged are the harness's "
        "own predictions for that backend.")


def render(ctx: ReportContext, frame: pd.DataFrame | None) -> str:
    if frame is None:
        return ""
    s = ctx.summary
    bounds = s[s.phase == "serve"].groupby("model").latency_bound_ms.first().to_dict() \
        if "latency_bound_ms" in s else {}
    parts = [f'<p class="note">{NOTE}</p>',
             img(server_curves(_tests(ctx), bounds), "server scenario curves",
                 "Each point one LoadGen Server test of the search: the rate it offered and the p99 latency it "
                 "measured. The dotted line is the bound; where a curve leaves it, the backend is saturated."),
             table(frame, "serving-table")]
    breakdown = breakdown_frame(ctx)
    if not breakdown.empty:
        parts += [f"<h3>{html.escape('Where a served query spends its time')}</h3>",
                  '<p class="note">Server, one call per query, at the highest VALID rate: LoadGen\'s issue delay '
                  "(from the query's scheduled arrival to LoadGen's call into the SUT: the queue behind earlier "
                  "queries and LoadGen's own call into Python), the hand-over to the model call, the call itself, "
                  "the answer to LoadGen (from the harness's clock), and what is left (other). stalled_calls: the "
                  "share of calls over 10x the median call, the machine's stalls.</p>",
                  table(breakdown, "served-table")]
    return "\n".join(parts)


SECTION = Section("deployment-scenarios", "Deployment scenarios", render, frame=serving_frame)
