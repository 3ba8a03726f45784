"""Report section "Time to accuracy": what ``run --seeds N`` measured, as MLPerf Training states it
(fastest and slowest seed dropped, the mean of the rest), the median with its interval, how many
seeds reached the target on the validation split, and the test accuracy apart."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from bench.storage.catalog import backend_rank, model_rank
from reports.blocks import img, table
from reports.charts import backend_color, to_image
from reports.section import ReportContext, Section
from reports.verdict_section import verdict_table

COLUMNS = ["model", "backend", "tta_mlperf_s", "tta_median_s", "tta_median_ci_low_s", "tta_median_ci_high_s",
           "seeds", "seeds_reached", "all_reached", "target_accuracy", "validation_accuracy", "test_accuracy",
           "tta_train_s", "tta_eval_s", "epochs_mean", "validation_images", "batch_size_train", "optimizer",
           "schedule", "lr", "label_smoothing", "dropout", "augment", "normalization", "evals_per_epoch",
           "channels_last"]


def tta_frame(ctx: ReportContext) -> pd.DataFrame | None:
    s = ctx.summary
    if s.empty or not (s.phase == "tta").any():
        return None
    d = s[(s.phase == "tta") & (s.status == "ok")]
    d = d.assign(_m=d.model.map(lambda m: model_rank(m)[0]), _t=d.get("tta_mlperf_s", pd.Series(dtype=float)),
                 _b=d.backend.map(lambda b: backend_rank(b)[0]))
    d = d.sort_values(["_m", "_t", "_b"], na_position="last").drop(columns=["_m", "_t", "_b"])
    return d[[c for c in ctx.first + COLUMNS if c in d]]


def seeds_chart(seeds: pd.DataFrame) -> bytes | None:
    """Per model: each seed's time to target per backend (a cross where it never reached it)."""
    if seeds.empty:
        return None
    models = sorted(seeds.model.unique(), key=model_rank)
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 3.2), squeeze=False, constrained_layout=True)
    for ax, model in zip(axes[0], models):
        d = seeds[seeds.model == model]
        backends = sorted(d.backend.unique(), key=backend_rank)
        for i, b in enumerate(backends):
            g = d[d.backend == b]
            ax.scatter(g.time_to_accuracy_s, [i] * len(g), color=backend_color(b), s=28)
            missed = g[~g.reached]
            if len(missed):
                ax.scatter(missed.train_s, [i] * len(missed), marker="x", color=backend_color(b), s=40)
        ax.set_yticks(range(len(backends)), backends)
        ax.set(xlabel="training seconds to the target (x: never reached; its whole training)",
               title=f"{model}: time to accuracy per seed")
    return to_image(fig)


def _ranking(ctx: ReportContext) -> str:
    """The verdict's time-to-accuracy rows: backends by median time, each against the fastest and
    the baseline, paired by seed."""
    ranked = ctx.ranked
    if ranked.empty or not (ranked.phase == "tta").any():
        return ""
    shown = verdict_table(ranked[ranked.phase == "tta"]).drop(columns=["phase", "batch", "samples/s"])
    return table(shown.rename(columns={"rounds": "seeds"}), "tta-ranking")


def render(ctx: ReportContext, frame: pd.DataFrame | None) -> str:
    if frame is None:
        return ""
    return "\n".join([
        '<p class="note">Each training backend trained once per seed (--seeds), seeds and backends interleaved '
        "by blocks of steps, each run stopped at the first check that reached the target accuracy on a "
        "validation split held out from the training images (never trained on; the test split is only "
        "reported). tta_mlperf_s is MLPerf Training's figure: the fastest and the slowest seed dropped, the mean "
        "of the rest, missing when any seed missed the target (all_reached). Training seconds exclude the "
        "checks (tta_eval_s).</p>",
        _ranking(ctx),
        img(seeds_chart(ctx.rt.with_cells("seeds")), "time to accuracy per seed",
            "One dot per seed; the spread between seeds is the recipe's, not the machine's."),
        table(frame, "tta-table")])


SECTION = Section("time-to-accuracy", "Time to accuracy", render, frame=tta_frame)
