"""The declared character sets of names, defined once for the SDK (client side) and the dispatcher.

Names end up as file names in pilot work directories, path components on storage elements,
batch-system log paths and terminal output, so each kind of name has one rule:

================================  ===========================================================
kind                              rule
================================  ===========================================================
LFN (file name)                   letters, digits and ``._+=-``; starts with a letter, digit or
                                  ``_`` (``mDST-12345-2-7.root.003``, ``log.123._000001.job.log.tgz``)
scope, storage element, queue     letters, digits and ``._-``; starts with a letter, digit or ``_``
                                  (``user.jdoe``, ``CERN_EOS``, ``ANALY_CERN_COMPASS_PROD``)
dataset (``destination_dblock``,  ``[scope:]name``: a scope as above, then a name with the LFN
file ``dataset``)                 characters (``compass:raw.2026``, ``panda.destDB.0af4...``)
job_name                          printable text (PanDA allows "any string"): no control or
                                  bidirectional-override characters, no backslash; ``/`` may
                                  separate parts (``user.jdoe.test.v1/.4179``) but no part is
                                  empty, ``.`` or ``..``
================================  ===========================================================

Lengths are checked by the dispatcher's validation (at most 255 characters each). A name that
breaks its rule is an ``InvalidArgument`` naming the field, raised by the same function on the
client and on the server, so both always agree.
"""

from __future__ import annotations

import re
import unicodedata

from ailuro.errors import InvalidArgument
from ailuro.v1 import job_pb2

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=-]*\Z")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
_NOT_FILE_CHAR = re.compile(r"[^A-Za-z0-9._+=-]")

FILE_NAME_RULE = "letters, digits and ._+=- only, starting with a letter, digit or _"
IDENTIFIER_RULE = "letters, digits and ._- only, starting with a letter, digit or _"

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Control characters for display purposes: C0, DEL, C1, the Unicode line and paragraph separators
and the bidirectional marks and overrides (terminals act on them, or they reorder a line: "Trojan
source"). One pattern, so checking a name is one regex search."""
_JOB_NAME_BAD = re.compile(CONTROL.pattern[:-1] + "\\\\]")


def is_control(ch: str) -> bool:
    """Whether the character ``ch`` is in :data:`CONTROL`."""
    return CONTROL.match(ch) is not None


def is_plain_file_name(name: str) -> bool:
    """Whether ``name`` is usable as one file name inside a directory: not empty, not ``.`` or
    ``..``, no ``/`` and no control character. This is the structural minimum the pilot relies on
    (it also holds for names accepted by older dispatchers); :func:`check_lfn` is the full rule."""
    return bool(name) and name not in (".", "..") and "/" not in name and CONTROL.search(name) is None


_ECHO = 80
"""At most this much of a rejected value is quoted back in the error message."""


def _fail(value: str, field: str, rule: str) -> InvalidArgument:
    shown = value if len(value) <= _ECHO else value[:_ECHO] + "..."
    return InvalidArgument(f"{shown!r} is not allowed: {rule}", field=field)


def check_lfn(value: str, field: str) -> None:
    """An LFN (non-empty), e.g. ``mDST-12345-2-7.root.003``."""
    if not _FILE_NAME.match(value):
        raise _fail(value, field, FILE_NAME_RULE)


def check_identifier(value: str, field: str) -> None:
    """A scope, storage-element or queue name; empty passes (the field is optional)."""
    if value and not _IDENTIFIER.match(value):
        raise _fail(value, field, IDENTIFIER_RULE)


def check_dataset(value: str, field: str) -> None:
    """A dataset ``[scope:]name``; empty passes."""
    if not value:
        return
    scope, sep, name = value.rpartition(":")
    if (sep and not _IDENTIFIER.match(scope)) or not _FILE_NAME.match(name):
        raise _fail(value, field, f"[scope:]name, the scope with {IDENTIFIER_RULE}, the name with {FILE_NAME_RULE}")


def check_job_name(value: str, field: str) -> None:
    """A job name (see the module docstring); empty passes."""
    if not value:
        return
    found = _JOB_NAME_BAD.search(value)
    if found is None and not value.isascii():
        found = next((m for m in re.finditer(".", value) if unicodedata.category(m.group()) == "Cn"), None)
    if found is not None:
        raise InvalidArgument(
            f"must be printable text without backslashes; found {found.group()!r} at position {found.start()}",
            field=field,
        )
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise _fail(value, field, "'/' may only separate parts that are not empty, '.' or '..'")
    if value != value.strip():
        raise InvalidArgument("must not start or end with white space", field=field)


def check_file_names(f: job_pb2.File, where: str) -> None:
    """The names of one file of a job: lfn, scope, dataset, source and destination SE."""
    # the same checks as check_lfn/check_identifier/check_dataset, inlined: this runs for every
    # file of every submitted job (thousands per SubmitJobs call)
    if not _FILE_NAME.match(f.lfn):
        raise _fail(f.lfn, f"{where}.lfn", FILE_NAME_RULE)
    for name in ("scope", "source_se", "destination_se"):
        value = getattr(f, name)
        if value and not _IDENTIFIER.match(value):
            raise _fail(value, f"{where}.{name}", IDENTIFIER_RULE)
    if f.dataset:
        check_dataset(f.dataset, f"{where}.dataset")


def check_job_names(job: job_pb2.Job, where: str) -> None:
    """Every name a submitted job carries (its own and its files')."""
    check_job_name(job.job_name, f"{where}.job_name")
    check_identifier(job.destination_se, f"{where}.destination_se")
    check_dataset(job.destination_dblock, f"{where}.destination_dblock")
    for j, f in enumerate(job.files):
        check_file_names(f, f"{where}.files[{j}]")


def safe_file_name(text: str, *, fallback: str, suffix: str = "", limit: int = 255) -> str:
    """``text`` made into an LFN that passes :func:`check_lfn`, with ``suffix`` appended.

    Characters outside the LFN set become ``_`` and leading characters an LFN may not start with
    are dropped; ``fallback`` (itself a valid LFN) is used when nothing is left. The result is at
    most ``limit`` characters long. The pilot names the log tarball after the job this way, so a
    job name with ``/``, spaces or ``..`` can neither place a file elsewhere nor make the job's own
    final report invalid.
    """
    stem = _NOT_FILE_CHAR.sub("_", text).lstrip(".+=-") or fallback
    return stem[: max(1, limit - len(suffix))] + suffix
