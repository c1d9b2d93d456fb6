import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from ailuro.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DebugJobRequest(_message.Message):
    __slots__ = ("panda_id", "timeout_s")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    timeout_s: float
    def __init__(self, panda_id: _Optional[int] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class DebugJobResponse(_message.Message):
    __slots__ = ("panda_id", "pilot_id", "node", "status", "snapshot", "time")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    PILOT_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    pilot_id: str
    node: str
    status: _job_pb2.JobStatus
    snapshot: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, panda_id: _Optional[int] = ..., pilot_id: _Optional[str] = ..., node: _Optional[str] = ..., status: _Optional[_Union[_job_pb2.JobStatus, str]] = ..., snapshot: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitJobsRequest(_message.Message):
    __slots__ = ("request_id", "jobs")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    jobs: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    def __init__(self, request_id: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ...) -> None: ...

class SubmitJobsResponse(_message.Message):
    __slots__ = ("panda_ids", "replayed")
    PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    panda_ids: _containers.RepeatedScalarFieldContainer[int]
    replayed: bool
    def __init__(self, panda_ids: _Optional[_Iterable[int]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class KillJobsRequest(_message.Message):
    __slots__ = ("panda_ids", "reason")
    PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    panda_ids: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, panda_ids: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class KillResult(_message.Message):
    __slots__ = ("panda_id", "status", "accepted", "message")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    status: _job_pb2.JobStatus
    accepted: bool
    message: str
    def __init__(self, panda_id: _Optional[int] = ..., status: _Optional[_Union[_job_pb2.JobStatus, str]] = ..., accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class KillJobsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[KillResult]
    def __init__(self, results: _Optional[_Iterable[_Union[KillResult, _Mapping]]] = ...) -> None: ...

class RetryJobsRequest(_message.Message):
    __slots__ = ("panda_ids",)
    PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    panda_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, panda_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class RetryJobsResponse(_message.Message):
    __slots__ = ("new_panda_ids",)
    NEW_PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    new_panda_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, new_panda_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GetJobsRequest(_message.Message):
    __slots__ = ("panda_ids",)
    PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    panda_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, panda_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GetJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("computing_site", "statuses", "prod_source_label", "owner", "task_id", "transformation", "vo", "since", "until", "page_size", "page_token", "job_name", "with_files")
    COMPUTING_SITE_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PROD_SOURCE_LABEL_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMATION_FIELD_NUMBER: _ClassVar[int]
    VO_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    WITH_FILES_FIELD_NUMBER: _ClassVar[int]
    computing_site: str
    statuses: _containers.RepeatedScalarFieldContainer[_job_pb2.JobStatus]
    prod_source_label: str
    owner: str
    task_id: int
    transformation: str
    vo: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    job_name: str
    with_files: bool
    def __init__(self, computing_site: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_job_pb2.JobStatus, str]]] = ..., prod_source_label: _Optional[str] = ..., owner: _Optional[str] = ..., task_id: _Optional[int] = ..., transformation: _Optional[str] = ..., vo: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., job_name: _Optional[str] = ..., with_files: _Optional[bool] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token", "status_counts", "total", "state_counts")
    class StatusCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    STATE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    next_page_token: str
    status_counts: _containers.ScalarMap[str, int]
    total: int
    state_counts: _containers.RepeatedCompositeFieldContainer[_job_pb2.JobStatusCount]
    def __init__(self, jobs: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., status_counts: _Optional[_Mapping[str, int]] = ..., total: _Optional[int] = ..., state_counts: _Optional[_Iterable[_Union[_job_pb2.JobStatusCount, _Mapping]]] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ("panda_ids", "task_id", "owner", "computing_site", "after_event_id")
    PANDA_IDS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    COMPUTING_SITE_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    panda_ids: _containers.RepeatedScalarFieldContainer[int]
    task_id: int
    owner: str
    computing_site: str
    after_event_id: int
    def __init__(self, panda_ids: _Optional[_Iterable[int]] = ..., task_id: _Optional[int] = ..., owner: _Optional[str] = ..., computing_site: _Optional[str] = ..., after_event_id: _Optional[int] = ...) -> None: ...

class GetJobEventsRequest(_message.Message):
    __slots__ = ("panda_id",)
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    def __init__(self, panda_id: _Optional[int] = ...) -> None: ...

class GetJobEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_job_pb2.JobEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_job_pb2.JobEvent, _Mapping]]] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueInfo(_message.Message):
    __slots__ = ("name", "vos", "labels", "backend", "enabled", "status_counts", "connected_pilots", "max_running", "state_counts", "status", "status_reason")
    class StatusCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STATUS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_PILOTS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_FIELD_NUMBER: _ClassVar[int]
    STATE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    vos: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    backend: str
    enabled: bool
    status_counts: _containers.ScalarMap[str, int]
    connected_pilots: int
    max_running: int
    state_counts: _containers.RepeatedCompositeFieldContainer[_job_pb2.JobStatusCount]
    status: str
    status_reason: str
    def __init__(self, name: _Optional[str] = ..., vos: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., backend: _Optional[str] = ..., enabled: _Optional[bool] = ..., status_counts: _Optional[_Mapping[str, int]] = ..., connected_pilots: _Optional[int] = ..., max_running: _Optional[int] = ..., state_counts: _Optional[_Iterable[_Union[_job_pb2.JobStatusCount, _Mapping]]] = ..., status: _Optional[str] = ..., status_reason: _Optional[str] = ...) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueInfo]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueInfo, _Mapping]]] = ...) -> None: ...

class GetJobLogRequest(_message.Message):
    __slots__ = ("panda_id", "member")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    member: str
    def __init__(self, panda_id: _Optional[int] = ..., member: _Optional[str] = ...) -> None: ...

class JobLogChunk(_message.Message):
    __slots__ = ("data", "lfn", "pfn", "size", "members")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LFN_FIELD_NUMBER: _ClassVar[int]
    PFN_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    lfn: str
    pfn: str
    size: int
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, data: _Optional[bytes] = ..., lfn: _Optional[str] = ..., pfn: _Optional[str] = ..., size: _Optional[int] = ..., members: _Optional[_Iterable[str]] = ...) -> None: ...
