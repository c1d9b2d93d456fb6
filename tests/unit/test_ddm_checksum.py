"""adler32 of files must equal zlib's over the whole content, in the canonical 8-hex-digit form."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from ddm.checksum import CHUNK_SIZE, Adler32, adler32_of_file, format_adler32, normalize_adler32


@pytest.mark.parametrize("size", [0, 1, 4095, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE * 2 + 17])
def test_adler32_of_file_matches_zlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    expected = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert adler32_of_file(path) == expected
    assert adler32_of_file(path, chunk_size=7) == expected


def test_incremental_equals_whole() -> None:
    data = os.urandom(100_000)
    digest = Adler32()
    for i in range(0, len(data), 333):
        digest.update(data[i : i + 333])
    assert digest.hexdigest() == format_adler32(zlib.adler32(data))
    assert digest.size == len(data)


def test_empty_is_00000001() -> None:
    assert Adler32().hexdigest() == "00000001"


def test_format_pads_to_eight_lowercase_digits() -> None:
    assert format_adler32(0xABC) == "00000abc"


@pytest.mark.parametrize(
    ("text", "expected"), [("ABC", "00000abc"), ("0x0000ABCD", "0000abcd"), (" 1a2b3c4d ", "1a2b3c4d")]
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize_adler32(text) == expected


@pytest.mark.parametrize("text", ["", "xyz", "123456789"])
def test_normalize_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_adler32(text)
