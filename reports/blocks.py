"""Shared HTML building blocks of the report: embedded images, sortable tables with numbers in
human units, warnings, the table of contents. Every string that reaches the page goes through
``html.escape`` here."""

from __future__ import annotations

import base64
import html
import math
import re
import struct

import numpy as np
import pandas as pd

from bench.plumbing.units import duration


def img(data: bytes | None, alt: str, caption: str = "") -> str:
    """A figure from SVG or PNG bytes (a 2x PNG is shown at half its pixel width: sharp on high-DPI)."""
    if data is None:
        return ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    if data.lstrip()[:5] in (b"<?xml", b"<svg "):
        mime, size = "image/svg+xml", ""
    else:
        mime, size = "image/png", _png_css_width(data)
    src = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return f'<figure><img alt="{html.escape(alt)}" src="{src}"{size}>{cap}</figure>'


def digit_grid(images: pd.DataFrame, title: str, caption, png) -> str:
    """Images (``pixels`` column) as a grid of small pictures, each with its caption (``caption(row)``)
    and the grid with ``title``; ``png`` encodes one image. HTML rather than one chart: its text stays
    text and it costs no figure layout (a 16-image chart took ~0.4 s)."""
    if images is None or images.empty:
        return ""
    cells = [img(png(r.pixels), caption(r), caption(r)) for _, r in images.iterrows()]
    return f'<figure class="digits"><figcaption>{html.escape(title)}</figcaption><div>{"".join(cells)}</div></figure>'


def _png_css_width(png: bytes) -> str:
    """A PNG's CSS width: half its pixels when it was drawn at twice the screen density (pHYs > 100 dpi)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        return ""
    width = struct.unpack(">I", png[16:20])[0]
    phys = png.find(b"pHYs")
    dpi = struct.unpack(">I", png[phys + 4:phys + 8])[0] * 0.0254 if phys > 0 else 0
    return f' width="{width // 2}"' if dpi > 100 else ""


# --- numbers in human units -------------------------------------------------------------------

def si(v: float) -> str:
    """24100 -> '24.1k', 1.37e6 -> '1.37M'."""
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def nbytes(v: float) -> str:
    a = abs(v)
    for div, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if a >= div:
            return f"{v / div:,.3g} {suffix}" if a / div < 1000 else f"{v / div:,.0f} {suffix}"
    return f"{v:.0f} B"


def fmt(v: float) -> str:
    """A plain number: thousands separators, no exponent for ordinary magnitudes."""
    if v != v:  # NaN
        return "–"
    a = abs(v)
    if a >= 1e4:
        return f"{v:,.0f}"
    if 0 < a < 1e-3:  # a small pure number (a logit difference): 3.81×10⁻⁶, not 3.81e-06
        mantissa, exponent = f"{v:.2e}".split("e")
        return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"
    return f"{v:,.4g}"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def percent(v: float) -> str:
    return f"{v * 100:.2f}%"


_UNIT_FORMATS = {"samples/s": si, "ms": lambda v: duration(v / 1e3), "s": duration, "bytes": nbytes,
                 "fraction": percent}


def in_unit(v: float, unit: str) -> str:
    """A value printed in a declared metric's unit (``bench.measure.metrics.UNITS``)."""
    if v != v:
        return "–"
    return _UNIT_FORMATS[unit](v) + ("/s" if unit == "samples/s" else "")


def unit_for(column: str):
    """The formatter a column's name asks for (None: plain number): a declared metric's unit, by its
    name or its label (``"p50 latency, batch 1"``), else the unit its name ends with."""
    from bench.measure.metrics import METRICS

    base = re.sub(r",? (batch|bs)[ =]?\d+$", "", column).strip()
    declared = METRICS.get(base) or next((m for m in METRICS.values() if m.label == base), None)
    if declared is not None:
        return _UNIT_FORMATS[declared.unit]
    c = column.lower()
    if "samples_per_s" in c or "samples/s" in c or c.endswith("flops_per_sample") or c.endswith("params"):
        return si
    if c.endswith("_bytes"):
        return nbytes
    if c.endswith("_ms") or c.endswith("_ms_"):
        return lambda v: duration(v / 1e3)
    if (c.endswith("_s") and not c.endswith("per_s")) or c.endswith(" (s)") or "_s_per_" in c:
        return duration
    if c.endswith("accuracy") or "accuracy (" in c:
        return percent
    return None


def cell_text(value, unit) -> tuple[str, str]:
    """(shown text, sort key) for one table value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return "–", ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), str(int(value))
    if isinstance(value, np.generic):  # numpy scalars: as the Python number they hold
        return cell_text(value.item(), unit)
    if isinstance(value, (int, float)):
        v = float(value)
        if math.isinf(v):
            return ("∞" if v > 0 else "−∞"), repr(v)
        if unit is not None:
            return unit(v), repr(v)
        if float(v).is_integer() and abs(v) < 1e15:
            return f"{int(v):,}", repr(v)
        return fmt(v), repr(v)
    return str(value), ""


def table(df: pd.DataFrame, table_id: str = "", raw: bool = False, keys: pd.DataFrame | None = None) -> str:
    """A sortable table (click a header). Numbers are shown in human units picked by column name
    (``raw``: plain numbers) and sort by their exact value (``data-v``); ``keys``: a frame of the
    same shape whose numbers are the sort keys of text cells ("1.28M/s ★" sorts as 1.28e6)."""
    if df is None or df.empty:
        return '<p class="note">(nothing recorded)</p>'
    units = [None if raw else unit_for(str(c)) for c in df.columns]
    head = "".join(f'<th title="{html.escape(str(c))}">{html.escape(_header(str(c)))}</th>' for c in df.columns)
    rows = []
    key_rows = keys.itertuples(index=False, name=None) if keys is not None else iter(lambda: (), None)
    for values in df.itertuples(index=False, name=None):
        sort_keys = next(key_rows, ())
        tds = []
        for i, (value, unit) in enumerate(zip(values, units)):
            shown, key = cell_text(value, unit)
            given = sort_keys[i] if i < len(sort_keys) else None
            if isinstance(given, (int, float, np.number)) and given == given and not isinstance(given, bool):
                key = repr(float(given))
            attr = f' data-v="{html.escape(key)}"' if key else ""
            cls = ' class="s"' if not key and shown != "–" else ""
            tds.append(f"<td{attr}{cls}>{html.escape(shown)}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    tid = f' id="{html.escape(table_id, quote=True)}"' if table_id else ""
    out = (f'<div class="tw"><table class="t sortable"{tid}><thead><tr>{head}</tr></thead>'
           f'<tbody>{"".join(rows)}</tbody></table></div>')
    if len(df) <= LONG_TABLE_ROWS:
        return out
    return (f'<details class="long"><summary>The table: {len(df)} rows × {len(df.columns)} columns (the figures '
            "behind the picture and the words above; click to open, click a header to sort)</summary>"
            f"{out}</details>")


LONG_TABLE_ROWS = 12  # a longer table is collapsed behind a one-line summary: the page reads as pictures first


def _header(column: str) -> str:
    """Header text that can wrap: underscores become spaces (the exact name is the title)."""
    return column.replace("_", " ")


def cols(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df[[c for c in cols if c in df.columns]]


def warn(text: str) -> str:
    return f'<p class="warn">{html.escape(text)}</p>'


# Click a header to sort by it (again: the other way). Numbers sort by data-v, text by its words.
SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], i = th.cellIndex;
    var up = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(body.rows);
    // a column with sort keys (data-v) sorts by them; its cells without one ("–", a status) go last
    var keyed = rows.some(function (tr) { return tr.cells[i] && tr.cells[i].dataset.v !== undefined; });
    var key = function (tr) {
      var td = tr.cells[i];
      if (!td) return '';
      if (keyed) return td.dataset.v !== undefined ? td.dataset.v : '';
      return td.textContent;
    };
    var numeric = keyed || rows.every(function (tr) {
      var k = key(tr); return k === '' || k === '–' || !isNaN(parseFloat(k));
    });
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === '' || x === '–') return 1; if (y === '' || y === '–') return -1;
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y, undefined, {numeric: true});
      return up ? c : -c;
    });
    rows.forEach(function (tr) { body.appendChild(tr); });
  });
});
"""
