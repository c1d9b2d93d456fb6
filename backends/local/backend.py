"""The ``local`` backend: pilots as processes on the factory's own machine.

It is the embedded default (``ailuro demo``, laptops, CI): no batch system, yet the same
contract, wrapper and bookkeeping as the real ones. Each pilot runs the rendered wrapper with
``bash`` in its own session (so a cancel can signal the pilot's whole process group), writes
stdout+stderr to its own log file, and leaves its exit code in an ``.exit`` file.

A small JSON state file remembers every worker (pid, process start time, log, exit file, whether
we cancelled it), so a restarted factory still classifies pilots its predecessor started:
running if the same process still exists, finished/failed from the exit file, cancelled if we
killed it, and ``missing`` when there is no evidence either way.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ailuro.errors import InvalidArgument
from backends.base import (
    PILOT_CLEAN_EXIT_CODES,
    BatchBackend,
    PilotSpec,
    SubmittedWorker,
    WorkerState,
    WorkerStatus,
    describe_exit_code,
    translate_state,
)
from backends.wrapper import write_wrapper

log = logging.getLogger(__name__)

NATIVE_STATES: Mapping[str, WorkerState] = {
    "running": WorkerState.RUNNING,
    "done": WorkerState.FINISHED,  # exit code 0, or the pilot's "no jobs" (82)
    "exit": WorkerState.FAILED,  # any other exit code
    "signaled": WorkerState.FAILED,  # killed by a signal we did not send
    "cancelled": WorkerState.CANCELLED,  # we stopped it (cancel)
    "vanished": WorkerState.MISSING,  # gone, no exit file, not cancelled by us
    "unknown-id": WorkerState.MISSING,  # never submitted by this backend's work dir
}
"""Native local states (as :meth:`LocalBackend.native_state` names them) to worker states."""

_OPTIONS = {"kill_grace_s", "keep_final_s"}


@dataclass(kw_only=True)
class _Entry:
    """What the state file keeps about one worker."""

    worker_id: str
    pid: int
    start_ticks: int
    log_path: str
    exit_file: str
    submitted_at: float
    cancelled: bool = False
    final_native: str = ""
    exit_code: int | None = None
    ended_at: float = 0.0


class LocalBackend(BatchBackend):
    """Pilots as local processes (see the module docstring)."""

    name = "local"
    poll_interval = 1.0

    def __init__(self, *, workdir: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        unknown = set(options) - _OPTIONS
        if unknown:
            raise InvalidArgument(f"unknown local backend option(s) {sorted(unknown)}", field="backend_options")
        self.kill_grace_s = float(options.get("kill_grace_s", 10.0))
        self.keep_final_s = float(options.get("keep_final_s", 86400.0))
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.workdir / "local-state.json"
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._entries: dict[str, _Entry] = self._load()

    # --- contract ---------------------------------------------------------------------------

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedWorker]:
        """Start ``n`` pilot processes through the wrapper; on a failure the ones started are stopped."""
        if n <= 0:
            return []
        log_dir = Path(spec.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        wrapper = write_wrapper(spec, self.workdir / "wrappers" / f"{spec.worker_id_prefix}.sh")
        started: list[SubmittedWorker] = []
        with self._lock:
            try:
                for i in range(n):
                    started.append(self._start_one(spec, wrapper, log_dir, spec.worker_id(i)))
            except OSError:
                self._kill_now([w.batch_id for w in started])
                raise
            finally:
                self._save()
        return started

    def status(self, batch_ids: Sequence[str]) -> dict[str, WorkerStatus]:
        """Classify each worker from its process, exit file and our records."""
        out: dict[str, WorkerStatus] = {}
        with self._lock:
            changed = False
            for bid in batch_ids:
                entry = self._entries.get(bid)
                if entry is None:
                    out[bid] = WorkerStatus(
                        state=translate_state("unknown-id", NATIVE_STATES, backend=self.name),
                        native_state="unknown-id",
                        diag="not submitted from this work directory",
                    )
                    continue
                if not entry.final_native:
                    changed |= self._refresh(bid, entry)
                native = entry.final_native or "running"
                out[bid] = WorkerStatus(
                    state=translate_state(native, NATIVE_STATES, backend=self.name),
                    native_state=native,
                    exit_code=entry.exit_code,
                    diag=_diag(native, entry.exit_code),
                )
            if changed:
                self._save()
        return out

    def cancel(self, batch_ids: Sequence[str]) -> None:
        """TERM each pilot's process group, then KILL what is left after ``kill_grace_s``."""
        with self._lock:
            alive: list[str] = []
            for bid in batch_ids:
                entry = self._entries.get(bid)
                if entry is None or entry.final_native:
                    continue
                entry.cancelled = True
                if self._alive(bid, entry):
                    _signal_group(entry.pid, signal.SIGTERM)
                    alive.append(bid)
            self._save()
            deadline = time.monotonic() + self.kill_grace_s
            while alive and time.monotonic() < deadline:
                time.sleep(0.05)
                alive = [b for b in alive if self._alive(b, self._entries[b])]
            self._kill_now(alive)
            for bid in batch_ids:
                entry = self._entries.get(bid)
                if entry is not None and not entry.final_native:
                    self._refresh(bid, entry)
            self._save()

    # --- helpers ---------------------------------------------------------------------------

    def known_batch_ids(self, *, include_final: bool = False) -> list[str]:
        """Workers in the state file (by default only those not known to have ended)."""
        with self._lock:
            return [b for b, e in self._entries.items() if include_final or not e.final_native]

    def _start_one(self, spec: PilotSpec, wrapper: Path, log_dir: Path, worker_id: str) -> SubmittedWorker:
        batch_id = f"local-{uuid.uuid4().hex[:12]}"
        log_path = log_dir / f"{worker_id}.log"
        exit_file = log_dir / f"{worker_id}.exit"
        env = {
            **os.environ,
            "AILURO_PILOT_ID": worker_id,
            "AILURO_BATCH_ID": batch_id,
            "AILURO_EXIT_FILE": str(exit_file),
        }
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                ["bash", str(wrapper), worker_id],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self._pilot_dir()),
                start_new_session=True,  # own process group: cancel signals the pilot and its children
                close_fds=True,
            )
        self._procs[batch_id] = proc
        self._entries[batch_id] = _Entry(
            worker_id=worker_id,
            pid=proc.pid,
            start_ticks=_start_ticks(proc.pid),
            log_path=str(log_path),
            exit_file=str(exit_file),
            submitted_at=time.time(),
        )
        log.info("local: started pilot %s as pid %d (%s)", worker_id, proc.pid, batch_id)
        return SubmittedWorker(worker_id=worker_id, batch_id=batch_id, log_path=str(log_path))

    def _pilot_dir(self) -> Path:
        """Where pilots run (their job work directories go below it), apart from the logs."""
        path = self.workdir / "pilots"
        path.mkdir(exist_ok=True)
        return path

    def _alive(self, bid: str, entry: _Entry) -> bool:
        proc = self._procs.get(bid)
        if proc is not None:
            return proc.poll() is None
        return entry.start_ticks != 0 and _start_ticks(entry.pid) == entry.start_ticks

    def _refresh(self, bid: str, entry: _Entry) -> bool:
        """Record the end of a worker if it ended; True when the entry changed."""
        if self._alive(bid, entry):
            return False
        proc = self._procs.pop(bid, None)
        rc: int | None = proc.returncode if proc is not None else None
        file_rc = _read_exit_file(Path(entry.exit_file))
        if file_rc is not None:
            rc = file_rc  # the wrapper's record of the pilot's own exit code
        if entry.cancelled:
            native = "cancelled"
        elif rc is None:
            native = "vanished"
        elif rc in PILOT_CLEAN_EXIT_CODES:
            native = "done"
        elif rc < 0:
            native = "signaled"
        else:
            native = "exit"
        entry.final_native, entry.exit_code, entry.ended_at = native, rc, time.time()
        return True

    def _kill_now(self, batch_ids: Sequence[str]) -> None:
        for bid in batch_ids:
            entry = self._entries.get(bid)
            if entry is not None and self._alive(bid, entry):
                _signal_group(entry.pid, signal.SIGKILL)
                proc = self._procs.get(bid)
                if proc is not None:
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        log.error("local: pid %d survived SIGKILL for 5 s", entry.pid)

    def _load(self) -> dict[str, _Entry]:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("local: unreadable state file %s (%s); starting empty", self.state_file, exc)
            return {}
        entries: dict[str, _Entry] = {}
        for bid, data in raw.get("workers", {}).items():
            try:
                entries[bid] = _Entry(**data)
            except TypeError:
                log.warning("local: skipping malformed state entry %s", bid)
        return entries

    def _save(self) -> None:
        horizon = time.time() - self.keep_final_s
        self._entries = {b: e for b, e in self._entries.items() if not (e.final_native and e.ended_at < horizon)}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"workers": {b: asdict(e) for b, e in self._entries.items()}}, indent=1))
        tmp.replace(self.state_file)


def _diag(native: str, rc: int | None) -> str:
    if native == "running":
        return ""
    if native == "vanished":
        return "process gone without an exit record"
    if native == "unknown-id":
        return "not submitted from this work directory"
    if native == "cancelled":
        return "cancelled by the factory" + (f", {describe_exit_code(rc)}" if rc is not None else "")
    return describe_exit_code(rc)


def _start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 if it does not exist).

    Together with the pid this identifies a process across pid reuse.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has ended; only its exit status is left
        return 0
    return int(fields[19])


def _read_exit_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        log.error("local: cannot signal process group %d: %s", pid, exc)
