"""Monitor login helpers as pure functions: sessions, viewers from principals, redirects, PKCE."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ailuro.errors import PermissionDenied
from ailuro.queues import QueueConfig
from dispatcher.auth.principal import Principal
from monitor.auth import Sessions, bearer, viewer_of_principal, visible_queues
from monitor.filters import Viewer
from monitor.login import safe_next
from monitor.oidc import pkce_pair

QUEUES = (QueueConfig(name="A", vos=("alpha",)), QueueConfig(name="B", vos=("beta",)), QueueConfig(name="ANY"))


def test_sessions_expire_end_and_stay_bounded() -> None:
    now = [1000.0]
    sessions = Sessions(max_sessions=2, clock=lambda: now[0])
    first, s1 = sessions.create(Viewer(name="a"), expires=1100.0)
    assert sessions.get(first) == s1 and len(first) >= 43 and s1.csrf != first
    now[0] = 1100.0
    assert sessions.get(first) is None  # expired
    ids = [sessions.create(Viewer(name=str(i)), expires=2000.0)[0] for i in range(3)]
    assert sessions.get(ids[0]) is None and sessions.get(ids[2]) is not None  # the oldest forgotten
    sessions.end(ids[2])
    assert sessions.get(ids[2]) is None
    assert sessions.get("") is None and sessions.get("x" * 1000) is None


def test_viewers_from_principals() -> None:
    alice = viewer_of_principal(Principal(user="alice", vo="alpha"), QUEUES)
    assert alice.vos == {"alpha"} and alice.queues == {"A", "ANY"} and not alice.is_admin
    admin = viewer_of_principal(Principal(user="root", vo="admin", roles=("admin",)), QUEUES)
    assert admin.is_admin
    for machine in ("pilot", "factory"):
        with pytest.raises(PermissionDenied, match="cannot log in"):
            viewer_of_principal(Principal(user="p", vo="alpha", roles=(machine,)), QUEUES)
    assert visible_queues(("beta",), QUEUES) == {"B", "ANY"}


def test_bearer_header_and_next_urls() -> None:
    assert bearer("") is None and bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") == "" and bearer("Bearer") == ""
    assert safe_next("/jobs/?hours=3") == "/jobs/?hours=3"
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil", "/x\r\nSet-Cookie: a=b", "jobs"):
        assert safe_next(hostile) == "/jobs/"


def test_pkce_challenge_is_s256_of_the_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == digest and pkce_pair()[0] != verifier
