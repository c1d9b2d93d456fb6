"""Authentication settings: typed, frozen, keyword-only, one docstring per field."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_MODE = "token"
TRUSTED_METADATA_MODE = "trusted-metadata"
MODES = (TOKEN_MODE, TRUSTED_METADATA_MODE)

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
"""Asymmetric algorithms only: ``none`` and the HMAC family (``HS*``) are never accepted, so a
public key can never be used as an HMAC secret."""

AUTH_DIR_ENV = "AILURO_AUTH_DIR"
"""Environment variable naming the embedded issuer's state directory (``--auth-dir``)."""
DEFAULT_AUTH_DIR = "~/.ailuro/auth"
"""Per user, beside ``~/.ailuro/storage``: the dispatcher's account owns its key wherever its
database is, and its admin finds ``admin.token`` in one known place."""

DEFAULT_AUDIENCE = "ailuro"
EMBEDDED_ISSUER = "ailuro-embedded"
"""``iss`` of tokens made by the dispatcher's embedded issuer (unless configured otherwise)."""


def default_auth_dir() -> Path:
    """``$AILURO_AUTH_DIR``, else ``~/.ailuro/auth``, as an absolute path."""
    return Path(os.environ.get(AUTH_DIR_ENV) or DEFAULT_AUTH_DIR).expanduser().absolute()


@dataclass(frozen=True, kw_only=True)
class IssuerConfig:
    """One trusted token issuer and where its public keys are."""

    issuer: str
    """The exact ``iss`` its tokens carry (e.g. ``https://compass-auth.example.org/``)."""
    jwks: str
    """Its JWKS: a local path (or ``file://`` URL) or an ``https://`` URL."""
    audience: str = DEFAULT_AUDIENCE
    """The ``aud`` its tokens must carry for this dispatcher (a token's list must contain it)."""
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    """Algorithms accepted from this issuer; a subset of :data:`ALLOWED_ALGORITHMS`."""

    def __post_init__(self) -> None:
        bad = [a for a in self.algorithms if a not in ALLOWED_ALGORITHMS]
        if bad or not self.algorithms:
            raise ValueError(f"issuer {self.issuer!r}: algorithms {bad or '()'} not allowed; use {ALLOWED_ALGORITHMS}")
        if not self.issuer:
            raise ValueError("issuer: must not be empty")


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """How the dispatcher learns who calls it (``DispatcherConfig.auth``)."""

    mode: str = TOKEN_MODE
    """``token`` (the default, secure): every RPC but health/reflection needs a valid bearer JWT,
    even on loopback. ``trusted-metadata``: development only, chosen explicitly — the caller's
    ``ailuro-user``/``ailuro-vo`` metadata is believed; allowed only when the dispatcher binds a
    loopback address, and it warns loudly at start."""
    issuers: tuple[IssuerConfig, ...] = ()
    """External issuers to trust (INDIGO IAM, Keycloak, CILogon ...), each with its JWKS."""
    state_dir: Path | None = field(default_factory=default_auth_dir)
    """Directory (0700) of the embedded issuer: its signing key, JWKS and first admin token.
    Made at first start in ``token`` mode; default :func:`default_auth_dir` (``$AILURO_AUTH_DIR``
    or ``~/.ailuro/auth``); ``None``: no embedded issuer (external issuers only)."""
    embedded_issuer: str = EMBEDDED_ISSUER
    """``iss`` of the embedded issuer's tokens."""
    audience: str = DEFAULT_AUDIENCE
    """``aud`` the embedded issuer's tokens carry and that this dispatcher requires of them."""
    admin_vo: str = "admin"
    """VO of the first admin token the embedded issuer writes."""
    clock_skew_s: float = 60.0
    """Leeway when checking ``exp``, ``nbf`` and ``iat`` against this host's clock."""
    max_token_bytes: int = 16 * 1024
    """Longer bearer tokens are refused before any parsing."""
    jwks_refresh_s: float = 300.0
    """A cached JWKS is fetched again after this long (and at most this often for an unknown ``kid``,
    bounded below by 10 s so unknown key ids cannot make the dispatcher hammer its issuer)."""
    jwks_timeout_s: float = 5.0
    """A JWKS fetch ends after this long."""
    jwks_max_bytes: int = 256 * 1024
    """A JWKS document larger than this is refused."""
    allow_insecure_jwks: bool = False
    """Development only: allow ``http://`` JWKS URLs (otherwise only ``https://`` and files)."""
    tls_cert: Path | None = None
    """PEM certificate chain the server presents: with ``tls_key`` the port speaks TLS only."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert`` (keep it 0600)."""
    cache_size: int = 10_000
    """Validated tokens remembered (until their ``exp``), so a pilot's many calls cost one check."""
    tls_client_ca: Path | None = None
    """PEM CA bundle for client certificates (mTLS): every client must then present a certificate
    it signed (gRPC cannot make client certificates optional). Needs ``tls_cert``."""
    gridmap: Path | None = None
    """Grid-mapfile (``"<DN>" user vo role[,role]`` per line): a call with a verified client
    certificate and no bearer token acts as the DN's mapped user; an unlisted DN is refused.
    Token mode with ``tls_client_ca`` only."""

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("auth.tls_cert and auth.tls_key go together")
        if self.mode not in MODES:
            raise ValueError(f"auth.mode: {self.mode!r} is not one of {MODES}")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("auth.tls_client_ca needs auth.tls_cert (client certificates need TLS)")
        if self.gridmap is not None and (self.tls_client_ca is None or self.mode != TOKEN_MODE):
            raise ValueError("auth.gridmap needs auth.tls_client_ca and mode 'token'")
