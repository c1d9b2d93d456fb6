import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from ailuro.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StorageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_KIND_UNSPECIFIED: _ClassVar[StorageKind]
    STORAGE_KIND_DISK: _ClassVar[StorageKind]
    STORAGE_KIND_TAPE: _ClassVar[StorageKind]

class ReplicaState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLICA_STATE_UNSPECIFIED: _ClassVar[ReplicaState]
    REPLICA_STATE_AVAILABLE: _ClassVar[ReplicaState]
    REPLICA_STATE_UNVERIFIED: _ClassVar[ReplicaState]
    REPLICA_STATE_BAD: _ClassVar[ReplicaState]

class RequestKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_KIND_UNSPECIFIED: _ClassVar[RequestKind]
    REQUEST_KIND_TRANSFER: _ClassVar[RequestKind]
    REQUEST_KIND_STAGE: _ClassVar[RequestKind]
    REQUEST_KIND_VERIFY: _ClassVar[RequestKind]
    REQUEST_KIND_DELETE: _ClassVar[RequestKind]

class RequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_STATE_UNSPECIFIED: _ClassVar[RequestState]
    REQUEST_STATE_QUEUED: _ClassVar[RequestState]
    REQUEST_STATE_ACTIVE: _ClassVar[RequestState]
    REQUEST_STATE_DONE: _ClassVar[RequestState]
    REQUEST_STATE_FAILED: _ClassVar[RequestState]
    REQUEST_STATE_CANCELLED: _ClassVar[RequestState]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_PROCESSING: _ClassVar[TaskState]
    TASK_STATE_MERGING: _ClassVar[TaskState]
    TASK_STATE_ARCHIVING: _ClassVar[TaskState]
    TASK_STATE_DONE: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_PARTIAL: _ClassVar[TaskState]
    TASK_STATE_ABORTED: _ClassVar[TaskState]
STORAGE_KIND_UNSPECIFIED: StorageKind
STORAGE_KIND_DISK: StorageKind
STORAGE_KIND_TAPE: StorageKind
REPLICA_STATE_UNSPECIFIED: ReplicaState
REPLICA_STATE_AVAILABLE: ReplicaState
REPLICA_STATE_UNVERIFIED: ReplicaState
REPLICA_STATE_BAD: ReplicaState
REQUEST_KIND_UNSPECIFIED: RequestKind
REQUEST_KIND_TRANSFER: RequestKind
REQUEST_KIND_STAGE: RequestKind
REQUEST_KIND_VERIFY: RequestKind
REQUEST_KIND_DELETE: RequestKind
REQUEST_STATE_UNSPECIFIED: RequestState
REQUEST_STATE_QUEUED: RequestState
REQUEST_STATE_ACTIVE: RequestState
REQUEST_STATE_DONE: RequestState
REQUEST_STATE_FAILED: RequestState
REQUEST_STATE_CANCELLED: RequestState
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_PROCESSING: TaskState
TASK_STATE_MERGING: TaskState
TASK_STATE_ARCHIVING: TaskState
TASK_STATE_DONE: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_PARTIAL: TaskState
TASK_STATE_ABORTED: TaskState

class StorageElement(_message.Message):
    __slots__ = ("name", "site", "kind", "endpoints", "staging_latency_s", "pin_lifetime_s", "max_transfers", "staging")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    STAGING_LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    PIN_LIFETIME_S_FIELD_NUMBER: _ClassVar[int]
    MAX_TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    STAGING_FIELD_NUMBER: _ClassVar[int]
    name: str
    site: str
    kind: StorageKind
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    staging_latency_s: float
    pin_lifetime_s: float
    max_transfers: int
    staging: str
    def __init__(self, name: _Optional[str] = ..., site: _Optional[str] = ..., kind: _Optional[_Union[StorageKind, str]] = ..., endpoints: _Optional[_Iterable[str]] = ..., staging_latency_s: _Optional[float] = ..., pin_lifetime_s: _Optional[float] = ..., max_transfers: _Optional[int] = ..., staging: _Optional[str] = ...) -> None: ...

class ListStorageElementsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListStorageElementsResponse(_message.Message):
    __slots__ = ("storage_elements",)
    STORAGE_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    storage_elements: _containers.RepeatedCompositeFieldContainer[StorageElement]
    def __init__(self, storage_elements: _Optional[_Iterable[_Union[StorageElement, _Mapping]]] = ...) -> None: ...

class GetStorageElementRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("scope", "name", "file_count", "created")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    scope: str
    name: str
    file_count: int
    created: _timestamp_pb2.Timestamp
    def __init__(self, scope: _Optional[str] = ..., name: _Optional[str] = ..., file_count: _Optional[int] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CatalogFile(_message.Message):
    __slots__ = ("scope", "lfn", "size", "adler32", "guid")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LFN_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ADLER32_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    scope: str
    lfn: str
    size: int
    adler32: str
    guid: str
    def __init__(self, scope: _Optional[str] = ..., lfn: _Optional[str] = ..., size: _Optional[int] = ..., adler32: _Optional[str] = ..., guid: _Optional[str] = ...) -> None: ...

class CreateDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class CreateDatasetResponse(_message.Message):
    __slots__ = ("dataset", "created")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    created: bool
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("scope", "limit")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    scope: str
    limit: int
    def __init__(self, scope: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "truncated")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    truncated: bool
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("dataset", "limit", "after_lfn")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_LFN_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    limit: int
    after_lfn: str
    def __init__(self, dataset: _Optional[str] = ..., limit: _Optional[int] = ..., after_lfn: _Optional[str] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset", "files", "next_after_lfn")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_LFN_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    files: _containers.RepeatedCompositeFieldContainer[CatalogFile]
    next_after_lfn: str
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ..., files: _Optional[_Iterable[_Union[CatalogFile, _Mapping]]] = ..., next_after_lfn: _Optional[str] = ...) -> None: ...

class FileEntry(_message.Message):
    __slots__ = ("lfn", "size", "adler32", "guid")
    LFN_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ADLER32_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    lfn: str
    size: int
    adler32: str
    guid: str
    def __init__(self, lfn: _Optional[str] = ..., size: _Optional[int] = ..., adler32: _Optional[str] = ..., guid: _Optional[str] = ...) -> None: ...

class RegisterFilesRequest(_message.Message):
    __slots__ = ("dataset", "storage_element", "files")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    storage_element: str
    files: _containers.RepeatedCompositeFieldContainer[FileEntry]
    def __init__(self, dataset: _Optional[str] = ..., storage_element: _Optional[str] = ..., files: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ...) -> None: ...

class RegisterFilesResponse(_message.Message):
    __slots__ = ("files", "replica_states", "verify_requests")
    FILES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_STATES_FIELD_NUMBER: _ClassVar[int]
    VERIFY_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[CatalogFile]
    replica_states: _containers.RepeatedScalarFieldContainer[ReplicaState]
    verify_requests: int
    def __init__(self, files: _Optional[_Iterable[_Union[CatalogFile, _Mapping]]] = ..., replica_states: _Optional[_Iterable[_Union[ReplicaState, str]]] = ..., verify_requests: _Optional[int] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ("scope", "lfn", "storage_element", "state", "pfn", "online_until")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LFN_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PFN_FIELD_NUMBER: _ClassVar[int]
    ONLINE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    scope: str
    lfn: str
    storage_element: str
    state: ReplicaState
    pfn: str
    online_until: _timestamp_pb2.Timestamp
    def __init__(self, scope: _Optional[str] = ..., lfn: _Optional[str] = ..., storage_element: _Optional[str] = ..., state: _Optional[_Union[ReplicaState, str]] = ..., pfn: _Optional[str] = ..., online_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListReplicasRequest(_message.Message):
    __slots__ = ("did", "storage_element", "limit", "after_lfn")
    DID_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_LFN_FIELD_NUMBER: _ClassVar[int]
    did: str
    storage_element: str
    limit: int
    after_lfn: str
    def __init__(self, did: _Optional[str] = ..., storage_element: _Optional[str] = ..., limit: _Optional[int] = ..., after_lfn: _Optional[str] = ...) -> None: ...

class ListReplicasResponse(_message.Message):
    __slots__ = ("replicas", "next_after_lfn")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_LFN_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    next_after_lfn: str
    def __init__(self, replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ..., next_after_lfn: _Optional[str] = ...) -> None: ...

class RequestTransfersRequest(_message.Message):
    __slots__ = ("kind", "did", "dest_se", "source_se", "activity", "lifetime_s")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DID_FIELD_NUMBER: _ClassVar[int]
    DEST_SE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SE_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_S_FIELD_NUMBER: _ClassVar[int]
    kind: RequestKind
    did: str
    dest_se: str
    source_se: str
    activity: str
    lifetime_s: float
    def __init__(self, kind: _Optional[_Union[RequestKind, str]] = ..., did: _Optional[str] = ..., dest_se: _Optional[str] = ..., source_se: _Optional[str] = ..., activity: _Optional[str] = ..., lifetime_s: _Optional[float] = ...) -> None: ...

class RequestTransfersResponse(_message.Message):
    __slots__ = ("request_ids",)
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    request_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, request_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("request_id", "kind", "scope", "lfn", "source_se", "dest_se", "state", "attempts", "max_attempts", "error_code", "last_error", "panda_id", "task_id", "activity", "created", "updated")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LFN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SE_FIELD_NUMBER: _ClassVar[int]
    DEST_SE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    kind: RequestKind
    scope: str
    lfn: str
    source_se: str
    dest_se: str
    state: RequestState
    attempts: int
    max_attempts: int
    error_code: int
    last_error: str
    panda_id: int
    task_id: int
    activity: str
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[int] = ..., kind: _Optional[_Union[RequestKind, str]] = ..., scope: _Optional[str] = ..., lfn: _Optional[str] = ..., source_se: _Optional[str] = ..., dest_se: _Optional[str] = ..., state: _Optional[_Union[RequestState, str]] = ..., attempts: _Optional[int] = ..., max_attempts: _Optional[int] = ..., error_code: _Optional[int] = ..., last_error: _Optional[str] = ..., panda_id: _Optional[int] = ..., task_id: _Optional[int] = ..., activity: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListTransfersRequest(_message.Message):
    __slots__ = ("states", "panda_id", "task_id", "limit", "kind")
    STATES_FIELD_NUMBER: _ClassVar[int]
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[RequestState]
    panda_id: int
    task_id: int
    limit: int
    kind: RequestKind
    def __init__(self, states: _Optional[_Iterable[_Union[RequestState, str]]] = ..., panda_id: _Optional[int] = ..., task_id: _Optional[int] = ..., limit: _Optional[int] = ..., kind: _Optional[_Union[RequestKind, str]] = ...) -> None: ...

class ListTransfersResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[TransferRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[TransferRequest, _Mapping]]] = ...) -> None: ...

class CancelTransfersRequest(_message.Message):
    __slots__ = ("request_ids", "reason")
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_ids: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, request_ids: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTransfersResponse(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: int
    def __init__(self, cancelled: _Optional[int] = ...) -> None: ...

class TaskStep(_message.Message):
    __slots__ = ("transformation", "parameters", "output", "output_dataset", "site", "max_walltime_s", "memory_mb")
    TRANSFORMATION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DATASET_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    MAX_WALLTIME_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    transformation: str
    parameters: str
    output: str
    output_dataset: str
    site: str
    max_walltime_s: int
    memory_mb: int
    def __init__(self, transformation: _Optional[str] = ..., parameters: _Optional[str] = ..., output: _Optional[str] = ..., output_dataset: _Optional[str] = ..., site: _Optional[str] = ..., max_walltime_s: _Optional[int] = ..., memory_mb: _Optional[int] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("name", "vo", "label", "input_dataset", "process", "merge", "archive_se", "priority", "lost_inputs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VO_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_DATASET_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_SE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LOST_INPUTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    vo: str
    label: str
    input_dataset: str
    process: TaskStep
    merge: TaskStep
    archive_se: str
    priority: int
    lost_inputs: str
    def __init__(self, name: _Optional[str] = ..., vo: _Optional[str] = ..., label: _Optional[str] = ..., input_dataset: _Optional[str] = ..., process: _Optional[_Union[TaskStep, _Mapping]] = ..., merge: _Optional[_Union[TaskStep, _Mapping]] = ..., archive_se: _Optional[str] = ..., priority: _Optional[int] = ..., lost_inputs: _Optional[str] = ...) -> None: ...

class SubmitTaskRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: TaskSpec
    def __init__(self, task: _Optional[_Union[TaskSpec, _Mapping]] = ...) -> None: ...

class SubmitTaskResponse(_message.Message):
    __slots__ = ("task_id", "panda_ids")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    panda_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, task_id: _Optional[int] = ..., panda_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "name", "owner", "vo", "state", "diag", "merge_panda_id", "created", "updated", "spec", "lost_files")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    VO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DIAG_FIELD_NUMBER: _ClassVar[int]
    MERGE_PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    LOST_FILES_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    name: str
    owner: str
    vo: str
    state: TaskState
    diag: str
    merge_panda_id: int
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    spec: TaskSpec
    lost_files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[int] = ..., name: _Optional[str] = ..., owner: _Optional[str] = ..., vo: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., diag: _Optional[str] = ..., merge_panda_id: _Optional[int] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., lost_files: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskJob(_message.Message):
    __slots__ = ("panda_id", "job_name", "status", "computing_site")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPUTING_SITE_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    job_name: str
    status: _job_pb2.JobStatus
    computing_site: str
    def __init__(self, panda_id: _Optional[int] = ..., job_name: _Optional[str] = ..., status: _Optional[_Union[_job_pb2.JobStatus, str]] = ..., computing_site: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("states", "owner", "limit")
    STATES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    owner: str
    limit: int
    def __init__(self, states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., owner: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    def __init__(self, task_id: _Optional[int] = ...) -> None: ...

class RetryTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    def __init__(self, task_id: _Optional[int] = ...) -> None: ...

class RetryTaskResponse(_message.Message):
    __slots__ = ("retried_panda_ids", "new_panda_ids", "requeued_requests")
    RETRIED_PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    NEW_PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEUED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    retried_panda_ids: _containers.RepeatedScalarFieldContainer[int]
    new_panda_ids: _containers.RepeatedScalarFieldContainer[int]
    requeued_requests: int
    def __init__(self, retried_panda_ids: _Optional[_Iterable[int]] = ..., new_panda_ids: _Optional[_Iterable[int]] = ..., requeued_requests: _Optional[int] = ...) -> None: ...

class AbortTaskRequest(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    reason: str
    def __init__(self, task_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortTaskResponse(_message.Message):
    __slots__ = ("killed_jobs", "cancelled_requests")
    KILLED_JOBS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    killed_jobs: int
    cancelled_requests: int
    def __init__(self, killed_jobs: _Optional[int] = ..., cancelled_requests: _Optional[int] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task", "jobs", "requests")
    TASK_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    task: Task
    jobs: _containers.RepeatedCompositeFieldContainer[TaskJob]
    requests: _containers.RepeatedCompositeFieldContainer[TransferRequest]
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., jobs: _Optional[_Iterable[_Union[TaskJob, _Mapping]]] = ..., requests: _Optional[_Iterable[_Union[TransferRequest, _Mapping]]] = ...) -> None: ...
