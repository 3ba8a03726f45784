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


def training_curves(curve: pd.DataFrame, summary: pd.DataFrame) -> bytes | None:
    if curve.empty:
        return None
    meta = summary[summary.phase == "train"][["cell_id", "run_id", "model", "backend"]]
    df = curve.merge(meta, on=["cell_id", "run_id"])
    df["series"] = _label(df)
    models = sorted(df.model.unique())
    fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 7), squeeze=False, sharex="col")
    for j, model in enumerate(models):
        d = df[df.model == model]
        sns.lineplot(d, x="wall_s", y="train_loss", hue="series", marker="o", ax=axes[0, j])
        sns.lineplot(d, x="wall_s", y="test_accuracy", hue="series", marker="o", ax=axes[1, j], legend=False)
        axes[0, j].set(title=f"{model}: training loss", ylabel="train loss", yscale="log")
        axes[1, j].set(title=f"{model}: test accuracy", xlabel="wall time (s, incl. evaluation)",
                       ylabel="test accuracy")
        target = summary[(summary.model == model) & (summary.phase == "train")].get("target_accuracy")
        if target is not None and target.notna().any():
            axes[1, j].axhline(target.dropna().iloc[0], ls="--", c="grey", lw=1)
    return to_image(fig)


def throughput(summary: pd.DataFrame) -> bytes | None:
    ok = summary[summary.status == "ok"].copy()
    train = ok[ok.phase == "train"]
    infer = ok[ok.phase == "infer"]
    if train.empty and infer.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    if not train.empty:
        train = train.assign(series=_label(train))
        axes[0].set_yscale("log")  # before plotting: bars drawn from 0 break a log axis set afterwards
        axes[0].set_ylim(_log_limits(train.train_samples_per_s))  # fixed first: one bar alone has no range
        sns.barplot(train, x="model", y="train_samples_per_s", hue="series", ax=axes[0])
        axes[0].set(title="training throughput (steady state)", ylabel="samples/s")
    else:
        axes[0].set_visible(False)
    if not infer.empty:
        big = infer[infer.batch_size == infer.groupby("model").batch_size.transform("max")]
        big = big.assign(series=_label(big)).sort_values(["model", "series"])
        axes[1].set_yscale("log")
        _bars_with_spread(axes[1], big)
        axes[1].set(title=f"inference throughput at batch {int(big.batch_size.max())} (bars: p90..best call)",
                    ylabel="samples/s")
    else:
        axes[1].set_visible(False)
    return to_image(fig)


def _log_limits(values: pd.Series) -> tuple[float, float] | None:
    """Limits of a log axis that hold ``values`` with room, even when they are all the same."""
    v = values[values > 0].dropna()
    return (float(v.min()) / 3, float(v.max()) * 3) if len(v) else None


def _bars_with_spread(ax, d: pd.DataFrame) -> None:
    """Grouped bars of samples/s at the median call, whiskers from the p90 call to the best call."""
    models, series = list(dict.fromkeys(d.model)), list(dict.fromkeys(d.series))
    width = 0.8 / len(series)
    palette = sns.color_palette(n_colors=len(series))
    for k, s in enumerate(series):
        rows = d[d.series == s].set_index("model").reindex(models)
        x = np.arange(len(models)) + (k - (len(series) - 1) / 2) * width
        mid = rows.samples_per_s
        low = mid - rows.batch_size / (rows.p90_latency_ms / 1e3)
        high = rows.batch_size / (rows.min_latency_ms / 1e3) - mid
        ax.bar(x, mid, width, yerr=[low, high], capsize=3, label=s, color=palette[k])
    ax.set_xticks(np.arange(len(models)), models)
    ax.legend(fontsize=8)


def latency_vs_batch(summary: pd.DataFrame) -> bytes | None:
    infer = summary[(summary.phase == "infer") & (summary.status == "ok")].copy()
    if infer.empty:
        return None
    infer["series"] = _label(infer)
    models = sorted(infer.model.unique())
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for j, model in enumerate(models):
        ax = axes[0, j]
        for series, d in infer[infer.model == model].groupby("series"):
            d = d.sort_values("batch_size")
            ax.errorbar(d.batch_size, d.p50_latency_ms, yerr=[d.p50_latency_ms - d.min_latency_ms,
                        d.p99_latency_ms - d.p50_latency_ms], marker="o", capsize=3, label=series)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency (ms): p50, bars min..p99",
               title=f"{model}: inference latency")
        ax.legend(fontsize=8)
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


def image_grid(images: pd.DataFrame, title: str, caption) -> bytes | None:
    if images is None or images.empty:
        return None
    n = len(images)
    cols = min(8, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (_, r) in zip(axes.flat, images.iterrows()):
        ax.imshow(np.frombuffer(r.pixels, dtype=np.uint8).reshape(28, 28), cmap="gray_r")
        ax.set_title(caption(r), fontsize=9)
    fig.suptitle(title)
    return to_image(fig)


def memory(summary: pd.DataFrame) -> bytes | None:
    """Peak memory per backend: process RSS for training and the largest inference batch, and the
    CUDA allocator's peak where a GPU ran."""
    ok = summary[(summary.status == "ok") & summary.phase.isin(["train", "infer"])].copy()
    if ok.empty or "peak_rss_bytes" not in ok or ok.peak_rss_bytes.isna().all():
        return None
    big = ok.batch_size == ok.groupby("model").batch_size.transform("max")
    ok = ok[(ok.phase == "train") | big]
    ok["cell"] = np.where(ok.phase == "train", "training", "inference, batch " + ok.batch_size.astype("Int64")
                          .astype(str))
    ok["series"] = _label(ok)
    kinds = [("peak_rss_bytes", "process peak RSS (MiB)")]
    if "cuda_max_allocated_bytes" in ok and ok.cuda_max_allocated_bytes.notna().any():
        kinds.append(("cuda_max_allocated_bytes", "CUDA peak allocated (MiB)"))
    models = [m for m in dict.fromkeys(ok.model)]
    fig, axes = plt.subplots(len(kinds), len(models), figsize=(6 * len(models), 3.6 * len(kinds)), squeeze=False)
    for i, (col, label) in enumerate(kinds):
        for j, model in enumerate(models):
            d = ok[(ok.model == model) & ok[col].notna()].assign(mib=lambda x, c=col: x[c] / 2**20)
            ax = axes[i, j]
            if d.empty:
                ax.set_visible(False)
                continue
            sns.barplot(d, y="series", x="mib", hue="cell", ax=ax, orient="h")
            ax.set(title=f"{model}: {label}", xlabel="MiB", ylabel="")
            ax.legend(fontsize=8)
    return to_image(fig)
