"""Decisions of a tape recall through the storage's bring-online request (pure: no I/O).

The DDM agent asks the tape system to stage a file (XRootD ``prepare -s``), then polls it
(``query prepare``) at growing intervals until the file is online, lost, failed or the wait is
too long. What to do after each poll is decided here so it can be tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddm.protocols.base import StageStatus

POLL_GROWTH = 0.5
"""The next poll waits this fraction of the time waited so far (at least the first interval)."""
MAX_POLL_FACTOR = 10.0
"""Polls are at most this many first intervals apart."""

POLL, ONLINE, LOST, FAILED = "poll", "online", "lost", "failed"
"""What to do after a poll: poll again later, read the file, declare it lost, count a failed attempt."""


@dataclass(frozen=True, kw_only=True)
class StageDecision:
    """The agent's next step for one stage request."""

    action: str
    """One of ``poll``, ``online``, ``lost``, ``failed``."""
    delay_s: float = 0.0
    """``poll``: seconds until the next poll."""
    message: str = ""
    """``lost``/``failed``: why; ``poll``: what the tape system said."""


def next_poll_delay(waited_s: float, *, first_s: float) -> float:
    """Seconds until the next poll after ``waited_s`` seconds of recall: starts at ``first_s`` and
    grows with the wait (a recall that took an hour will not finish in the next second), capped."""
    return min(max(first_s, waited_s * POLL_GROWTH), first_s * MAX_POLL_FACTOR)


def judge_stage(status: StageStatus, *, waited_s: float, timeout_s: float, first_poll_s: float) -> StageDecision:
    """What to do after the tape system answered ``status`` for a recall started ``waited_s`` ago."""
    if status.online:
        return StageDecision(action=ONLINE)
    if not status.exists:
        why = status.error or "the tape system says it does not exist"
        return StageDecision(action=LOST, message=why)
    if status.error:
        return StageDecision(action=FAILED, message=f"recall failed: {status.error}")
    if waited_s >= timeout_s:
        return StageDecision(
            action=FAILED, message=f"not online after {waited_s:.0f} s (staging_timeout_s {timeout_s:g})"
        )
    where = "on tape" if status.on_tape else "not yet on tape"
    return StageDecision(
        action=POLL,
        delay_s=next_poll_delay(waited_s, first_s=first_poll_s),
        message=f"offline ({where}), recall requested {waited_s:.0f} s ago",
    )
