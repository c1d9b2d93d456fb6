"""PanDA-style ``JobSpec`` and ``FileSpec`` and their mapping to and from Ailuro's ``Job``.

The classes carry PanDA's camelCase attribute names so that existing job-definition scripts keep
working. Like PanDA's, they use ``__slots__``: assigning a misspelt attribute (``job.computingsite``)
raises ``AttributeError`` instead of being silently ignored. Every attribute starts as ``None``;
``None`` and PanDA's ``'NULL'`` both mean "not set".

Attributes that Ailuro has no use for (``cloud``, ``AtlasRelease``, ``homepackage``, ``cmtConfig``,
``sourceSite``, ...) are accepted so scripts that set them still run, and are not sent to the
server; :data:`MAPPED_JOB_ATTRIBUTES` lists the ones that are.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ailuro.errors import InvalidArgument
from ailuro.jobspec import enum_name, file_type_value, status_name
from ailuro.v1 import job_pb2

# panda-client 2.x JobSpec attribute names in declaration order: the order of the positional
# arrays panda-client sends (the PanDA gateway decodes them by zipping with this list).
WIRE_JOB_ATTRIBUTES: tuple[str, ...] = (
    "PandaID", "jobDefinitionID", "schedulerID", "pilotID", "creationTime", "creationHost",
    "modificationTime", "modificationHost", "AtlasRelease", "transformation", "homepackage",
    "prodSeriesLabel", "prodSourceLabel", "prodUserID", "assignedPriority", "currentPriority",
    "attemptNr", "maxAttempt", "jobStatus", "jobName", "maxCpuCount", "maxCpuUnit", "maxDiskCount",
    "maxDiskUnit", "ipConnectivity", "minRamCount", "minRamUnit", "startTime", "endTime",
    "cpuConsumptionTime", "cpuConsumptionUnit", "commandToPilot", "transExitCode", "pilotErrorCode",
    "pilotErrorDiag", "exeErrorCode", "exeErrorDiag", "supErrorCode", "supErrorDiag", "ddmErrorCode",
    "ddmErrorDiag", "brokerageErrorCode", "brokerageErrorDiag", "jobDispatcherErrorCode",
    "jobDispatcherErrorDiag", "taskBufferErrorCode", "taskBufferErrorDiag", "computingSite",
    "computingElement", "jobParameters", "metadata", "prodDBlock", "dispatchDBlock", "destinationDBlock",
    "destinationSE", "nEvents", "grid", "cloud", "cpuConversion", "sourceSite", "destinationSite",
    "transferType", "taskID", "cmtConfig", "stateChangeTime", "prodDBUpdateTime", "lockedby",
    "relocationFlag", "jobExecutionID", "VO", "pilotTiming", "workingGroup", "processingType",
    "prodUserName", "nInputFiles", "countryGroup", "batchID", "parentID", "specialHandling", "jobsetID",
    "coreCount", "nInputDataFiles", "inputFileType", "inputFileProject", "inputFileBytes",
    "nOutputDataFiles", "outputFileBytes", "jobMetrics", "workQueue_ID", "jediTaskID", "jobSubStatus",
    "actualCoreCount", "reqID", "maxRSS", "maxVMEM", "maxSWAP", "maxPSS", "avgRSS", "avgVMEM",
    "avgSWAP", "avgPSS", "maxWalltime", "nucleus", "eventService", "failedAttempt", "hs06sec", "gshare",
    "hs06", "totRCHAR", "totWCHAR", "totRBYTES", "totWBYTES", "rateRCHAR", "rateWCHAR", "rateRBYTES",
    "rateWBYTES", "resource_type", "diskIO", "memory_leak", "memory_leak_x2", "container_name",
    "job_label", "gco2_regional", "gco2_global", "cpu_architecture_level", "outputFileType",
)  # fmt: skip

JOB_ATTRIBUTES: tuple[str, ...] = (*WIRE_JOB_ATTRIBUTES, "meanCoreCount")
"""Every JobSpec attribute a script may set: panda-client's plus the PanDA server's ``meanCoreCount``."""

# panda-client 2.x FileSpec attribute names in declaration order (18; on the wire followed by null)
WIRE_FILE_ATTRIBUTES: tuple[str, ...] = (
    "rowID", "PandaID", "GUID", "lfn", "type", "dataset", "status", "prodDBlock", "prodDBlockToken",
    "dispatchDBlock", "dispatchDBlockToken", "destinationDBlock", "destinationDBlockToken",
    "destinationSE", "fsize", "md5sum", "checksum", "scope",
)  # fmt: skip

# the PanDA server's FileSpec (22; older scripts pickle/serialise this one, so 23 on the wire)
SERVER_FILE_ATTRIBUTES: tuple[str, ...] = (
    "row_ID", "PandaID", "GUID", "lfn", "type", "dataset", "status", "prodDBlock", "prodDBlockToken",
    "dispatchDBlock", "dispatchDBlockToken", "destinationDBlock", "destinationDBlockToken",
    "destinationSE", "fsize", "md5sum", "checksum", "scope", "jediTaskID", "datasetID", "fileID",
    "attemptNr",
)  # fmt: skip

FILE_ATTRIBUTES: tuple[str, ...] = (*SERVER_FILE_ATTRIBUTES, "rowID")
"""Every FileSpec attribute a script may set (the server's list plus panda-client's ``rowID``)."""

MAPPED_JOB_ATTRIBUTES: dict[str, str] = {
    "jobDefinitionID": "job_definition_id",
    "jobName": "job_name",
    "transformation": "transformation",
    "jobParameters": "job_parameters",
    "destinationDBlock": "destination_dblock",
    "destinationSE": "destination_se",
    "currentPriority": "current_priority",
    "prodSourceLabel": "prod_source_label",
    "computingSite": "computing_site",
    "VO": "vo",
    "taskID": "task_id",
    "processingType": "processing_type",
    "maxAttempt": "max_attempt",
    "coreCount": "cores",
    "minRamCount": "memory_mb",
    "maxWalltime": "max_walltime_s",
}
"""JobSpec attribute -> ``Job`` field, for the attributes sent on submission. Also used:
``assignedPriority`` when ``currentPriority`` is unset, ``jediTaskID`` when ``taskID`` is unset."""

_INT_FIELDS = frozenset(
    {"job_definition_id", "current_priority", "task_id", "max_attempt", "cores", "memory_mb", "max_walltime_s"}
)

_ERROR_ATTRIBUTES: dict[int, tuple[str, str]] = {
    job_pb2.ERROR_COMPONENT_PILOT: ("pilotErrorCode", "pilotErrorDiag"),
    job_pb2.ERROR_COMPONENT_PAYLOAD: ("exeErrorCode", "exeErrorDiag"),
    job_pb2.ERROR_COMPONENT_DDM: ("ddmErrorCode", "ddmErrorDiag"),
    job_pb2.ERROR_COMPONENT_DISPATCHER: ("jobDispatcherErrorCode", "jobDispatcherErrorDiag"),
}


def _unset(value: Any) -> bool:
    return value is None or value == "NULL" or value == ""


class _Spec:
    """Shared behaviour: every attribute starts as ``None``; a readable repr; ``values()``.

    ``__getattr__``/``__setattr__`` exist for the error message (and so type checkers accept
    PanDA's dynamic attribute names); ``__slots__`` is what rejects unknown names.
    """

    __slots__: tuple[str, ...] = ()
    _attributes: tuple[str, ...] = ()

    def __init__(self) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, None)

    def __getattr__(self, name: str) -> Any:
        # only reached for names that are not attributes at all: say which class lacks it
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            object.__setattr__(self, name, value)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} (misspelt?)") from None

    def values(self) -> dict[str, Any]:
        """The attributes that are set, as a dict."""
        return {n: getattr(self, n) for n in self._attributes if getattr(self, n) is not None}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.values().items())
        return f"{type(self).__name__}({shown})"


class FileSpec(_Spec):
    """A file of a job, as PanDA's ``FileSpec``: ``lfn``, ``type`` ('input'/'output'/'log'),
    ``dataset``, ``scope``, ``fsize``, ``checksum`` ('ad:1a2b3c4d'), ``GUID``, ``destinationSE``..."""

    _attributes = FILE_ATTRIBUTES
    __slots__ = FILE_ATTRIBUTES


class JobSpec(_Spec):
    """A job, as PanDA's ``JobSpec``: set attributes, ``addFile`` the log/output/input files, submit."""

    _attributes = JOB_ATTRIBUTES
    __slots__ = (*JOB_ATTRIBUTES, "Files")

    def __init__(self) -> None:
        super().__init__()
        self.Files: list[FileSpec] = []

    def addFile(self, file: FileSpec) -> None:
        """Attach a file to this job (PanDA's ``JobSpec.addFile``)."""
        file.PandaID = self.PandaID
        self.Files.append(file)


def _int(value: Any, *, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"must be an integer, got {value!r}", field=field) from None


def file_from_spec(spec: FileSpec, *, field: str) -> job_pb2.File:
    """The ``File`` message for a ``FileSpec``; ``checksum`` 'ad:xxxxxxxx' becomes ``adler32``."""
    get = spec.__getattribute__  # plain lookups; the names come from PanDA's attribute lists
    out = job_pb2.File()
    if not _unset(get("lfn")):
        out.lfn = str(get("lfn"))
    ftype = get("type")
    if _unset(ftype):
        raise InvalidArgument("is required ('input', 'output' or 'log')", field=f"{field}.type")
    out.type = file_type_value(str(ftype), field=f"{field}.type")
    dataset = get("dataset")
    if _unset(dataset):
        # PanDA scripts often set only destinationDBlock on outputs, prodDBlock on inputs
        dataset = get("destinationDBlock") if out.type != job_pb2.FILE_TYPE_INPUT else get("prodDBlock")
    if not _unset(dataset):
        out.dataset = str(dataset)
    for attr, name in (("GUID", "guid"), ("scope", "scope"), ("destinationSE", "destination_se")):
        if not _unset(get(attr)):
            setattr(out, name, str(get(attr)))
    if not _unset(get("fsize")):
        out.size = _int(get("fsize"), field=f"{field}.fsize")
    checksum = get("checksum")
    if not _unset(checksum):
        kind, _, value = str(checksum).partition(":")
        if kind == "ad" and value:
            out.adler32 = value.lower()
        elif not value and len(kind) == 8:
            out.adler32 = kind.lower()  # a bare 8-digit adler32
        # md5 checksums have no place in the wire contract; they are dropped
    return out


def job_from_spec(spec: JobSpec, *, field: str = "jobs[0]") -> job_pb2.Job:
    """The ``Job`` message for a ``JobSpec`` (the attributes of :data:`MAPPED_JOB_ATTRIBUTES` and files)."""
    get = spec.__getattribute__
    job = job_pb2.Job()
    values: dict[str, Any] = {attr: get(attr) for attr in MAPPED_JOB_ATTRIBUTES}
    if _unset(values["currentPriority"]):
        values["currentPriority"] = get("assignedPriority")
    if _unset(values["taskID"]):
        values["taskID"] = get("jediTaskID")
    for attr, value in values.items():
        if _unset(value):
            continue
        name = MAPPED_JOB_ATTRIBUTES[attr]
        if name in _INT_FIELDS:
            setattr(job, name, _int(value, field=f"{field}.{attr}"))
        else:
            setattr(job, name, str(value))
    job.files.extend(file_from_spec(f, field=f"{field}.Files[{i}]") for i, f in enumerate(spec.Files))
    return job


def _datetime(ts: Any) -> _dt.datetime | None:
    if not ts.seconds and not ts.nanos:
        return None
    # PanDA stores naive UTC datetimes
    return ts.ToDatetime()


def spec_from_job(job: job_pb2.Job) -> JobSpec:
    """A ``JobSpec`` filled from a ``Job`` as the server returns it (``jobStatus``, times, errors ...)."""
    spec = JobSpec()
    for attr, name in MAPPED_JOB_ATTRIBUTES.items():
        setattr(spec, attr, getattr(job, name))
    spec.PandaID = job.panda_id
    spec.jobStatus = status_name(job.status)
    spec.attemptNr = job.attempt_nr
    spec.assignedPriority = job.current_priority
    spec.prodUserID = spec.prodUserName = job.owner
    spec.pilotID = job.pilot_id
    spec.batchID = job.batch_id
    spec.modificationHost = job.node
    spec.parentID = job.parent_panda_id or None
    spec.jediTaskID = job.task_id
    spec.creationTime = _datetime(job.creation_time)
    spec.modificationTime = _datetime(job.modification_time)
    spec.startTime = _datetime(job.start_time)
    spec.endTime = _datetime(job.end_time)
    spec.cpuConsumptionTime = int(job.metrics.cpu_time_s)
    spec.cpuConsumptionUnit = "s"
    spec.maxRSS = job.metrics.max_rss_kb
    spec.transExitCode = job.metrics.exit_code
    for attrs in _ERROR_ATTRIBUTES.values():
        setattr(spec, attrs[0], 0)
    for error in job.errors:
        code_attr, diag_attr = _ERROR_ATTRIBUTES.get(error.component, ("pilotErrorCode", "pilotErrorDiag"))
        setattr(spec, code_attr, error.code)
        setattr(spec, diag_attr, error.diag)
    for f in job.files:
        fs = FileSpec()
        fs.PandaID = job.panda_id
        fs.lfn = f.lfn
        fs.GUID = f.guid
        fs.type = enum_name(job_pb2.FileType.DESCRIPTOR, f.type)
        fs.dataset = f.dataset
        fs.scope = f.scope
        fs.fsize = f.size
        fs.checksum = f"ad:{f.adler32}" if f.adler32 else None
        fs.status = f.status
        fs.destinationSE = f.destination_se or job.destination_se
        fs.destinationDBlock = job.destination_dblock if f.type != job_pb2.FILE_TYPE_INPUT else None
        spec.Files.append(fs)
    return spec
