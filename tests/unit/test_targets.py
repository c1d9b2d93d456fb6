"""Dispatcher address lists (``ailuro.targets``): parsing, resolution, the channel they become."""

from __future__ import annotations

import pytest

from ailuro import targets


def test_parse_targets_names_the_bad_address() -> None:
    assert targets.parse_targets("a:1, [::1]:2") == [("a", 1), ("::1", 2)]
    for bad in ("", "a:1,", "a", "a:0", "a:x,b:2", "a:1,b:70000"):
        with pytest.raises(ValueError, match="server"):
            targets.parse_targets(bad)


def test_a_list_becomes_one_round_robin_channel() -> None:
    t = targets.resolve("127.0.0.1:5001,localhost:5002")
    assert t.target.startswith("ipv4:127.0.0.1:5001,")
    assert "127.0.0.1:5002" in t.addresses
    assert ("grpc.lb_policy_name", "round_robin") in t.options
    single = targets.resolve("dispatcher.example.org:50051")  # handed to gRPC as it is (DNS at connect)
    assert (single.target, single.options) == ("dispatcher.example.org:50051", targets.KEEPALIVE)
    # keepalive on every channel: a vanished host (cut link) fails the stream over instead of hanging
    assert ("grpc.keepalive_time_ms", targets.KEEPALIVE_TIME_MS) in t.options
    with pytest.raises(ValueError, match="does not resolve"):
        targets.resolve("127.0.0.1:1,no-such-host.invalid:2")
