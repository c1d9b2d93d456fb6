"""OIDC authorization-code login (with PKCE) against one configured issuer.

The flow: ``/login/oidc`` makes a random ``state``, ``nonce`` and PKCE verifier (S256 challenge),
remembers them here (bounded, ten minutes) and ties them to the browser with a short cookie, then
sends the browser to the issuer's ``authorization_endpoint``. The issuer sends it back to
``/login/oidc/callback?code&state``; the monitor checks the state against the cookie, trades the
code (with the verifier and its client secret) at the ``token_endpoint`` and validates the
**access token** with the dispatcher's own validator (issuer, audience, expiry, signature from
the discovery document's ``jwks_uri``, WLCG groups): the monitor trusts exactly what the
dispatcher would. An ID token, when returned, must carry the nonce.

The client settings are read from a TOML file only its owner may read (it holds the secret)::

    issuer = "https://iam.example.org/"
    client_id = "ailuro-monitor"
    client_secret = "..."
    redirect_url = "https://monitor.example.org/login/oidc/callback"
    scopes = ["openid", "profile", "wlcg.groups"]   # optional
    audience = "ailuro"                               # optional: the aud access tokens carry
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import stat
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt

from ailuro.errors import InvalidArgument, Unauthenticated
from dispatcher.auth.config import DEFAULT_AUDIENCE, AuthConfig, IssuerConfig
from dispatcher.auth.tokens import TokenValidator

PENDING_TTL_S = 600.0
"""A login started must come back from the issuer within this long."""
MAX_PENDING = 10_000
MAX_RESPONSE_BYTES = 256 * 1024
TIMEOUT_S = 10.0
_KEYS = {"issuer", "client_id", "client_secret", "redirect_url", "scopes", "audience"}
DEFAULT_SCOPES = ("openid", "profile", "wlcg.groups")


@dataclass(frozen=True, kw_only=True)
class OidcConfig:
    """The monitor as an OIDC client of one issuer."""

    issuer: str
    """The issuer URL; its discovery document is ``<issuer>/.well-known/openid-configuration``."""
    client_id: str
    """The monitor's client id at the issuer."""
    client_secret: str
    """The client secret (sent with HTTP Basic to the token endpoint)."""
    redirect_url: str
    """This monitor's ``/login/oidc/callback`` as the browser reaches it (registered at the issuer)."""
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    """Scopes asked for; the access token must name the viewer's VO in ``wlcg.groups``."""
    audience: str = DEFAULT_AUDIENCE
    """The ``aud`` the issuer's access tokens carry for Ailuro."""
    allow_http: bool = False
    """Development and tests only: allow ``http://`` issuer URLs."""


def load_oidc_config(path: Path, *, allow_http: bool = False) -> OidcConfig:
    """Read an :class:`OidcConfig` from a TOML file (refused when group or others may read it)."""
    try:
        mode = path.stat().st_mode
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}", field="--oidc") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidArgument(f"{path} holds a client secret but others may read it; chmod 600", field="--oidc")
    unknown = set(raw) - _KEYS
    if unknown:
        raise InvalidArgument(f"unknown key(s) {sorted(unknown)}", field="--oidc")
    for key in ("issuer", "client_id", "client_secret", "redirect_url"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise InvalidArgument(f"{key}: must be a non-empty string", field="--oidc")
    scopes = raw.get("scopes", list(DEFAULT_SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes) or "openid" not in scopes:
        raise InvalidArgument("scopes: must be a list of strings including 'openid'", field="--oidc")
    config = OidcConfig(
        issuer=raw["issuer"].strip(),
        client_id=raw["client_id"].strip(),
        client_secret=raw["client_secret"],
        redirect_url=raw["redirect_url"].strip(),
        scopes=tuple(scopes),
        audience=str(raw.get("audience", DEFAULT_AUDIENCE)),
        allow_http=allow_http,
    )
    for key in ("issuer", "redirect_url"):
        _check_url(getattr(config, key), key, allow_http=allow_http or key == "redirect_url")
    return config


def _check_url(url: str, what: str, *, allow_http: bool) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise InvalidArgument(f"{what}: must be an https:// URL, got {url[:80]!r}", field="--oidc")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise Unauthenticated(f"OIDC issuer redirected {req.full_url[:80]!r} (HTTP {code}); refused")


_OPENER = urllib.request.build_opener(_NoRedirect)


def _json_from(request: urllib.request.Request, what: str) -> dict[str, Any]:
    """A bounded JSON object from the issuer (Unauthenticated naming ``what`` on any failure)."""
    try:
        with _OPENER.open(request, timeout=TIMEOUT_S) as response:
            data = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        body = exc.read(2048).decode(errors="replace")
        raise Unauthenticated(f"OIDC {what} refused (HTTP {exc.code}): {body[:200]}") from None
    except (OSError, ValueError) as exc:
        raise Unauthenticated(f"OIDC {what} unreachable: {exc}") from None
    if len(data) > MAX_RESPONSE_BYTES:
        raise Unauthenticated(f"OIDC {what}: response larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError:
        raise Unauthenticated(f"OIDC {what}: response is not JSON") from None
    if not isinstance(doc, dict):
        raise Unauthenticated(f"OIDC {what}: response is not a JSON object")
    return doc


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (64 random bytes, base64url) and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass(frozen=True, kw_only=True)
class Pending:
    """A login sent to the issuer and not back yet."""

    verifier: str
    nonce: str
    next_url: str
    started: float


class OidcClient:
    """Discovery (read once, at the first login), the authorization redirect and the code exchange."""

    def __init__(self, config: OidcConfig, tokens: AuthConfig) -> None:
        self.config = config
        self._tokens = replace(tokens, allow_insecure_jwks=tokens.allow_insecure_jwks or config.allow_http)
        self._discovery: dict[str, Any] | None = None
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()
        self.validator: TokenValidator | None = None

    def discover(self) -> dict[str, Any]:
        """The issuer's discovery document (its ``issuer`` must be the configured one)."""
        if self._discovery is not None:
            return self._discovery
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = _json_from(urllib.request.Request(url, headers={"Accept": "application/json"}), "discovery")
        if doc.get("issuer") != self.config.issuer:
            raise Unauthenticated("OIDC discovery: its 'issuer' is not the configured issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(key)
            if not isinstance(value, str):
                raise Unauthenticated(f"OIDC discovery: no {key!r}")
            _check_url_auth(value, key, allow_http=self.config.allow_http)
        self.validator = TokenValidator(
            self._tokens,
            (IssuerConfig(issuer=self.config.issuer, jwks=doc["jwks_uri"], audience=self.config.audience),),
        )
        self._discovery = doc
        return doc

    def start(self, next_url: str) -> tuple[str, str]:
        """``(state, authorization URL)`` for a new login that returns to ``next_url``."""
        doc = self.discover()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        now = time.monotonic()
        with self._lock:
            for key in [k for k, p in self._pending.items() if now - p.started > PENDING_TTL_S]:
                del self._pending[key]
            if len(self._pending) >= MAX_PENDING:
                raise Unauthenticated("too many logins in progress; try again in a few minutes")
            self._pending[state] = Pending(verifier=verifier, nonce=nonce, next_url=next_url, started=now)
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": self.config.redirect_url,
                "scope": " ".join(self.config.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = doc["authorization_endpoint"]
        return state, endpoint + ("&" if "?" in endpoint else "?") + query

    def finish(self, state: str, code: str) -> tuple[str, str]:
        """Trade ``code`` for tokens; ``(access token, next URL)`` (Unauthenticated when anything is off)."""
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or time.monotonic() - pending.started > PENDING_TTL_S:
            raise Unauthenticated("this login is unknown or too old; start again")
        doc = self.discover()
        body = urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.config.redirect_url,
                "code_verifier": pending.verifier,
            }
        ).encode()
        basic = base64.b64encode(
            f"{urllib.parse.quote(self.config.client_id)}:{urllib.parse.quote(self.config.client_secret)}".encode()
        ).decode()
        request = urllib.request.Request(
            doc["token_endpoint"],
            data=body,
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        tokens = _json_from(request, "token exchange")
        access = tokens.get("access_token")
        if not isinstance(access, str) or not access:
            raise Unauthenticated("OIDC token exchange: no access_token")
        id_token = tokens.get("id_token")
        if isinstance(id_token, str):
            # the ID token came straight from the token endpoint (TLS, client authenticated): its
            # nonce ties it to this login (OIDC Core 3.1.3.7); the access token is validated in full
            try:
                nonce = jwt.decode(id_token, options={"verify_signature": False}).get("nonce")
            except jwt.PyJWTError:
                raise Unauthenticated("OIDC token exchange: the ID token is not a JWT") from None
            if nonce != pending.nonce:
                raise Unauthenticated("OIDC token exchange: the ID token's nonce does not match this login")
        return access, pending.next_url


def _check_url_auth(url: str, what: str, *, allow_http: bool) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise Unauthenticated(f"OIDC discovery: {what} must be https://")
