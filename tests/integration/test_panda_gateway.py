"""The real panda-client (PyPI, in its own venv) against ``ailuro gateway`` over HTTPS, and hostile bodies.

An unchanged PanDA-style script (JobSpec/FileSpec built in a loop, one job per input file,
``Client.submitJobs``/``getJobStatus``/``killJobs``) runs as a subprocess of the panda-client
venv, configured only through the environment variables panda-client honours: once with an OIDC
bearer token (``PANDA_AUTH=oidc``), once with a client certificate (``X509_USER_PROXY``), both
against a token-mode dispatcher: the token is the embedded issuer's, the certificate's DN is
mapped by the grid-mapfile onto the same user. The jobs run on a real local pilot (with a pilot
token) and reach ``finished``/``cancelled`` as getJobStatus reports them.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from ailuro.client import Client
from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import AuthConfig
from dispatcher.gateway.server import GatewayConfig, make_server
from dispatcher.gateway.wire import MAX_JOBS
from dispatcher.server import RunningDispatcher

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
PANDA_CLIENT_VERSION = "2.2.0"

SCRIPT = r"""
import json, sys, time
from pandaclient import Client
from pandaclient.FileSpec import FileSpec
from pandaclient.JobSpec import JobSpec

mode = sys.argv[1]
if mode == "submit":
    site, inputs = sys.argv[2], sys.argv[3:]
    datasetName = "user.jdoe.gateway.test"
    jobList = []
    for i, lfn in enumerate(inputs):
        job = JobSpec()
        job.jobDefinitionID = 4242
        job.jobName = "gw_%s_%d" % (lfn.split(".")[0], i)
        job.transformation = "/bin/sh"
        job.jobParameters = "-c 'echo %s > out.%d.root'" % (lfn, i)
        job.destinationDBlock = datasetName
        job.destinationSE = "DISK"
        job.currentPriority = 1000
        job.prodSourceLabel = "user"
        job.computingSite = site
        job.maxAttempt = 1
        job.cloud = "CERN"
        job.cpu_architecture_level = "x86_64-v2"
        job.outputFileType = "root"
        fileOut = FileSpec()
        fileOut.lfn = "out.%d.root" % i
        fileOut.dataset = datasetName
        fileOut.scope = "user.jdoe"
        fileOut.destinationDBlock = datasetName
        fileOut.type = "output"
        job.addFile(fileOut)
        fileLog = FileSpec()
        fileLog.lfn = "%s.job.log.tgz" % job.jobName
        fileLog.destinationDBlock = datasetName
        fileLog.scope = "user.jdoe"
        fileLog.type = "log"
        job.addFile(fileLog)
        jobList.append(job)
    s, o = Client.submitJobs(jobList, verbose=False)
    print(json.dumps({"status": s, "out": o}))
elif mode == "kill":
    s, o = Client.killJobs([int(x) for x in sys.argv[2:]])
    print(json.dumps({"status": s, "out": o}))
elif mode == "status":
    s, specs = Client.getJobStatus([int(x) for x in sys.argv[2:]])
    out = None if specs is None else [
        None if j is None else {"PandaID": j.PandaID, "jobStatus": j.jobStatus, "jobName": j.jobName,
                                "prodUserName": j.prodUserName,
                                "creationTime": str(j.creationTime), "files": [f.lfn for f in j.Files]}
        for j in specs
    ]
    print(json.dumps({"status": s, "out": out}))
"""


def _panda_python() -> Path:
    """panda-client's venv: ``$AILURO_PANDACLIENT_PYTHON``, else ``.venv-pandaclient`` (created with pip)."""
    given = os.environ.get("AILURO_PANDACLIENT_PYTHON")
    if given:
        return Path(given)
    venv = REPO / ".venv-pandaclient"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"panda-client=={PANDA_CLIENT_VERSION}"], check=True)
    return python


class Pki:
    """A CA, the gateway's server certificate and users' client certificates, on disk."""

    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA()
        names = ["127.0.0.1", "localhost", socket.getfqdn("127.0.0.1")]
        server = self.ca.issue_cert(*dict.fromkeys(names))
        self.server_cert = tmp / "server.pem"
        self.server_key = tmp / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        # the grid layout panda-client verifies the server with: X509_CERT_DIR with hashed names
        self.ca_dir = tmp / "certificates"
        self.ca_dir.mkdir()
        self.ca.cert_pem.write_to_path(str(self.ca_dir / "ca.pem"))
        subprocess.run(["openssl", "rehash", str(self.ca_dir)], check=True, capture_output=True)
        self.user = self.ca.issue_cert("jdoe@example.org", common_name="Jane Doe")
        self.stranger = self.ca.issue_cert("eve@example.org", common_name="Eve")  # same CA, not in the gridmap
        self.user_proxy = self.proxy_file(tmp / "x509up", self.user)
        # the site's grid-mapfile: Jane's DN is the Ailuro user jdoe of VO compass (no production role)
        self.gridmap = tmp / "grid-mapfile"
        self.gridmap.write_text(f'"{self.dn(self.user)}" jdoe compass user\n')

    @staticmethod
    def proxy_file(path: Path, leaf: trustme.LeafCert) -> Path:
        """A grid proxy file: the certificate and its key."""
        path.write_bytes(leaf.private_key_pem.bytes() + b"".join(p.bytes() for p in leaf.cert_chain_pems))
        return path

    @staticmethod
    def dn(leaf: trustme.LeafCert) -> str:
        from cryptography import x509

        from dispatcher.auth.gridmap import dn_of_certificate

        dn = dn_of_certificate(x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()))
        assert dn is not None
        return dn


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    """A token-mode dispatcher with its embedded issuer in ``tmp_path/auth``."""
    return make_dispatcher(auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"))


def _token(d: RunningDispatcher, user: str, vo: str, *roles: str, queues: tuple[str, ...] = ()) -> str:
    assert d.config.auth.state_dir is not None
    key = embedded.load_key(embedded.IssuerFiles(state_dir=d.config.auth.state_dir))
    return embedded.issue(
        key, issuer="ailuro-embedded", audience="ailuro", user=user, vo=vo, roles=roles, queues=queues
    )


def _admin(d: RunningDispatcher) -> Client:
    return Client(d.address, token=_token(d, "admin", "admin", "admin"))


def _serve(config: GatewayConfig) -> Iterator[str]:
    httpd = make_server(config)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"{'https' if config.tls_cert else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


@pytest.fixture
def gateway(secured: RunningDispatcher, pki: Pki) -> Iterator[str]:
    """An HTTPS gateway: bearer tokens forwarded, client certificates mapped by the grid-mapfile
    and carried as tokens it signs with the dispatcher's issuer key; yields its base URL."""
    config = GatewayConfig(
        server=secured.address,
        port=0,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_ca=pki.ca_file,
        gridmap=pki.gridmap,
        auth_dir=secured.config.auth.state_dir,
    )
    yield from _serve(config)


def _unsigned_jwt(sub: str) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': sub, 'iss': 'https://issuer.test'})}.sig"


def _run_script(env: dict[str, str], tmp: Path, *args: str) -> Any:
    script = tmp / "panda_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [str(_panda_python()), str(script), *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _client_env(url: str, pki: Pki, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDA", "X509", "OIDC", "AILURO"))}
    env.update(
        PANDA_URL_SSL=f"{url}/server/panda",
        PANDA_URL=f"{url}/server/panda",
        PANDACACHE_URL=f"{url}/server/panda",
        X509_CERT_DIR=str(pki.ca_dir),
        PANDA_CONFIG_ROOT=str(tmp / "pandacfg"),
        HOME=str(tmp),
        **extra,
    )
    return env


def _wait_final(env: dict[str, str], tmp: Path, ids: list[int]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while True:
        result = _run_script(env, tmp, "status", *map(str, ids))
        assert result["status"] == 0, result
        jobs = result["out"]
        if all(j["jobStatus"] in ("finished", "failed", "cancelled") for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            pytest.fail(f"jobs not final: {jobs}")
        time.sleep(1)


def _seed_round(env: dict[str, str], tmp: Path, pilots: Callable[..., Any], address: str) -> list[dict[str, Any]]:
    inputs = ["mDST.00001.root", "mDST.00002.root", "mDST.00003.root"]
    submitted = _run_script(env, tmp, "submit", "LOCAL", *inputs)
    assert submitted["status"] == 0, submitted
    rows = submitted["out"]
    assert [r[1:] for r in rows] == [[4242, f"gw_mDST_{i}"] for i in range(3)]
    ids = [r[0] for r in rows]
    killed = _run_script(env, tmp, "kill", str(ids[2]), "987654321")
    assert killed == {"status": 0, "out": [True, False]}
    pilot = pilots(address, "gw-pilot", "--max-jobs", "2")
    assert pilot.wait(120) == 0, pilot.log()
    jobs = _wait_final(env, tmp, [*ids])
    unknown = _run_script(env, tmp, "status", "987654321")
    assert unknown == {"status": 0, "out": [None]}
    assert [j["jobStatus"] for j in jobs] == ["finished", "finished", "cancelled"], (jobs, pilot.log())
    assert jobs[0]["files"] == ["out.0.root", "gw_mDST_0.job.log.tgz"]
    assert jobs[0]["creationTime"].startswith("20")  # a datetime came back through {"__datetime__": ...}
    return jobs


@pytest.fixture
def pilots(tmp_path: Path, secured: RunningDispatcher) -> Iterator[Callable[..., Any]]:
    """Real pilots of queue LOCAL, each with a pilot token of the dispatcher's issuer."""
    from tests.integration.test_pilot_dispatcher import PilotProcess

    token_file = tmp_path / "pilot.token"
    token_file.write_text(_token(secured, "pilot-gw", "compass", "pilot", queues=("LOCAL",)))
    started: list[PilotProcess] = []

    def start(address: str, name: str, *args: str) -> PilotProcess:
        p = PilotProcess(address, tmp_path, name, *args, env={"AILURO_TOKEN_FILE": str(token_file)})
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_real_panda_client_with_oidc_token(
    gateway: str, pki: Pki, secured: RunningDispatcher, pilots: Callable[..., Any], tmp_path: Path
) -> None:
    token = _token(secured, "jdoe", "compass")
    env = _client_env(gateway, pki, tmp_path, PANDA_AUTH="oidc", PANDA_AUTH_VO="compass", PANDA_AUTH_ID_TOKEN=token)
    jobs = _seed_round(env, tmp_path, pilots, secured.address)
    assert {j["prodUserName"] for j in jobs} == {"jdoe"}  # the dispatcher validated the token's sub


def test_real_panda_client_with_client_certificate(
    gateway: str, pki: Pki, secured: RunningDispatcher, pilots: Callable[..., Any], tmp_path: Path
) -> None:
    env = _client_env(gateway, pki, tmp_path, X509_USER_PROXY=str(pki.user_proxy))
    jobs = _seed_round(env, tmp_path, pilots, secured.address)
    assert {j["prodUserName"] for j in jobs} == {"jdoe"}  # the DN, mapped by the grid-mapfile


def test_real_panda_client_with_a_grid_proxy(
    gateway: str, pki: Pki, secured: RunningDispatcher, tmp_path: Path
) -> None:
    """An RFC 3820 proxy (X509_USER_PROXY: proxy certificate, its key, the user's certificate) maps
    by the user's DN; a proxy of an unmapped user is refused."""
    from cryptography.hazmat.primitives import serialization

    from tests.unit.test_gridmap import make_proxy_with_key

    def proxy_file(leaf: trustme.LeafCert, name: str) -> Path:
        cert, key = make_proxy_with_key(leaf)
        path = tmp_path / name
        path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            + leaf.cert_chain_pems[0].bytes()
        )
        return path

    env = _client_env(gateway, pki, tmp_path, X509_USER_PROXY=str(proxy_file(pki.user, "x509up_u1000")))
    submitted = _run_script(env, tmp_path, "submit", "LOCAL", "mDST.00001.root")
    assert submitted["status"] == 0, submitted
    ((pid, _, _),) = submitted["out"]
    status = _run_script(env, tmp_path, "status", str(pid))
    assert status["out"][0]["prodUserName"] == "jdoe", status
    stranger = proxy_file(pki.stranger, "x509up_eve")
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(str(stranger))
    answer = httpx.post(f"{gateway}/api/v1/job/kill", json={"job_ids": [pid]}, verify=context, timeout=60).json()
    assert answer["success"] is False and "not in the grid-mapfile" in answer["message"], answer


def _https(pki: Pki, leaf: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if leaf is not None:
        leaf.configure_cert(context)
    return context


def _managed_job(name: str) -> list[Any]:
    return _job_array(jobName=name, transformation="/bin/true", computingSite="LOCAL", prodSourceLabel="managed")


def test_managed_jobs_need_the_production_role(gateway: str, pki: Pki, secured: RunningDispatcher) -> None:
    body = {"jobs": json.dumps([_managed_job("m1")])}
    # the mapped certificate user has no production role: refused, nothing submitted
    by_cert = httpx.post(f"{gateway}/api/v1/job/submit", json=body, verify=_https(pki, pki.user), timeout=60).json()
    assert by_cert["success"] is False and "production role" in by_cert["message"], by_cert
    user = {"Authorization": f"Bearer {_token(secured, 'jdoe', 'compass')}", "Origin": "compass"}
    by_user = httpx.post(f"{gateway}/api/v1/job/submit", json=body, headers=user, verify=_https(pki), timeout=60)
    assert by_user.json()["success"] is False and "jobs[0].prodSourceLabel" in by_user.json()["message"]
    with _admin(secured) as admin:
        assert list(admin.list_jobs()) == []
    # a production token may
    prod = {"Authorization": f"Bearer {_token(secured, 'prodsys', 'compass', 'production')}", "Origin": "compass"}
    answer = httpx.post(f"{gateway}/api/v1/job/submit", json=body, headers=prod, verify=_https(pki), timeout=60).json()
    assert answer["success"] is True, answer
    with _admin(secured) as admin:
        (job,) = admin.get([answer["data"][0][0]])
    assert (job.owner, job.vo, job.prod_source_label) == ("prodsys", "compass", "managed")


def test_origin_must_match_the_callers_vo_and_unknown_dns_are_refused(
    gateway: str, pki: Pki, secured: RunningDispatcher
) -> None:
    body = {"jobs": json.dumps([_good(0)])}
    mismatch = {"Authorization": f"Bearer {_token(secured, 'jdoe', 'compass')}", "Origin": "amber"}
    answer = httpx.post(f"{gateway}/api/v1/job/submit", json=body, headers=mismatch, verify=_https(pki)).json()
    assert answer["success"] is False and "Origin" in answer["message"] and "compass" in answer["message"], answer
    by_cert = httpx.post(
        f"{gateway}/api/v1/job/submit", json=body, headers={"Origin": "amber"}, verify=_https(pki, pki.user)
    ).json()
    assert by_cert["success"] is False and "Origin" in by_cert["message"], by_cert
    stranger = httpx.post(f"{gateway}/api/v1/job/submit", json=body, verify=_https(pki, pki.stranger)).json()
    assert stranger["success"] is False and "not in the grid-mapfile" in stranger["message"], stranger
    forged = {"Authorization": f"Bearer {_token(secured, 'jdoe', 'compass')[:-3]}abc"}
    answer = httpx.post(f"{gateway}/api/v1/job/submit", json=body, headers=forged, verify=_https(pki)).json()
    assert answer["success"] is False and "UNAUTHENTICATED" in answer["message"], answer
    nobody = httpx.post(f"{gateway}/api/v1/job/submit", json=body, verify=_https(pki)).json()
    assert nobody["success"] is False and "UNAUTHENTICATED" in nobody["message"], nobody
    with _admin(secured) as admin:
        assert list(admin.list_jobs()) == []


# -- hostile bodies: always HTTP 200 with success false and a message; nothing submitted ---------


def _post(url: str, pki: Pki, route: str, content: bytes, token: str | None = None) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    headers = {"Authorization": f"Bearer {token}", "Origin": "compass"} if token else {}
    response = httpx.post(f"{url}/api/v1/{route}", content=content, headers=headers, verify=context, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _job_array(**values: Any) -> list[Any]:
    from ailuro.compat.panda_spec import WIRE_JOB_ATTRIBUTES

    row: list[Any] = ["NULL"] * len(WIRE_JOB_ATTRIBUTES)
    for name, value in values.items():
        row[WIRE_JOB_ATTRIBUTES.index(name)] = value
    return [*row, []]


def _good(i: int) -> list[Any]:
    return _job_array(jobName=f"ok{i}", transformation="/bin/true", computingSite="LOCAL", jobDefinitionID=1)


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("non-JSON", b"this is not json", "body"),
    ("truncated JSON", b'{"jobs": "[[1, 2', "body"),
    ("jobs not a list", {"jobs": json.dumps({"a": 1})}, "jobs"),
    ("truncated job array", {"jobs": json.dumps([_good(0), _good(1)[:50]])}, "jobs[1]"),
    ("wrong type in a value", {"jobs": json.dumps([_good(0), [*_good(1)[:3], [1], *_good(1)[4:]]])}, "jobs[1][3]"),
    ("file array too short", {"jobs": json.dumps([[*_good(0)[:-1], [["x"] * 5]]])}, "jobs[0][126][0]"),
    ("10,000 jobs", {"jobs": json.dumps([_good(i) for i in range(MAX_JOBS * 2)])}, "jobs"),
    ("body is an array", b"[1, 2, 3]", "body"),
    ("jobs is a number", {"jobs": 42}, "jobs"),
    ("a job is null", {"jobs": json.dumps([_good(0), None])}, "jobs[1]"),
    ("an object where a value goes", {"jobs": json.dumps([[*_good(0)[:5], {"x": 1}, *_good(0)[6:]]])}, "jobs[0][5]"),
    ("a file value of the wrong type",
     {"jobs": json.dumps([[*_good(0)[:-1], [[[1], *(["NULL"] * 17), None]]]])}, "jobs[0][126][0][0]"),
    ("empty body", b"", "body"),
    ("deep nesting", b'{"jobs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body"),
    ("deep nesting inside the string", {"jobs": "[" * 100_000 + "]" * 100_000}, "jobs"),
    ("bad job in a good batch", {"jobs": json.dumps([_good(0), _job_array(jobName="bad")])}, "jobs[1]"),
    ("managed without the production role", {"jobs": json.dumps([_job_array(
        jobName="m", transformation="/bin/true", computingSite="LOCAL", prodSourceLabel="managed")])},
     "prodSourceLabel"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_malformed_submission_is_refused_whole(
    gateway: str, pki: Pki, secured: RunningDispatcher, name: str, body: Any, field: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    # a valid user's token: what is refused is the body (or the label), not the caller
    answer = _post(gateway, pki, "job/submit", content, _token(secured, "jdoe", "compass"))
    assert answer["success"] is False, answer
    assert field in answer["message"], answer
    assert answer["data"] is None
    with _admin(secured) as client:
        assert list(client.list_jobs()) == [], f"{name}: something was submitted"


def test_oversized_body_and_bad_ids_and_unknown_paths(gateway: str, pki: Pki) -> None:
    huge = b'{"jobs": "' + b"x" * (17 << 20) + b'"}'
    answer = _post(gateway, pki, "job/submit", huge)
    assert answer["success"] is False and "body" in answer["message"]
    bad_ids = (("[1, 2]", "job_ids"), ('{"job_ids": ["x"]}', "job_ids[0]"), ('{"job_ids": [[1]]}', "job_ids[0]"))
    for ids, field in bad_ids:
        answer = _post(gateway, pki, "job/kill", ids.encode())
        assert answer["success"] is False and field in answer["message"], answer
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    alive = httpx.get(f"{gateway}/api/v1/system/is_alive", verify=context).json()
    assert alive["success"] is True
    assert httpx.get(f"{gateway}/server/panda/getJobStatus", verify=context).status_code == 404


def test_plain_gateway_without_dev_mode_does_not_trust_the_token_and_warns(
    make_dispatcher: Callable[..., RunningDispatcher],
) -> None:
    dispatcher = make_dispatcher(auth=AuthConfig(mode="trusted-metadata"))  # development, loopback
    httpd = make_server(GatewayConfig(server=dispatcher.address, port=0))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/api/v1"
        job = _job_array(
            jobName="w1", transformation="/bin/true", computingSite="LOCAL", jobDefinitionID=9, cloud="CERN"
        )
        headers = {"Authorization": f"Bearer {_unsigned_jwt('mallory')}", "Origin": "compass", "Host": "elsewhere"}
        answer = httpx.post(f"{url}/job/submit", json={"jobs": json.dumps([job])}, headers=headers).json()
        assert answer["success"] is True, answer
        ((panda_id, definition_id, name),) = answer["data"]
        assert (definition_id, name) == (9, "w1")
        assert "warning: ignored attributes" in answer["message"] and "cloud" in answer["message"]
        described = httpx.post(f"{url}/job/get_description", json={"job_ids": [panda_id]}, headers=headers).json()
        (job_dict,) = described["data"]
        # without --dev-trust-token-sub the unverified token names nobody: the job is anonymous's;
        # Origin is passed along as the caller's VO
        assert (job_dict["prodUserName"], job_dict["VO"]) == ("anonymous", "compass")
        assert job_dict["jobStatus"] in {"defined", "assigned", "activated"}
        bad_origin = httpx.post(f"{url}/job/kill", json={"job_ids": [panda_id]}, headers={"Origin": "a b/../c"}).json()
        assert bad_origin["success"] is False and "Origin" in bad_origin["message"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_a_certificate_from_another_ca_is_refused(gateway: str, pki: Pki, tmp_path: Path) -> None:
    stranger = trustme.CA().issue_cert("mallory@example.org", common_name="Mallory")
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    stranger.configure_cert(context)
    with pytest.raises(httpx.HTTPError):  # the handshake fails: no DN of an unverified certificate is used
        httpx.post(f"{gateway}/api/v1/job/kill", json={"job_ids": [1]}, verify=context, timeout=30).raise_for_status()
    # the real client with that certificate gets PanDA's failure status, nothing else
    proxy = tmp_path / "stranger_x509up"
    proxy.write_bytes(stranger.private_key_pem.bytes() + b"".join(p.bytes() for p in stranger.cert_chain_pems))
    env = _client_env(gateway, pki, tmp_path, X509_USER_PROXY=str(proxy))
    assert _run_script(env, tmp_path, "kill", "1") == {"status": 255, "out": None}


def test_the_cli_command_serves_and_checks_its_options(dispatcher: RunningDispatcher, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "ailuro_cli.main"]
    bad = subprocess.run([*cli, "gateway", "--port", "0", "--tls-ca", "ca.pem"], capture_output=True, text=True)
    assert bad.returncode == 2 and "tls_ca" in bad.stderr
    (tmp_path / "gridmap").write_text('"/CN=x" x compass user\n')
    no_ca = subprocess.run(
        [*cli, "gateway", "--port", "0", "--gridmap", str(tmp_path / "gridmap")], capture_output=True, text=True
    )
    assert no_ca.returncode == 2 and "gridmap" in no_ca.stderr and "--tls-ca" in no_ca.stderr, no_ca.stderr
    proc = subprocess.Popen(
        [*cli, "--server", dispatcher.address, "gateway", "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert f"-> dispatcher {dispatcher.address}" in line, line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert httpx.get(f"{url}/api/v1/system/is_alive", timeout=30).json()["success"] is True
    finally:
        proc.terminate()
        proc.wait(30)
