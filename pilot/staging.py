"""Moving a job's files: inputs into the work directory, outputs and the log to storage.

All functions are blocking (they copy files) and are run in a worker thread by the job task.
Every failure is a :class:`StagingError` carrying the PanDA error code the final report uses.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ailuro import errorcodes
from ailuro.errors import AiluroError, NotFound
from ailuro.v1 import job_pb2
from ddm.checksum import normalize_adler32
from ddm.protocols import protocol_for
from ddm.storage import StorageResolver
from pilot import sandbox

FILE_STATUS_READY = "ready"
"""Input present in the work directory (PanDA's file status)."""
FILE_STATUS_TRANSFERRED = "transferred"
"""Output stored at its destination with size and checksum verified."""
FILE_STATUS_FAILED = "failed"
"""Output or log that could not be stored (or was never produced)."""


class StagingError(Exception):
    """A file could not be moved; ``code`` is the PanDA error number (1099, 1137, 1171, 1172)."""

    def __init__(self, code: int, diag: str) -> None:
        super().__init__(diag)
        self.code = code
        self.diag = diag


def input_url(f: job_pb2.File, resolver: StorageResolver) -> str:
    """Where an input is read from: its ``pfn`` if given, else its place on ``source_se``."""
    if f.pfn:
        return f.pfn
    return resolver.file_url(f.source_se, lfn=f.lfn, scope=f.scope, field="source_se")


def output_url(f: job_pb2.File, job: job_pb2.Job, resolver: StorageResolver) -> str:
    """Where an output or log goes: the ``pfn`` the dispatcher chose (DDM queues), else its place on
    its ``destination_se``, else the job's, else the default SE."""
    if f.pfn:
        return f.pfn
    return resolver.file_url(f.destination_se or job.destination_se, lfn=f.lfn, scope=f.scope)


def stage_in(f: job_pb2.File, workdir: Path, resolver: StorageResolver, logger: logging.Logger) -> job_pb2.File:
    """Copy one input into ``workdir/<lfn>`` and verify it against the size/adler32 the job gives.

    Raises ``StagingError`` with 1099 (missing/unreadable/size mismatch) or 1171 (adler32 mismatch).
    """
    try:
        local = sandbox.workdir_file(workdir, f.lfn)
    except sandbox.UnsafeName as exc:
        raise StagingError(errorcodes.STAGEIN_FAILED, f"bad lfn: {exc}") from exc
    try:
        url = input_url(f, resolver)
        result = protocol_for(url).copy_in(url, local)
    except NotFound as exc:
        raise StagingError(errorcodes.STAGEIN_FAILED, f"input {f.lfn} not found: {exc}") from exc
    except AiluroError as exc:
        raise StagingError(errorcodes.STAGEIN_FAILED, f"input {f.lfn} could not be staged in: {exc}") from exc
    if f.size and result.size != f.size:
        raise StagingError(
            errorcodes.STAGEIN_FAILED, f"input {f.lfn}: size {result.size} differs from the expected {f.size}"
        )
    if f.adler32:
        try:
            expected = normalize_adler32(f.adler32)
        except ValueError as exc:
            raise StagingError(errorcodes.STAGEIN_FAILED, f"input {f.lfn}: {exc}") from exc
        if result.adler32 != expected:
            raise StagingError(
                errorcodes.CHECKSUM_MISMATCH_STAGEIN,
                f"input {f.lfn}: adler32 {result.adler32} differs from the expected {expected} ({url})",
            )
    logger.info("staged in %s from %s (%d bytes, adler32 %s)", f.lfn, url, result.size, result.adler32)
    staged = job_pb2.File()
    staged.CopyFrom(f)
    staged.size, staged.adler32, staged.pfn, staged.status = result.size, result.adler32, url, FILE_STATUS_READY
    return staged


def stage_out(
    f: job_pb2.File, local: Path, job: job_pb2.Job, resolver: StorageResolver, logger: logging.Logger
) -> job_pb2.File:
    """Store ``local`` as output/log ``f`` and verify size and adler32 as the destination reports them.

    Returns the file with size, adler32, pfn and status ``transferred``. Raises ``StagingError``
    with 1137 (not produced, destination unknown or copy failed) or 1172 (checksum or size differs
    at the destination; the bad copy is removed).
    """
    if not local.is_file():
        raise StagingError(errorcodes.STAGEOUT_FAILED, f"output {f.lfn} was not produced in the work directory")
    try:
        url = output_url(f, job, resolver)
        protocol = protocol_for(url)
        result = protocol.copy_out(local, url)
        remote_size = protocol.stat(url).size
        remote_adler32 = protocol.checksum(url)
    except AiluroError as exc:
        raise StagingError(errorcodes.STAGEOUT_FAILED, f"output {f.lfn} could not be stored: {exc}") from exc
    if remote_size != result.size or remote_adler32 != result.adler32:
        try:
            protocol.delete(url)
        except AiluroError as exc:
            logger.warning("could not remove the bad copy %s: %s", url, exc)
        raise StagingError(
            errorcodes.CHECKSUM_MISMATCH_STAGEOUT,
            f"output {f.lfn}: destination has size {remote_size}, adler32 {remote_adler32}; "
            f"the local file has size {result.size}, adler32 {result.adler32} ({url})",
        )
    logger.info("staged out %s to %s (%d bytes, adler32 %s)", f.lfn, url, result.size, result.adler32)
    stored = job_pb2.File()
    stored.CopyFrom(f)
    stored.size, stored.adler32, stored.pfn, stored.status = result.size, result.adler32, url, FILE_STATUS_TRANSFERRED
    return stored
