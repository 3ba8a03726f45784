"""Shared HTML building blocks of the report: embedded images, tables, number formatting,
warnings. Every string that reaches the page goes through ``html.escape`` here."""

from __future__ import annotations

import base64
import html
import re

import pandas as pd


def img(png: bytes | None, alt: str, caption: str = "") -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode()
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def table(df: pd.DataFrame, table_id: str = "") -> str:
    if df is None or df.empty:
        return '<p class="note">(nothing recorded)</p>'
    out = df.to_html(index=False, border=0, classes="t", na_rep="–", float_format=fmt, escape=True)
    opening = f'<table class="t" id="{html.escape(table_id, quote=True)}">'
    out = re.sub(r"<table[^>]*>", lambda _: opening, out, count=1)
    return f'<div class="tw">{out}</div>'


def fmt(v: float) -> str:
    if v != v:  # NaN
        return "–"
    if abs(v) >= 1e4 or (0 < abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:,.4g}"


def cols(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df[[c for c in cols if c in df.columns]]


def warn(text: str) -> str:
    return f'<p class="warn">{html.escape(text)}</p>'
