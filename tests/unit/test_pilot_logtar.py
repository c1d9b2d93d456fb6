"""The log tarball holds stdout, stderr and the pilot log under <job_name>.job.log/."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import pytest

from pilot.logtar import JobLog, ToPilotLog, log_lfn, make_log_tarball


def test_tarball_content(tmp_path: Path) -> None:
    (tmp_path / "payload.stdout").write_text("out\n")
    (tmp_path / "payload.stderr").write_text("err\n")
    (tmp_path / "pilot.log").write_text("pilot\n")
    path = tmp_path / log_lfn("job_7")
    assert path.name == "job_7.job.log.tgz"
    make_log_tarball(
        path,
        [
            (tmp_path / "payload.stdout", "payload.stdout"),
            (tmp_path / "payload.stderr", "payload.stderr"),
            (tmp_path / "pilot.log", "pilot.log"),
            (tmp_path / "missing", "missing"),
        ],
    )
    with tarfile.open(path) as tar:
        names = sorted(tar.getnames())
        assert names == ["job_7.job.log/payload.stderr", "job_7.job.log/payload.stdout", "job_7.job.log/pilot.log"]
        assert tar.extractfile("job_7.job.log/payload.stdout").read() == b"out\n"  # type: ignore[union-attr]
    assert not (tmp_path / (path.name + ".part")).exists()


def test_tarball_member_from_memory(tmp_path: Path) -> None:
    path = tmp_path / log_lfn("job_8")
    make_log_tarball(path, [(b"kept in memory\n", "pilot.log")])
    with tarfile.open(path) as tar:
        assert tar.extractfile("job_8.job.log/pilot.log").read() == b"kept in memory\n"  # type: ignore[union-attr]


def test_job_log_keeps_at_most_its_limit() -> None:
    handler = JobLog(limit=200)
    logger = logging.Logger("pilot.job.test", logging.INFO)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("message %d", i)
    text = handler.text()
    assert "message 0" in text and "message 49" not in text
    assert len(text.encode()) < 300 and "more messages dropped" in text


def test_a_jobs_routine_lines_reach_the_pilots_log_only_at_verbose(caplog: pytest.LogCaptureFixture) -> None:
    """Every line stays in the job's pilot.log; the pilot's own log gets warnings, or all with -v."""
    pilot_job = logging.getLogger("pilot.job")
    before = pilot_job.level
    try:
        for level, expect_info in ((logging.INFO, False), (logging.DEBUG, True)):
            pilot_job.setLevel(level)
            caplog.clear()
            job = logging.Logger("pilot.job.1", logging.INFO)
            job.propagate = False
            kept = JobLog()
            job.addHandler(kept)
            job.addHandler(ToPilotLog.shared())
            job.info("payload started")
            job.warning("stage-out slow")
            assert "payload started" in kept.text() and "stage-out slow" in kept.text()
            passed = [r.getMessage() for r in caplog.records]
            assert ("payload started" in passed) is expect_info and "stage-out slow" in passed
    finally:
        pilot_job.setLevel(before)
