"""The DDM and task validators and the SDK's task-file conversion: pure functions, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from ailuro.ddm import enum_value, task_from_dict, word, words
from ailuro.errors import InvalidArgument
from ailuro.queues import StorageElementConfig
from ailuro.v1 import ddm_pb2
from dispatcher import ddm_validation as check

SES = {"DISK": StorageElementConfig(name="DISK"), "TAPE": StorageElementConfig(name="TAPE", kind="tape")}


def _field(fn, *args, **kw) -> str | None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument) as info:
        fn(*args, **kw)
    return info.value.field


def test_dids_and_storage_elements() -> None:
    assert check.did("compass:raw.P01", "d") == ("compass", "raw.P01")
    for bad in ("", "x", "a:b:c", "a/b:c", "a:..", " a:b", "a:b\x00", "a:" + "n" * 256):
        assert _field(check.did, bad, "d") == "d", bad
    assert check.storage_element("TAPE", "se", SES) is SES["TAPE"]
    assert check.storage_element("", "se", SES, required=False) is None
    assert _field(check.storage_element, "NOPE", "se", SES) == "se"
    assert _field(check.storage_element, "", "se", SES) == "se"


def test_limits_and_enums() -> None:
    assert check.limit(0, "limit", default=200) == 200
    assert check.limit(5000, "limit", default=200) == 5000
    for bad in (-1, 5001):
        assert _field(check.limit, bad, "limit", default=200) == "limit"
    assert check.request_states([ddm_pb2.REQUEST_STATE_FAILED]) == ["failed"]
    assert _field(check.request_states, [ddm_pb2.REQUEST_STATE_DONE, 0]) == "states[1]"
    assert _field(check.request_states, [77]) == "states[0]"
    assert check.request_kind(0, allow_unspecified=True) == ""
    assert _field(check.request_kind, 0) == "kind"
    assert check.task_states([ddm_pb2.TASK_STATE_ARCHIVING]) == ["archiving"]
    # the SDK side of the same vocabulary
    assert word(ddm_pb2.RequestState, ddm_pb2.REQUEST_STATE_CANCELLED) == "cancelled"
    assert words(ddm_pb2.TaskState) == ["processing", "merging", "archiving", "done", "failed", "partial", "aborted"]
    assert enum_value(ddm_pb2.RequestKind, " Stage ", field="k") == ddm_pb2.REQUEST_KIND_STAGE
    for bad in ("", "unspecified", "teleport"):
        assert _field(enum_value, ddm_pb2.RequestKind, bad, field="k") == "k"


def test_register_requests() -> None:
    def req(*files: ddm_pb2.FileEntry, se: str = "DISK") -> ddm_pb2.RegisterFilesRequest:
        return ddm_pb2.RegisterFilesRequest(dataset="s:d", storage_element=se, files=files)

    check.register_files(req(ddm_pb2.FileEntry(lfn="a"), ddm_pb2.FileEntry(lfn="b", size=0, adler32="00000001")), SES)
    assert _field(check.register_files, req(), SES) == "files"
    assert _field(check.register_files, req(ddm_pb2.FileEntry(lfn="a"), se="X"), SES) == "storage_element"
    assert _field(check.register_files, req(ddm_pb2.FileEntry(lfn="a/b")), SES) == "files[0].lfn"
    assert _field(check.register_files, req(ddm_pb2.FileEntry(lfn="a", size=3)), SES) == "files[0].size"
    assert _field(check.register_files, req(ddm_pb2.FileEntry(lfn="a", adler32="zz")), SES) == "files[0].adler32"
    assert _field(check.register_files, req(ddm_pb2.FileEntry(lfn="a", guid="g" * 256)), SES) == "files[0].guid"
    probes = [ddm_pb2.FileEntry(lfn=f"f{i}") for i in range(check.MAX_PROBE + 1)]
    assert _field(check.register_files, req(*probes), SES) == "files"


def test_transfer_requests() -> None:
    def req(kind: int, dest: str, source: str = "") -> ddm_pb2.RequestTransfersRequest:
        return ddm_pb2.RequestTransfersRequest(kind=kind, did="s:d", dest_se=dest, source_se=source)

    kind, dest, source = check.request_transfers(req(ddm_pb2.REQUEST_KIND_TRANSFER, "DISK", "TAPE"), SES)
    assert (kind, dest.name, source and source.name) == ("transfer", "DISK", "TAPE")
    assert _field(check.request_transfers, req(ddm_pb2.REQUEST_KIND_STAGE, "DISK"), SES) == "dest_se"
    assert _field(check.request_transfers, req(ddm_pb2.REQUEST_KIND_TRANSFER, "DISK", "DISK"), SES) == "source_se"
    assert _field(check.request_transfers, req(ddm_pb2.REQUEST_KIND_VERIFY, "DISK", "TAPE"), SES) == "source_se"
    assert _field(check.request_transfers, req(ddm_pb2.REQUEST_KIND_TRANSFER, "NOPE"), SES) == "dest_se"


def _spec(**process: str) -> ddm_pb2.TaskSpec:
    step = {"transformation": "/bin/true", "output": "{stem}.out", "output_dataset": "s:out", **process}
    merge = ddm_pb2.TaskStep(transformation="/bin/cat", output="m.out", output_dataset="s:m")
    return ddm_pb2.TaskSpec(
        name="T", input_dataset="s:in", archive_se="TAPE", process=ddm_pb2.TaskStep(**step), merge=merge
    )


def test_task_specs_and_templates() -> None:
    task = check.task_spec(_spec(parameters="-i {input} -o {output}"))
    assert task["process"]["parameters"] == "-i {input} -o {output}" and task["archive_se"] == "TAPE"
    assert "priority" not in task and "site" not in task["process"]
    for template in ("{stem.__class__}", "{0}", "{stem!r}", "{stem:>9999}", "{inputs}", "{", "{stem}}{"):
        assert _field(check.task_spec, _spec(output=template)) == "task.process.output", template
    assert _field(check.task_spec, _spec(parameters="{output} {inputs}")) == "task.process.parameters"
    assert _field(check.task_spec, _spec(transformation="")) == "task.process.transformation"
    assert _field(check.task_spec, _spec(output_dataset="nope")) == "task.process.output_dataset"
    no_merge = _spec()
    no_merge.ClearField("merge")
    assert _field(check.task_spec, no_merge) == "task.merge"


def test_sdk_task_file_conversion(tmp_path: Path) -> None:
    (tmp_path / "process.py").write_text("")
    data = {
        "name": "T",
        "input_dataset": "s:in",
        "archive_se": "TAPE",
        "priority": 3,
        "process": {"transformation": "process.py", "output": "{stem}.o", "output_dataset": "s:o", "memory_mb": 10},
        "merge": {"transformation": "missing.py", "output": "m", "output_dataset": "s:m"},
    }
    # a script that is neither next to the task file nor on PATH is refused before submission (issue #19)
    assert _field(task_from_dict, data, base_dir=tmp_path) == "task.merge.transformation"
    data["merge"] = {**data["merge"], "transformation": "cat"}  # a command on PATH
    spec = task_from_dict(data, base_dir=tmp_path)
    assert spec.process.transformation == str((tmp_path / "process.py").resolve())
    assert spec.merge.transformation == "cat"
    assert task_from_dict({**data, "merge": {**data["merge"], "transformation": "missing.py"}}).merge.transformation
    assert (spec.priority, spec.process.memory_mb) == (3, 10)
    assert _field(task_from_dict, [1, 2]) == "task"
    assert _field(task_from_dict, {**data, "colour": "red"}) == "task"
    assert _field(task_from_dict, {**data, "merge": {"script": "x"}}) == "task.merge"
    assert _field(task_from_dict, {**data, "priority": "high"}) == "task"
