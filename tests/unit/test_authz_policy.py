"""The authorization policy as pure functions: method rules, ``may`` and the secret-name rule."""

from __future__ import annotations

import pytest

from dispatcher.auth.interceptor import believed_identity, identity_of_principal
from dispatcher.auth.policy import (
    POLICY,
    Action,
    Resource,
    is_secret_name,
    may,
    may_scope,
    may_steer_task,
    method_denial,
)
from dispatcher.auth.principal import Principal
from dispatcher.identity import Identity


def token(user: str = "alice", vo: str = "compass", *roles: str, scopes: tuple[str, ...] = (), queues=()) -> Identity:
    principal = Principal(user=user, vo=vo, roles=tuple(roles), scopes=scopes, queues=tuple(queues), issuer="t")
    return identity_of_principal(principal, admin_vo="admin")


ALICE_JOB = Resource(vo="compass", owner="alice", label="user")
MANAGED = Resource(vo="compass", owner="prod1", label="managed")
OTHER_VO_JOB = Resource(vo="atlas", owner="bob", label="user")


def test_a_token_without_roles_is_a_user() -> None:
    assert token().roles == ("user",)


@pytest.mark.parametrize("action", [Action.READ, Action.KILL, Action.RETRY, Action.SECRETS])
def test_the_owner_acts_on_their_job(action: Action) -> None:
    assert may(token("alice"), action, ALICE_JOB)


def test_a_vo_member_reads_but_does_not_act() -> None:
    carol = token("carol")
    assert may(carol, Action.READ, ALICE_JOB)
    for action in (Action.KILL, Action.RETRY, Action.PRIORITY, Action.SECRETS):
        assert not may(carol, action, ALICE_JOB), action


@pytest.mark.parametrize("action", list(Action))
def test_nothing_crosses_vos(action: Action) -> None:
    if action in (Action.SERVE, Action.WORKERS, Action.QUEUE_STATS):
        return  # queue and factory decisions have no VO
    for identity in (token("alice"), token("prod1", "compass", "production"), token("a", "compass", "admin")):
        assert not may(identity, action, OTHER_VO_JOB), (identity.roles, action)


def test_managed_jobs_are_productions() -> None:
    prod, alice = token("prod1", "compass", "production"), token("alice")
    for action in (Action.SUBMIT, Action.KILL, Action.RETRY, Action.PRIORITY):
        assert may(prod, action, MANAGED), action
        assert not may(alice, action, MANAGED), action
    # production does not act on another user's plain job, nor see the owner's secrets
    assert not may(prod, Action.KILL, ALICE_JOB)
    assert not may(prod, Action.SECRETS, Resource(vo="compass", owner="x", label="managed"))


def test_admins_of_the_admin_vo_act_on_every_vo_others_on_theirs() -> None:
    root = token("admin", "admin", "admin")
    assert root.all_vos
    for action in (Action.READ, Action.KILL, Action.RETRY, Action.PRIORITY):
        assert may(root, action, OTHER_VO_JOB) and may(root, action, MANAGED)
    assert not may(root, Action.SECRETS, ALICE_JOB)  # secrets are the owner's alone
    vo_admin = token("boss", "compass", "admin")
    assert not vo_admin.all_vos
    assert may(vo_admin, Action.KILL, ALICE_JOB) and not may(vo_admin, Action.KILL, OTHER_VO_JOB)


def test_pilots_serve_only_their_tokens_queues() -> None:
    pilot = token("p1", "compass", "pilot", queues=("Q",))
    assert may(pilot, Action.SERVE, Resource(queue="Q"))
    assert not may(pilot, Action.SERVE, Resource(queue="R"))
    assert not may(token("p2", "compass", "pilot"), Action.SERVE, Resource(queue="Q"))  # no queues: none
    assert not may(token("alice"), Action.SERVE, Resource(queue="Q"))
    for action in (Action.READ, Action.SUBMIT, Action.KILL):
        assert not may(pilot, action, ALICE_JOB), action


def test_factories_own_their_workers() -> None:
    fac = token("fac1", "compass", "factory", queues=("Q",))
    assert may(fac, Action.WORKERS, Resource(factory="fac1"))
    assert not may(fac, Action.WORKERS, Resource(factory="fac2"))
    assert may(fac, Action.QUEUE_STATS, Resource(queue="Q")) and not may(fac, Action.QUEUE_STATS, Resource(queue="R"))
    assert not may(fac, Action.READ, ALICE_JOB)


def test_method_rules_check_role_then_scope() -> None:
    kill = "/ailuro.v1.SubmissionService/KillJobs"
    assert method_denial(kill, token()) is None
    assert method_denial(kill, token("p", "compass", "pilot")) == (
        "needs the admin or production or user role (caller has pilot)"
    )
    assert "compute.cancel" in (method_denial(kill, token(scopes=("compute.read",))) or "")
    assert method_denial(kill, token(scopes=("compute.cancel",))) is None
    assert "no authorization rule" in (method_denial("/ailuro.v1.New/Thing", token()) or "")
    assert all(rule.roles for rule in POLICY.values())


def test_a_vo_owns_the_catalog_scope_named_after_it() -> None:
    alice, bob = token("alice", "compass"), token("bob", "atlas", "production")
    assert may_scope(alice, "compass") and not may_scope(alice, "atlas") and not may_scope(alice, "user")
    assert may_scope(bob, "atlas") and not may_scope(bob, "compass")
    assert not may_scope(token("boss", "compass", "admin"), "atlas")  # a VO's admin: its scope only
    assert may_scope(token("admin", "admin", "admin"), "atlas") and may_scope(believed_identity([]), "any")


ALICE_TASK = Resource(vo="compass", owner="alice")


def test_who_may_steer_a_task() -> None:
    """The owner, an admin of the task's VO (or of every VO), production of the task's VO; nobody else."""
    assert may_steer_task(token("alice"), ALICE_TASK)
    assert not may_steer_task(token("carol"), ALICE_TASK)  # a plain member of the VO
    assert may_steer_task(token("prod1", "compass", "production"), ALICE_TASK)  # any task of its VO
    assert not may_steer_task(token("prod1", "atlas", "production"), ALICE_TASK)
    assert may_steer_task(token("boss", "compass", "admin"), ALICE_TASK)
    assert not may_steer_task(token("boss", "atlas", "admin"), ALICE_TASK)  # a VO's admin: its VO only
    assert may_steer_task(token("admin", "admin", "admin"), ALICE_TASK)
    # the owner's name does not carry across VOs
    assert not may_steer_task(token("alice", "atlas"), ALICE_TASK)
    # the development default acts on every VO but is production of no VO in particular
    dev = believed_identity([])
    assert not may_steer_task(dev, ALICE_TASK)
    assert may_steer_task(dev, Resource(vo="compass", owner=dev.name))


def test_trusted_metadata_claims_are_believed_and_no_claim_is_the_dev_default() -> None:
    dev = believed_identity([])
    assert dev.all_vos and "admin" not in dev.roles
    assert may(dev, Action.KILL, OTHER_VO_JOB) and may(dev, Action.SUBMIT, MANAGED)
    assert not may(dev, Action.SECRETS, ALICE_JOB)
    assert method_denial("/ailuro.v1.AdminService/ListAudit", dev) is not None
    assert method_denial("/ailuro.v1.BrokerageService/SetQueueStatus", dev) is not None
    assert method_denial("/ailuro.v1.PilotService/Connect", dev) is None
    user = believed_identity([("ailuro-user", "bob"), ("ailuro-vo", "atlas"), ("ailuro-roles", "user")])
    assert (user.roles, user.all_vos) == (("user",), False)
    assert not may(user, Action.READ, ALICE_JOB)
    pilot = believed_identity([("ailuro-roles", "pilot")])
    assert may(pilot, Action.SERVE, Resource(queue="ANY"))  # no token, no queue binding
    assert method_denial("/ailuro.v1.SubmissionService/ListJobs", pilot) is not None


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("API_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("db_password", True),
        ("X509_PRIVATE_KEY", True),
        ("MY-CREDENTIALS", True),
        ("PATH", False),
        ("TOKENIZER_MODE", False),
        ("MONKEY", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret
