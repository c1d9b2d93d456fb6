"""Batch ids from the batch systems' environments, config validation, reconnect backoff."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pilot.config import PilotConfig, detect_batch_id
from pilot.connection import Backoff


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ""),
        ({"SLURM_JOB_ID": "42"}, "42"),
        ({"SLURM_JOB_ID": "43", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"}, "40_3"),
        ({"LSB_JOBID": "777"}, "777"),
        ({"LSB_JOBID": "777", "LSB_JOBINDEX": "5"}, "777[5]"),
        ({"AILURO_BATCH_ID": "local-9", "SLURM_JOB_ID": "42"}, "local-9"),
    ],
)
def test_detect_batch_id(env: dict[str, str], expected: str) -> None:
    assert detect_batch_id(env) == expected


def test_condor_job_ad(tmp_path: Path) -> None:
    ad = tmp_path / ".job.ad"
    ad.write_text('Owner = "jd"\nClusterId = 1234\nProcId = 7\n')
    assert detect_batch_id({"_CONDOR_JOB_AD": str(ad)}) == "1234.7"
    assert detect_batch_id({"_CONDOR_JOB_AD": str(tmp_path / "none")}) == ""


def test_config_validation(tmp_path: Path) -> None:
    common = {"pilot_id": "p", "workdir": tmp_path, "spool_dir": tmp_path}
    with pytest.raises(ValueError, match="HOST:PORT"):
        PilotConfig(server="localhost", queue="Q", **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue"):
        PilotConfig(server="h:1", queue="", **common)  # type: ignore[arg-type]


def test_backoff_grows_bounded_with_jitter() -> None:
    backoff = Backoff(minimum_s=0.5, maximum_s=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert max(delays[6:]) > 2.0  # it grew
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 0.5
