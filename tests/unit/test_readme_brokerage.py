"""The README's brokerage recipes work as written: the COMPASS 70/30 share block gives the targets
it promises, and every ``ailuro queue|shares|job why`` command line it shows exists with those
options. (The commands run against a dispatcher in tests/integration/test_cli_brokerage.py.)"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ailuro.queues import parse_shares
from ailuro_cli.main import app
from dispatcher.shares import report, tree_from_config

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("## Brokerage and fair share")
    return text[start : text.index("\n## ", start + 1)]


def test_compass_production_70_analysis_30_split_evenly() -> None:
    (block,) = re.findall(r"```toml\n(.*?)```", _section(), re.S)
    tree = tree_from_config(parse_shares(tomllib.loads(block)))
    prod = tree.leaf(vo="compass", label="managed", user="prodsys")
    alice = tree.leaf(vo="compass", label="user", user="alice")
    bob = tree.leaf(vo="compass", label="user", user="bob")
    targets = {line.path: line.target for line in report(tree, {}, [prod, alice, bob])}
    assert targets["compass/production"] == pytest.approx(0.70)
    assert targets["compass/analysis/alice"] == pytest.approx(0.15)
    assert targets["compass/analysis/bob"] == pytest.approx(0.15)
    assert tree.half_life_s == 86400


def _commands() -> list[list[str]]:
    """``ailuro`` command lines of the section: in ```sh blocks and in inline code spans."""
    section = _section()
    lines = [ln for block in re.findall(r"```sh\n(.*?)```", section, re.S) for ln in block.splitlines()]
    lines += re.findall(r"`(ailuro [^`]+)`", section)
    out = []
    for line in lines:
        line = line.split("#")[0].strip()
        if line.startswith("ailuro ") and ("queue " in line or "shares" in line or "job why" in line):
            out.append(shlex.split(line))
    return out


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a[:3]))
def test_readme_command_lines_parse(argv: list[str]) -> None:
    # --help after the arguments: typer checks the command path and options, then stops
    words = [w for w in argv[1:] if not w.startswith(("ID", "..."))]
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, (argv, result.stdout, result.stderr)
    assert "Usage:" in result.stdout
