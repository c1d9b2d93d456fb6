import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueueStatusChange(_message.Message):
    __slots__ = ("queue", "status", "reason", "changed_by", "changed_at")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    status: str
    reason: str
    changed_by: str
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, queue: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., changed_by: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetQueueStatusRequest(_message.Message):
    __slots__ = ("queue", "status", "reason")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    queue: str
    status: str
    reason: str
    def __init__(self, queue: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetQueueStatusResponse(_message.Message):
    __slots__ = ("change",)
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    change: QueueStatusChange
    def __init__(self, change: _Optional[_Union[QueueStatusChange, _Mapping]] = ...) -> None: ...

class GetQueueStatusHistoryRequest(_message.Message):
    __slots__ = ("queue", "limit")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    limit: int
    def __init__(self, queue: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetQueueStatusHistoryResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[QueueStatusChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[QueueStatusChange, _Mapping]]] = ...) -> None: ...

class GetSharesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShareNode(_message.Message):
    __slots__ = ("path", "weight", "target", "usage", "usage_fraction", "priority")
    PATH_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    path: str
    weight: float
    target: float
    usage: float
    usage_fraction: float
    priority: float
    def __init__(self, path: _Optional[str] = ..., weight: _Optional[float] = ..., target: _Optional[float] = ..., usage: _Optional[float] = ..., usage_fraction: _Optional[float] = ..., priority: _Optional[float] = ...) -> None: ...

class GetSharesResponse(_message.Message):
    __slots__ = ("nodes", "half_life_s")
    NODES_FIELD_NUMBER: _ClassVar[int]
    HALF_LIFE_S_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[ShareNode]
    half_life_s: float
    def __init__(self, nodes: _Optional[_Iterable[_Union[ShareNode, _Mapping]]] = ..., half_life_s: _Optional[float] = ...) -> None: ...

class SetShareWeightRequest(_message.Message):
    __slots__ = ("path", "weight")
    PATH_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    path: str
    weight: float
    def __init__(self, path: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class SetShareWeightResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExplainJobRequest(_message.Message):
    __slots__ = ("panda_id",)
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    def __init__(self, panda_id: _Optional[int] = ...) -> None: ...

class QueueVerdict(_message.Message):
    __slots__ = ("queue", "can_run", "reasons")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CAN_RUN_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    can_run: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queue: _Optional[str] = ..., can_run: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainJobResponse(_message.Message):
    __slots__ = ("panda_id", "status", "computing_site", "brokerage_reason", "share_leaf", "share_priority", "claim_position", "claim_waiting", "queues", "advice", "summary")
    PANDA_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPUTING_SITE_FIELD_NUMBER: _ClassVar[int]
    BROKERAGE_REASON_FIELD_NUMBER: _ClassVar[int]
    SHARE_LEAF_FIELD_NUMBER: _ClassVar[int]
    SHARE_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CLAIM_POSITION_FIELD_NUMBER: _ClassVar[int]
    CLAIM_WAITING_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    ADVICE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    panda_id: int
    status: str
    computing_site: str
    brokerage_reason: str
    share_leaf: str
    share_priority: float
    claim_position: int
    claim_waiting: int
    queues: _containers.RepeatedCompositeFieldContainer[QueueVerdict]
    advice: _containers.RepeatedScalarFieldContainer[str]
    summary: str
    def __init__(self, panda_id: _Optional[int] = ..., status: _Optional[str] = ..., computing_site: _Optional[str] = ..., brokerage_reason: _Optional[str] = ..., share_leaf: _Optional[str] = ..., share_priority: _Optional[float] = ..., claim_position: _Optional[int] = ..., claim_waiting: _Optional[int] = ..., queues: _Optional[_Iterable[_Union[QueueVerdict, _Mapping]]] = ..., advice: _Optional[_Iterable[str]] = ..., summary: _Optional[str] = ...) -> None: ...
