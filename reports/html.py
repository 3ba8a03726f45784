"""One self-contained report.html (charts embedded as PNG data URIs) built from result files."""

from __future__ import annotations

import html
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bench.measure.metrics import METRICS
from bench.results import RunTables, atomic_write_text
from reports import charts, dynamics_section, profile_section, scaling_section, verdict_section
from reports.blocks import SORT_SCRIPT, cols, img, table, warn, with_toc
from reports.load import load_paths
from reports.summary import memory_frame, planned_max_batch, summary_frame, with_metric_columns

CSS = """
*{box-sizing:border-box} body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1240px;color:#222;
padding:0 1em} p,figcaption,li{overflow-wrap:break-word}
h1{margin:0 0 .2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em} h3{margin:1em 0 .3em}
.tw{max-width:100%;overflow-x:auto}
table.t{border-collapse:collapse;font-size:12.5px;margin:.4em 0 1em;max-width:100%}
table.t th,table.t td{border:1px solid #ddd;padding:3px 6px;text-align:right;font-variant-numeric:tabular-nums}
table.t th{background:#f3f3f3;cursor:pointer;vertical-align:bottom;font-weight:600;overflow-wrap:normal;
word-break:normal;hyphens:none;min-width:3.6em}
table.t th:hover{background:#e6eefc} table.t th[aria-sort=ascending]::after{content:" ▲"}
table.t th[aria-sort=descending]::after{content:" ▼"} table.t td.s{text-align:left}
nav.toc{font-size:13px;background:#f7f7f7;border:1px solid #e3e3e3;padding:.4em .8em;margin:.6em 0}
nav.toc ol{display:flex;flex-wrap:wrap;gap:.2em 1.4em;margin:.2em 0 0;padding:0;list-style:none}
.card{display:flex;gap:2em;flex-wrap:wrap} figure{margin:1em 0} figcaption{font-size:13px;color:#555;max-width:900px}
img{max-width:100%;height:auto} .note{font-size:13px;color:#555} .warn{color:#b35900}
.trust{background:#fff8e6;border-left:4px solid #e0a000;padding:.5em .8em;font-size:14px}
"""


def environment(meta: dict[str, dict]) -> pd.DataFrame:
    keys = ["start_time", "end_time", "status", "hostname", "cpu_model", "cpu_count", "gpu_name", "torch_threads",
            "python", "torch", "torchvision", "onnxruntime", "numpy", "cuda_version", "seed", "git_commit",
            "data_source", "command_line"]
    rows = [{"field": k, **{rid: str(m.get(k, "–")) for rid, m in meta.items()}} for k in keys]
    return pd.DataFrame(rows)


def summary_section(summary: pd.DataFrame, max_batch: dict[str, int] | None = None) -> pd.DataFrame:
    df = summary_frame(summary, max_batch)
    if df.empty:
        return df
    cost = summary[summary.phase == "train"].groupby("model")[
        [c for c in ("params", "infer_flops_per_sample", "train_flops_per_sample") if c in summary]].first()
    return df.merge(cost.reset_index(), on="model", how="left")


# The HTML tables keep what a reader compares (the exports' CSV/JSON carry every column).
TRAIN_COLUMNS = ["model", "backend", "epochs_run", "batch_size", "optimizer", "schedule", "lr", "train_samples_per_s",
                 "train_samples_per_s_ci_low", "train_samples_per_s_ci_high", "between_round_cv", "cold_step_s",
                 "warmup_s", "train_s", "eval_s", "time_to_accuracy_s", "test_accuracy", "mfu", "peak_rss_bytes"]
INFER_COLUMNS = ["model", "backend", "batch_size", "samples_per_s", "samples_per_s_ci_low", "samples_per_s_ci_high",
                 "rounds", "between_round_cv", "unstable", "p50_latency_ms", "p90_latency_ms", "p99_latency_ms",
                 "iqr_latency_ms", "cv", "cold_first_call_ms", "n_samples", "event_wall_gap", "host_bound",
                 "peak_rss_bytes"]
EXPORT_COLUMNS = ["model", "backend", "precision", "opset", "export_s", "quantization", "quantize_s", "quantized_ops",
                  "calibration_images", "fp32_onnx_bytes", "onnx_bytes", "session_create_s", "first_inference_s",
                  "ort_session_rss_bytes", "ort_opt_level", "ort_intra_threads", "ort_inter_threads"]


def section_frames(rt: RunTables, ranked: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The report's tables by section name, in raw units: what the HTML shows and what
    ``mnist-bench export`` writes (``ranked``: ``verdict_section.ranked_backends(rt)``, when known)."""
    s = rt["summary"]
    if s.empty:
        return {}
    several = s.run_id.nunique() > 1
    s = with_metric_columns(s)
    ok = s[s.status == "ok"]
    first = ["run_id"] if several else []
    ranked = verdict_section.ranked_backends(rt) if ranked is None else ranked
    frames = {"verdict": verdict_section.verdict_frame(ranked),
              "summary": summary_section(s, planned_max_batch(rt.meta)),
              "training": cols(ok[ok.phase == "train"], first + TRAIN_COLUMNS),
              "inference": cols(ok[ok.phase == "infer"].sort_values(["model", "backend", "batch_size"]),
                                first + INFER_COLUMNS)}
    parity_cols = [c for c in s.columns if c.startswith("parity_")]
    if parity_cols:
        frames["parity"] = cols(ok[ok[parity_cols[0]].notna()], first + ["model", "backend", "phase", *parity_cols])
    frames["export"] = cols(ok[ok.phase == "export"], first + EXPORT_COLUMNS)
    memory = memory_frame(s)
    frames["memory"] = memory if several or memory.empty else memory.drop(columns="run_id")
    frames["classes"] = _per_class(rt["classes"], s)
    frames["scaling"] = scaling_section.scaling_frame(s)
    frames["skipped"] = cols(s[s.status != "ok"], first + ["model", "backend", "phase", "batch_size", "status",
                                                         "reason"])
    return {name: _tidy(f) for name, f in frames.items() if f is not None}


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A plain table: a fresh index, unnamed columns, batch sizes as numbers (missing for training)."""
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    if "batch_size" in df:
        df["batch_size"] = pd.to_numeric(df.batch_size, errors="coerce")
    return df


def render_tables(rt: RunTables, ranked: pd.DataFrame) -> str:
    s = rt["summary"]
    if s.empty:
        return "<p>No completed cells.</p>"
    frames = section_frames(rt, ranked)
    s = with_metric_columns(s)
    export = s[(s.status == "ok") & (s.phase == "export")]
    parts = ["<h2>Summary</h2>",
             '<p class="note">One row per model × backend, each figure as the glance and the verdict show it: '
             + html.escape("; ".join(f"{m.label}: {m.definition}" for m in METRICS.values()
                                     if m.name != "peak_rss_bytes"))
             + ". Memory: what the backend costs (see Memory).</p>",
             table(frames["summary"], "summary-table")]
    parts += ["<h2>Training</h2>",
              img(charts.training_throughput(s), "training throughput",
                  "Steady-state training samples/s per backend; whiskers: the 95% interval over blocks of steps."),
              img(charts.training_curves(rt["curve"], s), "training curves",
                   "Training loss and test accuracy against wall time (evaluation included in wall time, "
                   "excluded from train_s). The dashed line is the target accuracy."),
              table(frames["training"], "train-table")]
    n_unstable = int(frames["inference"].unstable.fillna(False).astype(bool).sum()) \
        if "unstable" in frames["inference"] else 0
    parts += ["<h2>Inference</h2>",
              img(charts.inference_throughput(s), "inference throughput",
                  "Samples/s at the largest batch per backend; whiskers from the p90 call to the best call."),
              img(charts.latency_vs_batch(s), "latency vs batch size",
                   "Median latency per call against batch size; whiskers from the fastest call to p99."),
              f'<p class="warn">{n_unstable} cell(s) unstable (their median moved by more than 10% between '
              "rounds, CV): marked in the table. Their single figures are uncertain; the paired ratios of the "
              "Verdict are measured side by side and carry their own intervals.</p>" if n_unstable else "",
              table(frames["inference"], "infer-table")]
    if "parity" in frames:
        parts += ["<h2>Parity against fp32 eager</h2>",
                  '<p class="note">Same trained weights, full test split: the backend\'s logits against the fp32 '
                  "PyTorch model's. parity_flag marks an accuracy drop of more than 0.2 points.</p>",
                  table(frames["parity"], "parity-table")]
    if not export.empty:
        notes = export[export.engine_note.notna()] if "engine_note" in export else export.iloc[:0]
        parts += ["<h2>Export and preparation</h2>",
                  '<p class="note">Backends that run a model trained by a PyTorch backend: the fp32 ONNX export '
                  "(export_s), quantization where the engine quantizes (quantize_s, the integer operators it "
                  "produced, calibration images), session creation and the first inference, apart from the "
                  "steady-state latency above.</p>",
                  *[warn(f"{r.model} · {r.backend}: {r.engine_note}") for r in notes.itertuples()],
                  table(frames["export"], "export-table")]
    parts += ["<h2>Memory</h2>",
              '<p class="note">What each backend costs, each figure measured against the memory held just before '
              "it, after freed heap was handed back to the system: <b>weights</b> (the parameters' bytes; ONNX "
              "Runtime: the model file it runs), <b>preparation</b> (what exporting, quantizing, creating the "
              "session or compiling, and the first call added), <b>one call</b> at each batch size (activations "
              "and workspace). On CUDA these are the allocator's figures, else the process's resident set, "
              "whose page granularity makes small figures read 0. The whole process's resident set (interpreter, "
              "data and every library: about 1 GiB for every backend) is in the Training and Inference tables as "
              "peak_rss_bytes.</p>",
              img(charts.memory(frames["memory"]), "memory a backend costs",
                  "Per model: weights, preparation and one call at each batch size, per backend (MiB, log scale "
                  "above 1)."),
              table(frames["memory"], "memory-table")]
    parts += ["<h2>Accuracy</h2>",
              img(charts.confusion_matrices(rt["confusion"], s), "confusion matrices",
                   "Rows: true digit, columns: predicted; colour on a log scale."),
              table(frames["classes"], "classes-table"),
              img(charts.image_grid(rt.samples, "training samples", lambda r: f"label {r.label}"),
                   "sample images"),
              _misclassified(rt["misclassified"], s)]
    if not frames["skipped"].empty:
        parts += ["<h2>Skipped and failed cells</h2>", table(frames["skipped"], "skipped-table")]
    return "\n".join(parts)


def _per_class(classes: pd.DataFrame, s: pd.DataFrame) -> pd.DataFrame:
    if classes.empty:
        return classes
    d = classes.merge(s[["run_id", "cell_id", "model", "backend"]], on=["run_id", "cell_id"])
    return d.pivot_table(index=["model", "backend"], columns="class", values="f1").add_prefix("F1 ").reset_index()


def _misclassified(mis: pd.DataFrame, s: pd.DataFrame) -> str:
    if mis.empty:
        return ""
    out = []
    d = mis.merge(s[["run_id", "cell_id", "model", "backend"]], on=["run_id", "cell_id"])
    for (model, backend), g in d.groupby(["model", "backend"]):
        out.append(img(charts.image_grid(g.head(16), f"{model} ({backend}): misclassified test images",
                                          lambda r: f"{r.pred} (true {r.label})"), f"misclassified {model}"))
    return "\n".join(out)


def render_problems(rt: RunTables) -> str:
    """Damaged or foreign files, runs that did not finish, and the cells they still lack."""
    from bench.plan import missing_cells

    parts = [warn(p) for p in rt.problems]
    present = set(rt["summary"].cell_id) if "cell_id" in rt["summary"] else set()
    for run_id, meta in rt.meta.items():
        status = meta.get("status", "unknown")
        if status not in ("complete",):
            parts.append(warn(f"run {run_id} is {status}: it did not finish; resume it with "
                              f"mnist-bench run --resume <its folder>"))
        missing = missing_cells(meta.get("config") or {}, present) if status != "complete" else []
        if missing:
            rows = pd.DataFrame(missing, columns=["model", "backend", "phase", "batch_size"]).assign(run=run_id)
            parts.append(table(rows, f"missing-{run_id}"))
    if not parts:
        return ""
    return '<h2 id="problems">Problems</h2>' + "\n".join(parts)


def render_report(paths: list[Path], output: Path | None = None, extra_sections: list[str] | None = None) -> Path:
    rt = load_paths([Path(p) for p in paths])
    for problem in rt.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if output is None:
        first = Path(paths[0])
        output = (first if first.is_dir() else first.parent) / "report.html"
    title = "mnist-bench report"
    head = [f"<h1>{title}</h1>",
            f'<p class="note">Runs: {", ".join(html.escape(r) for r in rt.meta)} · rendered '
            f'{datetime.now(UTC).isoformat(timespec="seconds")} from result files only. Click a column '
            "header to sort a table.</p>"]
    ranked = verdict_section.ranked_backends(rt)
    body = [verdict_section.render_glance(rt, ranked),
            render_problems(rt),
            verdict_section.render_verdict(ranked),
            "<h2>Environment</h2>", table(environment(rt.meta), "environment-table"),
            render_tables(rt, ranked), verdict_section.render_machine(rt, output.parent)]
    body += [section(rt, output.parent) for section in SECTIONS]
    body += extra_sections or []
    toc, content = with_toc("".join(body))
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body>{"".join(head)}{toc}{content}'
            f"<script>{SORT_SCRIPT}</script></body></html>")
    atomic_write_text(output, page)
    return output


# Further report sections: f(run_tables, report_dir) -> html.
SECTIONS: list = [scaling_section.render, dynamics_section.render, profile_section.render]
