"""``file://`` URLs and plain local paths: storage on a (possibly shared) POSIX file system."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ailuro.errors import InvalidArgument, NotFound
from ddm.checksum import CHUNK_SIZE, Adler32, adler32_of_file
from ddm.protocols.base import CopyResult, FileStat, Protocol, TransferError


def url_to_path(url: str, *, schemes: tuple[str, ...] = ("file",)) -> Path:
    """The local path of a ``file://`` URL or a plain path.

    Accepts ``file:///abs/path``, ``file://localhost/abs/path`` and ``/abs/path`` or ``rel/path``;
    a ``file://`` URL naming another host is refused because it cannot be read locally.
    ``schemes`` lets plugins built on local paths accept their own scheme.
    """
    if "://" not in url:
        return Path(url)
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise InvalidArgument(f"not a file URL: {url}", field="url")
    if parts.netloc not in ("", "localhost"):
        raise InvalidArgument(f"file URL on another host cannot be read here: {url}", field="url")
    return Path(unquote(parts.path))


def path_to_url(path: str | Path) -> str:
    """The canonical ``file://`` URL of a local path (made absolute)."""
    return Path(path).absolute().as_uri()


def _stream_copy(src: Path, dst: Path) -> CopyResult:
    """Copy ``src`` to ``dst`` atomically (temporary name, fsync, rename), checksumming on the way."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part-{uuid.uuid4().hex[:8]}")
    digest = Adler32()
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK_SIZE):
                digest.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dst)
    except FileNotFoundError as exc:
        tmp.unlink(missing_ok=True)
        if not src.exists():
            raise NotFound(f"no such file: {src}") from exc
        raise TransferError(f"copy {src} -> {dst} failed: {exc}") from exc
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TransferError(f"copy {src} -> {dst} failed: {exc}") from exc
    return CopyResult(size=digest.size, adler32=digest.hexdigest())


class FileProtocol(Protocol):
    """Local (or network-mounted) file system access."""

    schemes = ("file", "")

    def path_of(self, url: str) -> Path:
        """The local path a URL of this plugin names."""
        return url_to_path(url, schemes=tuple(s for s in self.schemes if s))

    def stat(self, url: str) -> FileStat:
        """Size of the file; ``NotFound`` when missing or not a regular file."""
        path = self.path_of(url)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise NotFound(f"no such file: {path}") from exc
        except OSError as exc:
            raise TransferError(f"stat {path} failed: {exc}") from exc
        if not path.is_file():
            raise NotFound(f"not a regular file: {path}")
        return FileStat(size=st.st_size)

    def checksum(self, url: str) -> str:
        """adler32 of the file's content."""
        path = self.path_of(url)
        try:
            return adler32_of_file(path)
        except FileNotFoundError as exc:
            raise NotFound(f"no such file: {path}") from exc
        except OSError as exc:
            raise TransferError(f"reading {path} failed: {exc}") from exc

    def copy_in(self, url: str, local_path: Path) -> CopyResult:
        """Copy the file into ``local_path``."""
        return _stream_copy(self.path_of(url), Path(local_path))

    def copy_out(self, local_path: Path, url: str) -> CopyResult:
        """Copy ``local_path`` to the URL's path."""
        return _stream_copy(Path(local_path), self.path_of(url))

    def delete(self, url: str) -> None:
        """Remove the file if present."""
        path = self.path_of(url)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise TransferError(f"delete {path} failed: {exc}") from exc
