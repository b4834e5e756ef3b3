"""Odd certificates that trustme cannot make, built with ``cryptography``.

Everything is made relative to now.  ``Issuer.from_trustme`` lets a trustme
CA (the one in the test's "OS store") sign a leaf with unusual properties, so
the only thing wrong with that leaf is the property under test.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_ONE_DAY = datetime.timedelta(days=1)

# What a CA certificate may do with its key: sign certificates and CRLs (and
# OCSP-style digital signatures); the same for every CA the tests make.
CA_KEY_USAGE = x509.KeyUsage(
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


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_key(rsa_bits: int | None = None) -> PrivateKey:
    """A P-256 key (fast), or an RSA key of *rsa_bits*."""
    if rsa_bits is None:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def _general_name(identity: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(identity))
    except ValueError:
        return x509.DNSName(identity)


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key and the chain above it (no root)."""

    cert: x509.Certificate
    key: PrivateKey
    parents: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def chain_pem(self, *, with_parents: bool = True) -> bytes:
        """Leaf first, then the intermediates above it (what a server sends)."""
        certs = [self.cert, *(self.parents if with_parents else ())]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def as_issuer(self) -> Issuer:
        return Issuer(self.cert, self.key, self.parents, is_root=False)


@dataclass(frozen=True)
class Issuer:
    """Something that signs: a root (``parents`` empty) or an intermediate."""

    cert: x509.Certificate
    key: PrivateKey
    parents: tuple[x509.Certificate, ...] = ()
    is_root: bool = True

    @classmethod
    def from_trustme(cls, ca: trustme.CA) -> Issuer:
        key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
        assert isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey))
        return cls(x509.load_pem_x509_certificate(ca.cert_pem.bytes()), key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        *identities: str,
        common_name: str | None = None,
        ca: bool = False,
        basic_constraints: bool = True,
        path_length: int | None = None,
        eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
        key: PrivateKey | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        permitted_dns: Iterable[str] = (),
        serial: int | None = None,
    ) -> Issued:
        """Sign a certificate.

        Defaults give a valid server leaf for *identities*; each keyword
        makes one thing odd.  ``basic_constraints=False`` leaves the
        extension out altogether (a "CA" that never said it is one).
        """
        key = key or new_key()
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "truststore-auto tests"),
                        x509.NameAttribute(
                            NameOID.COMMON_NAME,
                            common_name or f"test {x509.random_serial_number():x}",
                        ),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before or now - _ONE_DAY)
            .not_valid_after(not_after or now + 30 * _ONE_DAY)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if basic_constraints:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                critical=True,
            )
        if ca:
            builder = builder.add_extension(
                CA_KEY_USAGE,
                critical=True,
            )
        permitted = [x509.DNSName(name) for name in permitted_dns]
        if permitted:
            builder = builder.add_extension(
                x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
                critical=True,
            )
        if identities:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(i) for i in identities]),
                critical=False,
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        parents = () if self.is_root else (self.cert, *self.parents)
        return Issued(cert, key, parents)

    def crl(self, revoked_serials: Iterable[int]) -> bytes:
        """A current CRL (PEM) signed by this issuer, revoking *revoked_serials*."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - _ONE_DAY)
            .next_update(now + 7 * _ONE_DAY)
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        for number in revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(number)
                .revocation_date(now - _ONE_DAY)
                .build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def new_root(*, path_length: int | None = None, permitted_dns: Iterable[str] = ()) -> Issuer:
    """A fresh self-signed root CA."""
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "truststore-auto tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"test root {x509.random_serial_number():x}"),
        ]
    )
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + 365 * _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    permitted = [x509.DNSName(n) for n in permitted_dns]
    if permitted:
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
            critical=True,
        )
    return Issuer(builder.sign(key, hashes.SHA256()), key)


def self_signed_leaf(*identities: str) -> Issued:
    """A server certificate that is its own issuer (and not a CA)."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identities[0])])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + 30 * _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(i) for i in identities]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)
