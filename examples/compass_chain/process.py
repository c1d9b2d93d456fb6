#!/usr/bin/env python3
"""Stand-in for COMPASS reconstruction (phast over one raw file): ``process.py INPUT OUTPUT``.

Writes a small header followed by the input's bytes, so the merged file's checksum can be
predicted from the raw files alone.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    data = src.read_bytes()
    dst.write_bytes(f"mDST of {src.name} ({len(data)} bytes)\n".encode() + data)
    print(f"processed {src} -> {dst}")


if __name__ == "__main__":
    main()
