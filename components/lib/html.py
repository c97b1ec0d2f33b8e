"""Self-contained HTML reports: escaping, one small stylesheet, tables and inline SVG charts.

Every report a stage writes must open from a pipeline UI, a laptop without network or an
air-gapped cluster, so a page built here references nothing outside itself: no scripts, no
style sheets, no fonts, no images by URL. Charts are inline ``<svg>`` elements (no ``xmlns``
attribute is needed inside HTML5, so not even a namespace URL appears in the document).

The helpers return HTML strings. Text is always escaped; a string that is already HTML is
passed as :class:`Raw` so it is inserted as is. Standard library only, so any stage can use it
without importing a heavy package.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

# Two colours for the two sides of a comparison (train/eval, candidate/baseline), then more.
PALETTE = ("#3b6fb6", "#e08a2c", "#4c9f70", "#b8474d", "#7d5ba6", "#8c8c8c")

CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #ffffff; --soft: #f6f8fa;
        --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1280px;
       font-size: 14px; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; padding-bottom: .3rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
p.subtitle, .muted { color: var(--muted); }
table { border-collapse: collapse; margin: .4rem 0 1rem; }
caption { text-align: left; color: var(--muted); padding-bottom: .25rem; }
th, td { border: 1px solid var(--line); padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.grid > div { flex: 1 1 360px; min-width: 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem 1rem; margin: 1rem 0; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-size: .8rem;
         font-weight: 600; color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); }
.badge.bad { background: var(--bad); }
nav a { margin-right: .8rem; }
svg text { font-family: inherit; font-size: 11px; fill: var(--fg); }
svg .axis { stroke: var(--muted); stroke-width: 1; }
code { background: var(--soft); padding: 0 .25rem; border-radius: 3px; }
"""


class Raw(str):
    """A string that is already HTML: inserted without escaping."""


def esc(value: Any) -> str:
    """Text -> HTML-safe text; :class:`Raw` passes through untouched."""
    if isinstance(value, Raw):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number for people: thousands separators, ``digits`` significant digits, NaN/None empty.

    Strings pass through, so a table cell can mix numbers and text.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits}g}"
        return f"{value:,.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}g}"
    return str(value)


def fmt_pct(fraction: float, digits: int = 1) -> str:
    """0.1234 -> ``12.3 %``."""
    return f"{100.0 * fraction:.{digits}f} %"


def page(title: str, sections: Iterable[str], *, subtitle: str = "") -> str:
    """A complete HTML document: the title, an optional subtitle line, then the sections as given."""
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    )
    top = f"<h1>{esc(title)}</h1>\n" + (f'<p class="subtitle">{esc(subtitle)}</p>\n' if subtitle else "")
    return head + top + "\n".join(sections) + "\n</body>\n</html>\n"


def anchor_id(text: str) -> str:
    """A stable id for in-page links (letters, digits, dashes)."""
    return "s-" + "".join(c if c.isalnum() else "-" for c in text.lower())


def section(title: str, *parts: str, anchor: str | None = None, level: int = 2) -> str:
    """A heading and its content; ``anchor`` makes it a target for :func:`nav` links."""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<section{ident}>\n<h{level}>{esc(title)}</h{level}>\n" + "\n".join(parts) + "\n</section>"


def card(title: str, *parts: str, anchor: str | None = None) -> str:
    """A bordered box with a small heading, for one item among many (a feature, a slice)."""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f'<div class="card"{ident}>\n<h3>{esc(title)}</h3>\n' + "\n".join(parts) + "\n</div>"


def nav(links: Sequence[tuple[str, str]]) -> str:
    """In-page links: ``[(label, anchor id), ...]``."""
    return "<nav>" + " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for t, a in links) + "</nav>"


def paragraph(text: str, *, muted: bool = False) -> str:
    """A paragraph of escaped text."""
    cls = ' class="muted"' if muted else ""
    return f"<p{cls}>{esc(text)}</p>"


def badge(text: str, kind: str = "") -> str:
    """A coloured label; ``kind`` is ``ok``, ``warn``, ``bad`` or empty (grey)."""
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def grid(*cells: str) -> str:
    """Cells side by side (wrapping on narrow screens): e.g. train next to eval."""
    return '<div class="grid">' + "".join(f"<div>{c}</div>" for c in cells) + "</div>"


def table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    *,
    caption: str = "",
    numeric: Sequence[int] | None = None,
) -> str:
    """A table; numbers are formatted with :func:`fmt_num` and right-aligned.

    No ``headers`` (None or empty): no header row. ``numeric`` lists the column indexes to
    right-align; by default a cell is right-aligned when it holds an ``int`` or ``float``.
    """
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    if headers:
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            is_num = (
                (i in numeric)
                if numeric is not None
                else isinstance(v, int | float) and not isinstance(v, bool)
            )
            text = esc(v) if isinstance(v, Raw) else esc(fmt_num(v))
            cells.append(f'<td class="num">{text}</td>' if is_num else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def kv_table(pairs: Iterable[tuple[str, Any]], *, caption: str = "") -> str:
    """A two-column table of name/value pairs (no header row)."""
    return table(None, pairs, caption=caption)


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(label)}">'
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str = "",
    width: int = 420,
    bar_height: int = 18,
    color: str = PALETTE[0],
    value_format: Any = fmt_num,
) -> str:
    """Horizontal bars, one per label (categories, top values, metric per slice) as inline SVG."""
    if not labels:
        return paragraph("(no values)", muted=True)
    label_w = min(160, 8 + 7 * max(len(_short(str(x), 22)) for x in labels))
    value_w = 70
    top = 18 if title else 4
    plot_w = max(40, width - label_w - value_w)
    height = top + len(labels) * (bar_height + 4) + 4
    vmax = max((v for v in values if v is not None and math.isfinite(v)), default=0.0)
    vmax = vmax if vmax > 0 else 1.0
    out = [_svg_open(width, height, title or "bar chart")]
    if title:
        out.append(f'<text x="0" y="12" font-weight="600">{esc(title)}</text>')
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = top + i * (bar_height + 4)
        v = 0.0 if v is None or not math.isfinite(v) else float(v)
        w = max(0.0, plot_w * v / vmax)
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar_height * 0.7:.1f}" text-anchor="end">'
            f"<title>{esc(lab)}</title>{esc(_short(str(lab), 22))}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_height}" fill="{esc(color)}">'
            f"<title>{esc(lab)}: {esc(value_format(v))}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_height * 0.7:.1f}">{esc(value_format(v))}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def histogram(
    buckets: Sequence[tuple[float, float, float]],
    *,
    title: str = "",
    width: int = 420,
    height: int = 170,
    color: str = PALETTE[0],
) -> str:
    """Vertical bars over a numeric range: ``[(low, high, count), ...]`` in order, as inline SVG.

    Bars are drawn by bucket index (equal widths), which suits both equal-width and quantile
    buckets; the axis shows the lowest and highest bound, and each bar's tooltip its range.
    """
    if not buckets:
        return paragraph("(no histogram)", muted=True)
    top = 18 if title else 6
    bottom = 18
    left, right = 4, 4
    plot_w = width - left - right
    plot_h = height - top - bottom
    cmax = max((c for _, _, c in buckets), default=0.0) or 1.0
    bw = plot_w / len(buckets)
    out = [_svg_open(width, height, title or "histogram")]
    if title:
        out.append(f'<text x="0" y="12" font-weight="600">{esc(title)}</text>')
    for i, (lo, hi, c) in enumerate(buckets):
        h = plot_h * c / cmax
        x = left + i * bw
        out.append(
            f'<rect x="{x + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(bw - 1, 0.5):.1f}" '
            f'height="{h:.1f}" fill="{esc(color)}"><title>[{esc(fmt_num(lo))}, {esc(fmt_num(hi))}]: '
            f"{esc(fmt_num(c))}</title></rect>"
        )
    y_axis = top + plot_h + 0.5
    out.append(f'<line class="axis" x1="{left}" y1="{y_axis}" x2="{left + plot_w}" y2="{y_axis}"/>')
    out.append(f'<text x="{left}" y="{height - 4}">{esc(fmt_num(buckets[0][0]))}</text>')
    out.append(
        f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end">{esc(fmt_num(buckets[-1][1]))}</text>'
    )
    out.append("</svg>")
    return "".join(out)
