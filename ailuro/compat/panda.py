"""PanDA compatibility: run a PanDA job-definition script against Ailuro by changing its imports.

Before::

    from pandaserver.taskbuffer.JobSpec import JobSpec
    from pandaserver.taskbuffer.FileSpec import FileSpec
    import pandaserver.userinterface.Client as Client

After::

    from ailuro.compat.panda import Client, FileSpec, JobSpec

``Client`` is a module, like PanDA's, offering ``submitJobs``, ``getJobStatus`` and ``killJobs``
with PanDA's return shapes; set ``Client.baseURL = "host:port"`` (or ``$AILURO_SERVER``) to choose
the dispatcher. The functions are also available at this module's level.
"""

from __future__ import annotations

from ailuro.compat import panda_client as Client
from ailuro.compat.panda_client import EC_OK, EC_Failed, getJobStatus, killJobs, submitJobs
from ailuro.compat.panda_spec import (
    FILE_ATTRIBUTES,
    JOB_ATTRIBUTES,
    MAPPED_JOB_ATTRIBUTES,
    FileSpec,
    JobSpec,
    file_from_spec,
    job_from_spec,
    spec_from_job,
)

__all__ = [
    "EC_OK",
    "FILE_ATTRIBUTES",
    "JOB_ATTRIBUTES",
    "MAPPED_JOB_ATTRIBUTES",
    "Client",
    "EC_Failed",
    "FileSpec",
    "JobSpec",
    "file_from_spec",
    "getJobStatus",
    "job_from_spec",
    "killJobs",
    "spec_from_job",
    "submitJobs",
]
