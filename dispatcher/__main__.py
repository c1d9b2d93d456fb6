"""``python -m dispatcher``: run one dispatcher process (``ailuro server`` runs exactly this).

The options are :mod:`dispatcher.options`. Once the server listens it prints ``PORT <n>`` on
stdout and ``ailuro dispatcher listening on HOST:PORT (db URL)`` on stderr, and ``--port-file``
receives the port (useful with ``--port 0``). Bad options exit with 2, naming the option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ailuro.errors import AiluroError
from dispatcher.options import auth_notice, build_parser, config_from_args, db_url_from_env, shown_db
from dispatcher.server import serve


def parse_args(argv: Sequence[str] | None = None, *, prog: str = "python -m dispatcher") -> argparse.Namespace:
    """Command-line options (see :func:`dispatcher.options.build_parser`)."""
    return build_parser(prog, os.environ).parse_args(list(sys.argv[1:] if argv is None else argv))


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m dispatcher") -> int:
    """Entry point; returns the process exit code (2: bad options)."""
    args = parse_args(argv, prog=prog)
    notice = db_url_from_env(os.environ)[1]
    if notice:
        sys.stderr.write(f"{prog}: warning: {notice}\n")
    try:
        config = config_from_args(args)
    except AiluroError as exc:
        where = f"{exc.field} " if exc.field else ""
        sys.stderr.write(f"{prog}: error: {where}{exc.message}\n")
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(port: int) -> None:
        if args.port_file:
            tmp = Path(f"{args.port_file}.tmp")
            tmp.write_text(f"{port}\n")
            tmp.replace(args.port_file)
        sys.stdout.write(f"PORT {port}\n")
        sys.stdout.flush()
        # one parseable line, so scripts (and tests) started with --port 0 learn the address
        sys.stderr.write(f"ailuro dispatcher listening on {config.host}:{port} (db {shown_db(config.db_url)})\n")
        sys.stderr.write(auth_notice(config.auth) + "\n")
        sys.stderr.flush()

    def metrics_ready(port: int) -> None:
        sys.stderr.write(f"ailuro dispatcher metrics on http://{config.metrics_host}:{port}/metrics\n")

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
        if args.workers > 1:
            from dispatcher.workers import serve_workers

            serve_workers(config, args.workers, on_ready=ready, log_level=args.log_level)
            return 0
        asyncio.run(serve(config, on_ready=ready, on_metrics=metrics_ready))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
