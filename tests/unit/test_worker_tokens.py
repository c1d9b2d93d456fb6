"""Each pilot finds its own token: the wrapper names the worker's file (or HTCondor's transferred
copy in the job's scratch directory), and the HTCondor submit description ships exactly that file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backends.base import PilotSpec
from backends.pilot_tokens import WORKER_TOKEN_FILE, remove_worker_tokens, write_worker_tokens
from backends.wrapper import render_wrapper

PROBE = "import os; print('TOKEN_FILE', os.environ.get('AILURO_TOKEN_FILE', '-'))"


def _spec(tmp_path: Path, token_dir: Path | None) -> PilotSpec:
    return PilotSpec(
        server="127.0.0.1:5000",
        queue="Q1",
        worker_id_prefix="Q1.abc",
        log_dir=tmp_path / "logs",
        pilot_command=(sys.executable, "-c", PROBE),
        token_dir=token_dir,
    )


def _run(script: Path, *args: str, **env: str) -> str:
    full = {"PATH": "/usr/bin:/bin", **env}
    proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=full, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_wrapper_names_the_workers_own_file_never_the_token(tmp_path: Path) -> None:
    token_dir = tmp_path / "tokens" / "Q1"
    write_worker_tokens(token_dir, ["Q1.abc-0", "Q1.abc-1"], ["secret-zero", "secret-one"])
    script = tmp_path / "w.sh"
    text = render_wrapper(_spec(tmp_path, token_dir))
    assert "secret-" not in text
    script.write_text(text)
    assert f"TOKEN_FILE {token_dir}/Q1.abc-1/{WORKER_TOKEN_FILE}" in _run(script, "Q1.abc-1")
    # array elements: the index picks the worker, so its file
    assert f"TOKEN_FILE {token_dir}/Q1.abc-0/{WORKER_TOKEN_FILE}" in _run(script, SLURM_ARRAY_TASK_ID="0")


def test_under_htcondor_the_wrapper_reads_the_copy_in_the_scratch_dir(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / WORKER_TOKEN_FILE).write_text("transferred\n")
    script = tmp_path / "w.sh"
    script.write_text(render_wrapper(_spec(tmp_path, tmp_path / "tokens" / "Q1")))
    out = _run(script, "Q1.abc-0", _CONDOR_SCRATCH_DIR=str(scratch))
    assert f"TOKEN_FILE {scratch}/{WORKER_TOKEN_FILE}" in out
    # no transferred copy (shared-file-system submission): the worker's own directory
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _run(script, "Q1.abc-0", _CONDOR_SCRATCH_DIR=str(empty))
    assert f"TOKEN_FILE {tmp_path}/tokens/Q1/Q1.abc-0/{WORKER_TOKEN_FILE}" in out


def test_without_a_token_dir_the_wrapper_sets_no_token_file(tmp_path: Path) -> None:
    script = tmp_path / "w.sh"
    script.write_text(render_wrapper(_spec(tmp_path, None)))
    assert "TOKEN_FILE -" in _run(script, "Q1.abc-0")


def test_worker_token_files_are_written_and_removed(tmp_path: Path) -> None:
    token_dir = tmp_path / "tokens" / "Q1"
    paths = write_worker_tokens(token_dir, ["a-0", "a-1"], ["t0", "t1"])
    assert [p.read_text() for p in paths] == ["t0\n", "t1\n"]
    with pytest.raises(ValueError, match="worker id"):
        write_worker_tokens(token_dir, ["../evil"], ["t"])
    with pytest.raises(ValueError, match="2 token"):
        write_worker_tokens(token_dir, ["a"], ["t", "u"])
    remove_worker_tokens(token_dir, ["a-0", "../a-1"])
    assert not (token_dir / "a-0").exists() and paths[1].exists()


def test_the_htcondor_description_ships_each_workers_token(tmp_path: Path) -> None:
    pytest.importorskip("htcondor2")
    from backends.htcondor.backend import HTCondorBackend

    backend = HTCondorBackend(workdir=tmp_path / "b", options={})
    token_dir = tmp_path / "tokens" / "Q1"
    desc = backend.submit_description(_spec(tmp_path, token_dir), tmp_path / "w.sh")
    assert desc["transfer_input_files"] == f"{token_dir}/Q1.abc-$(ProcId)/{WORKER_TOKEN_FILE}"
    assert desc["should_transfer_files"] == "YES" and desc["transfer_output_files"] == ""
    assert desc["stream_output"] == "True"  # the log still grows at its shared path
    plain = backend.submit_description(_spec(tmp_path, None), tmp_path / "w.sh")
    assert plain["should_transfer_files"] == "NO" and "transfer_input_files" not in plain
