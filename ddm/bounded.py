"""Reading a resolved location with an overall deadline and a byte cap (server-side reads).

The protocol plugins (:mod:`ddm.protocols`) are made for pilots and the DDM agent, which trust their
storage and wait for it. A server reading a location on a user's behalf cannot: a FIFO, a stalled
mount or an HTTP server dripping one byte a second would hold its thread for ever, and a huge file
would fill its disk. :func:`fetch_bounded` copies a :class:`ddm.locations.Location` into a local file
with every blocking step bounded by what is left of one overall deadline, stops at ``max_bytes``,
and never echoes what a remote server answered (its body could be anything).
"""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from urllib.parse import quote

from ailuro.errors import DeadlineExceeded, NotFound, ResourceExhausted
from ddm.checksum import CHUNK_SIZE, Adler32
from ddm.locations import Location, open_regular_file
from ddm.protocols.base import CopyResult, TransferError
from ddm.protocols.xrootd import XRootDProtocol

READ_SIZE = 64 * 1024
"""Bytes asked for per read: small enough that a slow source returns often to check the deadline."""


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("reading the location took longer than the deadline", field="pfn")
    return left


def _too_big(max_bytes: int) -> ResourceExhausted:
    return ResourceExhausted(f"is larger than the {max_bytes}-byte limit for reading it back", field="pfn")


def fetch_bounded(location: Location, dest: Path, *, deadline: float, max_bytes: int) -> CopyResult:
    """Copy ``location`` to ``dest``; ``DeadlineExceeded`` past ``deadline`` (``time.monotonic()``),
    ``ResourceExhausted`` beyond ``max_bytes``, ``NotFound`` when missing, ``TransferError`` else."""
    _left(deadline)
    if location.scheme == "file":
        return _fetch_file(location, dest, deadline=deadline, max_bytes=max_bytes)
    if location.scheme in ("http", "https"):
        return _fetch_http(location, dest, deadline=deadline, max_bytes=max_bytes)
    if location.scheme == "root":
        return _fetch_root(location, dest, deadline=deadline, max_bytes=max_bytes)
    raise TransferError(f"{location.scheme}:// locations cannot be read back here")


def _fetch_file(location: Location, dest: Path, *, deadline: float, max_bytes: int) -> CopyResult:
    try:
        fd = open_regular_file(location)
    except FileNotFoundError:
        raise NotFound("no longer exists in storage", field="pfn") from None
    digest = Adler32()
    with os.fdopen(fd, "rb") as src, open(dest, "wb") as out:
        while chunk := src.read(CHUNK_SIZE):
            digest.update(chunk)
            if digest.size > max_bytes:
                raise _too_big(max_bytes)
            out.write(chunk)
            _left(deadline)
    return CopyResult(size=digest.size, adler32=digest.hexdigest())


def _fetch_http(location: Location, dest: Path, *, deadline: float, max_bytes: int) -> CopyResult:
    host, _, port = location.host.rpartition(":")
    cls = http.client.HTTPSConnection if location.scheme == "https" else http.client.HTTPConnection
    conn = cls(host, int(port), timeout=_left(deadline))
    digest = Adler32()
    try:
        conn.request("GET", quote(location.path))
        resp = conn.getresponse()
        if resp.status == 404:
            raise NotFound("no longer exists in storage", field="pfn")
        if resp.status != 200:
            raise TransferError(f"the storage element answered HTTP {resp.status}")
        length = resp.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise _too_big(max_bytes)
        with open(dest, "wb") as out:
            while True:
                if conn.sock is not None:
                    conn.sock.settimeout(_left(deadline))
                chunk = resp.read1(READ_SIZE)
                if not chunk:
                    break
                digest.update(chunk)
                if digest.size > max_bytes:
                    raise _too_big(max_bytes)
                out.write(chunk)
        if length is not None and length.isdigit() and int(length) != digest.size:
            raise TransferError(f"the storage element sent {digest.size} of {length} bytes")
    except TimeoutError:
        _left(deadline)
        raise TransferError("the storage element stopped answering") from None
    except (OSError, http.client.HTTPException) as exc:
        raise TransferError(f"reading from the storage element failed ({type(exc).__name__})") from None
    finally:
        conn.close()
    return CopyResult(size=digest.size, adler32=digest.hexdigest())


def _fetch_root(location: Location, dest: Path, *, deadline: float, max_bytes: int) -> CopyResult:
    if XRootDProtocol(timeout_s=_left(deadline)).stat(location.url).size > max_bytes:
        raise _too_big(max_bytes)
    result = XRootDProtocol(timeout_s=_left(deadline)).copy_in(location.url, dest)
    if result.size > max_bytes:
        dest.unlink(missing_ok=True)
        raise _too_big(max_bytes)
    return result
