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

AILURO = str(Path(sys.executable).with_name("ailuro"))


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def test_server_process_serves_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    queues_file = tmp_path / "queues.toml"
    queues_file.write_text('[[queue]]\nname = "CERN_TEST"\nvos = ["compass"]\n\n[[queue]]\nname = "JINR_TEST"\n')
    proc = subprocess.Popen(
        [AILURO, "server", "--db", db_url, "--port", "0", "--queues", str(queues_file), "--log-level", "warning"],
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
