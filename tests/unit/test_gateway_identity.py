"""PanDA gateway callers on the dispatcher's identities: tokens (Origin = the token's VO) and DNs."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ailuro.errors import InvalidArgument, PermissionDenied, Unauthenticated
from dispatcher.auth.config import AuthConfig, IssuerConfig
from dispatcher.auth.gridmap import dn_of_der, parse_gridmap
from dispatcher.auth.issuer import IssuerFiles, ensure
from dispatcher.auth.tokens import TokenValidator
from dispatcher.gateway.identity import MINTED_LIFETIME_S, Minter, resolve_caller
from tests.unit.test_gridmap import make_proxy

CA = trustme.CA()
_JANE = CA.issue_cert("jdoe@example.org", common_name="Jane Doe", organization_name="CERN")
JANE = make_proxy(_JANE).public_bytes(Encoding.DER)  # a proxy: mapped by the user's DN
EVE = x509.load_pem_x509_certificate(
    CA.issue_cert("eve@example.org", common_name="Eve").cert_chain_pems[0].bytes()
).public_bytes(Encoding.DER)
_JANE_DN = dn_of_der(JANE)
GRIDMAP = parse_gridmap(f'"{_JANE_DN}" jdoe compass user,production\n"/O=CERN/CN=Bob" bob amber user\n')


def _bearer(claims: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"Bearer eyJhbGciOiJFZERTQSJ9.{payload}.sig"


def _resolve(**kw: Any) -> Any:
    args: dict[str, Any] = {"peercert": None, "authorization": None, "origin": None, "gridmap": GRIDMAP, "minter": None}
    return resolve_caller(**{**args, **kw})


def test_token_path_origin_must_name_the_tokens_vo() -> None:
    token = _bearer({"sub": "jdoe", "wlcg.groups": ["/compass", "/compass/production"]})
    caller = _resolve(authorization=token, origin="compass")
    assert (caller.vo, caller.roles, caller.authorization, caller.user) == ("compass", ("production",), token, None)
    assert _resolve(authorization=token).vo == "compass"  # no Origin: the token's VO
    with pytest.raises(PermissionDenied, match="token acts for 'compass'") as err:
        _resolve(authorization=token, origin="amber")
    assert err.value.field == "Origin"
    # an unreadable token is forwarded as is: the dispatcher refuses it with the reason
    assert _resolve(authorization="Bearer junk", origin="amber").vo == "amber"
    with pytest.raises(InvalidArgument, match="Bearer"):
        _resolve(authorization="Basic dXNlcg==")
    with pytest.raises(InvalidArgument, match="VO name"):
        _resolve(authorization=token, origin="a b/../c")


def test_certificate_path_maps_the_dn_or_refuses() -> None:
    caller = _resolve(peercert=JANE)  # the proxy CN is stripped before the lookup
    assert (caller.user, caller.vo, caller.roles, caller.authorization) == (
        "jdoe",
        "compass",
        ("production", "user"),
        None,
    )
    with pytest.raises(Unauthenticated, match="not in the grid-mapfile"):
        _resolve(peercert=EVE)
    with pytest.raises(Unauthenticated, match="--gridmap"):
        _resolve(peercert=JANE, gridmap=None)
    with pytest.raises(PermissionDenied, match="maps to 'compass'"):
        _resolve(peercert=JANE, origin="amber")
    anonymous = _resolve()
    assert (anonymous.user, anonymous.roles, anonymous.authorization) == (None, (), None)


def test_minted_tokens_are_valid_for_the_dispatcher_and_reused(tmp_path: Path) -> None:
    files = IssuerFiles(state_dir=tmp_path / "auth")
    ensure(files, issuer="ailuro-embedded", audience="ailuro", admin_vo="admin")
    minter = Minter(files.state_dir, issuer="ailuro-embedded", audience="ailuro")
    caller = _resolve(peercert=JANE, minter=minter)
    assert caller.authorization is not None
    assert _resolve(peercert=JANE, minter=minter).authorization == caller.authorization  # cached
    validator = TokenValidator(
        AuthConfig(mode="token"), (IssuerConfig(issuer="ailuro-embedded", jwks=str(files.jwks)),)
    )
    principal = validator.validate(caller.authorization.removeprefix("Bearer "))
    assert (principal.user, principal.vo, principal.roles) == ("jdoe", "compass", ("production", "user"))
    assert 0 < principal.expires - time.time() <= MINTED_LIFETIME_S  # short-lived
