"""The BatchBackend contract, run against every backend available here.

Each backend submits three pilots in one bulk submission. The "pilot" is a configured command (the
wrapper's ``pilot_command``) that behaves by its index in the submission: #0 exits 0, #1 exits 3,
#2 waits until cancelled. All three first report that they started and then wait for a "go" file,
so "running" is observed for certain before anything ends.

Backends: ``local``, ``slurm`` (real single-node Slurm), ``htcondor`` (real HTCondor pool in a
chroot; jobs run as an ordinary user, so the test's files live in the pool's shared directory)
and ``lsf-emulator`` (the LSF adapter against ``tests/lsf_emulator``; real LSF is not exercised).
A batch system that is not running fails these tests unless ``AILURO_ALLOW_NO_BATCH=1``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from infra.services import condor_pool, lsf_emulator, slurm_cluster  # noqa: F401  (fixtures)

from backends.base import BatchBackend, PilotSpec, WorkerState, WorkerStatus
from backends.pilot_tokens import write_worker_tokens
from backends.registry import create_backend

BACKENDS = [
    "local",
    pytest.param("slurm", marks=pytest.mark.slow),
    pytest.param("htcondor", marks=pytest.mark.slow),
    pytest.param("lsf-emulator", marks=pytest.mark.slow),
]

PILOT = r"""
import os, sys, time
from pathlib import Path
me = os.environ["AILURO_PILOT_ID"]
index = int(me.rsplit("-", 1)[1])
shared = Path(os.environ["CONTRACT_DIR"])
(shared / f"started-{index}").write_text(os.environ.get("AILURO_BATCH_ID", ""))
deadline = time.time() + 120
while not (shared / "go").exists() and time.time() < deadline:
    time.sleep(0.05)
if index == 2:
    time.sleep(120)  # until cancelled
print(f"pilot {me} ending", flush=True)
sys.exit(0 if index == 0 else 3)
"""


@pytest.fixture(params=BACKENDS)
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """(backend name, a directory its jobs can read and write at the same path)."""
    if request.param == "htcondor":
        pool = request.getfixturevalue("condor_pool")
        return request.param, pool.workspace(f"contract-{tmp_path.name}")
    return request.param, tmp_path


@pytest.fixture
def python(request: pytest.FixtureRequest, workspace: tuple[str, Path]) -> str:
    """The Python that runs the stdlib-only test pilots: one the HTCondor chroot sees for htcondor."""
    if workspace[0] == "htcondor":
        return str(request.getfixturevalue("condor_pool").python())
    return sys.executable


@pytest.fixture
def backend(request: pytest.FixtureRequest, workspace: tuple[str, Path]) -> Iterator[BatchBackend]:
    name, where = workspace
    if name == "local":
        b = create_backend("local", workdir=where / "backend", options={"kill_grace_s": 3})
    elif name == "slurm":
        b = create_backend(
            "slurm", workdir=where / "backend", options=request.getfixturevalue("slurm_cluster").options()
        )
    elif name == "htcondor":
        pool = request.getfixturevalue("condor_pool")
        # jobs run as the pool's user: a root factory gives it the workers' token files
        b = create_backend("htcondor", workdir=where / "backend", options=pool.options(token_owner=pool.job_uid))
    else:
        emu = request.getfixturevalue("lsf_emulator")
        b = create_backend("lsf", workdir=where / "backend", options=emu.options(queue="8nh"))
    yield b
    # whatever a failed assertion left behind is stopped
    known = getattr(b, "known_batch_ids", None)
    if known is not None:
        b.cancel(known())


def wait_for(
    backend: BatchBackend, ids: Sequence[str], done: Callable[[dict[str, WorkerStatus]], bool], timeout: float = 60
) -> dict[str, WorkerStatus]:
    deadline = time.monotonic() + timeout
    while True:
        st = backend.status(ids)
        if done(st) or time.monotonic() > deadline:
            return st
        time.sleep(min(backend.poll_interval, 1.0))


def test_submit_run_cancel_and_classify(backend: BatchBackend, workspace: tuple[str, Path], python: str) -> None:
    tmp_path = workspace[1]
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # HTCondor jobs run as an ordinary user
    spec = PilotSpec(
        server="127.0.0.1:1",
        queue="CONTRACT",
        worker_id_prefix="CONTRACT.t1",
        log_dir=tmp_path / "logs",
        factory_id="contract",
        pilot_command=(python, "-c", PILOT),
        environment={"CONTRACT_DIR": str(shared)},
    )
    workers = backend.submit(3, spec)
    assert [w.worker_id for w in workers] == ["CONTRACT.t1-0", "CONTRACT.t1-1", "CONTRACT.t1-2"]
    ids = [w.batch_id for w in workers]
    assert len(set(ids)) == 3

    # every worker gets to run, and knows its own batch id
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not all((shared / f"started-{i}").exists() for i in range(3)):
        time.sleep(0.1)
    for i, w in enumerate(workers):
        assert (shared / f"started-{i}").read_text() == w.batch_id
    st = backend.status(ids)
    assert set(st) == set(ids)
    assert all(s.state is WorkerState.RUNNING for s in st.values()), st

    (shared / "go").write_text("")
    st = wait_for(backend, ids[:2], lambda s: all(x.state.is_final for x in s.values()), timeout=90)
    assert st[ids[0]].state is WorkerState.FINISHED and st[ids[0]].exit_code == 0
    assert st[ids[1]].state is WorkerState.FAILED and st[ids[1]].exit_code == 3
    assert backend.status([ids[2]])[ids[2]].state is WorkerState.RUNNING

    backend.cancel([ids[2]])
    st = wait_for(backend, [ids[2]], lambda s: s[ids[2]].state.is_final)
    assert st[ids[2]].state is WorkerState.CANCELLED
    # cancelling ended workers is harmless, and the states stay put
    backend.cancel(ids)
    final = backend.status(ids)
    assert [final[i].state for i in ids] == [WorkerState.FINISHED, WorkerState.FAILED, WorkerState.CANCELLED]

    # each pilot's output is in its own log
    for w in workers[:2]:
        assert f"pilot {w.worker_id} ending" in Path(w.log_path).read_text()


def test_status_of_an_unknown_id_is_missing_not_an_error(backend: BatchBackend) -> None:
    st = backend.status(["no-such-worker"])
    assert st["no-such-worker"].state is WorkerState.MISSING


def test_submit_zero_is_a_no_op(backend: BatchBackend, workspace: tuple[str, Path]) -> None:
    spec = PilotSpec(server="127.0.0.1:1", queue="CONTRACT", worker_id_prefix="z", log_dir=workspace[1] / "logs")
    assert backend.submit(0, spec) == []


TOKEN_PILOT = r"""
import os
from pathlib import Path
me = os.environ["AILURO_PILOT_ID"]
shared = Path(os.environ["CONTRACT_DIR"])
(shared / f"token-{me}").write_text(Path(os.environ["AILURO_TOKEN_FILE"]).read_text())
"""


def test_each_worker_reads_its_own_token(backend: BatchBackend, workspace: tuple[str, Path], python: str) -> None:
    """The factory writes one token per worker before submitting; whatever account the batch system
    runs the pilot as, the pilot reads its own (HTCondor: the copy transferred into its scratch dir)."""
    tmp_path = workspace[1]
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    spec = PilotSpec(
        server="127.0.0.1:1",
        queue="CONTRACT",
        worker_id_prefix="CONTRACT.tok",
        log_dir=tmp_path / "logs",
        factory_id="contract",
        pilot_command=(python, "-c", TOKEN_PILOT),
        environment={"CONTRACT_DIR": str(shared)},
        token_dir=tmp_path / "tokens" / "CONTRACT",
    )
    names = [spec.worker_id(i) for i in range(2)]
    write_worker_tokens(spec.token_dir, names, [f"token-of-{n}" for n in names])  # type: ignore[arg-type]
    workers = backend.submit(2, spec)
    st = wait_for(backend, [w.batch_id for w in workers], lambda s: all(x.state.is_final for x in s.values()), 90)
    assert all(x.state is WorkerState.FINISHED for x in st.values()), st
    for n in names:
        assert (shared / f"token-{n}").read_text().strip() == f"token-of-{n}"
