"""The PanDA compatibility client against a real dispatcher, and the example PanDA script as a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ailuro.compat import panda
from ailuro.compat.panda import Client, FileSpec, JobSpec

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "panda_submit.py"


@pytest.fixture
def panda_server(dispatcher: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the PanDA client at the test dispatcher the way a script would: ``Client.baseURL``."""
    monkeypatch.delenv("AILURO_SERVER", raising=False)
    monkeypatch.setattr(Client, "baseURLSSL", None)
    monkeypatch.setattr(Client, "baseURL", f"http://{dispatcher.address}/server/panda")
    yield dispatcher.address


def _spec(name: str, *, transformation: str = "/bin/echo") -> JobSpec:
    job = JobSpec()
    job.jobDefinitionID = 11
    job.jobName = name
    job.transformation = transformation
    job.jobParameters = "hello"
    job.destinationDBlock = "panda.destDB.test"
    job.destinationSE = "local"
    job.currentPriority = 1000
    job.prodSourceLabel = "test"
    job.computingSite = "LOCAL"
    job.maxAttempt = 2
    log = FileSpec()
    log.lfn = f"{name}.job.log.tgz"
    log.destinationDBlock = job.destinationDBlock
    log.type = "log"
    job.addFile(log)
    return job


def test_submit_status_kill_round_trip(panda_server: str) -> None:
    jobs = [_spec("pjob_a"), _spec("pjob_b")]
    status, output = Client.submitJobs(jobs)
    assert status == 0
    assert [(o[1], o[2]) for o in output] == [("pjob_a", {"jobsetID": 11}), ("pjob_b", {"jobsetID": 11})]
    ids = [o[0] for o in output]
    assert [j.PandaID for j in jobs] == ids

    status, specs = Client.getJobStatus([*ids, 987_654_321])
    assert status == 0
    assert specs[2] is None
    a, b = specs[:2]
    assert (a.PandaID, a.jobName, b.jobName) == (ids[0], "pjob_a", "pjob_b")
    assert a.jobStatus in {"defined", "assigned", "activated"}
    assert (a.computingSite, a.currentPriority, a.prodSourceLabel, a.maxAttempt) == ("LOCAL", 1000, "test", 2)
    assert [(f.lfn, f.type, f.dataset) for f in a.Files] == [("pjob_a.job.log.tgz", "log", "panda.destDB.test")]

    status, killed = Client.killJobs([ids[0], 987_654_321])
    assert (status, killed) == (0, [True, False])
    status, again = panda.killJobs([ids[0]])  # module-level functions work too
    assert (status, again) == (0, [False])
    _, (after,) = panda.getJobStatus([ids[0]])
    assert after.jobStatus == "cancelled"
    assert after.endTime is not None


def test_submit_failure_is_a_status_not_an_exception(panda_server: str) -> None:
    status, message = Client.submitJobs([_spec("good"), _spec("bad", transformation="")])
    assert status == panda.EC_Failed
    assert message == "INVALID_ARGUMENT jobs[1].transformation: must not be empty"
    bad_type = _spec("typed")
    bad_type.Files[0].type = "pseudo_input"
    status, message = Client.submitJobs([bad_type])
    assert status == panda.EC_Failed and "jobs[0].Files[0].type" in message


def test_example_script_runs_unchanged_as_a_subprocess(dispatcher: Any) -> None:
    env = {**os.environ, "AILURO_SERVER": dispatcher.address, "AILURO_USER": "compass-prod"}
    env.pop("PANDA_URL", None)
    env.pop("PANDA_URL_SSL", None)
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "LOCAL", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "status: 0" in result.stdout
    ids = [int(x) for x in re.findall(r"^PandaID=(\d+) jobName=", result.stdout, re.MULTILINE)]
    assert len(ids) == 3
    statuses = re.findall(r"^PandaID=(\d+) jobStatus=(\w+) site=LOCAL$", result.stdout, re.MULTILINE)
    assert [int(pid) for pid, _ in statuses] == ids
    from ailuro import Client as SdkClient

    with SdkClient(dispatcher.address) as sdk:
        jobs = sdk.get(ids)
    assert {j.owner for j in jobs} == {"compass-prod"}
    assert all(j.vo == "compass" and j.current_priority == 2000 for j in jobs)
    assert all(sorted(f.type for f in j.files) == [2, 3] for j in jobs)  # output + log


def test_example_script_reports_failure_for_an_unknown_site(dispatcher: Any) -> None:
    env = {**os.environ, "AILURO_SERVER": dispatcher.address}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "NO_SUCH_SITE"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "status: 255" in result.stdout
    assert "INVALID_ARGUMENT jobs[0].computing_site" in result.stdout
