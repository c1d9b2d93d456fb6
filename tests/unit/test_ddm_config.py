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
    assert ses["CASTOR"].staging == "delay" and not ses["CASTOR"].stages_by_prepare
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
        ({"storage": [{"name": "X", "endpoints": ["root://h//x"], "staging": "robot"}]}, "queues.storage[0].staging"),
        (  # only a tape is recalled
            {"storage": [{"name": "X", "endpoints": ["root://h//x"], "staging": "prepare"}]},
            "queues.storage[0].staging",
        ),
        (  # prepare is an XRootD request
            {"storage": [{"name": "X", "kind": "tape", "endpoints": ["file:///t"], "staging": "prepare"}]},
            "queues.storage[0].staging",
        ),
        (
            {"storage": [{"name": "X", "kind": "tape", "endpoints": ["root://h//x"], "staging_poll_s": 0}]},
            "queues.storage[0].staging_poll_s",
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


def test_a_tape_staged_by_prepare_parses() -> None:
    raw = {"name": "CTA", "kind": "tape", "endpoints": ["root://cta//eos/ctacompass"], "staging": "prepare"}
    (cta,) = parse_storage({"storage": [{**raw, "staging_poll_s": 2, "staging_timeout_s": 600}]})
    assert cta.stages_by_prepare and (cta.staging_poll_s, cta.staging_timeout_s) == (2, 600)
