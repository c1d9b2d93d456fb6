"""The pilot's own command line (``python -m pilot``), and ``ailuro pilot`` handing everything to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ailuro.vocabulary import DEFAULT_STORAGE_ROOT, PilotExit
from ailuro_cli.main import app
from pilot.__main__ import build_parser, config_from_args


def test_options_and_environment_build_the_config(tmp_path: Path) -> None:
    env = {"AILURO_SERVER": "h:1", "AILURO_QUEUE": "Q", "AILURO_PILOT_ID": "p-env", "AILURO_BATCH_ID": "42"}
    args = build_parser(environ=env).parse_args(["--workdir", str(tmp_path), "--jobs-in-parallel", "2", "--unary"])
    config = config_from_args(args, environ=env)
    assert (config.server, config.queue, config.pilot_id, config.batch_id) == ("h:1", "Q", "p-env", "42")
    assert (config.workdir, config.spool_dir, config.jobs_in_parallel, config.unary) == (
        tmp_path,
        tmp_path / "spool",
        2,
        True,
    )
    assert config.storage_root == DEFAULT_STORAGE_ROOT.expanduser().absolute()
    flags = build_parser(environ=env).parse_args(["--server", "x:2", "--stream", "--keep-workdirs"])
    assert (flags.server, flags.unary, flags.keep_workdirs) == ("x:2", False, True)
    assert build_parser(environ={}).parse_args([]).unary is None  # AILURO_PILOT_UNARY decides


@pytest.mark.parametrize(
    ("argv", "words"),
    [([], "--server"), (["--server", "h:1"], "--queue"), (["--server", "nocolon", "--queue", "Q"], "server")],
)
def test_missing_or_bad_options_name_the_option(argv: list[str], words: str) -> None:
    args = build_parser(environ={}).parse_args(argv)
    with pytest.raises(ValueError, match=words):
        config_from_args(args, environ={})


def test_ailuro_pilot_is_python_m_pilot() -> None:
    result = CliRunner().invoke(app, ["pilot", "--help"])
    assert result.exit_code == 0
    assert "usage: ailuro pilot" in result.output and "--jobs-in-parallel" in result.output
    assert f"{PilotExit.NO_JOBS} no jobs" in result.output
    bad = CliRunner().invoke(app, ["pilot", "--queue", "Q"], env={"AILURO_SERVER": ""})
    assert bad.exit_code == 2 and "--server" in bad.output
    direct = subprocess.run(
        [sys.executable, "-m", "pilot", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert direct.stdout.replace("python -m pilot", "ailuro pilot").split() == result.output.split()


def test_resources_the_pilot_advertises(tmp_path: Path) -> None:
    env = {"AILURO_SERVER": "h:1", "AILURO_QUEUE": "Q", "AILURO_PILOT_TAGS": "gpu avx2", "SLURM_CPUS_ON_NODE": "8"}
    base = ["--workdir", str(tmp_path)]
    config = config_from_args(build_parser(environ=env).parse_args(base), environ=env)
    assert (config.cores, config.tags) == (8, ("gpu", "avx2"))  # the batch system's cores, tags from env
    assert config.disk_mb > 0  # free space of the work dir
    flags = [*base, "--tag", "cvmfs:21.0", "--disk-mb", "500", "--cores", "2", "--memory-mb", "4000"]
    config = config_from_args(build_parser(environ=env).parse_args(flags), environ=env)
    assert (config.cores, config.memory_mb, config.disk_mb, config.tags) == (2, 4000, 500, ("cvmfs:21.0",))
