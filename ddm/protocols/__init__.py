"""Protocol plugins, chosen by URL scheme.

``protocol_for(url)`` returns the plugin for ``url``'s scheme; a URL without ``://`` is a local
path and served by the ``file`` plugin. Built in: ``file://``, ``root://``/``xroot://`` (XRootD
client tools), ``http(s)://``/``dav(s)://`` (WebDAV), and gfal2 for ``gsiftp``/``srm``/``ftp`` when
its Python module imports. New plugins subclass :class:`ddm.protocols.base.Protocol` and call
:func:`register`; nothing else in the pilot or the agent changes.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ailuro.errors import InvalidArgument
from ddm.protocols.base import CopyResult, FileStat, Protocol, StageStatus, TransferError
from ddm.protocols.file import FileProtocol, path_to_url, url_to_path
from ddm.protocols.gfal import GfalProtocol, gfal2_available
from ddm.protocols.http import HttpProtocol
from ddm.protocols.xrootd import XRootDProtocol

__all__ = [
    "CopyResult",
    "FileProtocol",
    "FileStat",
    "GfalProtocol",
    "HttpProtocol",
    "Protocol",
    "StageStatus",
    "TransferError",
    "XRootDProtocol",
    "join_url",
    "path_to_url",
    "protocol_for",
    "register",
    "scheme_of",
    "url_to_path",
]

_FACTORIES: dict[str, Callable[[], Protocol]] = {}


def register(factory: Callable[[], Protocol], *schemes: str) -> None:
    """Serve ``schemes`` (default: the class's own ``schemes``) with plugins made by ``factory``."""
    names = schemes or getattr(factory, "schemes", ())
    if not names:
        raise ValueError("register() needs at least one scheme")
    for scheme in names:
        _FACTORIES[scheme.lower()] = factory


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case; ``""`` for a plain local path."""
    return urlsplit(url).scheme.lower() if "://" in url else ""


def protocol_for(url: str) -> Protocol:
    """The plugin serving ``url``; ``InvalidArgument`` when no plugin handles its scheme."""
    scheme = scheme_of(url)
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(s + "://" for s in _FACTORIES if s)) or "none"
        raise InvalidArgument(f"no protocol plugin for {scheme}:// (known: {known})", field="url")
    return factory()


def join_url(base: str, *parts: str) -> str:
    """``base`` with path components appended (empty components are skipped, no double slashes)."""
    pieces = [p.strip("/") for p in parts if p and p.strip("/")]
    if not pieces:
        return base
    return base.rstrip("/") + "/" + "/".join(pieces)


register(FileProtocol)
register(XRootDProtocol)
register(HttpProtocol)
if gfal2_available():
    register(GfalProtocol)
