"""The log tarball holds stdout, stderr and the pilot log under <job_name>.job.log/."""

from __future__ import annotations

import tarfile
from pathlib import Path

from pilot.logtar import log_lfn, make_log_tarball


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
