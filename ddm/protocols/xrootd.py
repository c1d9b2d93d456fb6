"""``root://`` / ``xroot://`` URLs through the XRootD command-line client (``xrdcp``, ``xrdfs``).

The CLI (Debian ``xrootd-client``) rather than the Python bindings: every operation is then a
subprocess with a hard timeout that can be killed (a withdrawn transfer, a stuck server), and the
errors carry the tool's own message. The client's reconnect loop is shortened through its
environment (``XRD_CONNECTIONRETRY`` and friends): by default a refused connection is retried for
minutes, which would make a missing server look like a hang instead of an error.

Uploads go to a temporary name and are renamed once complete (``xrdfs mv``), so a reader never
sees a partial file under the final name; ``--posc`` removes the temporary file if the client dies.
Checksums are the server's (``xrdfs query checksum``, ``xrootd.chksum adler32``).

Tape (bring-online): ``xrdfs prepare -s`` asks the server to stage a file and answers a request
id; ``xrdfs query prepare ID PATH`` answers, per file, whether it exists, is on tape, is online
(on the disk buffer) and why its recall failed, in the JSON EOS-CTA returns (and FTS polls).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ailuro.errors import InvalidArgument, NotFound
from ddm.checksum import adler32_of_file, normalize_adler32
from ddm.protocols.base import CopyResult, FileStat, Protocol, StageStatus, TransferError

CLIENT_ENV = {
    "XRD_CONNECTIONRETRY": "1",
    "XRD_CONNECTIONWINDOW": "5",
    "XRD_REQUESTTIMEOUT": "120",
    "XRD_STREAMTIMEOUT": "60",
}
"""Client settings: fail fast on an unreachable server (the agent retries with backoff instead)."""

_NOT_FOUND_MARKERS = ("[3011]", "no such file", "No such file")
MAX_PREPARE_ANSWER = 1 << 20
"""Bytes of a ``query prepare`` answer read (it is one small JSON document per request)."""
MAX_REQUEST_ID = 255
"""Characters of a prepare request id kept (the catalog column's size)."""


@dataclass(frozen=True, kw_only=True)
class CommandResult:
    """What one client command did."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


def split_root_url(url: str) -> tuple[str, str]:
    """``root://host:port//a/b`` -> (``root://host:port``, ``/a/b``); ``InvalidArgument`` if malformed."""
    parts = urlsplit(url)
    if parts.scheme not in ("root", "xroot") or not parts.netloc:
        raise InvalidArgument(f"not an XRootD URL: {url}", field="url")
    path = "/" + parts.path.lstrip("/")
    if path == "/":
        raise InvalidArgument(f"XRootD URL without a path: {url}", field="url")
    return f"{parts.scheme}://{parts.netloc}", path


class XRootDProtocol(Protocol):
    """XRootD access through ``xrdcp``/``xrdfs``; ``timeout_s`` bounds every command."""

    schemes = ("root", "xroot")
    can_prepare = True

    def __init__(self, *, timeout_s: float = 600.0) -> None:
        self.timeout_s = timeout_s

    @staticmethod
    def available() -> bool:
        """Whether the XRootD client tools are installed."""
        return shutil.which("xrdcp") is not None and shutil.which("xrdfs") is not None

    def run(self, argv: list[str], *, timeout_s: float | None = None) -> CommandResult:
        """Run one client command with the fail-fast environment; never raises for rc != 0."""
        env = {**os.environ, **CLIENT_ENV}
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=timeout_s or self.timeout_s, check=False
            )
        except FileNotFoundError as exc:
            raise TransferError(f"{argv[0]} is not installed (apt-get install xrootd-client)") from exc
        except subprocess.TimeoutExpired as exc:
            raise TransferError(f"{' '.join(argv)} timed out after {exc.timeout:.0f} s") from exc
        return CommandResult(argv=tuple(argv), rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)

    @staticmethod
    def _fail(res: CommandResult, what: str) -> None:
        text = (res.stderr.strip() or res.stdout.strip()).replace("\n", " ")
        message = f"{what} failed (rc {res.rc}): {text}"
        if any(m in text for m in _NOT_FOUND_MARKERS):
            raise NotFound(message)
        raise TransferError(message)

    def stat(self, url: str) -> FileStat:
        """Size from ``xrdfs stat``; ``NotFound`` when missing."""
        server, path = split_root_url(url)
        res = self.run(["xrdfs", server, "stat", path])
        if res.rc != 0:
            self._fail(res, f"stat {url}")
        for line in res.stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Size":
                return FileStat(size=int(value.strip()))
        raise TransferError(f"stat {url}: no size in the answer {res.stdout!r}")

    def checksum(self, url: str) -> str:
        """The server's adler32 (``xrdfs query checksum``)."""
        server, path = split_root_url(url)
        res = self.run(["xrdfs", server, "query", "checksum", path])
        if res.rc != 0:
            self._fail(res, f"checksum {url}")
        words = res.stdout.split()
        if len(words) < 2 or words[0].lower() != "adler32":
            raise TransferError(f"checksum {url}: unexpected answer {res.stdout.strip()!r}")
        return normalize_adler32(words[1])

    def copy_in(self, url: str, local_path: Path) -> CopyResult:
        """Download to a temporary name next to ``local_path``, checksum it, then rename."""
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = local_path.with_name(f".{local_path.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            res = self.run(["xrdcp", "--nopbar", "--force", url, str(tmp)])
            if res.rc != 0:
                self._fail(res, f"copy {url} -> {local_path}")
            size = tmp.stat().st_size
            adler = adler32_of_file(tmp)
            os.replace(tmp, local_path)
        finally:
            tmp.unlink(missing_ok=True)
        return CopyResult(size=size, adler32=adler)

    def copy_out(self, local_path: Path, url: str) -> CopyResult:
        """Upload under a temporary name (``--posc``), then ``xrdfs mv`` to the final name."""
        local_path = Path(local_path)
        if not local_path.is_file():
            raise NotFound(f"no such file: {local_path}")
        size = local_path.stat().st_size
        adler = adler32_of_file(local_path)
        server, path = split_root_url(url)
        parent, _, name = path.rpartition("/")
        tmp_path = f"{parent}/.{name}.part-{uuid.uuid4().hex[:8]}"
        res = self.run(["xrdcp", "--nopbar", "--force", "--posc", "--path", str(local_path), server + "/" + tmp_path])
        if res.rc != 0:
            self.run(["xrdfs", server, "rm", tmp_path], timeout_s=30)
            self._fail(res, f"copy {local_path} -> {url}")
        # mv does not replace an existing file: remove the old copy first (a replaced replica)
        self.run(["xrdfs", server, "rm", path], timeout_s=60)
        res = self.run(["xrdfs", server, "mv", tmp_path, path])
        if res.rc != 0:
            self.run(["xrdfs", server, "rm", tmp_path], timeout_s=30)
            self._fail(res, f"rename {tmp_path} -> {path} on {server}")
        return CopyResult(size=size, adler32=adler)

    def third_party_copy(self, src_url: str, dst_url: str) -> None:
        """``xrdcp --tpc only``: the destination server pulls the file from the source; no byte passes
        through this host. Written under a temporary name and renamed, like :meth:`copy_out`.

        ``TransferError`` when either server does not do third-party copy (``ofs.tpc``): the caller
        then copies through its own disk.
        """
        server, path = split_root_url(dst_url)
        split_root_url(src_url)
        parent, _, name = path.rpartition("/")
        tmp_path = f"{parent}/.{name}.part-{uuid.uuid4().hex[:8]}"
        res = self.run(["xrdcp", "--nopbar", "--force", "--tpc", "only", src_url, server + "/" + tmp_path])
        if res.rc != 0:
            self.run(["xrdfs", server, "rm", tmp_path], timeout_s=30)
            self._fail(res, f"third-party copy {src_url} -> {dst_url}")
        self.run(["xrdfs", server, "rm", path], timeout_s=60)
        res = self.run(["xrdfs", server, "mv", tmp_path, path])
        if res.rc != 0:
            self.run(["xrdfs", server, "rm", tmp_path], timeout_s=30)
            self._fail(res, f"rename {tmp_path} -> {path} on {server}")

    def prepare(self, url: str) -> str:
        """``xrdfs prepare -s``: the server stages the file; its request id."""
        server, path = split_root_url(url)
        res = self.run(["xrdfs", server, "prepare", "-s", path], timeout_s=120)
        if res.rc != 0:
            self._fail(res, f"prepare {url}")
        words = res.stdout.split()
        if len(words) != 1 or len(words[0]) > MAX_REQUEST_ID or not words[0].isprintable():
            raise TransferError(f"prepare {url}: unexpected answer {res.stdout[:200]!r}")
        return words[0]

    def stage_status(self, url: str, request_id: str) -> StageStatus:
        """``xrdfs query prepare``: the server's answer for ``url`` in request ``request_id``."""
        server, path = split_root_url(url)
        res = self.run(["xrdfs", server, "query", "prepare", request_id, path], timeout_s=120)
        if res.rc != 0:
            self._fail(res, f"query prepare {url}")
        return parse_prepare_answer(res.stdout[:MAX_PREPARE_ANSWER], path, url=url)

    def delete(self, url: str) -> None:
        """``xrdfs rm``; a missing file is fine."""
        server, path = split_root_url(url)
        res = self.run(["xrdfs", server, "rm", path])
        if res.rc != 0:
            try:
                self._fail(res, f"delete {url}")
            except NotFound:
                return


def parse_prepare_answer(text: str, path: str, *, url: str) -> StageStatus:
    """The entry for ``path`` in a ``query prepare`` answer (EOS-CTA's JSON:
    ``{"responses": [{"path", "path_exists", "on_tape", "online", "error_text"}, ...]}``).

    ``TransferError`` names what is wrong when the answer is not that (a server without a
    bring-online service answers plain text).
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TransferError(f"query prepare {url}: not a JSON answer: {text[:200]!r}") from exc
    responses = doc.get("responses") if isinstance(doc, dict) else None
    if not isinstance(responses, list):
        raise TransferError(f"query prepare {url}: no 'responses' list in {text[:200]!r}")
    for entry in responses:
        if isinstance(entry, dict) and entry.get("path") == path:
            flags = {k: entry.get(k) for k in ("path_exists", "online", "on_tape")}
            if not all(isinstance(v, bool) for v in flags.values()):
                raise TransferError(
                    f"query prepare {url}: path_exists/online/on_tape must be booleans: {entry!r}"[:500]
                )
            error = entry.get("error_text", "")
            return StageStatus(
                exists=flags["path_exists"],
                online=flags["online"],
                on_tape=flags["on_tape"],
                error=str(error)[:1000] if error else "",
            )
    raise TransferError(f"query prepare {url}: the answer does not mention {path}")
