"""A queue configured with multi-core pilots gets them: the batch request and the pilot's own offer."""

from __future__ import annotations

from pathlib import Path

import grpc

from ailuro.queues import QueueConfig, parse_queues
from backends.factory import Factory, FactoryConfig


def test_queue_file_sizes_pilots() -> None:
    (q,) = parse_queues({"queue": [{"name": "MC", "pilot_cores": 8, "pilot_memory_mb": 16000}]})
    assert (q.pilot_cores, q.pilot_memory_mb) == (8, 16000)


def test_multicore_queue_gets_multicore_pilots(tmp_path: Path) -> None:
    wide, plain = QueueConfig(name="MC", pilot_cores=8, pilot_memory_mb=16000), QueueConfig(name="SC")
    with grpc.insecure_channel("127.0.0.1:9") as channel:  # never called here
        factory = Factory(
            FactoryConfig(
                server="127.0.0.1:9", queues=(wide, plain), workdir=tmp_path, secret_file=tmp_path / "secret"
            ),
            channel=channel,
        )
        mc, sc = factory._spec(wide), factory._spec(plain)
    assert (mc.cores, mc.memory_mb) == (8, 16000)  # what slurm/condor/lsf are asked for
    assert {"--cores=8", "--memory-mb=16000"} <= set(mc.pilot_args)  # what the pilot then offers
    assert (sc.cores, sc.memory_mb) == (1, 0)
    assert not any(a.startswith(("--cores", "--memory-mb")) for a in sc.pilot_args)
