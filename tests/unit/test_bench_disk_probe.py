"""The benchmark's disk probe (``loadtests/_disk.py``) times real durable writes and reports stalls."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loadtests import _disk


def _probe_until(probe: _disk.DiskProbe, flushes: int) -> _disk.DiskFigures:
    deadline = time.monotonic() + 60  # a bound on a busy machine, not a timing assertion
    while len(probe._took) < flushes and time.monotonic() < deadline:
        time.sleep(0.01)
    return probe.stop()


def test_it_flushes_and_leaves_no_file(tmp_path: Path) -> None:
    figures = _probe_until(_disk.DiskProbe(str(tmp_path)).start(), 5)
    assert figures.flushes >= 5
    assert 0 < figures.p50_ms <= figures.p99_ms <= figures.max_ms
    assert list(tmp_path.iterdir()) == []  # its file went with it
    assert f"{figures.flushes:,} flushes of 8 KiB" in figures.line()


def test_every_flush_over_the_threshold_is_a_stall_with_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_disk, "STALL_S", 0.0)  # every flush counts
    figures = _probe_until(_disk.DiskProbe(str(tmp_path)).start(), 10)
    assert len(figures.stalls) == figures.flushes >= 10
    assert [t for t, _ in figures.stalls] == sorted(t for t, _ in figures.stalls)
    assert "and" in figures.line() and f"{len(figures.stalls)} of 0 ms or more" in figures.line()


def test_a_probe_that_did_not_run_prints_nothing() -> None:
    assert _disk.DiskFigures().line() == ""
