"""Making stored text safe to print: the one helper the CLI and the monitor use for every value.

Job names, parameters, error diagnostics, log files and the like come from submitters, pilots
and payloads. Printed raw, an ESC sequence in one of them can retitle or clear a terminal, move
the cursor to forge output, or (OSC 52) write to the clipboard; a bidirectional override
reorders what follows. :func:`printable` shows such characters as visible escapes instead.
Rich markup is the other half: the CLI passes values to rich as ``Text`` (:func:`ailuro_cli._common.cell`),
never as markup, so ``[bold red]x[/]`` in a job name prints as written.
"""

from __future__ import annotations

from ailuro.names import CONTROL

_KEPT = frozenset("\n\t")
"""Harmless where text is printed: a new line and a tab move the cursor forward only."""


def _visible(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = True) -> str:
    """``text`` (``str()`` of it) with every control character shown as ``\\xNN`` or ``\\uNNNN``.

    Escaped: C0 controls (ESC, BEL, CR, backspace, ...), DEL, C1 controls (including the 8-bit
    CSI ``\\x9b``), the Unicode line/paragraph separators and the bidirectional overrides. New
    lines and tabs are kept unless ``keep_newlines`` is false (one-line contexts such as a
    Prometheus label or a log line). Everything else, including any non-ASCII letter, is unchanged.
    """
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():  # the common case, and a fast one: no control character at all
        return s
    kept = _KEPT if keep_newlines else frozenset()
    return CONTROL.sub(lambda m: m.group() if m.group() in kept else _visible(m.group()), s)
