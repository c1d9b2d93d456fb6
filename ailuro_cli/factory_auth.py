"""The factory's credentials from its command line: its own token and its pilots' tokens.

``--token-file`` (or ``$AILURO_TOKEN``/``$AILURO_TOKEN_FILE``) is the factory's own token, role
``factory``. With it and nothing else, the factory asks the dispatcher for one pilot token per
worker (``IssuePilotTokens``; the default, and the only way for a factory on another host).
``--pilot-token-dir`` holds static pilot tokens an admin issued, one per queue. A factory on the
dispatcher's account (a small site) may instead name the dispatcher's ``--auth-dir``: it then
mints both itself offline, each bound to the factory's queues (least privilege), a pilot token
per worker with the same subjects the dispatcher would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ailuro.credentials import write_token_file
from ailuro.queues import QueueConfig
from backends.credentials import stored_factory_id
from backends.pilot_tokens import TOKEN_DIR, PilotTokenSource, directory_source

if TYPE_CHECKING:
    from dispatcher.auth.minting import Minter


@dataclass(frozen=True, kw_only=True)
class FactoryTokens:
    """What :class:`backends.factory.FactoryConfig` gets."""

    token_file: Path | None = None
    """The factory's own token file (None: the environment's, or none)."""
    pilot_tokens: PilotTokenSource | None = None
    """Where its pilots' tokens come from (None: from the dispatcher when the factory has a token)."""


def factory_tokens(
    queues: Sequence[QueueConfig],
    *,
    token_file: Path | None,
    pilot_token_dir: Path | None,
    auth_dir: Path | None,
    vo: str,
    workdir: Path,
    factory_id: str = "",
) -> FactoryTokens:
    """The tokens the options describe; ValueError/OSError when ``auth_dir`` cannot sign."""
    if pilot_token_dir is not None and auth_dir is not None:
        raise ValueError("--pilot-token-dir and --auth-dir: give one source of pilot tokens")
    if auth_dir is None:
        return FactoryTokens(
            token_file=token_file,
            pilot_tokens=directory_source(pilot_token_dir) if pilot_token_dir is not None else None,
        )
    from dispatcher.auth.issuer import IssuerError
    from dispatcher.auth.minting import Minter

    try:
        minter = Minter.from_state_dir(auth_dir)
    except IssuerError as exc:
        raise ValueError(f"--auth-dir: {exc}") from None
    # the subject names the factory: the id it registers workers under, so what it registers is
    # owned by it
    subject = factory_id or stored_factory_id(workdir)
    if token_file is None:
        token = minter.factory(subject, vo, [q.name for q in queues])
        token_file = write_token_file(workdir.resolve() / TOKEN_DIR / "factory.token", token)
    return FactoryTokens(token_file=token_file, pilot_tokens=minted_source(minter, subject))


def minted_source(minter: Minter, factory: str) -> PilotTokenSource:
    """Pilot tokens signed here with the embedded issuer's key, one per worker, with the subject
    and VO ``IssuePilotTokens`` would give (``pilot:<factory>:<worker id>``)."""
    from dispatcher.services.pilot_tokens import pilot_subject

    def tokens_for(queue: QueueConfig, workers: Sequence[str]) -> list[str]:
        return [minter.pilot(queue.name, vos=queue.vos, subject=pilot_subject(factory, w)) for w in workers]

    return tokens_for
