"""Every command of the README's DDM and task sections runs as written (issue #19, item 11).

The usage lines (indented ``ailuro ...`` lines of "Data management (DDM)" and "The COMPASS chain
(tasks)") are read from the README and run in order through the CLI against a dispatcher made
from ``examples/compass_chain/queues.toml`` (its SE endpoints pointed at local directories, so the
test owns its files, and its tape recalled by the modelled delay: ``file://`` has no prepare),
with the DDM agent running, in token mode as the README sets it up: the user's own token in
``~/.ailuro/token`` (a user of VO compass), the production manager's in ``prod.token``. Optional
parts ``[...]`` are included, so every documented option runs too; placeholders (TASK_ID, ID,
REQ_ID, ...) get real values. A command that fails, or a README line naming a command that does
not exist, fails the test.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shlex
import time
import tomllib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ailuro.client import Client
from ailuro.queues import parse_queues, parse_storage
from ailuro_cli.main import app
from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import DEFAULT_AUDIENCE, AuthConfig

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_NO_DB = {
    k: None
    for k in ("AILURO_DB_URL", "AILURO_DB", "AILURO_QUEUES", "AILURO_SERVER", "AILURO_TOKEN", "AILURO_TOKEN_FILE")
}


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    return text[start : text.index("\n#", start + len(title))]


def readme_commands() -> list[str]:
    """The usage lines of the DDM and task sections, in order (comments removed)."""
    out = []
    for title in ("## Data management (DDM)", "### The COMPASS chain (tasks)"):
        for line in _section(title).splitlines():
            if line.startswith("    ailuro "):
                out.append(line.split("  #", 1)[0].strip().rstrip("&").strip())
    return out


def _expand(command: str, values: dict[str, str]) -> list[str]:
    """Optional parts included, placeholders replaced, the leading ``ailuro`` dropped."""
    command = re.sub(r"\[([^\]\[]+)\]", r"\1", command)
    words = shlex.split(command)[1:]
    return [values.get(w, w) for w in words]


def _put(root: Path, se: str, scope: str, lfn: str, data: bytes) -> str:
    path = root / se / scope / lfn
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def test_readme_ddm_and_task_commands_run(
    make_dispatcher: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = readme_commands()
    assert len(commands) >= 20, commands
    data = tomllib.loads((ROOT / "examples" / "compass_chain" / "queues.toml").read_text())
    root = tmp_path / "se"
    storage = tuple(
        dataclasses.replace(s, endpoints=((root / s.name).as_uri(),), staging="delay", staging_latency_s=0.1)
        for s in parse_storage(data)
    )
    auth = AuthConfig(mode="token", state_dir=tmp_path / "auth")
    d = make_dispatcher(
        queues=parse_queues(data), storage=storage, ddm_workers=4, ddm_poll_s=0.1, ddm_backoff_base_s=0.1, auth=auth
    )
    key = embedded.load_key(embedded.IssuerFiles(state_dir=auth.state_dir))
    mint = functools.partial(embedded.issue, key, issuer=auth.embedded_issuer, audience=DEFAULT_AUDIENCE, vo="compass")
    prod = mint(user="prod", roles=("production",))
    client = Client(d.address, token=prod)
    work = tmp_path / "cwd"
    home = tmp_path / "home"
    (home / ".ailuro").mkdir(parents=True)
    (home / ".ailuro" / "token").write_text(mint(user="jdoe", roles=("user",)))
    (work / "examples").mkdir(parents=True)
    (work / "prod.token").write_text(prod)
    (work / "examples" / "compass_chain").symlink_to(ROOT / "examples" / "compass_chain")
    monkeypatch.chdir(work)
    for lfn in ("f1.raw", "f2.raw"):
        _put(root, "CERN_CASTOR", "compass", lfn, lfn.encode() * 100)
    sums = {lfn: _put(root, "CERN_CASTOR", "compass", lfn, lfn.encode() * 50) for lfn in ("f3.raw", "f4.raw")}
    (work / "listing.txt").write_text("".join(f"{k} {len(k) * 50} {v}\n" for k, v in sums.items()))
    for name in ("run1.root", "run2.root"):
        (work / name).write_bytes(name.encode() * 10)
    values = {"SECONDS": "3600", "TEXT": "operator-test", "N": "10"}

    def idle() -> bool:  # expiries (delete requests due in an hour) do not count
        return all(r.kind == 4 for r in client.ddm.transfers(states=["queued", "active"], limit=5000))

    def before(args: list[str]) -> None:
        """Put the world in the state the README line assumes."""
        args = args[2:] if args[0] in ("--user", "--token-file") else args
        if args[:2] == ["task", "retry"]:  # something to retry: one processing job killed
            tid = int(values["TASK_ID"])
            first = client.tasks.get(tid).jobs[0].panda_id
            client.kill([first], reason="README test")
        elif args[:2] in (["ddm", "verify"], ["ddm", "delete"]):
            deadline = time.monotonic() + 60
            while not idle() and time.monotonic() < deadline:  # the copies it checks must have arrived
                time.sleep(0.1)

    runner = CliRunner(env={"COLUMNS": "200", "HOME": str(home), **_NO_DB})
    ran = []
    for command in commands:
        if command.startswith("ailuro server"):
            continue  # the dispatcher of this test is that server
        args = _expand(command, values)
        if "REQ_ID" in args:
            values["REQ_ID"] = str(client.ddm.transfers(limit=1)[0].request_id)
            args = _expand(command, values)
        if "TASK_ID" in args or "ID" in args:
            values.setdefault("ID", values.get("TASK_ID", "1"))
            args = _expand(command, values)
        before(args)
        result: Result = runner.invoke(app, ["--server", d.address, *args])
        assert result.exit_code == 0, f"README command failed: {command}\n{result.stdout}\n{result.stderr}"
        if "submit" in args and args[args.index("submit") - 1] == "task":
            values["TASK_ID"] = str(json.loads(result.stdout)["task_id"])
            values["ID"] = values["TASK_ID"]
        ran.append((args[2:] if args[0] in ("--user", "--token-file") else args)[:3])
    assert ["ddm", "upload", "run1.root"] in ran and ["task", "abort", values["TASK_ID"]] in ran, ran
    assert client.tasks.get(int(values["TASK_ID"])).task.state == 7  # TASK_STATE_ABORTED
    client.close()
