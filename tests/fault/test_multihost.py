"""Dispatchers on several hosts: network namespaces stand in for the hosts, and one link is cut.

Four namespaces on this machine, joined only by veth pairs with private /30 addresses that exist
nowhere else (10.213.49.0/28, inside the namespaces; nothing is added to the host's own):

    clients (SDK submitter + pilots) ──┬── d1 (dispatcher) ──┐
                                       └── d2 (dispatcher) ──┴── db (a private PostgreSQL cluster)

The clients get the server list ``d1,d2`` (``ailuro.targets``: one round-robin channel). Mid-run
every interface of d1 goes down (its host vanishes: no FIN, no RST). Pilots notice by keepalive,
reconnect to d2 and resume their jobs; d1's open transactions die by PostgreSQL's
``idle_in_transaction_session_timeout`` (their row locks would otherwise stall d2). The test ends
with the consistency check and prints the time the pilots took to move.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from dispatcher.auth.config import DEFAULT_AUDIENCE, EMBEDDED_ISSUER
from dispatcher.auth.issuer import IssuerFiles, ensure
from loadtests import consistency

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

HERE = Path(__file__).parent
REPO = HERE.parents[1]
PG_PORT = 5432  # inside the db namespace: nothing else listens there
DISPATCHER_PORT = 50051
# (namespace a, address in a, namespace b, address in b): one veth pair and /30 each
LINKS = (
    ("d1", "10.213.49.1", "db", "10.213.49.2"),
    ("d2", "10.213.49.5", "db", "10.213.49.6"),
    ("cl", "10.213.49.9", "d1", "10.213.49.10"),
    ("cl", "10.213.49.13", "d2", "10.213.49.14"),
)
STEP_TIMEOUT_S = 30.0


def _run(*argv: str, timeout: float = STEP_TIMEOUT_S) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: rc={res.returncode} {res.stderr.strip()}")


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if not found:
        pytest.fail(f"{name} not found (install the postgresql package)")
    return str(found)


class Hosts:
    """The namespaces and links; :meth:`cleanup` removes them (also at exit, whatever happened)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = {role: f"ailmh{tag}{role}" for role in ("d1", "d2", "db", "cl")}
        self.veths: dict[tuple[str, str], str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pg_stop: list[str] = []
        atexit.register(self.cleanup)

    def build(self) -> None:
        for ns in self.ns.values():
            _run("ip", "netns", "add", ns)
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        tag = self.ns["cl"][5:-2]
        for i, (a, addr_a, b, addr_b) in enumerate(LINKS):
            va, vb = f"mh{tag}{i}a", f"mh{tag}{i}b"
            self.veths[(a, b)], self.veths[(b, a)] = va, vb
            _run("ip", "link", "add", va, "netns", self.ns[a], "type", "veth", "peer", "name", vb, "netns", self.ns[b])
            for ns, dev, addr in ((self.ns[a], va, addr_a), (self.ns[b], vb, addr_b)):
                _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{addr}/30", "dev", dev)
                _run("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")

    def exec_argv(self, role: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns[role], *argv]

    def cut(self, role: str) -> None:
        """Every interface of ``role``'s host goes down (not a clean shutdown of anything)."""
        for (a, _), dev in self.veths.items():
            if a == role:
                _run(*self.exec_argv(role, "ip", "link", "set", dev, "down"))

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs.clear()
        if self.pg_stop:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(self.pg_stop, capture_output=True, timeout=STEP_TIMEOUT_S, check=False)
            self.pg_stop = []
        for ns in self.ns.values():  # deleting a namespace deletes the veth ends inside it
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=STEP_TIMEOUT_S, check=False)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail("this test builds network namespaces: it needs root and iproute2")
    h = Hosts()
    try:
        h.build()
        yield h
    finally:
        h.cleanup()


def _start_postgres(hosts: Hosts, root: Path) -> str:
    """A private cluster in the db namespace, trusting only the test subnet; its unix-socket URL."""
    datadir = root / "data"
    shutil.chown(root, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    _run(*as_pg, _pg_bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "--no-sync", timeout=120)
    (datadir / "pg_hba.conf").write_text("local all all trust\nhost all all 10.213.49.0/28 trust\n")
    listen = ",".join(addr_b for _, _, b, addr_b in LINKS if b == "db")
    opts = (
        f"-c listen_addresses={listen} -p {PG_PORT} -c unix_socket_directories={root} "
        # a dispatcher whose host vanished mid-transaction holds row locks until its session dies
        "-c idle_in_transaction_session_timeout=5s -c max_connections=100"
    )
    pg_ctl = [*as_pg, _pg_bin("pg_ctl"), "-D", str(datadir), "-o", opts, "-w", "-t", "30"]
    _run(*hosts.exec_argv("db", *pg_ctl, "-l", str(root / "server.log"), "start"), timeout=60)
    hosts.pg_stop = [*pg_ctl, "stop", "-m", "immediate"]
    admin = f"postgresql+psycopg://postgres@/postgres?host={root}&port={PG_PORT}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("CREATE DATABASE ailuro"))
    engine.dispose()
    return f"postgresql+psycopg://postgres@/ailuro?host={root}&port={PG_PORT}"


def _start_dispatcher(hosts: Hosts, role: str, db_addr: str, listen: str, tmp: Path) -> subprocess.Popen[bytes]:
    config = {
        # not loopback, so token authentication (trusted metadata is refused there); both
        # dispatchers share one embedded issuer, whose admin token the clients send
        "auth_dir": str(tmp / "auth"),
        "heartbeat_flush_s": 0.1,
        "watchdog_interval_s": 0.3,
        "no_job_retry_s": 0.2,
        "command_poll_s": 0.1,
        "grace_s": 0.5,
        "db_threads": 4,
        "db_url": f"postgresql+psycopg://postgres@{db_addr}:{PG_PORT}/ailuro",
        "host": listen,
        "port": DISPATCHER_PORT,
        # longer than keepalive detection: held jobs are resumed on d2, not lost by lease
        "lease_s": 60.0,
        "sent_timeout_s": 60.0,
        "pilot_stale_s": 30.0,
    }
    port_file = tmp / f"{role}.port"
    argv = [sys.executable, str(HERE / "run_dispatcher.py"), "--port-file", str(port_file)]
    with (tmp / f"{role}.log").open("wb") as log:
        proc = subprocess.Popen(
            hosts.exec_argv(role, *argv, "--config", json.dumps(config)), stdout=log, stderr=log, cwd=REPO
        )
    hosts.procs.append(proc)
    deadline = time.monotonic() + 90
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"dispatcher {role} did not start:\n{(tmp / f'{role}.log').read_text()[-3000:]}")
        time.sleep(0.1)
    return proc


def _dispatched(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM job_events WHERE to_status = 'sent'")).scalar_one())
    finally:
        engine.dispose()


def _dispatchers_holding_jobs(url: str) -> int:
    """How many dispatcher processes have connected pilots holding jobs right now."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            sql = (
                "SELECT count(DISTINCT p.dispatcher_id) FROM jobs j JOIN pilots p ON p.pilot_id = j.pilot_id "
                "WHERE p.connected AND j.status IN ('sent', 'starting', 'running')"
            )
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_cut_link_of_one_dispatcher_host_pilots_move_jobs_finish_once(hosts: Hosts) -> None:
    jobs, pilots = 600, 24  # 24 fresh round-robin channels: some are on d1 whatever the timing
    root = Path(tempfile.mkdtemp(prefix="ailuro-multihost-"))
    try:
        url = _start_postgres(hosts, root)
        issuer = IssuerFiles(state_dir=root / "auth")
        ensure(issuer, issuer=EMBEDDED_ISSUER, audience=DEFAULT_AUDIENCE, admin_vo="admin")
        client_env = {**os.environ, "AILURO_TOKEN": issuer.admin_token.read_text().strip()}
        d1 = _start_dispatcher(hosts, "d1", "10.213.49.2", "10.213.49.10", root)
        d2 = _start_dispatcher(hosts, "d2", "10.213.49.6", "10.213.49.14", root)
        servers = f"10.213.49.10:{DISPATCHER_PORT},10.213.49.14:{DISPATCHER_PORT}"
        out = root / "clients.json"
        argv = [sys.executable, str(HERE / "faultload.py"), "multihost", "--addresses", servers]
        argv += ["--jobs", str(jobs), "--count", str(pilots), "--prefix", "mh", "--out", str(out)]
        argv += ["--seconds", "200", "--keepalive-ms", "3000"]
        with (root / "clients.log").open("wb") as log:
            clients = subprocess.Popen(hosts.exec_argv("cl", *argv), stdout=log, stderr=log, cwd=REPO, env=client_env)
        hosts.procs.append(clients)

        # Cut only once pilots hold jobs through both dispatchers: on a busy machine a keepalive
        # (3 s) can lapse and move streams before the cut, and in one CI run beside stress-ng every
        # pilot was on d2 when d1 was cut, so none had anything to move.
        deadline = time.monotonic() + 120
        while _dispatched(url) < jobs // 4 or _dispatchers_holding_jobs(url) < 2:
            assert clients.poll() is None, (root / "clients.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"the load never got going on both dispatchers: {_dispatched(url)} dispatched, "
                f"{_dispatchers_holding_jobs(url)} dispatcher(s) with pilots holding jobs"
            )
            time.sleep(0.2)
        cut_at = time.time()
        hosts.cut("d1")

        clients.wait(timeout=240)
        assert clients.returncode == 0, (root / "clients.log").read_text()[-3000:]
        seen = json.loads(out.read_text())
        assert d2.poll() is None, (root / "d2.log").read_text()[-3000:]
        d1.send_signal(signal.SIGKILL)

        moved = [(lost, back) for lost, back in seen["moves"] if lost >= cut_at - 1]
        why = f"cut at {cut_at:.1f}: {seen['codes']} {seen['moves']}"
        assert moved, f"no pilot lost its stream when d1's link was cut ({why})"
        assert len(seen["finished"]) == jobs, f"{len(seen['finished'])} of {jobs} finished; {seen['codes']}"
        res = consistency.check(
            url, submitted=seen["submitted"], assignments=[tuple(x) for x in seen["assignments"]], expect_final=True
        )
        assert res.ok, res.summary()
        assert res.by_status == {"finished": jobs}, res.by_status
        recovered = max(back for _, back in moved) - cut_at
        print(
            f"\nmulti-host: d1's link cut after {jobs // 4} dispatches; {len(moved)} pilot stream(s) moved to d2; "
            f"all pilots streaming again {recovered:.1f} s after the cut (client keepalive 3 s); "
            f"{jobs} jobs finished exactly once"
        )
    finally:
        hosts.cleanup()
        shutil.rmtree(root, ignore_errors=True)
