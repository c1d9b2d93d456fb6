"""Monitor login: the session cookie's flags, CSRF on login and logout, refused tokens, and OIDC
authorization-code login (PKCE) against a tiny OIDC provider written here, which signs its tokens
with a key made in the test and checks the monitor's client secret and PKCE verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi.testclient import TestClient
from monitor_login import Identities, identities

from ailuro.errors import InvalidArgument
from dispatcher.auth.issuer import issue, public_jwk
from monitor.app import create_app
from monitor.config import MonitorConfig
from monitor.oidc import OidcConfig, load_oidc_config
from monitor.sampledata import SampleSpec, load_sample

CALLBACK = "http://testserver/login/oidc/callback"


@pytest.fixture
def sample_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'login.db'}"
    load_sample(url, SampleSpec(n_jobs=20, now=time.time(), span_hours=4.0))  # VO compass
    return url


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def _login(client: TestClient, token: str) -> Any:
    csrf = _csrf(client.get("/login").text)
    return client.post("/login", data={"token": token, "csrf": csrf, "next": "/jobs/"}, follow_redirects=False)


@pytest.fixture
def ids(tmp_path: Path) -> Identities:
    return identities(tmp_path)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_session_cookie_flags_and_contents(sample_db: str, ids: Identities, scheme: str) -> None:
    token = ids.token("alice", "compass")
    with TestClient(create_app(MonitorConfig(db_url=sample_db, auth=ids.auth())), base_url=f"{scheme}://t") as web:
        r = _login(web, token)
        assert r.status_code == 303
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ailuro_session="))
        flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
        assert "httponly" in flags and flags["samesite"].lower() == "samesite=strict" and flags["path"] == "Path=/"
        assert ("secure" in flags) is (scheme == "https")  # Secure exactly when served over TLS
        value = cookie.split(";")[0].split("=", 1)[1]
        assert token not in cookie and len(value) < 64  # a session id, never the token
        assert web.get("/jobs/?json").status_code == 200


def test_login_form_needs_its_own_csrf_value(sample_db: str, ids: Identities) -> None:
    with TestClient(create_app(MonitorConfig(db_url=sample_db, auth=ids.auth()))) as web:
        web.get("/login")
        forged = web.post(
            "/login", data={"token": ids.token("mallory", "compass"), "csrf": "guess"}, follow_redirects=False
        )
        assert forged.status_code == 403 and "ailuro_session" not in forged.headers.get("set-cookie", "")
        assert web.get("/jobs/?json").status_code == 401


def test_logout_is_a_post_with_the_session_csrf_token(sample_db: str, ids: Identities) -> None:
    with TestClient(create_app(MonitorConfig(db_url=sample_db, auth=ids.auth()))) as web:
        assert _login(web, ids.token("alice", "compass")).status_code == 303
        page = web.get("/jobs/").text
        session = web.cookies.get("ailuro_session")
        assert 'action="/logout"' in page and "alice" in page
        assert web.get("/logout").status_code == 405  # a link or an image cannot log out
        forged = web.post("/logout", data={"csrf": "guess"}, follow_redirects=False)
        assert forged.status_code == 403 and web.get("/jobs/?json").status_code == 200
        out = web.post("/logout", data={"csrf": _csrf(page)}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        web.cookies.set("ailuro_session", session or "")
        # the old cookie proves nothing any more: the session ended on the server
        assert web.get("/jobs/", follow_redirects=False).status_code == 302
        assert web.get("/jobs/?json").status_code == 401


def test_refused_tokens(sample_db: str, ids: Identities) -> None:
    with TestClient(create_app(MonitorConfig(db_url=sample_db, auth=ids.auth()))) as web:
        pilot = _login(web, ids.token("p1", "compass", ("pilot",)))
        assert pilot.status_code == 403 and "cannot log in" in pilot.text
        expired = issue(ids.key, issuer="ailuro-embedded", audience="ailuro", user="a", vo="compass", now=1e9)
        r = _login(web, expired)
        assert r.status_code == 401 and "token expired" in r.text
        for header in (f"Bearer {expired}", "Basic abc", "Bearer not.a.jwt"):
            r = web.get("/jobs/?json", headers={"Authorization": header})
            assert r.status_code == 401 and r.json()["error"], header
        stranger = ed25519.Ed25519PrivateKey.generate()
        forged = issue(stranger, issuer="ailuro-embedded", audience="ailuro", user="admin", vo="admin", roles=["admin"])
        assert web.get("/jobs/?json", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert web.get("/login?next=//evil.example/").status_code == 200
        assert 'value="/jobs/"' in web.get("/login?next=//evil.example/").text  # never sent off-site


def test_audit_page_without_the_table_says_so(sample_db: str, ids: Identities) -> None:
    """A database from before migration 0010 (a monitor newer than its dispatcher) has no audit table."""
    from sqlalchemy import create_engine, text

    engine = create_engine(sample_db)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE audit"))
    engine.dispose()
    with TestClient(create_app(MonitorConfig(db_url=sample_db, auth=ids.auth())), headers=ids.admin()) as web:
        data = web.get("/audit/?json").json()
        assert data["present"] is False and data["rows"] == []
        assert 'id="audit-missing"' in web.get("/audit/").text


# --- a tiny OIDC provider ------------------------------------------------------------------------


class Provider:
    """An OIDC provider on a loopback port: discovery, authorize (auto-approves), token, JWKS."""

    def __init__(self, *, user: str, groups: list[str]) -> None:
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.user, self.groups = user, groups
        self.client_id, self.client_secret = "ailuro-monitor", secrets.token_urlsafe(16)
        self.codes: dict[str, dict[str, str]] = {}
        self.exchanges: list[dict[str, str]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif url.path == "/jwks":
                    self._json(200, {"keys": [public_jwk(provider.key)]})
                elif url.path == "/authorize":
                    query = dict(urllib.parse.parse_qsl(url.query))
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = query
                    target = (
                        query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": query["state"]})
                    )
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                status, body = provider.exchange(form, self.headers.get("Authorization", ""))
                self._json(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
        }

    def exchange(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        """The token endpoint: client secret, one-time code, redirect URI and PKCE all checked."""
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != f"Basic {basic}":
            return 401, {"error": "invalid_client"}
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None or form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        challenge = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
        if asked.get("code_challenge_method") != "S256" or challenge.rstrip(b"=").decode() != asked["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier does not match"}
        self.exchanges.append(form)
        groups_vo = self.groups[0].strip("/").split("/")[0]
        roles = [g.strip("/").split("/")[1] for g in self.groups if g.count("/") == 2]
        access = issue(self.key, issuer=self.issuer, audience="ailuro", user=self.user, vo=groups_vo, roles=roles)
        now = int(time.time())
        id_token = jwt.encode(
            {
                "iss": self.issuer,
                "sub": self.user,
                "aud": self.client_id,
                "iat": now,
                "exp": now + 300,
                "nonce": asked["nonce"],
            },
            self.key,
            algorithm="EdDSA",
            headers={"kid": public_jwk(self.key)["kid"]},
        )
        return 200, {"access_token": access, "id_token": id_token, "token_type": "Bearer", "expires_in": 3600}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider(user="carol", groups=["/compass"])
    try:
        yield p
    finally:
        p.close()


def _oidc_app(db_url: str, provider: Provider, ids: Identities) -> Any:
    config = OidcConfig(
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        redirect_url=CALLBACK,
        allow_http=True,  # the provider runs on loopback without TLS in this test
    )
    return create_app(MonitorConfig(db_url=db_url, auth=ids.auth(), oidc=config))


def _follow_to_callback(authorize_url: str) -> str:
    """The browser's visit to the issuer: it answers with a redirect to the monitor's callback."""

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(Stop)
    try:
        opener.open(authorize_url, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        location = exc.headers["Location"]
        assert location.startswith(CALLBACK)
        return location.removeprefix("http://testserver")
    raise AssertionError("the provider did not redirect")


def test_oidc_authorization_code_login_with_pkce(sample_db: str, provider: Provider, ids: Identities) -> None:
    with TestClient(_oidc_app(sample_db, provider, ids)) as web:
        assert f"Log in with {provider.issuer}" in web.get("/login").text
        start = web.get("/login/oidc?next=/sites/", follow_redirects=False)
        assert start.status_code == 302
        authorize = start.headers["location"]
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
        assert authorize.startswith(f"{provider.issuer}/authorize?")
        assert query["code_challenge_method"] == "S256" and query["client_id"] == provider.client_id
        assert query["redirect_uri"] == CALLBACK and "openid" in query["scope"].split()
        state_cookie = next(c for c in start.headers.get_list("set-cookie") if c.startswith("ailuro_oidc="))
        assert "samesite=lax" in state_cookie.lower() and "httponly" in state_cookie.lower()
        callback = _follow_to_callback(authorize)

        done = web.get(callback, follow_redirects=False)
        assert done.status_code == 200 and 'url=/sites/"' in done.text  # our own page moves on
        assert provider.exchanges and provider.exchanges[0]["grant_type"] == "authorization_code"
        assert web.get("/jobs/?json").status_code == 200
        assert "carol" in web.get("/jobs/").text
        # the same code cannot be used twice; a state this browser did not start is refused
        assert web.get(callback, follow_redirects=False).status_code == 401
        other = web.get("/login/oidc/callback?code=x&state=not-mine", follow_redirects=False)
        assert other.status_code == 401 and "state" in other.text
        # the OIDC provider's access token also works as a bearer token for scripts
        token = issue(provider.key, issuer=provider.issuer, audience="ailuro", user="carol", vo="compass")
        assert TestClient(web.app).get("/jobs/?json", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_oidc_login_refused_without_the_browser_state_cookie(
    sample_db: str, provider: Provider, ids: Identities
) -> None:
    with TestClient(_oidc_app(sample_db, provider, ids)) as web:
        authorize = web.get("/login/oidc", follow_redirects=False).headers["location"]
        callback = _follow_to_callback(authorize)
        web.cookies.clear()  # a login started in another browser (login CSRF) is not finished here
        r = web.get(callback, follow_redirects=False)
        assert r.status_code == 401 and "ailuro_session" not in r.headers.get("set-cookie", "")


def test_oidc_client_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "oidc.toml"
    path.write_text(
        'issuer = "https://iam.example.org/"\nclient_id = "m"\nclient_secret = "s"\n'
        'redirect_url = "https://mon.example.org/login/oidc/callback"\n'
    )
    path.chmod(0o644)
    with pytest.raises(InvalidArgument, match="chmod 600"):
        load_oidc_config(path)
    path.chmod(0o600)
    assert load_oidc_config(path).client_id == "m"
    path.write_text(path.read_text().replace("https://iam", "http://iam"))
    with pytest.raises(InvalidArgument, match="https"):
        load_oidc_config(path)


def test_monitor_serves_https_and_its_session_cookie_is_secure(sample_db: str, ids: Identities, tmp_path: Path) -> None:
    """--tls-cert/--tls-key: a real uvicorn over TLS (certificates made by trustme); the cookie is Secure."""
    import httpx
    import trustme

    from monitor.server import run_in_thread

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = MonitorConfig(
        db_url=sample_db, port=0, auth=ids.auth(), tls_cert=tmp_path / "server.pem", tls_key=tmp_path / "server.pem"
    )
    running = run_in_thread(config)
    try:
        assert running.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with httpx.Client(base_url=running.url, verify=trust) as web:
            csrf = _csrf(web.get("/login").text)
            r = web.post("/login", data={"token": ids.token("alice", "compass"), "csrf": csrf, "next": "/jobs/"})
            assert r.status_code == 303
            cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ailuro_session="))
            assert "; secure" in cookie.lower() and "samesite=strict" in cookie.lower()
            assert web.get("/jobs/?json").status_code == 200
    finally:
        running.stop()
