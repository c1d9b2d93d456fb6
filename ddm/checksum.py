"""File checksums as the grid stores them: adler32 as 8 lowercase hex digits.

adler32 is what PanDA, Rucio and XRootD (``xrootd.chksum adler32``) record for every file, so
Ailuro records the same; it is cheap enough to compute while streaming a copy.
"""

from __future__ import annotations

import zlib
from pathlib import Path

CHUNK_SIZE = 1 << 20
"""Bytes read per step: large enough to be fast, small enough to keep memory flat on huge files."""


def format_adler32(value: int) -> str:
    """Render an adler32 value the canonical way (8 lowercase hex digits, zero-padded)."""
    return f"{value & 0xFFFFFFFF:08x}"


def normalize_adler32(text: str) -> str:
    """Canonical form of a checksum given by a user or a catalog (``"ABC"`` -> ``"00000abc"``).

    Raises ``ValueError`` when ``text`` is not a hexadecimal number of at most 8 digits.
    """
    stripped = text.strip().lower()
    if stripped.startswith("0x"):
        stripped = stripped[2:]
    if not stripped or len(stripped) > 8:
        raise ValueError(f"not an adler32 checksum: {text!r}")
    return format_adler32(int(stripped, 16))


class Adler32:
    """Incremental adler32, for checksumming data while it is being copied."""

    def __init__(self) -> None:
        self._value = 1  # adler32 of the empty string
        self.size = 0

    def update(self, data: bytes) -> None:
        """Feed the next chunk."""
        self._value = zlib.adler32(data, self._value)
        self.size += len(data)

    def hexdigest(self) -> str:
        """The checksum of everything fed so far."""
        return format_adler32(self._value)


def adler32_of_file(path: str | Path, *, chunk_size: int = CHUNK_SIZE) -> str:
    """adler32 of a file's content, read in chunks (the whole file is never in memory)."""
    digest = Adler32()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
