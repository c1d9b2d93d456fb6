"""The one exponential backoff formula, shared by the client, the pilot and the factory.

``delay(n) = min(max_s, base_s * factor ** (n - 1))`` for the ``n``-th failure in a row (1-based):
``base_s`` after the first failure, doubling (by default) up to ``max_s``. Callers add jitter
where many processes retry at once (the pilot does); the arithmetic itself lives only here.
"""

from __future__ import annotations


def backoff_delay(failures: int, *, base_s: float, max_s: float, factor: float = 2.0) -> float:
    """Seconds to wait after ``failures`` consecutive failures (0 failures: no wait).

    The exponent is bounded before it is raised, so a long failure streak cannot overflow.
    """
    if failures <= 0:
        return 0.0
    exponent = min(failures - 1, 64)
    return float(min(max_s, base_s * factor**exponent))
