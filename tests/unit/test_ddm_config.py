"""Storage-element configuration in the queue file: parsing, defaults, and errors that name the key."""

from __future__ import annotations

import pytest

from ailuro.errors import InvalidArgument
from ailuro.queues import parse_queues, parse_storage

BASE = {
    "storage": [
        {"name": "EOS", "kind": "disk", "endpoints": ["root://h//eos"]},
        {"name": "CASTOR", "kind": "tape", "endpoints": ["root://t//castor"], "staging_latency_s": 5},
    ],
    "queue": [{"name": "Q", "input_se": ["EOS"], "output_se": ["EOS"]}],
}


def test_storage_and_queue_storage_settings_parse() -> None:
    ses = {s.name: s for s in parse_storage(BASE)}
    assert ses["CASTOR"].is_tape and ses["CASTOR"].staging_latency_s == 5
    assert not ses["EOS"].is_tape and ses["EOS"].max_transfers == 4
    (q,) = parse_queues(BASE)
    assert q.input_se == ("EOS",) and q.output_se == ("EOS",)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"storage": [{"name": "X", "endpoints": ["root://h//x"], "colour": 1}]}, "queues.storage[0]"),
        ({"storage": [{"name": "X", "kind": "cloud", "endpoints": ["root://h//x"]}]}, "queues.storage[0].kind"),
        ({"storage": [{"name": "X", "endpoints": ["/no/scheme"]}]}, "queues.storage[0].endpoints"),
        (
            {"storage": [{"name": "X", "endpoints": ["root://h//x"], "max_transfers": 0}]},
            "queues.storage[0].max_transfers",
        ),
    ],
)
def test_bad_storage_is_refused_with_the_key_named(change: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_storage({**BASE, **change})
    assert err.value.field == field


def test_queue_naming_an_unknown_se_is_refused() -> None:
    data = {**BASE, "queue": [{"name": "Q", "input_se": ["NOPE"]}]}
    with pytest.raises(InvalidArgument) as err:
        parse_queues(data)
    assert err.value.field == "queues.queue[0].input_se"
