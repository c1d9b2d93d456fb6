"""Pilot tokens for factories: ``IssuePilotTokens``, one short-lived token per worker.

A factory on another host must not hold the dispatcher's signing key, and pilots sharing one
token per queue cannot be told apart once pilot ids are bound to principals. So a factory with
its own ``factory`` token (bound to queues by ``ailuro.queues``) asks the dispatcher to sign, for
each worker it is about to submit, a ``pilot`` token bound to one of ITS queues, with subject
``pilot:<factory>:<worker_id>`` and a bounded lifetime. The checks are one pure function,
:func:`check_pilot_token_request` (the central policy table of issue #14 may call it); the
issuance is audited once per call, never the tokens themselves.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass

import jwt

from ailuro.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from ailuro.queues import QueueConfig
from ailuro.v1 import factory_pb2
from dispatcher.auth import issuer as embedded
from dispatcher.auth.minting import PILOT_LIFETIME_S, PILOT_VO
from dispatcher.identity import Identity
from dispatcher.services.runtime import Runtime
from dispatcher.store import audit

log = logging.getLogger(__name__)

FACTORY_ROLE = "factory"
MAX_PILOT_TOKENS = 1_000
"""Tokens one call signs at most (a factory submits at most this many pilots per queue and cycle)."""
MIN_LIFETIME_S = 60
DEFAULT_LIFETIME_S = 2 * 86400
"""Long enough for a pilot's wait in the batch queue plus its walltime; the pilot reads it once."""
MAX_LIFETIME_S = int(PILOT_LIFETIME_S)
"""Never longer than the 4 days the offline minter gives (``dispatcher.auth.minting``)."""
_WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")


@dataclass(frozen=True, kw_only=True)
class PilotTokenGrant:
    """What a checked request may be given."""

    factory: str
    """The calling factory's token subject: the middle of every pilot subject."""
    queue: str
    """The one queue the pilot tokens are bound to."""
    worker_ids: tuple[str, ...]
    """One token each, in request order."""
    lifetime_s: int
    """Lifetime of each token."""


def pilot_subject(factory: str, worker_id: str) -> str:
    """``pilot:<factory>:<worker_id>``: tells every pilot of every factory apart."""
    return f"pilot:{factory}:{worker_id}"


def check_pilot_token_request(
    identity: Identity, req: factory_pb2.IssuePilotTokensRequest, *, known_queues: Collection[str]
) -> PilotTokenGrant:
    """May ``identity`` have pilot tokens for ``req.queue``, and is the request sane?

    Only a token-authenticated ``factory`` principal whose ``ailuro.queues`` names the queue:
    users, pilots, production and admins are refused (an admin mints with ``IssueToken``), and so
    is a caller whose identity came from trusted metadata (no principal: nothing binds it to queues).
    """
    principal = identity.principal
    if principal is None or FACTORY_ROLE not in identity.roles:
        raise PermissionDenied(
            f"IssuePilotTokens needs a factory token; {identity.name!r} has roles {list(identity.roles) or 'none'}"
        )
    if req.queue not in known_queues:
        raise InvalidArgument(f"{req.queue[:80]!r} is not a configured queue", field="queue")
    if req.queue not in principal.queues:
        raise PermissionDenied(
            f"factory {identity.name!r} serves {list(principal.queues) or 'no queues'}, not {req.queue[:80]!r}",
            field="queue",
        )
    if not 1 <= len(req.worker_ids) <= MAX_PILOT_TOKENS:
        raise InvalidArgument(
            f"must name 1 to {MAX_PILOT_TOKENS} workers, got {len(req.worker_ids)}", field="worker_ids"
        )
    for i, worker in enumerate(req.worker_ids):
        if not _WORKER_ID.match(worker):
            raise InvalidArgument(
                "must be 1-200 characters: letters, digits, '.', '_', ':', '@', '-'", field=f"worker_ids[{i}]"
            )
    if len(set(req.worker_ids)) != len(req.worker_ids):
        raise InvalidArgument("names a worker twice", field="worker_ids")
    lifetime = req.lifetime_s or DEFAULT_LIFETIME_S
    if not MIN_LIFETIME_S <= lifetime <= MAX_LIFETIME_S:
        raise InvalidArgument(f"must be {MIN_LIFETIME_S} to {MAX_LIFETIME_S} seconds (4 days)", field="lifetime_s")
    return PilotTokenGrant(
        factory=identity.name, queue=req.queue, worker_ids=tuple(req.worker_ids), lifetime_s=int(lifetime)
    )


def pilot_vo(queue: QueueConfig | None) -> str:
    """The queue's VO when it serves exactly one, else :data:`PILOT_VO` (as the offline minter)."""
    return queue.vos[0] if queue is not None and len(queue.vos) == 1 else PILOT_VO


class PilotTokenService:
    """Signs and audits pilot tokens for factories (``FactoryService.IssuePilotTokens``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def issue(
        self, req: factory_pb2.IssuePilotTokensRequest, identity: Identity
    ) -> factory_pb2.IssuePilotTokensResponse:
        """Check, sign one token per worker, record one audit row; all in one call."""
        grant = check_pilot_token_request(identity, req, known_queues=self.rt.queue_names)
        auth = self.rt.config.auth
        if auth.state_dir is None:
            raise FailedPrecondition("this dispatcher has no embedded issuer (no auth state directory)")
        state_dir = auth.state_dir
        queue = next((q for q in self.rt.config.queues if q.name == grant.queue), None)

        def run() -> list[factory_pb2.PilotToken]:
            try:
                key = embedded.load_key(embedded.IssuerFiles(state_dir=state_dir))
            except embedded.IssuerError as exc:
                raise FailedPrecondition(f"the embedded issuer's key is unusable: {exc}") from None
            out = []
            for worker in grant.worker_ids:
                token = embedded.issue(  # wall-clock time: the validators' clock
                    key,
                    issuer=auth.embedded_issuer,
                    audience=auth.audience,
                    user=pilot_subject(grant.factory, worker),
                    vo=pilot_vo(queue),
                    roles=("pilot",),
                    queues=(grant.queue,),
                    lifetime_s=float(grant.lifetime_s),
                )
                claims = jwt.decode(token, options={"verify_signature": False})  # ours, just signed
                item = factory_pb2.PilotToken(worker_id=worker, token=token, token_id=str(claims["jti"]))
                item.expires.FromSeconds(int(claims["exp"]))
                out.append(item)
            with self.rt.db.write() as conn:
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.TOKEN_PILOT,
                    target=f"queue {grant.queue}",
                    detail={
                        "tokens": len(out),
                        "lifetime_s": grant.lifetime_s,
                        "workers": list(grant.worker_ids[:5]),
                    },
                    now=self.rt.now(),
                )
            return out

        tokens = await self.rt.db_call(run)
        log.info("factory %s got %d pilot token(s) for %s", grant.factory, len(tokens), grant.queue)
        return factory_pb2.IssuePilotTokensResponse(tokens=tokens)
