"""Numbers for people: durations, sizes, ages and UTC times, each with its exact value on hover.

The pure functions (``human_*``) return plain text; the ``*_html`` forms wrap it in a ``<span>``
whose ``title`` carries the exact value, for Jinja filters. Only numbers go into that markup, so
it is safe without escaping (the templates keep autoescape on for everything else).
"""

from __future__ import annotations

import time

from markupsafe import Markup

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def utc(value: float | None) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` UTC (empty for None)."""
    if value is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))


def human_duration(seconds: float | None) -> str:
    """``6939.7 -> "1h 55m"``: the two largest units; under a minute, whole seconds."""
    if seconds is None:
        return ""
    s = round(max(0.0, float(seconds)))
    if s < 60:
        return f"{s}s"
    parts = []
    for unit, size in _UNITS:
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
        if len(parts) == 2 or (parts and unit == "s"):
            break
    return " ".join(p for p in parts if not p.startswith("0"))


def human_bytes(value: float | None) -> str:
    """Bytes in binary units: ``735197 * 1024 -> "718.0 MiB"``."""
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def human_age(value: float | None, now: float | None = None) -> str:
    """How long ago an epoch time was: ``"3h 5m ago"`` (``"in 2m"`` for the future)."""
    if value is None:
        return ""
    delta = (time.time() if now is None else now) - float(value)
    return f"{human_duration(delta)} ago" if delta >= 0 else f"in {human_duration(-delta)}"


def _span(text: str, title: str, cls: str = "") -> Markup:
    klass = f' class="{cls}"' if cls else ""
    return Markup(f'<span{klass} title="{Markup.escape(title)}">{Markup.escape(text)}</span>')


def duration_html(seconds: float | None) -> Markup:
    """A duration for a table cell, the exact seconds on hover."""
    if seconds is None:
        return Markup("")
    return _span(human_duration(seconds), f"{float(seconds):.1f} s")


def bytes_html(value: float | None) -> Markup:
    """A size for a table cell, the exact bytes on hover."""
    if value is None:
        return Markup("")
    return _span(human_bytes(value), f"{int(value):,} bytes")


def time_html(value: float | None) -> Markup:
    """A UTC time with its age on hover (``<time>`` so scripts and tests can read the epoch)."""
    if value is None:
        return Markup("")
    return Markup(
        f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))}" '
        f'title="{Markup.escape(human_age(value))} · epoch {float(value):.3f}">{utc(value)}</time>'
    )


def age_html(value: float | None) -> Markup:
    """An age (``5m ago``) with the exact UTC time on hover."""
    if value is None:
        return Markup("")
    return _span(human_age(value), f"{utc(value)} UTC")


def short_time_html(value: float | None) -> Markup:
    """A UTC time as ``MM-DD HH:MM`` for dense tables; the full time and age on hover."""
    if value is None:
        return Markup("")
    full = utc(value)
    return Markup(
        f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))}" '
        f'title="{full} UTC · {Markup.escape(human_age(value))}">{full[5:16]}</time>'
    )
