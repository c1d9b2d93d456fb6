"""The local backend's bookkeeping: a restarted factory still classifies its predecessor's pilots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from backends.base import PilotSpec, WorkerState
from backends.local import LocalBackend

PILOT = r"""
import os, sys, time
index = int(os.environ["AILURO_PILOT_ID"].rsplit("-", 1)[1])
if index == 0:
    sys.exit(0)
if index == 1:
    sys.exit(5)
time.sleep(120)
"""


def _spec(tmp_path: Path, prefix: str) -> PilotSpec:
    return PilotSpec(
        server="127.0.0.1:1",
        queue="Q",
        worker_id_prefix=prefix,
        log_dir=tmp_path / "logs",
        pilot_command=(sys.executable, "-c", PILOT),
    )


def _wait_final(backend: LocalBackend, ids: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s.state.is_final for s in backend.status(ids).values()):
            return
        time.sleep(0.1)


SUBMITTER = r"""
import json, sys
from pathlib import Path
from backends.base import PilotSpec
from backends.local import LocalBackend
tmp = Path(sys.argv[1])
backend = LocalBackend(workdir=tmp / "b")
spec = PilotSpec(server="127.0.0.1:1", queue="Q", worker_id_prefix="Q.x", log_dir=tmp / "logs",
                 pilot_command=(sys.executable, "-c", sys.argv[2]))
print(json.dumps([w.batch_id for w in backend.submit(4, spec)]))
"""


def _group_gone(pgid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_restarted_backend_classifies_from_evidence(tmp_path: Path) -> None:
    # A factory process submits four pilots and exits (0: exit 0, 1: exit 5, 2 and 3: run on) ...
    out = subprocess.run(
        [sys.executable, "-c", SUBMITTER, str(tmp_path), PILOT], capture_output=True, text=True, timeout=60, check=True
    )
    ids: list[str] = json.loads(out.stdout)
    logs = tmp_path / "logs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all((logs / f"Q.x-{i}.exit").exists() for i in (0, 1)):
        time.sleep(0.1)

    # ... and its successor, with no child processes to ask, classifies them from the evidence.
    second = LocalBackend(workdir=tmp_path / "b", options={"kill_grace_s": 2})
    assert sorted(second.known_batch_ids()) == sorted(ids)
    st = second.status(ids)
    assert st[ids[0]].state is WorkerState.FINISHED and st[ids[0]].exit_code == 0
    assert st[ids[1]].state is WorkerState.FAILED and st[ids[1]].exit_code == 5
    assert st[ids[2]].state is WorkerState.RUNNING
    assert st[ids[3]].state is WorkerState.RUNNING

    # #3 dies without its wrapper writing an exit file (kill -9 of the whole group): no evidence
    pid3 = json.loads(second.state_file.read_text())["workers"][ids[3]]["pid"]
    os.killpg(pid3, signal.SIGKILL)
    assert _group_gone(pid3)
    assert second.status([ids[3]])[ids[3]].state is WorkerState.MISSING

    second.cancel([ids[2]])
    assert second.status([ids[2]])[ids[2]].state is WorkerState.CANCELLED

    # a third instance reads the recorded outcomes back from the state file
    third = LocalBackend(workdir=tmp_path / "b")
    assert [third.status(ids)[i].state for i in ids] == [
        WorkerState.FINISHED,
        WorkerState.FAILED,
        WorkerState.CANCELLED,
        WorkerState.MISSING,
    ]
    assert third.known_batch_ids() == []


def test_cancel_escalates_to_kill_when_term_is_ignored(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(15, signal.SIG_IGN); print('ready', flush=True); time.sleep(99)"
    spec = PilotSpec(
        server="127.0.0.1:1",
        queue="Q",
        worker_id_prefix="Q.s",
        log_dir=tmp_path / "logs",
        pilot_command=(sys.executable, "-c", stubborn),
    )
    backend = LocalBackend(workdir=tmp_path / "b", options={"kill_grace_s": 0.5})
    (w,) = backend.submit(1, spec)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "ready" not in Path(w.log_path).read_text():
        time.sleep(0.05)
    backend.cancel([w.batch_id])
    st = backend.status([w.batch_id])[w.batch_id]
    assert st.state is WorkerState.CANCELLED
    pid = json.loads(backend.state_file.read_text())["workers"][w.batch_id]["pid"]
    assert _group_gone(pid)


def test_logs_are_per_pilot(tmp_path: Path) -> None:
    backend = LocalBackend(workdir=tmp_path / "b")
    workers = backend.submit(2, _spec(tmp_path, "Q.l"))
    _wait_final(backend, [w.batch_id for w in workers])
    logs = [Path(w.log_path) for w in workers]
    assert len(set(logs)) == 2
    for w, log in zip(workers, logs, strict=True):
        text = log.read_text()
        assert f"pilot {w.worker_id} batch '{w.batch_id}'" in text


def test_pilot_exit_codes_classify_the_worker(tmp_path: Path) -> None:
    # 82 is the pilot's "no jobs": it ended as designed, so the worker finished; 80 is a failure.
    script = "import os, sys; sys.exit((0, 80, 82)[int(os.environ['AILURO_PILOT_ID'].rsplit('-', 1)[1])])"
    backend = LocalBackend(workdir=tmp_path / "b")
    spec = PilotSpec(
        server="127.0.0.1:1",
        queue="Q",
        worker_id_prefix="Q.c",
        log_dir=tmp_path / "logs",
        pilot_command=(sys.executable, "-c", script),
    )
    workers = backend.submit(3, spec)
    chosen = dict(zip((0, 80, 82), (w.batch_id for w in workers), strict=True))
    _wait_final(backend, list(chosen.values()))
    st = backend.status(list(chosen.values()))
    assert st[chosen[0]].state is WorkerState.FINISHED
    assert st[chosen[82]].state is WorkerState.FINISHED and st[chosen[82]].diag == "exit code 82 (no jobs)"
    assert st[chosen[80]].state is WorkerState.FAILED
    assert st[chosen[80]].diag == "exit code 80 (never reached the dispatcher)"
