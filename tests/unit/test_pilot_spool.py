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


def test_slots_are_reused_and_adopted_after_the_owner_dies(tmp_path: Path) -> None:
    """Reports go to pre-created slot files rewritten in place; a dead pilot's slots are taken over."""
    spool = FinalSpool(tmp_path)
    for i in range(50):
        spool.put(_final(i, 1))
        assert spool.remove(i, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slot-0.spool"]
    spool.put(_final(7, 2))
    spool.put(_final(8, 2))
    spool.close()  # the pilot died: its locks are gone, its reports stay
    heir = FinalSpool(tmp_path)
    assert [(f.panda_id, f.lease_epoch) for f in heir.pending()] == [(7, 2), (8, 2)]
    assert heir.contains(8, 2) and heir.remove(8, 2) and not heir.contains(8, 2)
    heir.put(_final(9, 1))  # goes to the freed slot, not a new file
    assert len(list(tmp_path.glob("slot-*.spool"))) == 2
    assert sorted(f.panda_id for f in FinalSpool(tmp_path).pending()) == [7, 9]


def test_a_torn_slot_counts_as_empty(tmp_path: Path) -> None:
    """A slot whose rewrite a crash interrupted fails its checksum: no half report is ever resent."""
    spool = FinalSpool(tmp_path)
    path = spool.put(_final(5, 1))
    spool.close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    again = FinalSpool(tmp_path)
    assert again.pending() == [] and not again.contains(5, 1)
    assert again.put(_final(6, 1)) == path


def test_a_live_pilots_slots_are_never_written_by_another(tmp_path: Path) -> None:
    """Two pilots on one spool: each lists the other's reports but only the owner rewrites its slot."""
    first = FinalSpool(tmp_path)
    first.put(_final(1, 1))
    second = FinalSpool(tmp_path)
    second.put(_final(2, 1))
    assert len(list(tmp_path.glob("slot-*.spool"))) == 2
    assert second.remove(1, 1)  # acknowledged through the second pilot: hidden there, kept by its owner
    assert [f.panda_id for f in second.pending()] == [2]
    assert [f.panda_id for f in first.pending()] == [1, 2]
