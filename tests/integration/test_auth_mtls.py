"""mTLS: X.509 client certificates (made here with trustme) mapped by DN through a grid-mapfile.

A known DN acts as its mapped user, VO and roles; an unknown DN is UNAUTHENTICATED; a client
with neither certificate nor token, or with a certificate of another CA, gets no connection; a
bearer token, when sent, decides over the certificate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from cryptography import x509

from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.auth.config import AuthConfig
from dispatcher.auth.gridmap import dn_of_certificate
from dispatcher.server import RunningDispatcher


@dataclass
class Site:
    dispatcher: RunningDispatcher
    ca: trustme.CA
    known: trustme.LeafCert
    stranger: trustme.LeafCert
    admin_token: str


def _dn(leaf: trustme.LeafCert) -> str:
    dn = dn_of_certificate(x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()))
    assert dn is not None
    return dn


@pytest.fixture
def site(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> Site:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    known = ca.issue_cert("jdoe@example.org", common_name="Jane Doe")
    stranger = ca.issue_cert("eve@example.org", common_name="Eve")
    (tmp_path / "gridmap").write_text(f'# site users\n"{_dn(known)}" jdoe compass user,production\n')
    auth = AuthConfig(
        mode="token",
        state_dir=tmp_path / "auth",
        tls_cert=tmp_path / "cert.pem",
        tls_key=tmp_path / "key.pem",
        tls_client_ca=tmp_path / "ca.pem",
        gridmap=tmp_path / "gridmap",
    )
    d = make_dispatcher(auth=auth)
    return Site(d, ca, known, stranger, (tmp_path / "auth" / "admin.token").read_text().strip())


def _stub(site: Site, leaf: trustme.LeafCert | None, *, ca: trustme.CA | None = None):  # type: ignore[no-untyped-def]
    creds = grpc.ssl_channel_credentials(
        root_certificates=site.ca.cert_pem.bytes(),
        private_key=leaf.private_key_pem.bytes() if leaf else None,
        certificate_chain=leaf.cert_chain_pems[0].bytes() if leaf else None,
    )
    channel = grpc.secure_channel(f"localhost:{site.dispatcher.port}", creds)
    return channel, submission_pb2_grpc.SubmissionServiceStub(channel)


def _submit(stub, metadata=()):  # type: ignore[no-untyped-def]
    job = job_pb2.Job(transformation="/bin/true", computing_site="LOCAL")
    return stub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=[job]), timeout=30, metadata=metadata)


def test_known_dn_acts_as_its_mapped_user(site: Site) -> None:
    channel, stub = _stub(site, site.known)
    with channel:
        (pid,) = _submit(stub).panda_ids
        job = stub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=[pid]), timeout=30).jobs[0]
    assert (job.owner, job.vo) == ("jdoe", "compass")


def test_unknown_dn_is_unauthenticated(site: Site) -> None:
    channel, stub = _stub(site, site.stranger)
    with channel, pytest.raises(grpc.RpcError) as err:
        _submit(stub)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not in the grid-mapfile" in (err.value.details() or "")


def test_no_certificate_and_no_token_gets_nowhere(site: Site) -> None:
    channel, stub = _stub(site, None)
    with channel, pytest.raises(grpc.RpcError) as err:
        _submit(stub)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake demands a certificate


def test_certificate_of_another_ca_gets_nowhere(site: Site) -> None:
    foreign = trustme.CA().issue_cert("jdoe@example.org", common_name="Jane Doe")
    channel, stub = _stub(site, foreign)
    with channel, pytest.raises(grpc.RpcError) as err:
        _submit(stub)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_token_decides_over_the_certificate(site: Site) -> None:
    channel, stub = _stub(site, site.stranger)  # an unmapped DN, but a valid admin token
    with channel:
        (pid,) = _submit(stub, (("authorization", f"Bearer {site.admin_token}"),)).panda_ids
        job = stub.GetJobs(
            submission_pb2.GetJobsRequest(panda_ids=[pid]),
            timeout=30,
            metadata=(("authorization", f"Bearer {site.admin_token}"),),
        ).jobs[0]
        assert job.owner == "admin"
        with pytest.raises(grpc.RpcError) as err:
            _submit(stub, (("authorization", "Bearer not-a-jwt"),))  # a bad token is not rescued by the cert
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_gridmap_needs_client_ca_and_token_mode(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("x")
    with pytest.raises(ValueError, match="gridmap needs"):
        AuthConfig(mode="token", tls_cert=tmp_path / "c", tls_key=tmp_path / "c", gridmap=tmp_path / "g")
    with pytest.raises(ValueError, match="tls_client_ca needs"):
        AuthConfig(mode="token", tls_client_ca=tmp_path / "c")


def test_sdk_and_cli_present_a_certificate_file(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A grid-proxy-like file (key + certificate) via ``Client(tls_cert=...)`` or ``$AILURO_TLS_CERT``."""
    from typer.testing import CliRunner

    from ailuro.client import Client
    from ailuro_cli.main import app

    proxy = tmp_path / "x509up"
    proxy.write_bytes(site.known.private_key_pem.bytes() + site.known.cert_chain_pems[0].bytes())
    ca = tmp_path / "ca.pem"
    with Client(f"localhost:{site.dispatcher.port}", tls_ca=str(ca), tls_cert=str(proxy)) as client:
        (pid,) = client.submit([{"transformation": "/bin/true"}])
        assert client.get([pid])[0].owner == "jdoe"
    runner = CliRunner(env={"AILURO_TLS_CERT": str(proxy), "AILURO_TLS_CA": str(ca), "AILURO_TOKEN": None})
    shown = runner.invoke(app, ["--server", f"localhost:{site.dispatcher.port}", "job", "show", str(pid)])
    assert shown.exit_code == 0 and "jdoe" in shown.output, shown.output
    (tmp_path / "keyless").write_bytes(site.known.cert_chain_pems[0].bytes())
    with pytest.raises(ValueError, match="one PEM private key"):
        Client(f"localhost:{site.dispatcher.port}", tls_ca=str(ca), tls_cert=str(tmp_path / "keyless"))
