"""One set of dispatcher options for ``python -m dispatcher`` and ``ailuro server``; one variable per setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ailuro.errors import InvalidArgument
from ailuro.vocabulary import DEFAULT_STORAGE_ROOT
from dispatcher.options import build_parser, config_from_args, db_url_from_env


def test_ailuro_db_wins_and_the_old_name_still_works_with_a_notice() -> None:
    assert db_url_from_env({}) == (None, None)
    assert db_url_from_env({"AILURO_DB": "sqlite:///a.db", "AILURO_DB_URL": "sqlite:///b.db"}) == (
        "sqlite:///a.db",
        None,
    )
    url, notice = db_url_from_env({"AILURO_DB_URL": "sqlite:///b.db"})
    assert url == "sqlite:///b.db" and notice and "AILURO_DB_URL is deprecated" in notice and "AILURO_DB" in notice


def test_environment_and_flags_build_the_config(tmp_path: Path) -> None:
    queues = tmp_path / "q.toml"
    queues.write_text('[[queue]]\nname = "CERN"\n')
    env = {"AILURO_DB_URL": "sqlite:///old.db", "AILURO_QUEUES": str(queues), "AILURO_STORAGE_ROOT": str(tmp_path)}
    config = config_from_args(build_parser("p", env).parse_args(["--port", "0", "--lease", "7", "--ddm-workers", "0"]))
    assert (config.db_url, config.port, config.lease_s, config.ddm_workers) == ("sqlite:///old.db", 0, 7.0, 0)
    assert [q.name for q in config.queues] == ["CERN"] and config.storage_root == tmp_path
    default = config_from_args(build_parser("p", {}).parse_args(["--lease-s", "9"]))
    assert default.storage_root == DEFAULT_STORAGE_ROOT.expanduser().absolute() and default.lease_s == 9.0
    assert default.loop_lag is None  # the loop lag monitor is opt-in
    lag = config_from_args(build_parser("p", {}).parse_args(["--loop-lag-dir", str(tmp_path)])).loop_lag
    assert lag is not None and lag.report_dir == tmp_path and lag.stall_ms == 5.0
    gil = config_from_args(build_parser("p", {}).parse_args(["--gil-switch-interval-ms", "1.5"]))
    assert gil.gil_switch_interval_ms == 1.5
    assert default.claim_pool_s == 0.5  # one-statement claims by default (PostgreSQL)
    locked = config_from_args(build_parser("p", {}).parse_args(["--claim-pool-s", "0"]))
    assert locked.claim_pool_s == 0.0


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--db", "not a url"], "--db"),
        (["--queues", "/nonexistent/queues.toml"], "--queues"),
        (["--lease-s", "0"], "--lease-s"),
        (["--ddm-workers", "-1"], "--ddm-workers"),
        (["--loop-stall-ms", "0"], "--loop-stall-ms"),
        (["--loop-lag-dir", "/nonexistent/lag"], "--loop-lag-dir"),
        (["--claim-batches-in-flight", "0"], "--claim-batches-in-flight"),
        (["--urgent-db-threads", "65"], "--urgent-db-threads"),
        (["--claim-pool-s", "-1"], "--claim-pool-s"),
        (["--claim-pool-s", "nan"], "--claim-pool-s"),
        (["--claim-pool-s", "61"], "--claim-pool-s"),
        (["--gil-switch-interval-ms", "0"], "--gil-switch-interval-ms"),
        (["--gil-switch-interval-ms", "nan"], "--gil-switch-interval-ms"),
        (["--gil-switch-interval-ms", "101"], "--gil-switch-interval-ms"),
    ],
)
def test_bad_options_name_the_option(argv: list[str], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        config_from_args(build_parser("p", {}).parse_args(argv))
    assert err.value.field == field


def test_both_entry_points_offer_the_same_options() -> None:
    ailuro = Path(sys.executable).with_name("ailuro")
    a = subprocess.run([str(ailuro), "server", "--help"], capture_output=True, text=True, timeout=60, check=True)
    b = subprocess.run(
        [sys.executable, "-m", "dispatcher", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "--sent-timeout-s" in a.stdout and "--port-file" in a.stdout
    assert a.stdout.replace("ailuro server", "PROG").split() == b.stdout.replace("python -m dispatcher", "PROG").split()


def test_mtls_options_are_checked_before_start(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("pem")
    tls = ["--auth", "token", "--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")]
    (tmp_path / "gridmap").write_text('"/O=Site/CN=Jane Doe" jdoe compass user\n')
    ok = config_from_args(
        build_parser("p", {}).parse_args(
            [*tls, "--tls-client-ca", str(tmp_path / "ca.pem"), "--gridmap", str(tmp_path / "gridmap")]
        )
    )
    assert ok.auth.gridmap == tmp_path / "gridmap" and ok.auth.tls_client_ca == tmp_path / "ca.pem"
    (tmp_path / "bad").write_text('"/O=Site/CN=Jane Doe" jdoe compass superuser\n')
    cases = [
        (["--tls-client-ca", str(tmp_path / "ca.pem")], "--tls-client-ca", "needs --tls-cert"),
        ([*tls, "--gridmap", str(tmp_path / "gridmap")], "--gridmap", "needs --tls-client-ca"),
        ([*tls, "--tls-client-ca", str(tmp_path / "ca.pem"), "--gridmap", str(tmp_path / "bad")], "--gridmap", ":1:"),
    ]
    for argv, field, message in cases:
        with pytest.raises(InvalidArgument) as err:
            config_from_args(build_parser("p", {}).parse_args(argv))
        assert err.value.field == field and message in err.value.message, err.value
