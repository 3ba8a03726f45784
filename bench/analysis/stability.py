"""Which cells are unstable *for this machine*: a cell whose rounds moved much more than the run's
typical cell did. A fixed bar (a between-round CV over 10%) marks most cells on a shared, noisy
machine and then says nothing; this one marks a cell whose CV is over 10% and over ``FACTOR`` times
the median CV of the run's cells of the same phase, and says so in words."""

from __future__ import annotations

import pandas as pd

from bench.measure.stats import UNSTABLE_CV

FACTOR = 3.0


def with_stability(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``unstable`` read against the run's own typical cell, and ``unstable_why``."""
    if summary.empty or "between_round_cv" not in summary:
        return summary
    s = summary.copy()
    cv = pd.to_numeric(s.between_round_cv, errors="coerce")
    ok = s.status.eq("ok") & cv.notna()
    typical = cv[ok].groupby([s.run_id[ok], s.phase[ok]]).median()
    base = pd.Series([typical.get((r, p), float("nan")) for r, p in zip(s.run_id, s.phase)], index=s.index)
    flag = ok & (cv > UNSTABLE_CV) & (cv > FACTOR * base)
    s["unstable"] = flag
    s["unstable_why"] = [f"rounds moved {c:.0%} (CV), {c / t:.1f}× this run's typical {t:.0%}" if f else None
                         for f, c, t in zip(flag, cv, base)]  # missing where not unstable
    return s
