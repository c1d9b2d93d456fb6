"""The saturation point of ``loadtests.bench --saturation`` is measured with submission alongside."""

from __future__ import annotations

from loadtests.bench import AHEAD_MARGIN, LifecycleConfig, closed_loop_ahead


def test_closed_loop_keeps_every_slot_and_a_margin_ahead() -> None:
    cfg = closed_loop_ahead(LifecycleConfig(jobs=20_000, pilots=200, slots=40, rate=220.0))
    assert cfg.rate == 0.0
    assert cfg.submit_ahead == 200 * 40 + AHEAD_MARGIN
    # submission lasts past the steady window's end (the 80th percentile of completions)
    assert cfg.jobs - cfg.submit_ahead >= 0.8 * cfg.jobs


def test_an_explicit_backlog_and_a_larger_run_are_kept() -> None:
    cfg = closed_loop_ahead(LifecycleConfig(jobs=100_000, pilots=8, slots=10, submit_ahead=40))
    assert (cfg.submit_ahead, cfg.jobs) == (40, 100_000)
