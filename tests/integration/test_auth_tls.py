"""TLS on the dispatcher's port with certificates made by trustme; SDK and pilot clients trust a CA file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from test_auth_clients import _pilot

from ailuro import credentials, targets
from ailuro.client import Client
from ailuro.errors import Unavailable
from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher


@pytest.fixture
def tls_dispatcher(
    make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path
) -> tuple[RunningDispatcher, Path, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    auth = AuthConfig(
        mode="token", state_dir=tmp_path / "auth", tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem"
    )
    d = make_dispatcher(auth=auth)
    token = (tmp_path / "auth" / "admin.token").read_text().strip()
    return d, tmp_path / "ca.pem", token


def test_sdk_over_tls_with_token(tls_dispatcher: tuple[RunningDispatcher, Path, str], tmp_path: Path) -> None:
    d, ca, token = tls_dispatcher
    with Client(f"localhost:{d.port}", token=token, tls_ca=str(ca)) as client:
        (pid,) = client.submit([{"transformation": "/bin/true"}])
        assert client.get([pid])[0].owner == "admin"
    # a client that does not trust the CA, or speaks plain text, gets nowhere
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    untrusting = Client(f"localhost:{d.port}", token=token, tls_ca=str(tmp_path / "other.pem"), retries=0, timeout=5)
    with untrusting as c, pytest.raises(Unavailable):
        c.get([pid])
    with Client(f"localhost:{d.port}", token=token, retries=0, timeout=5) as c, pytest.raises(Unavailable):
        c.get([pid])


def test_aio_channel_over_tls_sends_the_token(tls_dispatcher: tuple[RunningDispatcher, Path, str]) -> None:
    """What the pilot uses: targets.aio_channel with the token and TLS credentials."""
    d, ca, token = tls_dispatcher

    async def call() -> int:
        tls = credentials.tls_credentials(ca)
        async with targets.aio_channel(f"localhost:{d.port}", token=token, tls=tls) as channel:
            stub = submission_pb2_grpc.SubmissionServiceStub(channel)
            reply = await stub.ListJobs(submission_pb2.ListJobsRequest(), timeout=30)
            return reply.total

    assert asyncio.run(call()) == 0


def test_tls_ca_file_is_checked(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("not a certificate")
    with pytest.raises(ValueError, match="not a PEM certificate"):
        credentials.tls_credentials(tmp_path / "junk")


def test_cert_and_key_go_together(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        AuthConfig(tls_cert=tmp_path / "cert.pem")


def test_real_pilot_over_tls(tls_dispatcher: tuple[RunningDispatcher, Path, str], tmp_path: Path) -> None:
    d, ca, token = tls_dispatcher
    server = f"localhost:{d.port}"
    with Client(server, token=token, tls_ca=str(ca)) as client:
        (pid,) = client.submit([{"transformation": "/bin/true", "computing_site": "LOCAL"}])
        (tmp_path / "pilot.token").write_text(token)
        run = _pilot(server, tmp_path, {"AILURO_TOKEN_FILE": str(tmp_path / "pilot.token"), "AILURO_TLS_CA": str(ca)})
        assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
        assert client.get([pid])[0].status == job_pb2.JOB_STATUS_FINISHED
