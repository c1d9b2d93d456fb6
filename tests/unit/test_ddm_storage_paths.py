"""Names from job definitions can never move a DDM write outside the storage root (issue 12, finding 8).

A ``destination_se``, ``scope`` or ``lfn`` with ``../``, an absolute path, NUL or control
characters used to be joined into the storage path as given: ``<root>/../../elsewhere``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ailuro.errors import InvalidArgument
from ailuro.v1 import job_pb2
from ddm.protocols import FileProtocol
from ddm.storage import StorageConfig, StorageResolver, se_file_url
from pilot.staging import StagingError, stage_out

HOSTILE_SE = ["../../escape", "..", ".", "a/../../escape", "a\\b", "ok\x00", "esc\x1b[2J", "new\nline"]
HOSTILE_NAMES = ["../../escape", "..", "/abs", "a\x00b", "tab\there", "x" * 256]


def _files_outside(tmp_path: Path, root: Path, source: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.is_file() and root not in p.parents and p != source]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[StorageResolver, Path, Path]:
    root = tmp_path / "storage"
    root.mkdir()
    source = tmp_path / "out.root"
    source.write_bytes(b"payload output")
    return StorageResolver(StorageConfig(storage_root=root, environ={})), root, source


@pytest.mark.parametrize("se", [*HOSTILE_SE, "ABSOLUTE"])
def test_a_hostile_destination_se_is_refused_and_writes_nothing_outside(
    setup: tuple[StorageResolver, Path, Path], tmp_path: Path, se: str
) -> None:
    resolver, root, source = setup
    if se == "ABSOLUTE":
        se = str(tmp_path / "absolute")
    with pytest.raises(InvalidArgument) as info:
        FileProtocol().copy_out(source, resolver.file_url(se, lfn="out.root", scope="user"))
    assert info.value.field == "destination_se"
    assert _files_outside(tmp_path, root, source) == []


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("which", ["lfn", "scope"])
def test_a_hostile_lfn_or_scope_is_refused(setup: tuple[StorageResolver, Path, Path], name: str, which: str) -> None:
    resolver, _, _ = setup
    parts = {"lfn": "out.root", "scope": "user", which: name}
    with pytest.raises(InvalidArgument) as info:
        resolver.file_url("DISK", **parts)
    assert info.value.field == which
    with pytest.raises(InvalidArgument):
        se_file_url("root://eos.example//eos/compass", **parts)


def test_the_pilot_stage_out_refuses_and_stays_inside(
    setup: tuple[StorageResolver, Path, Path], tmp_path: Path
) -> None:
    resolver, root, source = setup
    job = job_pb2.Job(job_name="j", destination_se="../../escape")
    f = job_pb2.File(lfn="out.root", type=job_pb2.FILE_TYPE_OUTPUT, scope="user")
    with pytest.raises(StagingError):
        stage_out(f, source, job, resolver, logging.getLogger("test"))
    assert _files_outside(tmp_path, root, source) == []
    # a plain name still works, inside the root
    job.destination_se = "DISK"
    stored = stage_out(f, source, job, resolver, logging.getLogger("test"))
    assert Path(stored.pfn.removeprefix("file://")) == root / "DISK" / "user" / "out.root"
