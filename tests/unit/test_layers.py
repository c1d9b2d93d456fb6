"""The layers the import graph must show, checked over every Python file of the tree.

Every module's imports are read with :mod:`ast` — module-level and inside functions alike, since
a lazy import is still a dependency (only ``if TYPE_CHECKING:`` blocks, which never run, are left
out). Each file belongs to one layer; :data:`ALLOWED` is the one table of which layers a layer
may import, and :data:`THIRD_PARTY` says which libraries the layers a worker node runs may use.
A new top-level package fails :func:`test_every_file_has_a_layer` until it is given a row.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SDK_CORE = "sdk-core"  # ailuro/__init__, v1 stubs, errors, errorcodes, targets, vocabulary, names, backoff, aio,
# credentials
SDK = "sdk"  # the rest of ailuro/: client, jobspec, queues, ddm client, compat
DDM_KIT = "ddm-kit"  # ddm/__init__, checksum, protocols, storage: what the pilot stages files with
EVERYTHING = frozenset(
    {SDK_CORE, SDK, DDM_KIT, "ddm", "pilot", "dispatcher", "backends", "monitor", "cli", "loadtests", "tests"}
)

ALLOWED: dict[str, frozenset[str]] = {
    # layer          may import (its own layer included)
    SDK_CORE: frozenset({SDK_CORE}),
    SDK: frozenset({SDK_CORE, SDK}),
    DDM_KIT: frozenset({SDK_CORE, DDM_KIT}),
    "pilot": frozenset({SDK_CORE, DDM_KIT, "pilot"}),
    "ddm": frozenset({SDK_CORE, SDK, DDM_KIT, "ddm"}),
    "backends": frozenset({SDK_CORE, SDK, DDM_KIT, "backends"}),  # the factory reads the storage-root setting
    "dispatcher": frozenset({SDK_CORE, SDK, DDM_KIT, "ddm", "dispatcher"}),
    "monitor": frozenset({SDK_CORE, SDK, DDM_KIT, "ddm", "dispatcher", "monitor"}),  # reads the dispatcher's schema
    "cli-client": frozenset({SDK_CORE, SDK, "cli", "cli-client"}),  # ailuro ddm/task: API clients only
    "cli": EVERYTHING | {"cli-client"},
    "loadtests": EVERYTHING,
    "tests": EVERYTHING | {"cli-client", "examples"},
    "examples": frozenset({SDK_CORE, SDK}),
    "protos": frozenset(),
}
"""Which layers each layer may import: the SDK nothing server-side, the pilot only the SDK core and
the DDM kit, the dispatcher never a backend, the pilot, the monitor or the CLI; only the CLI, the
load tests and the tests may import anything."""

WORKER_NODE_LIBRARIES = frozenset({"grpc", "google.protobuf"})
"""The pilot's third-party dependencies: what a worker node installs next to the bundle."""

THIRD_PARTY: dict[str, frozenset[str]] = {
    SDK_CORE: WORKER_NODE_LIBRARIES,
    DDM_KIT: WORKER_NODE_LIBRARIES | {"gfal2"},  # gfal2: optional system binding, imported in a try
    "pilot": WORKER_NODE_LIBRARIES,
    SDK: WORKER_NODE_LIBRARIES | {"yaml"},  # yaml: only for job files, imported when one is read
}
"""Third-party libraries (beyond the standard library) the SDK and worker-node layers may import;
layers without a row here are not restricted (the servers and the CLI declare theirs in pyproject)."""

_SDK_CORE_FILES = {
    "__init__.py",
    "errors.py",
    "errorcodes.py",
    "targets.py",
    "vocabulary.py",
    "names.py",
    "backoff.py",
    "aio.py",
    "credentials.py",
}
_DDM_KIT_FILES = {"__init__.py", "checksum.py", "storage.py"}
_CLI_CLIENT_FILES = {"ailuro_cli/ddm.py", "ailuro_cli/task.py"}
_TOP_LAYERS = {
    "pilot": "pilot",
    "dispatcher": "dispatcher",
    "backends": "backends",
    "monitor": "monitor",
    "ailuro_cli": "cli",
    "loadtests": "loadtests",
    "tests": "tests",
    "examples": "examples",
    "protos": "protos",
}


def layer_of(rel: str) -> str | None:
    """The layer of the file at ``rel`` (a POSIX path relative to the repository root)."""
    parts = rel.split("/")
    if parts[0] == "ailuro":
        core = parts[1] == "v1" or (len(parts) == 2 and parts[1] in _SDK_CORE_FILES)
        return SDK_CORE if core else SDK
    if parts[0] == "ddm":
        kit = parts[1] == "protocols" or (len(parts) == 2 and parts[1] in _DDM_KIT_FILES)
        return DDM_KIT if kit else "ddm"
    if rel in _CLI_CLIENT_FILES:
        return "cli-client"
    return _TOP_LAYERS.get(parts[0])


def python_files() -> list[str]:
    """Every Python file in the repository (tracked or new), as POSIX paths."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(p for p in out if (ROOT / p).is_file())


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(rel: str) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of every import in the file, at any depth (``from m import a``
    yields ``m`` and ``m.a``); relative imports are resolved against the file's package."""
    package = ".".join(Path(rel).parent.parts)
    pending: list[ast.AST] = [ast.parse((ROOT / rel).read_bytes(), filename=rel)]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".strip(".")
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        pending.extend(ast.iter_child_nodes(node))


def first_party_file(dotted: str) -> str | None:
    """The repository file defining module ``dotted`` (longest module prefix), if first-party."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:end])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate.relative_to(ROOT).as_posix()
    return None


def _first_party_tops() -> set[str]:
    return {p.split("/")[0] for p in python_files() if "/" in p}


def test_every_file_has_a_layer() -> None:
    unplaced = [rel for rel in python_files() if layer_of(rel) is None]
    assert not unplaced, f"give these a layer in test_layers.ALLOWED: {unplaced}"
    assert set(ALLOWED) >= {layer_of(rel) for rel in python_files()}


def test_imports_follow_the_allowed_directions() -> None:
    tops = _first_party_tops()
    wrong: list[str] = []
    for rel in python_files():
        source = layer_of(rel)
        assert source is not None
        for line, name in imports_of(rel):
            if name.split(".")[0] not in tops:
                continue
            target_file = first_party_file(name)
            target = layer_of(target_file) if target_file else None
            if target is not None and target not in ALLOWED[source]:
                wrong.append(f"{rel}:{line}: {source} imports {name} ({target})")
    assert not wrong, "imports against the layer table:\n" + "\n".join(sorted(set(wrong)))


def test_worker_node_layers_use_only_their_libraries() -> None:
    tops = _first_party_tops()
    wrong: list[str] = []
    for rel in python_files():
        allowed = THIRD_PARTY.get(layer_of(rel) or "")
        if allowed is None:
            continue
        for line, name in imports_of(rel):
            top = name.split(".")[0]
            if top in tops or top in sys.stdlib_module_names or top == "__future__":
                continue
            if not any(name == lib or name.startswith(lib + ".") for lib in allowed):
                wrong.append(f"{rel}:{line}: imports {name}")
    assert not wrong, "third-party imports not available there:\n" + "\n".join(sorted(set(wrong)))


def test_the_table_rejects_what_it_should() -> None:
    """The checks above can fail: the table forbids the upward arrows this layering exists for."""
    assert layer_of("ailuro/client.py") == SDK and layer_of("ailuro/v1/pilot_pb2.py") == SDK_CORE
    assert layer_of("ddm/protocols/xrootd.py") == DDM_KIT and layer_of("ddm/locations.py") == "ddm"
    for source, target in [
        (SDK, "dispatcher"),
        (SDK_CORE, SDK),
        ("pilot", SDK),  # the pilot needs no jobspec/yaml, no client
        ("pilot", "ddm"),
        ("dispatcher", "backends"),
        ("dispatcher", "pilot"),
        ("dispatcher", "monitor"),
        ("dispatcher", "cli"),
        ("backends", "cli"),
        ("ddm", "cli"),
        ("monitor", "cli"),
        ("cli-client", "dispatcher"),
    ]:
        assert target not in ALLOWED[source], (source, target)
    assert first_party_file("ddm.protocols.protocol_for") == "ddm/protocols/__init__.py"
    assert first_party_file("grpc.aio") is None


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (
            "ailuro, ailuro.client, ailuro.ddm, ailuro.jobspec, ailuro.queues, ailuro.compat.panda, ailuro_cli.ddm, "
            "ailuro_cli.task",
            ("dispatcher", "backends", "pilot", "monitor", "ddm", "loadtests", "sqlalchemy"),
        ),
        ("pilot.__main__, pilot.main", ("ailuro_cli", "typer", "rich", "sqlalchemy", "yaml", "dispatcher")),
    ],
)
def test_importing_a_layer_loads_nothing_above_it(modules: str, forbidden: tuple[str, ...]) -> None:
    """What actually lands in ``sys.modules`` (catches an import the ``ast`` walk cannot see)."""
    code = (
        f"import sys\nimport {modules}\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_the_pilot_bundle_packs_only_what_the_pilot_may_import(tmp_path: Path) -> None:
    import zipfile

    from dispatcher.bundle import build_bundle

    with zipfile.ZipFile(build_bundle(tmp_path).path) as zf:
        packed = [n for n in zf.namelist() if n != "__main__.py"]
    assert {"pilot/__main__.py", "pilot/guard.py", "ailuro/v1/pilot_pb2.py", "ddm/protocols/xrootd.py"} <= set(packed)
    outside = [n for n in packed if layer_of(n) not in ALLOWED["pilot"]]
    assert not outside, outside
    assert "ailuro/client.py" not in packed and "ailuro/jobspec.py" not in packed
