"""The report's table sections: summary, training, inference, parity, export, memory, accuracy,
skipped cells, the environment and the problems. Each is a ``Section`` (``reports.section``);
their order is ``reports.html.SECTIONS``."""

from __future__ import annotations

import html

import pandas as pd

from bench.analysis.stages import stage_sentence
from bench.measure.figures import UNSTABLE_FACTOR as FACTOR
from bench.measure.metrics import METRICS
from bench.storage import catalog
from bench.storage.meta import environment
from bench.storage.plan import missing_cells
from reports import charts
from reports.blocks import cols, digit_grid, img, table, warn
from reports.section import ReportContext, Section
from reports.summary import memory_frame, planned_max_batch, summary_frame


def _metric_columns(phase: str) -> list[str]:
    """A phase's metrics, speeds with their intervals (other intervals are in the exports' summary)."""
    return [c for m in METRICS.values() if m.phase == phase and m.in_table
            for c in (m.columns if m.unit == "samples/s" else (m.name,))]


# The HTML tables keep what a reader compares (the exports' CSV/JSON carry every column): what a
# cell is, the metrics of its phase (bench.measure.metrics) and the details that explain them.
def train_columns() -> list[str]:
    return list(dict.fromkeys(["model", "backend", "epochs_run", "batch_size", "optimizer", "schedule", "lr",
                               *_metric_columns("train"), "between_round_cv", "cold_step_s", "warmup_s", "train_s",
                               "eval_s"]))


def infer_columns() -> list[str]:
    return list(dict.fromkeys(["model", "backend", "batch_size", *_metric_columns("infer"), "rounds",
                               "between_round_cv", "unstable", "unstable_why", "p90_latency_ms", "p99_latency_ms",
                               "iqr_latency_ms",
                               "cv", "cold_first_call_ms", "n_samples", "event_wall_gap", "host_bound",
                               "peak_rss_bytes"]))


def export_columns() -> list[str]:
    """What a backend prepared from a trained model is, then each engine's own figures and settings."""
    return list(dict.fromkeys(["model", "backend", "precision", *catalog.fact_columns()]))
def _summary_frame(ctx: ReportContext) -> pd.DataFrame | None:
    s = ctx.summary
    if s.empty:
        return None
    df = summary_frame(s, planned_max_batch(ctx.rt.meta))
    if df.empty:
        return df
    cost = s[s.phase == "train"].groupby("model")[
        [c for c in ("params", "infer_flops_per_sample", "train_flops_per_sample") if c in s]].first()
    return df.merge(cost.reset_index(), on="model", how="left")


def _phase_frame(phase: str, columns):
    def frame(ctx: ReportContext) -> pd.DataFrame | None:
        if ctx.summary.empty:
            return None
        d = ctx.ok[ctx.ok.phase == phase]
        d = d.sort_values(["model", "backend", "batch_size"]) if phase == "infer" else d
        return cols(d, ctx.first + columns())
    return frame


def _parity_frame(ctx: ReportContext) -> pd.DataFrame | None:
    parity = [c for c in ctx.summary.columns if c.startswith("parity_")]
    if not parity:
        return None
    return cols(ctx.ok[ctx.ok[parity[0]].notna()], ctx.first + ["model", "backend", "phase", *parity])


def _memory_frame(ctx: ReportContext) -> pd.DataFrame | None:
    if ctx.summary.empty:
        return None
    memory = memory_frame(ctx.summary)
    return memory if ctx.several or memory.empty else memory.drop(columns="run_id")


def _classes_frame(ctx: ReportContext) -> pd.DataFrame | None:
    if ctx.summary.empty:
        return None
    classes = ctx.rt.with_cells("classes")
    if classes.empty:
        return classes
    return classes.pivot_table(index=["model", "backend"], columns="class", values="f1").add_prefix(
        "F1 ").reset_index()


def _skipped_frame(ctx: ReportContext) -> pd.DataFrame | None:
    if ctx.summary.empty:
        return None
    s = ctx.summary
    return cols(s[s.status != "ok"], ctx.first + ["model", "backend", "phase", "batch_size", "status", "reason"])


def _summary(ctx: ReportContext, frame) -> str:
    if frame is None:
        return "<p>No completed cells.</p>"
    return ('<p class="note">One row per model × backend, each figure as the glance and the verdict show it: '
            + html.escape("; ".join(f"{m.label}: {m.definition}" for m in METRICS.values() if m.summary))
            + ". Memory: what the backend costs (see Memory).</p>" + table(frame, "summary-table"))


def _training(ctx: ReportContext, frame) -> str:
    if frame is None:
        return ""
    return "\n".join([
        img(charts.training_throughput(ctx.summary), "training throughput",
            "Steady-state training samples/s per backend; whiskers: the 95% interval over blocks of steps."),
        img(charts.training_curves(ctx.rt["curve"], ctx.summary, ctx.rt["timings"]), "training curves",
            "Training loss (the mean step loss of each timed block of steps, from the end of the warm-up) and test "
            "accuracy at each check of "
            "the test split, against the training step: the backends saw the same batches in the same order. "
            "The dashed line is the target accuracy; time to it is in the Time to accuracy section."),
        table(frame, "train-table")])


def _inference(ctx: ReportContext, frame) -> str:
    if frame is None:
        return ""
    n_unstable = int(frame.unstable.fillna(False).astype(bool).sum()) if "unstable" in frame else 0
    return "\n".join([
        img(charts.inference_throughput(ctx.summary), "inference throughput",
            "Samples/s at the largest batch per backend; whiskers from the p90 call to the best call."),
        img(charts.latency_vs_batch(ctx.summary), "latency vs batch size",
            "Median latency per call against batch size; whiskers from the fastest call to p99."),
        f'<p class="warn">{n_unstable} cell(s) unstable for this machine (their rounds moved by more than 10% '
        f"and more than {FACTOR:g}× this run's typical cell, CV; why: the unstable_why column): marked in the "
        "table. Their single figures are uncertain; the paired ratios of the Verdict are measured side by side "
        "and carry their own intervals.</p>" if n_unstable else "",
        table(frame, "infer-table")])


def _parity(ctx: ReportContext, frame) -> str:
    if frame is None:
        return ""
    return ('<p class="note">Same trained weights, full test split: the backend\'s logits against the fp32 '
            "PyTorch model's. parity_flag marks an accuracy drop of more than 0.2 points.</p>"
            + table(frame, "parity-table"))


def _export(ctx: ReportContext, frame) -> str:
    export = ctx.ok[ctx.ok.phase == "export"] if not ctx.summary.empty else ctx.summary
    if export.empty:
        return ""
    notes = export[export.engine_note.notna()] if "engine_note" in export else export.iloc[:0]
    return "\n".join([
        '<p class="note">Backends that run a model trained by a PyTorch backend: the fp32 ONNX export (export_s), '
        "quantization where the engine quantizes (quantize_s, the integer operators it produced, calibration "
        "images), session creation and the first inference, apart from the steady-state latency above.</p>",
        *[warn(f"{r.model} · {r.backend}: {r.engine_note}") for r in notes.itertuples()],
        table(frame, "export-table")])


def _memory(ctx: ReportContext, frame) -> str:
    if frame is None:
        return ""
    return "\n".join([
        '<p class="note">What each backend costs, each figure measured against the memory held just before it, '
        "after freed heap was handed back to the system: <b>weights</b> (the parameters' bytes; ONNX Runtime: the "
        "model file it runs), <b>preparation</b> (what exporting, quantizing, creating the session or compiling, "
        "and the first call added), <b>one call</b> at each batch size (activations and workspace). On CUDA these "
        "are the allocator's figures, else the process's resident set, whose page granularity makes small "
        "figures read 0. The whole process's resident set (interpreter, data and every library: about 1 GiB for "
        "every backend) is in the Training and Inference tables as peak_rss_bytes.</p>",
        img(charts.memory(frame), "memory a backend costs",
            "Per model: weights, preparation and one call at each batch size, per backend (MiB, log scale above "
            "1)."),
        table(frame, "memory-table")])


def _accuracy(ctx: ReportContext, frame) -> str:
    if frame is None:
        return ""
    rt, s = ctx.rt, ctx.summary
    return "\n".join([
        img(charts.confusion_matrices(rt["confusion"], s), "confusion matrices",
            "Rows: true digit, columns: predicted; colour on a log scale."),
        table(frame, "classes-table"),
        digit_grid(rt.samples, "training samples", lambda r: f"label {r.label}", charts.digit_png),
        _misclassified(ctx)])


def _misclassified(ctx: ReportContext) -> str:
    d = ctx.rt.with_cells("misclassified")
    out = []
    for (model, backend), g in d.groupby(["model", "backend"]):
        out.append(digit_grid(g.head(16), f"{model} ({backend}): misclassified test images",
                              lambda r: f"{r.pred} (true {r.label})", charts.digit_png))
    return "\n".join(out)


def _skipped(ctx: ReportContext, frame) -> str:
    return "" if frame is None or frame.empty else table(frame, "skipped-table")


def _problems(ctx: ReportContext, _frame=None) -> str:
    """Damaged or foreign files, runs that did not finish, and the cells they still lack."""
    rt = ctx.rt
    parts = [warn(p) for p in rt.problems]
    present = set(rt["summary"].cell_id) if "cell_id" in rt["summary"] else set()
    for run_id, meta in rt.meta.items():
        status = meta.get("status", "unknown")
        if status not in ("complete",):
            parts.append(warn(f"run {run_id} is {status}: it did not finish; resume it with "
                              f"mnist-bench run --resume <its folder>"))
        missing = missing_cells(meta, present) if status != "complete" else []
        if missing:
            rows = pd.DataFrame([(k.model, k.backend, str(k.phase), k.batch_size) for k in missing],
                                columns=["model", "backend", "phase", "batch_size"]).assign(run=run_id)
            parts.append(table(rows, f"missing-{run_id}"))
    return "\n".join(parts)


PROBLEMS = Section("problems", "Problems", _problems)
def _environment(ctx: ReportContext, _) -> str:
    """Each run's own time in a sentence (its stages), then the machine and libraries it ran on."""
    said = [(run_id, stage_sentence(meta)) for run_id, meta in ctx.rt.meta.items()]
    lines = "".join(f'<p class="note">{html.escape(run_id + ": " if ctx.several else "")}{html.escape(s)}</p>'
                    for run_id, s in said if s)
    return lines + table(environment(ctx.rt.meta), "environment-table")


ENVIRONMENT_SECTION = Section("environment", "Environment", _environment)
SUMMARY = Section("summary", "Summary", _summary, frame=_summary_frame)
TRAINING = Section("training", "Training", _training, frame=_phase_frame("train", train_columns))
INFERENCE = Section("inference", "Inference", _inference, frame=_phase_frame("infer", infer_columns))
PARITY = Section("parity", "Parity against fp32 eager", _parity, frame=_parity_frame)
EXPORT = Section("export", "Export and preparation", _export, frame=_phase_frame("export", export_columns))
MEMORY = Section("memory", "Memory", _memory, frame=_memory_frame)
ACCURACY = Section("classes", "Accuracy", _accuracy, frame=_classes_frame)
SKIPPED = Section("skipped", "Skipped and failed cells", _skipped, frame=_skipped_frame)
