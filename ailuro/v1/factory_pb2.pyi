import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_SUBMITTED: _ClassVar[WorkerState]
    WORKER_STATE_IDLE: _ClassVar[WorkerState]
    WORKER_STATE_RUNNING: _ClassVar[WorkerState]
    WORKER_STATE_FINISHED: _ClassVar[WorkerState]
    WORKER_STATE_FAILED: _ClassVar[WorkerState]
    WORKER_STATE_CANCELLED: _ClassVar[WorkerState]
    WORKER_STATE_HELD: _ClassVar[WorkerState]
    WORKER_STATE_MISSING: _ClassVar[WorkerState]
    WORKER_STATE_UNKNOWN: _ClassVar[WorkerState]
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_SUBMITTED: WorkerState
WORKER_STATE_IDLE: WorkerState
WORKER_STATE_RUNNING: WorkerState
WORKER_STATE_FINISHED: WorkerState
WORKER_STATE_FAILED: WorkerState
WORKER_STATE_CANCELLED: WorkerState
WORKER_STATE_HELD: WorkerState
WORKER_STATE_MISSING: WorkerState
WORKER_STATE_UNKNOWN: WorkerState

class QueueStats(_message.Message):
    __slots__ = ("queue", "activated_jobs", "assigned_jobs", "running_jobs", "connected_pilots", "idle_pilots", "workers", "start_failures", "flagged", "flag_reason")
    class WorkersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_JOBS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_JOBS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_PILOTS_FIELD_NUMBER: _ClassVar[int]
    IDLE_PILOTS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    START_FAILURES_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    FLAG_REASON_FIELD_NUMBER: _ClassVar[int]
    queue: str
    activated_jobs: int
    assigned_jobs: int
    running_jobs: int
    connected_pilots: int
    idle_pilots: int
    workers: _containers.ScalarMap[str, int]
    start_failures: int
    flagged: bool
    flag_reason: str
    def __init__(self, queue: _Optional[str] = ..., activated_jobs: _Optional[int] = ..., assigned_jobs: _Optional[int] = ..., running_jobs: _Optional[int] = ..., connected_pilots: _Optional[int] = ..., idle_pilots: _Optional[int] = ..., workers: _Optional[_Mapping[str, int]] = ..., start_failures: _Optional[int] = ..., flagged: _Optional[bool] = ..., flag_reason: _Optional[str] = ...) -> None: ...

class GetQueueStatsRequest(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queues: _Optional[_Iterable[str]] = ...) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueStats]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueStats, _Mapping]]] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("worker_id", "queue", "backend", "factory_id", "batch_id", "state", "diag", "submit_time", "update_time", "log_path", "current_panda_id", "node")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    FACTORY_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DIAG_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    queue: str
    backend: str
    factory_id: str
    batch_id: str
    state: WorkerState
    diag: str
    submit_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    log_path: str
    current_panda_id: int
    node: str
    def __init__(self, worker_id: _Optional[str] = ..., queue: _Optional[str] = ..., backend: _Optional[str] = ..., factory_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., diag: _Optional[str] = ..., submit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., log_path: _Optional[str] = ..., current_panda_id: _Optional[int] = ..., node: _Optional[str] = ...) -> None: ...

class RegisterWorkersRequest(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...

class RegisterWorkersResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerUpdate(_message.Message):
    __slots__ = ("worker_id", "state", "diag")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DIAG_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    state: WorkerState
    diag: str
    def __init__(self, worker_id: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., diag: _Optional[str] = ...) -> None: ...

class UpdateWorkersRequest(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[WorkerUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[WorkerUpdate, _Mapping]]] = ...) -> None: ...

class UpdateWorkersResponse(_message.Message):
    __slots__ = ("released_jobs",)
    RELEASED_JOBS_FIELD_NUMBER: _ClassVar[int]
    released_jobs: int
    def __init__(self, released_jobs: _Optional[int] = ...) -> None: ...

class QueueHealth(_message.Message):
    __slots__ = ("queue", "start_failures", "flagged", "last_error", "backoff_until")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    START_FAILURES_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_UNTIL_FIELD_NUMBER: _ClassVar[int]
    queue: str
    start_failures: int
    flagged: bool
    last_error: str
    backoff_until: float
    def __init__(self, queue: _Optional[str] = ..., start_failures: _Optional[int] = ..., flagged: _Optional[bool] = ..., last_error: _Optional[str] = ..., backoff_until: _Optional[float] = ...) -> None: ...

class ReportQueueHealthRequest(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueHealth]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueHealth, _Mapping]]] = ...) -> None: ...

class ReportQueueHealthResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("queue", "factory_id", "include_final", "limit")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    FACTORY_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FINAL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    factory_id: str
    include_final: bool
    limit: int
    def __init__(self, queue: _Optional[str] = ..., factory_id: _Optional[str] = ..., include_final: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...

class IssuePilotTokensRequest(_message.Message):
    __slots__ = ("queue", "worker_ids", "lifetime_s")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    WORKER_IDS_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_S_FIELD_NUMBER: _ClassVar[int]
    queue: str
    worker_ids: _containers.RepeatedScalarFieldContainer[str]
    lifetime_s: int
    def __init__(self, queue: _Optional[str] = ..., worker_ids: _Optional[_Iterable[str]] = ..., lifetime_s: _Optional[int] = ...) -> None: ...

class PilotToken(_message.Message):
    __slots__ = ("worker_id", "token", "expires", "token_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    token: str
    expires: _timestamp_pb2.Timestamp
    token_id: str
    def __init__(self, worker_id: _Optional[str] = ..., token: _Optional[str] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., token_id: _Optional[str] = ...) -> None: ...

class IssuePilotTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[PilotToken]
    def __init__(self, tokens: _Optional[_Iterable[_Union[PilotToken, _Mapping]]] = ...) -> None: ...
