"""The summary table as every analysis and section reads it: with each declared metric's columns."""

from __future__ import annotations

import pandas as pd

from bench.measure.metrics import METRICS

# Columns a summary table may lack (a run with no training or no inference cells); readers add
# them as missing values instead of testing for each: these and every metric's.
OPTIONAL_COLUMNS = ["batch_size", "reason", "target_accuracy", "p90_latency_ms", "p99_latency_ms", "min_latency_ms",
                    "unstable", "precision", "engine"]


def with_metric_columns(summary: pd.DataFrame) -> pd.DataFrame:
    wanted = OPTIONAL_COLUMNS + [c for m in METRICS.values() for c in m.columns]
    missing = [c for c in wanted if c not in summary.columns]
    return summary.assign(**{c: float("nan") for c in missing}) if missing else summary
