"""The batch-system side of the pilot comparison: the same jobs through Slurm and HTCondor.

Both are the CI's (``tests/infra/slurm.sh``, ``tests/infra/htcondor.sh``): found through
``$AILURO_INFRA_DIR`` (default ``/tmp/ailuro-infra``); :func:`slurm_problem` and
:func:`condor_problem` say why one cannot be used (then it is skipped with that reason).

- **Slurm**: ``sbatch --array`` of a script that ``exec``s the payload (arrays of at most 1,000
  tasks, Slurm's default ``MaxArraySize``), output files per task. A job counts as finished when
  its line appears in the job-completion log (``jobcomp/filetxt``), which costs Slurm nothing.
- **HTCondor**: one ``Submit`` with ``queue N`` through the ``htcondor2`` bindings (the pool runs
  in a chroot, so the host has no ``condor_submit``; the bindings make the same single call),
  vanilla universe, no file transfer, output files per job. A job counts as finished when its
  "terminated" event (005) appears in the job event log.

The span is the first submit to the moment the benchmark saw the last job finished (the logs are
read every 0.25 s). CPU is the sum of ``utime + stime + cutime + cstime`` over the system's
daemon trees (slurmctld, slurmd, munged; condor_master and everything below it), before and after;
slurmstepd re-parents itself to init, so its CPU (with the payload it reaped) is sampled every
20 ms while it lives (:class:`loadtests._cpu.ProcSampler`): what a step spends after its last
sample is missed, so the Slurm figure is a lower bound. Jobs other users run meanwhile count too: the
number found queued at the start is printed with the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loadtests._ailuro_run import RunResult
from loadtests._cpu import ProcSampler, descendants, proc_cpu_s, processes, tree_cpu_s

INFRA = Path(os.environ.get("AILURO_INFRA_DIR", "/tmp/ailuro-infra"))
SLURM_CONF = INFRA / "slurm" / "slurm.conf"
CONDOR_BASE = INFRA / "htcondor"
ARRAY_MAX = 1000
POLL_S = 0.25


def _pidfile(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


# --- Slurm ----------------------------------------------------------------------------------


def _slurm_env() -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(SLURM_CONF)}


def slurm_problem() -> str:
    """Why Slurm cannot be used here ('' when it can)."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH"
    if not SLURM_CONF.is_file():
        return f"no Slurm set up ({SLURM_CONF} missing; tests/infra/slurm.sh setup && start)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, env=_slurm_env(), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0 or not any(s in out.stdout for s in ("idle", "mixed", "alloc")):
        return f"Slurm is not up (sinfo: {(out.stdout + out.stderr).strip()[:200]})"
    return ""


def _slurm_daemons() -> list[int]:
    pids = [p for p in (_pidfile(INFRA / "slurm" / name) for name in ("slurmctld.pid", "slurmd.pid")) if p]
    pids += [pid for pid, (_, comm) in processes().items() if comm == "munged"]
    return pids


def _slurm_slots() -> int:
    out = subprocess.run(
        ["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, timeout=20, env=_slurm_env(), check=False
    )
    try:  # allocated/idle/other/total
        return int(out.stdout.strip().split("/")[-1])
    except (IndexError, ValueError):
        return 0


def _queued_slurm() -> int:
    out = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=20, env=_slurm_env(), check=False)
    return len(out.stdout.splitlines())


def _slurm_done(jobcomp: Path, offset: int, arrays: set[str]) -> tuple[int, int]:
    """Finished tasks of ``arrays`` in the completion log past ``offset``: (done, not COMPLETED)."""
    done = failed = 0
    with open(jobcomp, "rb") as fh:
        fh.seek(offset)
        for raw in fh:
            fields = dict(f.split("=", 1) for f in raw.decode(errors="replace").split() if "=" in f)
            if fields.get("ArrayJobId") in arrays or fields.get("JobId") in arrays:
                done += 1
                failed += fields.get("JobState") != "COMPLETED"
    return done, failed


def run_slurm(payload: str, argv: list[str], jobs: int, timeout_s: float) -> RunResult:
    """``jobs`` jobs of ``argv`` as Slurm array tasks (see the module docstring)."""
    result = RunResult(system="Slurm", payload=payload, jobs=jobs, slots=_slurm_slots())
    jobcomp = INFRA / "slurm" / "log" / "jobcomp.txt"
    others = _queued_slurm()
    with tempfile.TemporaryDirectory(prefix="ailuro-bench-slurm-") as tmp:
        script = Path(tmp) / "job.sh"
        script.write_text("#!/bin/sh\nexec " + " ".join(argv) + "\n")
        script.chmod(0o755)
        offset = jobcomp.stat().st_size if jobcomp.exists() else 0
        daemons = _slurm_daemons()
        stepd = ProcSampler(lambda _pid, comm: comm == "slurmstepd", interval_s=0.02)
        stepd.start()
        before = tree_cpu_s(daemons)
        t0 = time.time()
        arrays: set[str] = set()
        for start in range(0, jobs, ARRAY_MAX):
            last = min(jobs, start + ARRAY_MAX) - 1 - start
            sbatch = ["sbatch", "--parsable", f"--array=0-{last}", "-J", "ailuro-bench"]
            out = subprocess.run(
                [*sbatch, "-o", f"{tmp}/%A_%a.out", "-e", f"{tmp}/%A_%a.err", str(script)],
                capture_output=True,
                text=True,
                timeout=120,
                env=_slurm_env(),
                check=True,
                cwd=tmp,
            )
            arrays.add(out.stdout.strip().split(";")[0])
        finished = _wait(lambda: _slurm_done(jobcomp, offset, arrays)[0] >= jobs, timeout_s)
        t1 = time.time()
        time.sleep(1.0)  # let the last slurmstepd exit and be sampled
        after = tree_cpu_s(daemons)
        steps = stepd.stop()
        result.done, result.failed = _slurm_done(jobcomp, offset, arrays)
        result.elapsed_s = t1 - t0
        result.cpu_s = {"daemons": after - before, "slurmstepd": steps}
        if not finished:
            subprocess.run(["scancel", *arrays], env=_slurm_env(), timeout=60, check=False)
            result.note = f"timed out after {timeout_s:.0f}s"
        if others:
            result.note = (result.note + "; " if result.note else "") + f"{others} other jobs were queued"
    return result


# --- HTCondor ---------------------------------------------------------------------------------


def _condor_env() -> tuple[str, Path]:
    return str(CONDOR_BASE / "client" / "condor_config"), Path(
        os.environ.get("AILURO_HTC_SHARED", CONDOR_BASE / "jobs")
    )


def condor_problem() -> str:
    """Why HTCondor cannot be used here ('' when it can)."""
    config, shared = _condor_env()
    if _pidfile(CONDOR_BASE / "root" / "run" / "condor" / "condor_master.pid") is None:
        return f"HTCondor is not running (no live condor_master under {CONDOR_BASE}; tests/infra/htcondor.sh start)"
    if not Path(config).is_file() or not shared.is_dir():
        return f"no client configuration {config} or job directory {shared}"
    try:
        import htcondor2  # noqa: F401
    except ImportError:
        return "the htcondor Python bindings are not installed (pip install htcondor)"
    return ""


def _bindings() -> object:
    config, _ = _condor_env()
    os.environ["CONDOR_CONFIG"] = config
    import htcondor2

    htcondor2.reload_config()
    return htcondor2


def _terminated(events: Path) -> int:
    try:
        with open(events, "rb") as fh:
            return sum(1 for line in fh if line.startswith(b"005 ("))
    except FileNotFoundError:
        return 0


def run_condor(payload: str, argv: list[str], jobs: int, timeout_s: float) -> RunResult:
    """``jobs`` jobs of ``argv`` as one HTCondor cluster (see the module docstring)."""
    htc = _bindings()
    schedd = htc.Schedd()  # type: ignore[attr-defined]
    collector = htc.Collector()  # type: ignore[attr-defined]
    ads = collector.query(htc.AdTypes.Startd, projection=["Machine", "TotalCpus"])  # type: ignore[attr-defined]
    slots = sum({str(ad.get("Machine")): int(ad.get("TotalCpus", 0)) for ad in ads}.values())
    result = RunResult(system="HTCondor", payload=payload, jobs=jobs, slots=slots)
    others = len(schedd.query(projection=["ClusterId"]))
    _, shared = _condor_env()
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=shared))
    work.chmod(0o1777)
    events = work / "events.log"
    master = _pidfile(CONDOR_BASE / "root" / "run" / "condor" / "condor_master.pid")
    assert master is not None
    try:
        desc = {
            "universe": "vanilla",
            "executable": argv[0],
            "arguments": " ".join(argv[1:]),
            "transfer_executable": "false",
            "should_transfer_files": "NO",
            "output": f"{work}/$(ProcId).out",
            "error": f"{work}/$(ProcId).err",
            "log": str(events),
            "initialdir": str(work),
            "request_cpus": "1",
        }
        daemons = sorted(descendants([master]))
        before = sum(proc_cpu_s(p) for p in daemons)
        t0 = time.time()
        submitted = schedd.submit(htc.Submit(desc), count=jobs)  # type: ignore[attr-defined]
        cluster = int(submitted.cluster())
        finished = _wait(lambda: _terminated(events) >= jobs, timeout_s)
        t1 = time.time()
        time.sleep(1.0)  # shadows and starters exit and are reaped by their daemons
        result.done = _terminated(events)
        result.elapsed_s = t1 - t0
        result.cpu_s = {"daemons": tree_cpu_s([master]) - before}
        if not finished:
            schedd.act(htc.JobAction.Remove, f"ClusterId == {cluster}")  # type: ignore[attr-defined]
            result.note = f"timed out after {timeout_s:.0f}s"
        if others:
            result.note = (result.note + "; " if result.note else "") + f"{others} other jobs were queued"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _wait(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(POLL_S)
    return done()
