"""Self-contained HTML reports: escaping, readable numbers, one small stylesheet, tables, legends.

Every report a stage writes must open from a pipeline UI, a laptop without network or an
air-gapped cluster, so a page built here references nothing outside itself: no scripts, style
sheets, fonts or images by URL. One small inline script (``html_script.TABLE_SCRIPT``) sorts and filters a
table and opens a feature's card when a link points at it; without it the page reads the same.
Charts are inline ``<svg>`` elements drawn by
``components.lib.charts`` (no ``xmlns`` attribute is needed inside HTML5, so not even a
namespace URL appears in the document).

Pages are responsive: the body is at most ``MAX_WIDTH`` px wide, cards and charts sit in a grid
that wraps, a cell holding a chart asks for the chart's drawn width (so the chart wraps below
its neighbour rather than shrinking its text) and a wide table scrolls inside its own box
instead of widening the page.

The helpers return HTML strings. Text is always escaped; a string that is already HTML is
passed as :class:`Raw` so it is inserted as is. Standard library only, so any stage can use it
without importing a heavy package.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

# Two colours for the two sides of a comparison (train/eval, candidate/baseline), then more.
PALETTE = ("#3b6fb6", "#e08a2c", "#4c9f70", "#b8474d", "#7d5ba6", "#8c8c8c")
THRESHOLD_COLOR = "#cf222e"
MAX_WIDTH = 1400

CSS = f"""
:root {{ --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #ffffff; --soft: #f6f8fa;
        --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --warnbg: #fff8c5; --badbg: #ffebe9; }}
* {{ box-sizing: border-box; }}
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: {MAX_WIDTH}px;
       font-size: 14px; line-height: 1.45; }}
@media (max-width: 700px) {{ body {{ padding: 1rem .75rem 2rem; }} }}
h1 {{ font-size: 1.6rem; margin: 0 0 .25rem; overflow-wrap: anywhere; }}
h2 {{ font-size: 1.25rem; margin: 2rem 0 .6rem; padding-bottom: .3rem;
      border-bottom: 1px solid var(--line); }}
h3 {{ font-size: 1.05rem; margin: .2rem 0 .5rem; }}
p.subtitle, .muted {{ color: var(--muted); }}
p, li {{ overflow-wrap: anywhere; }}
.table-wrap {{ max-width: 100%; overflow-x: auto; margin: .4rem 0 1rem; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid var(--line); padding: .25rem .55rem; text-align: left; vertical-align: top; }}
th {{ background: var(--soft); font-weight: 600; }}
td {{ overflow-wrap: break-word; }}
p.caption {{ margin: 0 0 .25rem; max-width: 36rem; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.num {{ white-space: nowrap; }} td.notes {{ min-width: 14rem; }}
tr.warn td {{ background: var(--warnbg); }} tr.bad td {{ background: var(--badbg); }}
tr.ok td {{ background: #dafbe1; }}
td.better {{ color: var(--ok); font-weight: 600; }} td.worse {{ color: var(--bad); font-weight: 600; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1rem 1.5rem; align-items: flex-start; }}
.grid > div {{ flex: 1 1 400px; min-width: 0; max-width: 100%; }}
.grid > div.fit {{ flex: 0 0 auto; }}
.card {{ border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem 1rem; margin: 1rem 0; }}
.card.warn {{ border-left: 4px solid var(--warn); }} .card.bad {{ border-left: 4px solid var(--bad); }}
.badge {{ display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-size: .8rem;
         font-weight: 600; color: #fff; background: var(--muted); white-space: nowrap; }}
.badge.ok {{ background: var(--ok); }} .badge.warn {{ background: var(--warn); }}
.badge.bad {{ background: var(--bad); }} .badge.label {{ background: #3b6fb6; }}
td .badge {{ white-space: normal; }}
details > summary {{ cursor: pointer; }} details > summary h3 {{ display: inline; }}
.controls {{ display: flex; flex-wrap: wrap; gap: .4rem 1rem; align-items: center; margin: .4rem 0; }}
.controls input[type=search] {{ font: inherit; padding: .15rem .4rem; min-width: 14rem; }}
table.sortable th {{ cursor: pointer; }}
table.sortable th[data-dir=asc]::after {{ content: " ▲"; }}
table.sortable th[data-dir=desc]::after {{ content: " ▼"; }}
.verdict {{ font-size: 1.15rem; font-weight: 600; margin: .4rem 0; }}
.verdict .badge {{ font-size: 1rem; padding: .1rem .7rem; vertical-align: middle; }}
nav {{ margin: .6rem 0; }} nav a {{ margin-right: .8rem; white-space: nowrap; }}
figure {{ margin: 0 0 1rem; max-width: 100%; }}
figcaption {{ color: var(--muted); font-size: .85rem; max-width: 40rem; }}
.legend {{ display: flex; flex-wrap: wrap; gap: .2rem 1rem; font-size: .85rem; margin: .2rem 0; }}
.legend i {{ display: inline-block; width: .9rem; height: .9rem; border-radius: 2px;
            vertical-align: -2px; margin-right: .3rem; }}
.legend i.line {{ height: 3px; vertical-align: 3px; }}
svg {{ width: 100%; height: auto; display: block; }}
svg text {{ font-family: inherit; font-size: 11px; fill: var(--fg); }}
svg text.muted {{ fill: var(--muted); }}
svg .axis {{ stroke: var(--muted); stroke-width: 1; }}
svg .gridline {{ stroke: #eaeef2; stroke-width: 1; }}
code {{ background: var(--soft); padding: 0 .25rem; border-radius: 3px; white-space: nowrap; }}
code.path {{ white-space: normal; word-break: break-all; }}
"""


class Raw(str):
    """A string that is already HTML: inserted without escaping."""


def esc(value: Any) -> str:
    """Text -> HTML-safe text; :class:`Raw` passes through untouched."""
    if isinstance(value, Raw):
        return value
    return html.escape("" if value is None else str(value), quote=True)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt_num(value: Any, digits: int = 4, *, grouping: bool = True) -> str:
    """A number for people: thousands separators, about ``digits`` significant digits, never ``e+04``.

    63,770.1 -> ``63,770``; 0.13421 -> ``0.1342``; 21,518,685.1 -> ``21,518,685``; 3.2e-7 ->
    ``3.2×10⁻⁷``; NaN/None -> empty. Strings pass through, so a table cell can mix numbers and text.
    ``grouping=False`` for years, ids and codes: ``2007``, not ``2,007``.
    """
    text = _fmt_num(value, digits)
    return text if grouping or not isinstance(value, int | float) else text.replace(",", "")


def _fmt_num(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if value == int(value) and magnitude < 1e15:
        return f"{int(value):,}"
    if magnitude >= 1:
        decimals = max(0, digits - 1 - int(math.floor(math.log10(magnitude))))
        text = f"{value:,.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if magnitude >= 1e-4:
        return f"{value:.{digits}g}"
    mantissa, exponent = f"{value:.{max(digits - 2, 1)}e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def fmt_pct(fraction: float, digits: int = 1) -> str:
    """0.1234 -> ``12.3 %``."""
    return f"{100.0 * fraction:.{digits}f} %"


def fmt_change(new: float | None, old: float | None) -> str:
    """Relative change of ``new`` against ``old``: ``+4.2 %``; empty when it is undefined."""
    if new is None or old is None or not old or math.isnan(new) or math.isnan(old):
        return ""
    return f"{100.0 * (new - old) / abs(old):+.1f} %"


def page(title: str, sections: Iterable[str], *, subtitle: str = "", script: str = "") -> str:
    """A complete HTML document: the title, an optional subtitle line, then the sections as given.

    ``script``: inline JavaScript run at the end of the body (``html_script.TABLE_SCRIPT``); never a URL.
    """
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    )
    top = f"<h1>{esc(title)}</h1>\n" + (f'<p class="subtitle">{esc(subtitle)}</p>\n' if subtitle else "")
    tail = f"<script>{script}</script>\n" if script else ""
    return head + top + "\n".join(sections) + "\n" + tail + "</body>\n</html>\n"


def anchor_id(text: str) -> str:
    """A stable id for in-page links (letters, digits, dashes)."""
    return "s-" + "".join(c if c.isalnum() else "-" for c in text.lower())


def section(title: str, *parts: str, anchor: str | None = None, level: int = 2) -> str:
    """A heading and its content; ``anchor`` makes it a target for :func:`nav` links."""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<section{ident}>\n<h{level}>{esc(title)}</h{level}>\n" + "\n".join(parts) + "\n</section>"


def card(
    title: str,
    *parts: str,
    anchor: str | None = None,
    kind: str = "",
    heading: str = "",
    collapsible: bool = False,
    open_: bool = True,
) -> str:
    """A bordered box with a small heading, for one item among many (a feature, a slice).

    ``kind`` ``warn``/``bad`` marks the box's edge; ``heading`` is extra HTML after the title (badges).
    ``collapsible``: the heading opens and closes the body (``<details>``, open when ``open_``).
    """
    ident = f' id="{esc(anchor)}"' if anchor else ""
    cls = f"card {esc(kind)}".strip()
    head = f"<h3>{esc(title)}{' ' + heading if heading else ''}</h3>"
    body = "\n".join(parts)
    if collapsible:
        opened = " open" if open_ else ""
        body = f"<details{opened}><summary>{head}</summary>\n{body}\n</details>"
        return f'<div class="{cls}"{ident}>\n{body}</div>'
    return f'<div class="{cls}"{ident}>\n{head}\n{body}\n</div>'


def nav(links: Sequence[tuple[str, str]]) -> str:
    """In-page links: ``[(label, anchor id), ...]``."""
    return "<nav>" + " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for t, a in links) + "</nav>"


def paragraph(text: str, *, muted: bool = False) -> str:
    """A paragraph of escaped text."""
    cls = ' class="muted"' if muted else ""
    return f"<p{cls}>{esc(text)}</p>"


def bullets(items: Iterable[Any]) -> str:
    """An unordered list of escaped items."""
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def badge(text: str, kind: str = "") -> str:
    """A coloured label; ``kind`` is ``ok``, ``warn``, ``bad`` or empty (grey)."""
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def verdict_line(word: str, kind: str, sentence: str, *, value: str = "") -> str:
    """The first thing a report says: a large badge and one sentence (``value``: the verdict as data)."""
    data = f' data-verdict="{esc(value)}"' if value else ""
    return f'<p class="verdict"{data}>{badge(word, kind)} {esc(sentence)}</p>'


_SVG_WIDTH = re.compile(r'<svg width="(\d+)"')


def grid(*cells: str, fit: Sequence[int] = ()) -> str:
    """Cells side by side (wrapping on narrow screens): e.g. a table next to its chart.

    The cells whose indexes are in ``fit`` take their content's width (a table); the others share
    the rest, a cell holding a chart asking for at least the chart's drawn width: with less room
    beside its neighbour it wraps below it instead of shrinking (and its 11-px text with it).
    """
    out = []
    for i, c in enumerate(cells):
        if not c:
            continue
        widths = [int(w) for w in _SVG_WIDTH.findall(c)]
        basis = f' style="flex-basis:{max(widths)}px"' if widths and i not in fit else ""
        out.append(f'<div class="fit">{c}</div>' if i in fit else f"<div{basis}>{c}</div>")
    return '<div class="grid">' + "".join(out) + "</div>"


def legend(items: Sequence[tuple[str, str]], *, lines: Sequence[tuple[str, str]] = ()) -> str:
    """A chart's legend as HTML: ``[(label, colour), ...]`` swatches, then ``lines`` as strokes."""
    swatches = [f'<span><i style="background:{esc(c)}"></i>{esc(t)}</span>' for t, c in items]
    swatches += [f'<span><i class="line" style="background:{esc(c)}"></i>{esc(t)}</span>' for t, c in lines]
    return '<div class="legend">' + "".join(swatches) + "</div>"


def figure(svg: str, *, legend_html: str = "", caption: str = "") -> str:
    """A chart with its legend above and a caption below."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{legend_html}{svg}{cap}</figure>"


def table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    *,
    caption: str = "",
    numeric: Sequence[int] | None = None,
    row_classes: Sequence[str] | None = None,
    cell_classes: dict[tuple[int, int], str] | None = None,
    ident: str = "",
    sortable: bool = False,
    blank: str = "",
) -> str:
    """A table in a box that scrolls sideways when it is wider than the page.

    Numbers are formatted with :func:`fmt_num` and right-aligned. No ``headers`` (None or empty):
    no header row. ``numeric`` lists the column indexes to right-align; by default a cell is
    right-aligned when it holds an ``int`` or ``float``. ``row_classes`` (``warn``/``bad``/"")
    highlight rows; ``cell_classes`` maps (row, column) to a class (``better``/``worse``).
    ``ident``: the table's id (``html_script.table_filter`` names it); ``sortable``: a click on a header
    sorts by that column (``html_script.TABLE_SCRIPT``). ``blank``: what an empty cell shows (None,
    NaN, "": e.g. "—", so a reader never wonders whether a figure is missing by mistake).
    """
    out = ['<div class="table-wrap">']
    if caption:  # above the table, not a <caption>: that would wrap to the table's width
        out.append(f'<p class="caption muted">{esc(caption)}</p>')
    attrs = (f' id="{esc(ident)}"' if ident else "") + (' class="sortable"' if sortable else "")
    out.append(f"<table{attrs}>")
    if headers:
        out.append(
            "<thead><tr>"
            + "".join(
                f'<th class="num">{esc(h)}</th>'
                if numeric is not None and i in numeric
                else f"<th>{esc(h)}</th>"
                for i, h in enumerate(headers)
            )
            + "</tr></thead>"
        )
    out.append("<tbody>")
    for r, row in enumerate(rows):
        cells = []
        for i, v in enumerate(row):
            is_num = (
                (i in numeric)
                if numeric is not None
                else isinstance(v, int | float) and not isinstance(v, bool)
            )
            classes = " ".join(
                c for c in ("num" if is_num else "", (cell_classes or {}).get((r, i), "")) if c
            )
            attr = f' class="{classes}"' if classes else ""
            text = esc(v) if isinstance(v, Raw) else esc(fmt_num(v))
            text = text or esc(blank)
            cells.append(f"<td{attr}>{text}</td>")
        kind = row_classes[r] if row_classes and r < len(row_classes) and row_classes[r] else ""
        out.append((f'<tr class="{esc(kind)}">' if kind else "<tr>") + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def kv_table(pairs: Iterable[tuple[str, Any]], *, caption: str = "", blank: str = "") -> str:
    """A two-column table of name/value pairs (no header row), values left-aligned."""
    return table(None, pairs, caption=caption, numeric=[], blank=blank)


def code(text: Any) -> Raw:
    """Inline code (a name, a value) as a table cell or in a sentence; it does not wrap."""
    return Raw(f"<code>{esc(text)}</code>")


def path(text: Any) -> Raw:
    """A file path as code that may wrap anywhere, so a long path never widens its table."""
    return Raw(f'<code class="path">{esc(text)}</code>')
