"""The grid-mapfile parser: strict (each problem names its line), bounded, and DNs in grid order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.auth import gridmap
from dispatcher.auth.gridmap import GridmapError, Mapping, dn_of_certificate, dn_of_der, parse_gridmap

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


def make_proxy(leaf: trustme.LeafCert, cn: str = "4711") -> x509.Certificate:
    """An RFC 3820 proxy of ``leaf``: its subject plus one CN, signed by the leaf's key, proxyCertInfo."""
    return make_proxy_with_key(leaf, cn)[0]


def make_proxy_with_key(leaf: trustme.LeafCert, cn: str = "4711") -> tuple[x509.Certificate, Any]:
    """:func:`make_proxy` and the proxy's private key."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    issuer = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    issuer_key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    subject = x509.Name(
        [*issuer.subject.rdns, x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)])]
    )
    now = dt.datetime.now(dt.UTC)
    # ProxyCertInfo ::= SEQUENCE { proxyPolicy SEQUENCE { policyLanguage id-ppl-inheritAll } }
    info = bytes.fromhex("300c300a06082b06010505071501")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.UnrecognizedExtension(gridmap.PROXY_CERT_INFO, info), critical=True)
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert, key


def test_dn_in_grid_order_and_proxy_cns_stripped_only_from_proxies() -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    ca = trustme.CA(organization_name="Grid CA")
    leaf = ca.issue_cert("jdoe@example.org", common_name="Jane Doe", organization_name="CERN")
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    dn = dn_of_certificate(cert)
    assert dn is not None and dn.startswith("/O=CERN/OU=") and dn.endswith("/CN=Jane Doe"), dn
    proxy = make_proxy(leaf)
    assert gridmap.is_proxy(proxy) and not gridmap.is_proxy(cert)
    assert dn_of_certificate(proxy) == dn  # the user's DN, not the proxy's
    assert dn_of_der(proxy.public_bytes(Encoding.DER)) == dn
    # an ordinary certificate whose DN ends in a number is not someone's proxy: nothing is stripped
    numbered = ca.issue_cert("n@example.org", common_name="12345", organization_name="CERN")
    numbered_dn = dn_of_certificate(x509.load_pem_x509_certificate(numbered.cert_chain_pems[0].bytes()))
    assert numbered_dn is not None and numbered_dn.endswith("/CN=12345")
    assert dn_of_der(None) is None and dn_of_der(b"junk") is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from('"/=, #\t\nabcCN0123-._@+'), max_size=200))
def test_any_text_parses_or_is_refused_with_gridmap_error(text: str) -> None:
    try:
        entries = parse_gridmap(text)
    except GridmapError as exc:
        assert str(exc).startswith("gridmap:")
        return
    for dn, mapping in entries.items():
        assert (
            dn.startswith("/")
            and mapping.roles
            and set(mapping.roles) <= {"user", "production", "pilot", "factory", "admin"}
        )
