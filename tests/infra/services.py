"""Session fixtures for the batch systems the backend tests run against.

- ``slurm_cluster``: the single-node Slurm of ``tests/infra/slurm.sh`` (attached when running,
  started — and stopped afterwards — when only set up).
- ``condor_pool``: the HTCondor chroot pool of ``tests/infra/htcondor.sh`` (same policy).
- ``lsf_emulator``: the command-level LSF emulator in ``tests/lsf_emulator`` (a fresh state dir).

A batch system that is missing FAILS its tests (CI must run them), unless
``AILURO_ALLOW_NO_BATCH=1`` (then they skip). Import the fixtures into a test module with
``from infra.services import condor_pool, lsf_emulator, slurm_cluster``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ALLOW_NO_BATCH_ENV = "AILURO_ALLOW_NO_BATCH"
INFRA_DIR = Path(os.environ.get("AILURO_INFRA_DIR", "/tmp/ailuro-infra"))
HERE = Path(__file__).resolve().parent
LSF_EMULATOR_DIR = HERE.parent / "lsf_emulator"


def unavailable(message: str) -> None:
    """Fail (or, with ``AILURO_ALLOW_NO_BATCH=1``, skip) a test whose batch system is missing."""
    if os.environ.get(ALLOW_NO_BATCH_ENV) == "1":
        pytest.skip(message)
    pytest.fail(f"{message} (set {ALLOW_NO_BATCH_ENV}=1 to skip batch-system tests locally)")


def _script(name: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(HERE / name), action], capture_output=True, text=True, timeout=180, check=False)


@dataclass(frozen=True, kw_only=True)
class SlurmCluster:
    """A running single-node Slurm."""

    slurm_conf: Path

    def options(self, **extra: Any) -> dict[str, Any]:
        """``backend_options`` for a queue on this cluster."""
        return {"slurm_conf": str(self.slurm_conf), **extra}


@dataclass(frozen=True, kw_only=True)
class CondorPool:
    """A running HTCondor pool whose jobs see ``shared`` at the same path."""

    condor_config: Path
    shared: Path
    job_uid: int = 1000
    """The account jobs run as (``panda`` in the chroot, tests/infra/htcondor.sh): a factory running
    as root gives it the workers' token files (``backend_options.token_owner``)."""

    def options(self, **extra: Any) -> dict[str, Any]:
        """``backend_options`` for a queue on this pool."""
        return {"condor_config": str(self.condor_config), **extra}

    def python(self) -> str:
        """A Python with the pilot's dependencies that the pool's jobs can run.

        The chroot bind-mounts the checkout the pool was started from (with its ``.venv``) and that
        venv's base Python (``binds``). This test's Python when its venv is among them; else the
        bound checkout's venv Python (run it with a pilot bundle from the dispatcher under test, so
        the pilot code is still this checkout's).
        """
        binds = [Path(p) for p in (self.shared.parent / "binds").read_text().split() if p]
        here = Path(sys.prefix)
        if any(here == b or b in here.parents for b in binds):
            return sys.executable
        for b in binds:
            candidate = b / ".venv" / "bin" / "python"
            if candidate.exists():
                return str(candidate)
        return sys.executable

    def workspace(self, name: str) -> Path:
        """A fresh directory visible to jobs (same path in the chroot), writable by their user."""
        path = self.shared / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        path.chmod(0o1777)
        return path


@dataclass(frozen=True, kw_only=True)
class LSFEmulator:
    """The LSF emulator with its own state directory."""

    state_dir: Path

    def options(self, **extra: Any) -> dict[str, Any]:
        """``backend_options`` for a queue on the emulator."""
        return {
            "bin_dir": str(LSF_EMULATOR_DIR),
            "command_env": {"LSF_EMU_DIR": str(self.state_dir), "LSF_EMU_PEND_S": "0.3"},
            **extra,
        }


def _slurm_up(conf: Path) -> bool:
    if not conf.is_file():
        return False
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mixed", "alloc"))


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The test Slurm cluster (started here if it is set up but not running)."""
    conf = INFRA_DIR / "slurm" / "slurm.conf"
    started = False
    if not _slurm_up(conf):
        if not conf.is_file():
            unavailable(f"no Slurm set up in {INFRA_DIR} (run tests/infra/slurm.sh setup && start)")
        proc = _script("slurm.sh", "start")
        if proc.returncode != 0 or not _slurm_up(conf):
            unavailable(f"Slurm did not start: {proc.stderr.strip()[-500:]}")
        started = True
    yield SlurmCluster(slurm_conf=conf)
    if started:
        _script("slurm.sh", "stop")


def _condor_up(root: Path) -> bool:
    try:
        pid = int((root / "run" / "condor" / "condor_master.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="session")
def condor_pool() -> Iterator[CondorPool]:
    """The test HTCondor pool (started here if the chroot is set up but not running)."""
    base = INFRA_DIR / "htcondor"
    started = False
    try:
        import htcondor2  # noqa: F401
    except ImportError:
        unavailable("the htcondor Python bindings are not installed (pip install htcondor)")
    if not _condor_up(base / "root"):
        if not (base / "root" / "usr" / "sbin" / "condor_master").exists():
            unavailable(f"no HTCondor chroot in {base} (run tests/infra/htcondor.sh setup && start)")
        proc = _script("htcondor.sh", "start")
        if proc.returncode != 0:
            unavailable(f"HTCondor did not start: {proc.stderr.strip()[-500:]}")
        started = True
    config = base / "client" / "condor_config"
    if not config.is_file():
        unavailable(f"{config} missing: HTCondor was not started by tests/infra/htcondor.sh")
    yield CondorPool(condor_config=config, shared=base / "jobs")
    if started:
        _script("htcondor.sh", "stop")


@pytest.fixture(scope="session")
def lsf_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LSFEmulator]:
    """The LSF emulator; jobs still running at the end of the session are killed."""
    state = tmp_path_factory.mktemp("lsf-emu")
    emu = LSFEmulator(state_dir=state)
    yield emu
    env = {**os.environ, "LSF_EMU_DIR": str(state)}
    jobs = [p.stem.split(".")[0] for p in (state / "jobs").glob("*.json")] if (state / "jobs").is_dir() else []
    if jobs:
        subprocess.run(
            [str(LSF_EMULATOR_DIR / "bkill"), *sorted(set(jobs))], capture_output=True, timeout=30, env=env, check=False
        )
