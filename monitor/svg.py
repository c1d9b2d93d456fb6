"""Small server-side SVG charts (stacked bars and lines), so plots need no JavaScript library.

Output is a self-contained ``<svg>`` string with escaped text; colours come from the page's CSS
classes where they mean a job state (``st-failed``), so charts and tables agree.
"""

from __future__ import annotations

import colorsys
import math
import time
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 150, 12, 28
PALETTE = ("#2b6cb0", "#b7791f", "#2f855a", "#c53030", "#6b46c1", "#c05621", "#2c7a7b", "#4a5568", "#b83280", "#285e61")
"""The first ten series colours; all at least 3:1 against the white chart (WCAG for graphics)."""


LEGEND_MAX = 14
"""Series named in a legend; more are summarized as "+N more" (each bar still names its series on hover)."""


def nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times 10^k not below ``raw`` (axis steps people read at a glance)."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= raw - 1e-12:
            return m * power
    return 10 * power


def nice_ticks(ymax: float, *, count: int = 4, integer: bool = True) -> list[float]:
    """Ticks from 0 past ``ymax`` in "nice" steps (about ``count`` intervals; whole steps for counts)."""
    step = nice_step(ymax / count if ymax > 0 else 1.0)
    if integer:
        step = max(1.0, math.ceil(step))
    top = step * max(1, math.ceil(ymax / step - 1e-9))
    return [i * step for i in range(round(top / step) + 1)]


def palette_color(k: int) -> str:
    """Series colour ``k``: the base palette, then hues spread by the golden angle (never repeating)."""
    if k < len(PALETTE):
        return PALETTE[k]
    hue = ((k - len(PALETTE)) * 137.508 + 17.0) % 360.0 / 360.0
    r, g, b = colorsys.hls_to_rgb(hue, 0.30 + 0.06 * ((k // 3) % 2), 0.65)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _fmt(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:g}" if v == int(v) else f"{v:.2f}"


def _hour_label(hour: int, bin_hours: int = 1) -> str:
    if bin_hours >= 24:
        return time.strftime("%m-%d", time.gmtime(hour * 3600))
    return time.strftime("%d %H:00", time.gmtime(hour * 3600))


def _frame(
    title: str, ticks: Sequence[float], hours: Sequence[int], *, percent: bool = False, bin_hours: int = 1
) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    ymax = ticks[-1]
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for tick in ticks:
        y = TOP + plot_h - plot_h * tick / ymax
        label = f"{100 * tick:g}%" if percent else _fmt(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    n = max(1, len(hours))
    step = max(1, n // 6)
    plot_w = WIDTH - LEFT - RIGHT
    for i in range(0, n, step):
        x = LEFT + plot_w * (i + 0.5) / n
        label = _hour_label(hours[i], bin_hours)
        parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{label}</text>')
    return parts


def _empty_note(plot_w: float, plot_h: float) -> str:
    x, y = LEFT + plot_w / 2, TOP + plot_h / 2
    return f'<text class="empty" x="{x}" y="{y}" text-anchor="middle">no data in this window</text>'


def _legend(names: Sequence[str], colors: Mapping[str, str]) -> list[str]:
    parts = []
    for i, name in enumerate(names[:LEGEND_MAX]):
        y = TOP + 6 + i * 15
        parts.append(f'<rect x="{WIDTH - RIGHT + 10}" y="{y}" width="10" height="10" fill="{colors[name]}"/>')
        parts.append(f'<text class="legend" x="{WIDTH - RIGHT + 24}" y="{y + 9}">{escape(name)}</text>')
    if len(names) > LEGEND_MAX:
        y = TOP + 6 + LEGEND_MAX * 15
        parts.append(
            f'<text class="legend" x="{WIDTH - RIGHT + 10}" y="{y + 9}">+{len(names) - LEGEND_MAX} more</text>'
        )
    return parts


def colors_for(names: Sequence[str], fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per series: ``fixed`` first (job states), then the palette in order."""
    fixed = fixed or {}
    out, k = {}, 0
    for name in names:
        if name in fixed:
            out[name] = fixed[name]
        else:
            out[name] = palette_color(k)
            k += 1
    return out


def stacked_bars(
    title: str,
    hours: Sequence[int],
    series: Mapping[str, Sequence[int]],
    fixed_colors: Mapping[str, str] | None = None,
    *,
    bin_hours: int = 1,
) -> str:
    """Bars per bin (``bin_hours`` wide), one stacked segment per series; empty data says so."""
    names = list(series)
    colors = colors_for(names, fixed_colors)
    totals = [sum(series[s][i] for s in names) for i in range(len(hours))]
    ticks = nice_ticks(max(totals, default=0) or 1)
    ymax = ticks[-1]
    parts = _frame(title, ticks, hours, bin_hours=bin_hours)
    plot_h, plot_w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - RIGHT
    bw = plot_w / max(1, len(hours))
    for i, h in enumerate(hours):
        base = 0.0
        for s in names:
            v = series[s][i]
            if not v:
                continue
            hgt = plot_h * v / ymax
            y = TOP + plot_h - base - hgt
            parts.append(
                f'<rect x="{LEFT + i * bw + 1:.1f}" y="{y:.1f}" width="{max(1.0, bw - 2):.1f}" height="{hgt:.1f}" '
                f'fill="{colors[s]}"><title>{escape(s)} {_hour_label(h, bin_hours)}: {v}</title></rect>'
            )
            base += hgt
    if not any(totals):
        parts.append(_empty_note(plot_w, plot_h))
    parts += _legend(names, colors)
    parts.append("</svg>")
    return "".join(parts)


def lines(
    title: str,
    hours: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    *,
    percent: bool = False,
    fixed_colors: Mapping[str, str] | None = None,
    bin_hours: int = 1,
) -> str:
    """One polyline per series (None values leave gaps); ``percent`` scales the axis 0..100%."""
    names = list(series)
    colors = colors_for(names, fixed_colors)
    values = [v for s in names for v in series[s] if v is not None]
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0] if percent else nice_ticks(max(values, default=0) or 1)
    ymax = ticks[-1]
    parts = _frame(title, ticks, hours, percent=percent, bin_hours=bin_hours)
    plot_h, plot_w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - RIGHT
    n = max(1, len(hours))
    for s in names:
        segment: list[str] = []
        runs: list[list[str]] = []
        for i, v in enumerate(series[s]):
            if v is None:
                if segment:
                    runs.append(segment)
                segment = []
                continue
            x = LEFT + plot_w * (i + 0.5) / n
            y = TOP + plot_h - plot_h * v / ymax
            segment.append(f"{x:.1f},{y:.1f}")
            label = f"{_fmt(v * 100)}%" if percent else _fmt(v)
            tip = f"{escape(s)} {_hour_label(hours[i], bin_hours)}: {label}"
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colors[s]}"><title>{tip}</title></circle>')
        if segment:
            runs.append(segment)
        for run in runs:
            parts.append(f'<polyline fill="none" stroke="{colors[s]}" stroke-width="2" points="{" ".join(run)}"/>')
    if not values:
        parts.append(_empty_note(plot_w, plot_h))
    parts += _legend(names, colors)
    parts.append("</svg>")
    return "".join(parts)
