"""GetJobLog against hostile log locations (issue 12, findings 1, 2 and the log half of 4).

Every log location here was chosen by a client: a pilot's final report (stored as reported) or,
inside storage, a submitter. The dispatcher reads one back only when it lies inside configured
storage:

- outside storage (``/etc/passwd``, a tarball next door, ``..``, a symlink out, an internal HTTP
  URL) it is refused with FAILED_PRECONDITION naming ``pfn``, saying nothing about the host;
- a FIFO or a slow-drip HTTP server inside storage, read by many calls at once, cannot wedge the
  dispatcher: ListJobs, SubmitJobs and health keep answering, each log call ends with a status;
- a 255 KB gzip bomb fails with RESOURCE_EXHAUSTED naming the limit instead of unpacking.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ailuro import Client
from ailuro.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from ailuro.queues import StorageElementConfig
from ailuro.v1 import job_pb2, pilot_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher
from pilot.logtar import make_log_tarball

LOG = job_pb2.FILE_TYPE_LOG
NEW_LIMITS: dict[str, Any] = {"log_deadline_s": 3.0, "log_reads_in_flight": 4}
"""Settings added with the fix (a short deadline keeps the test short)."""
ANSWER_WITHIN_S = 10.0
"""Generous bound for "the dispatcher still answers" (calls hung for ever before the fix)."""


def _adler32(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()):08x}"


def _submit_log(client: Client, pfn: str, *, lfn: str = "j.job.log.tgz", adler32: str = "") -> int:
    """A job submitted with its log location (accepted only inside configured storage)."""
    log = job_pb2.File(lfn=lfn, type=LOG, pfn=pfn, adler32=adler32)
    (panda_id,) = client.submit([job_pb2.Job(transformation="/bin/true", computing_site="LOCAL", files=[log])])
    return panda_id


def _reported_logs(d: RunningDispatcher, raw_pilot: Callable[..., Any], logs: list[tuple[str, str, str]]) -> list[int]:
    """Jobs whose pilot reported ``(pfn, lfn, adler32)`` as their log: stored as reported, never opened."""
    with Client(d.address) as client:
        client.submit([job_pb2.Job(transformation="/bin/true", computing_site="LOCAL") for _ in logs])
    p = raw_pilot(d.address, pilot_id=f"reporter-{len(logs)}", queue="LOCAL")
    ids = []
    for pfn, lfn, adler32 in logs:
        p.request(1)
        a = p.expect("assignment")
        log = job_pb2.File(lfn=lfn, type=LOG, pfn=pfn, adler32=adler32)
        p.final(a.job.panda_id, a.lease_epoch, job_pb2.JOB_STATUS_FINISHED, files=[log])
        assert p.ack_for(a.job.panda_id, final=True).result == pilot_pb2.ACK_RESULT_OK
        ids.append(a.job.panda_id)
    return ids


def _tarball(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "payload.stdout").write_text(text)
    return make_log_tarball(directory / name, [(directory / "payload.stdout", "payload.stdout")])


@dataclass
class _Web:
    """A local HTTP server: static files, ``/drip/...`` answers one byte every 0.2 s."""

    files: dict[str, bytes] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    port: int = 0


@pytest.fixture
def web() -> Iterator[_Web]:
    state = _Web()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.seen.append(self.path)
            if self.path.startswith("/se/drip/"):
                self.send_response(200)
                self.send_header("Content-Length", str(10**7))
                self.end_headers()
                end = time.monotonic() + 20
                try:
                    while time.monotonic() < end and not state.stopping.is_set():
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass
                return
            body = state.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.stopping.set()
    server.shutdown()
    server.server_close()


def _storage(tmp_path: Path, web: _Web | None = None) -> tuple[StorageElementConfig, ...]:
    (tmp_path / "storage" / "DISK").mkdir(parents=True, exist_ok=True)
    ses = [StorageElementConfig(name="DISK", endpoints=((tmp_path / "storage" / "DISK").as_uri(),))]
    if web is not None:
        ses.append(StorageElementConfig(name="WEB", endpoints=(f"http://127.0.0.1:{web.port}/se",)))
    return tuple(ses)


def test_locations_outside_storage_are_never_read(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any], tmp_path: Path
) -> None:
    d = make_dispatcher(storage=_storage(tmp_path), **NEW_LIMITS)
    disk = tmp_path / "storage" / "DISK"
    good = _tarball(disk, "good.job.log.tgz", "visible\n")
    secret = _tarball(tmp_path / "outside", "j.job.log.tgz", "TOP SECRET\n")
    (disk / "j.job.log.tgz").symlink_to(secret)
    with Client(d.address) as client:
        reported = {
            "passwd": ("file:///etc/passwd", "00000001"),
            "next door": (secret.as_uri(), ""),
            "dot-dot": (f"file://{disk}/../../outside/j.job.log.tgz", ""),
            "symlink": ((disk / "j.job.log.tgz").as_uri(), ""),
            "plain path": (str(secret), ""),
            "missing": (str(tmp_path / "outside" / "nothing.tgz"), "00000001"),
        }
        ids = _reported_logs(d, raw_pilot, [(pfn, "j.job.log.tgz", adler) for pfn, adler in reported.values()])
        hostile = dict(zip(reported, ids, strict=True))
        messages = {}
        for what, panda_id in hostile.items():
            for member in ("", "payload.stdout"):
                with pytest.raises(FailedPrecondition) as info:
                    client.job_log(panda_id, member=member)
                assert info.value.field == "pfn", what
                text = str(info.value)
                assert "adler32" not in text and "SECRET" not in text and "root:" not in text, what
                messages[what] = text.replace(str(panda_id), "<id>")
        # existing or not, readable or not: the refusal reads the same
        assert len(set(messages.values())) == 1, messages
        for pfn, _ in reported.values():  # a submitter cannot store them in the first place
            with pytest.raises(InvalidArgument) as bad:
                _submit_log(client, pfn)
            assert bad.value.field == "jobs[0].files[0].pfn" and "SECRET" not in str(bad.value)
        ok = _submit_log(client, good.as_uri(), lfn=good.name, adler32=_adler32(good))  # (after the pilot's jobs)
        assert client.job_log(ok, member="payload.stdout")[0] == b"visible\n"


def test_http_locations_are_fetched_only_inside_a_configured_endpoint(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any], tmp_path: Path, web: _Web
) -> None:
    d = make_dispatcher(storage=_storage(tmp_path, web), **NEW_LIMITS)
    good = _tarball(tmp_path / "src", "good.job.log.tgz", "over http\n")
    web.files["/se/good.job.log.tgz"] = good.read_bytes()
    web.files["/internal/admin.tgz"] = _tarball(tmp_path / "src2", "admin.tgz", "INTERNAL\n").read_bytes()
    base = f"http://127.0.0.1:{web.port}"
    with Client(d.address) as client:
        hostile = (
            f"{base}/internal/admin.tgz",
            f"{base}/se/../internal/admin.tgz",
            f"{base}/se%2f..%2finternal/admin.tgz",
            f"http://localhost:{web.port}/internal/admin.tgz",
            f"http://x@127.0.0.1:{web.port}/se/good.job.log.tgz",
        )
        for pfn in hostile:  # a submitter cannot even store these ...
            with pytest.raises(InvalidArgument) as bad:
                _submit_log(client, pfn)
            assert bad.value.field == "jobs[0].files[0].pfn"
        for panda_id in _reported_logs(d, raw_pilot, [(pfn, "j.job.log.tgz", "") for pfn in hostile]):
            with pytest.raises(FailedPrecondition) as info:  # ... and what a pilot reports is not fetched
                client.job_log(panda_id)
            assert info.value.field == "pfn" and "INTERNAL" not in str(info.value)
        ok = _submit_log(client, f"{base}/se/good.job.log.tgz", lfn=good.name, adler32=_adler32(good))
        assert client.job_log(ok, member="payload.stdout")[0] == b"over http\n"
    assert not [p for p in web.seen if "internal" in p], web.seen  # no request ever left for it


def _unblock_fifo(fifo: Path) -> None:
    """Let readers stuck opening the FIFO go (only the unfixed dispatcher has any)."""
    for _ in range(50):
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return


def test_fifo_and_slow_drip_logs_cannot_wedge_the_dispatcher(
    make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path, web: _Web
) -> None:
    d = make_dispatcher(storage=_storage(tmp_path, web), **NEW_LIMITS)
    fifo = tmp_path / "storage" / "DISK" / "fifo.job.log.tgz"
    os.mkfifo(fifo)
    with Client(d.address) as client:
        ids = [_submit_log(client, fifo.as_uri(), lfn=fifo.name) for _ in range(8)]
        ids += [_submit_log(client, f"http://127.0.0.1:{web.port}/se/drip/{i}.tgz", lfn=f"{i}.tgz") for i in range(8)]
    codes: dict[int, grpc.StatusCode] = {}
    channel = grpc.insecure_channel(d.address)
    stub = submission_pb2_grpc.SubmissionServiceStub(channel)

    def read(panda_id: int) -> None:
        try:
            for _ in stub.GetJobLog(submission_pb2.GetJobLogRequest(panda_id=panda_id), timeout=120):
                pass
            codes[panda_id] = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            codes[panda_id] = exc.code()

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in ids]
    try:
        for t in threads[8:]:  # the slow drips first, so some surely hold a reader when the FIFOs come
            t.start()
        waited = time.monotonic() + 30
        while not any("/drip/" in p for p in web.seen) and time.monotonic() < waited:
            time.sleep(0.05)
        for t in threads[:8]:
            t.start()
        time.sleep(0.5)  # let the FIFO calls start too (no timing is asserted)
        listed = stub.ListJobs(submission_pb2.ListJobsRequest(page_size=5), timeout=ANSWER_WITHIN_S)
        assert listed.total == len(ids)
        new = stub.SubmitJobs(
            submission_pb2.SubmitJobsRequest(jobs=[job_pb2.Job(transformation="/bin/true")]), timeout=ANSWER_WITHIN_S
        )
        assert len(new.panda_ids) == 1
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=ANSWER_WITHIN_S)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        for t in threads:
            t.join(timeout=120)
        # every log call ended, with a clear status: a FIFO is not a regular file, the drip runs
        # out of time, and calls past the in-flight limit are told to come back later
        assert len(codes) == len(ids)
        assert {codes[i] for i in ids[:8]} <= {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert {codes[i] for i in ids[8:]} <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert grpc.StatusCode.DEADLINE_EXCEEDED in codes.values()
        # 8 drips for 4 readers: the ones past log_reads_in_flight were turned away, not queued
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in {codes[i] for i in ids[8:]}
    finally:
        _unblock_fifo(fifo)
        web.stopping.set()
        channel.close()


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~260 KB log tarball whose payload.stdout unpacks to 260 MiB of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.job.log.tgz"
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo("bomb.job.log/payload.stdout")
        info.size = 260 * 1024 * 1024
        tar.addfile(info, _Zeros(info.size))
    return path


def test_a_gzip_bomb_fails_cleanly_at_the_unpacked_limit(
    make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path, gzip_bomb: Path
) -> None:
    assert gzip_bomb.stat().st_size < 300 * 1024
    # unpacking up to the limit takes seconds of CPU: a deadline that cannot fire first on a busy
    # machine (NEW_LIMITS' 3 s did, under stress-ng), so only the unpacked-size limit can stop it
    d = make_dispatcher(storage=_storage(tmp_path), **{**NEW_LIMITS, "log_deadline_s": 120.0})
    stored = tmp_path / "storage" / "DISK" / gzip_bomb.name
    stored.write_bytes(gzip_bomb.read_bytes())
    with Client(d.address, timeout=130) as client:
        panda_id = _submit_log(client, stored.as_uri(), lfn=stored.name, adler32=_adler32(stored))
        for member in ("payload.stdout", ""):
            with pytest.raises(ResourceExhausted) as info:
                client.job_log(panda_id, member=member)
            assert info.value.field == "pfn" and "limit" in str(info.value)
        assert client.list_page(page_size=1) is not None  # still serving
