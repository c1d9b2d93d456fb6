"""Regenerate the Python stubs under ``ailuro/v1/`` from ``protos/ailuro/v1/*.proto``.

Run ``python protos/generate.py`` after editing a .proto. ``--check`` regenerates into a
temporary folder and exits 1 if the committed files differ (the test suite runs it), so the
committed stubs can never drift from the contract.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_PACKAGE = Path("ailuro") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) over every .proto; return the generated files."""
    from grpc_tools import protoc  # imported here: only needed by developers

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "ailuro" / "v1").glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    argv = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    rc = protoc.main(argv)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    return sorted(p for p in (out_root / OUT_PACKAGE).iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def check() -> list[str]:
    """Return the names of committed stubs that differ from freshly generated ones."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = ROOT / OUT_PACKAGE
        diffs = [
            f.name
            for f in fresh
            if not (committed / f.name).exists() or not filecmp.cmp(f, committed / f.name, shallow=False)
        ]
        fresh_names = {f.name for f in fresh}
        diffs += [
            p.name for p in committed.iterdir() if p.name.endswith(GENERATED_SUFFIXES) and p.name not in fresh_names
        ]
        return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args()
    if args.check:
        diffs = check()
        if diffs:
            print("stale generated stubs (run python protos/generate.py):", ", ".join(diffs))
            return 1
        print("generated stubs are up to date")
        return 0
    generate(ROOT)
    print(f"regenerated {ROOT / OUT_PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
