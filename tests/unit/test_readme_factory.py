"""The README's pilot-factory commands exist as written (issue #19, item 11).

Every ``ailuro factory ...`` command line in the README names a real subcommand and only options
that command has (``ailuro factory run`` did not exist), and every TOML example of the factory
section parses as a queue file. The commands themselves run in the factory integration tests.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from ailuro.queues import parse_queues
from ailuro_cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"
SUBCOMMANDS = {"status", "workers"}


def _factory_section() -> str:
    text = README.read_text()
    start = text.index("## Pilot factory")
    return text[start : text.index("\n## ", start + 1)]


def _commands() -> list[str]:
    commands: list[str] = []
    continued = False  # the usage block wraps a command over indented "[--option ...]" lines
    for line in README.read_text().splitlines():
        if "ailuro factory" in line:
            commands.append(line[line.index("ailuro factory") :].split("`")[0])
            continued = True
        elif continued and line.strip().startswith("[--"):
            commands[-1] += " " + line.strip()
        else:
            continued = False
    return commands


def test_every_factory_command_in_the_readme_exists() -> None:
    commands = _commands()
    assert len(commands) >= 6, commands
    runner = CliRunner()
    for command in commands:
        words = command.split()
        sub = words[2] if len(words) > 2 and not words[2].startswith(("-", "...")) else ""
        assert not sub or sub in SUBCOMMANDS, f"README names a factory subcommand that does not exist: {command}"
        result = runner.invoke(app, ["factory", *([sub] if sub else []), "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        for option in set(re.findall(r"--[a-z][a-z0-9-]*", command)):
            assert option in result.output, f"{option} (README: {command}) is not an option of it"


def test_factory_section_toml_examples_parse() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _factory_section(), flags=re.S)
    assert blocks
    for block in blocks:
        queues = parse_queues(tomllib.loads(block))
        assert queues
