"""What the command-line batch backends (Slurm, LSF) and HTCondor share: options and commands.

Every backend validates its ``backend_options`` against the keys it knows (a typo is an error,
never a silent default), and runs its batch commands through :func:`backends.base.run_command`
with the queue's ``bin_dir``, extra ``command_env`` and ``command_timeout_s``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ailuro.errors import InvalidArgument
from backends.base import CommandResult, run_command

COMMON_OPTIONS = frozenset({"bin_dir", "command_env", "command_timeout_s", "keep_final_s", "job_dir"})
"""Options every batch backend accepts (see :class:`CommandRunner` and the backends' docs)."""


def check_options(backend: str, options: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """A copy of ``options``; ``InvalidArgument`` naming any key ``backend`` does not know."""
    unknown = set(options) - allowed - COMMON_OPTIONS
    if unknown:
        raise InvalidArgument(
            f"unknown {backend} backend option(s) {sorted(unknown)} (known: {sorted(allowed | COMMON_OPTIONS)})",
            field="backend_options",
        )
    return dict(options)


def str_list(options: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """Option ``key`` as a tuple of strings (absent: empty); ``InvalidArgument`` otherwise."""
    value = options.get(key, [])
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument("must be a list of strings", field=f"backend_options.{key}")
    return tuple(value)


def str_map(options: Mapping[str, Any], key: str) -> dict[str, str]:
    """Option ``key`` as a str->str table (absent: empty); ``InvalidArgument`` otherwise."""
    value = options.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument("must be a table of strings", field=f"backend_options.{key}")
    return dict(value)


def number(options: Mapping[str, Any], key: str, default: float) -> float:
    """Option ``key`` as a number >= 0."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidArgument("must be a number >= 0", field=f"backend_options.{key}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class CommandRunner:
    """Runs one batch system's commands with the queue's directory, environment and timeout."""

    bin_dir: str = ""
    """Directory holding the commands (empty: found on ``PATH``)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to the factory's environment (e.g. ``SLURM_CONF``, ``LSF_ENVDIR``)."""
    timeout_s: float = 60.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **env: str) -> CommandRunner:
        """Build from the common options; ``env`` adds backend-specific variables (e.g. ``SLURM_CONF``)."""
        bin_dir = options.get("bin_dir", "")
        if not isinstance(bin_dir, str):
            raise InvalidArgument("must be a string", field="backend_options.bin_dir")
        merged = {**str_map(options, "command_env"), **{k: v for k, v in env.items() if v}}
        return cls(bin_dir=bin_dir, env=merged, timeout_s=number(options, "command_timeout_s", 60.0) or 60.0)

    def command(self, name: str) -> str:
        """Full path of ``name`` when ``bin_dir`` is set, else the bare name."""
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def run(self, name: str, args: Sequence[str], *, check: bool = True, cwd: Path | None = None) -> CommandResult:
        """Run ``name args...``; errors carry argv, exit code, stdout and stderr."""
        return run_command([self.command(name), *args], timeout=self.timeout_s, env=self.env, check=check, cwd=cwd)
