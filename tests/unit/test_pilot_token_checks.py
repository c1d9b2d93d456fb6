"""Who may have pilot tokens from ``IssuePilotTokens``: the pure check, role by role and bound by bound."""

from __future__ import annotations

import pytest

from ailuro.errors import InvalidArgument, PermissionDenied
from ailuro.v1 import factory_pb2
from dispatcher.auth.principal import Principal
from dispatcher.identity import Identity
from dispatcher.services.pilot_tokens import (
    DEFAULT_LIFETIME_S,
    MAX_LIFETIME_S,
    MAX_PILOT_TOKENS,
    check_pilot_token_request,
    pilot_subject,
)

QUEUES = ("QA", "QB")


def caller(*roles: str, queues: tuple[str, ...] = ("QA",), name: str = "fac-1") -> Identity:
    principal = Principal(user=name, vo="compass", roles=tuple(sorted(roles)), queues=queues, issuer="iss")
    return Identity(name=name, vo="compass", roles=principal.roles, principal=principal)


def request(queue: str = "QA", n: int = 2, lifetime_s: int = 0) -> factory_pb2.IssuePilotTokensRequest:
    return factory_pb2.IssuePilotTokensRequest(
        queue=queue, worker_ids=[f"{queue}.abc-{i}" for i in range(n)], lifetime_s=lifetime_s
    )


def test_a_factory_gets_tokens_for_its_queue_one_per_worker() -> None:
    grant = check_pilot_token_request(caller("factory"), request(n=3), known_queues=QUEUES)
    assert grant.queue == "QA" and grant.factory == "fac-1"
    assert grant.worker_ids == ("QA.abc-0", "QA.abc-1", "QA.abc-2")
    assert grant.lifetime_s == DEFAULT_LIFETIME_S
    assert pilot_subject(grant.factory, grant.worker_ids[0]) == "pilot:fac-1:QA.abc-0"


def test_a_factory_of_queue_a_gets_none_for_queue_b() -> None:
    with pytest.raises(PermissionDenied, match="serves \\['QA'\\], not 'QB'"):
        check_pilot_token_request(caller("factory"), request("QB"), known_queues=QUEUES)


@pytest.mark.parametrize("roles", [(), ("user",), ("pilot",), ("production",), ("admin",), ("user", "pilot")])
def test_other_roles_are_refused(roles: tuple[str, ...]) -> None:
    with pytest.raises(PermissionDenied, match="needs a factory token"):
        check_pilot_token_request(caller(*roles), request(), known_queues=QUEUES)


def test_trusted_metadata_claiming_the_factory_role_is_refused() -> None:
    """Development mode has no principal: nothing binds the caller to queues."""
    with pytest.raises(PermissionDenied, match="needs a factory token"):
        check_pilot_token_request(Identity(name="fac", roles=("factory",)), request(), known_queues=QUEUES)


def test_an_unknown_queue_is_named() -> None:
    with pytest.raises(InvalidArgument, match="queue"):
        check_pilot_token_request(caller("factory", queues=("QZ",)), request("QZ"), known_queues=QUEUES)


@pytest.mark.parametrize("n", [0, MAX_PILOT_TOKENS + 1])
def test_the_number_of_tokens_is_bounded(n: int) -> None:
    with pytest.raises(InvalidArgument, match="worker_ids"):
        check_pilot_token_request(caller("factory"), request(n=n), known_queues=QUEUES)


def test_the_largest_batch_is_accepted() -> None:
    grant = check_pilot_token_request(caller("factory"), request(n=MAX_PILOT_TOKENS), known_queues=QUEUES)
    assert len(grant.worker_ids) == MAX_PILOT_TOKENS


@pytest.mark.parametrize("lifetime", [1, 59, MAX_LIFETIME_S + 1, -5])
def test_the_lifetime_is_bounded(lifetime: int) -> None:
    with pytest.raises(InvalidArgument, match="lifetime_s"):
        check_pilot_token_request(caller("factory"), request(lifetime_s=lifetime), known_queues=QUEUES)


def test_a_lifetime_within_bounds_is_kept() -> None:
    grant = check_pilot_token_request(caller("factory"), request(lifetime_s=3600), known_queues=QUEUES)
    assert grant.lifetime_s == 3600


@pytest.mark.parametrize("worker", ["", "../x", "a b", "x" * 201, "a/b", "-lead", "a\nb"])
def test_hostile_worker_ids_are_refused_by_index(worker: str) -> None:
    req = factory_pb2.IssuePilotTokensRequest(queue="QA", worker_ids=["ok-0", worker])
    with pytest.raises(InvalidArgument, match="worker_ids\\[1\\]"):
        check_pilot_token_request(caller("factory"), req, known_queues=QUEUES)


def test_a_worker_named_twice_is_refused() -> None:
    req = factory_pb2.IssuePilotTokensRequest(queue="QA", worker_ids=["w-0", "w-0"])
    with pytest.raises(InvalidArgument, match="twice"):
        check_pilot_token_request(caller("factory"), req, known_queues=QUEUES)
