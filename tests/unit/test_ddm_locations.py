"""Storage locations are resolved against configured SEs, never trusted (issue 12, finding 1)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ailuro.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from ailuro.queues import StorageElementConfig
from ddm.locations import OUTSIDE, StorageLocations, open_regular_file
from ddm.tarballs import TarLimits, walk


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    (root / "DISK").mkdir(parents=True)
    (root / "DISK" / "ok.tgz").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.tgz").write_bytes(b"secret")
    return root


def _locations(storage: Path) -> StorageLocations:
    ses = (
        StorageElementConfig(name="EOS", endpoints=("root://eos.example//eos/compass", "https://eos.example/eos")),
        StorageElementConfig(name="WEB", endpoints=("http://127.0.0.1:8080/se",)),
    )
    return StorageLocations.from_config(ses, roots=(storage,))


def _refused(locs: StorageLocations, url: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        locs.resolve(url, field="files[0].pfn")
    assert info.value.field == "files[0].pfn"
    return info.value


def test_locations_inside_configured_storage_resolve(storage: Path) -> None:
    locs = _locations(storage)
    local = locs.resolve((storage / "DISK" / "ok.tgz").as_uri())
    assert local.scheme == "file" and local.path == str((storage / "DISK" / "ok.tgz").resolve())
    assert locs.resolve(str(storage / "DISK" / "new.tgz")).se == "storage root"  # plain paths, missing files fine
    remote = locs.resolve("root://eos.example:1094//eos/compass/user/x.tgz")
    assert (remote.se, remote.url) == ("EOS", "root://eos.example:1094//eos/compass/user/x.tgz")
    assert locs.resolve("xroot://EOS.example//eos/compass/a%20b").path == "/eos/compass/a b"
    assert locs.resolve("davs://eos.example:443/eos/x").url == "https://eos.example:443/eos/x"
    assert locs.resolve("http://127.0.0.1:8080/se/a.tgz").host == "127.0.0.1:8080"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "/etc/shadow",
        "relative/path.tgz",
        "http://127.0.0.1:8080/admin",  # same host, outside the endpoint's path
        "http://127.0.0.1:8080/sex/a.tgz",  # a prefix of a name is not a directory
        "http://127.0.0.1:8081/se/a.tgz",  # other port
        "http://169.254.169.254/se/a.tgz",  # other host
        "https://127.0.0.1:8080/se/a.tgz",  # other scheme
        "http://user@127.0.0.1:8080/se/a.tgz",  # userinfo
        "http://127.0.0.1:8080/se/a.tgz?x=1",  # query
        "http://127.0.0.1:8080/se/../admin",
        "http://127.0.0.1:8080/se/%2e%2e/admin",
        "root://eos.example//eos/compass/../../etc/passwd",
        "root://eos.example//eos/compass/a\x1b[2J",
        "gsiftp://eos.example/eos/compass/x",
        "file://otherhost/eos/x",
        "",
        "file:///x\x00y",
    ],
)
def test_everything_else_is_refused_naming_the_field(storage: Path, url: str) -> None:
    assert str(_refused(_locations(storage), url)) == f"files[0].pfn: {OUTSIDE}"


def test_dot_dot_and_symlinks_cannot_escape(storage: Path, tmp_path: Path) -> None:
    locs = _locations(storage)
    _refused(locs, f"file://{storage}/DISK/../../outside/secret.tgz")
    (storage / "DISK" / "link.tgz").symlink_to(tmp_path / "outside" / "secret.tgz")
    (storage / "DISK" / "dirlink").symlink_to(tmp_path / "outside")
    _refused(locs, (storage / "DISK" / "link.tgz").as_uri())
    _refused(locs, f"{storage}/DISK/dirlink/secret.tgz")
    # the refusal reads the same whether or not the path exists: nothing about the host leaks
    assert str(_refused(locs, f"{storage}/DISK/dirlink/missing")) == str(_refused(locs, "/etc/passwd"))


def test_with_no_storage_configured_nothing_resolves(storage: Path) -> None:
    locs = StorageLocations.from_config()
    assert not locs.configured
    _refused(locs, (storage / "DISK" / "ok.tgz").as_uri())


def test_open_regular_file_refuses_fifos_and_swapped_symlinks(storage: Path, tmp_path: Path) -> None:
    locs = _locations(storage)
    fd = open_regular_file(locs.resolve(str(storage / "DISK" / "ok.tgz")))
    assert os.read(fd, 10) == b"x"
    os.close(fd)
    os.mkfifo(storage / "DISK" / "fifo.tgz")
    with pytest.raises(FailedPrecondition):  # does not block: opened non-blocking, then refused
        open_regular_file(locs.resolve(str(storage / "DISK" / "fifo.tgz")))
    checked = locs.resolve(str(storage / "DISK" / "later.tgz"))
    (storage / "DISK" / "later.tgz").symlink_to(tmp_path / "outside" / "secret.tgz")  # swapped in after the check
    with pytest.raises(FailedPrecondition):
        open_regular_file(checked)


def test_malformed_endpoint_names_the_storage_element() -> None:
    with pytest.raises(InvalidArgument) as info:
        StorageLocations.from_config((StorageElementConfig(name="BAD", endpoints=("http://h/a/../b",)),))
    assert info.value.field == "storage[BAD].endpoints"


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def test_tar_walk_stops_a_gzip_bomb_and_too_many_members(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tgz"
    with tarfile.open(bomb, "w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo("job/payload.stdout")
        info.size = 8 * 1024 * 1024
        tar.addfile(info, _Zeros(info.size))
    got: list[int] = []
    with pytest.raises(ResourceExhausted, match="unpacks to more than 1048576 bytes") as exc:
        walk(bomb, limits=TarLimits(max_unpacked_bytes=1 << 20), want=lambda n: True, sink=lambda b: got.append(len(b)))
    assert exc.value.field == "pfn" and sum(got) <= 1 << 20
    scan = walk(bomb, limits=TarLimits(), want=lambda n: n.endswith("stdout"), sink=lambda b: None)
    assert scan.names == ("payload.stdout",) and scan.size == 8 * 1024 * 1024

    many = tmp_path / "many.tgz"
    with tarfile.open(many, "w:gz") as tar:
        for i in range(50):
            tar.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO())
    with pytest.raises(ResourceExhausted, match="more than 20 members"):
        walk(many, limits=TarLimits(max_members=20))
    (tmp_path / "not.tgz").write_bytes(b"plain text")
    with pytest.raises(FailedPrecondition, match="not a readable gzip tarball"):
        walk(tmp_path / "not.tgz", limits=TarLimits())
