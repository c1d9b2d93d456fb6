"""Ailuro: a pilot-based workload management system (PanDA-style).

The public API users import::

    from ailuro import Client, InvalidArgument, Job
    from ailuro import job_from_dict, job_to_dict

Names are resolved lazily so that ``import ailuro.errors`` (done by the dispatcher and the
pilot) does not pay for importing the gRPC client stubs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ailuro.client import Client, JobPage
    from ailuro.errors import (
        AiluroError,
        AlreadyExists,
        FailedPrecondition,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        Unavailable,
    )
    from ailuro.jobspec import job_from_dict, job_to_dict, load_jobs_file, status_name
    from ailuro.v1.job_pb2 import File, FileType, Job, JobEvent, JobStatus

_EXPORTS: dict[str, str] = {
    "Client": "ailuro.client",
    "JobPage": "ailuro.client",
    "AiluroError": "ailuro.errors",
    "AlreadyExists": "ailuro.errors",
    "FailedPrecondition": "ailuro.errors",
    "InvalidArgument": "ailuro.errors",
    "NotFound": "ailuro.errors",
    "PermissionDenied": "ailuro.errors",
    "Unavailable": "ailuro.errors",
    "job_from_dict": "ailuro.jobspec",
    "job_to_dict": "ailuro.jobspec",
    "load_jobs_file": "ailuro.jobspec",
    "status_name": "ailuro.jobspec",
    "File": "ailuro.v1.job_pb2",
    "FileType": "ailuro.v1.job_pb2",
    "Job": "ailuro.v1.job_pb2",
    "JobEvent": "ailuro.v1.job_pb2",
    "JobStatus": "ailuro.v1.job_pb2",
}

__all__ = [
    "AiluroError",
    "AlreadyExists",
    "Client",
    "FailedPrecondition",
    "File",
    "FileType",
    "InvalidArgument",
    "Job",
    "JobEvent",
    "JobPage",
    "JobStatus",
    "NotFound",
    "PermissionDenied",
    "Unavailable",
    "__version__",
    "job_from_dict",
    "job_to_dict",
    "load_jobs_file",
    "status_name",
]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ailuro' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
