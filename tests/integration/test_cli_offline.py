"""``ailuro`` behaviour that needs no dispatcher: help, dry runs, local validation, a dead server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ailuro_cli.main import app

pytestmark = pytest.mark.timeout(60)


def _run(*args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200", "AILURO_SERVER": None, "AILURO_USER": None}).invoke(app, list(args))


def test_help_lists_the_user_commands() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    for command in ("server", "submit", "jobs", "job", "queue"):
        assert command in result.stdout
    job_help = _run("job", "--help").stdout
    for command in ("show", "events", "why", "kill", "retry", "watch"):
        assert command in job_help


def test_dry_run_each_line_builds_one_job_per_entry(tmp_path: Path) -> None:
    listing = tmp_path / "files.txt"
    listing.write_text("a.root\n# comment\nroot://eos.example.org//compass/b.root\n")
    result = _run(
        "submit", "-t", "phast", "-p", "-i {} -o out_{lfn}", "--name", "ph", "--each-line", str(listing), "--dry-run"
    )
    assert result.exit_code == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert [j["job_name"] for j in jobs] == ["ph_1", "ph_2"]
    assert jobs[1]["job_parameters"] == "-i b.root -o out_b.root"
    assert jobs[1]["files"][0]["pfn"] == "root://eos.example.org//compass/b.root"


def test_dry_run_example_file() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "jobs.yaml"
    result = _run("submit", "--file", str(example), "--priority", "1", "--dry-run")
    assert result.exit_code == 0, result.stderr
    jobs = json.loads(result.stdout)
    # --priority overrides the file's defaults, but not a job's own priority
    assert [j["current_priority"] for j in jobs] == [1, 1, 500]
    assert jobs[0]["environment"] == {"PHAST_OPTS": "-u 1"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("submit", "-t", "x", "--file", "a.yaml", "--each-line", "b.txt"), "cannot be combined"),
        (("submit", "-t", "x", "--count", "0"), "--count"),
        (("jobs", "--hours", "1", "--since", "2026-01-01"), "cannot be combined"),
        (("job", "show", "notanumber"), "panda_id"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], words: str) -> None:
    result = _run(*args)
    assert result.exit_code == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_exits_1_with_one_line() -> None:
    result = _run("--server", "127.0.0.1:1", "jobs")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: UNAVAILABLE")
    assert len(result.stderr.strip().splitlines()) == 1
