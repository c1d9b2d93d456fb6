"""gRPC servicers of DDMService and TaskService: unpack, call the service layer with the identity, pack.

Catalog rows become messages here (the wire types stay at the edge); state words map to the
proto enums by name (``failed`` <-> ``REQUEST_STATE_FAILED``), so the vocabulary is the proto's.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from ailuro.queues import StorageElementConfig
from ailuro.v1 import ddm_pb2, ddm_pb2_grpc
from dispatcher.api.errors import identity_of, unary
from dispatcher.services.ddm_catalog import CatalogService
from dispatcher.services.hub import PilotHub
from dispatcher.services.tasks import TaskService
from dispatcher.states import JobState


def _enum(enum: Any, word: str) -> int:
    """``("REQUEST_STATE_", "failed")`` -> the enum value (UNSPECIFIED for an unknown word)."""
    prefix = enum.keys()[0].removesuffix("UNSPECIFIED")
    name = prefix + (word or "").upper()
    return int(enum.Value(name)) if name in enum.DESCRIPTOR.values_by_name else 0


def _ts(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if not seconds:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(float(seconds) * 1e9))
    return ts


def storage_message(se: StorageElementConfig) -> ddm_pb2.StorageElement:
    """A configured SE as a message."""
    return ddm_pb2.StorageElement(
        name=se.name,
        site=se.site,
        kind=_enum(ddm_pb2.StorageKind, se.kind),
        endpoints=se.endpoints,
        staging_latency_s=se.staging_latency_s,
        pin_lifetime_s=se.pin_lifetime_s,
        max_transfers=se.max_transfers,
        staging=se.staging if se.is_tape else "",
    )


def dataset_message(row: Any) -> ddm_pb2.Dataset:
    """A ``catalog.list_datasets`` row as a message."""
    return ddm_pb2.Dataset(
        scope=row["scope"], name=row["name"], file_count=int(row["files"]), created=_ts(row["created"])
    )


def file_message(row: Any) -> ddm_pb2.CatalogFile:
    """A ``ddm_files`` row as a message."""
    return ddm_pb2.CatalogFile(
        scope=row["scope"], lfn=row["lfn"], size=int(row["size"]), adler32=row["adler32"], guid=row["guid"]
    )


def request_message(row: Any) -> ddm_pb2.TransferRequest:
    """A ``catalog.list_requests`` row as a message."""
    return ddm_pb2.TransferRequest(
        request_id=int(row["request_id"]),
        kind=_enum(ddm_pb2.RequestKind, row["kind"]),
        scope=row["scope"],
        lfn=row["lfn"],
        source_se=row["source_se"],
        dest_se=row["dest_se"],
        state=_enum(ddm_pb2.RequestState, row["state"]),
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        error_code=int(row["error_code"]),
        last_error=row["last_error"],
        panda_id=int(row["panda_id"]),
        task_id=int(row["task_id"]),
        activity=row["activity"],
        created=_ts(row["created"]),
        updated=_ts(row["updated"]),
    )


def _spec_message(spec: dict[str, Any]) -> ddm_pb2.TaskSpec:
    steps = {
        k: ddm_pb2.TaskStep(**{f: v for f, v in spec[k].items() if f in _STEP_FIELDS}) for k in ("process", "merge")
    }
    return ddm_pb2.TaskSpec(
        name=spec["name"],
        vo=spec.get("vo", ""),
        label=spec.get("label", ""),
        input_dataset=spec["input_dataset"],
        archive_se=spec["archive_se"],
        priority=int(spec.get("priority", 0)),
        lost_inputs=spec.get("lost_inputs", ""),
        **steps,
    )


_STEP_FIELDS = frozenset(ddm_pb2.TaskStep.DESCRIPTOR.fields_by_name)


def task_message(row: Any, lost_files: list[str] | None = None) -> ddm_pb2.Task:
    """A ``ddm_tasks`` row as a message."""
    return ddm_pb2.Task(
        task_id=int(row["task_id"]),
        name=row["name"],
        owner=row["owner"],
        vo=row["vo"],
        state=_enum(ddm_pb2.TaskState, row["state"]),
        diag=row["diag"],
        merge_panda_id=int(row["merge_panda_id"]),
        created=_ts(row["created"]),
        updated=_ts(row["updated"]),
        spec=_spec_message(json.loads(row["spec"])),
        lost_files=lost_files,
    )


class DDMServicer(ddm_pb2_grpc.DDMServiceServicer):
    """Thin adapter over :class:`CatalogService`."""

    def __init__(self, service: CatalogService) -> None:
        self.service = service

    @unary
    async def ListStorageElements(
        self, request: ddm_pb2.ListStorageElementsRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.ListStorageElementsResponse:
        ses = [storage_message(se) for se in self.service.list_storage()]
        return ddm_pb2.ListStorageElementsResponse(storage_elements=ses)

    @unary
    async def GetStorageElement(
        self, request: ddm_pb2.GetStorageElementRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.StorageElement:
        return storage_message(self.service.get_storage(request.name))

    @unary
    async def CreateDataset(
        self, request: ddm_pb2.CreateDatasetRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.CreateDatasetResponse:
        row, created = await self.service.create_dataset(request.dataset, identity_of(context))
        return ddm_pb2.CreateDatasetResponse(dataset=dataset_message(row), created=created)

    @unary
    async def ListDatasets(
        self, request: ddm_pb2.ListDatasetsRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.ListDatasetsResponse:
        rows, truncated = await self.service.list_datasets(request.scope, request.limit, identity_of(context))
        return ddm_pb2.ListDatasetsResponse(datasets=[dataset_message(r) for r in rows], truncated=truncated)

    @unary
    async def GetDataset(
        self, request: ddm_pb2.GetDatasetRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.GetDatasetResponse:
        row, files, after = await self.service.get_dataset(
            request.dataset, request.limit, request.after_lfn, identity_of(context)
        )
        return ddm_pb2.GetDatasetResponse(
            dataset=dataset_message(row), files=[file_message(f) for f in files], next_after_lfn=after
        )

    @unary
    async def RegisterFiles(
        self, request: ddm_pb2.RegisterFilesRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.RegisterFilesResponse:
        out = await self.service.register_files(request, identity_of(context))
        return ddm_pb2.RegisterFilesResponse(
            files=[file_message(f) for f in out.files],
            replica_states=[_enum(ddm_pb2.ReplicaState, s) for s in out.replica_states],
            verify_requests=out.verify_requests,
        )

    @unary
    async def ListReplicas(
        self, request: ddm_pb2.ListReplicasRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.ListReplicasResponse:
        pairs, after = await self.service.list_replicas(request, identity_of(context))
        replicas = [
            ddm_pb2.Replica(
                scope=f["scope"],
                lfn=f["lfn"],
                storage_element=r["se"],
                state=_enum(ddm_pb2.ReplicaState, r["state"]),
                pfn=r["pfn"],
                online_until=_ts(r["online_until"]),
            )
            for f, r in pairs
        ]
        return ddm_pb2.ListReplicasResponse(replicas=replicas, next_after_lfn=after)

    @unary
    async def RequestTransfers(
        self, request: ddm_pb2.RequestTransfersRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.RequestTransfersResponse:
        ids = await self.service.request_transfers(request, identity_of(context))
        return ddm_pb2.RequestTransfersResponse(request_ids=ids)

    @unary
    async def ListTransfers(
        self, request: ddm_pb2.ListTransfersRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.ListTransfersResponse:
        rows = await self.service.list_transfers(request, identity_of(context))
        return ddm_pb2.ListTransfersResponse(requests=[request_message(r) for r in rows])

    @unary
    async def CancelTransfers(
        self, request: ddm_pb2.CancelTransfersRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.CancelTransfersResponse:
        n = await self.service.cancel_transfers(request, identity_of(context))
        return ddm_pb2.CancelTransfersResponse(cancelled=n)


class TaskServicer(ddm_pb2_grpc.TaskServiceServicer):
    """Thin adapter over :class:`TaskService`."""

    def __init__(self, service: TaskService, hub: PilotHub | None = None) -> None:
        self.service = service
        self.hub = hub

    @unary
    async def SubmitTask(
        self, request: ddm_pb2.SubmitTaskRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.SubmitTaskResponse:
        task_id, ids = await self.service.submit(request.task, identity_of(context))
        return ddm_pb2.SubmitTaskResponse(task_id=task_id, panda_ids=ids)

    @unary
    async def ListTasks(
        self, request: ddm_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.ListTasksResponse:
        return ddm_pb2.ListTasksResponse(
            tasks=[task_message(r) for r in await self.service.list(request, identity_of(context))]
        )

    @unary
    async def GetTask(
        self, request: ddm_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.GetTaskResponse:
        info = await self.service.get(request.task_id, identity_of(context))
        jobs = [
            ddm_pb2.TaskJob(
                panda_id=int(j["panda_id"]),
                job_name=j["job_name"],
                status=JobState(j["status"]).to_proto(),
                computing_site=j["computing_site"],
            )
            for j in info["jobs"]
        ]
        return ddm_pb2.GetTaskResponse(
            task=task_message(info["row"], info["lost_files"]),
            jobs=jobs,
            requests=[request_message(r) for r in info["request_rows"]],
        )

    @unary
    async def RetryTask(
        self, request: ddm_pb2.RetryTaskRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.RetryTaskResponse:
        out = await self.service.retry(request.task_id, identity_of(context))
        return ddm_pb2.RetryTaskResponse(
            retried_panda_ids=out.retried, new_panda_ids=out.new_ids, requeued_requests=out.requeued_requests
        )

    @unary
    async def AbortTask(
        self, request: ddm_pb2.AbortTaskRequest, context: grpc.aio.ServicerContext
    ) -> ddm_pb2.AbortTaskResponse:
        out = await self.service.abort(request.task_id, request.reason, identity_of(context))
        if self.hub is not None and out.commands:
            await self.hub.push_commands(out.commands)
        return ddm_pb2.AbortTaskResponse(killed_jobs=out.killed, cancelled_requests=out.cancelled_requests)
