"""Queue configuration: what parses, and that every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ailuro.errors import InvalidArgument
from ailuro.queues import DEFAULT_QUEUES, QueueConfig, load_queues, parse_queues

GOOD = """
[[queue]]
name = "CERN_LSF"
vos = ["compass"]
labels = ["managed"]
backend = "lsf"
max_running = 100
[queue.factory]
max_queued = 3
max_total = 7
[queue.backend_options]
queue = "8nh"

[[queue]]
name = "JINR_SLURM"
backend = "slurm"
"""


def test_parses_a_full_file(tmp_path: Path) -> None:
    path = tmp_path / "queues.toml"
    path.write_text(GOOD)
    lsf, slurm = load_queues(path)
    assert lsf.name == "CERN_LSF" and lsf.backend == "lsf" and lsf.max_running == 100
    assert lsf.vos == ("compass",) and lsf.labels == ("managed",)
    assert lsf.factory.max_queued == 3 and lsf.factory.max_total == 7 and lsf.factory.max_per_cycle == 5
    assert lsf.backend_options == {"queue": "8nh"}
    assert slurm.vos == () and slurm.enabled


def test_no_file_gives_the_default_local_queue() -> None:
    assert load_queues(None) == DEFAULT_QUEUES
    assert DEFAULT_QUEUES[0].serves(vo="anything", label="user")


def test_serves_filters_by_vo_label_and_enabled() -> None:
    q = QueueConfig(name="Q", vos=("compass",), labels=("managed",))
    assert q.serves(vo="compass", label="managed")
    assert not q.serves(vo="atlas", label="managed")
    assert not q.serves(vo="compass", label="user")
    assert not QueueConfig(name="Q", enabled=False).serves(vo="x", label="y")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "t.queue"),
        ({"queue": [{"vos": []}]}, "t.queue[0].name"),
        ({"queue": [{"name": "A"}, {"name": "A"}]}, "t.queue[1].name"),
        ({"queue": [{"name": "A", "backend": "pbs"}]}, "t.queue[0].backend"),
        ({"queue": [{"name": "A", "max_running": -1}]}, "t.queue[0].max_running"),
        ({"queue": [{"name": "A", "vos": "compass"}]}, "t.queue[0].vos"),
        ({"queue": [{"name": "A", "factory": {"max_qeued": 1}}]}, "t.queue[0].factory"),
        ({"queue": [{"name": "A", "factory": {"max_total": -2}}]}, "t.queue[0].factory.max_total"),
        ({"queue": [{"name": "A", "colour": "red"}]}, "t.queue[0]"),
        ({"queue": [{"name": "A"}], "queues": []}, "t"),
    ],
)
def test_mistakes_name_the_key(data: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_queues(data, source="t")
    assert info.value.field == field


def test_missing_and_broken_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such file"):
        load_queues(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[queue]\nname=")
    with pytest.raises(InvalidArgument) as info:
        load_queues(bad)
    assert info.value.field == "queues"


def test_pilot_environment_per_queue() -> None:
    data = {"queue": [{"name": "Q", "pilot_environment": {"PYTHONPATH": "/opt/x", "AILURO_STORAGE_ROOT": "/s"}}]}
    (q,) = parse_queues(data)
    assert q.pilot_environment == {"PYTHONPATH": "/opt/x", "AILURO_STORAGE_ROOT": "/s"}
    for bad in ({"1BAD": "x"}, {"A B": "x"}, {"OK": 1}, ["A=1"]):
        with pytest.raises(InvalidArgument) as info:
            parse_queues({"queue": [{"name": "Q", "pilot_environment": bad}]})
        assert info.value.field == "queues.queue[0].pilot_environment"
