"""The grid-mapfile parser: strict (each problem names its line), bounded, and DNs in grid order."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from cryptography import x509

from dispatcher.auth import gridmap
from dispatcher.auth.gridmap import GridmapError, Mapping, dn_of_certificate, dn_of_peercert, parse_gridmap

GOOD = """
# a comment, then blank lines

"/DC=ch/DC=cern/OU=Users/CN=Jane Doe" jdoe compass user,production
   "/C=DE/O=GermanGrid/CN=Max Mustermann"   max@example.org   amber.vo   admin
"""


def test_good_file() -> None:
    got = parse_gridmap(GOOD)
    assert got == {
        "/DC=ch/DC=cern/OU=Users/CN=Jane Doe": Mapping(user="jdoe", vo="compass", roles=("production", "user")),
        "/C=DE/O=GermanGrid/CN=Max Mustermann": Mapping(user="max@example.org", vo="amber.vo", roles=("admin",)),
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('"/CN=a" jdoe compass', "expected"),
        ('"/CN=a" jdoe compass user extra', "expected"),
        ("/CN=a jdoe compass user", "expected"),
        ('"/CN=a jdoe compass user', "expected"),
        ('"CN=a,O=b" jdoe compass user', "DN must look like"),
        ('"" jdoe compass user', "DN must look like"),
        ('"/CN=a/CN=12345" jdoe compass user', "proxy"),
        ('"/CN=a" -jdoe compass user', "user"),
        ('"/CN=a" jdoe com/pass user', "VO"),
        ('"/CN=a" jdoe compass root', "role 'root'"),
        ('"/CN=a" jdoe compass user,user', "twice"),
        ('"/CN=a" jdoe compass user,', "role ''"),
        ('"/CN=' + "x" * 1100 + '" jdoe compass user', "at most 1024"),
    ],
)
def test_bad_lines_are_refused_naming_the_line(line: str, message: str) -> None:
    with pytest.raises(GridmapError, match=message) as err:
        parse_gridmap(f"# header\n{line}\n", source="map")
    assert str(err.value).startswith("map:2:")


def test_duplicates_and_bounds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(GridmapError, match="map:3: DN already mapped on line 1"):
        parse_gridmap('"/CN=a" u v user\n"/CN=b" u v user\n"/CN=a" w v user\n', source="map")
    monkeypatch.setattr(gridmap, "MAX_ENTRIES", 2)
    with pytest.raises(GridmapError, match="more than 2 entries"):
        parse_gridmap('"/CN=a" u v user\n"/CN=b" u v user\n"/CN=c" u v user\n')
    big = tmp_path / "big"
    big.write_bytes(b"#" * (gridmap.MAX_FILE_BYTES + 10))
    with pytest.raises(GridmapError, match="larger than"):
        gridmap.load_gridmap(big)
    binary = tmp_path / "bin"
    binary.write_bytes(b'"/CN=\xff" u v user\n')
    with pytest.raises(GridmapError, match="not UTF-8"):
        gridmap.load_gridmap(binary)
    with pytest.raises(GridmapError, match="cannot read"):
        gridmap.load_gridmap(tmp_path / "missing")


def test_dn_in_grid_order_from_a_certificate_and_from_ssl() -> None:
    ca = trustme.CA(organization_name="Grid CA")
    leaf = ca.issue_cert("jdoe@example.org", common_name="Jane Doe", organization_name="CERN")
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    dn = dn_of_certificate(cert)
    assert dn is not None and dn.startswith("/O=CERN/OU=") and dn.endswith("/CN=Jane Doe"), dn
    # ssl.getpeercert()'s form of the same subject gives the same DN; proxy CNs are stripped
    peer = {"subject": ((("organizationName", "CERN"),), (("commonName", "Jane Doe"),), (("commonName", "1234"),))}
    assert dn_of_peercert(peer) == "/O=CERN/CN=Jane Doe"
    assert dn_of_peercert(None) is None and dn_of_peercert({"subject": "x"}) is None
