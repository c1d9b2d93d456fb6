"""A trusted issuer's public keys (JWKS), read from a file or fetched over https, cached.

Fetches are bounded: a size cap, a timeout, only ``https://`` or local files (``http://`` only
behind the development flag), and a floor on how often an unknown ``kid`` may trigger a refetch.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWKError

MIN_REFETCH_S = 10.0
"""An unknown ``kid`` refetches the JWKS at most this often."""


class JwksError(Exception):
    """The JWKS could not be read or parsed; the message says which source and why."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused: one could lead an https JWKS URL to plain http or elsewhere."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise JwksError(f"JWKS {req.full_url!r}: redirected (HTTP {code}); configure the final URL")


_OPENER = urllib.request.build_opener(_NoRedirect)


def _read_bounded(source: str, *, timeout_s: float, max_bytes: int, allow_http: bool) -> bytes:
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.request.url2pathname(parsed.path) if parsed.scheme else source)
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    elif parsed.scheme == "https" or (parsed.scheme == "http" and allow_http):
        request = urllib.request.Request(source, headers={"Accept": "application/json"})
        with _OPENER.open(request, timeout=timeout_s) as response:
            data = response.read(max_bytes + 1)
    else:
        raise JwksError(f"JWKS {source!r}: only https:// URLs or files are allowed")
    if len(data) > max_bytes:
        raise JwksError(f"JWKS {source!r}: larger than {max_bytes} bytes")
    return data


def parse_jwks(data: bytes | str) -> dict[str, PyJWK]:
    """Keys by ``kid`` from a JWKS document; keys without a ``kid`` or unusable ones are skipped."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise JwksError(f"JWKS is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError("JWKS has no 'keys' list")
    keys: dict[str, PyJWK] = {}
    for entry in doc["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry["kid"]] = PyJWK(entry)
        except (PyJWKError, ValueError, TypeError):
            continue  # an algorithm or key type this build does not know: not a signing key for us
    return keys


class JwksCache:
    """The keys of one issuer, fetched on first use and again every ``refresh_s``."""

    def __init__(
        self,
        source: str,
        *,
        refresh_s: float,
        timeout_s: float,
        max_bytes: int,
        allow_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._refresh_s = refresh_s
        self._fetch_args: dict[str, Any] = {"timeout_s": timeout_s, "max_bytes": max_bytes, "allow_http": allow_http}
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        try:
            data = _read_bounded(self.source, **self._fetch_args)
        except JwksError:
            raise
        except (OSError, ValueError) as exc:
            raise JwksError(f"JWKS {self.source!r} could not be read: {type(exc).__name__}") from None
        self._keys = parse_jwks(data)
        self._fetched_at = self._clock()

    def key(self, kid: str) -> PyJWK | None:
        """The key with this ``kid``, refetching when stale or (rate-limited) when unknown."""
        with self._lock:
            now = self._clock()
            age = None if self._fetched_at is None else now - self._fetched_at
            if age is None or age >= self._refresh_s:
                self._fetch_keeping_old_on_error(first=age is None)
            elif kid not in self._keys and age >= min(MIN_REFETCH_S, self._refresh_s):
                self._fetch_keeping_old_on_error(first=False)
            return self._keys.get(kid)

    def _fetch_keeping_old_on_error(self, *, first: bool) -> None:
        now = self._clock()
        if first and self._failed_at is not None and now - self._failed_at < MIN_REFETCH_S:
            raise JwksError(f"JWKS {self.source!r} unavailable (last attempt failed); retrying later")
        try:
            self._fetch()
        except JwksError:
            if first or not self._keys:
                self._failed_at = now
                raise
            # The issuer is briefly unreachable: keep validating with the keys we have.
            self._fetched_at = self._clock()
