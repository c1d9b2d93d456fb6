"""Pure checks of the factory's hostile-input defences: batch id forms, the secret file, the
single backoff formula, and the error line of a pilot that died at start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ailuro.backoff import backoff_delay
from ailuro.errors import InvalidArgument
from backends.credentials import check_factory_id, load_or_create_secret
from backends.health import StartFailures, error_line
from backends.ids import split_batch_ids, valid_batch_id


@pytest.mark.parametrize(
    ("backend", "good", "bad"),
    [
        (
            "slurm",
            ["1", "4242", "4242_0", "4242_17"],
            ["0", "-1", "--user=panda", "4242_", "_1", "1_2_3", "01", "1[2]"],
        ),
        ("lsf", ["1", "4242", "4242[1]", "4242[30]"], ["0", "0[1]", "4242[0]", "-u", "all", "4242_1", "4242[1"]),
        ("htcondor", ["1.0", "4242.17"], ["0.0", "4242", "1.-1", "-all", "1.0 2.0", "1.0\n", "4242.x"]),
        ("local", ["local-0123456789ab"], ["local-", "123", "local-0123456789ab ", "../local-0123456789ab"]),
    ],
)
def test_batch_id_forms(backend: str, good: list[str], bad: list[str]) -> None:
    assert all(valid_batch_id(backend, b) for b in good), good
    assert not any(valid_batch_id(backend, b) for b in bad), [b for b in bad if valid_batch_id(backend, b)]
    assert not valid_batch_id(backend, "\uff11\uff12")  # Unicode digits are not job ids
    assert split_batch_ids(backend, [*good, *bad]) == (good, bad)


def test_unknown_backend_accepts_nothing() -> None:
    assert not valid_batch_id("pbs", "1")


def test_secret_is_created_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "f1.secret"
    first = load_or_create_secret(path)
    assert len(first) == 64 and os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == first
    path.chmod(0o644)
    with pytest.raises(InvalidArgument, match="readable by others"):
        load_or_create_secret(path)


@pytest.mark.parametrize("bad", ["", "../x", ".hidden", "a/b", "a b", "x" * 129])
def test_factory_id_is_a_safe_name(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        check_factory_id(bad)
    assert check_factory_id("factory-1a2b.site_A") == "factory-1a2b.site_A"


def test_backoff_formula() -> None:
    assert [backoff_delay(n, base_s=10, max_s=600) for n in range(0, 9)] == [0, 10, 20, 40, 80, 160, 320, 600, 600]
    assert backoff_delay(10**9, base_s=1, max_s=5) == 5  # no overflow on a long streak


def test_start_failure_streak_and_flag() -> None:
    streak = StartFailures()
    for i in range(1, 4):
        assert streak.failed("boom", now=float(i)) == i
    assert streak.flagged(3) and not streak.flagged(4) and not streak.flagged(0)
    streak.connected()
    assert streak.count == 0 and not streak.flagged(1)


def test_error_line_skips_the_wrappers_own_lines(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text(
        "ailuro-wrapper: pilot q-1 batch 'x' queue Q on node as me at now\n"
        'Traceback (most recent call last):\n  File "x", line 1\n'
        "ModuleNotFoundError: No module named 'grpc'\n\n"
        "ailuro-wrapper: pilot q-1 exited with 1 at now\n"
    )
    assert error_line(str(log), "fallback") == "ModuleNotFoundError: No module named 'grpc'"
    assert error_line(str(tmp_path / "absent.log"), "exit code 1") == "exit code 1"
