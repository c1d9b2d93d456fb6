"""The dispatcher's command-line options, defined once for both entry points.

``python -m dispatcher`` and ``ailuro server`` (which hands its arguments here unchanged) parse
the same flags with the same defaults, and each setting has one environment variable:
``AILURO_DB`` (database URL), ``AILURO_QUEUES`` (queue file), ``AILURO_STORAGE_ROOT``,
``AILURO_AUTH`` and ``AILURO_AUTH_DIR``. With no auth option the dispatcher is secure: token mode,
its embedded issuer in ``~/.ailuro/auth``; trusted metadata only when asked for, on loopback. The old
``AILURO_DB_URL`` is still read for one release, with a deprecation warning.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from ailuro.errors import InvalidArgument
from ailuro.queues import load_queues, load_shares, load_storage
from ailuro.vocabulary import DB_ENV, DB_ENV_DEPRECATED, DEFAULT_STORAGE_ROOT
from ddm.storage import ENV_STORAGE_ROOT
from dispatcher.auth.config import AUTH_DIR_ENV, DEFAULT_AUTH_DIR, TOKEN_MODE, AuthConfig
from dispatcher.auth.config import MODES as AUTH_MODES
from dispatcher.auth.interceptor import is_loopback
from dispatcher.auth.issuer import IssuerFiles
from dispatcher.config import DispatcherConfig, LoopLagConfig

QUEUES_ENV = "AILURO_QUEUES"
"""Environment variable naming the queue file (``--queues``)."""
LOG_LEVELS = ("debug", "info", "warning", "error")


def db_url_from_env(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The database URL the environment names, and a deprecation notice when it used the old name.

    ``AILURO_DB`` wins; ``AILURO_DB_URL`` alone is still honoured (until the next release).
    """
    if environ.get(DB_ENV):
        return environ[DB_ENV], None
    old = environ.get(DB_ENV_DEPRECATED)
    if old:
        return old, f"{DB_ENV_DEPRECATED} is deprecated and will be ignored in the next release; set {DB_ENV}"
    return None, None


def _log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return value.upper()


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, not {port}")
    return port


def build_parser(prog: str, environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The options of a dispatcher process (defaults of the environment-backed ones from ``environ``)."""
    db_default = db_url_from_env(environ)[0] or DispatcherConfig.db_url
    p = argparse.ArgumentParser(prog=prog, description="Run an Ailuro dispatcher (the gRPC server) until stopped.")
    p.add_argument(
        "--db",
        default=db_default,
        help=f"database URL, sqlite:///FILE or postgresql+psycopg://... (env {DB_ENV}; default: %(default)s)",
    )
    p.add_argument("--host", default=DispatcherConfig.host, help="address to listen on (default: %(default)s)")
    p.add_argument(
        "--port",
        type=_port,
        default=DispatcherConfig.port,
        help="port to listen on; 0: any free one (default: %(default)s)",
    )
    p.add_argument(
        "--queues",
        type=Path,
        default=environ.get(QUEUES_ENV) or None,
        help=f"queue TOML file (env {QUEUES_ENV}; default: one LOCAL queue)",
    )
    p.add_argument(
        "--lease-s",
        "--lease",
        dest="lease_s",
        type=float,
        default=DispatcherConfig.lease_s,
        help="a pilot's lease on a job without heartbeat, in seconds (default: %(default)s)",
    )
    p.add_argument(
        "--sent-timeout-s",
        type=float,
        default=DispatcherConfig.sent_timeout_s,
        help="a job sent to a pilot that does not start within this is requeued (default: %(default)s)",
    )
    p.add_argument(
        "--bundle-port",
        type=_port,
        default=None,
        help="also serve the pilot bundle over HTTP on this port (/pilot/bundle.pyz, /pilot/bundle.json)",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve this dispatcher's Prometheus metrics on http://BIND:PORT/metrics (no authentication; "
        "with --workers N, worker i serves on PORT+i); 0: any free port (default: off)",
    )
    p.add_argument(
        "--metrics-bind",
        default=DispatcherConfig.metrics_host,
        help="address the metrics endpoint binds (default: %(default)s, this machine only)",
    )
    p.add_argument(
        "--ddm-workers",
        type=int,
        default=DispatcherConfig.ddm_workers,
        help="DDM requests run at once by this dispatcher's agent (runs when the queue file has [[storage]]); "
        "0: none (default: %(default)s)",
    )
    p.add_argument(
        "--storage-root",
        type=Path,
        default=environ.get(ENV_STORAGE_ROOT) or DEFAULT_STORAGE_ROOT,
        help=f"directory of file:// storage elements, <root>/<SE> as pilots use it (env {ENV_STORAGE_ROOT}; "
        "default: %(default)s); logs are read back only from there and the queue file's [[storage]] endpoints",
    )
    p.add_argument(
        "--no-job-retry",
        "--no-job-retry-s",
        dest="no_job_retry_s",
        type=float,
        default=DispatcherConfig.no_job_retry_s,
        help="seconds an idle pilot waits before asking again; also the longest a streamed job request "
        "that found no work is parked, waiting for one (default: %(default)s)",
    )
    p.add_argument(
        "--max-parked-requests",
        dest="max_parked_requests",
        type=int,
        default=DispatcherConfig.max_parked_requests,
        help="job requests parked at once per process; 0 answers NoJob at once (default: %(default)s)",
    )
    p.add_argument(
        "--claim-batches-in-flight",
        dest="claim_batches_in_flight",
        type=int,
        default=DispatcherConfig.claim_batches_in_flight,
        help="claim batches run at once per process on PostgreSQL (SQLite: always 1) (default: %(default)s)",
    )
    p.add_argument(
        "--claim-pool-s",
        dest="claim_pool_s",
        type=float,
        default=DispatcherConfig.claim_pool_s,
        help="PostgreSQL: seconds candidate jobs read for a queue serve later claims (one statement per "
        "claim); 0 makes every claim a locked transaction (default: %(default)s)",
    )
    p.add_argument(
        "--claim-read-ahead",
        dest="claim_read_ahead",
        action=argparse.BooleanOptionalAction,
        default=DispatcherConfig.claim_read_ahead,
        help="PostgreSQL: read a queue's next candidates in the background when a claim leaves its "
        "shelf low or half-aged (default: %(default)s)",
    )
    p.add_argument(
        "--urgent-db-threads",
        dest="urgent_db_threads",
        type=int,
        default=DispatcherConfig.urgent_db_threads,
        help="database threads reserved for claims, kills and pilot commands; 0 shares the main pool "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--gil-switch-interval-ms",
        dest="gil_switch_interval_ms",
        type=float,
        default=DispatcherConfig.gil_switch_interval_ms,
        help="how long a thread holds the GIL before a waiting one gets it (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="dispatcher processes sharing the port (SO_REUSEPORT), each with its own event loop and GIL "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--auth",
        choices=AUTH_MODES,
        default=environ.get("AILURO_AUTH") or AuthConfig.mode,
        help="token (the default): every call needs a bearer token, even on loopback (embedded issuer in "
        "--auth-dir); trusted-metadata: INSECURE development mode, believes the caller's --user, loopback only, "
        "only when asked for explicitly (env AILURO_AUTH; default: %(default)s)",
    )
    p.add_argument(
        "--auth-dir",
        type=Path,
        default=environ.get(AUTH_DIR_ENV) or DEFAULT_AUTH_DIR,
        help="embedded issuer state: signing key, JWKS, first admin token (admin.token), made at first start "
        f"in token mode (env {AUTH_DIR_ENV}; default: %(default)s)",
    )
    p.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain: serve TLS only")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        default=None,
        help="PEM CA bundle of client certificates (mTLS): every client must present one it signed",
    )
    p.add_argument(
        "--gridmap",
        type=Path,
        default=None,
        help="grid-mapfile, lines '\"<DN>\" user vo role[,role]': a certificate without a token acts as its user",
    )
    p.add_argument(
        "--loop-stall-ms",
        type=float,
        default=None,
        help="measure the event loop's lag and sample the stacks holding it longer than this (ms; default: off)",
    )
    p.add_argument(
        "--loop-lag-dir",
        type=Path,
        default=None,
        help="write the loop lag figures to DIR/looplag-<pid>.json every second (implies --loop-stall-ms 5)",
    )
    p.add_argument("--port-file", type=Path, default=None, help="write the bound port to this file once listening")
    p.add_argument("--log-level", type=_log_level, default="INFO", help=f"{', '.join(LOG_LEVELS)} (default: info)")
    return p


def config_from_args(args: argparse.Namespace) -> DispatcherConfig:
    """The :class:`DispatcherConfig` the options describe; ``InvalidArgument`` names a bad option."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(args.db)
    except ArgumentError:
        raise InvalidArgument(f"is not a database URL: {args.db!r}", field="--db") from None
    if args.lease_s < 1 or args.sent_timeout_s < 1:
        raise InvalidArgument(
            "must be at least 1 second", field="--lease-s" if args.lease_s < 1 else "--sent-timeout-s"
        )
    if not 1 <= args.workers <= 64:
        raise InvalidArgument(f"must be 1 to 64, not {args.workers}", field="--workers")
    if args.metrics_port and args.metrics_port + args.workers - 1 > 65535:
        raise InvalidArgument(f"{args.metrics_port} + {args.workers} workers passes 65535", field="--metrics-port")
    if args.ddm_workers < 0:
        raise InvalidArgument(f"must be 0 or more, not {args.ddm_workers}", field="--ddm-workers")
    if not 1 <= args.claim_batches_in_flight <= 16:
        raise InvalidArgument(f"must be 1 to 16, not {args.claim_batches_in_flight}", field="--claim-batches-in-flight")
    if not 0 <= args.claim_pool_s <= 60:  # NaN fails this too
        raise InvalidArgument(f"must be 0 to 60, not {args.claim_pool_s}", field="--claim-pool-s")
    if not 0.1 <= args.gil_switch_interval_ms <= 100:  # NaN fails this too
        interval = args.gil_switch_interval_ms
        raise InvalidArgument(f"must be 0.1 to 100, not {interval}", field="--gil-switch-interval-ms")
    if not 0 <= args.urgent_db_threads <= 64:
        raise InvalidArgument(f"must be 0 to 64, not {args.urgent_db_threads}", field="--urgent-db-threads")
    if args.auth != TOKEN_MODE and not is_loopback(args.host):
        raise InvalidArgument(
            f"--auth {args.auth} is allowed on a loopback --host only; use --auth token", field="--auth"
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InvalidArgument("--tls-cert and --tls-key go together", field="--tls-cert")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise InvalidArgument("needs --tls-cert and --tls-key", field="--tls-client-ca")
    if args.gridmap is not None and (args.tls_client_ca is None or args.auth != TOKEN_MODE):
        raise InvalidArgument("needs --tls-client-ca and --auth token", field="--gridmap")
    if args.gridmap is not None:
        from dispatcher.auth.gridmap import GridmapError, load_gridmap

        try:
            load_gridmap(args.gridmap)  # refuse a bad file before anything starts
        except GridmapError as exc:
            raise InvalidArgument(str(exc), field="--gridmap") from None
    loop_lag = None
    if args.loop_stall_ms is not None or args.loop_lag_dir is not None:
        stall_ms = LoopLagConfig.stall_ms if args.loop_stall_ms is None else args.loop_stall_ms
        if not 1 <= stall_ms <= 10_000:
            raise InvalidArgument(f"must be 1 to 10000 ms, not {stall_ms}", field="--loop-stall-ms")
        if args.loop_lag_dir is not None and not args.loop_lag_dir.is_dir():
            raise InvalidArgument(f"not a directory: {args.loop_lag_dir}", field="--loop-lag-dir")
        loop_lag = LoopLagConfig(stall_ms=stall_ms, report_dir=args.loop_lag_dir)
    auth = AuthConfig(
        mode=args.auth,
        state_dir=Path(args.auth_dir).expanduser().absolute(),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        gridmap=args.gridmap,
    )
    options: dict[str, object] = {}
    if args.queues is not None:
        if not args.queues.is_file():
            raise InvalidArgument(f"queues file not found: {args.queues}", field="--queues")
        options = {
            "queues": load_queues(args.queues),
            "storage": load_storage(args.queues),
            "shares": load_shares(args.queues),
        }
    return DispatcherConfig(
        db_url=args.db,
        host=args.host,
        port=args.port,
        lease_s=args.lease_s,
        sent_timeout_s=args.sent_timeout_s,
        bundle_port=args.bundle_port,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_bind,
        ddm_workers=args.ddm_workers,
        no_job_retry_s=args.no_job_retry_s,
        max_parked_requests=args.max_parked_requests,
        claim_batches_in_flight=args.claim_batches_in_flight,
        claim_pool_s=args.claim_pool_s,
        claim_read_ahead=args.claim_read_ahead,
        urgent_db_threads=args.urgent_db_threads,
        gil_switch_interval_ms=args.gil_switch_interval_ms,
        loop_lag=loop_lag,
        auth=auth,
        storage_root=Path(args.storage_root).expanduser().absolute(),
        **options,  # type: ignore[arg-type]
    )


def auth_notice(auth: AuthConfig) -> str:
    """One line for the operator at start: how callers authenticate, and where the admin token is."""
    if auth.mode != TOKEN_MODE:
        return "ailuro dispatcher auth: INSECURE trusted-metadata (development only): callers are believed"
    if auth.state_dir is None:
        return "ailuro dispatcher auth: token (external issuers only)"
    admin = IssuerFiles(state_dir=auth.state_dir).admin_token
    return f"ailuro dispatcher auth: token; admin token in {admin} (export AILURO_TOKEN_FILE={admin})"


def shown_db(url: str) -> str:
    """The database URL with its password hidden, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
