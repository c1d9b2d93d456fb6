"""Reading gzip tarballs someone else made (job logs) without trusting their size.

A 255 KB gzip file can unpack to a quarter of a GiB, and a tarball can hold a million tiny
members. :func:`walk` streams through one (``tarfile`` stream mode over a decompressor that counts
what it produces), hands the bytes of the wanted member to a sink chunk by chunk, and stops with
``ResourceExhausted`` naming the limit once more than ``max_unpacked_bytes`` were decompressed or
more than ``max_members`` members were seen. Memory stays at one chunk plus the member headers.
"""

from __future__ import annotations

import contextlib
import gzip
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ailuro.errors import DeadlineExceeded, FailedPrecondition, ResourceExhausted

CHUNK = 256 * 1024
MAX_NAME = 1024
"""Members with longer paths are read past but not listed."""


@dataclass(frozen=True, kw_only=True)
class TarLimits:
    """How much of a tarball is read before giving up."""

    max_unpacked_bytes: int = 128 * 1024 * 1024
    """Decompressed bytes walked through (all members, headers included)."""
    max_members: int = 10_000
    """Members (files, directories, links) listed."""


@dataclass(frozen=True, kw_only=True)
class TarScan:
    """What a walk saw: base names of the regular files, and the member given to the sink."""

    names: tuple[str, ...]
    found: str | None
    size: int


class _Counted:
    """A read-only stream over a gzip file that counts decompressed bytes and checks the deadline."""

    def __init__(self, raw: BinaryIO, limits: TarLimits, deadline: float | None) -> None:
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._limits = limits
        self._deadline = deadline
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        data = self._gz.read(CHUNK if n is None or n < 0 else min(n, CHUNK))
        self.total += len(data)
        if self.total > self._limits.max_unpacked_bytes:
            raise ResourceExhausted(
                f"unpacks to more than {self._limits.max_unpacked_bytes} bytes, the limit for reading a log",
                field="pfn",
            )
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise DeadlineExceeded("reading the log took longer than the deadline", field="pfn")
        return data


def base_name(member: str) -> str:
    """The file name of a member path (``job/payload.stdout`` -> ``payload.stdout``)."""
    return PurePosixPath(member).name


def walk(
    source: Path | BinaryIO,
    *,
    limits: TarLimits,
    want: Callable[[str], bool] | None = None,
    sink: Callable[[bytes], None] | None = None,
    deadline: float | None = None,
    stop_at_match: bool = False,
) -> TarScan:
    """Stream through the gzip tarball ``source`` (a path or an open binary file).

    The first regular member for which ``want(name)`` holds is fed to ``sink`` in chunks.
    ``FailedPrecondition`` if it is not a readable tarball.
    """
    names: list[str] = []
    found: str | None = None
    size = 0
    members = 0
    try:
        with open(source, "rb") if isinstance(source, Path) else contextlib.nullcontext(source) as raw:
            counted = _Counted(raw, limits, deadline)
            with tarfile.open(fileobj=counted, mode="r|") as tar:  # type: ignore[call-overload]
                for info in tar:
                    members += 1
                    if members > limits.max_members:
                        raise ResourceExhausted(
                            f"has more than {limits.max_members} members, the limit for reading a log", field="pfn"
                        )
                    tar.members = []  # stream mode keeps every header otherwise
                    if not info.isfile():
                        continue
                    if len(info.name) <= MAX_NAME:  # pax headers allow names of any length
                        names.append(base_name(info.name))
                    if found is None and want is not None and want(info.name):
                        found, size = info.name, _feed(tar, info, sink)
                        if stop_at_match:
                            break
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        raise FailedPrecondition("is not a readable gzip tarball", field="pfn") from None
    return TarScan(names=tuple(sorted(set(names))), found=found, size=size)


def _feed(tar: tarfile.TarFile, info: tarfile.TarInfo, sink: Callable[[bytes], None] | None) -> int:
    handle = tar.extractfile(info)
    if handle is None:
        return 0
    total = 0
    while chunk := handle.read(CHUNK):
        total += len(chunk)
        if sink is not None:
            sink(chunk)
    return total
