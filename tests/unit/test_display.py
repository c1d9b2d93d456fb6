"""``ailuro.display.printable``: the one helper the CLI and the monitor print stored text through."""

from __future__ import annotations

from ailuro.display import printable


def test_printable_makes_every_control_character_visible() -> None:
    assert printable("plain text, ünïcode ok") == "plain text, ünïcode ok"
    assert printable("\x1b]0;owned\x07\x1b[2J") == "\\x1b]0;owned\\x07\\x1b[2J"
    assert printable("a\rb\x08c\x7fd\x9be") == "a\\x0db\\x08c\\x7fd\\x9be"
    assert printable("bidi\u202eevil\u2028") == "bidi\\u202eevil\\u2028"
    assert printable("line\n\tindented") == "line\n\tindented"
    assert printable("line\n", keep_newlines=False) == "line\\x0a"
    assert printable(42) == "42"
    assert all(printable(chr(c)) != chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\n\t")
