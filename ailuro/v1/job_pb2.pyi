import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_DEFINED: _ClassVar[JobStatus]
    JOB_STATUS_ASSIGNED: _ClassVar[JobStatus]
    JOB_STATUS_ACTIVATED: _ClassVar[JobStatus]
    JOB_STATUS_SENT: _ClassVar[JobStatus]
    JOB_STATUS_STARTING: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_HOLDING: _ClassVar[JobStatus]
    JOB_STATUS_TRANSFERRING: _ClassVar[JobStatus]
    JOB_STATUS_FINISHED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]
    JOB_STATUS_CLOSED: _ClassVar[JobStatus]

class FileType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_TYPE_UNSPECIFIED: _ClassVar[FileType]
    FILE_TYPE_INPUT: _ClassVar[FileType]
    FILE_TYPE_OUTPUT: _ClassVar[FileType]
    FILE_TYPE_LOG: _ClassVar[FileType]

class ErrorComponent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_COMPONENT_UNSPECIFIED: _ClassVar[ErrorComponent]
    ERROR_COMPONENT_PILOT: _ClassVar[ErrorComponent]
    ERROR_COMPONENT_PAYLOAD: _ClassVar[ErrorComponent]
    ERROR_COMPONENT_DDM: _ClassVar[ErrorComponent]
    ERROR_COMPONENT_DISPATCHER: _ClassVar[ErrorComponent]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_DEFINED: JobStatus
JOB_STATUS_ASSIGNED: JobStatus
JOB_STATUS_ACTIVATED: JobStatus
JOB_STATUS_SENT: JobStatus
JOB_STATUS_STARTING: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_HOLDING: JobStatus
JOB_STATUS_TRANSFERRING: JobStatus
JOB_STATUS_FINISHED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELLED: JobStatus
JOB_STATUS_CLOSED: JobStatus
FILE_TYPE_UNSPECIFIED: FileType
FILE_TYPE_INPUT: FileType
FILE_TYPE_OUTPUT: FileType
FILE_TYPE_LOG: FileType
ERROR_COMPONENT_UNSPECIFIED: ErrorComponent
ERROR_COMPONENT_PILOT: ErrorComponent
ERROR_COMPONENT_PAYLOAD: ErrorComponent
ERROR_COMPONENT_DDM: ErrorComponent
ERROR_COMPONENT_DISPATCHER: ErrorComponent

class JobError(_message.Message):
    __slots__ = ("component", "code", "diag")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DIAG_FIELD_NUMBER: _ClassVar[int]
    component: ErrorComponent
    code: int
    diag: str
    def __init__(self, component: _Optional[_Union[ErrorComponent, str]] = ..., code: _Optional[int] = ..., diag: _Optional[str] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("lfn", "guid", "type", "dataset", "scope", "size", "adler32", "status", "source_se", "destination_se", "pfn")
    LFN_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ADLER32_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_SE_FIELD_NUMBER: _ClassVar[int]
    PFN_FIELD_NUMBER: _ClassVar[int]
    lfn: str
    guid: str
    type: FileType
    dataset: str
    scope: str
    size: int
    adler32: str
    status: str
    source_se: str
    destination_se: str
    pfn: str
    def __init__(self, lfn: _Optional[str] = ..., guid: _Optional[str] = ..., type: _Optional[_Union[FileType, str]] = ..., dataset: _Optional[str] = ..., scope: _Optional[str] = ..., size: _Optional[int] = ..., adler32: _Optional[str] = ..., status: _Optional[str] = ..., source_se: _Optional[str] = ..., destination_se: _Optional[str] = ..., pfn: _Optional[str] = ...) -> None: ...

class JobMetrics(_message.Message):
    __slots__ = ("cpu_time_s", "max_rss_kb", "walltime_s", "exit_code")
    CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    MAX_RSS_KB_FIELD_NUMBER: _ClassVar[int]
    WALLTIME_S_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    cpu_time_s: float
    max_rss_kb: int
    walltime_s: float
    exit_code: int
    def __init__(self, cpu_time_s: _Optional[float] = ..., max_rss_kb: _Optional[int] = ..., walltime_s: _Optional[float] = ..., exit_code: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("panda_id", "job_name", "job_definition_id", "task_id", "vo", "prod_source_label", "transformation", "job_parameters", "environment", "computing_site", "current_priority", "max_attempt", "attempt_nr", "cores", "memory_mb", "max_walltime_s", "destination_dblock", "destination_se", "files", "status", "creation_time", "modification_time", "start_time", "end_time", "owner", "pilot_id", "batch_id", "node", "metrics", "errors", "lease_epoch", "brokerage_reason", "parent_panda_id", "processing_type", "disk_mb", "tags")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_DEFINITION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VO_FIELD_NUMBER: _ClassVar[int]
    PROD_SOURCE_LABEL_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMATION_FIELD_NUMBER: _ClassVar[int]
    JOB_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    COMPUTING_SITE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NR_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    MAX_WALLTIME_S_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_DBLOCK_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_SE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    MODIFICATION_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PILOT_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    BROKERAGE_REASON_FIELD_NUMBER: _ClassVar[int]
    PARENT_PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_TYPE_FIELD_NUMBER: _ClassVar[int]
    DISK_MB_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    job_name: str
    job_definition_id: int
    task_id: int
    vo: str
    prod_source_label: str
    transformation: str
    job_parameters: str
    environment: _containers.ScalarMap[str, str]
    computing_site: str
    current_priority: int
    max_attempt: int
    attempt_nr: int
    cores: int
    memory_mb: int
    max_walltime_s: int
    destination_dblock: str
    destination_se: str
    files: _containers.RepeatedCompositeFieldContainer[File]
    status: JobStatus
    creation_time: _timestamp_pb2.Timestamp
    modification_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    owner: str
    pilot_id: str
    batch_id: str
    node: str
    metrics: JobMetrics
    errors: _containers.RepeatedCompositeFieldContainer[JobError]
    lease_epoch: int
    brokerage_reason: str
    parent_panda_id: int
    processing_type: str
    disk_mb: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, panda_id: _Optional[int] = ..., job_name: _Optional[str] = ..., job_definition_id: _Optional[int] = ..., task_id: _Optional[int] = ..., vo: _Optional[str] = ..., prod_source_label: _Optional[str] = ..., transformation: _Optional[str] = ..., job_parameters: _Optional[str] = ..., environment: _Optional[_Mapping[str, str]] = ..., computing_site: _Optional[str] = ..., current_priority: _Optional[int] = ..., max_attempt: _Optional[int] = ..., attempt_nr: _Optional[int] = ..., cores: _Optional[int] = ..., memory_mb: _Optional[int] = ..., max_walltime_s: _Optional[int] = ..., destination_dblock: _Optional[str] = ..., destination_se: _Optional[str] = ..., files: _Optional[_Iterable[_Union[File, _Mapping]]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., creation_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modification_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., pilot_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., node: _Optional[str] = ..., metrics: _Optional[_Union[JobMetrics, _Mapping]] = ..., errors: _Optional[_Iterable[_Union[JobError, _Mapping]]] = ..., lease_epoch: _Optional[int] = ..., brokerage_reason: _Optional[str] = ..., parent_panda_id: _Optional[int] = ..., processing_type: _Optional[str] = ..., disk_mb: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class JobStatusCount(_message.Message):
    __slots__ = ("status", "count")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    status: JobStatus
    count: int
    def __init__(self, status: _Optional[_Union[JobStatus, str]] = ..., count: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("event_id", "panda_id", "from_status", "to_status", "time", "actor", "reason", "attempt_nr", "lease_epoch")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NR_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    panda_id: int
    from_status: JobStatus
    to_status: JobStatus
    time: _timestamp_pb2.Timestamp
    actor: str
    reason: str
    attempt_nr: int
    lease_epoch: int
    def __init__(self, event_id: _Optional[int] = ..., panda_id: _Optional[int] = ..., from_status: _Optional[_Union[JobStatus, str]] = ..., to_status: _Optional[_Union[JobStatus, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., attempt_nr: _Optional[int] = ..., lease_epoch: _Optional[int] = ...) -> None: ...
