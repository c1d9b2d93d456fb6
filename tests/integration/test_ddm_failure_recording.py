"""DDM failures are always recorded, on PostgreSQL too (issue #19, item 2).

A storage server whose error text contains a NUL byte made PostgreSQL refuse the failure record;
the exception died in the agent's worker thread and the request stayed "active, 0 tries, no
error" for ever. A real HTTP storage endpoint that answers with such a text now leaves a failed
request with its attempts counted and the error (NUL escaped) stored.
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ailuro.queues import StorageElementConfig
from dispatcher.services.ddm import AgentConfig, DDMAgent
from dispatcher.store import catalog
from dispatcher.store.engine import open_database

pytestmark = pytest.mark.timeout(120)


class _BrokenTape(http.server.BaseHTTPRequestHandler):
    """Every request fails with a reason phrase and body carrying a NUL byte and invalid UTF-8."""

    def _fail(self) -> None:
        self.send_response(503, "tape\x00offline")
        body = b"recall failed\x00\xff\xfe"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET = _fail

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def broken_http() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BrokenTape)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("attempts", [1, 2])
def test_a_failure_text_with_nul_is_recorded_on_postgresql(
    pg_url: str, broken_http: str, tmp_path: Path, attempts: int
) -> None:
    storage = (
        StorageElementConfig(name="BROKEN_TAPE", endpoints=(broken_http,)),
        StorageElementConfig(name="DEST", endpoints=(f"file://{tmp_path / 'dest'}",)),
    )
    db = open_database(pg_url)
    now = time.time()
    with db.write() as conn:
        entry = catalog.FileEntry(lfn="a.bin", size=10, adler32="00000001", guid=str(uuid.uuid4()))
        fid = catalog.add_files(conn, "s", [entry], dataset_id=None, now=now)["a.bin"]
        catalog.set_replica(conn, fid, "BROKEN_TAPE", state=catalog.AVAILABLE, pfn=f"{broken_http}/s/a.bin", now=now)
        rid = catalog.add_request(
            conn, kind="transfer", file_id=fid, dest_se="DEST", source_se="BROKEN_TAPE", now=now, max_attempts=attempts
        )
    agent = DDMAgent(
        AgentConfig(
            db_url=pg_url,
            storage=storage,
            poll_s=0.1,
            backoff_base_s=0.1,
            lease_s=5,
            scratch_dir=tmp_path / "scratch",
            reconcile=False,
        )
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            agent.drain(timeout_s=5)
            with db.read() as conn:
                (row,) = [r for r in catalog.list_requests(conn) if r["request_id"] == rid]
            if row["state"] in (catalog.FAILED, catalog.DONE):
                break
            time.sleep(0.2)
    finally:
        agent.close()
        db.dispose()
    assert row["state"] == catalog.FAILED, dict(row)
    assert row["attempts"] == attempts and row["error_code"] != 0
    assert "tape\\x00offline" in row["last_error"] and "\x00" not in row["last_error"], row["last_error"]


def test_storable_text_bounds_and_cleans() -> None:
    assert catalog.storable_text("a\x00b", limit=10) == "a\\x00b"
    assert catalog.storable_text("bad \udcff byte", limit=100) == "bad ? byte"
    assert catalog.storable_text("x" * 5000, limit=2000) == "x" * 2000
