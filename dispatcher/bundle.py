"""The pilot bundle: the pilot as one zipapp the dispatcher serves to wrappers that download it.

:func:`build_bundle` packs the ``pilot`` package and exactly the modules it imports (followed
through the import statements, also those inside functions: the few ``ailuro`` SDK modules and
stubs, the ``ddm`` checksum/protocol/storage kit) into ``ailuro-pilot.pyz`` with a ``__main__``
that runs ``python -m pilot``, and ``--bundle-version`` that prints the bundle's version. The archive is deterministic
(sorted entries, fixed timestamps), so the same sources always give the same sha256. The version
is the package version plus a digest of the sources (``0.1.0+src.1a2b3c4d5e6f``), so a wrapper
can tell two different builds of one release apart.

The bundle carries Ailuro's own code only: the node's Python needs the pilot's two dependencies,
grpcio and protobuf, installed (nothing else: ``tests/integration/test_bundle_bare_venv.py``
runs a job with the bundle in a venv holding only those).

:func:`start_bundle_server` serves ``GET /pilot/bundle.pyz`` and ``GET /pilot/bundle.json``
(``{"version", "sha256", "size", "url_path"}``) over a tiny asyncio HTTP/1.0 server.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import io
import json
import logging
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ENTRY_PACKAGE = "pilot"
"""The package the bundle runs; every module of it is packed, and what those modules import."""
_SKIP_DIRS = {"__pycache__"}
_EPOCH = (1980, 1, 1, 0, 0, 0)

BUNDLE_PATH = "/pilot/bundle.pyz"
INFO_PATH = "/pilot/bundle.json"

_MAIN = '''"""Ailuro pilot bundle {version}: ``python ailuro-pilot.pyz --server ... --queue ...``.

The pilot starts helper scripts by file path (its payload guard), which a zip cannot provide:
the bundle unpacks itself once next to the archive (``<bundle>.d``) and runs from there.
"""
import os
import sys
import zipfile

VERSION = {version!r}

if sys.argv[1:] == ["--bundle-version"]:
    print(VERSION)
    sys.exit(0)
archive = os.path.abspath(sys.argv[0])
target = archive + ".d"
if not os.path.isfile(os.path.join(target, ".complete")):
    tmp = "%s.%d.tmp" % (target, os.getpid())
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp)
    open(os.path.join(tmp, ".complete"), "w").close()
    try:
        os.rename(tmp, target)
    except OSError:  # another pilot on this node unpacked it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
sys.path[:] = [target] + [p for p in sys.path if os.path.abspath(p) != archive]
from pilot.__main__ import main

sys.exit(main())
'''


@dataclass(frozen=True, kw_only=True)
class BundleInfo:
    """A built bundle: where it is and what a wrapper checks it against."""

    version: str
    sha256: str
    size: int
    path: Path

    def as_json(self) -> dict[str, object]:
        """What ``/pilot/bundle.json`` returns."""
        data = asdict(self)
        data.pop("path")
        data["url_path"] = BUNDLE_PATH
        return data


def _source_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _module_file(root: Path, dotted: str) -> Path | None:
    """The source file of module ``dotted`` under ``root`` (a package's ``__init__.py``), if any."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(path: Path, module: str) -> set[str]:
    """Dotted names ``path`` imports when it runs (function-level imports too; not the
    ``if TYPE_CHECKING:`` blocks, which never run)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    pending: list[ast.AST] = [ast.parse(path.read_bytes(), filename=str(path))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return names


def _files(root: Path) -> list[Path]:
    """The entry package's modules and, transitively, every first-party module they import,
    with the ``__init__.py`` of each package on the way."""
    todo = [
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted((root / ENTRY_PACKAGE).rglob("*.py"))
        if not _SKIP_DIRS & set(p.parts)
    ]
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        path = _module_file(root, module)
        if module in seen or path is None:
            continue  # standard library, third party, or an attribute of a module (``from m import f``)
        seen[module] = path
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imported_names(path, module))
    return sorted(set(seen.values()), key=lambda p: p.relative_to(root).as_posix())


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("ailuro")
    except Exception:  # not installed (running from a plain checkout)
        from ailuro import __version__

        return __version__


def build_bundle(out_dir: Path, *, source_root: Path | None = None) -> BundleInfo:
    """Write ``ailuro-pilot.pyz`` into ``out_dir`` and return its version and sha256."""
    root = source_root or _source_root()
    files = _files(root)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    version = f"{_package_version()}+src.{digest.hexdigest()[:12]}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in [("__main__.py", _MAIN.format(version=version).encode())] + [
            (p.relative_to(root).as_posix(), p.read_bytes()) for p in files
        ]:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    payload = b"#!/usr/bin/env python3\n" + buf.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "ailuro-pilot.pyz"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(payload)
    tmp.chmod(0o755)
    tmp.replace(path)
    return BundleInfo(version=version, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), path=path)


class _BundleHandler:
    """Answers the two GET paths; anything else is 404 (or 405 for other methods)."""

    def __init__(self, info: BundleInfo) -> None:
        self.info = info
        self.body = info.path.read_bytes()
        self.meta = json.dumps(info.as_json()).encode()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = path.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path == BUNDLE_PATH:
                status, ctype, body = "200 OK", "application/zip", self.body
            elif path == INFO_PATH:
                status, ctype, body = "200 OK", "application/json", self.meta
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            head = (
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"X-Ailuro-Bundle-Version: {self.info.version}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if method == "GET" else b""))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def start_bundle_server(
    host: str = "127.0.0.1", port: int = 0, *, bundle_dir: Path | None = None
) -> tuple[asyncio.Server, int]:
    """Build the bundle (in ``bundle_dir``, default a temporary directory) and serve it.

    Returns the started server and the port it listens on (``port=0``: an ephemeral one).
    The caller closes the server (``server.close(); await server.wait_closed()``).
    """
    out = bundle_dir or Path(tempfile.mkdtemp(prefix="ailuro-bundle-"))
    info = await asyncio.to_thread(build_bundle, out)
    server = await asyncio.start_server(_BundleHandler(info), host, port)
    bound = server.sockets[0].getsockname()[1]
    log.info(
        "pilot bundle %s (sha256 %s) served on http://%s:%d%s", info.version, info.sha256, host, bound, BUNDLE_PATH
    )
    return server, int(bound)
