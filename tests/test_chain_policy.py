"""``_chain_policy`` (issue 10, row 7) against OpenSSL itself.

For chains with many key types, key sizes and signature digests, at every
security level 0-5, ``_chain_policy.check`` must give the verdict and code
that ``openssl verify -auth_level N`` gives for the same chain (the OpenSSL
CLI on this machine; the test fails if it is missing).  End-to-end checks
through a TLS handshake are in test_connection_state.py.
"""

from __future__ import annotations

import datetime
import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from truststore import _chain_policy

NOW = datetime.datetime.now(datetime.timezone.utc)

SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _sign(
    subject: str, key: Any, issuer: tuple[x509.Certificate, Any] | None, *, ca: bool, sig: str
) -> x509.Certificate:
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if isinstance(issuer_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return builder.sign(issuer_key, None)
    if sig == "pss-sha256":
        return builder.sign(
            issuer_key,
            hashes.SHA256(),
            rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH),
        )
    if sig == "sha1":  # cryptography no longer signs with SHA-1: re-sign the TBS
        cert = builder.sign(issuer_key, hashes.SHA256())
        tbs = cert.tbs_certificate_bytes.replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
        signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
        algorithm = _tlv(0x30, SHA1_WITH_RSA + b"\x05\x00")
        der = _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
        return x509.load_der_x509_certificate(der)
    digest = {"sha224": hashes.SHA224(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
              "sha512": hashes.SHA512()}[sig]  # fmt: skip
    return builder.sign(issuer_key, digest)


KEYS = {
    "rsa1024": lambda: rsa.generate_private_key(65537, 1024),
    "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
    "rsa3072": lambda: rsa.generate_private_key(65537, 3072),
    "dsa2048": lambda: dsa.generate_private_key(2048),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "brainpool512": lambda: ec.generate_private_key(ec.BrainpoolP512R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
}

# (leaf key, intermediate key, the intermediate's signature on the leaf,
#  the root's signature on the intermediate); the root is RSA-3072.
CASES = [
    ("rsa1024", "p384", "sha256", "sha256"),
    ("rsa2048", "p384", "sha384", "sha256"),
    ("rsa3072", "p521", "sha512", "sha384"),
    ("dsa2048", "p384", "sha256", "sha256"),
    ("p256", "p384", "sha224", "sha256"),
    ("p256", "rsa1024", "sha256", "sha256"),
    ("p384", "rsa3072", "pss-sha256", "sha256"),
    ("p521", "rsa3072", "sha1", "sha512"),
    ("brainpool512", "p521", "sha512", "sha1"),
    ("ed25519", "ed448", "sha256", "sha256"),
    ("ed448", "ed25519", "sha256", "pss-sha256"),
    ("p384", "rsa2048", "sha384", "sha384"),
]


@pytest.fixture(scope="module")
def root() -> tuple[x509.Certificate, Any]:
    key = KEYS["rsa3072"]()
    return _sign("policy root", key, None, ca=True, sig="sha256"), key


def _openssl_code(
    tmp: Path, chain: list[x509.Certificate], root_pem: bytes, level: int
) -> int | None:
    (tmp / "root.pem").write_bytes(root_pem)
    pems = [c.public_bytes(serialization.Encoding.PEM) for c in chain]
    (tmp / "leaf.pem").write_bytes(pems[0])
    (tmp / "untrusted.pem").write_bytes(b"".join(pems[1:]))
    proc = subprocess.run(
        ["openssl", "verify", "-auth_level", str(level), "-CAfile", str(tmp / "root.pem"),
         "-untrusted", str(tmp / "untrusted.pem"), str(tmp / "leaf.pem")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if proc.returncode == 0:
        return None
    match = re.search(r"error (\d+) at", proc.stdout + proc.stderr)
    assert match, proc
    return int(match.group(1))


def _policy_code(chain: list[x509.Certificate], root_der: bytes, level: int) -> int | None:
    ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    try:
        _chain_policy.check(ders, level, "example.test", anchors=[root_der])
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_code
    return None


@pytest.mark.skipif(ssl.OPENSSL_VERSION_INFO < (3,), reason="the CLI oracle is OpenSSL 3")
@pytest.mark.parametrize(("leaf_key", "int_key", "leaf_sig", "int_sig"), CASES)
def test_same_verdict_as_openssl(
    root: tuple[x509.Certificate, Any],
    tmp_path: Path,
    leaf_key: str,
    int_key: str,
    leaf_sig: str,
    int_sig: str,
) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed (apt-get install openssl)")
    ikey = KEYS[int_key]()
    intermediate = _sign("policy intermediate", ikey, root, ca=True, sig=int_sig)
    leaf = _sign("policy leaf", KEYS[leaf_key](), (intermediate, ikey), ca=False, sig=leaf_sig)
    root_pem = root[0].public_bytes(serialization.Encoding.PEM)
    root_der = root[0].public_bytes(serialization.Encoding.DER)
    verdicts = []
    for level in range(6):
        expected = _openssl_code(tmp_path, [leaf, intermediate], root_pem, level)
        verdicts.append((level, _policy_code([leaf, intermediate], root_der, level), expected))
    assert all(got == expected for _, got, expected in verdicts), verdicts


def test_unreadable_certificate_fails_closed() -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _chain_policy.check([b"\x30\x03\x02\x01\x00"], 1, None)
    _chain_policy.check([b"garbage"], 0, None)  # level 0: nothing is checked
