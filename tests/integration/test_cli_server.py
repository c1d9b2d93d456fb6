"""``ailuro server`` as a real process: it listens, serves the SDK, and stops cleanly on SIGTERM."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ailuro import Client

pytestmark = pytest.mark.timeout(120)

DEV = ("--auth", "trusted-metadata")
AILURO = str(Path(sys.executable).with_name("ailuro"))


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_server_process_serves_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    queues_file = tmp_path / "queues.toml"
    queues_file.write_text('[[queue]]\nname = "CERN_TEST"\nvos = ["compass"]\n\n[[queue]]\nname = "JINR_TEST"\n')
    proc = subprocess.Popen(
        # about serving and stopping: the explicit loopback development mode (test_secure_default: tokens)
        [AILURO, "server", "--db", db_url, "--port", "0", "--queues", str(queues_file), "--log-level", "warning", *DEV],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    try:
        address = ""
        seen: list[str] = []
        while not address:
            line = lines.get(timeout=60)
            seen.append(line)
            if "listening on" in line:
                address = line.split("listening on ", 1)[1].split()[0]
        assert address.startswith("127.0.0.1:")
        with Client(address, identity="srv") as client:
            assert sorted(q.name for q in client.queues()) == ["CERN_TEST", "JINR_TEST"]
            (pid,) = client.submit([{"transformation": "/bin/true", "site": "JINR_TEST"}])
            assert client.get([pid])[0].computing_site == "JINR_TEST"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--db", "not a url"], "--db is not a database URL"),
        (["--queues", "/nonexistent/queues.toml"], "queues file not found"),
        (["--log-level", "loud"], "--log-level"),
    ],
)
def test_server_bad_options_exit_2(args: list[str], words: str) -> None:
    result = subprocess.run(
        [AILURO, "server", "--port", "0", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
def test_server_workers_share_one_port_and_all_stop_on_sigterm(pg_url: str, tmp_path: Path) -> None:
    """``--workers 2``: two dispatcher processes behind one port serve calls; SIGTERM stops them all."""
    import grpc

    from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc

    queues_file = tmp_path / "queues.toml"
    queues_file.write_text('[[queue]]\nname = "CERN_TEST"\n')
    argv = [AILURO, "server", "--db", pg_url, "--port", "0", "--queues", str(queues_file), "--workers", "2"]
    argv += ["--log-level", "warning", "--auth", "trusted-metadata"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    try:
        address = ""
        while not address:
            line = lines.get(timeout=90)
            if "listening on" in line:
                address = line.split("listening on ", 1)[1].split()[0]
        children = {int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()}
        workers = [p for p in children if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2, children
        ids = []
        for k in range(8):  # separate connections: the kernel spreads them over the workers
            own = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(address, options=own) as channel:
                stub = submission_pb2_grpc.SubmissionServiceStub(channel)
                job = job_pb2.Job(transformation="/bin/true", computing_site="CERN_TEST")
                resp = stub.SubmitJobs(submission_pb2.SubmitJobsRequest(request_id=f"w{k}", jobs=[job]), timeout=30)
                ids += resp.panda_ids
        assert len(set(ids)) == 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not [pid for pid in workers if _alive(pid)], "a worker outlived its supervisor"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
