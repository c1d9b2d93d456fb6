"""PanDA's ``userinterface.Client`` functions, backed by an Ailuro dispatcher.

This module *is* the ``Client`` that :mod:`ailuro.compat.panda` exports, as PanDA's ``Client`` is
a module: scripts call ``Client.submitJobs([job])`` and may set ``Client.baseURL``. Results come in
PanDA's shapes, and failures are returned as a non-zero status with a message rather than
raised, as PanDA's client does, so a script's ``if status != 0`` checks keep working.

The server address is the first of: ``Client.baseURLSSL``, ``Client.baseURL`` (either may be a
``http://host:port/...`` URL; only host and port are used), ``$AILURO_SERVER``, ``$PANDA_URL_SSL``,
``$PANDA_URL``, ``127.0.0.1:50051``. An ``https://`` URL is refused (status 255 and a message)
rather than silently used over plaintext gRPC: this module speaks gRPC; for a PanDA HTTPS URL use
the real panda-client against ``ailuro gateway``. The identity is
``$AILURO_USER`` (anonymous when unset).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ailuro.client import DEFAULT_SERVER, Client, describe_error
from ailuro.compat.panda_spec import JobSpec, job_from_spec, spec_from_job
from ailuro.errors import AiluroError, InvalidArgument, NotFound

EC_OK = 0
"""PanDA's success status."""
EC_Failed = 255
"""PanDA's generic failure status, returned with a message instead of raising."""

baseURL: str | None = None
"""Server address or PanDA-style URL; a script may set it (``Client.baseURL = "host:port"``)."""
baseURLSSL: str | None = None
"""Same as :data:`baseURL`; PanDA scripts set one or the other."""


def server_address() -> str:
    """The ``host:port`` this module talks to (see the module docstring for the order)."""
    for candidate in (
        baseURLSSL,
        baseURL,
        os.environ.get("AILURO_SERVER"),
        os.environ.get("PANDA_URL_SSL"),
        os.environ.get("PANDA_URL"),
    ):
        if candidate:
            return _host_port(candidate)
    return DEFAULT_SERVER


def _host_port(url: str) -> str:
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() == "https":
        raise InvalidArgument(
            "is an https:// URL, which this gRPC client cannot honour (it would send plaintext); "
            "give host:port, or use the real panda-client with `ailuro gateway`",
            field="baseURL",
        )
    return parts.netloc or url


def _client() -> Client:
    return Client(server_address())


def _failure(exc: AiluroError) -> tuple[int, str]:
    return EC_Failed, describe_error(exc)


def submitJobs(
    jobs: Sequence[JobSpec], srvID: Any = None, toPending: bool = False, verbose: bool = False
) -> tuple[int, Any]:
    """Submit ``JobSpec`` objects.

    Returns ``(0, [(PandaID, jobName, {'jobsetID': ...}), ...])`` in input order and sets
    ``PandaID`` on each ``JobSpec``; on failure ``(255, "INVALID_ARGUMENT jobs[0].transformation: ...")``
    and nothing is submitted. ``srvID``, ``toPending`` and ``verbose`` are accepted for compatibility
    and ignored.
    """
    try:
        messages = [job_from_spec(job, field=f"jobs[{i}]") for i, job in enumerate(jobs)]
        with _client() as client:
            ids = client.submit(messages)
    except AiluroError as exc:
        return _failure(exc)
    result = []
    for job, panda_id in zip(jobs, ids, strict=True):
        job.PandaID = panda_id
        jobset = job.jobsetID if job.jobsetID is not None else job.jobDefinitionID
        result.append((panda_id, job.jobName, {"jobsetID": jobset}))
    return EC_OK, result


def _per_id(ids: list[int], fetch: Any) -> list[Any]:
    """Call ``fetch(ids)``; when one id is unknown, fetch one by one so that only it yields ``None``."""
    try:
        return list(fetch(ids))
    except NotFound:
        results: list[Any] = []
        for panda_id in ids:
            try:
                results.extend(fetch([panda_id]))
            except NotFound:
                results.append(None)
        return results


def getJobStatus(ids: Iterable[int | str], verbose: bool = False) -> tuple[int, Any]:
    """``(0, [JobSpec or None, ...])``: the jobs with ``jobStatus`` and their files; ``None`` for unknown ids."""
    wanted = [int(i) for i in ids]
    try:
        with _client() as client:
            jobs = _per_id(wanted, client.get)
    except AiluroError as exc:
        return _failure(exc)
    return EC_OK, [spec_from_job(j) if j is not None else None for j in jobs]


def killJobs(
    ids: Iterable[int | str],
    code: int | None = None,
    verbose: bool = False,
    srvID: Any = None,
    useMailAsID: bool = False,
    keepUnmerged: bool = False,
    jobSubStatus: str | None = None,
) -> tuple[int, Any]:
    """``(0, [True/False, ...])``: True when the kill was accepted, False for final or unknown jobs.

    ``code`` (PanDA's kill code) is recorded in the reason; the other PanDA options are ignored.
    """
    wanted = [int(i) for i in ids]
    reason = "killed by user (PanDA client)" + (f", code {code}" if code is not None else "")
    try:
        with _client() as client:
            results = _per_id(wanted, lambda chunk: client.kill(chunk, reason=reason))
    except AiluroError as exc:
        return _failure(exc)
    return EC_OK, [bool(r is not None and r.accepted) for r in results]
