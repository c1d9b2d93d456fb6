"""Dispatcher addresses: one ``HOST:PORT`` or a comma-separated list of them.

Several dispatcher processes (on one host or many) serve one PostgreSQL database; a client can be
given all of them (``--server d1:50051,d2:50051`` or ``AILURO_SERVER``) instead of a load balancer.
A list becomes one gRPC channel with the ``round_robin`` policy over every resolved address:
calls and new pilot streams are spread over the dispatchers that are up, and a dispatcher that
goes away is skipped until it answers again. The pilot's reconnect loop therefore moves its
stream to a surviving dispatcher by itself, and the SDK's retries land on one that answers.

Every channel sends HTTP/2 keepalive pings (:data:`KEEPALIVE`): a dispatcher host that vanishes
without closing its connections (a cut link, a dead host) is noticed within about 30 s, and the
stream fails over, instead of hanging until TCP gives up (many minutes).

Host names are resolved once, when the channel is made (gRPC's ``ipv4:``/``ipv6:`` targets take
addresses, not names); a single address is handed to gRPC unchanged, so DNS, ``unix:`` and the
other gRPC target forms keep working for it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import grpc

__all__ = ["ChannelTarget", "aio_channel", "channel", "parse_targets", "resolve"]

ChannelOptions = list[tuple[str, Any]]

KEEPALIVE_TIME_MS = 20_000
"""A ping after this long without a frame from the server (the dispatcher permits pings this often)."""
KEEPALIVE_TIMEOUT_MS = 10_000
"""No answer to a ping within this: the connection is dead, its calls fail with UNAVAILABLE."""
KEEPALIVE: ChannelOptions = [
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # an idle pilot stream must keep being checked
]
"""Channel options for keepalive; later options (a caller's) override these."""


class ChannelTarget:
    """A validated server spec: the gRPC target string and the channel options it needs."""

    __slots__ = ("addresses", "options", "target")

    def __init__(self, target: str, options: ChannelOptions, addresses: Sequence[str]) -> None:
        self.target = target
        self.options = options
        self.addresses = tuple(addresses)

    def __repr__(self) -> str:
        return f"ChannelTarget({self.target!r})"


def parse_targets(spec: str) -> list[tuple[str, int]]:
    """``"h1:p1,h2:p2"`` -> ``[("h1", p1), ("h2", p2)]``; ``ValueError`` names what is wrong.

    IPv6 literals are written in brackets (``[::1]:50051``), as in a URL.
    """
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p for p in parts):
        raise ValueError(f"server must be HOST:PORT or a comma-separated list of them, got {spec!r}")
    out: list[tuple[str, int]] = []
    for part in parts:
        host, sep, port_text = part.rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"server address {part!r} is not HOST:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        out.append((host, int(port_text)))
    return out


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve(spec: str) -> ChannelTarget:
    """The channel target for ``spec`` (see the module docstring); ``ValueError`` when unusable."""
    if "," not in spec:
        return ChannelTarget(spec.strip(), list(KEEPALIVE), [spec.strip()])
    v4: list[str] = []
    v6: list[str] = []
    for host, port in parse_targets(spec):
        ip = _literal(host)
        if ip is not None:
            found = [ip]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise ValueError(f"server {host!r} does not resolve: {exc.strerror}") from None
            found = [ipaddress.ip_address(info[4][0]) for info in infos]
        for addr in dict.fromkeys(found):  # keep order, drop duplicates
            if addr.version == 4:
                v4.append(f"{addr}:{port}")
            else:
                v6.append(f"[{addr}]:{port}")
    # One gRPC target holds one address family; IPv4 wins where a name resolves to both.
    scheme, addresses = ("ipv4", v4) if v4 else ("ipv6", v6)
    options: ChannelOptions = [*KEEPALIVE, ("grpc.lb_policy_name", "round_robin")]
    return ChannelTarget(f"{scheme}:{','.join(dict.fromkeys(addresses))}", options, addresses)


def channel(
    spec: str, *, options: ChannelOptions | None = None, tls: grpc.ChannelCredentials | None = None
) -> grpc.Channel:
    """A blocking-API channel to one dispatcher or spread over several (TLS with ``tls``)."""
    t = resolve(spec)
    if tls is not None:
        return grpc.secure_channel(t.target, tls, options=t.options + list(options or []))
    return grpc.insecure_channel(t.target, options=t.options + list(options or []))


def aio_channel(
    spec: str,
    *,
    options: ChannelOptions | None = None,
    token: str | None = None,
    tls: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel to one dispatcher or spread over several; ``token`` is sent with every
    call, and ``tls`` (see :func:`ailuro.credentials.tls_credentials`) makes it a TLS channel."""
    from ailuro.credentials import aio_interceptors

    t = resolve(spec)
    opts = t.options + list(options or [])
    if tls is not None:
        return grpc.aio.secure_channel(t.target, tls, options=opts, interceptors=aio_interceptors(token))
    return grpc.aio.insecure_channel(t.target, options=opts, interceptors=aio_interceptors(token))
