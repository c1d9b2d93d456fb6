"""``http(s)://`` and ``davs://`` (WebDAV over TLS): plain HTTP verbs, as an XrdHttp door or dCache serves.

GET streams into the work directory (checksummed on the way), PUT uploads, HEAD gives the size
and, with ``Want-Digest: adler32`` (RFC 3230), the server's checksum; DELETE removes. ``davs://`` is
``https://`` with the WebDAV name grid tools use. Standard library only, every call has a timeout.
"""

from __future__ import annotations

import http.client
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from ailuro.errors import InvalidArgument, NotFound
from ddm.checksum import CHUNK_SIZE, Adler32, adler32_of_file, normalize_adler32
from ddm.protocols.base import CopyResult, FileStat, Protocol, TransferError


class HttpProtocol(Protocol):
    """HTTP/WebDAV access; ``timeout_s`` bounds connecting and each socket read."""

    schemes = ("http", "https", "dav", "davs")

    def __init__(self, *, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        if parts.scheme not in self.schemes or not parts.hostname:
            raise InvalidArgument(f"not an HTTP URL: {url}", field="url")
        secure = parts.scheme in ("https", "davs")
        cls = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.hostname, parts.port, timeout=self.timeout_s), path

    def _request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, body: object = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn, path = self._connect(url)
        try:
            conn.request(method, path, body=body, headers=headers or {})  # type: ignore[arg-type]
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransferError(f"{method} {url} failed: {exc}") from exc
        if resp.status == 404:
            conn.close()
            raise NotFound(f"{method} {url}: 404 not found")
        if resp.status >= 300:
            text = resp.read(500).decode(errors="replace").strip()
            conn.close()
            raise TransferError(f"{method} {url}: HTTP {resp.status} {resp.reason} {text}")
        return conn, resp

    def stat(self, url: str) -> FileStat:
        """Size from HEAD's ``Content-Length``."""
        conn, resp = self._request("HEAD", url)
        conn.close()
        length = resp.getheader("Content-Length")
        if length is None:
            raise TransferError(f"HEAD {url}: no Content-Length")
        return FileStat(size=int(length))

    def checksum(self, url: str) -> str:
        """The server's adler32 from ``Digest: adler32=...`` (RFC 3230 ``Want-Digest``)."""
        conn, resp = self._request("HEAD", url, headers={"Want-Digest": "adler32"})
        conn.close()
        for item in (resp.getheader("Digest") or "").split(","):
            algo, _, value = item.strip().partition("=")
            if algo.lower() == "adler32" and value:
                return normalize_adler32(value)
        raise TransferError(f"HEAD {url}: the server gave no adler32 digest")

    def copy_in(self, url: str, local_path: Path) -> CopyResult:
        """GET into a temporary file, checksumming the stream, then rename."""
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = local_path.with_name(f".{local_path.name}.part-{uuid.uuid4().hex[:8]}")
        conn, resp = self._request("GET", url)
        digest = Adler32()
        try:
            with open(tmp, "wb") as out:
                while chunk := resp.read(CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
            length = resp.getheader("Content-Length")
            if length is not None and int(length) != digest.size:
                raise TransferError(f"GET {url}: got {digest.size} of {length} bytes")
            os.replace(tmp, local_path)
        except (OSError, http.client.HTTPException) as exc:
            raise TransferError(f"GET {url} failed: {exc}") from exc
        finally:
            conn.close()
            tmp.unlink(missing_ok=True)
        return CopyResult(size=digest.size, adler32=digest.hexdigest())

    def copy_out(self, local_path: Path, url: str) -> CopyResult:
        """PUT the file (the server stores it whole or not at all: XrdHttp and dCache write on close)."""
        local_path = Path(local_path)
        if not local_path.is_file():
            raise NotFound(f"no such file: {local_path}")
        size = local_path.stat().st_size
        adler = adler32_of_file(local_path)
        with open(local_path, "rb") as body:
            conn, resp = self._request("PUT", url, headers={"Content-Length": str(size)}, body=body)
            resp.read()
            conn.close()
        return CopyResult(size=size, adler32=adler)

    def delete(self, url: str) -> None:
        """DELETE; a missing file is fine."""
        try:
            conn, resp = self._request("DELETE", url)
            resp.read()
            conn.close()
        except NotFound:
            return
