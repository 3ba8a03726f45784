"""What a run's result tables are, without their timings: the cells, each cell's tables with their
columns and dtypes, and the values that do not depend on the machine's speed. Two runs of one
configuration on one code path have the same shape; a refactor must keep it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Summary columns whose values are fixed by the configuration (not by timing or by float rounding).
FIXED = ["model", "backend", "phase", "batch_size", "status", "reason", "engine", "precision", "device",
         "epochs_run", "steps", "optimizer", "schedule", "lr", "seed", "epochs", "dropout", "target_accuracy",
         "warmup_steps", "n_classes"]
# Tables whose row count is fixed by the configuration (timings and rounds depend on the budget).
FIXED_ROWS = {"summary", "epochs", "curve", "classes", "confusion"}


def table_shape(run_dir: Path) -> dict:
    shape = {}
    for cell in sorted(p for p in (Path(run_dir) / "cells").iterdir() if p.is_dir() and "machine" not in p.name):
        tables = {}
        for f in sorted(cell.glob("*.parquet")):
            df = pd.read_parquet(f)
            entry = {"columns": {c: str(t) for c, t in sorted(df.dtypes.items())}}
            if f.stem in FIXED_ROWS:
                entry["rows"] = len(df)
            if f.stem == "summary":
                entry["fixed"] = {c: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                                  for c in FIXED if c in df for v in [df[c].iloc[0]]}
            tables[f.stem] = entry
        shape[cell.name] = {"tables": tables, "files": sorted(p.name for p in cell.iterdir()
                                                              if p.suffix != ".parquet")}
    return shape
