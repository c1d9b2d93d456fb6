"""What a batch id of each backend looks like: pure checks run before any batch command.

Batch ids reach the factory from the dispatcher's worker records, which a caller other than the
factory could have written (issue #12, finding 6: ``scancel --user=panda``, ``bkill 0``). Every id
a backend passes to a batch command must match its backend's form here, so an option, a wildcard
or LSF's "every job" id ``0`` can never reach a command line; ids are positive, ASCII-only
numbers with the array suffix each system prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

BATCH_ID_PATTERNS: dict[str, re.Pattern[str]] = {
    # Slurm: "1234", or "1234_7" for an array element (as squeue/sacct print it)
    "slurm": re.compile(r"[1-9][0-9]{0,18}(?:_[0-9]{1,9})?", re.ASCII),
    # LSF: "1234", or "1234[7]" for an array element (indexes start at 1)
    "lsf": re.compile(r"[1-9][0-9]{0,18}(?:\[[1-9][0-9]{0,9}\])?", re.ASCII),
    # HTCondor: "ClusterId.ProcId"
    "htcondor": re.compile(r"[1-9][0-9]{0,18}\.[0-9]{1,9}", re.ASCII),
    # local: the id the local backend generates for each pilot process
    "local": re.compile(r"local-[0-9a-f]{12}", re.ASCII),
}
"""The accepted form of a batch id per backend name (whole-string match)."""


def valid_batch_id(backend: str, batch_id: str) -> bool:
    """Whether ``batch_id`` has ``backend``'s form (an unknown backend accepts nothing)."""
    pattern = BATCH_ID_PATTERNS.get(backend)
    return pattern is not None and pattern.fullmatch(batch_id) is not None


def split_batch_ids(backend: str, batch_ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(valid, refused)``: the ids of ``backend``'s form, in order, and the others."""
    valid: list[str] = []
    refused: list[str] = []
    for bid in batch_ids:
        (valid if valid_batch_id(backend, bid) else refused).append(bid)
    return valid, refused
