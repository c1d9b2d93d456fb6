"""Final reports stay on disk until acknowledged, survive a new FinalSpool (pilot restart)."""

from __future__ import annotations

from pathlib import Path

from ailuro.v1 import job_pb2, pilot_pb2
from pilot.spool import FinalSpool


def _final(pid: int, epoch: int) -> pilot_pb2.JobFinal:
    return pilot_pb2.JobFinal(
        panda_id=pid,
        lease_epoch=epoch,
        status=job_pb2.JOB_STATUS_FINISHED,
        files=[job_pb2.File(lfn="x.job.log.tgz", adler32="0000abcd", size=3)],
    )


def test_put_pending_remove(tmp_path: Path) -> None:
    spool = FinalSpool(tmp_path / "spool")
    spool.put(_final(1, 1))
    spool.put(_final(2, 5))
    # a new instance (a restarted pilot) sees the same reports, oldest first
    again = FinalSpool(tmp_path / "spool")
    pending = again.pending()
    assert [(f.panda_id, f.lease_epoch) for f in pending] == [(1, 1), (2, 5)]
    assert pending[0] == _final(1, 1)
    assert again.contains(2, 5)
    assert again.remove(1, 1) and not again.remove(1, 1)
    assert [f.panda_id for f in again.pending()] == [2]
    assert not list((tmp_path / "spool").glob("*.tmp"))


def test_rejected_and_corrupt_are_moved_aside(tmp_path: Path) -> None:
    spool = FinalSpool(tmp_path)
    spool.put(_final(3, 1))
    spool.reject(3, 1)
    (tmp_path / "final-9-9.pb").write_bytes(b"\xff\xff\xff not a protobuf")
    assert spool.pending() == []
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == ["final-3-1.pb", "final-9-9.pb"]
