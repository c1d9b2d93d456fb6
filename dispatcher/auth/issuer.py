"""The embedded issuer: a dispatcher's own Ed25519 signing key, its JWKS and tokens it signs.

So a small site and ``ailuro demo`` need no external identity provider. At first start in token
mode the dispatcher makes, in its state directory (mode 0700), ``signing-key.pem`` (the private
key), ``jwks.json`` (the public key) and ``admin.token`` (a first admin token), each mode 0600.
Further tokens come from the admin-only ``IssueToken`` RPC (``ailuro token issue``; audited), or,
offline, from an account that can read the key file (``ailuro token issue --auth-dir``: the
dispatcher's, or root; bootstrap and recovery). An external issuer is just another JWKS.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import stat
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dispatcher.auth.principal import COMPUTE_SCOPES, GROUPS_CLAIM, QUEUES_CLAIM, ROLES, SCOPE_CLAIM

KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"
ADMIN_TOKEN_FILE = "admin.token"
ALGORITHM = "EdDSA"
ADMIN_LIFETIME_S = 30 * 86400.0
"""The first admin token's lifetime; a new one is written at start when it is missing or expires
within a day (the admin then re-reads the file)."""
MAX_LIFETIME_S = 366 * 86400.0

ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "pilot": ("compute.read", "compute.modify"),
    "factory": ("compute.read", "compute.modify"),
}
"""Compute scopes a token of this role carries; any other role gets all of :data:`COMPUTE_SCOPES`."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class IssuerError(Exception):
    """The embedded issuer's files are missing, unreadable or unsafe; the message says which."""


@dataclass(frozen=True, kw_only=True)
class IssuerFiles:
    """Where the embedded issuer's files are."""

    state_dir: Path

    @property
    def key(self) -> Path:
        return self.state_dir / KEY_FILE

    @property
    def jwks(self) -> Path:
        return self.state_dir / JWKS_FILE

    @property
    def admin_token(self) -> Path:
        return self.state_dir / ADMIN_TOKEN_FILE


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"30m"``, ``"12h"`` or ``"7d"``; ValueError when malformed or out of range."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"lifetime {text!r}: expected a number with an optional unit s/m/h/d, like 12h")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= MAX_LIFETIME_S:
        raise ValueError(f"lifetime {text!r}: must be more than 0 and at most {MAX_LIFETIME_S / 86400:.0f}d")
    return seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: ed25519.Ed25519PrivateKey) -> dict[str, str]:
    """The public JWK of ``key`` with its RFC 7638 thumbprint as ``kid``."""
    x = _b64(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    thumbprint = _b64(
        hashlib.sha256(
            json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True).encode()
        ).digest()
    )
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": thumbprint, "alg": ALGORITHM, "use": "sig"}


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by this account only (0600), atomically (never half written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        wanted = "0700" if path.is_dir() else "0600"
        raise IssuerError(f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); chmod it {wanted}")


def load_key(files: IssuerFiles) -> ed25519.Ed25519PrivateKey:
    """The signing key (refusing a key file or directory others could read)."""
    try:
        _check_private(files.state_dir)
        _check_private(files.key)
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except OSError as exc:
        raise IssuerError(f"cannot read the signing key {files.key}: {exc.strerror or exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise IssuerError(f"{files.key} is not an Ed25519 private key")
    return key


def issue(
    key: ed25519.Ed25519PrivateKey,
    *,
    issuer: str,
    audience: str,
    user: str,
    vo: str,
    roles: Sequence[str] = (),
    queues: Sequence[str] = (),
    lifetime_s: float = 12 * 3600.0,
    now: float | None = None,
) -> str:
    """A signed token for ``user`` in ``vo`` with ``roles`` (WLCG groups ``/vo``, ``/vo/role``)."""
    if not user or not vo or "/" in vo:
        raise ValueError("user and vo must be non-empty (and vo without '/')")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"role(s) {unknown} unknown; use {', '.join(ROLES)}")
    scopes: set[str] = set()
    for role in roles or ("user",):
        scopes.update(ROLE_SCOPES.get(role, COMPUTE_SCOPES))
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": issuer,
        "sub": user,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(lifetime_s),
        "jti": str(uuid.uuid4()),
        "wlcg.ver": "1.0",
        GROUPS_CLAIM: [f"/{vo}", *(f"/{vo}/{r}" for r in sorted(set(roles)))],
        SCOPE_CLAIM: " ".join(sorted(scopes)),
    }
    if queues:
        claims[QUEUES_CLAIM] = sorted(set(queues))
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": public_jwk(key)["kid"]})


def ensure(files: IssuerFiles, *, issuer: str, audience: str, admin_vo: str, now: float | None = None) -> bool:
    """Make the state directory, key, JWKS and admin token if missing; True if a token was written.

    Several dispatcher processes on one host may share the directory: an exclusive lock on
    ``.lock`` makes the first one create the key and the others use it.
    """
    files.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(files.state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _ensure_locked(files, issuer=issuer, audience=audience, admin_vo=admin_vo, now=now)
    finally:
        os.close(fd)  # releases the lock


def _ensure_locked(files: IssuerFiles, *, issuer: str, audience: str, admin_vo: str, now: float | None) -> bool:
    if not files.key.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(files.key, pem)
    key = load_key(files)
    jwks = json.dumps({"keys": [public_jwk(key)]}, indent=1).encode()
    if not files.jwks.exists() or files.jwks.read_bytes() != jwks:
        _write_private(files.jwks, jwks)
    current = time.time() if now is None else now
    if _token_valid_for(files.admin_token, key, issuer=issuer, audience=audience, now=current) > 86400:
        return False
    token = issue(
        key,
        issuer=issuer,
        audience=audience,
        user="admin",
        vo=admin_vo,
        roles=("admin",),
        lifetime_s=ADMIN_LIFETIME_S,
        now=current,
    )
    _write_private(files.admin_token, (token + "\n").encode())
    return True


def _token_valid_for(path: Path, key: ed25519.Ed25519PrivateKey, *, issuer: str, audience: str, now: float) -> float:
    """Seconds the token in ``path`` stays valid (0 when missing, foreign or expired)."""
    try:
        token = path.read_text().strip()
        claims = jwt.decode(
            token,
            key.public_key(),
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"verify_exp": False},
        )
    except (OSError, jwt.PyJWTError):
        return 0.0
    return max(0.0, float(claims.get("exp", 0)) - now)
