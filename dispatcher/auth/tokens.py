"""Bearer token validation: a JWT signed by a configured issuer, for this dispatcher, in date.

:meth:`TokenValidator.validate` returns a :class:`Principal` or raises :class:`AuthError` whose
``reason`` says precisely why (expired, wrong audience, unknown key id ...). The checks, in order:
size cap; a parsable header whose ``alg`` is on the issuer's allow-list (never ``none``, never
HMAC); a known ``iss``; a ``kid`` in that issuer's JWKS whose key type matches ``alg``; the
signature; ``exp``/``nbf``/``iat`` within the clock skew; ``aud``; then the WLCG claims.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt import PyJWK

from dispatcher.auth.config import AuthConfig, IssuerConfig
from dispatcher.auth.jwks import JwksCache, JwksError
from dispatcher.auth.principal import ClaimsError, Principal, principal_from_claims

REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat")

_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


class AuthError(Exception):
    """A credential was refused; ``reason`` is safe to return to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def key_matches_algorithm(key: object, alg: str) -> bool:
    """Whether ``key`` is of the type ``alg`` needs (an RSA key for RS*/PS*, P-256 for ES256 ...)."""
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES[alg])
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


class TokenValidator:
    """Validates bearer tokens against the configured issuers (thread-safe)."""

    def __init__(
        self,
        config: AuthConfig,
        issuers: tuple[IssuerConfig, ...],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        self._issuers = {i.issuer: i for i in issuers}
        self._jwks = {
            i.issuer: JwksCache(
                i.jwks,
                refresh_s=config.jwks_refresh_s,
                timeout_s=config.jwks_timeout_s,
                max_bytes=config.jwks_max_bytes,
                allow_http=config.allow_insecure_jwks,
            )
            for i in issuers
        }

    def validate(self, token: str) -> Principal:
        """The principal ``token`` proves, or :class:`AuthError` saying why not."""
        if len(token) > self._config.max_token_bytes:
            raise AuthError(f"token longer than {self._config.max_token_bytes} bytes")
        header, unverified = self._peek(token)
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("token issuer ('iss') is not trusted by this dispatcher")
        alg = header.get("alg")
        if alg not in issuer.algorithms:
            raise AuthError(
                f"token algorithm {str(alg)[:20]!r} is not allowed (allowed: {', '.join(issuer.algorithms)})"
            )
        key = self._key(issuer, header.get("kid"), alg)
        claims = self._verify(token, key, alg, issuer)
        try:
            return principal_from_claims(claims)
        except ClaimsError as exc:
            raise AuthError(str(exc)) from None

    @staticmethod
    def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("token is not a well-formed JWT") from None
        return header, unverified

    def _key(self, issuer: IssuerConfig, kid: object, alg: str) -> PyJWK:
        if not isinstance(kid, str) or not kid:
            raise AuthError("token header has no key id ('kid')")
        try:
            key = self._jwks[issuer.issuer].key(kid)
        except JwksError:
            raise AuthError("the issuer's keys are unavailable; retry later") from None
        if key is None:
            raise AuthError("token key id ('kid') is unknown to its issuer")
        jwk_alg = key._jwk_data.get("alg")  # a JWK may pin its algorithm
        if (jwk_alg and jwk_alg != alg) or not key_matches_algorithm(key.key, alg):
            raise AuthError(f"token algorithm {alg} does not match the type of key {kid!r}")
        return key

    def _verify(self, token: str, key: PyJWK, alg: str, issuer: IssuerConfig) -> dict[str, Any]:
        try:
            return self._decode_at(token, key, alg, issuer)
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid ('nbf' or 'iat' in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"token audience ('aud') does not include {issuer.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer ('iss') is not trusted by this dispatcher") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"token refused: {type(exc).__name__}") from None

    def _decode_at(self, token: str, key: PyJWK, alg: str, issuer: IssuerConfig) -> dict[str, Any]:
        """Verify signature, ``aud`` and ``iss`` (PyJWT), then the times against ``self._clock``."""
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=issuer.audience,
            issuer=issuer.issuer,
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
        now, skew = self._clock(), self._config.clock_skew_s
        if not isinstance(claims["exp"], int | float) or claims["exp"] <= now - skew:
            raise jwt.ExpiredSignatureError()
        for name in ("nbf", "iat"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, int | float) or value > now + skew):
                raise jwt.ImmatureSignatureError()
        return claims
