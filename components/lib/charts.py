"""Inline SVG charts for the reports: axes, overlaid histograms, grouped bars (``plots``: x-y charts).

Axes get readable ticks; grouped bars can draw a threshold line. Each chart is drawn at a
natural size in px and returned as one ``<svg>`` string with a ``viewBox``: it fills its box's
width (``html.CSS``), shrinking with a narrow box and growing to at most ``MAX_GROWTH`` times its
natural size in a wide one, so its 11-px text stays legible. Series share one axis, so train and
eval (or candidate and baseline) compare by position, not by reading two scales. Legends are
HTML (``html.legend``), so they wrap on narrow screens. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from components.lib.html import THRESHOLD_COLOR, esc, fmt_num, paragraph

Format = Callable[[float], str]
CHAR_W = 6.8  # width of one 11-px character (a wide one: labels must not be cut), for margins and truncation
MAX_GROWTH = 1.25


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2, 2.5, 5 × 10^k steps) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, v = [], first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi - step * 1e-9:
        ticks.append(round(v, 12))
    return ticks


def _inner_ticks(lo: float, hi: float, count: int) -> list[float]:
    """Round ticks of which at least 3 fall inside ``[lo, hi]`` when the range allows (finer steps if not)."""
    ticks = nice_ticks(lo, hi, count)
    for finer in (count + 2, count * 2 + 2):
        if sum(lo - 1e-9 <= t <= hi + 1e-9 for t in ticks) >= 3:
            break
        ticks = nice_ticks(lo, hi, finer)
    return ticks


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _clamp(span: tuple[float, float], domain: tuple[float, float]) -> tuple[float, float]:
    """``span`` cut to ``domain`` (a share never beyond [0, 1], a loss never below 0)."""
    lo, hi = max(span[0], domain[0]), min(span[1], domain[1])
    if hi > lo:
        return lo, hi
    lo, hi = max(min(span[0], domain[1]) - 1, domain[0]), min(max(span[1], domain[0]) + 1, domain[1])
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (a label that must fit)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Frame:
    """A plot area with its axes: maps data to pixels and draws ticks, grid lines and axis titles."""

    def __init__(
        self,
        width: int,
        height: int,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        *,
        x_label: str = "",
        y_label: str = "",
        x_format: Format = fmt_num,
        y_format: Format = fmt_num,
        x_ticks: Sequence[float] | None = None,
        extend_y: bool = True,
        extend_x: bool = False,
        bottom_extra: int = 0,
        y_domain: tuple[float, float] = (-math.inf, math.inf),
        x_domain: tuple[float, float] = (-math.inf, math.inf),
    ) -> None:
        self.width, self.height = width, height
        lo, hi = y_range
        if hi <= lo:
            lo, hi = (lo - 1, hi + 1) if lo else (0.0, 1.0)
        lo, hi = _clamp((lo, hi), y_domain)
        self.y_ticks = nice_ticks(lo, hi, 5)
        if extend_y:  # to the outer ticks, but never past the metric's domain (accuracy <= 1, loss >= 0)
            lo, hi = _clamp((min(lo, self.y_ticks[0]), max(hi, self.y_ticks[-1])), y_domain)
        self.y_ticks = [t for t in self.y_ticks if lo - 1e-12 <= t <= hi + 1e-12]
        self.y_lo, self.y_hi = lo, hi
        x_lo, x_hi = x_range
        if x_hi <= x_lo:
            x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
        x_lo, x_hi = _clamp((x_lo, x_hi), x_domain)
        self.x_lo, self.x_hi = x_lo, x_hi
        ticks = list(x_ticks) if x_ticks is not None else _inner_ticks(x_lo, x_hi, max(3, width // 90))
        if extend_x:
            x_lo, x_hi = _clamp((min(x_lo, ticks[0]), max(x_hi, ticks[-1])), x_domain)
            self.x_lo, self.x_hi = x_lo, x_hi
        self.x_ticks = [t for t in ticks if x_lo - 1e-9 <= t <= x_hi + 1e-9]
        self.x_format, self.y_format = x_format, y_format
        self.x_label, self.y_label = x_label, y_label
        label_w = max((len(y_format(t)) for t in self.y_ticks), default=1) * CHAR_W
        self.left = int(label_w + 12)
        self.right = int(max(14.0, len(x_format(self.x_hi)) * CHAR_W / 2 + 4))
        self.top = 20 if y_label else 8
        self.bottom = 22 + (16 if x_label else 0) + bottom_extra
        self.bottom_extra = bottom_extra
        self.plot_w = width - self.left - self.right
        self.plot_h = height - self.top - self.bottom

    def x(self, v: float) -> float:
        return self.left + self.plot_w * (v - self.x_lo) / (self.x_hi - self.x_lo)

    def y(self, v: float) -> float:
        return self.top + self.plot_h * (1 - (v - self.y_lo) / (self.y_hi - self.y_lo))

    def axes(self) -> str:
        out = []
        for t in self.y_ticks:
            y = self.y(t)
            out.append(
                f'<line class="gridline" x1="{self.left}" y1="{y:.1f}" '
                f'x2="{self.left + self.plot_w}" y2="{y:.1f}"/>'
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(self.y_format(t))}</text>'
            )
        base = self.top + self.plot_h
        out.append(
            f'<line class="axis" x1="{self.left}" y1="{base + 0.5}" '
            f'x2="{self.left + self.plot_w}" y2="{base + 0.5}"/>'
        )
        out.append(
            f'<line class="axis" x1="{self.left - 0.5}" y1="{self.top}" x2="{self.left - 0.5}" y2="{base}"/>'
        )
        label_y = base + self.bottom_extra + 15
        for t in self.x_ticks:
            x = self.x(t)
            out.append(
                f'<line class="axis" x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}"/>'
                f'<text x="{x:.1f}" y="{label_y}" text-anchor="middle">{esc(self.x_format(t))}</text>'
            )
        if self.x_label:
            out.append(
                f'<text class="muted" x="{self.left + self.plot_w / 2:.1f}" y="{label_y + 16}" '
                f'text-anchor="middle">{esc(self.x_label)}</text>'
            )
        if self.y_label:
            out.append(f'<text class="muted" x="{self.left}" y="12">{esc(self.y_label)}</text>')
        return "".join(out)

    def svg(self, label: str, *body: str) -> str:
        """The chart; ``data-x``/``data-y`` carry the axes' ranges (the browser test reads them)."""
        return (
            f'<svg width="{self.width}" height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
            f'style="max-width:{int(self.width * MAX_GROWTH)}px" role="img" aria-label="{esc(label)}" '
            f'data-x="{self.x_lo:.6g} {self.x_hi:.6g}" data-y="{self.y_lo:.6g} {self.y_hi:.6g}">'
            + self.axes()
            + "".join(body)
            + "</svg>"
        )


def overlaid_histogram(
    edges: Sequence[float],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    label: str,
    x_label: str = "",
    y_label: str = "% of rows",
    strips: Sequence[tuple[str, dict[str, float]]] = (),
    x_format: Format = fmt_num,
    width: int = 440,
    height: int = 200,
) -> str:
    """Several series over the same bins (``edges``: n+1 bounds), drawn over each other.

    ``series``: ``[(name, colour, n values)]`` — values in % so splits of any size compare. The
    first is drawn as filled bars, the others as step outlines on top (``histogram_legend``).
    ``strips``: ``[(colour, {"min", "p25", "p50", "p75", "max"})]`` drawn under the bars on the
    same x axis, one per series (a box from the 25th to the 75th percentile, the median marked).
    """
    if len(edges) < 2 or not series:
        return paragraph("(no histogram)", muted=True)
    top = max(_finite([v for _, _, vs in series for v in vs]), default=0.0) or 1.0
    frame = Frame(
        width,
        height,
        (edges[0], edges[-1]),
        (0.0, top),
        x_label=x_label,
        y_label=y_label,
        x_format=x_format,
        y_format=lambda v: f"{v:g} %",
        bottom_extra=12 * len(strips) + (4 if strips else 0),
    )
    body = []
    base = frame.top + frame.plot_h
    for n, (name, color, values) in enumerate(series):
        tips = (
            "".join(
                f'<rect x="{frame.x(edges[i]):.1f}" y="{frame.top}" '
                f'width="{frame.x(edges[i + 1]) - frame.x(edges[i]):.1f}" '
                f'height="{frame.plot_h}" fill="transparent"><title>{esc(name)} [{esc(x_format(edges[i]))}, '
                f"{esc(x_format(edges[i + 1]))}): {v:.1f} %</title></rect>"
                for i, v in enumerate(values)
            )
            if n == len(series) - 1
            else ""
        )
        if n == 0:  # the first series as filled bars
            for i, v in enumerate(values):
                if v:
                    x0, x1, y = frame.x(edges[i]), frame.x(edges[i + 1]), frame.y(v)
                    body.append(
                        f'<rect x="{x0 + 0.5:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 0.8):.1f}" '
                        f'height="{base - y:.1f}" fill="{esc(color)}" fill-opacity="0.45"/>'
                    )
        else:  # the others as step outlines over them
            points = [f"{frame.x(edges[0]):.1f},{base:.1f}"]
            for i, v in enumerate(values):
                y = frame.y(v)
                points += [f"{frame.x(edges[i]):.1f},{y:.1f}", f"{frame.x(edges[i + 1]):.1f},{y:.1f}"]
            points.append(f"{frame.x(edges[-1]):.1f},{base:.1f}")
            body.append(
                f'<polyline points="{" ".join(points)}" fill="none" '
                f'stroke="{esc(color)}" stroke-width="2.5"/>'
            )
        body.append(tips)
    for k, (color, q) in enumerate(strips):
        y = base + 8 + 12 * k
        x = {key: frame.x(q[key]) for key in ("min", "p25", "p50", "p75", "max") if key in q}
        if len(x) < 5:
            continue
        tip = ", ".join(f"{key} {x_format(q[key])}" for key in ("min", "p25", "p50", "p75", "max"))
        body.append(
            f'<g><title>{esc(tip)}</title><line x1="{x["min"]:.1f}" y1="{y}" x2="{x["max"]:.1f}" y2="{y}" '
            f'stroke="{esc(color)}"/><rect x="{x["p25"]:.1f}" y="{y - 4}" '
            f'width="{max(x["p75"] - x["p25"], 1):.1f}" '
            f'height="8" fill="{esc(color)}" fill-opacity="0.6"/><line x1="{x["p50"]:.1f}" y1="{y - 5}" '
            f'x2="{x["p50"]:.1f}" y2="{y + 5}" stroke="#1f2328" stroke-width="2"/></g>'
        )
    return frame.svg(label, *body)


def grouped_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    label: str,
    x_label: str = "",
    value_format: Format = fmt_num,
    threshold: float | None = None,
    threshold_label: str = "",
    width: int = 520,
    bar_height: int = 14,
    x_domain: tuple[float, float] = (-math.inf, math.inf),
) -> str:
    """Horizontal bars, one group per category and one bar per series, on one shared axis.

    ``threshold``: a dashed vertical line (e.g. the MAE upper bound) the axis always reaches;
    ``x_domain``: the values' possible range (accuracy: at most 1), which the axis never leaves.
    """
    if not categories or not series:
        return paragraph("(no values)", muted=True)
    label_w = min(170, int(8 + CHAR_W * max(len(shorten(str(c), 26)) for c in categories)))
    values = _finite([v for _, _, vs in series for v in vs]) + ([threshold] if threshold is not None else [])
    hi = max(values, default=0.0) or 1.0
    group_h = bar_height * len(series) + 8
    height = (
        22 + 20 + (16 if x_label else 0) + group_h * len(categories) + (14 if threshold is not None else 0)
    )
    longest = max((len(value_format(v)) for v in values), default=4)
    frame = Frame(
        width, height, (0.0, hi * 1.02), (0.0, 1.0), x_label=x_label, extend_y=False, x_domain=x_domain
    )
    frame.left = label_w
    frame.right = int(longest * CHAR_W + 10)
    frame.top = 16 if threshold is not None else 4
    frame.y_ticks = []
    frame.plot_w = width - frame.left - frame.right
    frame.plot_h = group_h * len(categories)
    frame.x_ticks = [t for t in nice_ticks(0.0, hi, max(3, frame.plot_w // 80)) if t <= frame.x_hi]
    body = []
    for g, cat in enumerate(categories):
        y0 = frame.top + g * group_h + 4
        body.append(
            f'<text x="{label_w - 6}" y="{y0 + group_h / 2 + 0:.1f}" text-anchor="end">'
            f"<title>{esc(cat)}</title>{esc(shorten(str(cat), 26))}</text>"
        )
        for s, (name, color, vals) in enumerate(series):
            v = vals[g]
            if v is None or not math.isfinite(v):
                continue
            y = y0 + s * bar_height
            w = max(0.0, frame.x(v) - frame.left)
            body.append(
                f'<rect x="{frame.left}" y="{y}" width="{w:.1f}" height="{bar_height - 2}" '
                f'fill="{esc(color)}">'
                f"<title>{esc(cat)} · {esc(name)}: {esc(value_format(v))}</title></rect>"
                f'<text x="{frame.left + w + 4:.1f}" y="{y + bar_height - 4}">{esc(value_format(v))}</text>'
            )
    if threshold is not None:
        x = frame.x(threshold)
        body.append(
            f'<line x1="{x:.1f}" y1="{frame.top - 4}" x2="{x:.1f}" y2="{frame.top + frame.plot_h}" '
            f'stroke="{THRESHOLD_COLOR}" stroke-width="2" stroke-dasharray="5 3"/>'
            f'<text x="{x:.1f}" y="11" text-anchor="{"end" if x > width * 0.6 else "start"}" '
            f'fill="{THRESHOLD_COLOR}">{esc(threshold_label or fmt_num(threshold))}</text>'
        )
    return frame.svg(label, *body)


def histogram_legend(series: Sequence[tuple[str, str, Any]]) -> str:
    """The legend of :func:`overlaid_histogram`: a swatch for the first series, strokes for the others."""
    from components.lib.html import legend

    return legend([(series[0][0], series[0][1])], lines=[(n, c) for n, c, _ in series[1:]]) if series else ""
