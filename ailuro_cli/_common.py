"""What every user command shares: the connection settings, error reporting, JSON and time output.

Expected failures (a server error, a bad job file) are printed as one red line on stderr,
``error: INVALID_ARGUMENT jobs[0].transformation: must not be empty``, and end the command with
exit code 2 for bad input or 1 for anything else; tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import typer
from google.protobuf import timestamp_pb2
from rich.console import Console
from rich.text import Text

from ailuro.client import Client, describe_error
from ailuro.display import printable
from ailuro.errors import AiluroError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
"""Exit codes: bad input (an invalid argument, a bad job file) is 2, like a usage error."""

_BAD_INPUT = frozenset({grpc.StatusCode.INVALID_ARGUMENT})

_PIPE_WIDTH = 200
"""Line width when stdout is not a terminal (and COLUMNS is unset): wide, so that tables piped
to ``grep``/``less`` keep one job per line instead of wrapping at rich's default of 80."""


def _width(stream: Any) -> int | None:
    isatty = getattr(stream, "isatty", None)
    return None if (isatty and isatty()) or "COLUMNS" in os.environ else _PIPE_WIDTH


console = Console(highlight=False, width=_width(sys.stdout))
"""Rich console on stdout (rich looks up ``sys.stdout`` at print time, so CliRunner captures it)."""
err_console = Console(stderr=True, highlight=False, width=_width(sys.stderr))
"""Rich console on stderr, for error lines and progress notes."""

STATUS_STYLES: dict[str, str] = {
    "defined": "white",
    "assigned": "yellow",
    "activated": "yellow",
    "sent": "cyan",
    "starting": "cyan",
    "running": "bold cyan",
    "holding": "blue",
    "transferring": "blue",
    "finished": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "closed": "dim",
}
"""Colours of state names in tables (PanDA monitor-like: green done, red failed)."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Global options of the ``ailuro`` command, stored on the typer context."""

    server: str | None = None
    user: str | None = None
    token: str | None = None
    """``--token``/``$AILURO_TOKEN`` (else the Client reads ``$AILURO_TOKEN_FILE``)."""
    token_file: str | None = None
    tls_ca: str | None = None
    """``--tls-ca``/``$AILURO_TLS_CA``: the dispatcher speaks TLS with a certificate signed by it."""


def settings(ctx: typer.Context) -> Settings:
    """The global options, wherever in the command tree ``ctx`` is."""
    root = ctx.find_root()
    obj = root.obj
    return obj if isinstance(obj, Settings) else Settings()


DEFAULT_TOKEN_FILE = "~/.ailuro/token"
"""The CLI's own token file when no ``--token``/``--token-file``/``$AILURO_TOKEN``/``$AILURO_TOKEN_FILE``
is given (like panda-client's token cache). Deliberately not the dispatcher's ``admin.token``: acting
as admin (every VO, every job) must be asked for, with ``AILURO_TOKEN_FILE=~/.ailuro/auth/admin.token``."""


def default_token_file(s: Settings) -> str | None:
    """``~/.ailuro/token`` when it exists and nothing else names a token, else None."""
    if s.token or s.token_file or os.environ.get("AILURO_TOKEN") or os.environ.get("AILURO_TOKEN_FILE"):
        return s.token_file
    path = os.path.expanduser(DEFAULT_TOKEN_FILE)
    return path if os.path.isfile(path) else None


def token_metadata(ctx: typer.Context) -> tuple[tuple[str, str], ...]:
    """``authorization`` metadata for commands that call a service stub directly (not through
    :class:`Client`): the same token the Client would send, found the same way."""
    from ailuro.credentials import bearer_metadata, resolve_token

    s = settings(ctx)
    return bearer_metadata(resolve_token(s.token, default_token_file(s)))


def make_client(ctx: typer.Context) -> Client:
    """A client for the server and identity given by ``--server``/``--user`` (or the environment)."""
    s = settings(ctx)
    return Client(s.server, identity=s.user, token=s.token, token_file=default_token_file(s), tls_ca=s.tls_ca)


def fail(message: str, *, code: int = EXIT_ERROR) -> typer.Exit:
    """Print ``error: <message>`` in red on stderr and return the exit to raise (server messages
    quote what was sent, so control characters are made visible here too)."""
    err_console.print(cell(f"error: {message}", style="red"), soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn expected failures into one red line and the right exit code."""
    try:
        yield
    except AiluroError as exc:
        raise fail(describe_error(exc), code=EXIT_USAGE if exc.status_code in _BAD_INPUT else EXIT_ERROR) from None
    except OSError as exc:  # a job file or file list that cannot be read
        raise fail(f"{exc.strerror or exc}: {exc.filename}", code=EXIT_USAGE) from None


def print_json(value: Any) -> None:
    """Write ``value`` as JSON on stdout, unwrapped and uncoloured, for scripts and ``jq``."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def format_time(ts: timestamp_pb2.Timestamp, *, seconds: bool = True) -> str:
    """A UTC timestamp as ``2026-05-01 12:00:03`` (``-`` when unset)."""
    if not ts.seconds and not ts.nanos:
        return "-"
    when = ts.ToDatetime(tzinfo=UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def cell(value: object, style: str = "") -> Text:
    """A stored value as rich ``Text``: control characters made visible (:func:`ailuro.display.printable`)
    and never read as markup, so a job named ``[bold red]x[/]`` or ``\x1b]0;owned\x07`` prints as
    written. Every value that came from a server, a database or a file goes through this."""
    return Text(printable(value), style=style)


def styled_status(name: str) -> str:
    """A state name with its rich colour markup."""
    style = STATUS_STYLES.get(name)
    return f"[{style}]{name}[/]" if style else name


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)
