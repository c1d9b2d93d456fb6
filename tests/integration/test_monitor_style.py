"""Monitor presentation rules that need no database: badge contrast (WCAG AA) and number formats."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dispatcher.matching import QueueStatus
from dispatcher.states import JobState
from monitor import fmt
from monitor.app import STATE_COLORS

CSS = (Path(__file__).parents[2] / "monitor" / "static" / "monitor.css").read_text()


def _luminance(color: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("state", [s.value for s in JobState])
def test_state_badges_pass_wcag_aa(state: str) -> None:
    text = re.search(r"\.st \{[^}]*?[^-]color: (#[0-9a-f]{6})", CSS)
    assert text is not None
    background = re.search(rf"\.st-{state} \{{ background: (#[0-9a-f]{{6}}); \}}", CSS)
    assert background is not None, f"no badge colour for {state}"
    assert contrast(text.group(1), background.group(1)) >= 4.5
    assert STATE_COLORS[state] == background.group(1)  # plots use the very same colours


def test_state_colours_are_distinct() -> None:
    values = list(STATE_COLORS.values())
    assert len(set(values)) == len(values)


def test_human_formats_and_exact_titles() -> None:
    assert fmt.human_duration(6939.7) == "1h 55m"
    assert fmt.human_duration(86400) == "1d"
    assert fmt.human_duration(42) == "42s"
    assert fmt.human_bytes(735197 * 1024) == "718.0 MiB"
    assert 'title="6939.7 s"' in fmt.duration_html(6939.7)
    assert 'title="1,024 bytes"' in fmt.bytes_html(1024)
    assert fmt.human_age(100.0, now=400.0) == "5m ago"
    assert "1970-01-01 00:01:40" in fmt.time_html(100.0)


def test_plot_axes_use_nice_ticks_and_colours_never_repeat() -> None:
    from monitor import svg

    assert svg.nice_ticks(941.25) == [0, 250, 500, 750, 1000]
    assert svg.nice_ticks(13) == [0, 5, 10, 15]
    colours = [svg.palette_color(k) for k in range(40)]
    assert len(set(colours)) == 40
    # every series colour is dark enough to read on the white chart (lines, not text: 3:1)
    assert all(contrast(c, "#ffffff") >= 3.0 for c in colours)
    chart = svg.lines("t", list(range(30)), {f"site{i}": [i] * 30 for i in range(20)}, bin_hours=24)
    assert "+6 more" in chart and ">0</text>" in chart


def test_long_windows_are_binned_by_day() -> None:
    from monitor.queries.plots import binned

    hours = list(range(24 * 10 + 5, 24 * 13 + 2))  # starts mid-day, ends just after a midnight
    data = {
        "hours": hours,
        "transitions_per_hour": {"failed": [1] * len(hours)},
        "completions_per_hour": {"A": [2] * len(hours)},
        "failures_per_hour": [1] * len(hours),
        "finished_per_hour": [3] * len(hours),
        "failure_rate_per_hour": [0.25] * len(hours),
    }
    b = binned(data, 24)
    assert b["starts"] == [240, 264, 288, 312]
    assert b["transitions"]["failed"] == [19, 24, 24, 2]
    assert sum(b["completions"]["A"]) == 2 * len(hours)
    assert b["failure_rate"] == [0.25] * 4


@pytest.mark.parametrize("status", [s.value for s in QueueStatus])
def test_queue_status_badges_pass_wcag_aa(status: str) -> None:
    text = re.search(r"\.qs \{[^}]*?[^-]color: (#[0-9a-f]{6})", CSS)
    assert text is not None
    background = re.search(rf"\.qs-{status} \{{ background: (#[0-9a-f]{{6}}); \}}", CSS)
    assert background is not None, f"no badge colour for queue status {status}"
    assert contrast(text.group(1), background.group(1)) >= 4.5
