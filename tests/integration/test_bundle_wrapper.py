"""The pilot bundle: built deterministically, served over HTTP, and checked by the wrapper."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_backend_e2e import BundleServer

from backends.base import PilotSpec
from backends.wrapper import BUNDLE_SHA256_ENV, render_wrapper
from backends.wrapper.bundle import bundle_environment
from dispatcher.bundle import build_bundle


def test_build_is_deterministic_and_reports_its_version(tmp_path: Path) -> None:
    a, b = build_bundle(tmp_path / "a"), build_bundle(tmp_path / "b")
    assert a.sha256 == b.sha256 == hashlib.sha256(a.path.read_bytes()).hexdigest()
    assert a.version.startswith("0.1.0+src.")
    out = subprocess.run([sys.executable, str(a.path), "--bundle-version"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == a.version


def test_server_and_wrapper_checks(tmp_path: Path) -> None:
    server = BundleServer(tmp_path / "bundle")
    try:
        info = json.loads(urllib.request.urlopen(f"{server.url}/pilot/bundle.json", timeout=10).read())
        body = urllib.request.urlopen(f"{server.url}/pilot/bundle.pyz", timeout=10).read()
        assert hashlib.sha256(body).hexdigest() == info["sha256"] and len(body) == info["size"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server.url}/etc/passwd", timeout=10)
        assert err.value.code == 404

        env = bundle_environment(server.url, python=sys.executable)
        spec = PilotSpec(
            server="127.0.0.1:1", queue="Q", worker_id_prefix="Q.b", log_dir=tmp_path / "logs", environment=env
        )
        (tmp_path / "logs").mkdir()
        script = tmp_path / "w.sh"
        script.write_text(render_wrapper(spec))
        run = subprocess.run(
            ["bash", str(script), "Q.b-0", "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert "pilot bundle " + info["version"] in run.stdout and "usage:" in run.stdout, run.stderr

        # a bundle that does not match the expected checksum is never run
        spec = PilotSpec(
            server="127.0.0.1:1",
            queue="Q",
            worker_id_prefix="Q.b",
            log_dir=tmp_path / "logs",
            environment={**env, BUNDLE_SHA256_ENV: "0" * 64},
        )
        script.write_text(render_wrapper(spec))
        bad = subprocess.run(
            ["bash", str(script), "Q.b-1"], capture_output=True, text=True, timeout=60, cwd=tmp_path / "logs"
        )
        assert bad.returncode == 86 and "not running it" in bad.stderr
        assert (tmp_path / "logs" / "Q.b-1.exit").read_text().strip() == "86"
    finally:
        server.close()
