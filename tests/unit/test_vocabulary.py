"""The shared words are defined once in ``ailuro.vocabulary`` and every wall uses that definition."""

from __future__ import annotations

from ailuro import client, queues, vocabulary
from ailuro.v1 import factory_pb2
from backends import base, registry
from dispatcher import convert, identity
from pilot import config as pilot_config
from pilot import main as pilot_main


def test_every_backend_name_has_a_class_and_queues_accept_exactly_those() -> None:
    assert set(registry.BACKEND_CLASSES) == set(vocabulary.BACKEND_NAMES)
    assert queues.BACKENDS == vocabulary.BACKEND_NAMES


def test_worker_states_cover_the_wire_enum_and_the_dispatcher_uses_the_same_final_set() -> None:
    wire = {n.removeprefix("WORKER_STATE_") for n, _ in factory_pb2.WorkerState.items()} - {"UNSPECIFIED"}
    assert {s.name for s in vocabulary.WorkerState} == wire
    assert set(convert.FINAL_WORKER_STATES) == {s.value for s in vocabulary.FINAL_WORKER_STATES}
    assert set(convert.WORKER_STATE_NAMES.values()) == {s.value for s in vocabulary.WorkerState}
    assert base.WorkerState is vocabulary.WorkerState


def test_pilot_exit_codes_are_one_enum_with_a_phrase_each() -> None:
    assert pilot_main.ExitCode is vocabulary.PilotExit
    assert set(vocabulary.PILOT_EXIT_CODES) == set(vocabulary.PilotExit)
    assert vocabulary.describe_exit_code(82) == "exit code 82 (no jobs)"
    assert vocabulary.describe_exit_code(-9) == "killed by signal 9"
    assert base.describe_exit_code is vocabulary.describe_exit_code


def test_identity_keys_and_storage_root_are_shared() -> None:
    assert (identity.USER_KEY, identity.VO_KEY, identity.ROLES_KEY) == (
        client.USER_METADATA_KEY,
        client.VO_METADATA_KEY,
        client.ROLES_METADATA_KEY,
    )
    assert pilot_config.DEFAULT_STORAGE_ROOT is vocabulary.DEFAULT_STORAGE_ROOT
