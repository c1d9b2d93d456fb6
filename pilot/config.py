"""Pilot configuration: one typed object built from the command line and the batch environment."""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ailuro import targets
from ailuro.vocabulary import DEFAULT_STORAGE_ROOT as DEFAULT_STORAGE_ROOT  # re-exported for the pilot

DEFAULT_HEARTBEAT_S = 30.0
"""Heartbeat interval before the dispatcher's ``Welcome`` told the real one."""

UNARY_ENV = "AILURO_PILOT_UNARY"
"""Environment variable that switches the pilot to the unary ``GetJob``/``UpdateJob`` transport."""


@dataclass(frozen=True, kw_only=True)
class PilotConfig:
    """Everything a pilot needs to know; times in seconds, 0 meaning "no limit" where noted."""

    server: str
    """Dispatcher address ``HOST:PORT``, or several comma-separated (see :mod:`ailuro.targets`)."""
    queue: str
    """Queue (computing_site) to take jobs from."""
    pilot_id: str
    """Unique id of this pilot (the factory's worker id, or a random one)."""
    workdir: Path
    """Parent of the per-job work directories ``<panda_id>-<attempt>``."""
    spool_dir: Path
    """Where final reports wait on disk until the dispatcher acknowledged them."""
    storage_root: Path | None = None
    """Base directory of ``file://`` storage elements not configured explicitly."""
    batch_id: str = ""
    """Batch-system id of this pilot's batch job (empty when not in a batch job)."""
    node: str = ""
    """Worker-node name reported to the dispatcher."""
    cores: int = 1
    """Cores offered to payloads."""
    memory_mb: int = 0
    """Memory offered to payloads (0: unknown)."""
    disk_mb: int = 0
    """Scratch disk offered to payloads, MiB (0: unknown); jobs needing more are not sent."""
    tags: tuple[str, ...] = ()
    """Features of the node jobs may ask for (``gpu``, a CVMFS release, ...)."""
    heartbeat_s: float | None = None
    """Interval of the batched heartbeats. ``None``: the period the dispatcher tells in its
    ``Welcome`` (:data:`DEFAULT_HEARTBEAT_S` until then); a value: at most this, never longer than
    the dispatcher's period."""
    status_delay_s: float = 1.0
    """A job's status change (starting, running, holding) is reported this long after it happened,
    together with the others of that moment; a job that ends sooner reports only its final, so a
    short job costs no heartbeat at all (0: report each change at once)."""
    idle_timeout_s: float = 300.0
    """Exit after this long without a job."""
    walltime_s: float = 0.0
    """Lifetime of the pilot (0: unlimited); no job is taken that would not fit in what is left."""
    walltime_margin_s: float = 10.0
    """Stop asking for work when less than this much walltime is left."""
    max_jobs: int = 0
    """Exit after this many jobs (0: unlimited)."""
    jobs_in_parallel: int = 1
    """How many jobs may run at once."""
    kill_grace_s: float = 1.0
    """Time between SIGTERM and SIGKILL when a payload is stopped."""
    monitor_interval_s: float = 0.5
    """How often the payload's process tree is measured (CPU, RSS) and limits are checked."""
    reconnect_min_s: float = 0.5
    """First reconnect delay; doubled per failed attempt, with jitter."""
    reconnect_max_s: float = 30.0
    """Upper bound of the reconnect delay."""
    final_flush_timeout_s: float = 15.0
    """At exit, how long to wait for pending final reports to be acknowledged."""
    payload_env_allow: tuple[str, ...] = ()
    """Names or shell-style patterns (``CMT_*``) of the pilot's environment variables passed to
    payloads besides :data:`pilot.environment.DEFAULT_ALLOW` (``--pass-env``, or the queue's
    ``pass_env``); credential-like names never pass."""
    keep_workdirs: bool = False
    """Keep each job's work directory after its log tarball was stored (for debugging)."""
    token_file: Path | None = None
    """File holding the pilot's bearer token (``--token-file``; else ``AILURO_TOKEN`` or
    ``AILURO_TOKEN_FILE``), read once when the pilot connects; the factory writes one (0600) per
    submission, bound to this queue. The token itself is never kept in the config (it is logged)."""
    unary: bool | None = None
    """Use unary ``GetJob``/``UpdateJob`` polls instead of the ``Connect`` stream (for pilots
    behind proxies that cannot keep a stream); ``None``: as ``AILURO_PILOT_UNARY`` says."""

    @property
    def use_unary(self) -> bool:
        """The transport decision: ``unary`` when given, else the environment."""
        return unary_from_env() if self.unary is None else self.unary

    def __post_init__(self) -> None:
        targets.parse_targets(self.server)  # ValueError naming the bad address
        if not self.queue:
            raise ValueError("queue is required")
        if self.jobs_in_parallel < 1:
            raise ValueError("jobs_in_parallel must be at least 1")
        if self.heartbeat_s is not None and self.heartbeat_s <= 0:
            raise ValueError("heartbeat_s must be positive")
        if self.status_delay_s < 0:
            raise ValueError("status_delay_s must not be negative")
        if self.cores < 1:
            raise ValueError("cores must be at least 1")
        if not 0 <= self.final_flush_timeout_s <= 3600:  # also refuses NaN
            raise ValueError("final_flush_timeout_s must be 0 to 3600 seconds")


def detect_batch_id(environ: Mapping[str, str]) -> str:
    """The batch-system job id from the environment the batch system gives its jobs.

    Checks ``AILURO_BATCH_ID`` (set by the factory), then Slurm (``SLURM_JOB_ID``, with the array
    task when there is one), LSF (``LSB_JOBID``, ``LSB_JOBINDEX``) and HTCondor (``ClusterId`` and
    ``ProcId`` in the job ad file ``_CONDOR_JOB_AD``).
    """
    if environ.get("AILURO_BATCH_ID"):
        return environ["AILURO_BATCH_ID"]
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    if environ.get("SLURM_JOB_ID"):
        return environ["SLURM_JOB_ID"]
    if environ.get("LSB_JOBID"):
        index = environ.get("LSB_JOBINDEX", "0")
        return f"{environ['LSB_JOBID']}[{index}]" if index not in ("", "0") else environ["LSB_JOBID"]
    ad_path = environ.get("_CONDOR_JOB_AD")
    if ad_path:
        return _condor_id(Path(ad_path))
    return ""


def _condor_id(ad_path: Path) -> str:
    try:
        text = ad_path.read_text(errors="replace")
    except OSError:
        return ""
    values: dict[str, str] = {}
    for key in ("ClusterId", "ProcId"):
        match = re.search(rf"^\s*{key}\s*=\s*(\d+)\s*$", text, re.MULTILINE | re.IGNORECASE)
        if match:
            values[key] = match.group(1)
    if "ClusterId" not in values:
        return ""
    return f"{values['ClusterId']}.{values.get('ProcId', '0')}"


def total_memory_mb() -> int:
    """Physical memory of the node in MiB (0 when /proc/meminfo cannot be read)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def available_memory_mb(environ: Mapping[str, str] | None = None) -> int:
    """Memory this pilot may give to payloads, MiB: what the batch system granted when it says
    (Slurm's ``SLURM_MEM_PER_NODE``, HTCondor's ``RequestMemory`` in the job ad or the slot's
    ``Memory`` in the machine ad), else the node's physical memory (0: unknown)."""
    env = os.environ if environ is None else environ
    value = env.get("SLURM_MEM_PER_NODE", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    for key, attribute in (("_CONDOR_JOB_AD", "RequestMemory"), ("_CONDOR_MACHINE_AD", "Memory")):
        ad_path = env.get(key)
        if ad_path:
            mb = _condor_ad_number(Path(ad_path), attribute)
            if mb:
                return mb
    return total_memory_mb()


def free_disk_mb(path: Path) -> int:
    """Free space under ``path`` (or its nearest existing parent) in MiB; 0 when it cannot be read."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free // (1024 * 1024)
        except OSError:
            continue
    return 0


def default_pilot_id() -> str:
    """A fresh pilot id: host name plus a random suffix."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"


def available_cores(environ: Mapping[str, str] | None = None) -> int:
    """Cores this pilot may give to payloads, at least 1.

    What the batch system granted, when it says: Slurm's ``SLURM_CPUS_ON_NODE``, LSF's
    ``LSB_DJOB_NUMPROC``, HTCondor's ``RequestCpus`` in the job ad (``_CONDOR_JOB_AD``) or the
    slot's ``Cpus`` in the machine ad (``_CONDOR_MACHINE_AD``);
    otherwise the CPU affinity of this process (which cgroups and ``taskset`` narrow), else
    ``os.cpu_count()``.
    """
    env = os.environ if environ is None else environ
    for key in ("SLURM_CPUS_ON_NODE", "LSB_DJOB_NUMPROC"):
        value = env.get(key, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    for key, attribute in (("_CONDOR_JOB_AD", "RequestCpus"), ("_CONDOR_MACHINE_AD", "Cpus")):
        ad_path = env.get(key)
        if ad_path:
            cpus = _condor_ad_number(Path(ad_path), attribute)
            if cpus:
                return cpus
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _condor_ad_number(ad_path: Path, attribute: str) -> int:
    """A positive integer attribute of an HTCondor ClassAd file (0 when absent or unreadable)."""
    try:
        text = ad_path.read_text(errors="replace")
    except OSError:
        return 0
    match = re.search(rf"^\s*{attribute}\s*=\s*(\d+)\s*$", text, re.MULTILINE | re.IGNORECASE)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else 0


def unary_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``AILURO_PILOT_UNARY`` asks for the unary transport (``1``, ``true``, ``yes``)."""
    env = os.environ if environ is None else environ
    return env.get(UNARY_ENV, "").strip().lower() in ("1", "true", "yes", "on")
