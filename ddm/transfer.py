"""One verified file movement between two URLs, through the protocol plugins (no database here).

Between two XRootD servers the file goes server to server (third-party copy, ``xrdcp --tpc
only``); otherwise the DDM agent reads the source into a scratch file (checksumming the stream),
compares with the catalog, writes the destination. Either way it asks the destination for its own
size and adler32. Only when both match is the new replica good; a bad destination copy is deleted.
Failures carry PanDA's codes: 1099 (source missing/unreadable), 1171 (source content differs from
the catalog), 1137 (destination write failed), 1172 (destination checksum differs).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ailuro import errorcodes
from ailuro.errors import AiluroError, NotFound
from ddm.protocols import CopyResult, protocol_for
from ddm.protocols.xrootd import XRootDProtocol, split_root_url

log = logging.getLogger(__name__)


class TransferFailure(Exception):
    """A movement failed; ``retryable`` says whether trying again may help."""

    def __init__(
        self, code: int, message: str, *, retryable: bool = True, source_bad: bool = False, missing: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.source_bad = source_bad
        """The source replica is missing or corrupted (the catalog should stop using it)."""
        self.missing = missing
        """The storage answered that the file does not exist (not: could not be reached)."""


class Cancelled(Exception):
    """The request was withdrawn while it ran."""


@dataclass(frozen=True, kw_only=True)
class Expected:
    """What the catalog says the file is."""

    size: int
    adler32: str


def verify(url: str, expected: Expected, *, code: int = errorcodes.CHECKSUM_MISMATCH_STAGEOUT) -> None:
    """Ask the storage at ``url`` for size and adler32; ``TransferFailure`` unless both match."""
    try:
        protocol = protocol_for(url)
        size = protocol.stat(url).size
        adler = protocol.checksum(url)
    except NotFound as exc:
        raise TransferFailure(
            errorcodes.STAGEIN_FAILED, f"{url} is missing: {exc}", source_bad=True, missing=True
        ) from exc
    except AiluroError as exc:
        raise TransferFailure(errorcodes.STAGEIN_FAILED, f"cannot check {url}: {exc}") from exc
    if size != expected.size or adler != expected.adler32:
        raise TransferFailure(
            code,
            f"{url}: size {size}, adler32 {adler}; the catalog has size {expected.size}, adler32 {expected.adler32}",
            source_bad=True,
        )


def copy_verified(
    src_url: str,
    dst_url: str,
    expected: Expected,
    *,
    scratch: Path,
    cancelled: Callable[[], bool] = lambda: False,
) -> CopyResult:
    """Copy ``src_url`` to ``dst_url`` through ``scratch``, verifying adler32 at both ends.

    ``cancelled`` is polled between steps; when it turns true the destination copy (if any) is
    removed and :class:`Cancelled` is raised.
    """
    if _third_party_copy(src_url, dst_url, expected):
        if cancelled():
            _quiet_delete(dst_url)
            raise Cancelled(f"withdrawn while writing {dst_url}")
        return CopyResult(size=expected.size, adler32=expected.adler32, third_party=True)
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / f"xfer-{uuid.uuid4().hex}"
    try:
        try:
            got = protocol_for(src_url).copy_in(src_url, tmp)
        except NotFound as exc:
            raise TransferFailure(
                errorcodes.STAGEIN_FAILED, f"source {src_url} does not exist: {exc}", retryable=False, source_bad=True
            ) from exc
        except AiluroError as exc:
            raise TransferFailure(errorcodes.STAGEIN_FAILED, f"reading {src_url} failed: {exc}") from exc
        if got.size != expected.size or got.adler32 != expected.adler32:
            raise TransferFailure(
                errorcodes.CHECKSUM_MISMATCH_STAGEIN,
                f"source {src_url} has size {got.size}, adler32 {got.adler32}; "
                f"the catalog has size {expected.size}, adler32 {expected.adler32}",
                source_bad=True,
            )
        if cancelled():
            raise Cancelled(f"withdrawn before writing {dst_url}")
        dst = protocol_for(dst_url)
        try:
            dst.copy_out(tmp, dst_url)
        except AiluroError as exc:
            raise TransferFailure(errorcodes.STAGEOUT_FAILED, f"writing {dst_url} failed: {exc}") from exc
        try:
            verify(dst_url, expected)
        except TransferFailure as exc:
            _quiet_delete(dst_url)
            raise TransferFailure(errorcodes.CHECKSUM_MISMATCH_STAGEOUT, exc.message) from exc
        if cancelled():
            _quiet_delete(dst_url)
            raise Cancelled(f"withdrawn while writing {dst_url}")
        return got
    finally:
        tmp.unlink(missing_ok=True)


_NO_TPC: set[tuple[str, str]] = set()
"""(source server, destination server) pairs that refused third-party copy: not asked again."""


def _third_party_copy(src_url: str, dst_url: str, expected: Expected) -> bool:
    """Copy server to server (``xrdcp --tpc only``) when both ends are XRootD; False: not possible,
    copy through the scratch disk instead. The destination's checksum is compared with the catalog;
    on a mismatch the source is checked too, to tell a bad source from a bad copy."""
    src, dst = protocol_for(src_url), protocol_for(dst_url)
    if not isinstance(src, XRootDProtocol) or not isinstance(dst, XRootDProtocol):
        return False
    pair = (split_root_url(src_url)[0], split_root_url(dst_url)[0])
    if pair in _NO_TPC:
        return False
    try:
        dst.third_party_copy(src_url, dst_url)
    except NotFound as exc:
        raise TransferFailure(
            errorcodes.STAGEIN_FAILED, f"source {src_url} does not exist: {exc}", retryable=False, source_bad=True
        ) from exc
    except AiluroError as exc:
        log.info("no third-party copy %s -> %s (%s): copying through the agent", pair[0], pair[1], exc)
        _NO_TPC.add(pair)
        return False
    try:
        verify(dst_url, expected)
    except TransferFailure as exc:
        _quiet_delete(dst_url)
        verify(src_url, expected, code=errorcodes.CHECKSUM_MISMATCH_STAGEIN)  # raises when the source is bad
        raise TransferFailure(errorcodes.CHECKSUM_MISMATCH_STAGEOUT, exc.message) from exc
    return True


def _quiet_delete(url: str) -> None:
    with contextlib.suppress(AiluroError):
        protocol_for(url).delete(url)
