"""Bearer token validation: every refusal has a precise reason; keys are made in the test."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import AuthConfig, IssuerConfig
from dispatcher.auth.jwks import JwksCache, JwksError
from dispatcher.auth.principal import ClaimsError, Principal, vo_and_roles
from dispatcher.auth.tokens import AuthError, TokenValidator

ISS = "https://iam.example.org/"
AUD = "ailuro"
NOW = 1_800_000_000.0


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    algo = {rsa.RSAPublicKey: RSAAlgorithm, ec.EllipticCurvePublicKey: ECAlgorithm}
    cls = next((a for t, a in algo.items() if isinstance(public, t)), OKPAlgorithm)
    jwk = json.loads(cls.to_jwk(public))
    jwk["kid"] = kid
    return jwk


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.fixture
def validator(keys: dict[str, Any], tmp_path: Path) -> TokenValidator:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(k, kid) for kid, k in keys.items()]}))
    issuer = IssuerConfig(issuer=ISS, jwks=str(path), audience=AUD, algorithms=("RS256", "ES256", "EdDSA"))
    return TokenValidator(AuthConfig(mode="token", clock_skew_s=30), (issuer,), clock=lambda: NOW)


def claims(**override: Any) -> dict[str, Any]:
    base = {
        "iss": ISS,
        "sub": "jdoe",
        "aud": AUD,
        "iat": int(NOW) - 10,
        "nbf": int(NOW) - 10,
        "exp": int(NOW) + 3600,
        "wlcg.groups": ["/compass", "/compass/production"],
        "scope": "compute.create compute.read storage.read:/",
    }
    base.update(override)
    return {k: v for k, v in base.items() if v is not None}


def sign(keys: dict[str, Any], body: dict[str, Any], *, kid: str = "ec", alg: str = "ES256") -> str:
    return jwt.encode(body, keys[kid if kid in keys else "ec"], algorithm=alg, headers={"kid": kid})


def refused(validator: TokenValidator, token: str) -> str:
    with pytest.raises(AuthError) as info:
        validator.validate(token)
    return info.value.reason


@pytest.mark.parametrize(("kid", "alg"), [("rsa", "RS256"), ("ec", "ES256"), ("ed", "EdDSA")])
def test_valid_token_maps_wlcg_claims(validator: TokenValidator, keys: dict[str, Any], kid: str, alg: str) -> None:
    principal = validator.validate(sign(keys, claims(), kid=kid, alg=alg))
    assert principal == Principal(
        user="jdoe",
        vo="compass",
        roles=("production",),
        scopes=("compute.create", "compute.read"),
        queues=(),
        issuer=ISS,
        expires=NOW + 3600,
    )


def test_audience_list_and_queues(validator: TokenValidator, keys: dict[str, Any]) -> None:
    token = sign(keys, claims(aud=["other", AUD], **{"wlcg.groups": ["/compass/pilot"], "ailuro.queues": ["Q2", "Q1"]}))
    principal = validator.validate(token)
    assert (principal.roles, principal.queues) == (("pilot",), ("Q1", "Q2"))


def test_expired_and_not_yet_valid_respect_the_skew(validator: TokenValidator, keys: dict[str, Any]) -> None:
    assert refused(validator, sign(keys, claims(exp=int(NOW) - 31))) == "token expired"
    assert validator.validate(sign(keys, claims(exp=int(NOW) - 29))).user == "jdoe"  # within skew
    future = "token not yet valid ('nbf' or 'iat' in the future)"
    assert refused(validator, sign(keys, claims(nbf=int(NOW) + 31))) == future
    assert refused(validator, sign(keys, claims(iat=int(NOW) + 31, nbf=None))) == future
    assert validator.validate(sign(keys, claims(nbf=int(NOW) + 29))).user == "jdoe"


def test_wrong_issuer_and_audience(validator: TokenValidator, keys: dict[str, Any]) -> None:
    assert "not trusted" in refused(validator, sign(keys, claims(iss="https://evil.example/")))
    assert (
        refused(validator, sign(keys, claims(aud="someone-else"))) == "token audience ('aud') does not include 'ailuro'"
    )


def test_alg_none_is_refused(validator: TokenValidator) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "ec"}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    assert "algorithm 'none' is not allowed" in refused(validator, f"{header}.{body}.")


def test_hmac_with_the_public_key_as_secret_is_refused(validator: TokenValidator, keys: dict[str, Any]) -> None:
    public_pem = (
        keys["rsa"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "kid": "rsa", "typ": "JWT"}
    seg = [base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=") for p in (header, claims())]
    import hashlib
    import hmac

    mac = hmac.new(public_pem, b".".join(seg), hashlib.sha256).digest()
    token = b".".join([*seg, base64.urlsafe_b64encode(mac).rstrip(b"=")]).decode()
    assert "algorithm 'HS256' is not allowed" in refused(validator, token)


def test_key_type_must_match_algorithm(keys: dict[str, Any], tmp_path: Path) -> None:
    """An RS256 header on a kid that names an EC key is refused before any signature check."""
    path = tmp_path / "jwks.json"
    jwk = _jwk(keys["ec"], "k1")
    path.write_text(json.dumps({"keys": [jwk]}))
    issuer = IssuerConfig(issuer=ISS, jwks=str(path), audience=AUD, algorithms=("RS256", "ES256"))
    v = TokenValidator(AuthConfig(mode="token"), (issuer,), clock=lambda: NOW)
    token = jwt.encode(claims(), keys["rsa"], algorithm="RS256", headers={"kid": "k1"})
    assert refused(v, token) == "token algorithm RS256 does not match the type of key 'k1'"


def test_unknown_kid_missing_kid_and_tampered_signature(validator: TokenValidator, keys: dict[str, Any]) -> None:
    assert refused(validator, sign(keys, claims(), kid="nope")) == "token key id ('kid') is unknown to its issuer"
    no_kid = jwt.encode(claims(), keys["ec"], algorithm="ES256")
    assert refused(validator, no_kid) == "token header has no key id ('kid')"
    head, _body, sig = sign(keys, claims()).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(sub="root")).encode()).rstrip(b"=").decode()
    assert refused(validator, f"{head}.{forged}.{sig}") == "token signature does not verify"
    # signed by another key under a known kid
    other = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "ec"})
    assert refused(validator, other) == "token signature does not verify"


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "aud"])
def test_missing_required_claims(validator: TokenValidator, keys: dict[str, Any], claim: str) -> None:
    reason = refused(validator, sign(keys, claims(**{claim: None})))
    assert claim in reason, reason


def test_groups_must_name_one_vo(validator: TokenValidator, keys: dict[str, Any]) -> None:
    assert refused(validator, sign(keys, claims(**{"wlcg.groups": []}))) == "claim 'wlcg.groups' names no VO"
    two = sign(keys, claims(**{"wlcg.groups": ["/compass", "/amber"]}))
    assert refused(validator, two) == "claim 'wlcg.groups' names 2 VOs; a token must act for one"
    assert "not a group path" in refused(validator, sign(keys, claims(**{"wlcg.groups": ["compass"]})))


def test_oversized_and_malformed_tokens(validator: TokenValidator, keys: dict[str, Any]) -> None:
    big = sign(keys, claims(padding="x" * 17_000))
    assert refused(validator, big) == "token longer than 16384 bytes"
    assert refused(validator, "not-a-jwt") == "token is not a well-formed JWT"


def test_vo_and_roles_pure() -> None:
    assert vo_and_roles(["/compass", "/compass/pilot", "/compass/analysis/x"]) == ("compass", ("pilot",))
    with pytest.raises(ClaimsError):
        vo_and_roles(["/"])


def test_jwks_fetch_is_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"keys": [], "pad": "x" * 2000}))
    with pytest.raises(JwksError, match="larger than 1000 bytes"):
        JwksCache(str(big), refresh_s=60, timeout_s=1, max_bytes=1000).key("k")
    with pytest.raises(JwksError, match="only https:// URLs or files"):
        JwksCache("http://127.0.0.1:9/jwks", refresh_s=60, timeout_s=1, max_bytes=1000).key("k")


def test_jwks_refresh_picks_up_a_new_key_and_survives_an_outage(keys: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(keys["ec"], "old")]}))
    now = [0.0]
    cache = JwksCache(str(path), refresh_s=300, timeout_s=1, max_bytes=10_000, clock=lambda: now[0])
    assert cache.key("old") is not None
    path.write_text(json.dumps({"keys": [_jwk(keys["ec"], "old"), _jwk(keys["ed"], "new")]}))
    now[0] = 5.0
    assert cache.key("new") is None  # unknown kids refetch at most every 10 s
    now[0] = 11.0
    assert cache.key("new") is not None
    path.unlink()
    now[0] = 400.0
    assert cache.key("old") is not None  # the issuer is unreachable: keep the keys we had


def test_embedded_issuer_files_and_tokens(tmp_path: Path) -> None:
    files = embedded.IssuerFiles(state_dir=tmp_path / "state")
    assert embedded.ensure(files, issuer="ailuro-embedded", audience=AUD, admin_vo="admin", now=time.time())
    assert stat.S_IMODE(files.state_dir.stat().st_mode) == 0o700
    for path in (files.key, files.jwks, files.admin_token):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not embedded.ensure(files, issuer="ailuro-embedded", audience=AUD, admin_vo="admin")  # kept
    issuer = IssuerConfig(issuer="ailuro-embedded", jwks=str(files.jwks), audience=AUD)
    v = TokenValidator(AuthConfig(mode="token"), (issuer,))
    admin = v.validate(files.admin_token.read_text().strip())
    assert (admin.user, admin.vo, admin.roles) == ("admin", "admin", ("admin",))
    key = embedded.load_key(files)
    pilot = v.validate(
        embedded.issue(
            key, issuer="ailuro-embedded", audience=AUD, user="p1", vo="compass", roles=["pilot"], queues=["Q"]
        )
    )
    assert (pilot.roles, pilot.queues, pilot.scopes) == (("pilot",), ("Q",), ("compute.modify", "compute.read"))
    os.chmod(files.key, 0o644)
    with pytest.raises(embedded.IssuerError, match="accessible by group or others"):
        embedded.load_key(files)


def test_parse_duration() -> None:
    assert embedded.parse_duration("12h") == 43200
    assert embedded.parse_duration("90") == 90
    for bad in ("", "-1h", "0", "12 weeks", "400d"):
        with pytest.raises(ValueError):
            embedded.parse_duration(bad)


def test_jwks_over_http_is_bounded_and_never_redirected(keys: dict[str, Any]) -> None:
    """A real local HTTP server (allowed only by the development flag): fetch, size cap, no redirect."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = json.dumps({"keys": [_jwk(keys["ec"], "k")]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/jwks")
                self.end_headers()
                return
            data = body if self.path == "/jwks" else b"x" * 5000
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        fetch = {"refresh_s": 60, "timeout_s": 5, "max_bytes": 1000, "allow_http": True}
        assert JwksCache(f"{base}/jwks", **fetch).key("k") is not None
        with pytest.raises(JwksError, match="larger than 1000 bytes"):
            JwksCache(f"{base}/big", **fetch).key("k")
        with pytest.raises(JwksError, match="redirected"):
            JwksCache(f"{base}/redirect", **fetch).key("k")
    finally:
        server.shutdown()
        server.server_close()


def _ensure_and_report(state_dir: str) -> str:
    files = embedded.IssuerFiles(state_dir=Path(state_dir))
    embedded.ensure(files, issuer="ailuro-embedded", audience=AUD, admin_vo="admin")
    return embedded.public_jwk(embedded.load_key(files))["kid"]


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(4) as pool:
        kids = pool.map(_ensure_and_report, [str(tmp_path / "state")] * 4)
    assert len(set(kids)) == 1
    jwks = json.loads((tmp_path / "state" / "jwks.json").read_text())
    assert [k["kid"] for k in jwks["keys"]] == kids[:1]
