"""The protocol-plugin contract: what every storage access method (file, root, davs, ...) provides.

A plugin is chosen by the URL scheme (see :mod:`ddm.protocols`); its methods are blocking and meant
to be run in a worker thread by asynchronous callers (the pilot uses ``asyncio.to_thread``).
Copies report the size and adler32 of the bytes they moved, so callers can compare them with the
catalog and with the destination's own checksum without reading the file a second time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ailuro.errors import Unavailable


class TransferError(Unavailable):
    """A copy, stat or delete failed for a reason other than a missing file (I/O error, refused, ...).

    Missing files raise ``ailuro.errors.NotFound`` instead, so callers can tell "not there" from
    "could not reach it" (PanDA: 1099 stage-in failed covers both, but retries differ).
    """


@dataclass(frozen=True, kw_only=True)
class FileStat:
    """What a storage endpoint says about one file."""

    size: int
    """Size in bytes."""


@dataclass(frozen=True, kw_only=True)
class CopyResult:
    """What a copy moved: the size and adler32 of the bytes written, computed while streaming."""

    size: int
    adler32: str
    third_party: bool = False
    """The servers copied the file between themselves (nothing passed through this host)."""


@dataclass(frozen=True, kw_only=True)
class StageStatus:
    """What a tape system says about one file of a bring-online (prepare) request."""

    exists: bool
    """The file exists at all (on tape or on the disk buffer); False: it is lost."""
    online: bool
    """A copy is on the disk buffer: it can be read now."""
    on_tape: bool
    """A copy is on tape."""
    error: str = ""
    """Why the recall failed (empty while it runs or when it succeeded)."""


class Protocol(ABC):
    """One access method for storage, keyed by URL scheme(s)."""

    schemes: ClassVar[tuple[str, ...]] = ()
    """URL schemes this plugin serves, e.g. ``("file",)`` or ``("root", "xroot")``."""
    can_prepare: ClassVar[bool] = False
    """Whether the protocol has a bring-online request (:meth:`prepare`, :meth:`stage_status`)."""

    def prepare(self, url: str) -> str:
        """Ask the storage to bring the file at ``url`` online (recall it from tape); the storage's
        request id. Protocols without such a request raise ``TransferError``."""
        raise TransferError(f"{type(self).__name__} has no bring-online request ({url})")

    def stage_status(self, url: str, request_id: str) -> StageStatus:
        """The state of ``url`` in the bring-online request ``request_id`` (see :meth:`prepare`)."""
        raise TransferError(f"{type(self).__name__} has no bring-online request ({url})")

    @abstractmethod
    def stat(self, url: str) -> FileStat:
        """Size of the file at ``url``; ``NotFound`` when it does not exist."""

    @abstractmethod
    def checksum(self, url: str) -> str:
        """adler32 of the file at ``url`` as the storage computes it (8 lowercase hex digits)."""

    @abstractmethod
    def copy_in(self, url: str, local_path: Path) -> CopyResult:
        """Copy the file at ``url`` to ``local_path`` (replacing it); ``NotFound`` when missing."""

    @abstractmethod
    def copy_out(self, local_path: Path, url: str) -> CopyResult:
        """Copy ``local_path`` to ``url``, creating directories as needed and replacing any old copy.

        The destination must never show a partial file under its final name.
        """

    @abstractmethod
    def delete(self, url: str) -> None:
        """Remove the file at ``url``; removing a missing file is not an error (idempotent)."""
