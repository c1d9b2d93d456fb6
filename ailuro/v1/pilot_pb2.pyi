from ailuro.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_TYPE_UNSPECIFIED: _ClassVar[CommandType]
    COMMAND_TYPE_KILL: _ClassVar[CommandType]
    COMMAND_TYPE_DEBUG: _ClassVar[CommandType]

class AckResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_RESULT_UNSPECIFIED: _ClassVar[AckResult]
    ACK_RESULT_OK: _ClassVar[AckResult]
    ACK_RESULT_STALE_EPOCH: _ClassVar[AckResult]
    ACK_RESULT_NOT_FOUND: _ClassVar[AckResult]
    ACK_RESULT_REJECTED: _ClassVar[AckResult]
COMMAND_TYPE_UNSPECIFIED: CommandType
COMMAND_TYPE_KILL: CommandType
COMMAND_TYPE_DEBUG: CommandType
ACK_RESULT_UNSPECIFIED: AckResult
ACK_RESULT_OK: AckResult
ACK_RESULT_STALE_EPOCH: AckResult
ACK_RESULT_NOT_FOUND: AckResult
ACK_RESULT_REJECTED: AckResult

class HeldJob(_message.Message):
    __slots__ = ("panda_id", "lease_epoch")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    lease_epoch: int
    def __init__(self, panda_id: _Optional[int] = ..., lease_epoch: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("pilot_id", "queue", "node", "batch_id", "cores", "memory_mb", "walltime_left_s", "version", "held_jobs", "disk_mb", "tags", "reads_batches")
    PILOT_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    WALLTIME_LEFT_S_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HELD_JOBS_FIELD_NUMBER: _ClassVar[int]
    DISK_MB_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    READS_BATCHES_FIELD_NUMBER: _ClassVar[int]
    pilot_id: str
    queue: str
    node: str
    batch_id: str
    cores: int
    memory_mb: int
    walltime_left_s: int
    version: str
    held_jobs: _containers.RepeatedCompositeFieldContainer[HeldJob]
    disk_mb: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    reads_batches: bool
    def __init__(self, pilot_id: _Optional[str] = ..., queue: _Optional[str] = ..., node: _Optional[str] = ..., batch_id: _Optional[str] = ..., cores: _Optional[int] = ..., memory_mb: _Optional[int] = ..., walltime_left_s: _Optional[int] = ..., version: _Optional[str] = ..., held_jobs: _Optional[_Iterable[_Union[HeldJob, _Mapping]]] = ..., disk_mb: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., reads_batches: _Optional[bool] = ...) -> None: ...

class JobRequest(_message.Message):
    __slots__ = ("n", "walltime_left_s", "request_id", "cores_free", "memory_mb_free", "disk_mb_free")
    N_FIELD_NUMBER: _ClassVar[int]
    WALLTIME_LEFT_S_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CORES_FREE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FREE_FIELD_NUMBER: _ClassVar[int]
    DISK_MB_FREE_FIELD_NUMBER: _ClassVar[int]
    n: int
    walltime_left_s: int
    request_id: int
    cores_free: int
    memory_mb_free: int
    disk_mb_free: int
    def __init__(self, n: _Optional[int] = ..., walltime_left_s: _Optional[int] = ..., request_id: _Optional[int] = ..., cores_free: _Optional[int] = ..., memory_mb_free: _Optional[int] = ..., disk_mb_free: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("panda_id", "lease_epoch", "status", "metrics")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    lease_epoch: int
    status: _job_pb2.JobStatus
    metrics: _job_pb2.JobMetrics
    def __init__(self, panda_id: _Optional[int] = ..., lease_epoch: _Optional[int] = ..., status: _Optional[_Union[_job_pb2.JobStatus, str]] = ..., metrics: _Optional[_Union[_job_pb2.JobMetrics, _Mapping]] = ...) -> None: ...

class HeartbeatBatch(_message.Message):
    __slots__ = ("heartbeats",)
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    heartbeats: _containers.RepeatedCompositeFieldContainer[Heartbeat]
    def __init__(self, heartbeats: _Optional[_Iterable[_Union[Heartbeat, _Mapping]]] = ...) -> None: ...

class JobFinal(_message.Message):
    __slots__ = ("panda_id", "lease_epoch", "status", "errors", "metrics", "files", "retryable")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    lease_epoch: int
    status: _job_pb2.JobStatus
    errors: _containers.RepeatedCompositeFieldContainer[_job_pb2.JobError]
    metrics: _job_pb2.JobMetrics
    files: _containers.RepeatedCompositeFieldContainer[_job_pb2.File]
    retryable: bool
    def __init__(self, panda_id: _Optional[int] = ..., lease_epoch: _Optional[int] = ..., status: _Optional[_Union[_job_pb2.JobStatus, str]] = ..., errors: _Optional[_Iterable[_Union[_job_pb2.JobError, _Mapping]]] = ..., metrics: _Optional[_Union[_job_pb2.JobMetrics, _Mapping]] = ..., files: _Optional[_Iterable[_Union[_job_pb2.File, _Mapping]]] = ..., retryable: _Optional[bool] = ...) -> None: ...

class PilotMessage(_message.Message):
    __slots__ = ("hello", "job_request", "heartbeats", "final", "debug_report")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    JOB_REQUEST_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    DEBUG_REPORT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    job_request: JobRequest
    heartbeats: HeartbeatBatch
    final: JobFinal
    debug_report: DebugReport
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., job_request: _Optional[_Union[JobRequest, _Mapping]] = ..., heartbeats: _Optional[_Union[HeartbeatBatch, _Mapping]] = ..., final: _Optional[_Union[JobFinal, _Mapping]] = ..., debug_report: _Optional[_Union[DebugReport, _Mapping]] = ...) -> None: ...

class DebugReport(_message.Message):
    __slots__ = ("panda_id", "lease_epoch", "command_id", "snapshot")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    lease_epoch: int
    command_id: int
    snapshot: str
    def __init__(self, panda_id: _Optional[int] = ..., lease_epoch: _Optional[int] = ..., command_id: _Optional[int] = ..., snapshot: _Optional[str] = ...) -> None: ...

class PilotLimits(_message.Message):
    __slots__ = ("max_jobs_per_request", "heartbeats_per_message", "held_jobs_per_hello", "errors_per_final", "files_per_final", "diag_chars", "pending_per_stream", "max_message_bytes", "debug_report_bytes")
    MAX_JOBS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HELD_JOBS_PER_HELLO_FIELD_NUMBER: _ClassVar[int]
    ERRORS_PER_FINAL_FIELD_NUMBER: _ClassVar[int]
    FILES_PER_FINAL_FIELD_NUMBER: _ClassVar[int]
    DIAG_CHARS_FIELD_NUMBER: _ClassVar[int]
    PENDING_PER_STREAM_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEBUG_REPORT_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_jobs_per_request: int
    heartbeats_per_message: int
    held_jobs_per_hello: int
    errors_per_final: int
    files_per_final: int
    diag_chars: int
    pending_per_stream: int
    max_message_bytes: int
    debug_report_bytes: int
    def __init__(self, max_jobs_per_request: _Optional[int] = ..., heartbeats_per_message: _Optional[int] = ..., held_jobs_per_hello: _Optional[int] = ..., errors_per_final: _Optional[int] = ..., files_per_final: _Optional[int] = ..., diag_chars: _Optional[int] = ..., pending_per_stream: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., debug_report_bytes: _Optional[int] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "dispatcher_id", "lease_s", "heartbeat_s", "limits")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DISPATCHER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_S_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    dispatcher_id: str
    lease_s: int
    heartbeat_s: float
    limits: PilotLimits
    def __init__(self, session_id: _Optional[str] = ..., dispatcher_id: _Optional[str] = ..., lease_s: _Optional[int] = ..., heartbeat_s: _Optional[float] = ..., limits: _Optional[_Union[PilotLimits, _Mapping]] = ...) -> None: ...

class JobAssignment(_message.Message):
    __slots__ = ("job", "lease_epoch", "lease_s", "request_id")
    JOB_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    lease_epoch: int
    lease_s: int
    request_id: int
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., lease_epoch: _Optional[int] = ..., lease_s: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class NoJob(_message.Message):
    __slots__ = ("retry_after_s", "request_id", "n_requested", "n_given", "reason", "invalid_field")
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    N_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    N_GIVEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_FIELD_NUMBER: _ClassVar[int]
    retry_after_s: float
    request_id: int
    n_requested: int
    n_given: int
    reason: str
    invalid_field: str
    def __init__(self, retry_after_s: _Optional[float] = ..., request_id: _Optional[int] = ..., n_requested: _Optional[int] = ..., n_given: _Optional[int] = ..., reason: _Optional[str] = ..., invalid_field: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("panda_id", "type", "reason", "command_id")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    type: CommandType
    reason: str
    command_id: int
    def __init__(self, panda_id: _Optional[int] = ..., type: _Optional[_Union[CommandType, str]] = ..., reason: _Optional[str] = ..., command_id: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("panda_id", "lease_epoch", "result", "message", "is_final")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    lease_epoch: int
    result: AckResult
    message: str
    is_final: bool
    def __init__(self, panda_id: _Optional[int] = ..., lease_epoch: _Optional[int] = ..., result: _Optional[_Union[AckResult, str]] = ..., message: _Optional[str] = ..., is_final: _Optional[bool] = ...) -> None: ...

class AckBatch(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[Ack]
    def __init__(self, acks: _Optional[_Iterable[_Union[Ack, _Mapping]]] = ...) -> None: ...

class DispatcherMessage(_message.Message):
    __slots__ = ("assignment", "no_job", "command", "acks", "welcome", "batch")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    NO_JOB_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    assignment: JobAssignment
    no_job: NoJob
    command: Command
    acks: AckBatch
    welcome: Welcome
    batch: DispatcherBatch
    def __init__(self, assignment: _Optional[_Union[JobAssignment, _Mapping]] = ..., no_job: _Optional[_Union[NoJob, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., acks: _Optional[_Union[AckBatch, _Mapping]] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., batch: _Optional[_Union[DispatcherBatch, _Mapping]] = ...) -> None: ...

class DispatcherBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[DispatcherMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[DispatcherMessage, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("pilot", "n")
    PILOT_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    pilot: Hello
    n: int
    def __init__(self, pilot: _Optional[_Union[Hello, _Mapping]] = ..., n: _Optional[int] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("assignments", "retry_after_s", "welcome")
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[JobAssignment]
    retry_after_s: float
    welcome: Welcome
    def __init__(self, assignments: _Optional[_Iterable[_Union[JobAssignment, _Mapping]]] = ..., retry_after_s: _Optional[float] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ...) -> None: ...

class UpdateJobRequest(_message.Message):
    __slots__ = ("pilot_id", "heartbeats", "finals", "debug_reports")
    PILOT_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    FINALS_FIELD_NUMBER: _ClassVar[int]
    DEBUG_REPORTS_FIELD_NUMBER: _ClassVar[int]
    pilot_id: str
    heartbeats: _containers.RepeatedCompositeFieldContainer[Heartbeat]
    finals: _containers.RepeatedCompositeFieldContainer[JobFinal]
    debug_reports: _containers.RepeatedCompositeFieldContainer[DebugReport]
    def __init__(self, pilot_id: _Optional[str] = ..., heartbeats: _Optional[_Iterable[_Union[Heartbeat, _Mapping]]] = ..., finals: _Optional[_Iterable[_Union[JobFinal, _Mapping]]] = ..., debug_reports: _Optional[_Iterable[_Union[DebugReport, _Mapping]]] = ...) -> None: ...

class UpdateJobResponse(_message.Message):
    __slots__ = ("acks", "commands")
    ACKS_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[Ack]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, acks: _Optional[_Iterable[_Union[Ack, _Mapping]]] = ..., commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...
