"""Unit tests of the monitor's pieces that need no database: URL parsing, SVG, log checks, CLI."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ailuro.errors import InvalidArgument
from ailuro.queues import StorageElementConfig
from ddm.locations import StorageLocations
from monitor import svg
from monitor.filters import DEFAULT_HOURS, MAX_HOURS, Viewer, job_conditions, parse_filter, parse_page
from monitor.logs import _check, read_member
from monitor.queries.errors import CODE_NAMES, component_name
from monitor.sampledata import SampleSpec, generate
from pilot.logtar import make_log_tarball


def test_parse_filter_reads_facets_window_and_alternatives() -> None:
    flt = parse_filter(
        {"computingsite": "BNL", "jobstatus": "failed|cancelled", "hours": "6", "taskid": "42"}, now=10_000.0
    )
    assert flt.values == {"computingsite": ("BNL",), "jobstatus": ("failed", "cancelled")}
    assert flt.hours == 6.0 and flt.since == 10_000.0 - 6 * 3600 and flt.taskid == 42
    assert flt.query_params() == {"computingsite": "BNL", "jobstatus": "failed|cancelled", "taskid": "42", "hours": "6"}
    assert flt.with_value("produsername", "alice").values["produsername"] == ("alice",)
    assert "computingsite" not in flt.without("computingsite").values
    assert parse_filter({"days": "2"}).hours == 48.0
    assert parse_filter({}).hours == DEFAULT_HOURS


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"hours": "x"}, "hours"),
        ({"hours": "-1"}, "hours"),
        ({"hours": str(MAX_HOURS + 1)}, "hours"),
        ({"taskid": "abc"}, "taskid"),
    ],
)
def test_parse_filter_rejects_bad_values(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(params)
    assert info.value.field == field


def test_parse_page() -> None:
    page = parse_page({"sort": "created", "order": "asc", "page": "3", "limit": "20"})
    assert (page.sort, page.descending, page.offset, page.limit) == ("created", False, 40, 20)
    for bad, field in (
        ({"sort": "x"}, "sort"),
        ({"order": "up"}, "order"),
        ({"limit": "0"}, "limit"),
        ({"page": "p"}, "page"),
    ):
        with pytest.raises(InvalidArgument) as info:
            parse_page(bad)
        assert info.value.field == field


def test_visibility_is_the_first_condition_of_every_jobs_query() -> None:
    flt = parse_filter({"computingsite": "BNL"}, now=1e9)
    admin = job_conditions(flt, Viewer(name="root", roles=frozenset({"admin"})))
    user = job_conditions(flt, Viewer(name="alice", vos=frozenset({"compass"}), roles=frozenset({"user"})))
    two = job_conditions(flt, Viewer(name="bob", vos=frozenset({"a", "b"}), roles=frozenset({"user"})))
    nobody = job_conditions(flt, Viewer())
    assert str(admin[0]) == "true"
    assert str(user[0]) == "jobs.vo = :vo_1" and user[0].compile().params == {"vo_1": "compass"}
    assert "jobs.vo IN" in str(two[0])
    assert str(nobody[0]) == "false"  # no VO, no roles: sees nothing (never everything)
    assert len(admin) == len(user) == len(two) == len(nobody) == 3


def test_error_names() -> None:
    assert CODE_NAMES[1099] == "stagein_failed" and CODE_NAMES[100] == "lost_heartbeat"
    assert component_name(3) == "ddm" and component_name(77) == "77"


def test_svg_charts_are_well_formed_and_escaped() -> None:
    hours = [100, 101, 102]
    bars = svg.stacked_bars("t<1>", hours, {"finished": [1, 2, 0], "<b>": [0, 1, 3]}, {"finished": "#38a169"})
    assert bars.startswith("<svg") and bars.endswith("</svg>")
    assert "<b>" not in bars and "&lt;b&gt;" in bars and "t&lt;1&gt;" in bars
    assert len(re.findall(r"<rect [^>]*><title>", bars)) == 4  # one per non-zero value
    line = svg.lines("rate", hours, {"x": [0.5, None, 1.0]}, percent=True)
    assert line.count("<polyline") == 2  # the None breaks the line
    assert "100%" in line
    empty = svg.stacked_bars("e", hours, {})
    assert "no data in this window" in empty


def test_log_checks(tmp_path: Path) -> None:
    (tmp_path / "o").write_text("out\n")
    tgz = make_log_tarball(tmp_path / "j.job.log.tgz", [(tmp_path / "o", "payload.stdout")])
    here = StorageLocations.from_config(roots=(tmp_path,))
    location, reason = _check("j.job.log.tgz", tgz.as_uri(), here)
    assert location is not None and Path(location.path) == tgz.resolve() and reason == ""
    assert read_member(location, "stdout") == ("out\n", False)
    assert read_member(location, "stderr") is None
    big = tmp_path / "big"
    big.write_text("x" * 5000 + "END")
    tgz2 = make_log_tarball(tmp_path / "k.job.log.tgz", [(big, "payload.stdout")])
    big_location = here.resolve(str(tgz2))
    text, cut = read_member(big_location, "stdout", limit=100) or ("", False)
    assert cut and text.endswith("END") and len(text) == 100
    # a pfn that names another file, a remote URL, a missing file, or a path outside storage is refused
    assert _check("j.job.log.tgz", "file:///etc/passwd", here)[0] is None
    eos = StorageLocations.from_config((StorageElementConfig(name="EOS", endpoints=("root://eos//",)),))
    assert "remote" in _check("j.job.log.tgz", "root://eos//j.job.log.tgz", eos)[1]
    assert "not found" in _check("x.job.log.tgz", (tmp_path / "x.job.log.tgz").as_uri(), here)[1]
    elsewhere = StorageLocations.from_config(roots=(tmp_path / "elsewhere",))
    assert "outside" in _check("j.job.log.tgz", tgz.as_uri(), elsewhere)[1]
    # with no storage configured (no --log-root, no [[storage]]) nothing is served
    assert "no storage is configured" in _check("j.job.log.tgz", tgz.as_uri(), StorageLocations.from_config())[1]
    fake = tmp_path / "f.job.log.tgz"
    fake.write_text("not a tarball")
    assert "tarball" in _check("f.job.log.tgz", str(fake), here)[1]
    assert tarfile.is_tarfile(tgz)


def test_log_outside_storage_is_refused_whatever_the_root(tmp_path: Path) -> None:
    """Issue 12 finding 1, monitor side: a pfn escaping storage by symlink or ``..`` is never served."""
    storage, outside = tmp_path / "storage", tmp_path / "outside"
    storage.mkdir()
    outside.mkdir()
    (outside / "o").write_text("secret\n")
    secret = make_log_tarball(outside / "s.job.log.tgz", [(outside / "o", "payload.stdout")])
    (storage / "s.job.log.tgz").symlink_to(secret)
    here = StorageLocations.from_config(roots=(storage,))
    for pfn in ((storage / "s.job.log.tgz").as_uri(), f"{storage}/../outside/s.job.log.tgz", secret.as_uri()):
        location, reason = _check("s.job.log.tgz", pfn, here)
        assert location is None and "outside" in reason, pfn


def test_sample_data_is_deterministic_and_consistent() -> None:
    spec = SampleSpec(n_jobs=200, now=1_800_000_000.0)
    a, b = list(generate(spec)), list(generate(spec))
    assert [r.job for r in a] == [r.job for r in b]
    for r in a:
        assert r.events[0]["to_status"] == "defined"
        assert r.job["creation_time"] <= r.job["modification_time"] <= spec.now
        assert bool(r.errors) == (r.job["status"] in ("failed", "cancelled"))
    assert {r.job["status"] for r in a} >= {"finished", "failed", "activated", "running"}


def test_cli_registers_monitor_command() -> None:
    from ailuro_cli.monitor import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app into one command
        pass

    result = CliRunner().invoke(app, ["monitor", "--help"])
    assert result.exit_code == 0
    for option in ("--db", "--host", "--port", "--refresh-s", "--log-root"):
        assert option in result.output


def test_cli_refuses_a_database_without_schema(tmp_path: Path) -> None:
    from ailuro_cli.monitor import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:
        pass

    db = f"sqlite:///{tmp_path / 'empty.db'}"
    result = CliRunner().invoke(app, ["monitor", "--db", db, "--port", "0", "--public", "compass"])
    assert result.exit_code == 2
    assert "ailuro server" in result.output
    # no issuer JWKS in --auth-dir, no --oidc, no --public: nobody could ever log in, so it refuses to start
    result = CliRunner().invoke(app, ["monitor", "--db", db, "--port", "0", "--auth-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no way to log in" in result.output and "--auth-dir" in result.output


def test_log_view_stops_at_the_unpacked_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gzip bomb as payload.stdout: the monitor stops unpacking at its limit (not the whole member)."""
    import monitor.logs as monitor_logs
    from ailuro.errors import ResourceExhausted
    from ddm.tarballs import TarLimits

    (tmp_path / "o").write_bytes(bytes(4 * 1024 * 1024))
    tgz = make_log_tarball(tmp_path / "b.job.log.tgz", [(tmp_path / "o", "payload.stdout")])
    location = StorageLocations.from_config(roots=(tmp_path,)).resolve(str(tgz))
    monkeypatch.setattr(monitor_logs, "TAR_LIMITS", TarLimits(max_unpacked_bytes=1024 * 1024))
    with pytest.raises(ResourceExhausted, match="limit"):
        read_member(location, "stdout")
