"""SDK for data management and production tasks: ``Client(...).ddm`` and ``Client(...).tasks``.

Example::

    from ailuro import Client

    with Client("127.0.0.1:50051", identity="prod") as c:
        c.ddm.register_files("compass:raw.P01", "CERN_CASTOR", ["cdr001.raw", "cdr002.raw"])
        ids = c.ddm.replicate("compass:raw.P01", to="CERN_EOS")
        task_id, panda_ids = c.tasks.submit(task_from_dict(yaml.safe_load(text), base_dir=here))

Everything goes through the dispatcher's ``DDMService`` and ``TaskService``; errors are the
``ailuro.errors`` classes, as for jobs. State words are the proto enum names in lowercase
(``REQUEST_STATE_FAILED`` is ``"failed"``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ailuro.errors import InvalidArgument
from ailuro.v1 import ddm_pb2, ddm_pb2_grpc

if TYPE_CHECKING:
    from ailuro.client import Client

MAX_REGISTER = 10_000
"""Files per RegisterFiles call given with size and adler32 (one call for a 10,000-file run)."""
MAX_PROBE = 100
"""Files per RegisterFiles call measured at the SE (given without size and adler32)."""
MAX_IDS = 5000
"""Ids per CancelTransfers call."""

_TASK_KEYS = {"name", "vo", "label", "input_dataset", "process", "merge", "archive_se", "priority", "lost_inputs"}
_STEP_KEYS = set(ddm_pb2.TaskStep.DESCRIPTOR.fields_by_name)


def word(enum: Any, value: int) -> str:
    """``word(ddm_pb2.RequestState, REQUEST_STATE_FAILED)`` -> ``"failed"``."""
    prefix = enum.keys()[0].removesuffix("UNSPECIFIED")
    return str(enum.Name(value)).removeprefix(prefix).lower() if value in enum.values() else str(value)


def words(enum: Any) -> list[str]:
    """Every state word of an enum except UNSPECIFIED."""
    return [word(enum, v) for v in enum.values() if v != 0]


def enum_value(enum: Any, text: str, *, field: str) -> int:
    """``enum_value(ddm_pb2.RequestState, "failed", field="states")``; ``InvalidArgument`` for unknown words."""
    prefix = enum.keys()[0].removesuffix("UNSPECIFIED")
    name = prefix + text.strip().upper()
    if not text.strip() or name not in enum.DESCRIPTOR.values_by_name or name.endswith("UNSPECIFIED"):
        raise InvalidArgument(f"{text!r} is not one of {words(enum)}", field=field)
    return int(enum.Value(name))


def task_from_dict(data: Any, *, base_dir: Path | None = None) -> ddm_pb2.TaskSpec:
    """A task file's content (``examples/compass_chain/task.yaml``) as a ``TaskSpec``.

    A relative ``transformation`` naming a file next to the task file (``base_dir``) becomes an
    absolute path, as the worker sees the same file system. The dispatcher checks everything else.
    """
    if not isinstance(data, Mapping):
        raise InvalidArgument("a task file is a mapping", field="task")
    unknown = set(data) - _TASK_KEYS
    if unknown:
        raise InvalidArgument(f"unknown key(s) {sorted(unknown)}", field="task")
    steps = {}
    for step in ("process", "merge"):
        raw = data.get(step)
        if not isinstance(raw, Mapping) or set(raw) - _STEP_KEYS:
            raise InvalidArgument(f"must be a mapping with keys from {sorted(_STEP_KEYS)}", field=f"task.{step}")
        values = dict(raw)
        if base_dir is not None:
            where = f"task.{step}.transformation"
            values["transformation"] = _script_path(values.get("transformation"), base_dir, where)
        try:
            steps[step] = ddm_pb2.TaskStep(**values)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"bad value: {exc}", field=f"task.{step}") from None
    try:
        return ddm_pb2.TaskSpec(**{k: v for k, v in data.items() if k not in steps}, **steps)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"bad value: {exc}", field="task") from None


def _script_path(value: Any, base_dir: Path, field: str) -> Any:
    """A task file's script: a path relative to ``base_dir`` made absolute; one that exists nowhere refused.

    Checked before anything is submitted: a missing script would otherwise fail every job (1008)
    after all the staging. A bare name (``cat``) that is no file next to the task file must be a
    command on ``PATH``.
    """
    if not isinstance(value, str) or not value:
        return value
    path = Path(value) if Path(value).is_absolute() else base_dir / value
    if path.is_file():
        return str(path.resolve())
    if "/" not in value and shutil.which(value):
        return value
    raise InvalidArgument(f"script {value!r} does not exist (looked at {path} and on PATH)", field=field)


def _entry(f: str | Mapping[str, Any] | ddm_pb2.FileEntry, i: int) -> ddm_pb2.FileEntry:
    if isinstance(f, ddm_pb2.FileEntry):
        return f
    if isinstance(f, str):
        return ddm_pb2.FileEntry(lfn=f)
    try:
        return ddm_pb2.FileEntry(**f)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"bad file entry: {exc}", field=f"files[{i}]") from None


class DDMClient:
    """Storage elements, datasets, files, replicas and transfer requests of one dispatcher."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stub = ddm_pb2_grpc.DDMServiceStub(client._channel)

    def _call(self, method: Any, request: Any, *, idempotent: bool = True) -> Any:
        return self._client._call(method, request, idempotent=idempotent)

    def storage_elements(self) -> list[ddm_pb2.StorageElement]:
        """The configured storage elements, by name."""
        return list(self._call(self._stub.ListStorageElements, ddm_pb2.ListStorageElementsRequest()).storage_elements)

    def storage_element(self, name: str) -> ddm_pb2.StorageElement:
        """One storage element; ``NotFound`` when not configured."""
        return self._call(self._stub.GetStorageElement, ddm_pb2.GetStorageElementRequest(name=name))

    def create_dataset(self, dataset: str) -> tuple[ddm_pb2.Dataset, bool]:
        """Create ``scope:name`` (an existing one is returned); ``(dataset, created)``."""
        resp = self._call(self._stub.CreateDataset, ddm_pb2.CreateDatasetRequest(dataset=dataset))
        return resp.dataset, resp.created

    def datasets(self, *, scope: str = "", limit: int = 0) -> tuple[list[ddm_pb2.Dataset], bool]:
        """Datasets with file counts; ``(datasets, truncated)``."""
        resp = self._call(self._stub.ListDatasets, ddm_pb2.ListDatasetsRequest(scope=scope, limit=limit))
        return list(resp.datasets), resp.truncated

    def dataset(self, dataset: str) -> tuple[ddm_pb2.Dataset, list[ddm_pb2.CatalogFile]]:
        """A dataset and all its files (in lfn order, fetched a page at a time)."""
        files: list[ddm_pb2.CatalogFile] = []
        after = ""
        while True:
            resp = self._call(self._stub.GetDataset, ddm_pb2.GetDatasetRequest(dataset=dataset, after_lfn=after))
            files.extend(resp.files)
            after = resp.next_after_lfn
            if not after:
                return resp.dataset, files

    def register_files(
        self, dataset: str, storage_element: str, files: Iterable[str | Mapping[str, Any] | ddm_pb2.FileEntry]
    ) -> ddm_pb2.RegisterFilesResponse:
        """Register files on an SE into a dataset: lfns (measured at the SE) or entries with size/adler32.

        Long lists go in several calls (10,000 entries with checksums, 100 without); each call is
        all or nothing, and registering again is harmless, so a failed run can simply be repeated.
        """
        entries = [_entry(f, i) for i, f in enumerate(files)]
        if not entries:
            raise InvalidArgument("at least one file is required", field="files")
        out = ddm_pb2.RegisterFilesResponse()
        i = 0
        while i < len(entries):
            size = MAX_REGISTER if all(e.adler32 for e in entries[i : i + MAX_REGISTER]) else MAX_PROBE
            chunk = entries[i : i + size]
            req = ddm_pb2.RegisterFilesRequest(dataset=dataset, storage_element=storage_element, files=chunk)
            resp = self._call(self._stub.RegisterFiles, req)
            out.files.extend(resp.files)
            out.replica_states.extend(resp.replica_states)
            out.verify_requests += resp.verify_requests
            i += size
        return out

    def replicas(self, did: str, *, storage_element: str = "") -> list[ddm_pb2.Replica]:
        """Replicas of a file (``scope:lfn``) or of every file of a dataset (``scope:name``)."""
        out: list[ddm_pb2.Replica] = []
        after = ""
        while True:
            req = ddm_pb2.ListReplicasRequest(did=did, storage_element=storage_element, after_lfn=after)
            resp = self._call(self._stub.ListReplicas, req)
            out.extend(resp.replicas)
            after = resp.next_after_lfn
            if not after:
                return out

    def request(
        self, kind: str, did: str, dest_se: str, *, source_se: str = "", activity: str = "", lifetime_s: float = 0
    ) -> list[int]:
        """Queue ``transfer``/``stage``/``verify``/``delete`` requests for a file or dataset; their ids."""
        req = ddm_pb2.RequestTransfersRequest(
            kind=enum_value(ddm_pb2.RequestKind, kind, field="kind"),
            did=did,
            dest_se=dest_se,
            source_se=source_se,
            activity=activity,
            lifetime_s=lifetime_s,
        )
        return list(self._call(self._stub.RequestTransfers, req).request_ids)

    def replicate(self, did: str, *, to: str, source_se: str = "", lifetime_s: float = 0) -> list[int]:
        """Copy a file or dataset to another SE (deleted again ``lifetime_s`` after the request, if given)."""
        return self.request("transfer", did, to, source_se=source_se, lifetime_s=lifetime_s)

    def delete(self, did: str, *, se: str) -> list[int]:
        """Delete the replicas of a file or dataset on one SE (never a file's last available replica)."""
        return self.request("delete", did, se)

    def stage(self, did: str, *, se: str) -> list[int]:
        """Bring a file or dataset online on a tape SE."""
        return self.request("stage", did, se)

    def verify(self, did: str, *, se: str) -> list[int]:
        """Compare replicas' adler32 at an SE with the catalog (bad ones are repaired from another copy)."""
        return self.request("verify", did, se)

    def transfers(
        self, *, states: Sequence[str] = (), panda_id: int = 0, task_id: int = 0, kind: str = "", limit: int = 0
    ) -> list[ddm_pb2.TransferRequest]:
        """Requests, newest first, with per-file state, attempts and last error."""
        req = ddm_pb2.ListTransfersRequest(
            states=[enum_value(ddm_pb2.RequestState, s, field=f"states[{i}]") for i, s in enumerate(states)],
            panda_id=panda_id,
            task_id=task_id,
            kind=enum_value(ddm_pb2.RequestKind, kind, field="kind") if kind else 0,
            limit=limit,
        )
        return list(self._call(self._stub.ListTransfers, req).requests)

    def cancel(self, request_ids: Iterable[int], *, reason: str = "") -> int:
        """Withdraw open requests; how many were still open."""
        ids = list(request_ids)
        n = 0
        for i in range(0, len(ids), MAX_IDS):
            req = ddm_pb2.CancelTransfersRequest(request_ids=ids[i : i + MAX_IDS], reason=reason)
            n += self._call(self._stub.CancelTransfers, req).cancelled
        return n


class TaskClient:
    """Production task chains (process -> merge -> archive) of one dispatcher."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stub = ddm_pb2_grpc.TaskServiceStub(client._channel)

    def submit(
        self, task: ddm_pb2.TaskSpec | Mapping[str, Any], *, base_dir: Path | None = None
    ) -> tuple[int, list[int]]:
        """Submit a task (a ``TaskSpec`` or a task file's mapping); ``(task_id, processing panda_ids)``.

        Not retried after a timeout (a task is not idempotent): look for it with :meth:`list`.
        """
        spec = task if isinstance(task, ddm_pb2.TaskSpec) else task_from_dict(task, base_dir=base_dir)
        resp = self._client._call(self._stub.SubmitTask, ddm_pb2.SubmitTaskRequest(task=spec), idempotent=False)
        return resp.task_id, list(resp.panda_ids)

    def list(self, *, states: Sequence[str] = (), owner: str = "", limit: int = 0) -> list[ddm_pb2.Task]:
        """Tasks, newest first."""
        req = ddm_pb2.ListTasksRequest(
            states=[enum_value(ddm_pb2.TaskState, s, field=f"states[{i}]") for i, s in enumerate(states)],
            owner=owner,
            limit=limit,
        )
        return list(self._client._call(self._stub.ListTasks, req, idempotent=True).tasks)

    def get(self, task_id: int) -> ddm_pb2.GetTaskResponse:
        """A task with its jobs and DDM requests; ``NotFound`` when unknown."""
        return self._client._call(self._stub.GetTask, ddm_pb2.GetTaskRequest(task_id=task_id), idempotent=True)

    def retry(self, task_id: int) -> ddm_pb2.RetryTaskResponse:
        """Resubmit the failed jobs of a task's current step (or its failed archive transfer). Not retried."""
        return self._client._call(self._stub.RetryTask, ddm_pb2.RetryTaskRequest(task_id=task_id), idempotent=False)

    def abort(self, task_id: int, *, reason: str = "") -> ddm_pb2.AbortTaskResponse:
        """Stop a task for good: its jobs killed, its requests withdrawn, no new job."""
        req = ddm_pb2.AbortTaskRequest(task_id=task_id, reason=reason)
        return self._client._call(self._stub.AbortTask, req, idempotent=True)
