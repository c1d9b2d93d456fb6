#!/usr/bin/env python3
"""Stand-in for the merge step: ``merge.py OUTPUT INPUT...`` concatenates the inputs in the order given."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1])
    with open(out, "wb") as fh:
        for name in sys.argv[2:]:
            fh.write(Path(name).read_bytes())
    print(f"merged {len(sys.argv) - 2} file(s) into {out}")


if __name__ == "__main__":
    main()
