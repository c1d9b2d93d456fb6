"""The committed stubs match the .proto files, and the contract keeps its conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf.descriptor import EnumDescriptor

from ailuro.v1 import ddm_pb2, factory_pb2, job_pb2, pilot_pb2, submission_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_from_protos_changes_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "protos" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _enums() -> list[EnumDescriptor]:
    found: list[EnumDescriptor] = []
    for module in (job_pb2, pilot_pb2, submission_pb2, factory_pb2, ddm_pb2):
        found.extend(module.DESCRIPTOR.enum_types_by_name.values())
    return found


def test_every_enum_has_an_unspecified_zero() -> None:
    enums = _enums()
    assert len(enums) >= 5
    for enum in enums:
        zero = enum.values_by_number[0]
        assert zero.name.endswith("_UNSPECIFIED"), enum.full_name


def test_every_field_is_commented_in_the_proto_source() -> None:
    for proto in sorted((ROOT / "protos" / "ailuro" / "v1").glob("*.proto")):
        for n, line in enumerate(proto.read_text().splitlines(), 1):
            stripped = line.strip()
            is_field = stripped.endswith(";") and "=" in stripped and not stripped.startswith(("option", "//"))
            if is_field and "//" not in stripped:
                # a field or enum value carries a trailing comment, or a comment line just above it
                previous = proto.read_text().splitlines()[n - 2].strip()
                assert previous.startswith("//"), f"{proto.name}:{n} has no comment: {stripped}"
