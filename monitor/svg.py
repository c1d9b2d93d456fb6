"""Small server-side SVG charts (stacked bars and lines), so plots need no JavaScript library.

Output is a self-contained ``<svg>`` string with escaped text; colours come from the page's CSS
classes where they mean a job state (``st-failed``), so charts and tables agree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 150, 12, 28
PALETTE = ("#2b6cb0", "#d69e2e", "#38a169", "#c53030", "#805ad5", "#dd6b20", "#319795", "#718096", "#b83280", "#2c7a7b")


def _fmt(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:g}" if v == int(v) else f"{v:.2f}"


def _hour_label(hour: int) -> str:
    return time.strftime("%d %H:00", time.gmtime(hour * 3600))


def _frame(title: str, ymax: float, hours: Sequence[int], *, percent: bool = False) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        label = f"{100 * ymax * i / 4:.0f}%" if percent else _fmt(ymax * i / 4)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    n = max(1, len(hours))
    step = max(1, n // 6)
    plot_w = WIDTH - LEFT - RIGHT
    for i in range(0, n, step):
        x = LEFT + plot_w * (i + 0.5) / n
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{_hour_label(hours[i])}</text>'
        )
    return parts


def _empty_note(plot_w: float, plot_h: float) -> str:
    x, y = LEFT + plot_w / 2, TOP + plot_h / 2
    return f'<text class="empty" x="{x}" y="{y}" text-anchor="middle">no data in this window</text>'


def _legend(names: Sequence[str], colors: Mapping[str, str]) -> list[str]:
    parts = []
    for i, name in enumerate(names[:14]):
        y = TOP + 6 + i * 15
        parts.append(f'<rect x="{WIDTH - RIGHT + 10}" y="{y}" width="10" height="10" fill="{colors[name]}"/>')
        parts.append(f'<text class="legend" x="{WIDTH - RIGHT + 24}" y="{y + 9}">{escape(name)}</text>')
    return parts


def colors_for(names: Sequence[str], fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per series: ``fixed`` first (job states), then the palette in order."""
    fixed = fixed or {}
    out, k = {}, 0
    for name in names:
        if name in fixed:
            out[name] = fixed[name]
        else:
            out[name] = PALETTE[k % len(PALETTE)]
            k += 1
    return out


def stacked_bars(
    title: str, hours: Sequence[int], series: Mapping[str, Sequence[int]], fixed_colors: Mapping[str, str] | None = None
) -> str:
    """Bars per hour, one stacked segment per series; empty data gives an empty frame saying so."""
    names = list(series)
    colors = colors_for(names, fixed_colors)
    totals = [sum(series[s][i] for s in names) for i in range(len(hours))]
    ymax = max(totals, default=0) or 1
    parts = _frame(title, ymax, hours)
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
                f'fill="{colors[s]}"><title>{escape(s)} {_hour_label(h)}: {v}</title></rect>'
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
) -> str:
    """One polyline per series (None values leave gaps); ``percent`` scales the axis 0..100%."""
    names = list(series)
    colors = colors_for(names, fixed_colors)
    values = [v for s in names for v in series[s] if v is not None]
    ymax = 1.0 if percent else (max(values, default=0) or 1)
    parts = _frame(title, ymax, hours, percent=percent)
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
            tip = f"{escape(s)} {_hour_label(hours[i])}: {label}"
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
