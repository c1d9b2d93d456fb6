"""Batch ids from the batch systems' environments, config validation, reconnect backoff."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from pilot.config import (
    UNARY_ENV,
    PilotConfig,
    available_cores,
    available_memory_mb,
    detect_batch_id,
    free_disk_mb,
    total_memory_mb,
    unary_from_env,
)
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


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_CPUS_ON_NODE": "8"}, 8),
        ({"LSB_DJOB_NUMPROC": "4"}, 4),
        ({"SLURM_CPUS_ON_NODE": "0", "LSB_DJOB_NUMPROC": "3"}, 3),  # nonsense is skipped
    ],
)
def test_cores_from_the_batch_system(env: dict[str, str], expected: int) -> None:
    assert available_cores(env) == expected


def test_cores_from_the_condor_job_ad(tmp_path: Path) -> None:
    ad = tmp_path / ".job.ad"
    ad.write_text("ClusterId = 1\nRequestCpus = 6\n")
    assert available_cores({"_CONDOR_JOB_AD": str(ad)}) == 6


def test_cores_and_memory_from_the_condor_machine_ad(tmp_path: Path) -> None:
    ad = tmp_path / ".machine.ad"
    ad.write_text("Cpus = 8\nMemory = 16000\n")
    assert available_cores({"_CONDOR_MACHINE_AD": str(ad)}) == 8
    assert available_memory_mb({"_CONDOR_MACHINE_AD": str(ad)}) == 16000


def test_memory_from_the_batch_system_else_the_node() -> None:
    assert available_memory_mb({"SLURM_MEM_PER_NODE": "4000"}) == 4000
    assert available_memory_mb({}) == total_memory_mb()


def test_cores_default_to_the_cpu_affinity() -> None:
    assert available_cores({}) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("0", False), ("", False)])
def test_unary_switch_from_the_environment(value: str, expected: bool) -> None:
    assert unary_from_env({UNARY_ENV: value}) is expected


def test_explicit_transport_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UNARY_ENV, "1")
    common = {"server": "h:1", "queue": "Q", "pilot_id": "p", "workdir": tmp_path, "spool_dir": tmp_path}
    assert PilotConfig(**common).use_unary  # type: ignore[arg-type]
    assert not PilotConfig(unary=False, **common).use_unary  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cores"):
        PilotConfig(cores=0, **common)  # type: ignore[arg-type]


def test_disk_offer_is_the_free_space_of_the_workdir(tmp_path: Path) -> None:
    assert free_disk_mb(tmp_path) > 0
    assert free_disk_mb(tmp_path / "not" / "yet") == free_disk_mb(tmp_path)  # nearest existing parent


@pytest.mark.parametrize("value", [-1.0, 3601.0, float("nan")])
def test_final_flush_timeout_is_bounded(tmp_path: Path, value: float) -> None:
    common = {"server": "h:1", "queue": "Q", "pilot_id": "p", "workdir": tmp_path, "spool_dir": tmp_path}
    with pytest.raises(ValueError, match="final_flush_timeout_s"):
        PilotConfig(final_flush_timeout_s=value, **common)  # type: ignore[arg-type]
