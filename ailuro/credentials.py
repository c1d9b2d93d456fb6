"""The caller's bearer token: from an argument, ``$AILURO_TOKEN`` or a token file, sent as metadata.

Like panda-client's ``OIDC_AUTH_TOKEN_FILE``, ``$AILURO_TOKEN_FILE`` names a file holding the token,
re-read whenever a connection is made, so a renewed token is picked up without a restart. Only
stdlib and grpcio: the SDK, the CLI and the pilot share it, and none of them validates tokens
(the dispatcher does); the token string is just sent as ``authorization: Bearer <token>``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

TLS_CA_ENV = "AILURO_TLS_CA"
"""A PEM file of the CA(s) that signed the dispatcher's certificate: the client then speaks TLS."""
MAX_CA_BYTES = 1024 * 1024
TLS_CERT_ENV = "AILURO_TLS_CERT"
"""A PEM file holding the client's certificate (chain) and its private key, as a grid proxy file
does: presented to a dispatcher that requires client certificates (mTLS, ``--tls-client-ca``)."""
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)
TOKEN_ENV = "AILURO_TOKEN"
TOKEN_FILE_ENV = "AILURO_TOKEN_FILE"
AUTHORIZATION_KEY = "authorization"
MAX_TOKEN_BYTES = 16 * 1024
"""A token file larger than this is refused (the dispatcher refuses such tokens anyway)."""


def read_token_file(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); ValueError when too large or empty."""
    with Path(path).expanduser().open("rb") as fh:
        data = fh.read(MAX_TOKEN_BYTES + 1)
    if len(data) > MAX_TOKEN_BYTES:
        raise ValueError(f"token file {path}: larger than {MAX_TOKEN_BYTES} bytes")
    token = data.decode("ascii", errors="strict").strip()
    if not token:
        raise ValueError(f"token file {path}: empty")
    return token


def write_token_file(path: str | Path, token: str) -> Path:
    """Write ``token`` to ``path`` readable by this account only (0600; a new directory 0700),
    atomically, so a reader never sees half a token (how tokens reach pilots and tools: as files,
    never on a command line that ``ps`` shows); returns the path."""
    path = Path(path).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(token.strip() + "\n")
        os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file a crash left behind
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def resolve_token(token: str | None = None, token_file: str | Path | None = None) -> str | None:
    """The token to send: ``token``, else ``token_file``, else ``$AILURO_TOKEN``, else ``$AILURO_TOKEN_FILE``."""
    if token:
        return token.strip()
    if token_file:
        return read_token_file(token_file)
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if os.environ.get(TOKEN_FILE_ENV):
        return read_token_file(os.environ[TOKEN_FILE_ENV])
    return None


def _read_bounded(path: str | Path, what: str) -> bytes:
    with Path(path).expanduser().open("rb") as fh:
        data = fh.read(MAX_CA_BYTES + 1)
    if len(data) > MAX_CA_BYTES:
        raise ValueError(f"{what} {path}: larger than {MAX_CA_BYTES} bytes")
    return data


def client_certificate(path: str | Path) -> tuple[bytes, bytes]:
    """``(private_key, certificate_chain)`` PEM from one file holding both (a grid proxy's layout)."""
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(_read_bounded(path, "TLS client certificate"))]
    keys = [b for label, b in blocks if label.endswith(b"PRIVATE KEY")]
    chain = b"".join(b for label, b in blocks if label == b"CERTIFICATE")
    if len(keys) != 1 or not chain:
        raise ValueError(f"TLS client certificate {path}: needs one PEM private key and its certificate(s)")
    return keys[0], chain


def tls_credentials(
    tls_ca: str | Path | None = None, tls_cert: str | Path | None = None
) -> grpc.ChannelCredentials | None:
    """TLS channel credentials trusting ``tls_ca`` (else ``$AILURO_TLS_CA``; else, with a client
    certificate, the system's CAs) and presenting ``tls_cert`` (else ``$AILURO_TLS_CERT``); None:
    plain text."""
    path = tls_ca or os.environ.get(TLS_CA_ENV)
    cert_path = tls_cert or os.environ.get(TLS_CERT_ENV)
    if not path and not cert_path:
        return None
    pem = None
    if path:
        pem = _read_bounded(path, "TLS CA file")
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError(f"TLS CA file {path}: not a PEM certificate file of at most {MAX_CA_BYTES} bytes")
    key, chain = client_certificate(cert_path) if cert_path else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=pem, private_key=key, certificate_chain=chain)


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """``(("authorization", "Bearer <token>"),)``, or nothing without a token."""
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),) if token else ()


def _with_token(details: Any, metadata: tuple[tuple[str, str], ...]) -> Any:
    kept = [(k, v) for k, v in (details.metadata or ()) if k != AUTHORIZATION_KEY]
    return details._replace(metadata=grpc.aio.Metadata(*kept, *metadata))


class _AioBearer:
    """Adds ``authorization`` to every call (gRPC files an interceptor under one kind only, so
    each kind below is its own class)."""

    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._metadata), request)


class _UnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _AioBearer._call  # type: ignore[assignment]


class _UnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _AioBearer._call  # type: ignore[assignment]


class _StreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _AioBearer._call  # type: ignore[assignment]


class _StreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _AioBearer._call  # type: ignore[assignment]


def aio_interceptors(token: str | None) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that send ``token`` with every call (none without a token)."""
    if not token:
        return []
    return [kind(token) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]
