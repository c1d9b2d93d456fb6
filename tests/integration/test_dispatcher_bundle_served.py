"""The dispatcher serves the pilot bundle when configured, with a checksum that matches its bytes."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Callable

from dispatcher.server import RunningDispatcher


def test_bundle_is_served_with_its_checksum(make_dispatcher: Callable[..., RunningDispatcher]) -> None:
    d = make_dispatcher(bundle_port=0)
    assert d.bundle_port > 0
    base = f"http://127.0.0.1:{d.bundle_port}/pilot"
    with urllib.request.urlopen(f"{base}/bundle.json", timeout=30) as resp:
        info = json.load(resp)
    with urllib.request.urlopen(f"{base}/bundle.pyz", timeout=30) as resp:
        data = resp.read()
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["version"]


def test_no_bundle_server_unless_asked(dispatcher: RunningDispatcher) -> None:
    assert dispatcher.bundle_port == 0
