"""Typed job errors as the monitor shows them: component and code names next to the numbers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from ailuro import errorcodes
from ailuro.v1 import job_pb2
from dispatcher.store import errors as job_errors

CODE_NAMES: dict[int, str] = {
    value: name.lower()
    for name, value in vars(errorcodes).items()
    if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
}
"""Error number -> short name (``1099 -> stagein_failed``), read from :mod:`ailuro.errorcodes`."""


def component_name(number: int) -> str:
    """``ERROR_COMPONENT_DDM`` -> ``ddm``; unknown numbers as their digits."""
    try:
        return job_pb2.ErrorComponent.Name(number).removeprefix("ERROR_COMPONENT_").lower()  # type: ignore[arg-type]
    except ValueError:
        return str(number)


def as_dicts(errors: Iterable[job_pb2.JobError]) -> list[dict[str, Any]]:
    """Errors as dicts ``{component, code, name, diag}``."""
    return [
        {
            "component": component_name(e.component),
            "code": e.code,
            "name": CODE_NAMES.get(e.code, ""),
            "diag": e.diag,
        }
        for e in errors
    ]


def errors_by_job(conn: Connection, ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """The stored errors of the given jobs (``job_errors``) as :func:`as_dicts`; jobs without errors are absent."""
    return {pid: as_dicts(errs) for pid, errs in job_errors.fetch(conn, ids).items()}
