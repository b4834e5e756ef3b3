"""OpenSSL's security-level checks of a peer chain, in pure Python.

On the intercept path (Windows, macOS) OpenSSL is told ``CERT_NONE``, so the
checks it ties to ``SSL_CTX_get_security_level()`` never run: the OS may
accept an RSA-1024 leaf or a SHA-1 signature that the standard library
refuses.  ``check()`` applies them to the chain the peer sent, so that our
verdict is never weaker than the standard library's.

The rule (OpenSSL 3, ``crypto/x509/x509_vfy.c``: ``check_key_level``,
``check_sig_level``, ``check_auth_level``): at level L (capped at 5) every
key needs at least 80/112/128/192/256 security bits (L = 1..5): the leaf's
failing gives ``X509_V_ERR_EE_KEY_TOO_SMALL`` (66), a CA's
``X509_V_ERR_CA_KEY_TOO_SMALL`` (67); every signature in the chain except
the trust anchor's own needs as many bits, else ``X509_V_ERR_CA_MD_TOO_WEAK``
(68).  SHA-1 counts as 63 bits and MD5 as 39 (OpenSSL 3's
``x509_init_sig_info``), so both fail from level 1 (OpenSSL 1.1.1: 80 and
64, by digest size).  Security bits of a key:
RSA/DSA by modulus size (NIST SP 800-57: 1024 -> 80, 2048 -> 112, 3072 ->
128, 7680 -> 192, 15360 -> 256), EC by half the group order's bits, Ed25519
128, Ed448 224.  What cannot be read counts as 0 bits: fail closed.

The chain is followed from the leaf by issuer name through the certificates
the peer sent, then the anchors the program added (``load_verify_locations``);
a self-issued certificate ends it as the anchor.  A weak anchor that only the
OS store holds is not seen here (the OS API does not return the chain it
built); its key size is then the OS policy's business.

Imported only on the intercept path; no dependencies.
"""

# Annotations that are not builtins are quoted instead of ``from __future__
# import annotations``: __future__ is a module import of its own, paid at the
# first context of every process (issue 13).
import functools
import ssl
from collections.abc import Sequence

from . import _common

X509_V_ERR_EE_KEY_TOO_SMALL = 66
X509_V_ERR_CA_KEY_TOO_SMALL = 67
X509_V_ERR_CA_MD_TOO_WEAK = 68

# Minimum security bits per level 1..5 (OpenSSL's minbits_table).
_MIN_BITS = (80, 112, 128, 192, 256)

# -- a minimal DER reader --------------------------------------------------------


class _BadDER(ValueError):
    pass


def _tlv(data: bytes, pos: int) -> "tuple[int, int, int, int]":
    """(tag, start of contents, end of contents, end of the element) at *pos*."""
    try:
        tag, start, end = _common.der_element(data, pos)
    except ValueError as exc:
        raise _BadDER(str(exc)) from None
    return tag, start, end, end


def _children(data: bytes, start: int, end: int) -> "list[tuple[int, int, int, int]]":
    """The elements inside a constructed element's contents, with the
    offset where each begins: (tag, element start, contents start, end)."""
    out = []
    pos = start
    while pos < end:
        tag, body, stop, nxt = _tlv(data, pos)
        if nxt > end:
            raise _BadDER("element overruns its parent")
        out.append((tag, pos, body, stop))
        pos = nxt
    return out


def _oid(data: bytes, start: int, end: int) -> str:
    if start >= end:
        raise _BadDER("empty OID")
    body = data[start:end]
    parts: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    if body[-1] & 0x80:
        raise _BadDER("unterminated OID")
    first = parts[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(p) for p in head + parts[1:])


def _uint_bits(data: bytes, start: int, end: int) -> int:
    """Bit length of a non-negative DER INTEGER."""
    body = data[start:end].lstrip(b"\x00")
    return len(body) * 8 - (8 - body[0].bit_length()) if body else 0


@functools.lru_cache(maxsize=512)
def _parsed(der: bytes) -> "_Cert":
    """Parsed once: the same anchors and intermediates come back on every
    connection."""
    return _Cert(der)


class _Cert:
    """The parts of one certificate the policy needs."""

    __slots__ = ("issuer", "key_bits", "sig_bits", "subject")

    def __init__(self, der: bytes) -> None:
        _, body, end, _ = _tlv(der, 0)
        parts = _children(der, body, end)
        if len(parts) < 3 or parts[0][0] != 0x30 or parts[1][0] != 0x30:
            raise _BadDER("not a certificate")
        tbs = _children(der, parts[0][2], parts[0][3])
        if tbs and tbs[0][0] == 0xA0:  # [0] version
            tbs = tbs[1:]
        if len(tbs) < 6:
            raise _BadDER("short TBSCertificate")
        # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
        self.issuer = der[tbs[2][1] : tbs[2][3]]
        self.subject = der[tbs[4][1] : tbs[4][3]]
        self.key_bits = _key_security_bits(der, tbs[5][2], tbs[5][3])
        self.sig_bits = _signature_security_bits(der, parts[1][2], parts[1][3])


# -- security bits ---------------------------------------------------------------

_RSA_KEYS = {"1.2.840.113549.1.1.1", "1.2.840.113549.1.1.10"}  # rsaEncryption, RSASSA-PSS
_DSA_KEY = "1.2.840.10040.4.1"
_EC_KEY = "1.2.840.10045.2.1"
_FIXED_KEYS = {"1.3.101.112": 128, "1.3.101.113": 224}  # Ed25519, Ed448

# Named curves: bits of the group order.
_CURVE_ORDER_BITS = {
    "1.2.840.10045.3.1.1": 192,  # P-192
    "1.3.132.0.33": 224,  # P-224
    "1.2.840.10045.3.1.7": 256,  # P-256
    "1.3.132.0.10": 256,  # secp256k1
    "1.3.132.0.34": 384,  # P-384
    "1.3.132.0.35": 521,  # P-521
    "1.3.36.3.3.2.8.1.1.7": 256,  # brainpoolP256r1
    "1.3.36.3.3.2.8.1.1.11": 384,  # brainpoolP384r1
    "1.3.36.3.3.2.8.1.1.13": 512,  # brainpoolP512r1
}


def _finite_field_bits(modulus_bits: int, subgroup_bits: int = -1) -> int:
    """OpenSSL's BN_security_bits: RSA (no subgroup) and DSA."""
    if modulus_bits >= 15360:
        bits = 256
    elif modulus_bits >= 7680:
        bits = 192
    elif modulus_bits >= 3072:
        bits = 128
    elif modulus_bits >= 2048:
        bits = 112
    elif modulus_bits >= 1024:
        bits = 80
    else:
        return 0
    if subgroup_bits == -1:
        return bits
    half = subgroup_bits // 2
    return 0 if half < 80 else min(bits, half)


def _ec_bits(order_bits: int) -> int:
    """OpenSSL's EC key security bits from the group order's size."""
    for floor, bits in ((512, 256), (384, 192), (256, 128), (224, 112), (160, 80)):
        if order_bits >= floor:
            return bits
    return order_bits // 2


def _key_security_bits(der: bytes, start: int, end: int) -> int:
    spki = _children(der, start, end)
    if len(spki) != 2 or spki[0][0] != 0x30 or spki[1][0] != 0x03:
        raise _BadDER("bad SubjectPublicKeyInfo")
    algorithm = _children(der, spki[0][2], spki[0][3])
    if not algorithm or algorithm[0][0] != 0x06:
        raise _BadDER("bad key algorithm")
    oid = _oid(der, algorithm[0][2], algorithm[0][3])
    key_start, key_end = spki[1][2] + 1, spki[1][3]  # skip the unused-bits byte
    if oid in _FIXED_KEYS:
        return _FIXED_KEYS[oid]
    if oid in _RSA_KEYS:
        _, body, stop, _ = _tlv(der, key_start)
        numbers = _children(der, body, stop)
        if not numbers or numbers[0][0] != 0x02:
            raise _BadDER("bad RSA key")
        return _finite_field_bits(_uint_bits(der, numbers[0][2], numbers[0][3]))
    if oid == _DSA_KEY:
        if len(algorithm) < 2 or algorithm[1][0] != 0x30:
            return 0  # parameters inherited from the issuer: not supported
        p, q = _children(der, algorithm[1][2], algorithm[1][3])[:2]
        return _finite_field_bits(_uint_bits(der, p[2], p[3]), _uint_bits(der, q[2], q[3]))
    if oid == _EC_KEY:
        if len(algorithm) >= 2 and algorithm[1][0] == 0x06:
            curve = _oid(der, algorithm[1][2], algorithm[1][3])
            if curve in _CURVE_ORDER_BITS:
                return _ec_bits(_CURVE_ORDER_BITS[curve])
        # Another curve: the point's coordinates have the field's size,
        # which is the order's within a bit or two for curves in use.
        point = der[key_start:key_end]
        if point[:1] == b"\x04":
            return _ec_bits((len(point) - 1) // 2 * 8)
        if point[:1] in (b"\x02", b"\x03"):
            return _ec_bits((len(point) - 1) * 8)
        return 0
    return 0  # unknown: OpenSSL could not rate it either


# Signature algorithm -> security bits of its digest (EVP_MD size * 4).
# OpenSSL 3 caps the broken ones below level 1; 1.1.1 (the Windows
# installers of Python 3.10) rates them by size.  Follow the OpenSSL this
# interpreter's ssl module uses, so the verdict is the standard library's.
_MD5, _SHA1 = (39, 63) if ssl.OPENSSL_VERSION_INFO >= (3,) else (64, 80)
_SIGNATURE_BITS = {
    "1.2.840.113549.1.1.2": 0,  # md2WithRSAEncryption
    "1.2.840.113549.1.1.3": 0,  # md4WithRSAEncryption
    "1.2.840.113549.1.1.4": _MD5,
    "1.2.840.113549.1.1.5": _SHA1,
    "1.2.840.10045.4.1": _SHA1,  # ecdsa-with-SHA1
    "1.2.840.10040.4.3": _SHA1,  # dsa-with-sha1
    "1.2.840.113549.1.1.14": 112,  # sha224WithRSAEncryption
    "1.2.840.10045.4.3.1": 112,
    "2.16.840.1.101.3.4.3.1": 112,  # dsa-with-sha224
    "1.2.840.113549.1.1.11": 128,  # sha256WithRSAEncryption
    "1.2.840.10045.4.3.2": 128,
    "2.16.840.1.101.3.4.3.2": 128,  # dsa-with-sha256
    "1.2.840.113549.1.1.12": 192,
    "1.2.840.10045.4.3.3": 192,
    "1.2.840.113549.1.1.13": 256,
    "1.2.840.10045.4.3.4": 256,
    "2.16.840.1.101.3.4.3.9": 112,  # ecdsa-with-SHA3-224
    "2.16.840.1.101.3.4.3.10": 128,
    "2.16.840.1.101.3.4.3.11": 192,
    "2.16.840.1.101.3.4.3.12": 256,
    "2.16.840.1.101.3.4.3.13": 112,  # RSA PKCS#1 v1.5 with SHA3-224
    "2.16.840.1.101.3.4.3.14": 128,
    "2.16.840.1.101.3.4.3.15": 192,
    "2.16.840.1.101.3.4.3.16": 256,
    "1.3.101.112": 128,  # Ed25519
    "1.3.101.113": 224,  # Ed448
}
_RSASSA_PSS = "1.2.840.113549.1.1.10"
_DIGEST_BITS = {
    "1.3.14.3.2.26": _SHA1,
    "2.16.840.1.101.3.4.2.4": 112,  # SHA-224
    "2.16.840.1.101.3.4.2.1": 128,  # SHA-256
    "2.16.840.1.101.3.4.2.2": 192,  # SHA-384
    "2.16.840.1.101.3.4.2.3": 256,  # SHA-512
    "2.16.840.1.101.3.4.2.7": 112,  # SHA3-224
    "2.16.840.1.101.3.4.2.8": 128,
    "2.16.840.1.101.3.4.2.9": 192,
    "2.16.840.1.101.3.4.2.10": 256,
}


def _signature_security_bits(der: bytes, start: int, end: int) -> int:
    parts = _children(der, start, end)
    if not parts or parts[0][0] != 0x06:
        raise _BadDER("bad signature algorithm")
    oid = _oid(der, parts[0][2], parts[0][3])
    if oid != _RSASSA_PSS:
        return _SIGNATURE_BITS.get(oid, 0)
    # RSASSA-PSS-params: hashAlgorithm [0] defaults to SHA-1 (RFC 4055).
    if len(parts) < 2 or parts[1][0] != 0x30:
        return _SHA1
    for tag, _, body, _ in _children(der, parts[1][2], parts[1][3]):
        if tag == 0xA0:
            _, inner, inner_end, _ = _tlv(der, body)
            hash_parts = _children(der, inner, inner_end)
            if not hash_parts or hash_parts[0][0] != 0x06:
                return 0
            return _DIGEST_BITS.get(_oid(der, hash_parts[0][2], hash_parts[0][3]), 0)
    return _SHA1


# -- the policy ------------------------------------------------------------------


def _path(chain: "Sequence[bytes]", anchors: "Sequence[bytes]") -> "list[_Cert]":
    """The leaf and, following issuer names, the sent certificates above it,
    then the added anchor it ends at, if any."""
    path = [_parsed(chain[0])]
    unused = [_parsed(der) for der in chain[1:]]
    while path[-1].issuer != path[-1].subject:
        issuer = next((c for c in unused if c.subject == path[-1].issuer), None)
        if issuer is None:
            for der in anchors:
                anchor = _parsed(der)
                if anchor.subject == path[-1].issuer:
                    path.append(anchor)
                    break
            break
        path.append(issuer)
        unused.remove(issuer)
    return path


def check(
    chain: "Sequence[bytes]", level: int, host: "str | None", anchors: "Sequence[bytes]" = ()
) -> None:
    """Raise ``SSLCertVerificationError`` if the peer's *chain* (DER, leaf
    first), completed from *anchors* (DER), falls short of security *level*,
    as OpenSSL would."""
    if level <= 0 or not chain:
        return
    minimum = _MIN_BITS[min(level, len(_MIN_BITS)) - 1]
    try:
        path = _path(chain, anchors)
    except (_BadDER, IndexError, ValueError) as exc:
        raise _common.verification_error(
            _common.X509_V_ERR_UNSPECIFIED, f"cannot read the peer's certificate chain: {exc}", host
        ) from None
    if path[0].key_bits < minimum:
        raise _common.verification_error(
            X509_V_ERR_EE_KEY_TOO_SMALL, "EE certificate key too weak", host
        )
    anchor_sent = path[-1].issuer == path[-1].subject
    for depth, cert in enumerate(path):
        if depth > 0 and cert.key_bits < minimum:
            raise _common.verification_error(
                X509_V_ERR_CA_KEY_TOO_SMALL, "CA certificate key too weak", host
            )
        if anchor_sent and depth == len(path) - 1:
            break  # the trust anchor's own signature is never checked
        if cert.sig_bits < minimum:
            raise _common.verification_error(
                X509_V_ERR_CA_MD_TOO_WEAK, "CA signature digest algorithm too weak", host
            )
