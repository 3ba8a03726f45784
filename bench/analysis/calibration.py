"""Run-to-run variation: what repeated runs of one configuration (``mnist-bench calibrate``) say
about the spread of a cell's figure between runs, per phase. Stored by ``bench.storage.calibration``
and read back by ``compare``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.storage import catalog


def run_to_run_sigma(values: pd.DataFrame) -> dict[str, dict]:
    """Per phase: the pooled standard deviation between runs of each cell's log figure (the median
    of its round values), its degrees of freedom and the number of cells; and per phase as
    ``relative-<phase>`` the same for each backend's ratio to the reference measured in the same run.
    ``values``: round values (``bench.analysis.ranked.cell_rounds``) of repeated runs of one configuration."""
    figures = values.groupby(["run_id", "model", "backend", "phase", "batch_size"], dropna=False).value.median()
    logs = np.log(figures).rename("log").reset_index()
    return {**_pooled(logs), **{f"relative-{k}": v for k, v in _pooled(_relative_logs(logs)).items()}}


def _relative_logs(logs: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Each cell's log figure minus its run's reference's in the same model, phase and batch size:
    the log of the ratio a run measured side by side (what ``compare``'s relative comparison reads)."""
    keys = ["run_id", "model", "phase", "batch_size"]
    ref = logs[logs.backend == (reference or catalog.reference())].set_index(keys).log
    other = logs[logs.backend != (reference or catalog.reference())]
    joined = other.join(ref.rename("ref_log"), on=keys)
    return joined.assign(log=joined.log - joined.ref_log).dropna(subset=["log"]).drop(columns="ref_log")


def _pooled(logs: pd.DataFrame) -> dict[str, dict]:
    out = {}
    for phase, d in logs.groupby("phase"):
        per_cell = d.groupby(["model", "backend", "batch_size"], dropna=False).log
        var, n = per_cell.var(ddof=1).dropna(), per_cell.size()
        n = n[var.index]
        if var.empty:
            continue
        dof = int((n - 1).sum())
        out[phase] = {"sigma": float(np.sqrt(((n - 1) * var).sum() / dof)), "df": dof, "cells": int(var.size),
                      "runs": int(n.max())}
    return out
