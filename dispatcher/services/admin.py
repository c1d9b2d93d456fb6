"""The admin service: the audit log and token issuance, for callers with the ``admin`` role only.

The admin check is here, in plain sight, as well as in the policy table (issue #14): an RPC that
reads who did what, or mints credentials, must never open up by a policy row going missing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import jwt
from google.protobuf.timestamp_pb2 import Timestamp

from ailuro.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from ailuro.v1 import admin_pb2
from dispatcher.auth import issuer as embedded
from dispatcher.auth.principal import MAX_QUEUES, ROLES
from dispatcher.identity import Identity
from dispatcher.services.runtime import Runtime
from dispatcher.store import audit

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"
DEFAULT_LIFETIME_S = 12 * 3600
MAX_ISSUE_LIFETIME_S = 30 * 86400
"""Tokens issued over the API live at most 30 days (the first admin token's lifetime)."""
MAX_FILTER_CHARS = 255
_VO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PAGE_PREFIX = "audit:"


def require_admin(identity: Identity, what: str) -> None:
    """PERMISSION_DENIED unless the caller is an admin of every VO (the admin VO's admin role).

    An admin of one VO (``/compass/admin``) may not read other VOs' audit rows nor mint tokens,
    which could name any VO (see :mod:`dispatcher.auth.policy`).
    """
    if ADMIN_ROLE not in identity.roles:
        raise PermissionDenied(f"{what} needs the admin role; {identity.name!r} has {list(identity.roles) or 'none'}")
    if not identity.all_vos:
        raise PermissionDenied(
            f"{what} needs an admin of the admin VO; {identity.name!r} is an admin of {identity.vo!r}"
        )


def _text(value: str, field: str, *, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidArgument("must not be empty", field=field)
    if len(value) > MAX_FILTER_CHARS:
        raise InvalidArgument(f"is longer than {MAX_FILTER_CHARS} characters", field=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidArgument("must not contain control characters", field=field)
    return value.strip()


def _page(token: str) -> int | None:
    if not token:
        return None
    if len(token) > 40 or not token.startswith(_PAGE_PREFIX) or not token[len(_PAGE_PREFIX) :].isdigit():
        raise InvalidArgument("is not a next_page_token of ListAudit", field="page_token")
    value = int(token[len(_PAGE_PREFIX) :])
    if not 0 < value < 1 << 63:
        raise InvalidArgument("is not a next_page_token of ListAudit", field="page_token")
    return value


def _seconds(ts: Timestamp, field: str) -> float:
    if not 0 <= ts.seconds <= 253402300799:  # up to year 9999
        raise InvalidArgument("is out of range", field=field)
    return ts.seconds + ts.nanos / 1e9


def _entry(row: audit.AuditRow) -> admin_pb2.AuditEntry:
    entry = admin_pb2.AuditEntry(
        id=row.id, actor=row.actor, vo=row.vo, action=row.action, target=row.target, detail=row.detail
    )
    entry.time.FromNanoseconds(int(row.time * 1e9))
    return entry


def validate_issue(req: admin_pb2.IssueTokenRequest, *, known_queues: Sequence[str]) -> int:
    """An IssueToken request; returns the lifetime in seconds."""
    _text(req.user, "user", required=True)
    if not _VO.match(req.vo):
        raise InvalidArgument("must be a VO name (letters, digits, '.', '_', '-'; at most 64)", field="vo")
    if len(req.roles) > len(ROLES):
        raise InvalidArgument(f"has more than {len(ROLES)} entries", field="roles")
    for i, role in enumerate(req.roles):
        if role not in ROLES:
            raise InvalidArgument(f"{role[:40]!r} is not one of {', '.join(ROLES)}", field=f"roles[{i}]")
    if len(req.queues) > MAX_QUEUES:
        raise InvalidArgument(f"has more than {MAX_QUEUES} entries", field="queues")
    for i, queue in enumerate(req.queues):
        if queue not in known_queues:
            raise InvalidArgument(f"{queue[:80]!r} is not a configured queue", field=f"queues[{i}]")
    lifetime = req.lifetime_s or DEFAULT_LIFETIME_S
    if not 0 < lifetime <= MAX_ISSUE_LIFETIME_S:
        raise InvalidArgument(f"must be 1 to {MAX_ISSUE_LIFETIME_S} seconds (30 days)", field="lifetime_s")
    return lifetime


class AdminService:
    """ListAudit and IssueToken; what ``AdminService`` (gRPC) calls, identity as an argument."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def list_audit(self, req: admin_pb2.ListAuditRequest, identity: Identity) -> admin_pb2.ListAuditResponse:
        """One page of audit entries, newest first (admin only)."""
        require_admin(identity, "ListAudit")
        if not 0 <= req.limit <= audit.MAX_LIST:
            raise InvalidArgument(f"must be 0 to {audit.MAX_LIST}, got {req.limit}", field="limit")
        limit = req.limit or 100
        actor, action, vo = _text(req.actor, "actor"), _text(req.action, "action"), _text(req.vo, "vo")
        if action and action not in audit.ACTIONS:
            raise InvalidArgument(f"{action!r} is not one of {', '.join(audit.ACTIONS)}", field="action")
        since = _seconds(req.since, "since") if req.HasField("since") else None
        until = _seconds(req.until, "until") if req.HasField("until") else None
        before = _page(req.page_token)

        def run() -> list[audit.AuditRow]:
            with self.rt.db.read() as conn:
                return audit.list_audit(
                    conn, actor=actor, action=action, vo=vo, since=since, until=until, before_id=before, limit=limit
                )

        rows = await self.rt.db_call(run)
        resp = admin_pb2.ListAuditResponse(entries=[_entry(r) for r in rows])
        if len(rows) == limit:
            resp.next_page_token = f"{_PAGE_PREFIX}{rows[-1].id}"
        return resp

    async def issue_token(self, req: admin_pb2.IssueTokenRequest, identity: Identity) -> admin_pb2.IssueTokenResponse:
        """Sign a token with the embedded issuer and record the issuance (admin only)."""
        require_admin(identity, "IssueToken")
        lifetime = validate_issue(req, known_queues=self.rt.queue_names)
        auth = self.rt.config.auth
        if auth.state_dir is None:
            raise FailedPrecondition("this dispatcher has no embedded issuer (no auth state directory)")

        def run() -> tuple[str, dict[str, object]]:
            try:
                key = embedded.load_key(embedded.IssuerFiles(state_dir=auth.state_dir))  # type: ignore[arg-type]
            except embedded.IssuerError as exc:
                raise FailedPrecondition(f"the embedded issuer's key is unusable: {exc}") from None
            now = self.rt.now()
            token = embedded.issue(  # signed at wall-clock time: the validators' clock
                key,
                issuer=auth.embedded_issuer,
                audience=auth.audience,
                user=req.user.strip(),
                vo=req.vo,
                roles=list(req.roles),
                queues=list(req.queues),
                lifetime_s=float(lifetime),
            )
            claims = jwt.decode(token, options={"verify_signature": False})  # ours, just signed
            with self.rt.db.write() as conn:
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.TOKEN_ISSUE,
                    target=f"user {req.user.strip()} vo {req.vo}",
                    detail={
                        "roles": sorted(set(req.roles)),
                        "queues": sorted(set(req.queues))[:20],
                        "lifetime_s": lifetime,
                        "jti": claims["jti"],
                    },
                    now=now,
                )
            return token, claims

        token, claims = await self.rt.db_call(run)
        log.info("%s issued a token for %s (vo %s, roles %s)", identity.name, req.user, req.vo, list(req.roles))
        expires = Timestamp(seconds=int(claims["exp"]))  # type: ignore[call-overload]
        return admin_pb2.IssueTokenResponse(token=token, expires=expires, token_id=str(claims["jti"]))
