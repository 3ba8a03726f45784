"""Seaborn charts, each a function of result tables returning PNG bytes (or None when the
tables hold nothing to draw)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


SVG_LIMIT = 250_000  # bytes; a chart with more marks than this is drawn as a 2x PNG instead
plt.rcParams["svg.fonttype"] = "none"  # text as text: smaller files, crisp at any zoom


def to_image(fig) -> bytes:
    """The figure as SVG (sharp at any screen density), or as a PNG at twice the screen density
    (shown at half its pixel size) when its SVG would be larger than ``SVG_LIMIT`` (dense heatmaps,
    surfaces, images)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    if buf.tell() > SVG_LIMIT:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=180, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# One colour per backend in every chart: the backend registry's order picks from this list, so
# cpu-fp32 has the same colour in training, inference, memory and scaling charts of any report.
_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#c44e52", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd", "#2f2f2f", "#a6761d", "#e7298a", "#66a61e", "#7570b3", "#e6ab02"]


def backend_color(backend: str) -> str:
    """The backend's colour: by its place in the registry; other names (plugins, pytest-benchmark
    rows) by a stable hash of the name."""
    import zlib

    from bench.storage.catalog import backend_names

    names = backend_names()
    if backend in names:
        return _COLORS[names.index(backend) % len(_COLORS)]
    return _COLORS[zlib.crc32(backend.encode()) % len(_COLORS)]


def series_palette(df: pd.DataFrame) -> dict[str, object]:
    """Colours for the ``series`` labels of ``df`` (see ``_label``): the backend's colour; with
    several runs, the same hue lighter for each later run."""
    out = {}
    runs = list(dict.fromkeys(df.run_id)) if "run_id" in df else []
    for series, backend, run in zip(df.series, df.backend, df.run_id if "run_id" in df else [None] * len(df)):
        if series in out:
            continue
        base = np.array(matplotlib.colors.to_rgb(backend_color(backend)))
        k = runs.index(run) if len(runs) > 1 and run in runs else 0
        out[series] = tuple(base + (1 - base) * min(0.6, 0.3 * k))
    return out


def _label(df: pd.DataFrame) -> pd.Series:
    """A series naming each row's backend, with the run when several runs are shown."""
    if "run_id" in df and df.run_id.nunique() > 1:
        return df.backend + " · " + run_tags(df.run_id)
    return df.backend


def run_tags(run_ids: pd.Series) -> pd.Series:
    """Short names for runs: the last four characters of each id when those tell them apart, else
    the whole ids (pytest-benchmark's saved runs, for instance, share their endings)."""
    runs = run_ids.drop_duplicates()
    short = runs.str[-4:] if runs.str[-4:].nunique() == len(runs) else runs
    return run_ids.map(dict(zip(runs, short)))


def training_curves(curve: pd.DataFrame, summary: pd.DataFrame, timings: pd.DataFrame | None = None
                    ) -> bytes | None:
    """Per model: the training loss against the step (each timed block's mean step loss, from the raw
    timings; the checks' running mean where a run recorded no step losses) and the test accuracy at
    each check of the test split."""
    if curve.empty:
        return None
    meta = summary[summary.phase == "train"][["cell_id", "run_id", "model", "backend"]]
    df = curve.merge(meta, on=["cell_id", "run_id"])
    df["series"] = _label(df)
    loss = _block_losses(timings, meta)
    if loss.empty:
        loss = df[["model", "series", "step", "train_loss"]]
    palette = series_palette(df)
    models = sorted(df.model.unique())
    fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 7), squeeze=False, sharex="col",
                             layout="constrained")
    for j, model in enumerate(models):
        d = df[df.model == model]
        sns.lineplot(loss[loss.model == model], x="step", y="train_loss", hue="series", ax=axes[0, j],
                     palette=palette, lw=1.2)
        axes[0, j].legend(title="backend", fontsize=8)
        sns.lineplot(d, x="step", y="test_accuracy", hue="series", marker="o", ax=axes[1, j], legend=False,
                     palette=palette)
        axes[0, j].set(title=f"{model}: training loss", ylabel="train loss (mean of a block of steps)",
                       yscale="log")
        axes[1, j].set(title=f"{model}: test accuracy", xlabel="training step", ylabel="test accuracy")
        target = summary[(summary.model == model) & (summary.phase == "train")].get("target_accuracy")
        if target is not None and target.notna().any():
            axes[1, j].axhline(target.dropna().iloc[0], ls="--", c="grey", lw=1)
    return to_image(fig)


def _block_losses(timings: pd.DataFrame | None, meta: pd.DataFrame) -> pd.DataFrame:
    """Each training cell's mean step loss per timed block, at the block's last step."""
    if timings is None or timings.empty or "loss" not in timings or "step" not in timings:
        return pd.DataFrame()
    t = timings.dropna(subset=["loss", "step"]).merge(meta, on=["cell_id", "run_id"])
    if t.empty:
        return pd.DataFrame()
    t["series"] = _label(t)
    keys = ["model", "series", "round"] + (["process"] if "process" in t else [])
    return t.groupby(keys, dropna=False).agg(step=("step", "max"), train_loss=("loss", "mean")).reset_index()


def training_throughput(summary: pd.DataFrame) -> bytes | None:
    """Steady-state training samples/s per backend, whiskers: the 95% interval of the figure."""
    train = summary[(summary.status == "ok") & (summary.phase == "train")]
    if train.empty or train.train_samples_per_s.isna().all():
        return None
    if "world_size" in train:  # data-parallel cells: the Scaling section's
        train = train[train.world_size.isna()]
    if train.empty:
        return None
    d = train.assign(series=_label(train), samples_per_s=train.train_samples_per_s)
    for side in ("low", "high"):
        col = f"train_samples_per_s_ci_{side}"
        d[side] = d[col] if col in d else np.nan
    fig, ax = plt.subplots(figsize=(8, 3.8))  # the legend outside: the tight bounding box makes room for it
    ax.set_yscale("log")
    _grouped_bars(ax, d, d.samples_per_s - d.low, d.high - d.samples_per_s)
    ax.set(title="training throughput (steady state; bars: 95% interval)", ylabel="samples/s", xlabel="")
    return to_image(fig)


def inference_throughput(summary: pd.DataFrame) -> bytes | None:
    """Samples/s at each model's largest batch, whiskers from the p90 call to the best call."""
    infer = summary[(summary.status == "ok") & (summary.phase == "infer")]
    if infer.empty:
        return None
    big = infer[infer.batch_size == infer.groupby("model").batch_size.transform("max")]
    big = big.assign(series=_label(big))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.set_yscale("log")
    low = big.samples_per_s - big.batch_size / (big.p90_latency_ms / 1e3)
    high = big.batch_size / (big.min_latency_ms / 1e3) - big.samples_per_s
    _grouped_bars(ax, big, low, high)
    ax.set(title=f"inference throughput at batch {int(big.batch_size.max())} (bars: p90 call to best call)",
           ylabel="samples/s", xlabel="")
    return to_image(fig)


def _grouped_bars(ax, d: pd.DataFrame, low: pd.Series, high: pd.Series) -> None:
    """Bars of ``d.samples_per_s`` grouped by model, one colour per backend, asymmetric whiskers."""
    models, series = list(dict.fromkeys(d.model)), list(dict.fromkeys(d.series))
    width = 0.8 / len(series)
    palette = series_palette(d)
    d = d.assign(low=low.clip(lower=0), high=high.clip(lower=0))
    for k, s in enumerate(series):
        rows = d[d.series == s].set_index("model").reindex(models)
        x = np.arange(len(models)) + (k - (len(series) - 1) / 2) * width
        yerr = None if rows[["low", "high"]].isna().all().all() else [rows.low.fillna(0), rows.high.fillna(0)]
        ax.bar(x, rows.samples_per_s, width, yerr=yerr, capsize=3, label=s, color=palette[s])
    ax.set_xticks(np.arange(len(models)), models)
    ax.legend(title="backend", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)


def _log_limits(values: pd.Series) -> tuple[float, float] | None:
    """Limits of a log axis that hold ``values`` with room, even when they are all the same."""
    v = values[values > 0].dropna()
    return (float(v.min()) / 3, float(v.max()) * 3) if len(v) else None


def latency_vs_batch(summary: pd.DataFrame) -> bytes | None:
    infer = summary[(summary.phase == "infer") & (summary.status == "ok")].copy()
    if infer.empty:
        return None
    infer["series"] = _label(infer)
    palette = series_palette(infer)
    models = sorted(infer.model.unique())
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False, layout="constrained")
    for j, model in enumerate(models):
        ax = axes[0, j]
        for series, d in infer[infer.model == model].groupby("series", sort=False):
            d = d.sort_values("batch_size")
            ax.errorbar(d.batch_size, d.p50_latency_ms, yerr=[d.p50_latency_ms - d.min_latency_ms,
                        d.p99_latency_ms - d.p50_latency_ms], marker="o", capsize=3, label=series,
                        color=palette[series])
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency (ms): p50, bars min..p99",
               title=f"{model}: inference latency")
        ax.legend(title="backend", fontsize=8)
    return to_image(fig)


def confusion_matrices(confusion: pd.DataFrame, summary: pd.DataFrame) -> bytes | None:
    if confusion.empty:
        return None
    train = summary[(summary.phase == "train") & (summary.status == "ok")]
    have = confusion[["run_id", "cell_id"]].drop_duplicates()
    train = train.merge(have, on=["run_id", "cell_id"])
    # one matrix per model: the parity reference's row when there is one (the only rows without parity)
    picks = []
    for _, g in train.groupby("model"):
        parity = g["parity_argmax_agreement"] if "parity_argmax_agreement" in g else pd.Series(float("nan"), g.index)
        g = g.assign(pref=parity.notna())
        picks.append(g.sort_values("pref").iloc[0])
    if not picks:
        return None
    fig, axes = plt.subplots(1, len(picks), figsize=(5.5 * len(picks), 4.8), squeeze=False)
    for ax, pick in zip(axes[0], picks):
        d = confusion[(confusion.cell_id == pick.cell_id) & (confusion.run_id == pick.run_id)]
        m = d.pivot(index="true", columns="pred", values="count")
        sns.heatmap(np.log10(m + 1), annot=m, fmt="d", cbar=False, cmap="Blues", ax=ax, annot_kws={"size": 7})
        ax.set(title=f"{pick.model} ({pick.backend}): confusion", xlabel="predicted", ylabel="true")
    return to_image(fig)


def digit_png(pixels: bytes) -> bytes:
    """A 28x28 MNIST image (uint8 bytes) as a small PNG, dark strokes on white."""
    buf = io.BytesIO()
    plt.imsave(buf, np.frombuffer(pixels, dtype=np.uint8).reshape(28, 28), cmap="gray_r", format="png")
    return buf.getvalue()


def memory(frame: pd.DataFrame) -> bytes | None:
    """What each backend costs in memory (``memory_frame``): weights, preparation, one call at each
    batch size; one panel per model, one colour per backend."""
    if frame.empty:
        return None
    kinds = [c for c in frame.columns if c.endswith("_bytes") and frame[c].notna().any()]
    if not kinds:
        return None
    long = frame.melt(id_vars=[c for c in ("run_id", "model", "backend") if c in frame], value_vars=kinds,
                      var_name="what", value_name="bytes").dropna(subset=["bytes"])
    long["series"] = _label(long)
    long["mib"] = long["bytes"] / 2**20
    long["what"] = long.what.map(_memory_label)
    palette = series_palette(long)
    models = list(dict.fromkeys(long.model))
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 0.5 * long.what.nunique() *
                                                      max(2, long.series.nunique()) * 0.45 + 1.6),
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        sns.barplot(long[long.model == model], y="what", x="mib", hue="series", palette=palette, ax=ax, orient="h",
                    order=list(dict.fromkeys(long.what)))
        ax.set(title=f"{model}: memory a backend costs", xlabel="MiB", ylabel="", xscale="symlog")
        ax.legend().remove()
    handles = [matplotlib.patches.Patch(color=c, label=k) for k, c in palette.items()]
    fig.subplots_adjust(wspace=0.55)  # room for the right panel's category labels
    fig.legend(handles=handles, title="backend", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    return to_image(fig)


def _memory_label(column: str) -> str:
    if column == "weights_bytes":
        return "weights"
    if column == "prepare_bytes":
        return "preparation"
    return column.removesuffix("_bytes").replace("call_bs", "one call, batch ").replace("_", " ")
