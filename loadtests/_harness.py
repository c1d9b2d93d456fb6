"""Shared plumbing for benchmarks: fresh databases and dispatcher processes to measure.

The dispatcher always runs in its own process (``python -m dispatcher``) so the load generators,
in other processes, never share its interpreter: what is printed is what a deployment would see
on this machine, load generator included.

Authentication is on, as for any dispatcher: every dispatcher a load test starts (without an
explicit ``--auth``) runs in token mode with one embedded issuer per load-test process
(:func:`load_issuer`, a private temporary directory), whose admin token is put in
``$AILURO_TOKEN`` for the load generators and the pilots they spawn (a load generator plays every
role at once: submitter, pilot and factory). :func:`channel` and :func:`aio_channel` send it.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import create_engine, text

from ailuro.credentials import TOKEN_ENV, aio_interceptors, bearer_metadata, resolve_token

PG_ADMIN_URL = os.environ.get("AILURO_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


_AUTH_DIR: list[Path] = []
LOAD_AUTH_DIR_ENV = "AILURO_LOAD_AUTH_DIR"
"""Names the load issuer's directory to the generators a load test spawns (locust), so each
simulated user, production system and pilot gets a token of its own role (:func:`role_token`)."""


def load_issuer() -> tuple[str, ...]:
    """The dispatcher options of this process's embedded issuer (made at the first call, removed at
    exit); its admin token goes to ``$AILURO_TOKEN`` (inherited by spawned load generators)."""
    from dispatcher.auth.config import DEFAULT_AUDIENCE, EMBEDDED_ISSUER
    from dispatcher.auth.issuer import IssuerFiles, ensure

    if not _AUTH_DIR:
        base = Path(tempfile.mkdtemp(prefix="ailuro-load-auth-"))
        atexit.register(shutil.rmtree, base, True)
        files = IssuerFiles(state_dir=base / "auth")
        ensure(files, issuer=EMBEDDED_ISSUER, audience=DEFAULT_AUDIENCE, admin_vo="admin")
        os.environ[TOKEN_ENV] = files.admin_token.read_text().strip()
        os.environ[LOAD_AUTH_DIR_ENV] = str(files.state_dir)
        _AUTH_DIR.append(files.state_dir)
    return ("--auth", "token", "--auth-dir", str(_AUTH_DIR[0]))


@functools.cache
def role_token(user: str, vo: str, role: str, queue: str = "") -> str | None:
    """A token of the load issuer for a simulated ``user`` of ``vo`` (role ``user`` or
    ``production``), or a ``pilot`` bound to ``queue``; None when no load issuer is known (the
    dispatcher under test is not one a load test started: ``$AILURO_TOKEN`` is used then)."""
    state_dir = os.environ.get(LOAD_AUTH_DIR_ENV)
    if not state_dir:
        return None
    from dispatcher.auth.minting import Minter

    minter = Minter.from_state_dir(Path(state_dir))
    if role == "pilot":
        return minter.pilot(queue)
    return minter.user(user, vo or "default", production=role == "production")


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds ``authorization`` to every call of a blocking channel."""

    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)

    def _add(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(details._replace(metadata=[*(details.metadata or ()), *self._metadata]), request)

    intercept_unary_unary = _add
    intercept_unary_stream = _add
    intercept_stream_stream = _add


def channel(address: str, *, token: str | None = None, **kwargs: Any) -> grpc.Channel:
    """A blocking channel sending ``token``, else ``$AILURO_TOKEN`` (or ``$AILURO_TOKEN_FILE``), with every call."""
    token = token or resolve_token()
    plain = grpc.insecure_channel(address, **kwargs)
    return grpc.intercept_channel(plain, _Bearer(token)) if token else plain


def aio_channel(address: str, **kwargs: Any) -> grpc.aio.Channel:
    """An asyncio channel sending ``$AILURO_TOKEN`` (or ``$AILURO_TOKEN_FILE``) with every call."""
    return grpc.aio.insecure_channel(address, interceptors=aio_interceptors(resolve_token()), **kwargs)


_SETTING = re.compile(r"^[a-z_]+=[A-Za-z0-9_.]+$")


@contextmanager
def database(kind: str, *, pg_settings: tuple[str, ...] = ()) -> Iterator[str]:
    """Yield the URL of an empty database of ``kind`` (sqlite | postgres); remove it afterwards.

    ``pg_settings`` (``name=value``) are set on that database only (``ALTER DATABASE ... SET``),
    so a benchmark can measure e.g. ``synchronous_commit=off`` without touching the shared server.
    """
    bad = [x for x in pg_settings if not _SETTING.match(x)]
    if bad:
        raise ValueError(f"PostgreSQL settings must look like name=value, got {bad}")
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ailuro-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    name = f"ailuro_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        for setting in pg_settings:
            key, value = setting.split("=", 1)
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET {key} = '{value}'"))
    try:
        yield str(admin.url.set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True, kw_only=True)
class DispatcherHandle:
    """A running dispatcher process: where it listens and its pid (for CPU and RSS readings)."""

    address: str
    pid: int
    proc: subprocess.Popen[bytes]


@contextmanager
def dispatcher_process(db_url: str, *, extra_args: tuple[str, ...] = (), timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``python -m dispatcher`` on port 0; yield its address; stop it (SIGTERM, then SIGKILL)."""
    with dispatcher_handle(db_url, extra_args=extra_args, timeout_s=timeout_s) as handle:
        yield handle.address


@contextmanager
def dispatcher_handle(
    db_url: str, *, extra_args: tuple[str, ...] = (), timeout_s: float = 60.0
) -> Iterator[DispatcherHandle]:
    """Like :func:`dispatcher_process` but yields a :class:`DispatcherHandle` (token mode with
    :func:`load_issuer` unless ``extra_args`` choose ``--auth``)."""
    if "--auth" not in extra_args:
        extra_args = (*extra_args, *load_issuer())
    with tempfile.TemporaryDirectory(prefix="ailuro-bench-port-") as tmp:
        port_file = Path(tmp) / "port"
        log_file = (Path(tmp) / "dispatcher.log").open("w+")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dispatcher",
                "--db",
                db_url,
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--log-level",
                "WARNING",
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_file.seek(0)
                    raise RuntimeError(f"dispatcher did not start (rc={proc.returncode}):\n{log_file.read()[-4000:]}")
                time.sleep(0.05)
            yield DispatcherHandle(address=f"127.0.0.1:{int(port_file.read_text())}", pid=proc.pid, proc=proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
            log_file.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``; 0.0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its direct children (a dispatcher started with ``--workers``)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (Linux ``/proc``; 0.0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values`` by nearest rank; 0.0 for an empty list."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]
