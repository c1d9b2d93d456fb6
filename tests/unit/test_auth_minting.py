"""The tokens the system issues itself (demo, factory, pilots, load tests): each with only the role
it needs, valid for the dispatcher's embedded issuer, written to files only their owner can read;
and where the CLI finds its token (never the admin token by default)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ailuro.credentials import read_token_file, write_token_file
from ailuro.queues import QueueConfig
from ailuro_cli._common import Settings, default_token_file
from ailuro_cli.factory_auth import minted_source
from backends.pilot_tokens import directory_source, write_worker_tokens
from dispatcher.auth.config import AuthConfig, IssuerConfig
from dispatcher.auth.issuer import IssuerError, IssuerFiles
from dispatcher.auth.minting import PILOT_VO, Minter
from dispatcher.auth.tokens import TokenValidator


@pytest.fixture
def minter(tmp_path: Path) -> Minter:
    return Minter.from_state_dir(tmp_path / "auth", create=True)


def _principal(tmp_path: Path, token: str) -> object:
    issuer = IssuerConfig(issuer="ailuro-embedded", jwks=str(IssuerFiles(state_dir=tmp_path / "auth").jwks))
    return TokenValidator(AuthConfig(state_dir=None), (issuer,)).validate(token)


def test_each_component_gets_only_its_role(tmp_path: Path, minter: Minter) -> None:
    user = _principal(tmp_path, minter.user("alice", "compass"))
    assert (user.user, user.vo, user.roles, user.queues) == ("alice", "compass", ("user",), ())  # type: ignore[attr-defined]
    prod = _principal(tmp_path, minter.user("prodsys", "compass", production=True))
    assert prod.roles == ("production", "user")  # type: ignore[attr-defined]
    factory = _principal(tmp_path, minter.factory("f1", "compass", ["Q1", "Q2"]))
    assert (factory.roles, factory.queues) == (("factory",), ("Q1", "Q2"))  # type: ignore[attr-defined]
    assert "compute.create" not in factory.scopes  # type: ignore[attr-defined]
    pilot = _principal(tmp_path, minter.pilot("Q1", vos=("compass",)))
    assert (pilot.user, pilot.vo, pilot.roles, pilot.queues) == ("pilot@Q1", "compass", ("pilot",), ("Q1",))  # type: ignore[attr-defined]
    assert _principal(tmp_path, minter.pilot("Q2", vos=("a", "b"))).vo == PILOT_VO  # type: ignore[attr-defined]
    assert _principal(tmp_path, minter.pilot("Q3")).vo == PILOT_VO  # type: ignore[attr-defined]


def test_minting_needs_the_issuer_key(tmp_path: Path) -> None:
    with pytest.raises(IssuerError):
        Minter.from_state_dir(tmp_path / "nothing-here")


def test_token_files_are_private_and_whole(tmp_path: Path) -> None:
    path = write_token_file(tmp_path / "new" / "t.token", "abc.def.ghi\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_token_file(path) == "abc.def.ghi"
    path.chmod(0o644)  # a file left readable is made private again when rewritten
    write_token_file(path, "second")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and read_token_file(path) == "second"
    assert [p.name for p in path.parent.iterdir()] == ["t.token"]  # no temporary file left


def test_pilot_token_hand_off_names_a_file_never_the_token(tmp_path: Path, minter: Minter) -> None:
    queue = QueueConfig(name="CERN", vos=("compass",))
    workers = ["CERN.ab-0", "CERN.ab-1"]
    paths = write_worker_tokens(
        tmp_path / "fw" / "tokens" / "CERN", workers, minted_source(minter, "f1")(queue, workers)
    )
    assert paths == [tmp_path / "fw" / "tokens" / "CERN" / w / "ailuro-pilot.token" for w in workers]
    for worker, path in zip(workers, paths, strict=True):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        pilot = _principal(tmp_path, read_token_file(path))
        assert (pilot.user, pilot.queues, pilot.roles) == (f"pilot:f1:{worker}", ("CERN",), ("pilot",))  # type: ignore[attr-defined]
    issued = tmp_path / "issued"
    write_token_file(issued / "CERN.token", "from-an-admin")
    assert directory_source(issued)(queue, workers) == ["from-an-admin"] * 2
    with pytest.raises(FileNotFoundError):
        directory_source(issued)(QueueConfig(name="OTHER"), workers)


def test_the_cli_falls_back_to_the_users_token_file_never_the_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("AILURO_TOKEN", "AILURO_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    write_token_file(tmp_path / ".ailuro" / "auth" / "admin.token", "admin")
    assert default_token_file(Settings()) is None  # the admin token is never picked up by itself
    write_token_file(tmp_path / ".ailuro" / "token", "mine")
    assert default_token_file(Settings()) == str(tmp_path / ".ailuro" / "token")
    assert default_token_file(Settings(token_file="other")) == "other"
    assert default_token_file(Settings(token="given")) is None
    monkeypatch.setenv("AILURO_TOKEN_FILE", str(tmp_path / "x"))
    assert default_token_file(Settings()) is None  # the variable wins (the Client reads it)
