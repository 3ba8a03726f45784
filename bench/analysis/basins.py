"""Does the faster backend reach the same minimum? Each training backend of a model against its
reference backend, from their dynamics cells (``bench.dynamics``): the loss barrier on the straight
line between their final weights (linear mode connectivity; Frankle et al. 2020, barrier as in
Entezari et al. 2022), read against the barrier between two seeds of the reference; the sharpness
of each; how far each travelled; and, for a reduced format, the share of its updates that format
loses. The figures, the basin and the words are computed here and nowhere else."""

from __future__ import annotations

import math

import pandas as pd

from bench.storage.catalog import backend_rank, model_rank
from bench.storage.results import RunTables

# The decision, on the loss barrier in % of the endpoints' mean loss: below SAME_SHARE of the
# two-seed barrier the backend is in the reference's basin; above DIFFERENT_SHARE of it, in another;
# between them, or where two seeds connect too (a seed barrier under MIN_SEED_BARRIER_PCT), the
# line cannot tell.
SAME_SHARE, DIFFERENT_SHARE, MIN_SEED_BARRIER_PCT = 0.25, 0.5, 2.0

COLUMNS = ["model", "backend", "reference_backend", "basin", "barrier_loss_pct", "barrier_accuracy_pts",
           "seed_barrier_loss_pct", "sharpness", "reference_sharpness", "distance_from_init",
           "reference_distance_from_init", "updates_below_spacing", "words"]


def barrier(curve: pd.DataFrame) -> tuple[float, float]:
    """The loss barrier of a line (rows x = alpha from 0 to 1, loss, accuracy): the largest rise of
    the loss above the straight line between its ends, in % of their mean; and the largest fall of
    the accuracy below its straight line, in percentage points. (nan, nan) without two points."""
    c = curve.dropna(subset=["x", "loss"]).sort_values("x")
    if len(c) < 2:
        return math.nan, math.nan
    a = (c.x - c.x.iloc[0]) / (c.x.iloc[-1] - c.x.iloc[0])
    line = (1 - a) * c.loss.iloc[0] + a * c.loss.iloc[-1]
    mean = (c.loss.iloc[0] + c.loss.iloc[-1]) / 2
    loss_pct = max(0.0, float((c.loss - line).max())) / mean * 100 if mean > 0 else math.nan
    acc_line = (1 - a) * c.accuracy.iloc[0] + a * c.accuracy.iloc[-1]
    return loss_pct, max(0.0, float((acc_line - c.accuracy).max())) * 100


def basin(barrier_pct: float, seed_pct: float) -> str:
    """same | different | cannot tell, by the rule above."""
    if not (barrier_pct == barrier_pct) or not (seed_pct == seed_pct) or seed_pct < MIN_SEED_BARRIER_PCT:
        return "cannot tell"
    if barrier_pct <= SAME_SHARE * seed_pct:
        return "same"
    return "different" if barrier_pct >= DIFFERENT_SHARE * seed_pct else "cannot tell"


def _sharpness(land: pd.DataFrame) -> float:
    """The top Hessian eigenvalue at the last checkpoint analysed: its last power iteration."""
    s = land[land.analysis == "sharpness"].dropna(subset=["value"])
    if s.empty:
        return math.nan
    last = s[s.step == s.step.max()] if "step" in s else s
    return float(last.sort_values("x").value.iloc[-1])


def _words(r: dict) -> str:
    ref, seed = r["reference_backend"], r["seed_barrier_loss_pct"]
    scale = (f"against +{seed:.1f}% between two {ref} seeds" if seed == seed else "with no two-seed line to read it "
             "against")
    lead = {"same": f"ends in the same basin as {ref}", "different": f"ends in a different basin from {ref}",
            "cannot tell": f"cannot tell whether it ends in {ref}'s basin"}[r["basin"]]
    if r["basin"] == "cannot tell" and seed == seed and seed < MIN_SEED_BARRIER_PCT:
        lead += f" (two {ref} seeds connect too)"
    text = f"{r['backend']} {lead}: +{r['barrier_loss_pct']:.1f}% loss at most along the line between them, {scale}"
    if r["sharpness"] == r["sharpness"] and r["reference_sharpness"] == r["reference_sharpness"]:
        text += f"; sharpness {r['sharpness']:.3g} vs {r['reference_sharpness']:.3g}"
    lost, fmt = r.get("updates_below_spacing"), r.get("format")
    if fmt and lost == lost:
        text += f"; {lost:.1%} of its updates fell below {fmt}'s spacing"
    return text


def basins(rt: RunTables) -> pd.DataFrame:
    """One row per model and training backend analysed against its reference: the figures, the
    basin and its words (``COLUMNS``), by model then the registry's order."""
    land = rt.with_cells("landscape")
    s = rt["summary"]
    if land.empty or s.empty or "reference_backend" not in s:
        return pd.DataFrame(columns=COLUMNS)
    lost = _below_spacing(rt)
    dyn = s[(s.phase == "dynamics") & (s.status == "ok")]
    rows = []
    for (run_id, model), cells in dyn.groupby(["run_id", "model"]):
        ref = cells[cells.backend == cells.reference_backend]
        own_land = land[(land.run_id == run_id) & (land.model == model)]
        ref_land = own_land[own_land.backend.isin(ref.backend)]
        reference = {"seed_barrier_loss_pct": barrier(ref_land[ref_land.analysis == "seed_connectivity"])[0],
                     "reference_sharpness": _sharpness(ref_land),
                     "reference_distance_from_init": float(ref.distance_from_init.iloc[0]) if len(ref) and
                     "distance_from_init" in ref else math.nan}
        for _, c in cells[cells.backend != cells.reference_backend].iterrows():
            own = own_land[own_land.backend == c.backend]
            loss_pct, acc_pts = barrier(own[own.analysis == "connectivity"])
            rows.append({"run_id": run_id, "model": model, "backend": c.backend,
                         "reference_backend": c.reference_backend, "barrier_loss_pct": loss_pct,
                         "barrier_accuracy_pts": acc_pts, **reference,
                         "basin": basin(loss_pct, reference["seed_barrier_loss_pct"]), "sharpness": _sharpness(own),
                         "distance_from_init": c.get("distance_from_init", math.nan),
                         "updates_below_spacing": lost.get((run_id, model, c.backend), math.nan),
                         "format": str(c.get("precision"))})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame(rows)
    out["words"] = [_words(r) for r in out.to_dict("records")]
    out = out.assign(_m=out.model.map(lambda m: model_rank(m)[0]), _b=out.backend.map(lambda b: backend_rank(b)[0]))
    return out.sort_values(["_m", "_b"]).drop(columns=["_m", "_b", "format"]).reset_index(drop=True)


def _below_spacing(rt: RunTables) -> dict[tuple, float]:
    """Per (run, model, backend) that recorded it (bf16 and fp16 backends), the mean over recorded
    steps and layers of the share of a step's updates below the format's spacing."""
    layers = rt.with_cells("dynamics_layers")
    if layers.empty or "updates_below_spacing" not in layers:
        return {}
    means = layers.dropna(subset=["updates_below_spacing"]).groupby(["run_id", "model", "backend"])
    return means.updates_below_spacing.mean().to_dict()
