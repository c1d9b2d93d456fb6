"""How the factory hands each pilot its own token: a 0600 file in the worker's own directory.

Every worker gets a token of its own (role ``pilot``, bound to its queue by ``ailuro.queues``,
subject ``pilot:<factory>:<worker id>``), so the dispatcher can tell the pilots of one queue
apart. The factory writes it to ``<workdir>/tokens/<queue>/<worker id>/`` :data:`WORKER_TOKEN_FILE`
(file 0600, directories 0700) before submitting, and the wrapper points ``AILURO_TOKEN_FILE`` at
it (HTCondor: at the copy its file transfer put in the job's scratch directory); the pilot reads
it once at start. A token never appears on a command line (``ps`` shows those to every user of
the node) nor in the wrapper script (0755, readable by all).

Where the tokens come from is a :data:`PilotTokenSource`:

- :class:`DispatcherSource` (the default when the factory has a ``factory`` token): the
  dispatcher signs them (``FactoryService.IssuePilotTokens``), so a factory on another host never
  holds the signing key;
- :func:`directory_source`: tokens an admin issued per queue (all the queue's pilots share it);
- minted with the embedded issuer's key when the factory runs on the dispatcher's account
  (``ailuro factory --auth-dir``; built by the CLI, the backends never sign anything).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ailuro.credentials import read_token_file, write_token_file
from ailuro.queues import QueueConfig
from ailuro.v1 import factory_pb2, factory_pb2_grpc

PilotTokenSource = Callable[[QueueConfig, Sequence[str]], Sequence[str]]
"""Gives the tokens for these workers (pilot ids) of a queue, one per worker, in order."""

TOKEN_DIR = "tokens"
"""Subdirectory of the factory's work dir: ``<queue>/<worker id>/`` :data:`WORKER_TOKEN_FILE`."""
WORKER_TOKEN_FILE = "ailuro-pilot.token"
"""Name of a worker's token file, in its directory and in an HTCondor job's scratch directory."""
RPC_BATCH = 1_000
"""Workers per ``IssuePilotTokens`` call (the dispatcher's bound)."""


def directory_source(directory: Path) -> PilotTokenSource:
    """Tokens an admin issued per queue, read from ``<directory>/<queue>.token`` at each submission
    (so a renewed file is picked up): ``ailuro token issue --role pilot --queue Q > DIR/Q.token``."""

    def tokens_for(queue: QueueConfig, workers: Sequence[str]) -> list[str]:
        token = read_token_file(Path(directory).expanduser() / f"{queue.name}.token")
        return [token] * len(workers)

    return tokens_for


@dataclass(frozen=True, kw_only=True)
class DispatcherSource:
    """Pilot tokens the dispatcher signs for this factory's queues (``IssuePilotTokens``)."""

    stub: factory_pb2_grpc.FactoryServiceStub
    """The factory's FactoryService stub."""
    metadata: tuple[tuple[str, str], ...]
    """The factory's call metadata (its ``factory`` bearer token)."""
    timeout_s: float = 10.0
    """Deadline of each call."""
    lifetime_s: int = 0
    """Each token's lifetime (0: the dispatcher's default, which covers queue wait + walltime)."""

    def __call__(self, queue: QueueConfig, workers: Sequence[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(workers), RPC_BATCH):
            chunk = list(workers[start : start + RPC_BATCH])
            resp = self.stub.IssuePilotTokens(
                factory_pb2.IssuePilotTokensRequest(queue=queue.name, worker_ids=chunk, lifetime_s=self.lifetime_s),
                timeout=self.timeout_s,
                metadata=self.metadata,
            )
            got = {t.worker_id: t.token for t in resp.tokens}
            missing = [w for w in chunk if not got.get(w)]
            if missing:
                raise RuntimeError(f"IssuePilotTokens returned no token for {len(missing)} worker(s): {missing[:3]}")
            out.extend(got[w] for w in chunk)
        return out


def queue_token_dir(workdir: Path, queue: str) -> Path:
    """Where the workers of ``queue`` have their token directories."""
    return Path(workdir) / TOKEN_DIR / queue


def write_worker_tokens(token_dir: Path, workers: Sequence[str], tokens: Sequence[str]) -> list[Path]:
    """Write each worker's token to ``<token_dir>/<worker>/`` :data:`WORKER_TOKEN_FILE` (0600,
    directories 0700); returns the paths."""
    if len(workers) != len(tokens):
        raise ValueError(f"{len(tokens)} token(s) for {len(workers)} worker(s)")
    token_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # tokens/: not listable by others
    token_dir.mkdir(mode=0o700, exist_ok=True)
    paths = []
    for worker, token in zip(workers, tokens, strict=True):
        if not worker or "/" in worker or worker in (".", ".."):
            raise ValueError(f"not a worker id usable as a directory name: {worker!r}")
        paths.append(write_token_file(token_dir / worker / WORKER_TOKEN_FILE, token))
    return paths


def give_to(paths: Sequence[Path], uid: int) -> None:
    """Make each worker's token file and directory belong to ``uid`` (modes unchanged: 0600/0700),
    and its parents traversable (not listable) by it.

    For a factory running as root whose batch system runs the jobs as another account (an
    HTCondor IDTOKEN identity): HTCondor's shadow reads ``transfer_input_files`` as the job's owner.
    """
    for path in paths:
        os.chown(path, uid, -1)
        os.chown(path.parent, uid, -1)
        for parent in (path.parent.parent, path.parent.parent.parent):  # <queue>/, tokens/
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod((mode & 0o7777) | 0o011)


def remove_worker_tokens(token_dir: Path, workers: Sequence[str]) -> None:
    """Delete the token files of workers that ended (a pilot reads its token once, at start)."""
    for worker in workers:
        if not worker or "/" in worker or worker in (".", ".."):
            continue
        path = token_dir / worker / WORKER_TOKEN_FILE
        with contextlib.suppress(OSError):  # a stray file there stays, the next poll does not retry
            path.unlink(missing_ok=True)
            path.parent.rmdir()
