"""The ``lsf`` backend: one ``bsub -J "<name>[1-n]"`` job array per submission.

**Real LSF was not exercised**: this adapter is tested against the command-level emulator in
``tests/lsf_emulator`` (LSF's documented ``bsub``/``bjobs``/``bkill`` behaviour and formats).

Queue options (``[queue.backend_options]``):

- ``queue``: the LSF queue (``-q``, e.g. ``8nh``); default: LSF's default queue.
- ``slots``: ``-n`` (default: the pilot spec's cores).
- ``memory_mb``: ``-M`` (in the unit the cluster's ``LSF_UNIT_FOR_LIMITS`` sets; default: the spec's).
- ``runlimit_min``: ``-W`` in minutes (default: the spec's walltime).
- ``bsub_args``: extra bsub options, e.g. ``["-R", "select[type==X86_64]", "-P", "compass"]``.
- ``job_name``: default ``ailuro-<queue>``.
- ``bjobs_format``: ``auto`` (``-json``, falling back to the table when it is refused), ``json``, ``table``.
- common: ``bin_dir`` (where bsub/bjobs/bkill live), ``command_env`` (e.g. ``LSF_ENVDIR``),
  ``command_timeout_s``, ``keep_final_s``, ``job_dir`` (``-cwd``; default ``<workdir>/pilots``).
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
from backends.lsf.parse import BJOBS_FIELDS, LSFRecord, classify, parse_bjobs_json, parse_bjobs_table, parse_bsub
from backends.wrapper import write_wrapper
from backends.wrapper.batch import CommandRunner, check_options, number, str_list
from backends.wrapper.book import BookEntry, WorkerBook, settle, status_without_batch_record

log = logging.getLogger(__name__)

_OPTIONS = frozenset({"queue", "slots", "memory_mb", "runlimit_min", "bsub_args", "job_name", "bjobs_format"})


class LSFBackend(BatchBackend):
    """Pilots as LSF job array elements (see the module docstring)."""

    name = "lsf"
    poll_interval = 5.0

    def __init__(self, *, workdir: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> None:
        opts = check_options("lsf", options or {}, _OPTIONS)
        for key in ("queue", "job_name"):
            if not isinstance(opts.get(key, ""), str):
                raise InvalidArgument("must be a string", field=f"backend_options.{key}")
        self.options = opts
        self.bsub_args = str_list(opts, "bsub_args")
        self.bjobs_format = opts.get("bjobs_format", "auto")
        if self.bjobs_format not in ("auto", "json", "table"):
            raise InvalidArgument("must be auto, json or table", field="backend_options.bjobs_format")
        self.slots = int(number(opts, "slots", 0))
        self.memory_mb = int(number(opts, "memory_mb", 0))
        self.runlimit_min = int(number(opts, "runlimit_min", 0))
        self.runner = CommandRunner.from_options(opts)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.job_dir = Path(opts.get("job_dir") or self.workdir / "pilots")
        self.book = WorkerBook(self.workdir / "lsf-workers.json", keep_final_s=number(opts, "keep_final_s", 86400))

    # --- contract ---------------------------------------------------------------------------

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedWorker]:
        """One job array ``[1-n]``; worker ``i`` is element ``i + 1`` (batch id ``<job>[<i+1>]``)."""
        if n <= 0:
            return []
        log_dir = Path(spec.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        wrapper = write_wrapper(spec, self.workdir / "wrappers" / f"{spec.worker_id_prefix}.sh")
        result = self.runner.run("bsub", self.bsub_argv(n, spec, wrapper))
        job_id = parse_bsub(result.stdout)
        workers = self.book.record_array(
            spec,
            log_dir,
            [f"{job_id}[{i + 1}]" for i in range(n)],
            [str(log_dir / f"{spec.worker_id_prefix}.lsf-{i + 1}.log") for i in range(n)],
        )
        log.info("lsf: submitted job array %s with %d pilot(s) for %s", job_id, n, spec.queue)
        return workers

    def bsub_argv(self, n: int, spec: PilotSpec, wrapper: Path) -> list[str]:
        """bsub's arguments for a submission (``%I`` in -o/-e is the element index, 1-based)."""
        name = self.options.get("job_name") or f"ailuro-{spec.queue}"
        # LSF numbers elements from 1 and cannot do arithmetic in file names: worker i logs to
        # <prefix>.lsf-<i+1>.log (the path reported as its log_path)
        log_pattern = Path(spec.log_dir) / f"{spec.worker_id_prefix}.lsf-%I.log"
        argv = ["-J", f"{name}[1-{n}]", "-o", str(log_pattern), "-e", str(log_pattern), "-cwd", str(self.job_dir)]
        if self.options.get("queue"):
            argv += ["-q", self.options["queue"]]
        slots = self.slots or spec.cores
        if slots:
            argv += ["-n", str(slots)]
        memory = self.memory_mb or spec.memory_mb
        if memory:
            argv += ["-M", str(memory)]
        minutes = self.runlimit_min or (-(-spec.walltime_s // 60) if spec.walltime_s else 0)
        if minutes:
            argv += ["-W", f"{minutes // 60}:{minutes % 60:02d}"]
        argv += [*self.bsub_args, "bash", str(wrapper)]
        return argv

    def status(self, batch_ids: Sequence[str]) -> dict[str, WorkerStatus]:
        """``bjobs -a`` for the workers' job ids; the wrapper's records for jobs LSF forgot."""
        out: dict[str, WorkerStatus] = {}
        ask: list[str] = []
        own = set(self.own_ids(batch_ids))
        for bid in batch_ids:
            entry = self.book.get(bid)
            if entry is not None and entry.final_state:
                out[bid] = WorkerStatus(
                    state=WorkerState(entry.final_state), exit_code=entry.exit_code, diag=entry.diag
                )
            elif bid not in own:
                out[bid] = WorkerStatus(state=WorkerState.MISSING, diag="not an LSF job id")
            else:
                ask.append(bid)
        if ask:
            records = self._bjobs(sorted({b.split("[", 1)[0] for b in ask}))
            for bid in ask:
                entry = self.book.get(bid)
                record = records.get(bid)
                if record is not None:
                    st = classify(record, cancelled=bool(entry and entry.cancelled))
                else:
                    st = self._from_evidence(entry)
                out[bid] = self._settle(entry, st)
            self.book.save()
        return out

    def cancel(self, batch_ids: Sequence[str]) -> None:
        """``bkill`` the workers; ones that already ended are ignored."""
        # only ids of LSF's form: never an option, and never "0" (bkill 0 kills every job of the user)
        ids = self.book.mark_cancelled(self.own_ids(batch_ids))
        if not ids:
            return
        result = self.runner.run("bkill", ids, check=False)
        if result.returncode != 0:
            log.warning("lsf: bkill %s: exit %d: %s", " ".join(ids), result.returncode, result.stderr.strip())

    # --- helpers ---------------------------------------------------------------------------

    def known_batch_ids(self) -> list[str]:
        """Workers this backend submitted whose end it has not seen yet."""
        return self.book.open_ids()

    def _bjobs(self, job_ids: Sequence[str]) -> dict[str, LSFRecord]:
        if self.bjobs_format != "table":
            result = self.runner.run("bjobs", ["-a", "-o", BJOBS_FIELDS, "-json", *job_ids], check=False)
            try:
                records, _missing = parse_bjobs_json(result.stdout)
                return records
            except ValueError as exc:
                if self.bjobs_format == "json":
                    raise CommandError(
                        f"unparsable bjobs output ({exc})",
                        argv=result.argv,
                        returncode=result.returncode,
                        stdout=result.stdout,
                        stderr=result.stderr,
                    ) from None
                log.warning("lsf: bjobs -json unusable (%s); using the table format from now on", exc)
                self.bjobs_format = "table"
        result = self.runner.run("bjobs", ["-a", "-w", *job_ids], check=False)
        if result.returncode not in (0, 255):
            raise CommandError(
                f"exit code {result.returncode}",
                argv=result.argv,
                returncode=result.returncode,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return parse_bjobs_table(result.stdout)

    def _from_evidence(self, entry: BookEntry | None) -> WorkerStatus:
        return status_without_batch_record(entry, system="bjobs")

    def _settle(self, entry: BookEntry | None, st: WorkerStatus) -> WorkerStatus:
        return settle(entry, st)
