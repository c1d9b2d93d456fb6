"""The backend contract's helpers: state translation, the run_command seam, the pilot wrapper."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ailuro.errors import InvalidArgument
from ailuro.v1 import factory_pb2
from backends.base import CommandError, PilotSpec, WorkerState, run_command, translate_state
from backends.local import NATIVE_STATES, LocalBackend
from backends.registry import backend_class, create_backend
from backends.wrapper import render_wrapper


def test_worker_state_round_trips_through_the_proto_enum() -> None:
    for state in WorkerState:
        assert WorkerState.from_proto(state.to_proto()) is state
    assert len(WorkerState) == len(factory_pb2.WorkerState.keys()) - 1  # all but UNSPECIFIED
    assert WorkerState.from_proto(0) is WorkerState.UNKNOWN
    assert WorkerState.from_proto(999) is WorkerState.UNKNOWN


def test_final_and_queued_sets() -> None:
    assert {s for s in WorkerState if s.is_final} == {
        WorkerState.FINISHED,
        WorkerState.FAILED,
        WorkerState.CANCELLED,
        WorkerState.MISSING,
    }
    assert {s for s in WorkerState if s.is_queued} == {WorkerState.SUBMITTED, WorkerState.IDLE}


def test_unknown_native_state_is_unknown_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert translate_state("zombie-ish", NATIVE_STATES, backend="local") is WorkerState.UNKNOWN
    assert "zombie-ish" in caplog.text
    assert translate_state("done", NATIVE_STATES, backend="local") is WorkerState.FINISHED


@pytest.mark.parametrize(
    ("native", "expected"),
    [
        ("running", WorkerState.RUNNING),
        ("done", WorkerState.FINISHED),
        ("exit", WorkerState.FAILED),
        ("signaled", WorkerState.FAILED),
        ("cancelled", WorkerState.CANCELLED),
        ("vanished", WorkerState.MISSING),
        ("unknown-id", WorkerState.MISSING),
    ],
)
def test_local_translation_table(native: str, expected: WorkerState) -> None:
    assert NATIVE_STATES[native] is expected


def test_run_command_captures_output() -> None:
    res = run_command([sys.executable, "-c", "print('hi')"], timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "hi"


def test_run_command_error_carries_argv_rc_and_output() -> None:
    argv = [sys.executable, "-c", "import sys; print('out'); print('bad thing', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(CommandError) as info:
        run_command(argv, timeout=30)
    err = info.value
    assert err.argv == tuple(argv) and err.returncode == 3
    assert err.stdout.strip() == "out" and "bad thing" in err.stderr
    assert "bad thing" in str(err)
    unchecked = run_command(argv, timeout=30, check=False)
    assert unchecked.returncode == 3


def test_run_command_timeout_and_missing_program() -> None:
    with pytest.raises(CommandError) as info:
        run_command([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(30)"], timeout=0.5)
    assert info.value.returncode is None and "timed out" in str(info.value)
    with pytest.raises(CommandError, match="cannot run"):
        run_command(["/nonexistent/bsub"], timeout=5)
    with pytest.raises(ValueError):
        run_command("echo hi", timeout=5)  # type: ignore[arg-type]


def test_run_command_env_adds_to_the_environment(tmp_path: Path) -> None:
    res = run_command(
        [sys.executable, "-c", "import os; print(os.environ['AILURO_X'], bool(os.environ.get('PATH')), os.getcwd())"],
        timeout=30,
        env={"AILURO_X": "42"},
        cwd=tmp_path,
    )
    assert res.stdout.split() == ["42", "True", str(tmp_path)]


def _spec(tmp_path: Path, **kw: object) -> PilotSpec:
    base: dict[str, object] = {
        "server": "127.0.0.1:5000",
        "queue": "Q'; rm -rf /",
        "worker_id_prefix": "Q.abc",
        "log_dir": tmp_path,
        "factory_id": "f1",
        "pilot_command": ("/usr/bin/env", "python3", "-m", "pilot"),
        "pilot_args": ("--log-level", "debug it"),
        "environment": {"SITE_NAME": "$(whoami) `id`"},
    }
    base.update(kw)
    return PilotSpec(**base)  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is required by the wrapper")
def test_wrapper_renders_valid_bash_with_quoted_values(tmp_path: Path) -> None:
    text = render_wrapper(_spec(tmp_path))
    assert "@@" not in text
    script = tmp_path / "w.sh"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=10)
    assert "export SITE_NAME='$(whoami) `id`'" in text
    assert "'debug it'" in text


def test_wrapper_runs_the_pilot_command_with_ids_and_records_the_exit_code(tmp_path: Path) -> None:
    # The "pilot" here prints what it was given and exits 7: the wrapper must pass everything on.
    probe = (
        "import os, sys; print('ARGS', sys.argv[1:]); print('ENV', os.environ['AILURO_PILOT_ID'], "
        "os.environ['AILURO_BATCH_ID'], os.environ['AILURO_QUEUE'], os.environ['SITE_NAME']); sys.exit(7)"
    )
    spec = _spec(tmp_path, queue="Q1", pilot_command=(sys.executable, "-c", probe), idle_timeout_s=12.5)
    script = tmp_path / "w.sh"
    script.write_text(render_wrapper(spec))
    exit_file = tmp_path / "exit"
    env = {
        "PATH": "/usr/bin:/bin",
        "SLURM_ARRAY_JOB_ID": "77",
        "SLURM_ARRAY_TASK_ID": "3",
        "AILURO_EXIT_FILE": str(exit_file),
    }
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 7
    assert exit_file.read_text().strip() == "7"
    assert "ENV Q.abc-3 77_3 Q1 $(whoami) `id`" in proc.stdout
    assert (
        "ARGS ['--server', '127.0.0.1:5000', '--queue', 'Q1', '--pilot-id', 'Q.abc-3', "
        "'--idle-timeout-s', '12.5', '--log-level', 'debug it']"
    ) in proc.stdout
    # an explicit first argument wins over the array index
    proc = subprocess.run(["bash", str(script), "my-pilot"], capture_output=True, text=True, env=env, timeout=30)
    assert "ENV my-pilot 77_3" in proc.stdout


def test_wrapper_rejects_bad_environment_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="environment variable"):
        render_wrapper(_spec(tmp_path, environment={"BAD NAME": "x"}))


def test_registry(tmp_path: Path) -> None:
    assert backend_class("local") is LocalBackend
    backend = create_backend("local", workdir=tmp_path, options={"kill_grace_s": 1})
    assert isinstance(backend, LocalBackend) and backend.kill_grace_s == 1
    with pytest.raises(InvalidArgument) as info:
        backend_class("pbs")
    assert info.value.field == "backend"
    with pytest.raises(InvalidArgument):
        create_backend("local", workdir=tmp_path, options={"partition": "x"})


def test_the_shipped_example_queue_file_loads(tmp_path: Path) -> None:
    from ailuro.queues import load_queues

    queues = load_queues(Path(__file__).parents[2] / "examples" / "demo" / "queues.toml")
    assert [q.name for q in queues] == ["CERN_LOCAL", "JINR_LOCAL"]
    for q in queues:
        assert q.backend == "local" and q.factory.max_total == 2
        create_backend(q.backend, workdir=tmp_path / q.name, options=q.backend_options)  # options are valid
