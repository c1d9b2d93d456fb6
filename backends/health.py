"""Pilots that die at start: counting them per queue, and the error line an operator needs.

A worker whose pilot ended without ever saying Hello to the dispatcher (the dispatcher knows no
node for it) failed at start: a missing Python package on the node, a wrong path, a broken
bundle. Resubmitting at full speed would only make thousands of such pilots an hour, so each
failure in a row extends the queue's backoff (:func:`ailuro.backoff.backoff_delay`), and after
``flag_after`` of them the queue is flagged, visible in ``ailuro factory status``, the
dispatcher's queue statistics and the monitor. One pilot that connects clears both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ailuro.backoff import backoff_delay

_WRAPPER_PREFIX = "ailuro-wrapper: pilot "
"""The wrapper's own start and exit lines, which say nothing about why a pilot failed."""
_LOG_TAIL_BYTES = 64 * 1024
MAX_ERROR_LINE = 500


@dataclass(kw_only=True)
class StartFailures:
    """One queue's streak of pilots that failed at start."""

    count: int = 0
    last_error: str = ""
    last_time: float = 0.0

    def failed(self, error: str, *, now: float) -> int:
        """Count one more; returns the streak."""
        self.count += 1
        self.last_error, self.last_time = error, now
        return self.count

    def connected(self) -> None:
        """A pilot of the queue reached the dispatcher: the queue works."""
        self.count = 0

    def flagged(self, flag_after: int) -> bool:
        """Whether the streak reached ``flag_after`` (0: never flag)."""
        return flag_after > 0 and self.count >= flag_after


def error_line(log_path: str, fallback: str) -> str:
    """The line of a failed pilot's log that says why (bounded), else ``fallback``.

    That is the last non-empty line other than the wrapper's own start/exit lines: the error
    message of a command that failed, or the exception line of a Python traceback
    (``ModuleNotFoundError: No module named 'grpc'``). Only the file's tail is read.
    """
    text = _tail(log_path)
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and not line.startswith(_WRAPPER_PREFIX):
            return line[:MAX_ERROR_LINE]
    return fallback[:MAX_ERROR_LINE]


def _tail(log_path: str) -> str:
    if not log_path:
        return ""
    try:
        with Path(log_path).open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


@dataclass(kw_only=True)
class Backoff:
    """Exponential, capped backoff per queue after failed submissions.

    The first failure blocks the queue for ``base_s``, each further one doubles it up to ``max_s``;
    one success clears it. ``clock`` is injectable so the schedule is testable without sleeping.
    """

    base_s: float = 10.0
    factor: float = 2.0
    max_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _until: dict[str, float] = field(default_factory=dict)

    def failed(self, queue: str) -> float:
        """Record a failure; returns the delay now in force for ``queue``."""
        count = self._failures.get(queue, 0) + 1
        self._failures[queue] = count
        delay = backoff_delay(count, base_s=self.base_s, max_s=self.max_s, factor=self.factor)
        self._until[queue] = self.clock() + delay
        return delay

    def succeeded(self, queue: str) -> None:
        """Clear the queue's backoff."""
        self._failures.pop(queue, None)
        self._until.pop(queue, None)

    def blocked_for(self, queue: str) -> float:
        """Seconds until ``queue`` may be submitted to again (0: now)."""
        return max(0.0, self._until.get(queue, 0.0) - self.clock())

    def failures(self, queue: str) -> int:
        """Consecutive failures recorded for ``queue``."""
        return self._failures.get(queue, 0)
