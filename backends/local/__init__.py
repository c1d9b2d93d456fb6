"""Pilots as local processes: the embedded default backend."""

from __future__ import annotations

from backends.local.backend import NATIVE_STATES, LocalBackend

__all__ = ["NATIVE_STATES", "LocalBackend"]
