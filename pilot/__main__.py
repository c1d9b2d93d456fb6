"""``python -m pilot``: the pilot's own command line (``ailuro pilot`` delegates here).

Standard library only (``argparse``), so a worker node needs nothing but grpcio and protobuf:
the served bundle runs this module, and ``ailuro pilot ARGS`` is ``python -m pilot ARGS``. Every
option can also come from the environment the factory's wrapper sets (``AILURO_SERVER``,
``AILURO_QUEUE``, ``AILURO_PILOT_ID``, ``AILURO_STORAGE_ROOT``, ``AILURO_PILOT_UNARY``, and
``AILURO_TOKEN_FILE``: the pilot's bearer token, a file the factory wrote 0600 for this queue).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ailuro import credentials
from ailuro.vocabulary import PILOT_EXIT_CODES
from pilot.config import (
    DEFAULT_STORAGE_ROOT,
    PilotConfig,
    available_cores,
    available_memory_mb,
    default_pilot_id,
    detect_batch_id,
    free_disk_mb,
)

DESCRIPTION = "Run a pilot: connect to the dispatcher, take jobs from QUEUE and run them until idle."


def _epilog() -> str:
    codes = ", ".join(f"{code} {meaning}" for code, meaning in PILOT_EXIT_CODES.items())
    return f"Exit codes: {codes}."


def build_parser(prog: str = "python -m pilot", environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The pilot's options; defaults of the environment-backed ones come from ``environ``."""
    env = os.environ if environ is None else environ
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=_epilog())
    p.add_argument(
        "--server",
        default=env.get("AILURO_SERVER") or None,
        help="dispatcher HOST:PORT or a comma-separated list (env AILURO_SERVER)",
    )
    p.add_argument(
        "--queue", default=env.get("AILURO_QUEUE") or None, help="queue (computing site) to serve (env AILURO_QUEUE)"
    )
    p.add_argument(
        "--pilot-id",
        default=env.get("AILURO_PILOT_ID", ""),
        help="pilot id (env AILURO_PILOT_ID; default: host name + random suffix)",
    )
    p.add_argument(
        "--workdir", type=Path, help="parent of the job work directories (default: ./ailuro-pilot-<pilot id>)"
    )
    p.add_argument(
        "--heartbeat-s",
        type=float,
        default=None,
        help="heartbeat interval in seconds, if shorter than the dispatcher's (default: as the dispatcher says)",
    )
    p.add_argument(
        "--status-delay-s",
        type=float,
        default=1.0,
        help="report a job's status change this long after it; shorter jobs send only the final (default: %(default)s)",
    )
    p.add_argument(
        "--idle-timeout-s", type=float, default=300.0, help="exit after this long without a job (default: %(default)s)"
    )
    p.add_argument("--walltime-s", type=float, default=0.0, help="lifetime of the pilot in seconds (0: unlimited)")
    p.add_argument("--max-jobs", type=int, default=0, help="exit after this many jobs (0: unlimited)")
    p.add_argument(
        "--final-flush-timeout-s",
        type=float,
        default=15.0,
        help="at exit, wait this long for spooled final reports to be acknowledged (default: %(default)s)",
    )
    p.add_argument("--jobs-in-parallel", type=int, default=1, help="jobs run at the same time (default: %(default)s)")
    p.add_argument("--kill-grace-s", type=float, default=1.0, help="seconds between SIGTERM and SIGKILL of a payload")
    p.add_argument("--spool", type=Path, help="directory of undelivered final reports (default: <workdir>/spool)")
    p.add_argument(
        "--storage-root",
        type=Path,
        default=env.get("AILURO_STORAGE_ROOT") or None,
        help=f"base directory of file:// storage elements (env AILURO_STORAGE_ROOT; default: {DEFAULT_STORAGE_ROOT})",
    )
    p.add_argument(
        "--cores",
        type=int,
        default=0,
        help="cores offered to payloads (default: from the batch system: SLURM_CPUS_ON_NODE, LSB_DJOB_NUMPROC, "
        "HTCondor RequestCpus; else CPU affinity)",
    )
    transport = p.add_mutually_exclusive_group()
    transport.add_argument(
        "--unary",
        dest="unary",
        action="store_const",
        const=True,
        default=None,
        help="use unary GetJob/UpdateJob polls instead of the Connect stream, for proxies (env AILURO_PILOT_UNARY=1)",
    )
    transport.add_argument("--stream", dest="unary", action="store_const", const=False, help="use the Connect stream")
    p.add_argument("--memory-mb", type=int, default=0, help="memory offered to payloads in MiB (default: node memory)")
    p.add_argument(
        "--disk-mb",
        type=int,
        default=0,
        help="scratch disk offered to payloads in MiB (default: free space of --workdir)",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=None,
        help="a feature of this node jobs may require, e.g. gpu (repeatable; env AILURO_PILOT_TAGS, space-separated)",
    )
    p.add_argument(
        "--keep-workdirs",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep job work directories after the job",
    )
    p.add_argument(
        "--pass-env",
        action="append",
        default=None,
        metavar="NAME",
        help="also pass this variable (or shell pattern, e.g. 'CMT_*') of the pilot's environment to payloads "
        "(repeatable; env AILURO_PILOT_PASS_ENV, space-separated). Credential-like names never pass.",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding this pilot's bearer token, read once at start (else env AILURO_TOKEN, or the file "
        "env AILURO_TOKEN_FILE names; the factory sets that). Never pass a token on the command line.",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> PilotConfig:
    """The :class:`PilotConfig` the parsed options describe (``ValueError`` names a bad one)."""
    env = os.environ if environ is None else environ
    if not args.server:
        raise ValueError("--server (or AILURO_SERVER) is required")
    if not args.queue:
        raise ValueError("--queue (or AILURO_QUEUE) is required")
    if args.token_file is not None:
        try:
            credentials.read_token_file(args.token_file)  # fail at start, not at the first connection
        except (OSError, ValueError, UnicodeError) as exc:
            raise ValueError(f"--token-file: cannot read a token from {args.token_file}: {exc}") from None
    pid = args.pilot_id or default_pilot_id()
    work = (args.workdir or Path.cwd() / f"ailuro-pilot-{pid}").absolute()
    return PilotConfig(
        server=args.server,
        queue=args.queue,
        pilot_id=pid,
        workdir=work,
        spool_dir=(args.spool or work / "spool").absolute(),
        storage_root=(args.storage_root or DEFAULT_STORAGE_ROOT).expanduser().absolute(),
        batch_id=detect_batch_id(env),
        node=socket.gethostname(),
        cores=args.cores or available_cores(env),
        memory_mb=args.memory_mb or available_memory_mb(env),
        disk_mb=args.disk_mb or free_disk_mb(work),
        tags=tuple(args.tag if args.tag is not None else env.get("AILURO_PILOT_TAGS", "").split()),
        heartbeat_s=args.heartbeat_s,
        status_delay_s=args.status_delay_s,
        idle_timeout_s=args.idle_timeout_s,
        walltime_s=args.walltime_s,
        max_jobs=args.max_jobs,
        final_flush_timeout_s=args.final_flush_timeout_s,
        jobs_in_parallel=args.jobs_in_parallel,
        kill_grace_s=args.kill_grace_s,
        keep_workdirs=args.keep_workdirs,
        payload_env_allow=tuple(
            args.pass_env if args.pass_env is not None else env.get("AILURO_PILOT_PASS_ENV", "").split()
        ),
        unary=args.unary,
        token_file=args.token_file.expanduser().absolute() if args.token_file is not None else None,
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m pilot") -> int:
    """Parse the command line, run the pilot and return its exit code (2: bad options)."""
    parser = build_parser(prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))  # exits 2 with the usage line, like any other bad option
    from pilot.main import run_pilot, setup_logging  # the job loop, after the options are known good

    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    return run_pilot(config)


if __name__ == "__main__":
    raise SystemExit(main())
