"""Helpers shared by the facade and every backend.

Nothing here touches the network or a native library: this module turns
certificate containers into DER bytes, normalises a peer's host name once for
all backends, and builds the one exception shape every backend raises.
"""

# Annotations that are not builtins are quoted instead of ``from __future__
# import annotations``: __future__ is a module import of its own, paid at the
# first context of every process (issue 13).
import base64
import binascii
import ssl

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

# OpenSSL's X509_V_ERR_* numbers (include/openssl/x509_vfy.h). Every backend
# reports these in ``SSLCertVerificationError.verify_code`` so that callers see
# the same codes on Linux, Windows and macOS; the native code goes into the
# message.
X509_V_ERR_UNSPECIFIED = 1
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT = 2
X509_V_ERR_CERT_SIGNATURE_FAILURE = 7
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
X509_V_ERR_CERT_CHAIN_TOO_LONG = 22
X509_V_ERR_CERT_REVOKED = 23
# OpenSSL 3.0 renumbered this one (24 is now NO_ISSUER_PUBLIC_KEY); report
# the number of the OpenSSL this Python links, as the Linux backend does.
X509_V_ERR_INVALID_CA = 79 if ssl.OPENSSL_VERSION_INFO >= (3,) else 24
X509_V_ERR_PATH_LENGTH_EXCEEDED = 25
X509_V_ERR_INVALID_PURPOSE = 26
X509_V_ERR_CERT_UNTRUSTED = 27
X509_V_ERR_CERT_REJECTED = 28
X509_V_ERR_UNABLE_TO_GET_CRL = 3
X509_V_ERR_PERMITTED_VIOLATION = 47
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64
X509_V_ERR_EE_KEY_TOO_SMALL = 66
X509_V_ERR_CA_KEY_TOO_SMALL = 67

# No "-" in a body (base64 has none): an unterminated block cannot swallow
# the next one.
_PEM_CERT_PATTERN = rb"-----BEGIN CERTIFICATE-----\s*([^-]*?)\s*-----END CERTIFICATE-----"
# Compiled on first use: ``re`` is not otherwise loaded by ``import ssl``, and
# only programs that hand PEM text to an intercepting backend need it.
_pem_cert_re: "re.Pattern[bytes] | None" = None


def verification_error(
    code: int, message: str, host: "str | None"
) -> "ssl.SSLCertVerificationError":
    """Build the exception every backend raises for an untrusted peer.

    The text starts like OpenSSL's own (``certificate verify failed: ...``) so
    that code matching on it keeps working, and it names the host because a
    message without the host is useless in a log of many connections.
    """
    target = f" (host {host!r})" if host else ""
    text = (
        f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message.rstrip('.')}{target}"
    )
    err = ssl.SSLCertVerificationError(1, text)
    err.verify_code = code
    err.verify_message = message
    err.library = "SSL"
    err.reason = "CERTIFICATE_VERIFY_FAILED"
    return err


def pem_to_der_list(data: "str | bytes") -> "list[bytes]":
    """Every ``CERTIFICATE`` PEM block of *data* as DER bytes.

    A block whose base64 does not decode is skipped: OpenSSL would reject the
    same block, and the good ones around it must still load.
    """
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    ders = []
    global _pem_cert_re
    if _pem_cert_re is None:
        import re

        _pem_cert_re = re.compile(_PEM_CERT_PATTERN)
    for match in _pem_cert_re.finditer(raw):
        try:
            ders.append(base64.b64decode(b"".join(match.group(1).split()), validate=True))
        except (binascii.Error, ValueError):
            continue
    return ders


def der_element(der: bytes, pos: int, end: "int | None" = None) -> "tuple[int, int, int]":
    """(tag, contents start, contents end) of the DER element at *pos*, which
    must lie within ``der[:end]``.

    The small reader every certificate parser here shares (subject-name
    hashes, the chain's key sizes and signatures, the leaf's IP SANs):
    definite lengths of up to four bytes, low tag numbers, which is all a
    certificate uses; long-form lengths that are not minimal are read, as
    OpenSSL reads them.  Anything else raises ValueError.
    """
    if end is None:
        end = len(der)
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag = der[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not used in certificates")
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def split_der_sequence(data: bytes) -> "list[bytes]":
    """Split concatenated DER certificates (the ``cadata=bytes`` form).

    Each certificate is one ASN.1 SEQUENCE; its length header says where the
    next one starts. A truncated or malformed tail ends the walk.
    """
    ders = []
    pos = 0
    while pos + 2 <= len(data) and data[pos] == 0x30:
        first = data[pos + 1]
        header = 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4 or pos + 2 + count > len(data):
                break
            length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
            header += count
        end = pos + header + length
        if end > len(data):
            break
        ders.append(bytes(data[pos:end]))
        pos = end
    return ders


def normalize_host(host: "str | None") -> "str | None":
    """The one form of a peer name that every backend receives.

    ``SSLContext`` has already IDNA-encoded it (``ssl.SSLContext._encode_hostname``),
    so it is ASCII here. The rule, the same as CPython hands to OpenSSL on
    Linux: a string that parses as an IPv4 or IPv6 address is an address
    (compared with IP SANs only); anything else is a DNS name, compared
    case-insensitively. Brackets, trailing dots and zone ids are *not*
    stripped: OpenSSL would not match them either, and every backend must
    give the same answer for the same input.
    """
    if host is None:
        return None
    if is_ip_address(host):
        import ipaddress  # loaded on first use: ~1.5 ms at import

        return str(ipaddress.ip_address(host))
    return host.lower()


def is_ip_address(host: str) -> bool:
    """True for a literal IPv4/IPv6 address (no brackets, no zone id)."""
    if "%" in host:
        return False
    try:
        import ipaddress

        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
