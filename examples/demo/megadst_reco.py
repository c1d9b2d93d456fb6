#!/usr/bin/env python3
"""A tiny stand-in for a COMPASS reconstruction (``phast`` over a megaDST file), used by ``ailuro demo``.

It reads one input file, "reconstructs" it (a checksum and a byte histogram standing in for
physics), and writes a small JSON summary as its output file. Options let the demo make some jobs
fail on purpose and one run long enough to be killed. Standard library only, so it runs under
any Python 3 a worker node has.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path


def main() -> int:
    """Parse arguments, process the input, write the output; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="input file (staged into the work directory)")
    parser.add_argument("--output", required=True, help="output file to write")
    parser.add_argument("--work-s", type=float, default=0.1, help="seconds of pretend CPU work")
    parser.add_argument("--exit-code", type=int, default=0, help="fail with this code after reading")
    args = parser.parse_args()

    data = Path(args.input).read_bytes()
    print(f"megadst_reco: read {args.input} ({len(data)} bytes)", flush=True)
    if args.exit_code:
        print(f"megadst_reco: corrupted event header in {args.input}, giving up", file=sys.stderr, flush=True)
        return args.exit_code
    deadline = time.monotonic() + args.work_s
    histogram = [0] * 16
    while True:
        for byte in data[:4096]:
            histogram[byte >> 4] += 1
        if time.monotonic() >= deadline:
            break
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    summary = {
        "input": args.input,
        "bytes": len(data),
        "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
        "events": len(data) // 512,
        "histogram": histogram,
    }
    Path(args.output).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"megadst_reco: wrote {args.output} ({summary['events']} events)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
