"""Test certificates for the Windows backend tests.

Runs on the Linux side (``python tests/wine/pki.py OUTDIR``), because the
``cryptography`` wheels for Windows do not load under Wine 8; on a real
Windows machine the tests call :func:`generate` themselves.  Every file is
PEM; ``<name>.pem`` is a certificate, ``<name>.key`` its private key.

Hierarchies (validity relative to *now*, so a cached set never goes stale):

* ``rsa-root`` -> ``rsa-int`` -> ``rsa-leaf`` (RSA 2048)
* ``ec-root`` -> ``ec-int`` -> ``ec-leaf`` (ECDSA P-256)
* under ``rsa-int``: ``expired-leaf``, ``notyet-leaf``, ``clientauth-leaf``
  (EKU clientAuth only), ``crl-leaf`` (CRL distribution point on a closed
  loopback port: no CRL is reachable)
* ``other-root`` -> ``other-leaf``: a CA nobody trusts
* ``sys-root`` -> ``sys-leaf``: added to the Wine prefix's CurrentUser ROOT
  store by a fixture (the "system store" flow)
* ``self-signed``: a leaf that is its own issuer
* under ``rsa-int``, for the security-level checks: ``rsa1024-leaf`` (an
  RSA-1024 key) and ``sha1-leaf`` (signed with SHA-1)

Every leaf names ``localhost``, ``127.0.0.1`` and ``::1``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A loopback port that nothing listens on: the CRL fetch is refused at once.
CLOSED_PORT = 9


def _key(kind: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


def _resigned_with_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """*cert* (signed with SHA-256 by an RSA key) signed again with SHA-1,
    which ``cryptography`` no longer does itself.  Both algorithm identifiers
    have the same length, so only the OID's last byte changes in the TBS."""
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(SHA256_WITH_RSA) == 1
    tbs = tbs.replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _der_tlv(0x30, SHA1_WITH_RSA + b"\x05\x00")
    der = _der_tlv(0x30, tbs + algorithm + _der_tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "truststore-auto tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


class _Issued:
    def __init__(self, cert: x509.Certificate, key: object) -> None:
        self.cert = cert
        self.key = key


def _build(
    subject: str,
    key: object,
    issuer: _Issued | None,
    *,
    ca: bool,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    eku: list[x509.ObjectIdentifier] | None = None,
    crl_url: str | None = None,
    path_length: int | None = None,
    sha1: bool = False,
) -> _Issued:
    public = key.public_key()  # type: ignore[attr-defined]
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject if issuer else _name(subject))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key()  # type: ignore[attr-defined]
            ),
            critical=False,
        )
    if ca:
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
    else:
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=is_rsa,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(eku or [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    builder = builder.add_extension(usage, critical=True)
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    cert = builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    if sha1:
        cert = _resigned_with_sha1(cert, signer)  # type: ignore[arg-type]
    return _Issued(cert, key)


def generate(outdir: str) -> None:
    """Write every certificate and key described in the module docstring."""
    os.makedirs(outdir, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    day = datetime.timedelta(days=1)
    valid = {"not_before": now - day, "not_after": now + 30 * day}
    out: dict[str, _Issued] = {}

    for kind in ("rsa", "ec"):
        root = _build(f"{kind} test root", _key(kind), None, ca=True, **valid)
        inter = _build(
            f"{kind} test intermediate", _key(kind), root, ca=True, path_length=0, **valid
        )
        out[f"{kind}-root"] = root
        out[f"{kind}-int"] = inter
        out[f"{kind}-leaf"] = _build(f"{kind} leaf", _key(kind), inter, ca=False, **valid)

    inter = out["rsa-int"]
    out["expired-leaf"] = _build(
        "expired leaf",
        _key("rsa"),
        inter,
        ca=False,
        not_before=now - 10 * day,
        not_after=now - 2 * day,
    )
    out["notyet-leaf"] = _build(
        "not yet valid leaf",
        _key("rsa"),
        inter,
        ca=False,
        not_before=now + 2 * day,
        not_after=now + 10 * day,
    )
    out["clientauth-leaf"] = _build(
        "client auth leaf",
        _key("rsa"),
        inter,
        ca=False,
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
        **valid,
    )
    out["crl-leaf"] = _build(
        "leaf with an unreachable CRL",
        _key("rsa"),
        inter,
        ca=False,
        crl_url=f"http://127.0.0.1:{CLOSED_PORT}/test.crl",
        **valid,
    )
    other = _build("untrusted test root", _key("rsa"), None, ca=True, **valid)
    out["other-root"] = other
    out["other-leaf"] = _build("untrusted leaf", _key("rsa"), other, ca=False, **valid)
    sys_root = _build("system store test root", _key("rsa"), None, ca=True, **valid)
    out["sys-root"] = sys_root
    out["sys-leaf"] = _build("system store leaf", _key("rsa"), sys_root, ca=False, **valid)
    self_key = _key("rsa")
    # A leaf that is its own issuer (no CA bit, like a typical self-signed server).
    out["self-signed"] = _build("localhost", self_key, None, ca=False, **valid)
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    out["rsa1024-leaf"] = _build("RSA-1024 leaf", weak_key, inter, ca=False, **valid)
    out["sha1-leaf"] = _build("SHA-1 leaf", _key("ec"), inter, ca=False, sha1=True, **valid)

    for name, issued in out.items():
        with open(os.path.join(outdir, f"{name}.pem"), "wb") as f:
            f.write(issued.cert.public_bytes(serialization.Encoding.PEM))
        with open(os.path.join(outdir, f"{name}.key"), "wb") as f:
            f.write(
                issued.key.private_bytes(  # type: ignore[attr-defined]
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )


if __name__ == "__main__":
    generate(sys.argv[1])
