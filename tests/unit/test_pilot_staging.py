"""Stage-in and stage-out through ddm's file:// plugin, with size and adler32 verification."""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import pytest

from ailuro import errorcodes
from ailuro.v1 import job_pb2
from ddm.protocols import CopyResult, FileProtocol, path_to_url, register
from ddm.storage import StorageConfig, StorageResolver
from pilot.staging import StagingError, stage_in, stage_out

LOG = logging.getLogger("test")


class CorruptingFileProtocol(FileProtocol):
    """A real file:// copy whose destination is then damaged, as a faulty storage would do."""

    schemes = ("corruptfile",)

    def copy_out(self, local_path: Path, url: str) -> CopyResult:
        result = super().copy_out(local_path, url)
        with open(self.path_of(url), "r+b") as fh:
            first = fh.read(1)
            fh.seek(0)
            fh.write(bytes([first[0] ^ 0xFF]))
        return result


register(CorruptingFileProtocol)


@pytest.fixture
def resolver(tmp_path: Path) -> StorageResolver:
    return StorageResolver(
        StorageConfig(
            storage_root=tmp_path / "storage",
            endpoints={"BAD": "corruptfile://" + str(tmp_path / "bad")},
            environ={},
        )
    )


def _adler(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


def test_stage_in_by_pfn_and_by_source_se(tmp_path: Path, resolver: StorageResolver) -> None:
    data = os.urandom(5000)
    on_se = tmp_path / "storage" / "DISK" / "compass" / "in1.dat"
    on_se.parent.mkdir(parents=True)
    on_se.write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    f = job_pb2.File(
        lfn="in1.dat", scope="compass", source_se="DISK", type=job_pb2.FILE_TYPE_INPUT, adler32=_adler(data)
    )
    staged = stage_in(f, work, resolver, LOG)
    assert (work / "in1.dat").read_bytes() == data
    assert (staged.size, staged.adler32, staged.pfn, staged.status) == (
        len(data),
        _adler(data),
        path_to_url(on_se),
        "ready",
    )
    by_pfn = job_pb2.File(lfn="copy.dat", pfn=str(on_se), size=len(data), type=job_pb2.FILE_TYPE_INPUT)
    stage_in(by_pfn, work, resolver, LOG)
    assert (work / "copy.dat").read_bytes() == data


def test_stage_in_missing_is_1099(tmp_path: Path, resolver: StorageResolver) -> None:
    f = job_pb2.File(lfn="gone.dat", pfn=f"file://{tmp_path}/gone.dat", type=job_pb2.FILE_TYPE_INPUT)
    with pytest.raises(StagingError) as err:
        stage_in(f, tmp_path, resolver, LOG)
    assert err.value.code == errorcodes.STAGEIN_FAILED == 1099
    assert "not found" in err.value.diag


def test_stage_in_checksum_mismatch_is_1171(tmp_path: Path, resolver: StorageResolver) -> None:
    src = tmp_path / "src.dat"
    src.write_bytes(b"hello")
    work = tmp_path / "work"
    work.mkdir()
    f = job_pb2.File(lfn="x.dat", pfn=str(src), adler32="DEADBEEF", type=job_pb2.FILE_TYPE_INPUT)
    with pytest.raises(StagingError) as err:
        stage_in(f, work, resolver, LOG)
    assert err.value.code == errorcodes.CHECKSUM_MISMATCH_STAGEIN == 1171
    assert "deadbeef" in err.value.diag


def test_stage_in_size_mismatch_is_1099(tmp_path: Path, resolver: StorageResolver) -> None:
    src = tmp_path / "src.dat"
    src.write_bytes(b"hello")
    f = job_pb2.File(lfn="x.dat", pfn=str(src), size=6, type=job_pb2.FILE_TYPE_INPUT)
    with pytest.raises(StagingError) as err:
        stage_in(f, tmp_path, resolver, LOG)
    assert err.value.code == 1099


def test_stage_out_to_job_destination(tmp_path: Path, resolver: StorageResolver) -> None:
    data = os.urandom(70_000)
    local = tmp_path / "out.root"
    local.write_bytes(data)
    job = job_pb2.Job(destination_se="DISK")
    f = job_pb2.File(lfn="out.root", scope="user.jd", type=job_pb2.FILE_TYPE_OUTPUT)
    stored = stage_out(f, local, job, resolver, LOG)
    dest = tmp_path / "storage" / "DISK" / "user.jd" / "out.root"
    assert dest.read_bytes() == data
    assert (stored.size, stored.adler32, stored.pfn, stored.status) == (
        len(data),
        _adler(data),
        path_to_url(dest),
        "transferred",
    )
    # a file's own destination_se wins over the job's
    f.destination_se = "OTHER"
    assert stage_out(f, local, job, resolver, LOG).pfn.endswith("/OTHER/user.jd/out.root")


def test_stage_out_missing_output_is_1137(tmp_path: Path, resolver: StorageResolver) -> None:
    with pytest.raises(StagingError) as err:
        stage_out(job_pb2.File(lfn="never.root"), tmp_path / "never.root", job_pb2.Job(), resolver, LOG)
    assert err.value.code == errorcodes.STAGEOUT_FAILED == 1137
    assert "not produced" in err.value.diag


def test_stage_out_unknown_se_is_1137(tmp_path: Path) -> None:
    local = tmp_path / "o"
    local.write_bytes(b"x")
    bare = StorageResolver(StorageConfig(environ={}))
    with pytest.raises(StagingError) as err:
        stage_out(job_pb2.File(lfn="o"), local, job_pb2.Job(destination_se="NOWHERE"), bare, LOG)
    assert err.value.code == 1137 and "AILURO_SE_NOWHERE" in err.value.diag


def test_stage_out_checksum_mismatch_at_destination_is_1172(tmp_path: Path, resolver: StorageResolver) -> None:
    local = tmp_path / "out.root"
    local.write_bytes(b"payload output")
    with pytest.raises(StagingError) as err:
        stage_out(job_pb2.File(lfn="out.root"), local, job_pb2.Job(destination_se="BAD"), resolver, LOG)
    assert err.value.code == errorcodes.CHECKSUM_MISMATCH_STAGEOUT == 1172
    assert not (tmp_path / "bad" / "out.root").exists(), "the corrupt copy must be removed"
