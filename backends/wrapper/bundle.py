"""What the factory tells a wrapper about the pilot bundle it should download (``bundle.json``)."""

from __future__ import annotations

import json
import urllib.request

from backends.wrapper import BUNDLE_PYTHON_ENV, BUNDLE_SHA256_ENV, BUNDLE_URL_ENV, BUNDLE_VERSION_ENV


def bundle_environment(base_url: str, *, python: str = "python3", timeout: float = 10.0) -> dict[str, str]:
    """The wrapper's bundle settings: ``bundle.json`` from ``base_url`` says what to expect.

    Asked at every submission, so pilots always get the bundle the dispatcher serves now; the
    wrapper refuses a download whose sha256 or version differs.
    """
    base = base_url.rstrip("/")
    with urllib.request.urlopen(f"{base}/pilot/bundle.json", timeout=timeout) as resp:
        info = json.loads(resp.read())
    return {
        BUNDLE_URL_ENV: f"{base}{info.get('url_path', '/pilot/bundle.pyz')}",
        BUNDLE_SHA256_ENV: str(info["sha256"]),
        BUNDLE_VERSION_ENV: str(info["version"]),
        BUNDLE_PYTHON_ENV: python,
    }
