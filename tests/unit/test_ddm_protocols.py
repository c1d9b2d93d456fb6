"""The file:// protocol plugin, the scheme registry and storage-element resolution."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from ailuro.errors import InvalidArgument, NotFound
from ddm.protocols import (
    FileProtocol,
    HttpProtocol,
    XRootDProtocol,
    join_url,
    path_to_url,
    protocol_for,
    scheme_of,
    url_to_path,
)
from ddm.storage import StorageConfig, StorageResolver, env_var_for


def test_url_to_path_forms(tmp_path: Path) -> None:
    assert url_to_path(f"file://{tmp_path}/a b") == tmp_path / "a b"
    assert url_to_path(f"file://localhost{tmp_path}/x") == tmp_path / "x"
    assert url_to_path("rel/x") == Path("rel/x")
    assert url_to_path(path_to_url(tmp_path / "a b")) == tmp_path / "a b"
    with pytest.raises(InvalidArgument):
        url_to_path("file://otherhost/x")


def test_registry_by_scheme() -> None:
    assert isinstance(protocol_for("/data/x"), FileProtocol)
    assert isinstance(protocol_for("file:///data/x"), FileProtocol)
    assert scheme_of("ROOT://eos//x") == "root"
    assert isinstance(protocol_for("root://eos.example//x"), XRootDProtocol)
    assert isinstance(protocol_for("davs://dcache.example:2880/x"), HttpProtocol)
    with pytest.raises(InvalidArgument, match="no protocol plugin for s3://"):
        protocol_for("s3://bucket/x")


def test_copy_out_in_stat_checksum_delete(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    proto = FileProtocol()
    url = path_to_url(tmp_path / "se" / "scope" / "out.bin")
    result = proto.copy_out(src, url)
    expected = f"{zlib.adler32(data):08x}"
    assert (result.size, result.adler32) == (len(data), expected)
    assert proto.stat(url).size == len(data)
    assert proto.checksum(url) == expected
    # no temporary files are left next to the destination
    assert [p.name for p in (tmp_path / "se" / "scope").iterdir()] == ["out.bin"]
    back = tmp_path / "back.bin"
    assert proto.copy_in(url, back).adler32 == expected
    assert back.read_bytes() == data
    proto.delete(url)
    proto.delete(url)  # idempotent
    with pytest.raises(NotFound):
        proto.stat(url)


def test_missing_source_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        FileProtocol().copy_in(path_to_url(tmp_path / "nope"), tmp_path / "x")
    with pytest.raises(NotFound):
        FileProtocol().checksum(str(tmp_path / "nope"))
    assert not (tmp_path / "x").exists()


def test_join_url() -> None:
    assert join_url("file:///a/", "", "s", "f") == "file:///a/s/f"
    assert join_url("root://h//p", "f") == "root://h//p/f"


def test_resolver_order(tmp_path: Path) -> None:
    env = {env_var_for("CERN-EOS"): "file:///eos/compass", "AILURO_STORAGE_ROOT": str(tmp_path)}
    resolver = StorageResolver(StorageConfig.from_env(env, endpoints={"PINNED": "file:///pinned"}))
    assert env_var_for("CERN-EOS") == "AILURO_SE_CERN_EOS"
    assert resolver.base_url("PINNED") == "file:///pinned"
    assert resolver.file_url("CERN-EOS", lfn="a.root", scope="user.jd") == "file:///eos/compass/user.jd/a.root"
    assert resolver.file_url("", lfn="a.root") == path_to_url(tmp_path / "LOCAL") + "/a.root"
    with pytest.raises(InvalidArgument):
        resolver.file_url("X", lfn="../etc/passwd")


def test_resolver_unknown_se_names_the_variable() -> None:
    resolver = StorageResolver(StorageConfig.from_env({}))
    with pytest.raises(NotFound, match="AILURO_SE_NOWHERE"):
        resolver.base_url("NOWHERE")
