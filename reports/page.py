"""The one page shell every HTML page is written in: report, compare and history pages."""

from __future__ import annotations

import html

from reports.blocks import SORT_SCRIPT
from reports.section import Section

CSS = """
*{box-sizing:border-box} body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1240px;color:#222;
padding:0 1em} p,figcaption,li{overflow-wrap:break-word}
h1{margin:0 0 .2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em} h3{margin:1em 0 .3em}
.tw{max-width:100%;overflow-x:auto}
table.t{border-collapse:collapse;font-size:12.5px;margin:.4em 0 1em;max-width:100%}
table.t th,table.t td{border:1px solid #ddd;padding:3px 6px;text-align:right;font-variant-numeric:tabular-nums}
table.t th{background:#f3f3f3;cursor:pointer;vertical-align:bottom;font-weight:600;overflow-wrap:normal;
word-break:normal;hyphens:none;min-width:3.6em}
table.t th:hover{background:#e6eefc} table.t th[aria-sort=ascending]::after{content:" ▲"}
table.t th[aria-sort=descending]::after{content:" ▼"} table.t td.s{text-align:left}
nav.toc{font-size:13px;background:#f7f7f7;border:1px solid #e3e3e3;padding:.4em .8em;margin:.6em 0}
nav.toc ol{display:flex;flex-wrap:wrap;gap:.2em 1.4em;margin:.2em 0 0;padding:0;list-style:none}
.card{display:flex;gap:2em;flex-wrap:wrap} figure{margin:1em 0} figcaption{font-size:13px;color:#555;max-width:900px}
img{max-width:100%;height:auto} .digits>div{display:flex;flex-wrap:wrap;gap:.3em .8em}
.digits figure{margin:0;text-align:center} .digits img{width:56px;image-rendering:pixelated}
.digits figure figcaption{font-size:12px} .note{font-size:13px;color:#555} .warn{color:#b35900}
.trust{background:#fff8e6;border-left:4px solid #e0a000;padding:.5em .8em;font-size:14px}
details.long{margin:.4em 0 1em} details.long>summary{cursor:pointer;font-size:13px;color:#335;padding:.2em 0}
@media print{details.long>summary{display:none}}
"""


def page(title: str, intro: str, sections: list[tuple[Section, str]], toc: bool = True) -> str:
    """A self-contained page: the title, ``intro`` (HTML), a table of contents (when ``toc``) and
    each section under its heading."""
    esc = html.escape
    body = "".join(f'<h2 id="{esc(s.name, quote=True)}">{esc(s.title)}</h2>\n{text}\n' for s, text in sections)
    links = "".join(f'<li><a href="#{esc(s.name, quote=True)}">{esc(s.title)}</a></li>' for s, _ in sections)
    nav = f'<nav class="toc" id="contents"><b>Contents</b><ol>{links}</ol></nav>' if toc and sections else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body><h1>{esc(title)}</h1>{intro}{nav}'
            f"{body}<script>{SORT_SCRIPT}</script></body></html>")
