"""Inline SVG charts of (x, y) data for the reports: lines, dots, curves, binned errors, a matrix.

Drawn on ``charts.Frame`` as the histograms and bars are (same sizes, 11-px text, ``data-x`` and
``data-y`` giving each chart's axis ranges), for the evaluation report: training curves per
epoch, predicted against actual, ROC and precision-recall curves on the unit square, a
reliability diagram, residuals binned by predicted value, a confusion matrix. An axis never
leaves its metric's domain (``y_domain``: an accuracy stays in [0, 1], a loss above 0).
Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from components.lib.charts import CHAR_W, MAX_GROWTH, Format, Frame, shorten
from components.lib.html import PALETTE, THRESHOLD_COLOR, esc, fmt_num, paragraph


def line_chart(
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
    *,
    label: str,
    x_label: str = "",
    y_label: str = "",
    width: int = 440,
    height: int = 220,
    y_domain: tuple[float, float] = (-math.inf, math.inf),
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    dots: bool = True,
    step: bool = False,
    diagonal: bool = False,
    mark_x: float | None = None,
) -> str:
    """Lines with dots (e.g. loss per epoch, train and validation), on shared axes.

    ``y_domain``: the metric's possible values (accuracy [0, 1], a loss [0, ∞)); the axis pads
    around the data but never leaves it. ``x_range``/``y_range``: fixed axes (a ROC curve's unit
    square). ``dots=False`` for long curves; ``step``: each value holds from the previous x up to
    its own (a precision-recall curve as its area counts it); ``diagonal``: the line y = x;
    ``mark_x``: a dashed vertical line there (the best epoch).
    """
    points = [p for _, _, ps in series for p in ps if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not points:
        return paragraph("(no values)", muted=True)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    pad = (max(ys) - min(ys)) * 0.05 or abs(max(ys)) * 0.05 or 1.0
    integer_x = x_range is None and all(float(x).is_integer() for x in xs)
    x_ticks = None
    if integer_x:
        every = max(1, math.ceil((max(xs) - min(xs) + 1) / max(3, width // 60)))
        x_ticks = [float(x) for x in range(int(min(xs)), int(max(xs)) + 1, every)]
    frame = Frame(
        width,
        height,
        x_range or (min(xs), max(xs)),
        y_range or (min(ys) - pad, max(ys) + pad),
        x_label=x_label,
        y_label=y_label,
        x_ticks=x_ticks,
        extend_y=y_range is None,
        y_domain=y_domain,
    )
    body = []
    if diagonal:
        lo, hi = max(frame.x_lo, frame.y_lo), min(frame.x_hi, frame.y_hi)
        body.append(
            f'<line x1="{frame.x(lo):.1f}" y1="{frame.y(lo):.1f}" x2="{frame.x(hi):.1f}" '
            f'y2="{frame.y(hi):.1f}" stroke="{THRESHOLD_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
    if mark_x is not None and frame.x_lo <= mark_x <= frame.x_hi:
        body.append(
            f'<line x1="{frame.x(mark_x):.1f}" y1="{frame.top}" x2="{frame.x(mark_x):.1f}" '
            f'y2="{frame.top + frame.plot_h}" stroke="{THRESHOLD_COLOR}" stroke-width="1.5" '
            f'stroke-dasharray="5 3"/>'
        )
    for name, color, ps in series:
        good = [(frame.x(x), frame.y(y), x, y) for x, y in ps if math.isfinite(x) and math.isfinite(y)]
        if not good:
            continue
        corners = []
        for k, (px, py, _, _) in enumerate(good):
            if step and k:
                corners.append(f"{good[k - 1][0]:.1f},{py:.1f}")
            corners.append(f"{px:.1f},{py:.1f}")
        body.append(
            f'<polyline points="{" ".join(corners)}" fill="none" stroke="{esc(color)}" stroke-width="2">'
            f"<title>{esc(name)}</title></polyline>"
        )
        body += [
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{esc(color)}">'
            f"<title>{esc(name)} at {esc(fmt_num(float(x)))}: {esc(fmt_num(float(y)))}</title></circle>"
            for px, py, x, y in (good if dots else [])
        ]
    return frame.svg(label, *body)


def reliability(
    bins: Sequence[tuple[float, float, int]],
    *,
    label: str,
    x_label: str,
    y_label: str,
    color: str = PALETTE[0],
    width: int = 360,
    height: int = 300,
) -> str:
    """A reliability diagram: per bin of the predicted probability, (mean score, share right, rows).

    On the unit square with y = x (perfect calibration); a dot's area grows with its rows.
    """
    if not bins:
        return paragraph("(no values)", muted=True)
    frame = Frame(width, height, (0.0, 1.0), (0.0, 1.0), x_label=x_label, y_label=y_label, extend_y=False)
    ref = f'stroke="{THRESHOLD_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"'
    body = [f'<line x1="{frame.x(0):.1f}" y1="{frame.y(0):.1f}" x2="{frame.x(1):.1f}" y2="{frame.y(1):.1f}" ']
    body[0] += f"{ref}/>"
    path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y, _ in bins)
    body.append(f'<polyline points="{path}" fill="none" stroke="{esc(color)}" stroke-width="2"/>')
    most = max(n for _, _, n in bins) or 1
    for x, y, n in bins:
        r = 2.5 + 4.5 * math.sqrt(n / most)
        body.append(
            f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="{r:.1f}" fill="{esc(color)}" '
            f'fill-opacity="0.8"><title>{n:,} rows: mean predicted {x:.3f}, observed {y:.3f}</title></circle>'
        )
    return frame.svg(label, *body)


def binned_errors(
    bins: Sequence[tuple[float, float, float, float, int]],
    *,
    label: str,
    x_label: str,
    y_label: str,
    x_format: Format = fmt_num,
    color: str = PALETTE[2],
    width: int = 440,
    height: int = 260,
) -> str:
    """Per bin (x, mean, low, high, rows): the mean as a dot on a line, low .. high as a whisker.

    With y = 0 drawn: e.g. the mean residual and the middle 80 % of residuals per predicted value.
    """
    good = [b for b in bins if all(math.isfinite(v) for v in b[:4])]
    if not good:
        return paragraph("(no values)", muted=True)
    ys = [v for b in good for v in b[1:4]] + [0.0]
    pad = (max(ys) - min(ys)) * 0.05 or 1.0
    xs = [b[0] for b in good]
    frame = Frame(
        width,
        height,
        (min(xs), max(xs)),
        (min(ys) - pad, max(ys) + pad),
        x_label=x_label,
        y_label=y_label,
        x_format=x_format,
        extend_x=True,
    )
    body = [
        f'<line x1="{frame.left}" y1="{frame.y(0):.1f}" x2="{frame.left + frame.plot_w}" '
        f'y2="{frame.y(0):.1f}" stroke="{THRESHOLD_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"/>'
    ]
    path = " ".join(f"{frame.x(x):.1f},{frame.y(m):.1f}" for x, m, _, _, _ in good)
    body.append(f'<polyline points="{path}" fill="none" stroke="{esc(color)}" stroke-width="2"/>')
    for x, mean, low, high, n in good:
        px = frame.x(x)
        tip = f"{n:,} rows around {x_format(x)}: mean {fmt_num(mean)}, {fmt_num(low)} .. {fmt_num(high)}"
        body.append(
            f'<g><title>{esc(tip)}</title><line x1="{px:.1f}" y1="{frame.y(low):.1f}" x2="{px:.1f}" '
            f'y2="{frame.y(high):.1f}" stroke="{esc(color)}" stroke-width="6" stroke-opacity="0.3"/>'
            f'<circle cx="{px:.1f}" cy="{frame.y(mean):.1f}" r="3.5" fill="{esc(color)}"/></g>'
        )
    return frame.svg(label, *body)


def heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    cells: Sequence[Sequence[tuple[float, str, str]]],
    *,
    label: str,
    x_label: str,
    y_label: str,
    color: str = PALETTE[0],
) -> str:
    """A matrix of shaded cells (e.g. a confusion matrix): each cell (shade 0..1, first line, second line).

    Row names on the left, column names below (a cell is as wide as a name of up to 14
    characters); dark cells get white text.
    """
    if not rows or not columns:
        return paragraph("(no values)", muted=True)
    row_w = int(min(150, 10 + CHAR_W * max(len(shorten(r, 20)) for r in rows)))
    smallest = 72 if len(columns) <= 4 else 58  # a few classes: larger cells, the matrix reads at a glance
    cell = int(max(smallest, min(14 * CHAR_W + 10, CHAR_W * max(len(c) for c in columns) + 10)))
    col_chars = max(3, int((cell - 6) / CHAR_W))
    top, bottom = 22, 40
    width = max(row_w + cell * len(columns) + 8, int(row_w + CHAR_W * len(x_label)) + 8)
    height = top + cell * len(rows) + bottom
    body = [f'<text class="muted" x="{row_w}" y="12">{esc(y_label)}</text>']
    for i, name in enumerate(rows):
        y0 = top + i * cell
        body.append(
            f'<text x="{row_w - 6}" y="{y0 + cell / 2 + 4:.1f}" text-anchor="end">'
            f"<title>{esc(name)}</title>{esc(shorten(name, 20))}</text>"
        )
        for j, (shade, first, second) in enumerate(cells[i]):
            x0 = row_w + j * cell
            ink = "#ffffff" if shade > 0.55 else "#1f2328"
            body.append(
                f"<g><title>{esc(y_label)} {esc(name)}, {esc(x_label)} {esc(columns[j])}: {esc(first)} "
                f'({esc(second)})</title><rect x="{x0}" y="{y0}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{esc(color)}" fill-opacity="{0.06 + 0.94 * max(0.0, min(shade, 1.0)):.3f}"/>'
                f'<text x="{x0 + cell / 2 - 1:.1f}" y="{y0 + cell / 2 - 3:.1f}" text-anchor="middle" '
                f'style="fill:{ink};font-weight:600">{esc(first)}</text>'
                f'<text x="{x0 + cell / 2 - 1:.1f}" y="{y0 + cell / 2 + 11:.1f}" text-anchor="middle" '
                f'style="fill:{ink}">{esc(second)}</text></g>'
            )
    base = top + cell * len(rows)
    for j, name in enumerate(columns):
        body.append(
            f'<text x="{row_w + j * cell + cell / 2 - 1:.1f}" y="{base + 14}" text-anchor="middle">'
            f"<title>{esc(name)}</title>{esc(shorten(name, col_chars))}</text>"
        )
    body.append(
        f'<text class="muted" x="{row_w + cell * len(columns) / 2:.1f}" y="{base + 32}" '
        f'text-anchor="middle">{esc(x_label)}</text>'
    )
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'style="max-width:{int(width * MAX_GROWTH)}px" role="img" aria-label="{esc(label)}">'
        + "".join(body)
        + "</svg>"
    )


def scatter(
    points: Sequence[tuple[float, float]],
    *,
    label: str,
    x_label: str = "",
    y_label: str = "",
    diagonal: bool = False,
    zero_line: bool = False,
    color: str = PALETTE[0],
    width: int = 440,
    height: int = 300,
    x_format: Format = fmt_num,
    y_format: Format = fmt_num,
) -> str:
    """Dots (semi-transparent, so dense areas show), optionally with y = x or y = 0 drawn.

    ``diagonal``: both axes get the same range, so a perfect prediction lies on the line.
    """
    pts = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return paragraph("(no values)", muted=True)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x_range, y_range = (min(xs), max(xs)), (min(ys), max(ys))
    if diagonal:
        both = (min(x_range[0], y_range[0]), max(x_range[1], y_range[1]))
        x_range = y_range = both
    if zero_line:
        y_range = (min(y_range[0], 0.0), max(y_range[1], 0.0))
    frame = Frame(
        width,
        height,
        x_range,
        y_range,
        x_label=x_label,
        y_label=y_label,
        extend_x=True,
        x_format=x_format,
        y_format=y_format,
    )
    body = [
        f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.2" '
        f'fill="{esc(color)}" fill-opacity="0.45"/>'
        for x, y in pts
    ]
    ref = f'stroke="{THRESHOLD_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"'
    if diagonal:
        lo, hi = max(frame.x_lo, frame.y_lo), min(frame.x_hi, frame.y_hi)
        body.append(
            f'<line x1="{frame.x(lo):.1f}" y1="{frame.y(lo):.1f}" '
            f'x2="{frame.x(hi):.1f}" y2="{frame.y(hi):.1f}" {ref}/>'
        )
    if zero_line:
        body.append(
            f'<line x1="{frame.left}" y1="{frame.y(0):.1f}" '
            f'x2="{frame.left + frame.plot_w}" y2="{frame.y(0):.1f}" {ref}/>'
        )
    return frame.svg(label, *body)
