"""``python -m dispatcher``: run one dispatcher process (what ``ailuro server`` runs).

``--port-file PATH`` writes the bound port there once the server listens (useful with
``--port 0``); the port is also printed on stdout as ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from ailuro.errors import AiluroError
from ailuro.queues import load_queues, load_storage
from dispatcher.auth.config import MODES, AuthConfig
from dispatcher.config import DispatcherConfig
from dispatcher.server import serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m dispatcher", description="Run an Ailuro dispatcher.")
    p.add_argument("--db", default=DispatcherConfig.db_url, help="database URL (default: %(default)s)")
    p.add_argument("--host", default=DispatcherConfig.host, help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=DispatcherConfig.port, help="port; 0 picks a free one")
    p.add_argument("--queues", default=None, help="queue TOML file (default: one LOCAL queue)")
    p.add_argument("--port-file", default=None, help="write the bound port to this file")
    p.add_argument("--lease", type=float, default=DispatcherConfig.lease_s, help="lease seconds")
    p.add_argument("--bundle-port", type=int, default=None, help="serve the pilot bundle over HTTP on this port")
    p.add_argument(
        "--ddm-workers",
        type=int,
        default=DispatcherConfig.ddm_workers,
        help="DDM requests run at once by this process's agent (runs when the queue file has [[storage]]); 0: none",
    )
    p.add_argument(
        "--storage-root",
        type=Path,
        default=os.environ.get("AILURO_STORAGE_ROOT") or None,
        help="directory of file:// storage elements (<root>/<SE>); logs are read back only from configured storage",
    )
    p.add_argument("--auth", default=AuthConfig.mode, choices=MODES, help="token or trusted-metadata (loopback only)")
    p.add_argument("--auth-dir", type=Path, default=None, help="embedded issuer state directory (token mode)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = DispatcherConfig(
            db_url=args.db,
            host=args.host,
            port=args.port,
            queues=load_queues(args.queues),
            storage=load_storage(args.queues),
            lease_s=args.lease,
            bundle_port=args.bundle_port,
            ddm_workers=max(0, args.ddm_workers),
            storage_root=Path(args.storage_root).absolute() if args.storage_root else None,
            auth=AuthConfig(mode=args.auth, state_dir=args.auth_dir.absolute() if args.auth_dir else None),
        )
    except AiluroError as exc:
        logging.getLogger("dispatcher").error("bad configuration: %s", exc)
        return 2

    def ready(port: int) -> None:
        if args.port_file:
            tmp = Path(args.port_file + ".tmp")
            tmp.write_text(f"{port}\n")
            tmp.replace(args.port_file)
        sys.stdout.write(f"PORT {port}\n")
        sys.stdout.flush()

    asyncio.run(serve(config, on_ready=ready))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
