"""OpenSSL's subject-name hash, computed in Python, against ``openssl x509 -hash``.

The hashed CA directory is looked up by this hash (``<hash>.N``); the
backend decides which bundle certificates such a look-up finds, so its hash
must be OpenSSL's for every name OpenSSL accepts, and "unknown" for every
name OpenSSL refuses.  Checked for every certificate of this machine's store
and for generated names: odd strings, multi-valued RDNs, every string type,
empty values, non-ASCII, white space of every kind.  The certificates are
assembled by hand (a small DER writer below) so that names cryptography
would refuse to build can be tried too; ``openssl x509 -hash`` does not check
signatures.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

if sys.platform in ("win32", "darwin"):
    pytest.skip("the OpenSSL backend is the Linux/BSD one", allow_module_level=True)
if shutil.which("openssl") is None:
    pytest.skip("needs the openssl command", allow_module_level=True)

from truststore import _openssl

# -- a tiny DER writer (independent of the module under test) ------------------


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = (n.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + n.to_bytes(size, "big") + content


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body.extend(reversed(chunk))
    return der(0x06, bytes(body))


CN, ORG, OU, C, EMAIL, SERIAL, ODD = (
    "2.5.4.3",
    "2.5.4.10",
    "2.5.4.11",
    "2.5.4.6",
    "1.2.840.113549.1.9.1",
    "2.5.4.5",
    "1.3.6.1.4.1.99999.1",
)
UTF8, PRINTABLE, T61, IA5, VISIBLE, UNIVERSAL, BMP, NUMERIC = (
    0x0C,
    0x13,
    0x14,
    0x16,
    0x1A,
    0x1C,
    0x1E,
    0x12,
)
ENCODING = {UTF8: "utf-8", BMP: "utf-16-be", UNIVERSAL: "utf-32-be"}


def attr(attribute: str, tag: int, value: str | bytes) -> bytes:
    if isinstance(value, str):
        value = value.encode(ENCODING.get(tag, "latin-1"))
    return der(0x30, oid(attribute) + der(tag, value))


def rdn(*attrs: bytes) -> bytes:
    return der(0x31, b"".join(attrs))  # in the order given, sorted or not


def name(*rdns: bytes) -> bytes:
    return der(0x30, b"".join(rdns))


_SPKI = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)
_ECDSA_SHA256 = der(0x30, oid("1.2.840.10045.4.3.2"))


def certificate(subject: bytes) -> bytes:
    validity = der(0x30, der(0x17, b"250101000000Z") + der(0x17, b"350101000000Z"))
    issuer = name(rdn(attr(CN, UTF8, "issuer")))
    tbs = der(
        0x30,
        der(0xA0, der(0x02, b"\x02"))
        + der(0x02, b"\x01\x23")
        + _ECDSA_SHA256
        + issuer
        + validity
        + subject
        + _SPKI,
    )
    return der(0x30, tbs + _ECDSA_SHA256 + der(0x03, b"\x00" + b"\x30\x06\x02\x01\x01\x02\x01\x01"))


def openssl_hash(cert_der: bytes) -> int | None:
    result = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-hash"],
        input=cert_der,
        capture_output=True,
    )
    if result.returncode != 0:
        return None
    return int(result.stdout.decode().strip(), 16)


# -- this machine's store -------------------------------------------------------------


def _system_certificates() -> list[bytes]:
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        bodies = [b"".join(b.split()) for b in _openssl.certificate_bodies(data) or []]
        return [d for d in (_openssl.decode_body(b) for b in bodies) if d is not None]
    return []


def test_every_certificate_of_the_system_store() -> None:
    certs = _system_certificates()
    if not certs:
        pytest.skip("no system CA bundle on this machine")
    pairs = [(openssl_hash(cert), _openssl.subject_hash(cert)) for cert in certs]
    assert [pair for pair in pairs if pair[0] != pair[1]] == []
    # The planner hashes from the start of the base64 text where it can.
    assert [_openssl._text_subject_hash(base64.b64encode(cert)) for cert in certs] == [
        ours for _, ours in pairs
    ]
    assert len(certs) > 50


# -- generated names --------------------------------------------------------------------

NAMES = {
    "plain": name(rdn(attr(C, PRINTABLE, "DE")), rdn(attr(ORG, UTF8, "Example Org"))),
    "case-and-spaces": name(rdn(attr(CN, UTF8, "  Mixed   CASE  Name "))),
    "every-ascii-space": name(rdn(attr(CN, UTF8, "\ta \t\n\x0b\x0c\r b\r\n"))),
    "printable-upper": name(rdn(attr(CN, PRINTABLE, "ROOT CA  2"))),
    "ia5-email": name(rdn(attr(EMAIL, IA5, "Admin@Example.COM"))),
    "t61-latin1": name(rdn(attr(CN, T61, b"Caf\xe9 \xc9T\xc9"))),
    "visible": name(rdn(attr(CN, VISIBLE, "Visible  String"))),
    "bmp": name(rdn(attr(CN, BMP, "Grüße  ΩMEGA"))),
    "bmp-surrogate-pair": name(rdn(attr(CN, BMP, "emoji \U0001f600"))),
    "bmp-odd-length": name(rdn(attr(CN, BMP, b"\x00A\x00"))),
    "universal": name(rdn(attr(CN, UNIVERSAL, "Astral \U0001d518 Name"))),
    "universal-surrogate": name(rdn(attr(CN, UNIVERSAL, b"\x00\x00\xd8\x00"))),
    "utf8-non-ascii": name(rdn(attr(CN, UTF8, "ÄÖÜ Straße  Ĳ"))),
    "utf8-nbsp-ideographic-space": name(rdn(attr(CN, UTF8, "a\u00a0\u00a0b\u3000c"))),
    "utf8-invalid": name(rdn(attr(CN, UTF8, b"bad \xff\xfe"))),
    "utf8-overlong": name(rdn(attr(CN, UTF8, b"\xc0\xaf"))),
    "utf8-surrogate": name(rdn(attr(CN, UTF8, b"\xed\xa0\x80"))),
    "empty-utf8": name(rdn(attr(CN, UTF8, ""))),
    "empty-printable": name(rdn(attr(CN, PRINTABLE, ""))),
    "only-spaces": name(rdn(attr(CN, UTF8, "    "))),
    "empty-name": name(),
    "empty-rdn": name(rdn(), rdn(attr(CN, UTF8, "after an empty RDN"))),
    "numeric": name(rdn(attr(SERIAL, NUMERIC, "12  34"))),
    "unknown-oid": name(rdn(attr(ODD, UTF8, "Some Value"))),
    "multi-valued-sorted": name(rdn(attr(CN, UTF8, "b"), attr(ORG, UTF8, "a"))),
    "multi-valued-unsorted": name(rdn(attr(ORG, UTF8, "a"), attr(CN, UTF8, "b"))),
    # Sorted as written, but no longer once canonicalised (length changes).
    "multi-valued-sort-after-canon": name(
        rdn(attr(CN, PRINTABLE, "  X"), attr(CN, UTF8, "Yy"), attr(CN, BMP, "Z"))
    ),
    "duplicate-types": name(rdn(attr(OU, UTF8, "One")), rdn(attr(OU, UTF8, "one"))),
    "long-value": name(rdn(attr(CN, UTF8, "Long " * 60))),
    "very-long-value": name(rdn(attr(ORG, UTF8, "x" * 70000))),
    "bit-string": name(rdn(der(0x30, oid(ODD) + der(0x03, b"\x00\xab")))),
    "sequence-value": name(rdn(der(0x30, oid(ODD) + der(0x30, der(0x0C, b"In  Seq"))))),
    "octet-string": name(rdn(der(0x30, oid(ODD) + der(0x04, b"Oct")))),
    "utc-time": name(rdn(der(0x30, oid(ODD) + der(0x17, b"250101000000Z")))),
    "general-string": name(rdn(der(0x30, oid(ODD) + der(0x1B, b"General")))),
    "object-descriptor": name(rdn(der(0x30, oid(ODD) + der(0x07, b"Desc  X")))),
    "context-tag": name(rdn(der(0x30, oid(ODD) + der(0x80, b"ctx")))),
    "long-form-length-not-minimal": name(
        rdn(der(0x30, oid(CN) + b"\x0c\x81\x05Short")),
        rdn(der(0x30, b"\x06\x81\x03\x55\x04\x0a" + b"\x13\x82\x00\x02Or")),
        b"\x31\x81" + bytes([len(attr(OU, IA5, "Unit"))]) + attr(OU, IA5, "Unit"),
    ),
    "sequence-value-long-form": name(rdn(der(0x30, oid(ODD) + b"\x30\x81\x04" + der(0x0C, b"Ab")))),
    "many-rdns": name(*(rdn(attr(OU, UTF8, f"Unit {i}")) for i in range(40))),
}


@pytest.mark.parametrize("case", sorted(NAMES))
def test_generated_name(case: str) -> None:
    cert = certificate(NAMES[case])
    assert _openssl.subject_hash(cert) == openssl_hash(cert)
    assert _openssl._text_subject_hash(base64.b64encode(cert)) == openssl_hash(cert)


_TEXT = st.text(
    alphabet=st.sampled_from([*"aAzZ09 .-\t\n\r\x0b\x0cÄöß€ΩЖ中\u00a0\u3000", "\U0001f600"]),
    max_size=12,
)
_STRING_TAGS = st.sampled_from([UTF8, PRINTABLE, T61, IA5, VISIBLE, BMP, UNIVERSAL, NUMERIC])


def _value(tag: int, text: str) -> bytes:
    if tag in (PRINTABLE, T61, IA5, VISIBLE, NUMERIC):
        return text.encode("latin-1", "replace")
    return text.encode(ENCODING[tag], "surrogatepass")


_ATTR = st.builds(
    lambda attribute, tag, text: attr(attribute, tag, _value(tag, text)),
    st.sampled_from([CN, ORG, OU, C, EMAIL, ODD]),
    _STRING_TAGS,
    _TEXT,
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(_ATTR, min_size=0, max_size=3), min_size=0, max_size=4))
def test_random_names(rdns: list[list[bytes]]) -> None:
    cert = certificate(name(*(rdn(*attrs) for attrs in rdns)))
    assert _openssl.subject_hash(cert) == openssl_hash(cert)
