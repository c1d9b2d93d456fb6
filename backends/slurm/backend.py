"""The ``slurm`` backend: one ``sbatch --parsable --array=0-(n-1)`` per submission.

Queue options (``[queue.backend_options]``):

- ``partition``, ``account``, ``qos``: passed as ``--partition`` / ``--account`` / ``--qos``.
- ``time_limit_min``: ``--time`` in minutes (default: the pilot spec's walltime, else the
  partition's default).
- ``memory_mb``, ``cores``: ``--mem`` / ``--cpus-per-task`` (default: the pilot spec's).
- ``directives``: extra sbatch options, e.g. ``["--constraint=ssd", "--exclusive"]``.
- ``job_name``: default ``ailuro-<queue>``.
- ``slurm_conf``: exported as ``SLURM_CONF`` to every Slurm command.
- ``squeue_format``: ``auto`` (JSON, falling back to text when this Slurm has no JSON), ``json``, ``text``.
- ``sacct``: where finished jobs are looked up once ``squeue`` forgot them: ``jobcomp``
  (``sacct -c``, the jobcomp/filetxt log, default), ``accounting`` (``sacct`` with slurmdbd) or
  ``none``.
- common: ``bin_dir``, ``command_env``, ``command_timeout_s``, ``keep_final_s``, ``job_dir``
  (where pilots start; default ``<workdir>/pilots``).

A worker that left ``squeue`` is classified from evidence, in this order: the accounting record
(by the element's own job id, remembered from ``squeue`` or written by the wrapper), then the
wrapper's exit record, then the factory's own cancel; with none of these it is ``missing``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ailuro.errors import InvalidArgument
from backends.base import (
    BatchBackend,
    CommandError,
    PilotSpec,
    SubmittedWorker,
    WorkerState,
    WorkerStatus,
)
from backends.ids import valid_batch_id
from backends.slurm.parse import (
    SlurmRecord,
    classify,
    parse_sacct,
    parse_sbatch,
    parse_squeue_json,
    parse_squeue_text,
)
from backends.wrapper import write_wrapper
from backends.wrapper.batch import CommandRunner, check_options, number, str_list
from backends.wrapper.book import BookEntry, WorkerBook, settle, status_without_batch_record
from backends.wrapper.evidence import read_evidence

log = logging.getLogger(__name__)

_OPTIONS = frozenset(
    {
        "partition",
        "account",
        "qos",
        "time_limit_min",
        "memory_mb",
        "cores",
        "directives",
        "job_name",
        "slurm_conf",
        "squeue_format",
        "sacct",
    }
)


class SlurmBackend(BatchBackend):
    """Pilots as Slurm job array elements (see the module docstring)."""

    name = "slurm"
    poll_interval = 5.0

    def __init__(self, *, workdir: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> None:
        opts = check_options("slurm", options or {}, _OPTIONS)
        for key in ("partition", "account", "qos", "job_name", "slurm_conf"):
            if not isinstance(opts.get(key, ""), str):
                raise InvalidArgument("must be a string", field=f"backend_options.{key}")
        self.options = opts
        self.directives = str_list(opts, "directives")
        self.squeue_format = opts.get("squeue_format", "auto")
        if self.squeue_format not in ("auto", "json", "text"):
            raise InvalidArgument("must be auto, json or text", field="backend_options.squeue_format")
        self.sacct_mode = opts.get("sacct", "jobcomp")
        if self.sacct_mode not in ("jobcomp", "accounting", "none"):
            raise InvalidArgument("must be jobcomp, accounting or none", field="backend_options.sacct")
        self.time_limit_min = int(number(opts, "time_limit_min", 0))
        self.memory_mb = int(number(opts, "memory_mb", 0))
        self.cores = int(number(opts, "cores", 0))
        self.runner = CommandRunner.from_options(opts, SLURM_CONF=opts.get("slurm_conf", ""))
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.job_dir = Path(opts.get("job_dir") or self.workdir / "pilots")
        self.book = WorkerBook(self.workdir / "slurm-workers.json", keep_final_s=number(opts, "keep_final_s", 86400))

    # --- contract ---------------------------------------------------------------------------

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedWorker]:
        """One job array of ``n`` elements; worker ``i`` is element ``i`` (batch id ``<job>_<i>``)."""
        if n <= 0:
            return []
        log_dir = Path(spec.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        wrapper = write_wrapper(spec, self.workdir / "wrappers" / f"{spec.worker_id_prefix}.sh")
        args = self.sbatch_args(n, spec, wrapper)
        result = self.runner.run("sbatch", args)
        job_id = parse_sbatch(result.stdout)
        workers = self.book.record_array(
            spec,
            log_dir,
            [f"{job_id}_{i}" for i in range(n)],
            [str(log_dir / f"{spec.worker_id(i)}.log") for i in range(n)],
        )
        log.info("slurm: submitted array %s with %d pilot(s) for %s", job_id, n, spec.queue)
        return workers

    def sbatch_args(self, n: int, spec: PilotSpec, wrapper: Path) -> list[str]:
        """The sbatch options for a submission (without the command name)."""
        args = [
            "--parsable",
            f"--array=0-{n - 1}",
            f"--job-name={self.options.get('job_name') or f'ailuro-{spec.queue}'}",
            f"--output={Path(spec.log_dir) / spec.worker_id_prefix}-%a.log",
            f"--chdir={self.job_dir}",
            "--export=ALL",
        ]
        for key, flag in (("partition", "--partition"), ("account", "--account"), ("qos", "--qos")):
            if self.options.get(key):
                args.append(f"{flag}={self.options[key]}")
        minutes = self.time_limit_min or (-(-spec.walltime_s // 60) if spec.walltime_s else 0)
        if minutes:
            args.append(f"--time={minutes}")
        memory = self.memory_mb or spec.memory_mb
        if memory:
            args.append(f"--mem={memory}M")
        cores = self.cores or spec.cores
        if cores > 1:
            args.append(f"--cpus-per-task={cores}")
        args.extend(self.directives)
        args.append(str(wrapper))
        return args

    def status(self, batch_ids: Sequence[str]) -> dict[str, WorkerStatus]:
        """``squeue`` first; for workers it no longer lists, ``sacct`` and the wrapper's records."""
        if not batch_ids:
            return {}
        live = self._squeue()
        out: dict[str, WorkerStatus] = {}
        gone: list[str] = []
        own = set(self.own_ids(batch_ids))
        for bid in batch_ids:
            entry = self.book.get(bid)
            if bid not in own:
                out[bid] = WorkerStatus(state=WorkerState.MISSING, diag="not a Slurm job id")
                continue
            record = live.get(bid)
            if record is not None:
                if entry is not None and record.native_id:
                    entry.native_id = record.native_id
                out[bid] = self._settle(bid, entry, classify(record, cancelled=bool(entry and entry.cancelled)))
            elif entry is not None and entry.final_state:
                out[bid] = WorkerStatus(
                    state=WorkerState(entry.final_state), exit_code=entry.exit_code, diag=entry.diag
                )
            else:
                gone.append(bid)
        if gone:
            accounted = self._sacct(gone)
            for bid in gone:
                out[bid] = self._settle(bid, self.book.get(bid), self._from_evidence(bid, accounted))
        self.book.save()
        return out

    def cancel(self, batch_ids: Sequence[str]) -> None:
        """``scancel`` the workers; ones that already ended are ignored."""
        ids = self.book.mark_cancelled(self.own_ids(batch_ids))
        if not ids:
            return
        # "--": the ids are checked already; this keeps them operands whatever they are
        result = self.runner.run("scancel", ["--", *ids], check=False)
        if result.returncode != 0:
            # scancel exits 1 for ids that already ended or were purged; report anything else
            log.warning("slurm: scancel %s: exit %d: %s", " ".join(ids), result.returncode, result.stderr.strip())

    # --- helpers ---------------------------------------------------------------------------

    def known_batch_ids(self) -> list[str]:
        """Workers this backend submitted whose end it has not seen yet."""
        return self.book.open_ids()

    def _squeue(self) -> dict[str, SlurmRecord]:
        if self.squeue_format != "text":
            try:
                result = self.runner.run("squeue", ["--json", "-t", "all", "--me"])
                return parse_squeue_json(result.stdout)
            except CommandError as exc:
                if self.squeue_format == "json" or exc.returncode is None:
                    raise
                log.warning("slurm: squeue --json failed (%s); using the text format from now on", exc)
                self.squeue_format = "text"
        result = self.runner.run("squeue", ["-h", "-t", "all", "--me", "-o", "%i|%A|%T|%r"])
        return parse_squeue_text(result.stdout)

    def _sacct(self, batch_ids: Sequence[str]) -> dict[str, SlurmRecord]:
        """Accounting records of workers ``squeue`` forgot, keyed by batch id."""
        if self.sacct_mode == "none":
            return {}
        if self.sacct_mode == "accounting":
            query = {bid: bid for bid in batch_ids}  # slurmdbd knows array elements by A_i
            args = ["-P", "-n", "-X", "-o", "jobid,state,exitcode", "-j", ",".join(query)]
        else:
            query = {}
            for bid in batch_ids:
                native = self._native_id(bid)
                if native:
                    query[native] = bid
            if not query:
                return {}
            args = ["-c", "-P", "-n", "-o", "jobid,state,exitcode", "-j", ",".join(query)]
        result = self.runner.run("sacct", args, check=False)
        if result.returncode != 0:
            log.warning("slurm: sacct failed (exit %d): %s", result.returncode, result.stderr.strip()[-300:])
            return {}
        return {query[k]: rec for k, rec in parse_sacct(result.stdout).items() if k in query}

    def _native_id(self, bid: str) -> str:
        """The element's own job id: remembered from squeue, or written by the wrapper."""
        entry = self.book.get(bid)
        if entry is None:
            return bid if _plain_job_id(bid) else ""
        if not entry.native_id:
            evidence = read_evidence(entry.log_dir, entry.worker_id)
            if evidence.native_id and _plain_job_id(evidence.native_id):
                entry.native_id = evidence.native_id
        return entry.native_id or (bid if _plain_job_id(bid) else "")

    def _from_evidence(self, bid: str, accounted: Mapping[str, SlurmRecord]) -> WorkerStatus:
        entry = self.book.get(bid)
        cancelled = bool(entry and entry.cancelled)
        record = accounted.get(bid)
        if record is not None:
            st = classify(record, cancelled=cancelled)
            return WorkerStatus(
                state=st.state, native_state=st.native_state, exit_code=st.exit_code, diag=f"{st.diag} (sacct)".strip()
            )
        return status_without_batch_record(entry, system="squeue and sacct")

    def _settle(self, bid: str, entry: BookEntry | None, st: WorkerStatus) -> WorkerStatus:
        """Remember a final state, so later polls answer without asking Slurm."""
        return settle(entry, st)


def _plain_job_id(text: str) -> bool:
    """A Slurm job id without an array suffix (what ``sacct -c -j`` takes)."""
    return valid_batch_id("slurm", text) and "_" not in text
