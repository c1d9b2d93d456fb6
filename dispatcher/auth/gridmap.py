"""X.509 client certificates mapped by DN: a grid-mapfile-like file → :class:`Identity`.

Sites that use certificates list each user's DN with the Ailuro user, VO and roles it acts as::

    # "<DN>" user vo role[,role]
    "/DC=ch/DC=cern/OU=Users/CN=jdoe" jdoe compass user,production

The file is parsed strictly (every problem names the line), bounded (size, entries, lengths)
and read once at start. The same file and the same mapping serve the dispatcher's mTLS port
(:class:`CertificateAuthenticator`, used when a call carries no bearer token) and the PanDA
gateway's client-certificate path, so a DN means the same identity and roles everywhere. A DN is
written in the grid's order (``/C=…/O=…/CN=…``, most significant first); the CNs an RFC 3820
proxy certificate adds (``/CN=123``, ``/CN=proxy``) are stripped, as grid services do.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from dispatcher.auth.issuer import ROLE_SCOPES
from dispatcher.auth.principal import COMPUTE_SCOPES, ROLES, Principal
from dispatcher.identity import Identity

MAX_FILE_BYTES = 1 << 20
MAX_ENTRIES = 10_000
MAX_DN_CHARS = 1_024
X509_ISSUER = "x509"
"""``Principal.issuer`` of an identity proven by a client certificate."""

_LINE = re.compile(r'^"([^"]*)"\s+(\S+)\s+(\S+)\s+(\S+)$')
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$")
_VO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DN_PART = re.compile(r"^(/[A-Za-z][A-Za-z0-9.]*=[^/]+)+$")
_PROXY_CN = re.compile(r"(/CN=(proxy|limited proxy|\d+))+$")

_SHORT_BY_OID = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
}


class GridmapError(ValueError):
    """The grid-mapfile cannot be used; the message names the file and line."""


@dataclass(frozen=True, kw_only=True)
class Mapping:
    """What one DN maps to."""

    user: str
    """The Ailuro user name (job owner) the DN acts as."""
    vo: str
    """The VO it acts for."""
    roles: tuple[str, ...]
    """Its roles (sorted), each one of :data:`ROLES`."""


PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
"""RFC 3820 ``proxyCertInfo``: marks a proxy certificate, whose subject is its issuer's plus CNs."""


def grid_dn(parts: Iterable[tuple[str, str]], *, proxy: bool = False) -> str | None:
    """``/K=V/K=V`` from (short name, value) pairs in certificate order; a proxy's CNs stripped."""
    dn = "".join(f"/{k}={v}" for k, v in parts)
    if proxy:
        dn = _PROXY_CN.sub("", dn)
    return dn if dn and len(dn) <= MAX_DN_CHARS else None


def is_proxy(cert: x509.Certificate) -> bool:
    """Whether ``cert`` is an RFC 3820 proxy certificate."""
    return any(ext.oid == PROXY_CERT_INFO for ext in cert.extensions)


def dn_of_certificate(cert: x509.Certificate) -> str | None:
    """The grid-style DN of a certificate's subject (of the user, for a proxy certificate).

    Trailing ``/CN=<digits>|proxy|limited proxy`` are stripped only from a certificate that
    carries ``proxyCertInfo`` (OpenSSL checked its subject extends its issuer's): an ordinary
    certificate whose DN ends like that is not someone else's proxy.
    """
    pairs = []
    for rdn in cert.subject.rdns:
        for attr in rdn:
            value = attr.value if isinstance(attr.value, str) else attr.value.decode(errors="replace")
            pairs.append((_SHORT_BY_OID.get(attr.oid, attr.oid.dotted_string), value))
    return grid_dn(pairs, proxy=is_proxy(cert))


def dn_of_der(der: bytes | None) -> str | None:
    """:func:`dn_of_certificate` of a DER certificate (``SSLSocket.getpeercert(binary_form=True)``)."""
    if not der:
        return None
    try:
        return dn_of_certificate(x509.load_der_x509_certificate(der))
    except ValueError:
        return None


def _roles(text: str, where: str) -> tuple[str, ...]:
    roles = text.split(",")
    for role in roles:
        if role not in ROLES:
            raise GridmapError(f"{where}: role {role[:40]!r} is not one of {', '.join(ROLES)}")
    if len(set(roles)) != len(roles):
        raise GridmapError(f"{where}: a role is named twice")
    return tuple(sorted(roles))


def parse_gridmap(text: str, *, source: str = "gridmap") -> dict[str, Mapping]:
    """DN → :class:`Mapping` from the file's text; :class:`GridmapError` names the first bad line."""
    if len(text) > MAX_FILE_BYTES:
        raise GridmapError(f"{source}: larger than {MAX_FILE_BYTES} bytes")
    entries: dict[str, Mapping] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{source}:{number}"
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise GridmapError(f'{where}: expected "<DN>" user vo role[,role]')
        dn, user, vo, roles = match.groups()
        if len(dn) > MAX_DN_CHARS or not _DN_PART.match(dn) or any(ord(c) < 32 or ord(c) == 127 for c in dn):
            raise GridmapError(f"{where}: DN must look like /K=V/K=V (at most {MAX_DN_CHARS} characters)")
        if _PROXY_CN.search(dn):
            raise GridmapError(f"{where}: list the user's DN without proxy CNs (/CN=123, /CN=proxy)")
        if not _USER.match(user):
            raise GridmapError(f"{where}: user {user[:40]!r} must be letters, digits, '._@+-' (at most 255)")
        if not _VO.match(vo):
            raise GridmapError(f"{where}: VO {vo[:40]!r} must be letters, digits, '._-' (at most 64)")
        if dn in entries:
            raise GridmapError(f"{where}: DN already mapped on line {first_line[dn]}")
        if len(entries) >= MAX_ENTRIES:
            raise GridmapError(f"{where}: more than {MAX_ENTRIES} entries")
        entries[dn] = Mapping(user=user, vo=vo, roles=_roles(roles, where))
        first_line[dn] = number
    return entries


def load_gridmap(path: Path) -> dict[str, Mapping]:
    """:func:`parse_gridmap` of a file (bounded read)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise GridmapError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise GridmapError(f"{path}: not UTF-8 text") from None
    return parse_gridmap(text, source=str(path))


def identity_of_mapping(dn: str, mapping: Mapping, *, expires: float) -> Identity:
    """The identity a mapped certificate proves; scopes follow the roles as in issued tokens."""
    scopes: set[str] = set()
    for role in mapping.roles:
        scopes.update(ROLE_SCOPES.get(role, COMPUTE_SCOPES))
    principal = Principal(
        user=mapping.user,
        vo=mapping.vo,
        roles=mapping.roles,
        scopes=tuple(sorted(scopes)),
        issuer=f"{X509_ISSUER}:{dn}"[:255],
        expires=expires,
    )
    from dispatcher.auth.interceptor import identity_of_principal  # the interceptor imports this module

    # the same roles and all-VO rule as a token's (dispatcher.auth.policy)
    return identity_of_principal(principal)


@functools.lru_cache(maxsize=1024)
def _dn_and_expiry(pem: bytes) -> tuple[str | None, float]:
    """DN and ``notAfter`` of a PEM certificate (cached: a client's calls all carry the same one)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None, 0.0
    return dn_of_certificate(cert), cert.not_valid_after_utc.timestamp()


def peer_dn(context: grpc.aio.ServicerContext) -> tuple[str | None, float] | None:
    """``(DN, notAfter)`` of the client certificate gRPC verified for this call (mTLS), or None."""
    pems = (context.auth_context() or {}).get("x509_pem_cert") or []
    return _dn_and_expiry(bytes(pems[0])) if pems else None


Authenticate = Callable[[grpc.aio.ServicerContext], Awaitable[Identity]]


class CertificateAuthenticator:
    """A call without a bearer token but with a verified client certificate: its DN, mapped.

    A bearer token, when sent, decides (``tokens``); an unmapped DN is UNAUTHENTICATED, never
    anonymous. Without a certificate the call goes to ``tokens`` (which refuses it).
    """

    def __init__(self, gridmap: dict[str, Mapping], tokens: Authenticate) -> None:
        self._gridmap = gridmap
        self._tokens = tokens

    async def __call__(self, context: grpc.aio.ServicerContext) -> Identity:
        from dispatcher.auth.interceptor import bearer_token  # the interceptor imports this module

        peer = None if bearer_token(context.invocation_metadata()) is not None else peer_dn(context)
        if peer is None:
            return await self._tokens(context)
        dn, expires = peer
        mapping = self._gridmap.get(dn or "")
        if dn is None or mapping is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"certificate DN {str(dn)[:300]!r} is not in the grid-mapfile"
            )
        assert dn is not None and mapping is not None  # abort() raised otherwise
        return identity_of_mapping(dn, mapping, expires=expires)
