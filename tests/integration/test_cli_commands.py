"""The ``ailuro`` user commands against a real in-process dispatcher, through typer's CliRunner
and (once) as a real subprocess: output formats, exit codes and error lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ailuro import Client
from ailuro.v1 import job_pb2
from ailuro_cli.main import app

pytestmark = pytest.mark.timeout(120)


def _run(dispatcher: Any, *args: str, user: str = "cli-user") -> Result:
    runner = CliRunner(env={"COLUMNS": "200", "AILURO_SERVER": None, "AILURO_USER": None})
    return runner.invoke(app, ["--server", dispatcher.address, "--user", user, *args])


def _ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def _ids(result: Result) -> list[int]:
    return [int(line) for line in _ok(result).split()]


def test_submit_from_flags_then_show(dispatcher: Any) -> None:
    (pid,) = _ids(
        _run(
            dispatcher,
            "submit",
            "-t",
            "/bin/echo",
            "-p",
            "hello world",
            "--name",
            "flags",
            "--site",
            "LOCAL",
            "--priority",
            "7",
            "--label",
            "test",
            "--vo",
            "compass",
            "--task-id",
            "31",
            "--cores",
            "2",
            "--memory-mb",
            "500",
            "--walltime-s",
            "60",
            "--max-attempt",
            "2",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--input",
            "in.dat",
            "--output",
            "out.dat",
            "--destination-se",
            "LOCAL_DISK",
        )
    )
    shown = json.loads(_ok(_run(dispatcher, "job", "show", str(pid), "--json")))
    assert shown["panda_id"] == pid
    assert shown["job_name"] == "flags"
    assert (shown["transformation"], shown["job_parameters"]) == ("/bin/echo", "hello world")
    assert (shown["computing_site"], shown["current_priority"], shown["prod_source_label"]) == ("LOCAL", 7, "test")
    assert (shown["vo"], shown["task_id"], shown["cores"], shown["memory_mb"]) == ("compass", 31, 2, 500)
    assert (shown["max_walltime_s"], shown["max_attempt"], shown["destination_se"]) == (60, 2, "LOCAL_DISK")
    assert shown["environment"] == {"A": "1", "B": "x=y"}
    assert [(f["lfn"], f["type"]) for f in shown["files"]] == [("in.dat", "input"), ("out.dat", "output")]
    assert shown["owner"] == "cli-user"
    text = _ok(_run(dispatcher, "job", "show", str(pid)))
    assert f"Job {pid}" in text and "hello world" in text and "in.dat" in text


def test_submit_count_and_json(dispatcher: Any) -> None:
    ids = json.loads(_ok(_run(dispatcher, "submit", "-t", "/bin/true", "--name", "many", "--count", "3", "--json")))
    assert len(ids) == 3
    names = [j["job_name"] for j in json.loads(_ok(_run(dispatcher, "jobs", "--name", "many_2", "--json")))["jobs"]]
    assert names == ["many_2"]


def test_submit_request_id_makes_reruns_idempotent(dispatcher: Any) -> None:
    args = ("submit", "-t", "/bin/true", "--name", "idem", "--request-id", "cli-idem-1", "--json")
    assert json.loads(_ok(_run(dispatcher, *args))) == json.loads(_ok(_run(dispatcher, *args)))


def test_submit_yaml_file_with_defaults_and_flag_overrides(dispatcher: Any, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(
        "defaults:\n  transformation: /bin/sh\n  priority: 5\n  task_id: 555\n"
        "jobs:\n  - {name: y1, params: '-c true'}\n  - {name: y2, priority: 9}\n"
    )
    ids = json.loads(_ok(_run(dispatcher, "submit", "--file", str(jobs_file), "--label", "test", "--json")))
    jobs = {j["job_name"]: j for j in json.loads(_ok(_run(dispatcher, "jobs", "--task", "555", "--json")))["jobs"]}
    assert sorted(j["panda_id"] for j in jobs.values()) == sorted(ids)
    assert (jobs["y1"]["current_priority"], jobs["y2"]["current_priority"]) == (5, 9)
    assert {j["prod_source_label"] for j in jobs.values()} == {"test"}


def test_submit_example_yaml(dispatcher: Any) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "jobs.yaml"
    assert len(json.loads(_ok(_run(dispatcher, "submit", "--file", str(example), "--json")))) == 3


def test_submit_each_line_the_compass_pattern(dispatcher: Any, tmp_path: Path) -> None:
    listing = tmp_path / "files.txt"
    listing.write_text("# megaDSTs\nmDST.1.root\n\n/eos/compass/mDST.2.root\nmDST.3.root\n")
    result = _run(
        dispatcher,
        "submit",
        "-t",
        "phast",
        "-p",
        "-u 1 {}",
        "--name",
        "phast",
        "--task-id",
        "3652",
        "--each-line",
        str(listing),
    )
    ids = _ids(result)
    assert len(ids) == 3
    assert "submitted 3 jobs" in result.stderr
    with Client(dispatcher.address) as c:
        jobs = c.get(ids)
    assert [j.job_name for j in jobs] == ["phast_1", "phast_2", "phast_3"]
    assert [j.job_parameters for j in jobs] == ["-u 1 mDST.1.root", "-u 1 mDST.2.root", "-u 1 mDST.3.root"]
    assert [(f.lfn, f.type, f.pfn) for f in jobs[1].files] == [
        ("mDST.2.root", job_pb2.FILE_TYPE_INPUT, "/eos/compass/mDST.2.root")
    ]


def test_submit_dry_run_submits_nothing(dispatcher: Any) -> None:
    out = _ok(_run(dispatcher, "submit", "-t", "/bin/true", "--name", "dry_only", "--dry-run"))
    assert json.loads(out)[0]["job_name"] == "dry_only"
    assert json.loads(_ok(_run(dispatcher, "jobs", "--name", "dry_only", "--json")))["total"] == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("submit", "-t", ""), "error: INVALID_ARGUMENT jobs[0].transformation: must not be empty"),
        (("submit", "-t", "x", "--site", "NOWHERE"), "INVALID_ARGUMENT jobs[0].computing_site"),
        (("submit", "-t", "x", "--env", "NOEQUALS"), "INVALID_ARGUMENT --env"),
        (("submit", "-t", "x", "--file", "/nonexistent/jobs.yaml"), "/nonexistent/jobs.yaml"),
        (("submit", "-t", "x", "--priority", "high"), "--priority"),
        (("jobs", "--status", "runing"), "INVALID_ARGUMENT statuses"),
        (("jobs", "--since", "yesterday"), "INVALID_ARGUMENT --since"),
    ],
)
def test_bad_input_exits_2_with_the_field_named(dispatcher: Any, args: tuple[str, ...], words: str) -> None:
    result = _run(dispatcher, *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_yaml_file_exits_2(dispatcher: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  - {name: a, transformaton: x}\n")
    result = _run(dispatcher, "submit", "--file", str(bad))
    assert result.exit_code == 2
    assert "INVALID_ARGUMENT jobs[0].transformaton: unknown key" in result.stderr


def test_unknown_job_exits_1_with_not_found(dispatcher: Any) -> None:
    result = _run(dispatcher, "job", "show", "987654321")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: NOT_FOUND")
    assert "Traceback" not in result.stderr


def test_jobs_table_totals_and_filters(dispatcher: Any) -> None:
    ids = _ids(_run(dispatcher, "submit", "-t", "/bin/true", "--name", "tbl", "--task-id", "777", "--count", "4"))
    _ok(_run(dispatcher, "job", "kill", str(ids[0]), "--reason", "table test"))
    table = _ok(_run(dispatcher, "jobs", "--task", "777"))
    for column in ("PANDAID", "NAME", "OWNER", "SITE", "STATUS", "PRIO", "ATTEMPT", "CREATED"):
        assert column in table
    assert all(str(pid) in table for pid in ids)
    assert "4 jobs: " in table and "1 cancelled" in table
    data = json.loads(_ok(_run(dispatcher, "jobs", "--task", "777", "--status", "cancelled,finished", "--json")))
    assert [j["panda_id"] for j in data["jobs"]] == [ids[0]]
    assert data["total"] == 1 and data["status_counts"] == {"cancelled": 1}
    limited = json.loads(_ok(_run(dispatcher, "jobs", "--task", "777", "--limit", "2", "--json")))
    assert len(limited["jobs"]) == 2 and limited["total"] == 4
    assert "(showing 2; use --limit)" in _ok(_run(dispatcher, "jobs", "--task", "777", "--limit", "2"))
    recent = json.loads(_ok(_run(dispatcher, "jobs", "--task", "777", "--hours", "1", "--owner", "cli-user", "--json")))
    assert recent["total"] == 4
    assert json.loads(_ok(_run(dispatcher, "jobs", "--task", "777", "--owner", "someone-else", "--json")))["total"] == 0


def test_kill_retry_events(dispatcher: Any) -> None:
    (pid,) = _ids(_run(dispatcher, "submit", "-t", "/bin/true", "--name", "krk"))
    killed = json.loads(_ok(_run(dispatcher, "job", "kill", str(pid), "--reason", "cli kill", "--json")))
    assert killed[0]["panda_id"] == pid and killed[0]["accepted"] is True and killed[0]["status"] == "cancelled"
    assert "no" in _ok(_run(dispatcher, "job", "kill", str(pid)))  # already final: not accepted
    retried = json.loads(_ok(_run(dispatcher, "job", "retry", str(pid), "--json")))
    assert retried[0]["panda_id"] == pid and retried[0]["new_panda_id"] != pid
    events = json.loads(_ok(_run(dispatcher, "job", "events", str(pid), "--json")))
    assert events[-1]["to_status"] == "cancelled" and "cli kill" in events[-1]["reason"]
    assert "cancelled" in _ok(_run(dispatcher, "job", "events", str(pid)))
    why = json.loads(_ok(_run(dispatcher, "job", "why", str(pid), "--json")))
    assert why["panda_id"] == pid


def test_watch_ends_when_the_watched_jobs_are_final(dispatcher: Any) -> None:
    (pid,) = _ids(_run(dispatcher, "submit", "-t", "/bin/true", "--name", "watched"))

    def kill() -> None:
        with Client(dispatcher.address) as c:
            c.kill([pid], reason="watch cli")

    killer = threading.Timer(2.0, kill)
    killer.start()
    try:
        out = _ok(_run(dispatcher, "job", "watch", str(pid), "--json"))
    finally:
        killer.cancel()
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["panda_id"] == pid and events[-1]["to_status"] == "cancelled"
    # watching jobs that are already final returns at once
    assert "already final" in _ok(_run(dispatcher, "job", "watch", str(pid)))


def test_queue_list(dispatcher: Any) -> None:
    queues = json.loads(_ok(_run(dispatcher, "queue", "list", "--json")))
    assert "LOCAL" in [q["name"] for q in queues]
    assert "LOCAL" in _ok(_run(dispatcher, "queue", "list"))


def test_real_subprocess_submit_and_list(dispatcher: Any) -> None:
    exe = Path(sys.executable).with_name("ailuro")
    env = {**os.environ, "AILURO_SERVER": dispatcher.address, "AILURO_USER": "proc-user"}
    submitted = subprocess.run(
        [str(exe), "submit", "-t", "/bin/true", "--name", "subproc", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    (pid,) = json.loads(submitted.stdout)
    listed = subprocess.run(
        [str(exe), "jobs", "--name", "subproc", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    (job,) = json.loads(listed.stdout)["jobs"]
    assert (job["panda_id"], job["owner"]) == (pid, "proc-user")
    bad = subprocess.run(
        [str(exe), "submit", "-t", ""], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: INVALID_ARGUMENT jobs[0].transformation: must not be empty"
