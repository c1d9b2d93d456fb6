"""The served pilot bundle runs a real job in a venv holding nothing but grpcio and protobuf.

What a worker node gets: ``python3 -m venv`` plus the pilot's two dependencies at the versions
pyproject pins, and the bundle downloaded from a real dispatcher's bundle server. The pilot must
neither need nor carry anything else (no typer, rich, SQLAlchemy, YAML; no dispatcher, backends,
monitor or CLI code).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ailuro.client import Client
from ailuro.v1 import job_pb2
from ddm.protocols import url_to_path
from dispatcher.server import RunningDispatcher

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
PILOT_DEPENDENCIES = ("grpcio", "protobuf")
SERVER_SIDE = ("dispatcher", "backends", "monitor", "ailuro_cli", "loadtests", "tests")


def pinned_requirements() -> list[str]:
    """The pyproject requirement lines of the pilot's dependencies (``grpcio>=1.85.1,<1.86``)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = [d for d in deps if d.split(">")[0].split("=")[0].split("<")[0].strip() in PILOT_DEPENDENCIES]
    assert len(found) == len(PILOT_DEPENDENCIES), deps
    return found


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv's python with only grpcio and protobuf installed (from the system python3)."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pinned_requirements()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    return python


def test_served_bundle_runs_a_job_with_only_grpcio_and_protobuf(
    bare_python: Path, make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path
) -> None:
    installed = subprocess.run(
        [str(bare_python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed.stdout)}
    shown = subprocess.run(
        [str(bare_python), "-m", "pip", "show", *PILOT_DEPENDENCIES], capture_output=True, text=True, timeout=60
    ).stdout
    # what pip pulled in for grpcio/protobuf themselves (grpcio needs typing-extensions)
    their_requirements = {
        r.strip().lower().replace("_", "-")
        for line in shown.splitlines()
        if line.startswith("Requires:")
        for r in line.removeprefix("Requires:").split(",")
        if r.strip()
    }
    assert names - {"pip", "setuptools"} - their_requirements == set(PILOT_DEPENDENCIES), names
    missing = subprocess.run(
        [str(bare_python), "-c", "import typer"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert missing.returncode != 0  # the venv really lacks the CLI's libraries

    d = make_dispatcher(bundle_port=0)
    base = f"http://127.0.0.1:{d.bundle_port}/pilot"
    with urllib.request.urlopen(f"{base}/bundle.json", timeout=30) as resp:
        info = json.load(resp)
    with urllib.request.urlopen(f"{base}/bundle.pyz", timeout=30) as resp:
        body = resp.read()
    assert hashlib.sha256(body).hexdigest() == info["sha256"]
    bundle = tmp_path / "node" / "ailuro-pilot.pyz"
    bundle.parent.mkdir()
    bundle.write_bytes(body)
    with zipfile.ZipFile(bundle) as zf:
        packed = {n.split("/")[0] for n in zf.namelist() if "/" in n}
    assert packed == {"pilot", "ailuro", "ddm"}, packed
    assert not packed & set(SERVER_SIDE)

    job = job_pb2.Job(
        job_name="bare_venv",
        computing_site="LOCAL",
        transformation="/bin/sh",
        job_parameters="-c 'echo bare > out.dat; echo ran'",
        destination_se="DISK",
        files=[job_pb2.File(lfn="out.dat", scope="user.test", type=job_pb2.FILE_TYPE_OUTPUT, dataset="user.test:o")],
    )
    storage = tmp_path / "storage"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AILURO_", "PYTHON", "VIRTUAL_ENV"))}
    env["AILURO_STORAGE_ROOT"] = str(storage)
    with Client(d.address) as client:
        (panda_id,) = client.submit([job])
        argv = [str(bare_python), str(bundle), "--server", d.address, "--queue", "LOCAL", "--pilot-id", "bare-1"]
        argv += ["--workdir", str(tmp_path / "work"), "--max-jobs", "1", "--idle-timeout-s", "20"]
        argv += ["--heartbeat-s", "0.5"]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=bundle.parent, env=env)
        assert run.returncode == 0, run.stderr[-4000:]
        (done,) = client.get([panda_id])
    assert done.status == job_pb2.JOB_STATUS_FINISHED, (done.errors, run.stderr[-4000:])
    assert done.pilot_id == "bare-1"
    out = next(f for f in done.files if f.lfn == "out.dat")
    assert url_to_path(out.pfn).read_text() == "bare\n"
    assert url_to_path(out.pfn).is_relative_to(storage)
    assert sys.executable not in run.stderr  # the dev venv was never involved
