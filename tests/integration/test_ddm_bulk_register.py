"""Bulk registration (issue #19, item 8): ``ailuro ddm register --files-from`` of 10,000 files is
one RegisterFiles call (one transaction, executemany inserts), not one round trip per file. The
time is printed (no assertion on it: the machine is shared). SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro_cli.main import app

pytestmark = pytest.mark.timeout(300)
N = 10_000
_NO_DB = {"AILURO_DB_URL": None, "AILURO_DB": None, "AILURO_QUEUES": None, "AILURO_SERVER": None, "AILURO_USER": None}


def test_register_ten_thousand_files_from_a_listing(make_dispatcher: Callable[..., Any], tmp_path: Path) -> None:
    storage = (StorageElementConfig(name="DISK", endpoints=((tmp_path / "se").as_uri(),)),)
    d = make_dispatcher(storage=storage, queues=(QueueConfig(name="SITE", input_se=("DISK",)),), ddm_workers=0)
    listing = tmp_path / "listing.txt"
    lines = ["# lfn size adler32", ""] + [f"run1.{i:05d}.raw {1000 + i} {i:08x}" for i in range(N)]
    listing.write_text("\n".join(lines) + "\n")
    runner = CliRunner(env={"COLUMNS": "200", **_NO_DB})
    args = ["--server", d.address, "--user", "prod", "ddm", "register", "compass:raw.BULK", "--se", "DISK"]
    started = time.monotonic()
    result = runner.invoke(app, [*args, "--files-from", str(listing)])
    took = time.monotonic() - started
    print(f"\nregistered {N} files through the CLI in {took:.2f} s")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"registered {N} file(s) in compass:raw.BULK on DISK"
    assert result.stdout.splitlines()[1].startswith(f"{N} verify request(s) queued")
    with Client(d.address, timeout=120) as c:
        ds, files = c.ddm.dataset("compass:raw.BULK")
        assert ds.file_count == N and files[-1].lfn == f"run1.{N - 1:05d}.raw" and files[-1].size == 1000 + N - 1
        queued = c.ddm.transfers(states=["queued"], kind="verify", limit=5000)
        assert len(queued) == 5000  # the newest page; every file got one
    # again: idempotent, nothing new
    again = runner.invoke(app, [*args, "--files-from", str(listing), "--json"])
    assert again.exit_code == 0, again.stderr  # say why (exit 1 without a message under stress-ng once)
    assert len(json.loads(again.stdout)) == N
    # a bad line is refused naming it, before anything is sent
    listing.write_text("a.raw 12 0000000a\nb.raw twelve\n")
    bad = runner.invoke(app, [*args, "--files-from", str(listing)])
    assert bad.exit_code == 2 and "--files-from line 2" in bad.stderr, bad.stderr
    bad = runner.invoke(app, args)
    assert bad.exit_code == 2 and "--files-from" in bad.stderr
