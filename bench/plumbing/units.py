"""Durations in a person's units: the one formatter the analysis's words and the report's tables share."""

from __future__ import annotations


def duration(seconds: float) -> str:
    a = abs(seconds)
    if a == 0:
        return "0"
    if a < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if a < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:,.3g} s" if a < 1000 else f"{seconds:,.0f} s"
