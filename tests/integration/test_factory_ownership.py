"""Only a factory can register and change its own workers, and no batch id reaches a batch
command unless it has its backend's form (issue #12, finding 6).

A caller without the factory's secret is refused (PERMISSION_DENIED) whatever it tries; and even
worker records a factory did not write (a caller that claimed an unused factory id first) never
put an option or LSF's "every job" id ``0`` on a ``scancel``/``bkill``/``condor_rm`` command line:
recording fake binaries prove which commands ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from ailuro.client import FACTORY_ID_METADATA_KEY, FACTORY_SECRET_METADATA_KEY
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import factory_pb2, factory_pb2_grpc
from backends.factory import Factory, FactoryConfig

pytestmark = pytest.mark.timeout(120)

HOSTILE_IDS = ("--user=panda", "0", "-1", "1 2", "1;2", "\uff11\uff12", "12_-3", "1.-1", "*")
"""Batch ids an attacker would like a factory to pass to its cancel command."""

RECORDER = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >> "{log}"
case "$(basename "$0")" in
  squeue) echo '{{"jobs": []}}' ;;
  bjobs) echo '{{"COMMAND": "bjobs", "JOBS": 0, "RECORDS": []}}' ;;
esac
exit 0
"""


def _fake_bin(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, record = tmp_path / "fakebin", tmp_path / "commands.log"
    bin_dir.mkdir()
    record.touch()
    for name in ("scancel", "squeue", "sacct", "sbatch", "bkill", "bjobs", "bsub", "condor_rm", "condor_q"):
        path = bin_dir / name
        path.write_text(RECORDER.format(log=record))
        path.chmod(0o755)
    return bin_dir, record


def _queues(bin_dir: Path) -> tuple[QueueConfig, ...]:
    limits = FactoryLimits(max_queued=0, max_total=0)  # these tests never submit
    return (
        QueueConfig(name="OWN_SLURM", backend="slurm", factory=limits, backend_options={"bin_dir": str(bin_dir)}),
        QueueConfig(name="OWN_LSF", backend="lsf", factory=limits, backend_options={"bin_dir": str(bin_dir)}),
        QueueConfig(name="OWN_CONDOR", backend="htcondor", factory=limits),
    )


def _md(factory_id: str, secret: str) -> tuple[tuple[str, str], ...]:
    return ((FACTORY_ID_METADATA_KEY, factory_id), (FACTORY_SECRET_METADATA_KEY, secret))


def _hostile(factory_id: str) -> list[factory_pb2.Worker]:
    backends = {"OWN_SLURM": "slurm", "OWN_LSF": "lsf", "OWN_CONDOR": "htcondor"}
    return [
        factory_pb2.Worker(
            worker_id=f"evil-{queue}-{i}", queue=queue, backend=backend, factory_id=factory_id, batch_id=bid
        )
        for queue, backend in backends.items()
        for i, bid in enumerate(HOSTILE_IDS)
    ]


def _code(call: Callable[..., Any], request: Any, **kw: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10, **kw)
    return info.value.code()  # type: ignore[no-any-return]


def test_workers_are_registered_and_changed_only_by_their_factory(
    make_dispatcher: Callable[..., Any], tmp_path: Path
) -> None:
    bin_dir, record = _fake_bin(tmp_path)
    queues = _queues(bin_dir)
    server = make_dispatcher(queues=queues).address
    secret_file = tmp_path / "victim.secret"
    victim = Factory(
        FactoryConfig(
            server=server, queues=queues, workdir=tmp_path / "victim", factory_id="victim", secret_file=secret_file
        )
    )
    try:
        victim.run_cycle()  # its first call fixes its secret at the dispatcher
        assert os.stat(secret_file).st_mode & 0o777 == 0o600
        secret = secret_file.read_text().strip()
        own = factory_pb2.Worker(
            worker_id="victim-w1", queue="OWN_SLURM", backend="slurm", factory_id="victim", batch_id="4242_0"
        )
        with grpc.insecure_channel(server) as ch:
            stub = factory_pb2_grpc.FactoryServiceStub(ch)
            stub.RegisterWorkers(factory_pb2.RegisterWorkersRequest(workers=[own]), metadata=_md("victim", secret))
            evil = factory_pb2.RegisterWorkersRequest(workers=_hostile("victim"))
            # no secret, a guessed secret, or the attacker's own id with the victim's workers: all refused
            assert _code(stub.RegisterWorkers, evil) == grpc.StatusCode.PERMISSION_DENIED
            assert (
                _code(stub.RegisterWorkers, evil, metadata=_md("victim", "guess")) == grpc.StatusCode.PERMISSION_DENIED
            )
            assert _code(stub.RegisterWorkers, evil, metadata=_md("evil", "x")) == grpc.StatusCode.PERMISSION_DENIED
            # the attacker cannot take over or change the victim's worker either
            takeover = factory_pb2.Worker(
                worker_id="victim-w1", queue="OWN_SLURM", backend="slurm", factory_id="evil", batch_id="--user=panda"
            )
            req = factory_pb2.RegisterWorkersRequest(workers=[takeover])
            assert _code(stub.RegisterWorkers, req, metadata=_md("evil", "x")) == grpc.StatusCode.PERMISSION_DENIED
            upd = factory_pb2.UpdateWorkersRequest(
                updates=[factory_pb2.WorkerUpdate(worker_id="victim-w1", state=factory_pb2.WORKER_STATE_CANCELLED)]
            )
            assert _code(stub.UpdateWorkers, upd, metadata=_md("evil", "x")) == grpc.StatusCode.PERMISSION_DENIED
            assert _code(stub.UpdateWorkers, upd) == grpc.StatusCode.PERMISSION_DENIED
            listed = stub.ListWorkers(factory_pb2.ListWorkersRequest(factory_id="victim")).workers
            assert [(w.worker_id, w.batch_id, w.state) for w in listed] == [
                ("victim-w1", "4242_0", factory_pb2.WORKER_STATE_SUBMITTED)
            ]
        victim.cancel_all()
    finally:
        victim.close()
    # the victim's own, well-formed id was cancelled, after "--"; nothing else reached a command
    cancels = [line for line in record.read_text().splitlines() if line.split()[0] in ("scancel", "bkill", "condor_rm")]
    assert cancels == ["scancel -- 4242_0"]


def test_hostile_records_never_reach_a_cancel_command(make_dispatcher: Callable[..., Any], tmp_path: Path) -> None:
    """An attacker claimed an unused factory id first: the factory that later uses that id lists
    the attacker's records, but none of their ids reaches a batch command."""
    bin_dir, record = _fake_bin(tmp_path)
    queues = _queues(bin_dir)
    server = make_dispatcher(queues=queues).address
    with grpc.insecure_channel(server) as ch:
        stub = factory_pb2_grpc.FactoryServiceStub(ch)
        stub.RegisterWorkers(
            factory_pb2.RegisterWorkersRequest(workers=_hostile("late")), metadata=_md("late", "attacker"), timeout=10
        )
    factory = Factory(
        FactoryConfig(
            server=server,
            queues=queues,
            workdir=tmp_path / "late",
            factory_id="late",
            secret_file=tmp_path / "late.secret",
            cancel_queued_after_s=0.001,
        )
    )
    try:
        factory.run_cycle()
        factory.cancel_all()
        factory.run_cycle()
    finally:
        factory.close()
    commands = record.read_text().splitlines()
    assert not [c for c in commands if c.split()[0] in ("scancel", "bkill", "condor_rm")], commands
    for line in commands:  # status commands never carried them either
        assert not any(bad in line.split()[1:] for bad in HOSTILE_IDS), line
