"""LSF backend: pilots as ``bsub`` job arrays; states from ``bjobs -o ... -json`` (table as fallback).

Tested only against the command-level emulator in ``tests/lsf_emulator``: real LSF was not exercised.
"""

from backends.lsf.backend import LSFBackend

__all__ = ["LSFBackend"]
