"""How the factory hands each pilot a token bound to its queue: a 0600 file named in its environment.

The token never appears on a command line (``ps`` shows those to every user of the node) nor in
the wrapper script (0755, readable by all): the factory writes it to ``<workdir>/tokens/<queue>.token``
(0600, directory 0700) and the wrapper exports ``AILURO_TOKEN_FILE`` with that path; the pilot
reads it once at start. The pilot therefore runs as the factory's account and sees its work dir,
as it already must for its log and evidence files (local, Slurm, LSF, and HTCondor with a shared
file system submitting as the factory's own user). Where the tokens come from is a
:data:`PilotTokenSource`: tokens an admin issued per queue (:func:`directory_source`), or minted
with the embedded issuer's key when the factory runs on the dispatcher's account (``ailuro demo``,
``ailuro factory --auth-dir``); the CLI builds that one, the backends never sign anything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ailuro.credentials import TOKEN_FILE_ENV, read_token_file, write_token_file
from ailuro.queues import QueueConfig

PilotTokenSource = Callable[[QueueConfig], str]
"""Gives the token for the pilots of a queue (role ``pilot``, ``ailuro.queues`` = that queue)."""

TOKEN_DIR = "tokens"
"""Subdirectory of the factory's work dir holding one token file per queue."""


def directory_source(directory: Path) -> PilotTokenSource:
    """Tokens an admin issued per queue, read from ``<directory>/<queue>.token`` at each submission
    (so a renewed file is picked up): ``ailuro token issue --role pilot --queue Q > DIR/Q.token``."""

    def token_for(queue: QueueConfig) -> str:
        return read_token_file(Path(directory).expanduser() / f"{queue.name}.token")

    return token_for


def pilot_token_environment(source: PilotTokenSource, queue: QueueConfig, workdir: Path) -> dict[str, str]:
    """Write the queue's pilot token into the work dir (0600) and return the environment that names it."""
    path = write_token_file(Path(workdir) / TOKEN_DIR / f"{queue.name}.token", source(queue))
    return {TOKEN_FILE_ENV: str(path)}
