"""``ailuro gateway``: the PanDA server's JSON API (as panda-client 2.x calls it) over HTTP(S).

A thin translator: every request becomes calls to the dispatcher's gRPC API through the SDK
(:class:`ailuro.client.Client`); the gateway never touches the database. Callers are mapped onto
the same identities and roles as the gRPC API (:mod:`dispatcher.gateway.identity`): a bearer
token is forwarded for the dispatcher to validate (``Origin`` must name the token's VO); a
verified client certificate's DN is mapped through the grid-mapfile (``--gridmap``) and, with
``--auth-dir``, carried to the dispatcher as a short-lived token the gateway signs. As in PanDA,
``managed`` jobs need the production role.

Every answer is HTTP 200 with ``{"success", "message", "data"}`` (panda-client reads only that),
except unknown paths (404). Bad input is ``success: false`` with a message naming the field.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ailuro.client import Client, describe_error
from ailuro.compat.panda_spec import job_from_spec, spec_from_job
from ailuro.errors import AiluroError, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from dispatcher.auth.config import DEFAULT_AUDIENCE, EMBEDDED_ISSUER
from dispatcher.auth.gridmap import Mapping, load_gridmap
from dispatcher.gateway.identity import Caller, Minter, resolve_caller
from dispatcher.gateway.wire import decode_ids, decode_submission, job_dict

log = logging.getLogger("ailuro.gateway")

API = "/api/v1/"
PRODUCTION_ROLES = ("production", "admin")
"""Roles that may submit ``managed`` jobs (PanDA: the production role)."""


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """How the gateway listens and where it forwards."""

    server: str
    """The dispatcher's gRPC ``host:port``."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 25443
    """Port to listen on (0: any free port)."""
    tls_cert: Path | None = None
    """Server certificate (PEM); with ``tls_key`` the gateway speaks HTTPS, else plain HTTP."""
    tls_key: Path | None = None
    """Private key of ``tls_cert``."""
    tls_ca: Path | None = None
    """CA bundle for client certificates (optional mTLS; RFC 3820 proxies accepted)."""
    gridmap: Path | None = None
    """Grid-mapfile (``"<DN>" user vo role[,role]``), the dispatcher's: client certificates' DNs
    map to these identities; without it certificate callers are refused."""
    auth_dir: Path | None = None
    """The dispatcher's embedded issuer directory: certificate callers are forwarded with a
    5-minute token signed by its key. Without it their mapping is sent as identity metadata,
    which only a development (trusted-metadata) dispatcher believes."""
    issuer: str = EMBEDDED_ISSUER
    """``iss`` of the tokens signed with ``auth_dir``'s key (the dispatcher's embedded issuer)."""
    audience: str = DEFAULT_AUDIENCE
    """``aud`` of those tokens."""
    server_tls_ca: Path | None = None
    """CA file of a dispatcher that speaks TLS (else plain-text gRPC)."""
    dev_trust_token_sub: bool = False
    """Development only: pass the bearer token's ``sub`` claim along as the user WITHOUT verifying it."""
    max_body_bytes: int = 16 << 20
    """Largest request body accepted (a 5,000-job submission from panda-client is about 5 MB)."""
    max_submits_at_once: int = 2
    """Submissions decoded at once (a full one takes ~100 MB of Python objects); others wait."""
    max_connections: int = 32
    """Requests handled at once; further connections wait to be accepted."""
    timeout_s: float = 60.0
    """Socket timeout per connection, and the time allowed to send one request body."""


def _envelope(success: bool, message: str, data: Any) -> dict[str, Any]:
    return {"success": success, "message": message, "data": data}


class Gateway:
    """The API's operations on decoded JSON bodies; one SDK client per request carries the caller."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._submits = threading.BoundedSemaphore(config.max_submits_at_once)
        self.gridmap: dict[str, Mapping] | None = load_gridmap(config.gridmap) if config.gridmap else None
        self.minter = (
            Minter(config.auth_dir, issuer=config.issuer, audience=config.audience) if config.auth_dir else None
        )

    def _client(self, caller: Caller) -> Client:
        extra = (("authorization", caller.authorization),) if caller.authorization else ()
        tls_ca = str(self.config.server_tls_ca) if self.config.server_tls_ca else None
        # an explicit "" keeps $AILURO_USER of the gateway's own environment out of it
        client = Client(self.config.server, identity=caller.user or "", vo=caller.vo, roles=caller.roles, tls_ca=tls_ca)
        # Only the caller's credential travels: never a token from the gateway's own environment
        # ($AILURO_TOKEN, $AILURO_TOKEN_FILE), which would lend an anonymous caller its identity.
        client.token = None
        client._metadata = (*(m for m in client._metadata if m[0] != "authorization"), *extra)
        return client

    def caller(self, peercert: bytes | None, authorization: str | None, origin: str | None) -> Caller:
        """Who sent a request (:func:`~dispatcher.gateway.identity.resolve_caller` with this gateway's maps)."""
        return resolve_caller(
            peercert=peercert,
            authorization=authorization,
            origin=origin,
            gridmap=self.gridmap,
            minter=self.minter,
            dev_trust_token_sub=self.config.dev_trust_token_sub,
        )

    def handle(self, route: str, body: Any, caller: Caller) -> dict[str, Any]:
        """Dispatch one API call; every failure becomes ``success: false`` with a message."""
        try:
            if route == "system/is_alive":
                return _envelope(True, "alive", None)
            if route == "job/submit":
                with self._submits:
                    return self.submit(body, caller)
            if route in ("job/get_description", "job/get_description_incl_archive"):
                return self.describe(decode_ids(body), caller)
            if route == "job/kill":
                return self.kill(decode_ids(body), caller)
        except AiluroError as exc:
            return _envelope(False, describe_error(exc), None)
        raise KeyError(route)

    def submit(self, body: Any, caller: Caller) -> dict[str, Any]:
        decoded = decode_submission(body)
        if not set(caller.roles) & set(PRODUCTION_ROLES):
            for i, spec in enumerate(decoded.jobs):
                if spec.__getattribute__("prodSourceLabel") == "managed":
                    # PanDA's rule: managed (production) jobs need the production role
                    raise PermissionDenied(
                        f"'managed' jobs need the production role; the caller has {list(caller.roles) or 'none'}",
                        field=f"jobs[{i}].prodSourceLabel",
                    )
        messages = [job_from_spec(spec, field=f"jobs[{i}]") for i, spec in enumerate(decoded.jobs)]
        with self._client(caller) as client:
            ids = client.submit(messages)  # <= 5,000 jobs: one all-or-nothing call
        data = [
            [pid, spec.__getattribute__("jobDefinitionID"), spec.__getattribute__("jobName")]
            for pid, spec in zip(ids, decoded.jobs, strict=True)
        ]
        message = f"{len(ids)} jobs submitted"
        if decoded.ignored:
            message += "; warning: ignored attributes (no Ailuro equivalent): " + ", ".join(decoded.ignored)
        return _envelope(True, message, data)

    def _per_id(self, ids: list[int], fetch: Any) -> list[Any]:
        """``fetch(ids)``; when one id is unknown, one by one so that only it yields ``None``."""
        try:
            return list(fetch(ids))
        except NotFound:
            out: list[Any] = []
            for pid in ids:
                try:
                    out.extend(fetch([pid]))
                except NotFound:
                    out.append(None)
            return out

    def describe(self, ids: list[int], caller: Caller) -> dict[str, Any]:
        with self._client(caller) as client:
            jobs = self._per_id(ids, client.get)
        return _envelope(True, "", [job_dict(spec_from_job(j)) if j is not None else None for j in jobs])

    def kill(self, ids: list[int], caller: Caller) -> dict[str, Any]:
        with self._client(caller) as client:
            results = self._per_id(ids, lambda chunk: client.kill(chunk, reason="killed by user (PanDA gateway)"))
        return _envelope(True, "", [bool(r is not None and r.accepted) for r in results])


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> str | None:
        path = self.path.split("?", 1)[0]
        if not path.startswith(API):
            return None
        route = path[len(API) :].strip("/")
        return route if route in _ROUTES.get(self.command, ()) else None

    def _caller(self) -> Caller:
        # DER, so the DN comes from the certificate itself (and its proxyCertInfo, if any)
        cert = self.connection.getpeercert(binary_form=True) if isinstance(self.connection, ssl.SSLSocket) else None
        return self.server.gateway.caller(cert, self.headers.get("Authorization"), self.headers.get("Origin"))

    def _body(self) -> Any:
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_header is None:
            if self.command == "GET":
                return {}
            raise InvalidArgument("a Content-Length is required (no chunked bodies)", field="body")
        try:
            length = int(length_header)
        except ValueError:
            raise InvalidArgument("Content-Length is not a number", field="body") from None
        if length < 0 or length > self.server.config.max_body_bytes:
            self.close_connection = True  # the unread body must not be parsed as the next request
            raise ResourceExhausted(f"is {length} bytes; at most {self.server.config.max_body_bytes}", field="body")
        raw = self._read(length)
        if not raw and self.command == "GET":
            return {}
        try:
            return json.loads(raw)
        except RecursionError:
            raise InvalidArgument("is nested too deeply", field="body") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"is not JSON: {exc}"[:200], field="body") from None

    def _read(self, length: int) -> bytes:
        """The body, in chunks, within ``timeout_s`` overall (a trickling client cannot hold a slot)."""
        deadline = time.monotonic() + self.server.config.timeout_s
        chunks: list[bytes] = []
        left = length
        while left > 0:
            if time.monotonic() > deadline:
                self.close_connection = True
                raise InvalidArgument(f"not received within {self.server.config.timeout_s:g} s", field="body")
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                self.close_connection = True
                raise InvalidArgument(f"ended after {length - left} of {length} bytes", field="body")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _serve(self) -> None:
        route = self._route()
        if route is None:
            self.close_connection = True
            self._send(404, _envelope(False, f"unknown API path {self.command} {self.path[:100]!r}", None))
            return
        try:
            caller = self._caller()
            body = self._body()
        except AiluroError as exc:
            self._send(200, _envelope(False, describe_error(exc), None))
            return
        try:
            payload = self.server.gateway.handle(route, body, caller)
        except Exception:  # a bug must still answer in the envelope, never a bare 500
            log.exception("gateway %s failed", route)
            payload = _envelope(False, "INTERNAL the gateway failed on this request (see its log)", None)
        self._send(200, payload)

    do_GET = _serve
    do_POST = _serve


_ROUTES = {
    "GET": ("system/is_alive",),
    "POST": ("job/submit", "job/get_description", "job/get_description_incl_archive", "job/kill", "system/is_alive"),
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: GatewayConfig, gateway: Gateway, context: ssl.SSLContext | None) -> None:
        self.config = config
        self.gateway = gateway
        self.context = context
        self.slots = threading.BoundedSemaphore(config.max_connections)
        super().__init__((config.host, config.port), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        sock.settimeout(self.config.timeout_s)
        if self.context is not None:
            # the handshake happens in the handler thread, so a slow client cannot stall accept()
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        self.slots.acquire()  # bounds the threads; accept() waits while all are busy
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if isinstance(request, ssl.SSLSocket):
                try:
                    request.do_handshake()
                except (OSError, ssl.SSLError) as exc:
                    log.info("TLS handshake with %s failed: %s", client_address[0], exc)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def ssl_context(config: GatewayConfig) -> ssl.SSLContext | None:
    """The server-side TLS context, or ``None`` for plain HTTP."""
    if config.tls_cert is None and config.tls_key is None:
        if config.tls_ca is not None:
            raise InvalidArgument("needs --tls-cert and --tls-key", field="tls_ca")
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise InvalidArgument("--tls-cert and --tls-key go together", field="tls_cert")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    if config.tls_ca is not None:
        context.load_verify_locations(cafile=str(config.tls_ca))
        context.verify_mode = ssl.CERT_OPTIONAL  # token callers present no certificate
        context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return context


def make_server(config: GatewayConfig) -> _HTTPServer:
    """A bound (not yet serving) gateway; ``server_address[1]`` is its port.

    ``InvalidArgument`` names the option of an unusable set-up (a bad grid-mapfile line, an
    unreadable issuer key, a grid-mapfile without a client CA to verify certificates).
    """
    from dispatcher.auth.gridmap import GridmapError
    from dispatcher.auth.issuer import IssuerError

    if config.gridmap is not None and config.tls_ca is None:
        raise InvalidArgument("needs --tls-ca: only verified client certificates are mapped", field="gridmap")
    context = ssl_context(config)
    try:
        gateway = Gateway(config)
    except GridmapError as exc:
        raise InvalidArgument(str(exc), field="gridmap") from None
    except IssuerError as exc:
        raise InvalidArgument(str(exc), field="auth_dir") from None
    return _HTTPServer(config, gateway, context)
