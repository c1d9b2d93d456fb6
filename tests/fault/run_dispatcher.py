"""Run one dispatcher process with an explicit configuration (JSON), for tests that SIGKILL it.

    python tests/fault/run_dispatcher.py --port-file F --config '{"db_url": "...", "lease_s": 3}'

``python -m dispatcher`` exposes only the production options; fault tests need short timeouts.
A ``"workers": N`` key runs N server processes sharing the port (``ailuro server --workers N``);
an ``"auth_dir": DIR`` key runs it in token mode with the embedded issuer in DIR (a dispatcher
bound to anything but loopback must: trusted metadata is refused there); a ``"loop_lag_dir": DIR``
key turns the event-loop lag monitor on, its reports in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

from dispatcher.auth.config import TOKEN_MODE, TRUSTED_METADATA_MODE, AuthConfig
from dispatcher.config import DispatcherConfig, LoopLagConfig
from dispatcher.server import serve
from dispatcher.workers import serve_workers


def main() -> None:
    """Parse the arguments, run until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--config", required=True, help="DispatcherConfig fields as a JSON object")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fields = json.loads(a.config)
    workers = int(fields.pop("workers", 1))
    auth_dir = fields.pop("auth_dir", None)
    lag_dir = fields.pop("loop_lag_dir", None)
    if lag_dir:
        fields["loop_lag"] = LoopLagConfig(stall_ms=5.0, report_dir=Path(lag_dir))
    # token mode with the test's issuer, else explicitly the loopback development mode
    fields["auth"] = (
        AuthConfig(mode=TOKEN_MODE, state_dir=Path(auth_dir)) if auth_dir else AuthConfig(mode=TRUSTED_METADATA_MODE)
    )
    config = DispatcherConfig(**fields)

    def ready(port: int) -> None:
        tmp = Path(a.port_file + ".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(a.port_file)

    if workers > 1:
        serve_workers(config, workers, on_ready=ready, log_level="WARNING")
    else:
        asyncio.run(serve(config, on_ready=ready))


if __name__ == "__main__":
    main()
