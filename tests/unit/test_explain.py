"""``job why`` as a pure function (dispatcher/explain.py), with hand-written facts and expectations."""

from __future__ import annotations

from ailuro.queues import QueueConfig
from dispatcher.explain import JobFacts, QueueFacts, explain, queue_refusal, verdict
from dispatcher.matching import Needs, Offer, QueueStatus
from dispatcher.states import JobState

CERN = QueueConfig(name="CERN")
DUBNA = QueueConfig(name="DUBNA", vos=("compass",))
GPU = QueueConfig(name="GPU", pilot_cores=4)
ONE_PILOT = (Offer(cores=8, memory_mb=16000),)


def facts(**kw: object) -> JobFacts:
    values: dict[str, object] = {
        "panda_id": 17,
        "state": JobState.ACTIVATED,
        "vo": "compass",
        "label": "user",
        "site": "CERN",
        "needs": Needs(),
        "leaf_path": "compass/analysis/alice",
        "leaf_priority": 0.5,
    }
    values.update(kw)
    return JobFacts(**values)  # type: ignore[arg-type]


def test_queue_refusal_follows_configuration_status_and_pilot_size() -> None:
    assert queue_refusal(CERN, QueueStatus.ONLINE, vo="amber", label="user", needs=Needs()) == ""
    assert queue_refusal(DUBNA, QueueStatus.ONLINE, vo="amber", label="user", needs=Needs()) == (
        "does not serve vo 'amber' with label 'user'"
    )
    assert "brokeroff" in queue_refusal(CERN, QueueStatus.BROKEROFF, vo="compass", label="user", needs=Needs())
    assert queue_refusal(GPU, QueueStatus.ONLINE, vo="x", label="user", needs=Needs(cores=8)) == (
        "needs 8 cores, the pilot has 4 free"
    )
    assert queue_refusal(CERN, QueueStatus.ONLINE, vo="x", label="user", needs=Needs(cores=64)) == ""  # not sized


def test_own_queue_uses_the_claim_rule_others_the_brokerage_rule() -> None:
    job = facts()
    # brokeroff still serves the pilots of its own queue, but brokerage would not send it elsewhere there
    own = verdict(job, QueueFacts(config=CERN, status=QueueStatus.BROKEROFF, offers=ONE_PILOT))
    assert own.can_run and own.reasons == ()
    other = verdict(facts(site="DUBNA"), QueueFacts(config=CERN, status=QueueStatus.BROKEROFF, offers=ONE_PILOT))
    assert other.reasons == ("queue is brokeroff: brokerage does not place new jobs there",)


def test_pilots_missing_or_too_small() -> None:
    none = verdict(facts(), QueueFacts(config=CERN, status=QueueStatus.ONLINE, offers=()))
    assert none.reasons == ("no pilot is connected",)
    small = verdict(
        facts(needs=Needs(cores=16)), QueueFacts(config=CERN, status=QueueStatus.ONLINE, offers=ONE_PILOT * 2)
    )
    assert small.reasons == ("no connected pilot fits (2 connected; e.g. needs 16 cores, the pilot has 8 free)",)


def test_explain_an_offline_queue_with_a_way_out() -> None:
    queues = [
        QueueFacts(config=CERN, status=QueueStatus.OFFLINE, offers=ONE_PILOT),
        QueueFacts(config=DUBNA, status=QueueStatus.ONLINE, offers=ONE_PILOT),
    ]
    e = explain(facts(leaf_priority=1.5), queues, position=0, waiting=0)
    assert e.summary == "waits on CERN: queue is offline: no new jobs are handed out"
    assert e.advice == (
        "an admin sets CERN online: ailuro queue set-status CERN online --reason ...",
        "resubmitting it to DUBNA (it could run there now)",
        "its share compass/analysis/alice is above target (priority 1.50): its usage decays, "
        "or an admin raises the weight (ailuro shares set PATH WEIGHT)",
    )


def test_explain_the_claim_position_and_staging() -> None:
    queues = [QueueFacts(config=CERN, status=QueueStatus.ONLINE, offers=ONE_PILOT)]
    e = explain(facts(), queues, position=4, waiting=10)
    assert e.summary == "waits on CERN for a free pilot: number 4 of 10 in the claim order"
    assert e.advice == ("3 job(s) come before it in the claim order; a higher priority moves it up",)
    staging = explain(facts(state=JobState.ASSIGNED), queues, position=0, waiting=10)
    assert staging.summary == "waits on CERN: inputs are not staged yet (job is assigned)"
    running = explain(facts(state=JobState.RUNNING), queues, position=0, waiting=10)
    assert running.summary == "the job is running: it is not waiting" and running.advice == ()
    deep = explain(facts(), queues, position=0, waiting=0, deeper_than=5000)
    assert deep.summary == "waits on CERN for a free pilot among more than 5,000 waiting jobs (not ranked)"
    assert deep.advice == ()
