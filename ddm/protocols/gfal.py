"""Optional plugin over gfal2 (``import gfal2``), for schemes no built-in plugin serves.

gfal2's Python module comes from Debian's ``python3-gfal2`` (pip ``gfal2-python`` does not build
against bookworm's gfal2); it is importable from a venv only when linked in or when the venv has
``--system-site-packages``. When it imports, :func:`register_if_available` serves ``gsiftp://``,
``srm://`` and ``ftp://`` with it; ``file``, ``root`` and ``http(s)``/``davs`` keep their own plugins.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ailuro.errors import NotFound
from ddm.checksum import adler32_of_file, normalize_adler32
from ddm.protocols.base import CopyResult, FileStat, Protocol, TransferError

GFAL_SCHEMES = ("gsiftp", "srm", "ftp")
_ENOENT = 2


def _gfal2() -> Any:
    import gfal2  # type: ignore[import-not-found]  # optional, system package

    return gfal2


def gfal2_available() -> bool:
    """Whether the gfal2 Python module imports here."""
    try:
        _gfal2()
    except ImportError:
        return False
    return True


class GfalProtocol(Protocol):
    """Any scheme gfal2 has a plugin for; copies verify adler32 on both ends (``checksum_mode.both``)."""

    schemes = GFAL_SCHEMES

    def __init__(self, *, timeout_s: int = 600) -> None:
        self.gfal2 = _gfal2()
        self.ctx = self.gfal2.creat_context()
        self.timeout_s = timeout_s

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.gfal2.GError as exc:
            if getattr(exc, "code", None) == _ENOENT:
                raise NotFound(f"{what}: {exc}") from exc
            raise TransferError(f"{what}: {exc}") from exc

    def stat(self, url: str) -> FileStat:
        """Size from ``gfal2 stat``."""
        return FileStat(size=int(self._call(f"stat {url}", self.ctx.stat, url).st_size))

    def checksum(self, url: str) -> str:
        """The endpoint's ADLER32."""
        return normalize_adler32(self._call(f"checksum {url}", self.ctx.checksum, url, "ADLER32"))

    def _copy(self, src: str, dst: str) -> None:
        params = self.ctx.transfer_parameters()
        params.overwrite = True
        params.create_parent = True
        params.timeout = self.timeout_s
        params.set_checksum(self.gfal2.checksum_mode.both, "ADLER32", "")
        self._call(f"copy {src} -> {dst}", self.ctx.filecopy, params, src, dst)

    def copy_in(self, url: str, local_path: Path) -> CopyResult:
        """gfal copy to a local temporary file, then rename."""
        local_path = Path(local_path)
        tmp = local_path.with_name(f".{local_path.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            self._copy(url, tmp.absolute().as_uri())
            result = CopyResult(size=tmp.stat().st_size, adler32=adler32_of_file(tmp))
            tmp.replace(local_path)
        finally:
            tmp.unlink(missing_ok=True)
        return result

    def copy_out(self, local_path: Path, url: str) -> CopyResult:
        """gfal copy from the local file (gfal2 compares the checksums of both ends)."""
        local_path = Path(local_path)
        if not local_path.is_file():
            raise NotFound(f"no such file: {local_path}")
        result = CopyResult(size=local_path.stat().st_size, adler32=adler32_of_file(local_path))
        self._copy(local_path.absolute().as_uri(), url)
        return result

    def delete(self, url: str) -> None:
        """``unlink``; a missing file is fine."""
        try:
            self._call(f"delete {url}", self.ctx.unlink, url)
        except NotFound:
            return
