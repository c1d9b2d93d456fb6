"""HTCondor backend: pilots as one cluster of ``queue N`` procs through the ``htcondor2`` bindings."""

from backends.htcondor.backend import HTCondorBackend

__all__ = ["HTCondorBackend"]
