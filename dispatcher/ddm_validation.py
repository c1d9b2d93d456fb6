"""Input validation of the DDM and task RPCs: pure functions that raise ``InvalidArgument`` naming the field.

Beside :mod:`dispatcher.validation` (whose text rules it reuses) so that the job rules stay in one
place. Limits (also in ``ddm.proto`` and the README):

================================  ============================================
RegisterFiles.files               1 to 5,000 per call; at most 100 without size/adler32
RequestTransfers                  at most 10,000 files per call
CancelTransfers.request_ids       1 to 5,000
list limits                       0 (default) to 5,000
activity                          at most 64 characters
task templates                    only their documented placeholders, no format specs
================================  ============================================
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ailuro import names
from ailuro.errors import InvalidArgument
from ailuro.queues import StorageElementConfig
from ailuro.v1 import ddm_pb2
from dispatcher import validation
from dispatcher.store import catalog

MAX_REGISTER = 10_000
MAX_LIFETIME_S = 10 * 365 * 86400.0
MAX_PROBE = 100
MAX_REQUEST_FILES = 10_000
MAX_LIST = 5000
MAX_ACTIVITY = 64

PROCESS_OUTPUT_KEYS = frozenset({"stem", "lfn"})
PROCESS_PARAMETER_KEYS = frozenset({"input", "output"})
MERGE_PARAMETER_KEYS = frozenset({"output", "inputs"})


def text(value: str, field: str, *, limit: int = validation.MAX_NAME, required: bool = False) -> None:
    """A string field: length, NUL bytes, required."""
    validation._text(value, field, limit=limit, required=required)


def did(value: str, field: str) -> tuple[str, str]:
    """``scope:name`` -> ``(scope, name)``; neither part may be a path."""
    text(value, field, limit=2 * validation.MAX_NAME + 1, required=True)
    names.check_dataset(value, field)  # the SDK's one rule set for dataset names (ailuro.names)
    scope, name = catalog.split_did(value, field=field)
    for part in (scope, name):
        if len(part) > validation.MAX_NAME:
            raise InvalidArgument(f"each part is at most {validation.MAX_NAME} characters", field=field)
        if "/" in part or part in (".", "..") or part != part.strip():
            raise InvalidArgument(f"{part!r} is not a valid scope or name (no '/', no spaces around)", field=field)
    return scope, name


def storage_element(
    name: str, field: str, storage: Mapping[str, StorageElementConfig], *, required: bool = True
) -> StorageElementConfig | None:
    """A configured SE by name (``None`` for an optional empty one); unknown names are refused."""
    text(name, field, required=required)
    if not name:
        return None
    se = storage.get(name)
    if se is None:
        known = ", ".join(sorted(storage)) or "none configured"
        raise InvalidArgument(f"unknown storage element {name!r}; known: {known}", field=field)
    return se


def limit(value: int, field: str, *, default: int, maximum: int = MAX_LIST) -> int:
    """A page size: 0 means ``default``."""
    if value == 0:
        return default
    if not 1 <= value <= maximum:
        raise InvalidArgument(f"must be 0 (default {default}) to {maximum}, got {value}", field=field)
    return value


def _enum(value: int, enum: Any, field: str, *, allow_unspecified: bool = False) -> str:
    """The lowercase state word of a proto enum value (``REQUEST_STATE_FAILED`` -> ``failed``)."""
    if value == 0 and allow_unspecified:
        return ""
    if value == 0 or value not in enum.values():
        raise InvalidArgument(
            f"must be one of {[n for n in enum.DESCRIPTOR.values_by_name if not n.endswith('UNSPECIFIED')]}",
            field=field,
        )
    prefix = enum.keys()[0].removesuffix("UNSPECIFIED")
    return str(enum.Name(value)).removeprefix(prefix).lower()


def request_kind(value: int, field: str = "kind", *, allow_unspecified: bool = False) -> str:
    """``REQUEST_KIND_TRANSFER`` -> ``transfer``."""
    return _enum(value, ddm_pb2.RequestKind, field, allow_unspecified=allow_unspecified)


def request_states(values: Sequence[int], field: str = "states") -> list[str]:
    """Request-state filters as catalog words."""
    return [_enum(v, ddm_pb2.RequestState, f"{field}[{i}]") for i, v in enumerate(values)]


def task_states(values: Sequence[int], field: str = "states") -> list[str]:
    """Task-state filters as stored words."""
    return [_enum(v, ddm_pb2.TaskState, f"{field}[{i}]") for i, v in enumerate(values)]


def positive_id(value: int, field: str) -> None:
    """An id > 0."""
    if value <= 0:
        raise InvalidArgument(f"must be a positive id, got {value}", field=field)


def non_negative_id(value: int, field: str) -> None:
    """An id filter: 0 (any) or positive."""
    if value < 0:
        raise InvalidArgument(f"must be >= 0, got {value}", field=field)


def register_files(req: ddm_pb2.RegisterFilesRequest, storage: Mapping[str, StorageElementConfig]) -> None:
    """A RegisterFiles request (the SE must be configured; size/adler32 given together or not at all)."""
    did(req.dataset, "dataset")
    storage_element(req.storage_element, "storage_element", storage)
    validation._batch(len(req.files), "files", limit=MAX_REGISTER)
    seen: set[str] = set()
    probes = 0
    for i, f in enumerate(req.files):
        where = f"files[{i}]"
        text(f.lfn, f"{where}.lfn", required=True)
        names.check_lfn(f.lfn, f"{where}.lfn")
        if f.lfn in seen:
            raise InvalidArgument(f"duplicate lfn {f.lfn!r} within the call", field=f"{where}.lfn")
        seen.add(f.lfn)
        text(f.guid, f"{where}.guid")
        validation._non_negative(f.size, f"{where}.size")
        if f.adler32:
            if not validation._ADLER32.match(f.adler32):
                raise InvalidArgument(f"must be 8 hex digits, got {f.adler32!r}", field=f"{where}.adler32")
        else:
            if f.size:
                raise InvalidArgument("give adler32 with size, or neither (measured at the SE)", field=f"{where}.size")
            probes += 1
    if probes > MAX_PROBE:
        raise InvalidArgument(
            f"{probes} files without size/adler32; at most {MAX_PROBE} per call are measured at the SE", field="files"
        )


def request_transfers(
    req: ddm_pb2.RequestTransfersRequest, storage: Mapping[str, StorageElementConfig]
) -> tuple[str, StorageElementConfig, StorageElementConfig | None]:
    """A RequestTransfers request; ``(kind, dest, source)``."""
    kind = request_kind(req.kind)
    did(req.did, "did")
    dest = storage_element(req.dest_se, "dest_se", storage)
    assert dest is not None
    source = storage_element(req.source_se, "source_se", storage, required=False)
    if source is not None and kind != "transfer":
        raise InvalidArgument("only transfers have a source", field="source_se")
    if source is not None and source.name == dest.name:
        raise InvalidArgument("must differ from dest_se", field="source_se")
    if kind == "stage" and not dest.is_tape:
        raise InvalidArgument(f"{dest.name!r} is not a tape storage element", field="dest_se")
    text(req.activity, "activity", limit=MAX_ACTIVITY)
    if not (0 <= req.lifetime_s <= MAX_LIFETIME_S):  # NaN fails both comparisons
        raise InvalidArgument(f"must be 0 to {MAX_LIFETIME_S:.0f} seconds", field="lifetime_s")
    if req.lifetime_s and kind != "transfer":
        raise InvalidArgument("only transfers have a lifetime", field="lifetime_s")
    return kind, dest, source


def cancel_transfers(req: ddm_pb2.CancelTransfersRequest) -> None:
    """A CancelTransfers request."""
    validation._batch(len(req.request_ids), "request_ids")
    for i, rid in enumerate(req.request_ids):
        positive_id(rid, f"request_ids[{i}]")
    text(req.reason, "reason", limit=validation.MAX_TEXT)


def _template(value: str, field: str, allowed: Collection[str]) -> None:
    """A ``str.format`` template using only ``allowed`` names, without attribute access or format specs."""
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise InvalidArgument(f"is not a valid template: {exc}", field=field) from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            raise InvalidArgument(
                f"placeholder {{{name}}} is not allowed; use only {sorted('{' + a + '}' for a in allowed)}", field=field
            )


def _step(step: ddm_pb2.TaskStep, where: str, *, merge: bool) -> dict[str, Any]:
    text(step.transformation, f"{where}.transformation", limit=validation.MAX_TRANSFORMATION, required=True)
    text(step.parameters, f"{where}.parameters", limit=validation.MAX_JOB_PARAMETERS)
    text(step.output, f"{where}.output", required=True)
    did(step.output_dataset, f"{where}.output_dataset")
    text(step.site, f"{where}.site")
    validation._non_negative(step.max_walltime_s, f"{where}.max_walltime_s")
    validation._non_negative(step.memory_mb, f"{where}.memory_mb")
    if merge:
        _template(step.parameters, f"{where}.parameters", MERGE_PARAMETER_KEYS)
        _template(step.output, f"{where}.output", ())
    else:
        _template(step.parameters, f"{where}.parameters", PROCESS_PARAMETER_KEYS)
        _template(step.output, f"{where}.output", PROCESS_OUTPUT_KEYS)
    out: dict[str, Any] = {
        "transformation": step.transformation,
        "output": step.output,
        "output_dataset": step.output_dataset,
    }
    if step.parameters:
        out["parameters"] = step.parameters
    for key in ("site", "max_walltime_s", "memory_mb"):
        if getattr(step, key):
            out[key] = getattr(step, key)
    return out


def task_spec(spec: ddm_pb2.TaskSpec) -> dict[str, Any]:
    """A submitted TaskSpec as the task dict :mod:`dispatcher.services.tasks` stores (fields ``task.*``)."""
    text(spec.name, "task.name", required=True)
    text(spec.vo, "task.vo")
    text(spec.label, "task.label")
    did(spec.input_dataset, "task.input_dataset")
    text(spec.archive_se, "task.archive_se", required=True)
    validation._non_negative(spec.priority, "task.priority")
    if not spec.HasField("process"):
        raise InvalidArgument("is required", field="task.process")
    if not spec.HasField("merge"):
        raise InvalidArgument("is required", field="task.merge")
    out: dict[str, Any] = {
        "name": spec.name,
        "input_dataset": spec.input_dataset,
        "archive_se": spec.archive_se,
        "process": _step(spec.process, "task.process", merge=False),
        "merge": _step(spec.merge, "task.merge", merge=True),
    }
    for key in ("vo", "label", "priority", "lost_inputs"):
        if getattr(spec, key):
            out[key] = getattr(spec, key)
    return out
