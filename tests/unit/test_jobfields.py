"""The job field map accounts for every proto field and every column, and its conversions round-trip."""

from __future__ import annotations

from sqlalchemy import String

from ailuro.compat.panda_spec import MAPPED_JOB_ATTRIBUTES
from ailuro.v1 import job_pb2
from dispatcher import jobfields
from dispatcher.convert import job_row_to_proto
from dispatcher.states import JobState
from dispatcher.store.schema import jobs
from dispatcher.validation import MAX_NAME


def _proto_paths(descriptor: object, prefix: str = "") -> set[str]:
    """Every scalar field path of a message, nested messages but Timestamps descended into."""
    out: set[str] = set()
    for f in descriptor.fields:  # type: ignore[attr-defined]
        path = prefix + f.name
        if f.message_type is not None and f.message_type.full_name == "ailuro.v1.JobMetrics":
            out |= _proto_paths(f.message_type, path + ".")
        else:
            out.add(path)
    return out


def test_every_proto_field_is_mapped_or_named_as_not_stored_in_a_column() -> None:
    mapped = {f.proto for f in jobfields.FIELDS if f.proto}
    assert not mapped & set(jobfields.NOT_IN_COLUMNS)
    assert mapped | set(jobfields.NOT_IN_COLUMNS) == _proto_paths(job_pb2.Job.DESCRIPTOR)


def test_the_map_and_the_jobs_table_have_the_same_columns_in_the_same_order() -> None:
    assert [f.column for f in jobfields.FIELDS] == [c.name for c in jobs.c if c.name not in ("spec",)]


def test_kinds_match_the_column_types() -> None:
    python_types = {
        jobfields.Kind.INT: int,
        jobfields.Kind.FLOAT: float,
        jobfields.Kind.STR: str,
        jobfields.Kind.BOOL: bool,
        jobfields.Kind.TIME: float,
        jobfields.Kind.STATUS: str,
        jobfields.Kind.TAGS: str,
    }
    for f in jobfields.FIELDS:
        assert jobs.c[f.column].type.python_type is python_types[f.kind], f.column
        if jobs.c[f.column].nullable:  # NULL only means "not yet" for a time
            assert f.kind == jobfields.Kind.TIME, f.column


def test_monitor_keys_are_unique_and_spell_panda_attributes_as_bigpanda_does() -> None:
    keys = [f.key for f in jobfields.FIELDS if f.key]
    assert len(keys) == len(set(keys))
    # where panda-client has a name for the field, the monitor key is that name in lowercase, but
    # for the resource requests, whose keys say their unit (PanDA's minRamCount is not a count)
    with_units = {"coreCount": "cores", "minRamCount": "memory_mb", "maxWalltime": "maxwalltime_s"}
    for panda_name, proto in MAPPED_JOB_ATTRIBUTES.items():
        (f,) = [f for f in jobfields.FIELDS if f.proto == proto]
        assert f.key == with_units.get(panda_name, panda_name.lower()), (panda_name, f.key)


def test_server_fields_are_what_submission_clears() -> None:
    assert set(jobfields.SERVER_PROTO_FIELDS) == {
        "panda_id",
        "attempt_nr",
        "status",
        "creation_time",
        "modification_time",
        "start_time",
        "end_time",
        "owner",
        "pilot_id",
        "batch_id",
        "node",
        "metrics",
        "errors",
        "lease_epoch",
        "brokerage_reason",
        "parent_panda_id",
    }
    assert jobfields.LIST_FILTERS == (
        "computing_site",
        "prod_source_label",
        "owner",
        "transformation",
        "vo",
        "job_name",
    )


def test_name_fields_are_the_bounded_text_columns() -> None:
    assert jobfields.NAME_FIELDS == (
        "job_name",
        "vo",
        "prod_source_label",
        "computing_site",
        "destination_dblock",
        "destination_se",
        "processing_type",
    )
    for name in jobfields.NAME_FIELDS:  # validation bounds them to MAX_NAME: the column must hold that
        column_type = jobs.c[jobfields.BY_COLUMN[name].column].type
        assert isinstance(column_type, String) and column_type.length == MAX_NAME, name


def _spec() -> job_pb2.Job:
    spec = job_pb2.Job(
        job_name="j",
        job_definition_id=7,
        task_id=3,
        vo="compass",
        prod_source_label="managed",
        transformation="run.sh",
        job_parameters="-n 1",
        computing_site="CERN",
        current_priority=5,
        max_attempt=2,
        cores=4,
        memory_mb=100,
        max_walltime_s=60,
        destination_dblock="ds",
        destination_se="EOS",
        processing_type="reco",
        parent_panda_id=9,
        disk_mb=500,
        tags=["gpu", "avx2"],
    )
    spec.environment["A"] = "1"
    spec.files.add(lfn="in.root", type=job_pb2.FILE_TYPE_INPUT)
    return spec


def test_insert_row_then_row_to_message_gives_back_the_definition_and_server_values() -> None:
    spec = _spec()
    row = jobfields.insert_row(
        spec, status=JobState.ACTIVATED, owner="alice", now=1000.5, brokerage_reason="why", parent_panda_id=9
    )
    assert list(row) == [c.name for c in jobs.c if c.name != "panda_id"]
    row = {**row, "panda_id": 42}
    job = job_row_to_proto(row)
    expected = job_pb2.Job()
    expected.CopyFrom(spec)
    del expected.files[:]
    expected.panda_id = 42
    expected.attempt_nr = 1
    expected.status = job_pb2.JOB_STATUS_ACTIVATED
    expected.owner = "alice"
    expected.brokerage_reason = "why"
    expected.creation_time.FromNanoseconds(1000_500_000_000)
    expected.modification_time.FromNanoseconds(1000_500_000_000)
    expected.metrics.SetInParent()
    expected.tags[:] = ["avx2", "gpu"]  # a set: stored and returned sorted
    assert row["tags"] == "avx2,gpu"
    assert job == expected


def test_pilot_job_overlays_only_what_a_claim_knows_and_keeps_the_files() -> None:
    spec = _spec()
    row = {
        **jobfields.insert_row(
            spec, status=JobState.ACTIVATED, owner="bob", now=5.0, brokerage_reason="b", parent_panda_id=0
        ),
        "panda_id": 8,
        "status": JobState.SENT,
        "lease_epoch": 1,
        "pilot_id": "p1",
        "batch_id": "b1",
        "node": "n1",
    }
    job = jobfields.pilot_job(row)
    assert (job.panda_id, job.status, job.lease_epoch, job.pilot_id, job.batch_id, job.node, job.owner) == (
        8,
        job_pb2.JOB_STATUS_SENT,
        1,
        "p1",
        "b1",
        "n1",
        "bob",
    )
    assert [f.lfn for f in job.files] == ["in.root"] and job.environment["A"] == "1"
    assert not job.HasField("modification_time") and job.creation_time.seconds == 5


def test_monitor_json_converts_by_kind() -> None:
    row = {"panda_id": 3, "kill_requested": 1, "start_time": None, "cpu_time_s": 2, "owner": "x"}
    fields = jobfields.fields_by_key("pandaid", "killrequested", "starttime", "cputime_s", "produsername")
    assert jobfields.monitor_json(row, fields) == {
        "pandaid": 3,
        "killrequested": True,
        "starttime": None,
        "cputime_s": 2.0,
        "produsername": "x",
    }
