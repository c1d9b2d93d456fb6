"""Bounded, payload-free descriptions of failures for the log.

A client controls what it sends, so an exception that quotes the request (SQLAlchemy appends
the statement and its parameters; psycopg quotes the offending value) can put megabytes of
someone else's data into the log per failure. What is logged instead: the exception's type,
the first line of the database's own message, cut to :data:`MAX_MESSAGE` characters, and the
code locations of the last few frames (file, line, function), never their values.
"""

from __future__ import annotations

import traceback

from sqlalchemy.exc import StatementError

MAX_MESSAGE = 200
"""Characters of an exception's message kept in a log line."""
MAX_FRAMES = 6
"""Innermost traceback frames named in a log line."""


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (the DBAPI error for database errors), bounded."""
    if isinstance(exc, StatementError) and exc.orig is not None:  # never the SQL nor its parameters
        orig = exc.orig
        return f"{type(orig).__name__}: {_first_line(str(orig))}"
    return f"{type(exc).__name__}: {_first_line(str(exc))}"


def where(exc: BaseException) -> str:
    """The innermost :data:`MAX_FRAMES` frames as ``file:line in function`` (no locals, no messages)."""
    frames = traceback.extract_tb(exc.__traceback__)[-MAX_FRAMES:]
    return " < ".join(f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno} in {f.name}" for f in reversed(frames))
