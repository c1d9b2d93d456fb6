"""Backend names (as queue configs spell them) to backend classes.

Backends are imported lazily, so a factory that only serves local queues never imports (or needs)
the bindings of a batch system it does not use.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from ailuro.errors import InvalidArgument
from ailuro.vocabulary import BackendName
from backends.base import BatchBackend

BACKEND_CLASSES: dict[str, str] = {
    BackendName.LOCAL: "backends.local:LocalBackend",
    BackendName.SLURM: "backends.slurm:SlurmBackend",
    BackendName.HTCONDOR: "backends.htcondor:HTCondorBackend",
    BackendName.LSF: "backends.lsf:LSFBackend",
}
"""name -> "module:Class", one line per backend (the names are :class:`ailuro.vocabulary.BackendName`)."""


def backend_class(name: str) -> type[BatchBackend]:
    """The class implementing backend ``name``; ``InvalidArgument`` if there is none."""
    target = BACKEND_CLASSES.get(name)
    if target is None:
        raise InvalidArgument(
            f"backend {name!r} is not available (available: {', '.join(sorted(BACKEND_CLASSES))})", field="backend"
        )
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, BatchBackend)):
        raise TypeError(f"{target} is not a BatchBackend")
    return cls


def create_backend(
    name: str, *, workdir: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> BatchBackend:
    """Construct backend ``name`` with its own ``workdir`` and the queue's ``backend_options``."""
    cls = backend_class(name)
    return cls(workdir=workdir, options=dict(options or {}))  # type: ignore[call-arg]
