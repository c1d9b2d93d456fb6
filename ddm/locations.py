"""Storage locations are resolved, never trusted: a ``pfn`` is accepted only inside a configured SE.

A file's location (``pfn``) is data a submitter or a pilot chose. Before any server-side process
(the dispatcher's GetJobLog, the monitor's log pages) opens one, :meth:`StorageLocations.resolve`
checks it against the storage elements the operator configured: the same scheme, the same host
(and port) and a path under the endpoint's path. The path is normalised first (percent-decoded;
``.``/``..`` segments, NUL and control characters refused outright, repeated slashes collapsed)
and, for ``file://``, the real path (symlinks followed) must still lie under the real path of the
endpoint. Anything else is refused with an ``InvalidArgument`` naming the field and nothing more:
not whether the path exists, not what it contains, not the location itself.

:func:`open_regular_file` is the one way to open a resolved local location: it does not block on a
FIFO or a device, refuses anything but a regular file, and re-checks, after opening, that the file
it got is still inside the storage element (a symlink swapped in between check and open).

This module imports only the SDK (``ailuro``), so the dispatcher and the monitor both use it
without importing each other.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ailuro.errors import FailedPrecondition, InvalidArgument
from ailuro.queues import StorageElementConfig

SCHEME_ALIASES = {"xroot": "root", "dav": "http", "davs": "https"}
"""Schemes that name the same access method as another (compared after this mapping)."""
DEFAULT_PORTS = {"http": 80, "https": 443, "root": 1094}
"""Ports a URL may leave out: ``host`` and ``host:<default>`` are the same endpoint."""
REMOTE_SCHEMES = frozenset({"root", "http", "https"})
"""Schemes resolved by host and path (after :data:`SCHEME_ALIASES`); ``file`` is resolved locally."""
OUTSIDE = "is not inside a configured storage element"
"""The one message for every refused location, so the refusal tells nothing about the host."""


@dataclass(frozen=True, kw_only=True)
class StorageArea:
    """One configured place files may be read from: an SE endpoint split into comparable parts."""

    se: str
    """Storage element name (or a label such as ``storage root`` for a configured directory)."""
    scheme: str
    """Canonical scheme (``file``, ``root``, ``http``, ``https``)."""
    host: str
    """Lower-case ``host:port`` (default port filled in); empty for ``file``."""
    path: str
    """Normalised absolute path prefix (``/`` allowed for a whole server)."""


@dataclass(frozen=True, kw_only=True)
class Location:
    """A location that resolved inside a storage area: what may be opened, and how."""

    se: str
    """The storage element it lies on."""
    scheme: str
    """Canonical scheme, as in :class:`StorageArea`."""
    host: str
    """``host:port`` for remote schemes, empty for ``file``."""
    url: str
    """The canonical URL rebuilt from the checked parts (open this, never the original string)."""
    path: str
    """The normalised path; for ``file`` the real path on this host."""
    root: str
    """The storage area's path (for ``file``: its real path), for re-checks after opening."""


def _bad(field: str) -> InvalidArgument:
    return InvalidArgument(OUTSIDE, field=field)


def _clean_segments(raw_path: str, field: str) -> list[str]:
    """Path segments of a percent-decoded path; ``..``, ``.``, NUL and control characters refused."""
    path = unquote(raw_path)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path) or "\\" in path:
        raise _bad(field)
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise _bad(field)
    return segments


def _host_of(scheme: str, netloc: str, field: str) -> str:
    """``host:port`` in lower case with the default port filled in; userinfo refused."""
    if "@" in netloc or not netloc:
        raise _bad(field)
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:
        raise _bad(field) from None
    host = (parts.hostname or "").lower()
    if not host:
        raise _bad(field)
    return f"{host}:{port or DEFAULT_PORTS.get(scheme, 0)}"


def _split(url: str, field: str) -> tuple[str, str, list[str]]:
    """``(canonical scheme, host, segments)`` of a URL or an absolute local path."""
    if not url or "\x00" in url:
        raise _bad(field)
    if "://" not in url:
        if not url.startswith("/"):
            raise _bad(field)
        return "file", "", _clean_segments(url, field)
    parts = urlsplit(url)
    scheme = SCHEME_ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise _bad(field)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _bad(field)
        return "file", "", _clean_segments(parts.path, field)
    if scheme not in REMOTE_SCHEMES:
        raise _bad(field)
    return scheme, _host_of(scheme, parts.netloc, field), _clean_segments(parts.path, field)


def _inside(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def _real(path: str) -> str:
    """The real path (symlinks followed, missing tails kept), normalised."""
    return posixpath.normpath(os.path.realpath(path))


class StorageLocations:
    """The configured storage areas and the resolver over them."""

    def __init__(self, areas: Iterable[StorageArea]) -> None:
        self.areas = tuple(areas)

    @classmethod
    def from_config(
        cls, storage: Iterable[StorageElementConfig] = (), *, roots: Iterable[Path | str] = ()
    ) -> StorageLocations:
        """Areas from ``[[storage]]`` endpoints plus local directories (a storage root, log roots)."""
        areas: list[StorageArea] = []
        for se in storage:
            for endpoint in se.endpoints:
                areas.append(area_of(se.name, endpoint))
        for root in roots:
            areas.append(area_of("storage root", str(Path(root).absolute())))
        return cls(areas)

    @property
    def configured(self) -> bool:
        """Whether any storage is configured at all (with none, every location is refused)."""
        return bool(self.areas)

    def resolve(self, url: str, *, field: str = "pfn") -> Location:
        """The location ``url`` names if it lies inside a configured area; else ``InvalidArgument``.

        The error names ``field`` and says only that the location is outside configured storage:
        the same words whether the path exists or not.
        """
        scheme, host, segments = _split(url, field)
        path = "/" + "/".join(segments)
        if scheme == "file":
            real = _real(path)
            for area in self.areas:
                if area.scheme == "file":
                    root = _real(area.path)
                    if _inside(real, root):
                        return Location(
                            se=area.se, scheme="file", host="", url=Path(real).as_uri(), path=real, root=root
                        )
            raise _bad(field)
        for area in self.areas:
            if area.scheme == scheme and area.host == host and _inside(path, area.path):
                sep = "/" if scheme == "root" else ""
                url_out = f"{scheme}://{host}{sep}{quote(path)}"
                return Location(se=area.se, scheme=scheme, host=host, url=url_out, path=path, root=area.path)
        raise _bad(field)


def area_of(se: str, endpoint: str) -> StorageArea:
    """The storage area of one configured endpoint (``InvalidArgument`` naming the SE if malformed)."""
    where = f"storage[{se}].endpoints"
    scheme, host, segments = _split(endpoint, where)
    return StorageArea(se=se, scheme=scheme, host=host, path="/" + "/".join(segments))


def open_regular_file(location: Location) -> int:
    """A read-only descriptor of a resolved ``file`` location; the caller closes it.

    Opened non-blocking (a FIFO or a device cannot hang the caller) and without following a final
    symlink; then the open file itself must be a regular file whose real path is still inside the
    storage area (``/proc/self/fd`` tells where the descriptor really points). Failures raise
    ``FailedPrecondition`` (not a regular file, moved out) or ``FileNotFoundError``.
    """
    if location.scheme != "file":
        raise ValueError(f"not a local location: {location.scheme}")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(location.path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        # ELOOP (a symlink appeared) and the like: say no more than "not a regular file"
        raise FailedPrecondition("is not a regular file in storage", field="pfn") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FailedPrecondition("is not a regular file in storage", field="pfn")
        proc = f"/proc/self/fd/{fd}"
        if os.path.exists(proc) and not _inside(posixpath.normpath(os.readlink(proc)), location.root):
            raise FailedPrecondition(OUTSIDE, field="pfn")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
