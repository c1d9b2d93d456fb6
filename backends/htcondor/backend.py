"""The ``htcondor`` backend: one cluster of ``n`` procs per submission, via ``htcondor2``.

Queue options (``[queue.backend_options]``):

- ``condor_config``: path exported as ``CONDOR_CONFIG`` before the bindings load (process-wide:
  all HTCondor queues of one factory must agree on it).
- ``token_dir``: ``SEC_TOKEN_DIRECTORY`` holding the IDTOKEN the factory authenticates with
  (process-wide, like ``condor_config``).
- ``collector``: ``host:port`` of the collector to locate the schedd (default: from the config).
- ``schedd``: the schedd's name (default: the collector's only/local schedd).
- ``held_timeout_s``: a held pilot is removed after this long (default 600); it is then reported
  ``failed`` with the hold reason as its diag.
- ``request_cpus``, ``request_memory_mb``: default from the pilot spec.
- ``requirements``: a ClassAd expression.
- ``submit``: extra submit-description commands, e.g. ``{"+AccountingGroup" = "\\"group_compass\\""}``.
- ``shared_filesystem``: true (default) runs the wrapper in place (``should_transfer_files = NO``);
  false ships the wrapper and brings the logs back with HTCondor's file transfer.
- ``token_owner``: uid (or local user name) HTCondor runs this factory's jobs as, when the
  factory runs as root and its IDTOKEN maps it to that account: each worker's token file is
  given to it (still 0600), because the shadow reads ``transfer_input_files`` as the job's owner.

Pilot tokens (``PilotSpec.token_dir``) always travel by HTCondor's file transfer
(``transfer_input_files`` of the worker's own token file, ``should_transfer_files = YES``): the
file lands in the job's scratch directory, owned by whichever account runs the job, and the
wrapper reads it there. With a shared file system nothing else is transferred back (the logs
are streamed to their paths).
- common: ``command_env`` is ignored (no commands are run), ``keep_final_s``, ``job_dir``
  (``initialdir``; default ``<workdir>/pilots``).

The wrapper, the job directory and the log directory must exist at the same path for the
schedd (HTCondor checks ``initialdir`` on the submitting side).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ailuro.errors import InvalidArgument
from backends.base import (
    BatchBackend,
    PilotSpec,
    SubmittedWorker,
    WorkerState,
    WorkerStatus,
)
from backends.htcondor.parse import PROJECTION, batch_id, classify
from backends.ids import valid_batch_id
from backends.pilot_tokens import WORKER_TOKEN_FILE, give_to
from backends.wrapper import write_wrapper
from backends.wrapper.batch import check_options, number, str_map
from backends.wrapper.book import BookEntry, WorkerBook, settle, status_without_batch_record

log = logging.getLogger(__name__)

_OPTIONS = frozenset(
    {
        "condor_config",
        "token_dir",
        "collector",
        "schedd",
        "held_timeout_s",
        "request_cpus",
        "request_memory_mb",
        "requirements",
        "submit",
        "shared_filesystem",
        "token_owner",
    }
)


def _bindings(condor_config: str, token_dir: str) -> Any:
    """Import ``htcondor2`` configured for ``condor_config`` / ``token_dir`` (both process-wide)."""
    if condor_config:
        current = os.environ.get("CONDOR_CONFIG")
        os.environ["CONDOR_CONFIG"] = condor_config
    try:
        import htcondor2
    except ImportError as exc:
        raise InvalidArgument(
            "the htcondor backend needs the HTCondor Python bindings: pip install htcondor", field="backend"
        ) from exc
    if condor_config and current != condor_config:
        htcondor2.reload_config()
    if token_dir:
        htcondor2.param["SEC_TOKEN_DIRECTORY"] = token_dir
    return htcondor2


class HTCondorBackend(BatchBackend):
    """Pilots as HTCondor jobs (see the module docstring)."""

    name = "htcondor"
    poll_interval = 5.0

    def __init__(self, *, workdir: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> None:
        opts = check_options("htcondor", options or {}, _OPTIONS)
        for key in ("condor_config", "token_dir", "collector", "schedd", "requirements"):
            if not isinstance(opts.get(key, ""), str):
                raise InvalidArgument("must be a string", field=f"backend_options.{key}")
        self.options = opts
        self.extra_submit = str_map(opts, "submit")
        self.held_timeout_s = number(opts, "held_timeout_s", 600.0)
        self.request_cpus = int(number(opts, "request_cpus", 0))
        self.request_memory_mb = int(number(opts, "request_memory_mb", 0))
        self.shared_fs = bool(opts.get("shared_filesystem", True))
        self.token_owner = _uid(opts.get("token_owner"))
        self.htcondor = _bindings(opts.get("condor_config", ""), opts.get("token_dir", ""))
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.job_dir = Path(opts.get("job_dir") or self.workdir / "pilots")
        self.book = WorkerBook(self.workdir / "htcondor-workers.json", keep_final_s=number(opts, "keep_final_s", 86400))
        self._schedd: Any = None

    # --- contract ---------------------------------------------------------------------------

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedWorker]:
        """One cluster with ``queue n``; worker ``i`` is proc ``i`` (batch id ``<cluster>.<i>``)."""
        if n <= 0:
            return []
        log_dir = Path(spec.log_dir)
        for d in (log_dir, self.job_dir):
            _shared_dir(d)
        wrapper = write_wrapper(spec, self.workdir / "wrappers" / f"{spec.worker_id_prefix}.sh")
        _traversable(wrapper)
        if spec.token_dir is not None and self.token_owner is not None and os.geteuid() == 0:
            give_to([Path(spec.token_dir) / spec.worker_id(i) / WORKER_TOKEN_FILE for i in range(n)], self.token_owner)
        sub = self.htcondor.Submit(self.submit_description(spec, wrapper))
        result = self.schedd().submit(sub, count=n)
        cluster, first = int(result.cluster()), int(result.first_proc())
        workers = self.book.record_array(
            spec,
            log_dir,
            [f"{cluster}.{first + i}" for i in range(n)],
            [str(log_dir / f"{spec.worker_id(i)}.log") for i in range(n)],
        )
        log.info("htcondor: submitted cluster %d with %d pilot(s) for %s", cluster, n, spec.queue)
        return workers

    def submit_description(self, spec: PilotSpec, wrapper: Path) -> dict[str, str]:
        """The submit description of one submission (``$(ProcId)`` numbers the workers)."""
        log_base = Path(spec.log_dir) / f"{spec.worker_id_prefix}-$(ProcId)"
        desc = {
            "universe": "vanilla",
            "executable": str(wrapper),
            "arguments": f"{spec.worker_id_prefix}-$(ProcId)",
            "environment": '"AILURO_BATCH_ID=$(ClusterId).$(ProcId)"',
            "output": f"{log_base}.log",
            "error": f"{log_base}.err",
            "log": str(Path(spec.log_dir) / f"{spec.worker_id_prefix}.condor-events"),
            "initialdir": str(self.job_dir),
            "request_cpus": str(self.request_cpus or spec.cores or 1),
            "+AiluroWorker": f'"{spec.worker_id_prefix}-$(ProcId)"',
            "+AiluroQueue": f'"{spec.queue}"',
            "+AiluroFactory": f'"{spec.factory_id}"',
        }
        memory = self.request_memory_mb or spec.memory_mb
        if memory:
            desc["request_memory"] = f"{memory}MB"
        if spec.walltime_s:
            desc["periodic_remove"] = f"JobStatus == 2 && time() - EnteredCurrentStatus > {int(spec.walltime_s)}"
        if spec.token_dir is not None:
            # the worker's own token, into the job's scratch dir, readable by the job's account
            desc["transfer_input_files"] = str(
                Path(spec.token_dir) / f"{spec.worker_id_prefix}-$(ProcId)" / WORKER_TOKEN_FILE
            )
        if self.shared_fs and spec.token_dir is None:
            desc["should_transfer_files"] = "NO"
        elif self.shared_fs:
            # only the token travels: nothing comes back, the logs stream to their shared paths
            desc["should_transfer_files"] = "YES"
            desc["when_to_transfer_output"] = "ON_EXIT"
            desc["transfer_output_files"] = ""
            desc["stream_output"] = "True"
            desc["stream_error"] = "True"
        else:
            desc["should_transfer_files"] = "YES"
            desc["when_to_transfer_output"] = "ON_EXIT_OR_EVICT"
        if self.options.get("requirements"):
            desc["requirements"] = self.options["requirements"]
        desc.update(self.extra_submit)
        return desc

    def status(self, batch_ids: Sequence[str]) -> dict[str, WorkerStatus]:
        """The queue first, then the history; held pilots past ``held_timeout_s`` are removed."""
        if not batch_ids:
            return {}
        out: dict[str, WorkerStatus] = {}
        ask: list[str] = []
        for bid in batch_ids:
            entry = self.book.get(bid)
            if entry is not None and entry.final_state:
                out[bid] = WorkerStatus(
                    state=WorkerState(entry.final_state), exit_code=entry.exit_code, diag=entry.diag
                )
            elif _parse_id(bid) is None:
                out[bid] = WorkerStatus(state=WorkerState.MISSING, diag="not an HTCondor job id")
            else:
                ask.append(bid)
        if ask:
            constraint = _constraint(ask)
            ads = {batch_id(ad): ad for ad in self.schedd().query(constraint=constraint, projection=list(PROJECTION))}
            self._remove_long_held(ads)
            missing = [b for b in ask if b not in ads]
            if missing:
                history = self.schedd().history(_constraint(missing), projection=list(PROJECTION), match=len(missing))
                ads.update({batch_id(ad): ad for ad in history})
            for bid in ask:
                entry = self.book.get(bid)
                ad = ads.get(bid)
                if ad is not None:
                    st = classify(
                        ad,
                        cancelled=bool(entry and entry.cancelled),
                        removed_for_hold=entry.diag if entry and not entry.final_state else "",
                    )
                else:
                    st = self._from_evidence(entry)
                out[bid] = self._settle(entry, st)
        self.book.save()
        return out

    def cancel(self, batch_ids: Sequence[str]) -> None:
        """Remove the workers from the schedd; ones that already ended are ignored."""
        ids = self.book.mark_cancelled(self.own_ids(batch_ids))
        if not ids:
            return
        self.schedd().act(self.htcondor.JobAction.Remove, _constraint(ids), reason="cancelled by the Ailuro factory")

    # --- helpers ---------------------------------------------------------------------------

    def known_batch_ids(self) -> list[str]:
        """Workers this backend submitted whose end it has not seen yet."""
        return self.book.open_ids()

    def schedd(self) -> Any:
        """The schedd (located once through the collector)."""
        if self._schedd is None:
            htc = self.htcondor
            collector = htc.Collector(self.options["collector"]) if self.options.get("collector") else htc.Collector()
            name = self.options.get("schedd") or None
            location = (
                collector.locate(htc.DaemonType.Schedd, name) if name else collector.locate(htc.DaemonType.Schedd)
            )
            self._schedd = htc.Schedd(location)
        return self._schedd

    def _remove_long_held(self, ads: Mapping[str, Any]) -> None:
        now = time.time()
        stale = []
        for bid, ad in ads.items():
            if int(ad.get("JobStatus", 0)) != 5:
                continue
            held_for = now - float(ad.get("EnteredCurrentStatus") or now)
            if held_for >= self.held_timeout_s:
                reason = str(ad.get("HoldReason") or "no hold reason")
                self.book.update([bid], diag=f"removed after {held_for:.0f} s on hold: {reason}")
                stale.append(bid)
        if stale:
            log.warning("htcondor: removing %d pilot(s) held longer than %g s", len(stale), self.held_timeout_s)
            self.schedd().act(
                self.htcondor.JobAction.Remove, _constraint(stale), reason="held too long (Ailuro factory)"
            )

    def _from_evidence(self, entry: BookEntry | None) -> WorkerStatus:
        return status_without_batch_record(entry, system="the schedd's queue and history")

    def _settle(self, entry: BookEntry | None, st: WorkerStatus) -> WorkerStatus:
        return settle(entry, st)


def _uid(value: Any) -> int | None:
    """``token_owner`` as a uid (a user name is looked up on this host)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        import pwd

        try:
            return int(value) if value.isdigit() else pwd.getpwnam(value).pw_uid
        except KeyError:
            raise InvalidArgument(
                f"{value[:64]!r} is not a user on this host", field="backend_options.token_owner"
            ) from None
    raise InvalidArgument("must be a uid or a user name", field="backend_options.token_owner")


def _parse_id(bid: str) -> tuple[int, int] | None:
    if not valid_batch_id("htcondor", bid):
        return None
    cluster, _, proc = bid.partition(".")
    return int(cluster), int(proc)


def _constraint(batch_ids: Sequence[str]) -> str:
    """A ClassAd constraint matching exactly these ``cluster.proc`` ids."""
    by_cluster: dict[int, list[int]] = {}
    for bid in batch_ids:
        parsed = _parse_id(bid)
        if parsed is not None:
            by_cluster.setdefault(parsed[0], []).append(parsed[1])
    terms = [
        f"(ClusterId == {c} && ({' || '.join(f'ProcId == {p}' for p in sorted(procs))}))"
        for c, procs in sorted(by_cluster.items())
    ]
    return " || ".join(terms) or "false"


def _shared_dir(path: Path) -> None:
    """Create ``path`` writable by the job's owner.

    HTCondor refuses to run jobs as root, so a factory running as root submits as an ordinary
    user (its token's identity): the job must be able to write its logs and work directories.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        path.chmod(0o1777)
        _traversable(path)


def _traversable(path: Path) -> None:
    """Let other users reach ``path`` (o+x on its parents, o+rx on the file), when we own them."""
    if os.geteuid() != 0:
        return
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001 | (0o004 if parent == path else 0))
        except OSError:
            break
