"""Windows backend: verify a server's chain with CryptoAPI (crypt32.dll).

After a client handshake the facade hands us the certificates the peer sent
(DER, leaf first).  We ask Windows to build a chain for the leaf and to judge
it, the way its own TLS stack (SChannel) does:

1. ``CertGetCertificateChain`` builds the chain with the *default* chain
   engine, i.e. the CurrentUser view of the system stores (which includes
   the LocalMachine ``ROOT`` store, group policy and enterprise roots), with
   the peer's other certificates in an in-memory store as helpers only.
   The requested usage is serverAuth, so a certificate not meant for TLS
   servers fails.
2. ``CertVerifyCertificateChainPolicy(CERT_CHAIN_POLICY_SSL)`` applies the
   SSL policy, including the DNS name check.
3. The chain's ``TrustStatus.dwErrorStatus`` must be empty as well: some
   implementations (Wine 8) let a chain that stops at an unknown CA through
   the SSL policy, and any error bit the engine set must mean "no".
4. Certificates loaded with ``load_verify_locations()`` are extra anchors:
   when steps 1-3 fail because the root is unknown or the chain stops early
   (possibly among other reasons), the chain is built again with a private
   engine whose *exclusive* roots are those certificates, and the chain's
   root must then be one of them, byte for byte.  If no such engine can be
   made, the default engine builds with the anchors as helper certificates
   and the same byte-for-byte root check decides (never "trusted" by
   default).

IP-address host names are checked here, against the leaf's iPAddress
subjectAltName entries only (as OpenSSL and CPython do), because the SSL
policy's handling of IP literals differs between Windows versions and Wine.

Revocation follows ``verify_flags``: ``VERIFY_CRL_CHECK_LEAF`` checks the leaf,
``VERIFY_CRL_CHECK_CHAIN`` every certificate but the root.  When a status
cannot be obtained (no CRL/OCSP location in the certificate, or none
reachable: offline) the certificate is rejected with
``X509_V_ERR_UNABLE_TO_GET_CRL``, which is what OpenSSL does on Linux when it
has no CRL.  With neither flag, revocation is not checked.  Missing
intermediates are not fetched from the network (``CERT_CHAIN_DISABLE_AIA``):
a server that does not send its chain fails, as on Linux, unless Windows
already holds the intermediate in its own stores.

Microsoft documentation for every call is cited next to its prototype
(https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/).
"""

# Annotations that are not builtins are quoted instead of ``from __future__
# import annotations``: __future__ is a module import of its own, paid at the
# first context of every process (issue 13).
import contextlib
import ctypes
import ipaddress
import ssl
import sys
import threading
from collections.abc import Sequence
from ctypes import POINTER, Structure, byref, c_char_p, c_int, c_int32, c_ubyte, c_uint32, c_void_p
from typing import Any

from . import _common

__all__ = ["Verifier", "describe_store", "store_certificates"]

# -- wincrypt.h constants (values from Microsoft's documentation) -------------

DWORD = c_uint32
BOOL = c_int
LONG = c_int32

X509_ASN_ENCODING = 0x00000001
PKCS_7_ASN_ENCODING = 0x00010000
_ENCODING = X509_ASN_ENCODING | PKCS_7_ASN_ENCODING

CERT_STORE_PROV_MEMORY = 2  # a LPCSTR provider id, passed as an integer pointer
CERT_STORE_ADD_USE_EXISTING = 2
CERT_CLOSE_STORE_CHECK_FLAG = 0x00000002

USAGE_MATCH_TYPE_AND = 0
SZ_OID_PKIX_KP_SERVER_AUTH = b"1.3.6.1.5.5.7.3.1"

# CertGetCertificateChain dwFlags
CERT_CHAIN_REVOCATION_CHECK_END_CERT = 0x10000000
CERT_CHAIN_REVOCATION_CHECK_CHAIN_EXCLUDE_ROOT = 0x40000000
CERT_CHAIN_DISABLE_AIA = 0x00002000

# CERT_CHAIN_ENGINE_CONFIG.dwExclusiveFlags
CERT_CHAIN_EXCLUSIVE_ENABLE_CA_FLAG = 0x00000001

CERT_CHAIN_POLICY_SSL = 4  # a LPCSTR policy id, passed as an integer pointer
CERT_CHAIN_POLICY_ALLOW_UNKNOWN_CA_FLAG = 0x00000010
AUTHTYPE_SERVER = 2
SECURITY_FLAG_IGNORE_UNKNOWN_CA = 0x00000100
SECURITY_FLAG_IGNORE_CERT_CN_INVALID = 0x00001000

# CERT_TRUST_STATUS.dwErrorStatus bits
CERT_TRUST_IS_NOT_TIME_VALID = 0x00000001
CERT_TRUST_IS_NOT_TIME_NESTED = 0x00000002  # documented as obsolete; not a TLS error
CERT_TRUST_IS_REVOKED = 0x00000004
CERT_TRUST_IS_NOT_SIGNATURE_VALID = 0x00000008
CERT_TRUST_IS_NOT_VALID_FOR_USAGE = 0x00000010
CERT_TRUST_IS_UNTRUSTED_ROOT = 0x00000020
CERT_TRUST_REVOCATION_STATUS_UNKNOWN = 0x00000040
CERT_TRUST_IS_CYCLIC = 0x00000080
CERT_TRUST_INVALID_EXTENSION = 0x00000100
CERT_TRUST_INVALID_POLICY_CONSTRAINTS = 0x00000200
CERT_TRUST_INVALID_BASIC_CONSTRAINTS = 0x00000400
CERT_TRUST_INVALID_NAME_CONSTRAINTS = 0x00000800
CERT_TRUST_HAS_NOT_SUPPORTED_NAME_CONSTRAINT = 0x00001000
CERT_TRUST_HAS_NOT_DEFINED_NAME_CONSTRAINT = 0x00002000
CERT_TRUST_HAS_NOT_PERMITTED_NAME_CONSTRAINT = 0x00004000
CERT_TRUST_HAS_EXCLUDED_NAME_CONSTRAINT = 0x00008000
CERT_TRUST_IS_PARTIAL_CHAIN = 0x00010000
CERT_TRUST_HAS_WEAK_SIGNATURE = 0x00100000
CERT_TRUST_IS_OFFLINE_REVOCATION = 0x01000000
CERT_TRUST_IS_EXPLICIT_DISTRUST = 0x04000000
CERT_TRUST_HAS_NOT_SUPPORTED_CRITICAL_EXT = 0x08000000

_UNKNOWN_ISSUER_BITS = CERT_TRUST_IS_UNTRUSTED_ROOT | CERT_TRUST_IS_PARTIAL_CHAIN
_REVOCATION_UNKNOWN_BITS = CERT_TRUST_REVOCATION_STATUS_UNKNOWN | CERT_TRUST_IS_OFFLINE_REVOCATION
_NAME_CONSTRAINT_BITS = (
    CERT_TRUST_INVALID_NAME_CONSTRAINTS
    | CERT_TRUST_HAS_NOT_SUPPORTED_NAME_CONSTRAINT
    | CERT_TRUST_HAS_NOT_DEFINED_NAME_CONSTRAINT
    | CERT_TRUST_HAS_NOT_PERMITTED_NAME_CONSTRAINT
    | CERT_TRUST_HAS_EXCLUDED_NAME_CONSTRAINT
)

# HRESULTs (winerror.h) the SSL policy reports in CERT_CHAIN_POLICY_STATUS.dwError.
CERT_E_EXPIRED = 0x800B0101
CERT_E_VALIDITYPERIODNESTING = 0x800B0102
CERT_E_ROLE = 0x800B0103
CERT_E_PATHLENCONST = 0x800B0104
CERT_E_CRITICAL = 0x800B0105
CERT_E_PURPOSE = 0x800B0106
CERT_E_ISSUERCHAINING = 0x800B0107
CERT_E_MALFORMED = 0x800B0108
CERT_E_UNTRUSTEDROOT = 0x800B0109
CERT_E_CHAINING = 0x800B010A
TRUST_E_FAIL = 0x800B010B
CERT_E_REVOKED = 0x800B010C
CERT_E_UNTRUSTEDTESTROOT = 0x800B010D
CERT_E_REVOCATION_FAILURE = 0x800B010E
CERT_E_CN_NO_MATCH = 0x800B010F
CERT_E_WRONG_USAGE = 0x800B0110
TRUST_E_EXPLICIT_DISTRUST = 0x800B0111
CERT_E_UNTRUSTEDCA = 0x800B0112
CERT_E_INVALID_POLICY = 0x800B0113
CERT_E_INVALID_NAME = 0x800B0114
TRUST_E_CERT_SIGNATURE = 0x80096004
TRUST_E_BASIC_CONSTRAINTS = 0x80096019
CRYPT_E_REVOKED = 0x80092010
CRYPT_E_NO_REVOCATION_CHECK = 0x80092012
CRYPT_E_REVOCATION_OFFLINE = 0x80092013
E_INVALIDARG = 0x80070057
ERROR_INVALID_PARAMETER = 87

_REVOCATION_UNKNOWN_ERRORS = frozenset(
    {CERT_E_REVOCATION_FAILURE, CRYPT_E_NO_REVOCATION_CHECK, CRYPT_E_REVOCATION_OFFLINE}
)

# Our own wording: FormatMessageW has no text for these under Wine, and the
# Windows text ("A required certificate is not within its validity period
# when verifying against the current system clock or the timestamp in the
# signed file.") speaks of signed files.  Code -> (name, text, OpenSSL code).
_POLICY_ERRORS: "dict[int, tuple[str, str, int]]" = {
    CERT_E_EXPIRED: (
        "CERT_E_EXPIRED",
        "certificate has expired or is not yet valid",
        _common.X509_V_ERR_CERT_HAS_EXPIRED,
    ),
    CERT_E_VALIDITYPERIODNESTING: (
        "CERT_E_VALIDITYPERIODNESTING",
        "certificate validity is not nested in its issuer's",
        _common.X509_V_ERR_CERT_HAS_EXPIRED,
    ),
    CERT_E_ROLE: (
        "CERT_E_ROLE",
        "a certificate that is not a CA was used as an issuer",
        _common.X509_V_ERR_INVALID_CA,
    ),
    CERT_E_PATHLENCONST: (
        "CERT_E_PATHLENCONST",
        "path length constraint exceeded",
        _common.X509_V_ERR_PATH_LENGTH_EXCEEDED,
    ),
    CERT_E_CRITICAL: (
        "CERT_E_CRITICAL",
        "certificate has an unsupported critical extension",
        _common.X509_V_ERR_UNSPECIFIED,
    ),
    CERT_E_PURPOSE: (
        "CERT_E_PURPOSE",
        "certificate is not valid for server authentication",
        _common.X509_V_ERR_INVALID_PURPOSE,
    ),
    CERT_E_ISSUERCHAINING: (
        "CERT_E_ISSUERCHAINING",
        "certificate was not issued by its parent in the chain",
        _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
    ),
    CERT_E_MALFORMED: (
        "CERT_E_MALFORMED",
        "certificate is malformed",
        _common.X509_V_ERR_UNSPECIFIED,
    ),
    CERT_E_UNTRUSTEDROOT: (
        "CERT_E_UNTRUSTEDROOT",
        "certificate chain ends in a root that the Windows certificate store does not trust",
        _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    ),
    CERT_E_CHAINING: (
        "CERT_E_CHAINING",
        "no chain to a trusted root could be built (missing intermediate or unknown issuer)",
        _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    ),
    TRUST_E_FAIL: (
        "TRUST_E_FAIL",
        "certificate trust verification failed",
        _common.X509_V_ERR_UNSPECIFIED,
    ),
    CERT_E_REVOKED: (
        "CERT_E_REVOKED",
        "certificate has been revoked",
        _common.X509_V_ERR_CERT_REVOKED,
    ),
    CRYPT_E_REVOKED: (
        "CRYPT_E_REVOKED",
        "certificate has been revoked",
        _common.X509_V_ERR_CERT_REVOKED,
    ),
    CERT_E_UNTRUSTEDTESTROOT: (
        "CERT_E_UNTRUSTEDTESTROOT",
        "certificate chain ends in an untrusted test root",
        _common.X509_V_ERR_CERT_UNTRUSTED,
    ),
    CERT_E_REVOCATION_FAILURE: (
        "CERT_E_REVOCATION_FAILURE",
        "revocation status could not be checked",
        _common.X509_V_ERR_UNABLE_TO_GET_CRL,
    ),
    CRYPT_E_NO_REVOCATION_CHECK: (
        "CRYPT_E_NO_REVOCATION_CHECK",
        "revocation status could not be checked (no CRL or OCSP location, or no response)",
        _common.X509_V_ERR_UNABLE_TO_GET_CRL,
    ),
    CRYPT_E_REVOCATION_OFFLINE: (
        "CRYPT_E_REVOCATION_OFFLINE",
        "revocation status could not be checked (revocation server offline)",
        _common.X509_V_ERR_UNABLE_TO_GET_CRL,
    ),
    CERT_E_CN_NO_MATCH: (
        "CERT_E_CN_NO_MATCH",
        "hostname mismatch, certificate is not valid for this name",
        _common.X509_V_ERR_HOSTNAME_MISMATCH,
    ),
    CERT_E_WRONG_USAGE: (
        "CERT_E_WRONG_USAGE",
        "certificate is not valid for server authentication",
        _common.X509_V_ERR_INVALID_PURPOSE,
    ),
    TRUST_E_EXPLICIT_DISTRUST: (
        "TRUST_E_EXPLICIT_DISTRUST",
        "certificate is explicitly distrusted by the Windows certificate store",
        _common.X509_V_ERR_CERT_REJECTED,
    ),
    CERT_E_UNTRUSTEDCA: (
        "CERT_E_UNTRUSTEDCA",
        "an issuing CA in the chain is not trusted",
        _common.X509_V_ERR_CERT_UNTRUSTED,
    ),
    CERT_E_INVALID_POLICY: (
        "CERT_E_INVALID_POLICY",
        "certificate policy constraints are violated",
        _common.X509_V_ERR_UNSPECIFIED,
    ),
    CERT_E_INVALID_NAME: (
        "CERT_E_INVALID_NAME",
        "certificate name constraints are violated",
        _common.X509_V_ERR_PERMITTED_VIOLATION,
    ),
    TRUST_E_CERT_SIGNATURE: (
        "TRUST_E_CERT_SIGNATURE",
        "certificate signature failure",
        _common.X509_V_ERR_CERT_SIGNATURE_FAILURE,
    ),
    TRUST_E_BASIC_CONSTRAINTS: (
        "TRUST_E_BASIC_CONSTRAINTS",
        "an issuer's basic constraints are invalid",
        _common.X509_V_ERR_INVALID_CA,
    ),
}

# dwErrorStatus bits, most telling first: (bit, name, text, OpenSSL code).
_STATUS_ERRORS: "tuple[tuple[int, str, str, int], ...]" = (
    (
        CERT_TRUST_IS_EXPLICIT_DISTRUST,
        "CERT_TRUST_IS_EXPLICIT_DISTRUST",
        "certificate is explicitly distrusted by the Windows certificate store",
        _common.X509_V_ERR_CERT_REJECTED,
    ),
    (
        CERT_TRUST_IS_REVOKED,
        "CERT_TRUST_IS_REVOKED",
        "certificate has been revoked",
        _common.X509_V_ERR_CERT_REVOKED,
    ),
    (
        CERT_TRUST_IS_NOT_SIGNATURE_VALID,
        "CERT_TRUST_IS_NOT_SIGNATURE_VALID",
        "certificate signature failure",
        _common.X509_V_ERR_CERT_SIGNATURE_FAILURE,
    ),
    (
        CERT_TRUST_IS_NOT_TIME_VALID,
        "CERT_TRUST_IS_NOT_TIME_VALID",
        "certificate has expired or is not yet valid",
        _common.X509_V_ERR_CERT_HAS_EXPIRED,
    ),
    (
        CERT_TRUST_IS_PARTIAL_CHAIN,
        "CERT_TRUST_IS_PARTIAL_CHAIN",
        "no chain to a trusted root could be built (missing intermediate or unknown issuer)",
        _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    ),
    (
        CERT_TRUST_IS_UNTRUSTED_ROOT,
        "CERT_TRUST_IS_UNTRUSTED_ROOT",
        "certificate chain ends in a root that the Windows certificate store does not trust",
        _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    ),
    (
        CERT_TRUST_IS_CYCLIC,
        "CERT_TRUST_IS_CYCLIC",
        "certificate chain is cyclic",
        _common.X509_V_ERR_UNSPECIFIED,
    ),
    (
        CERT_TRUST_IS_NOT_VALID_FOR_USAGE,
        "CERT_TRUST_IS_NOT_VALID_FOR_USAGE",
        "certificate is not valid for server authentication",
        _common.X509_V_ERR_INVALID_PURPOSE,
    ),
    (
        CERT_TRUST_INVALID_BASIC_CONSTRAINTS,
        "CERT_TRUST_INVALID_BASIC_CONSTRAINTS",
        "an issuer's basic constraints are invalid",
        _common.X509_V_ERR_INVALID_CA,
    ),
    (
        _NAME_CONSTRAINT_BITS,
        "CERT_TRUST_*_NAME_CONSTRAINT(S)",
        "certificate name constraints are violated",
        _common.X509_V_ERR_PERMITTED_VIOLATION,
    ),
    (
        _REVOCATION_UNKNOWN_BITS,
        "CERT_TRUST_REVOCATION_STATUS_UNKNOWN",
        "revocation status could not be checked (no CRL reachable)",
        _common.X509_V_ERR_UNABLE_TO_GET_CRL,
    ),
    (
        CERT_TRUST_HAS_WEAK_SIGNATURE,
        "CERT_TRUST_HAS_WEAK_SIGNATURE",
        "certificate uses a weak signature algorithm or key",
        _common.X509_V_ERR_CA_KEY_TOO_SMALL,
    ),
    (
        CERT_TRUST_HAS_NOT_SUPPORTED_CRITICAL_EXT | CERT_TRUST_INVALID_EXTENSION,
        "CERT_TRUST_INVALID_EXTENSION",
        "certificate has an invalid or unsupported critical extension",
        _common.X509_V_ERR_UNSPECIFIED,
    ),
)


# -- structures (layouts from Microsoft's wincrypt.h documentation) -----------


class CERT_CONTEXT(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_context
    _fields_ = [
        ("dwCertEncodingType", DWORD),
        ("pbCertEncoded", POINTER(c_ubyte)),
        ("cbCertEncoded", DWORD),
        ("pCertInfo", c_void_p),
        ("hCertStore", c_void_p),
    ]


class CERT_TRUST_STATUS(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_trust_status
    _fields_ = [("dwErrorStatus", DWORD), ("dwInfoStatus", DWORD)]


class CERT_CHAIN_ELEMENT(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_chain_element
    _fields_ = [
        ("cbSize", DWORD),
        ("pCertContext", POINTER(CERT_CONTEXT)),
        ("TrustStatus", CERT_TRUST_STATUS),
        ("pRevocationInfo", c_void_p),
        ("pIssuanceUsage", c_void_p),
        ("pApplicationUsage", c_void_p),
        ("pwszExtendedErrorInfo", c_void_p),
    ]


class CERT_SIMPLE_CHAIN(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_simple_chain
    _fields_ = [
        ("cbSize", DWORD),
        ("TrustStatus", CERT_TRUST_STATUS),
        ("cElement", DWORD),
        ("rgpElement", POINTER(POINTER(CERT_CHAIN_ELEMENT))),
        ("pTrustListInfo", c_void_p),
        ("fHasRevocationFreshnessTime", BOOL),
        ("dwRevocationFreshnessTime", DWORD),
    ]


class CERT_CHAIN_CONTEXT(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_chain_context
    # Only the fields up to rgpChain are read; they exist in every version.
    _fields_ = [
        ("cbSize", DWORD),
        ("TrustStatus", CERT_TRUST_STATUS),
        ("cChain", DWORD),
        ("rgpChain", POINTER(POINTER(CERT_SIMPLE_CHAIN))),
    ]


class CERT_ENHKEY_USAGE(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-ctl_usage
    _fields_ = [("cUsageIdentifier", DWORD), ("rgpszUsageIdentifier", POINTER(c_char_p))]


class CERT_USAGE_MATCH(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_usage_match
    _fields_ = [("dwType", DWORD), ("Usage", CERT_ENHKEY_USAGE)]


class CERT_CHAIN_PARA(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_chain_para
    # Without the CERT_CHAIN_PARA_HAS_EXTRA_FIELDS part: the short size is
    # accepted by every Windows version and by Wine, whose long form differs.
    _fields_ = [("cbSize", DWORD), ("RequestedUsage", CERT_USAGE_MATCH)]


class CERT_CHAIN_ENGINE_CONFIG(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_chain_engine_config
    # hExclusiveRoot/hExclusiveTrustedPeople: Windows 7+; dwExclusiveFlags:
    # Windows 8+.  Full size is 88 bytes on 64-bit Windows.
    _fields_ = [
        ("cbSize", DWORD),
        ("hRestrictedRoot", c_void_p),
        ("hRestrictedTrust", c_void_p),
        ("hRestrictedOther", c_void_p),
        ("cAdditionalStore", DWORD),
        ("rghAdditionalStore", POINTER(c_void_p)),
        ("dwFlags", DWORD),
        ("dwUrlRetrievalTimeout", DWORD),
        ("MaximumCachedCertificates", DWORD),
        ("CycleDetectionModulus", DWORD),
        ("hExclusiveRoot", c_void_p),
        ("hExclusiveTrustedPeople", c_void_p),
        ("dwExclusiveFlags", DWORD),
    ]


# The sizes tried for CertCreateCertificateChainEngine, in order: the full
# Windows 8+ form, then the Windows 7 form, which ends after
# hExclusiveTrustedPeople (it is also the whole struct as Wine 8 defines it):
# hExclusiveRoot is honoured there, dwExclusiveFlags is not.  Tests empty
# this tuple to exercise the no-private-engine fallback.
_ENGINE_CONFIG_SIZES: "tuple[int, ...]" = (
    ctypes.sizeof(CERT_CHAIN_ENGINE_CONFIG),
    CERT_CHAIN_ENGINE_CONFIG.dwExclusiveFlags.offset,
)


class CERT_CHAIN_POLICY_PARA(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_chain_policy_para
    _fields_ = [("cbSize", DWORD), ("dwFlags", DWORD), ("pvExtraPolicyPara", c_void_p)]


class SSL_EXTRA_CERT_CHAIN_POLICY_PARA(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-ssl_extra_cert_chain_policy_para
    _fields_ = [
        ("cbSize", DWORD),
        ("dwAuthType", DWORD),
        ("fdwChecks", DWORD),
        ("pwszServerName", c_void_p),
    ]


class CERT_CHAIN_POLICY_STATUS(Structure):
    # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/ns-wincrypt-cert_chain_policy_status
    _fields_ = [
        ("cbSize", DWORD),
        ("dwError", DWORD),
        ("lChainIndex", LONG),
        ("lElementIndex", LONG),
        ("pvExtraPolicyStatus", c_void_p),
    ]


# -- loading crypt32 ----------------------------------------------------------


class _Crypt32:
    """crypt32.dll with prototypes; made once, on first verification."""

    def __init__(self, dll: "Any") -> None:
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certopenstore
        self.CertOpenStore = dll.CertOpenStore
        self.CertOpenStore.argtypes = [c_void_p, DWORD, c_void_p, DWORD, c_void_p]
        self.CertOpenStore.restype = c_void_p
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certclosestore
        self.CertCloseStore = dll.CertCloseStore
        self.CertCloseStore.argtypes = [c_void_p, DWORD]
        self.CertCloseStore.restype = BOOL
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certaddencodedcertificatetostore
        self.CertAddEncodedCertificateToStore = dll.CertAddEncodedCertificateToStore
        self.CertAddEncodedCertificateToStore.argtypes = [
            c_void_p,
            DWORD,
            c_char_p,
            DWORD,
            DWORD,
            POINTER(POINTER(CERT_CONTEXT)),
        ]
        self.CertAddEncodedCertificateToStore.restype = BOOL
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certfreecertificatecontext
        self.CertFreeCertificateContext = dll.CertFreeCertificateContext
        self.CertFreeCertificateContext.argtypes = [POINTER(CERT_CONTEXT)]
        self.CertFreeCertificateContext.restype = BOOL
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certgetcertificatechain
        self.CertGetCertificateChain = dll.CertGetCertificateChain
        self.CertGetCertificateChain.argtypes = [
            c_void_p,
            POINTER(CERT_CONTEXT),
            c_void_p,
            c_void_p,
            POINTER(CERT_CHAIN_PARA),
            DWORD,
            c_void_p,
            POINTER(POINTER(CERT_CHAIN_CONTEXT)),
        ]
        self.CertGetCertificateChain.restype = BOOL
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certfreecertificatechain
        self.CertFreeCertificateChain = dll.CertFreeCertificateChain
        self.CertFreeCertificateChain.argtypes = [POINTER(CERT_CHAIN_CONTEXT)]
        self.CertFreeCertificateChain.restype = None
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certverifycertificatechainpolicy
        self.CertVerifyCertificateChainPolicy = dll.CertVerifyCertificateChainPolicy
        self.CertVerifyCertificateChainPolicy.argtypes = [
            c_void_p,
            POINTER(CERT_CHAIN_CONTEXT),
            POINTER(CERT_CHAIN_POLICY_PARA),
            POINTER(CERT_CHAIN_POLICY_STATUS),
        ]
        self.CertVerifyCertificateChainPolicy.restype = BOOL
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certcreatecertificatechainengine
        self.CertCreateCertificateChainEngine = dll.CertCreateCertificateChainEngine
        self.CertCreateCertificateChainEngine.argtypes = [
            POINTER(CERT_CHAIN_ENGINE_CONFIG),
            POINTER(c_void_p),
        ]
        self.CertCreateCertificateChainEngine.restype = BOOL
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certfreecertificatechainengine
        self.CertFreeCertificateChainEngine = dll.CertFreeCertificateChainEngine
        self.CertFreeCertificateChainEngine.argtypes = [c_void_p]
        self.CertFreeCertificateChainEngine.restype = None
        # https://learn.microsoft.com/en-us/windows/win32/api/wincrypt/nf-wincrypt-certverifytimevalidity
        self.CertVerifyTimeValidity = dll.CertVerifyTimeValidity
        self.CertVerifyTimeValidity.argtypes = [c_void_p, c_void_p]
        self.CertVerifyTimeValidity.restype = LONG


_crypt32: "_Crypt32 | None" = None
_crypt32_lock = threading.Lock()


def _load_crypt32() -> "_Crypt32":
    """crypt32 with prototypes, loaded on first use (not at import: cheap start)."""
    global _crypt32
    with _crypt32_lock:
        if _crypt32 is None:
            if sys.platform != "win32":
                raise OSError("the Windows certificate store is only available on Windows")
            # use_last_error: GetLastError() is read right after each failing
            # call, before Python code could overwrite it.
            _crypt32 = _Crypt32(ctypes.WinDLL("crypt32", use_last_error=True))
        return _crypt32


def _last_error() -> int:
    if sys.platform == "win32":
        return ctypes.get_last_error() & 0xFFFFFFFF
    return 0


def _os_error(call: str) -> "OSError":
    code = _last_error()
    return OSError(f"{call} failed (error 0x{code:08X})")


def _format_message(code: int) -> str:
    """Windows' own text for *code*, or '' (Wine has none for CERT_E_*)."""
    if sys.platform == "win32":
        try:
            text = ctypes.FormatError(code).strip()
        except (OSError, ValueError, OverflowError):
            return ""
        return "" if text.startswith("<no description") else text
    return ""


# Bookkeeping for tests: native objects this module holds right now.  Every
# open increments, every free decrements; a leak shows as a non-zero value
# when no verification runs.  ``leaks`` counts stores that CertCloseStore
# (with CERT_CLOSE_STORE_CHECK_FLAG) reported as still referenced.
class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.live = 0
        self.leaks = 0

    def opened(self) -> None:
        with self._lock:
            self.live += 1

    def closed(self) -> None:
        with self._lock:
            self.live -= 1

    def leaked(self) -> None:
        with self._lock:
            self.leaks += 1


_counters = _Counters()


def _close_store(api: "_Crypt32", store: int) -> None:
    # CERT_CLOSE_STORE_CHECK_FLAG: FALSE means a certificate context from this
    # store was not freed (CRYPT_E_PENDING_CLOSE) -- a leak in our code.  The
    # store is still released once that context goes.
    if not api.CertCloseStore(store, CERT_CLOSE_STORE_CHECK_FLAG):
        _counters.leaked()
    _counters.closed()


def _open_memory_store(api: "_Crypt32") -> int:
    store = api.CertOpenStore(CERT_STORE_PROV_MEMORY, 0, None, 0, None)
    if not store:
        raise _os_error("CertOpenStore")
    _counters.opened()
    return int(store)


def _add_cert(api: "_Crypt32", store: int, der: bytes, want_context: bool) -> "Any":
    """Add DER *der* to *store*; return its context if asked (caller frees it)."""
    context = POINTER(CERT_CONTEXT)()
    ok = api.CertAddEncodedCertificateToStore(
        store,
        _ENCODING,
        der,
        len(der),
        CERT_STORE_ADD_USE_EXISTING,
        byref(context) if want_context else None,
    )
    if not ok:
        return None
    if want_context:
        _counters.opened()
        return context
    return True


def _encoded(element: "Any") -> bytes:
    cert = element.pCertContext.contents
    return ctypes.string_at(cert.pbCertEncoded, cert.cbCertEncoded)


# -- the verdict on one built chain -------------------------------------------


class _Failure:
    """Why one chain was rejected (turned into the exception at the end)."""

    def __init__(self, code: int, message: str, *, unknown_issuer: bool) -> None:
        self.code = code
        self.message = message
        # The chain failed (perhaps among other things) because it does not
        # reach a trusted root: extra anchors may still vouch for it.
        self.unknown_issuer = unknown_issuer

    def error(self, host: "str | None") -> "ssl.SSLCertVerificationError":
        return _common.verification_error(self.code, self.message, host)


def _elements(chain_ctx: "Any") -> "list[Any]":
    """The elements of the chain's last simple chain, leaf first."""
    ctx = chain_ctx.contents
    if ctx.cChain < 1:
        return []
    simple = ctx.rgpChain[ctx.cChain - 1].contents
    return [simple.rgpElement[i].contents for i in range(simple.cElement)]


def _issuer_code(elements: "list[Any]", peer_ders: "frozenset[bytes]", status: int) -> int:
    """OpenSSL's code for "no trusted root": 18, 19 or 20 as OpenSSL picks them."""
    if status & CERT_TRUST_IS_PARTIAL_CHAIN or not elements:
        return _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    if len(elements) == 1:
        return _common.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    if _encoded(elements[-1]) in peer_ders:
        return _common.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    return _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY


def _time_code(api: "_Crypt32", elements: "list[Any]", index: int) -> "tuple[int, str]":
    """Expired or not yet valid, from the flagged element's own dates."""
    candidates = [elements[index]] if 0 <= index < len(elements) else []
    candidates += [
        e for e in elements if e.TrustStatus.dwErrorStatus & CERT_TRUST_IS_NOT_TIME_VALID
    ]
    for element in candidates:
        # CertVerifyTimeValidity: -1 before NotBefore, 1 after NotAfter, 0 inside.
        where = api.CertVerifyTimeValidity(None, element.pCertContext.contents.pCertInfo)
        if where < 0:
            return _common.X509_V_ERR_CERT_NOT_YET_VALID, "certificate is not yet valid"
        if where > 0:
            return _common.X509_V_ERR_CERT_HAS_EXPIRED, "certificate has expired"
    return _common.X509_V_ERR_CERT_HAS_EXPIRED, "certificate has expired or is not yet valid"


def _describe_policy_error(code: int) -> "tuple[str, str, int]":
    known = _POLICY_ERRORS.get(code)
    if known is not None:
        return known
    text = _format_message(code) or "certificate verification failed"
    return ("", text, _common.X509_V_ERR_UNSPECIFIED)


def _status_error(status: int) -> "tuple[int, str, str, int]":
    """The most telling error bit set in *status*, with our text for it."""
    for entry in _STATUS_ERRORS:
        if status & entry[0]:
            return entry
    return (status, "", "certificate chain has errors", _common.X509_V_ERR_UNSPECIFIED)


def _with_code(text: str, code: int, name: str) -> str:
    label = f"0x{code:08X} {name}".rstrip()
    return f"{text} (Windows: {label})"


def _judge(
    api: "_Crypt32",
    chain_ctx: "Any",
    *,
    peer_ders: "frozenset[bytes]",
    policy_host: "str | None",
    ip_host: "str | None",
    leaf: bytes,
    anchors: "frozenset[bytes] | None",
    fallback: bool,
) -> "_Failure | None":
    """None when the built chain is trusted; else the reason."""
    elements = _elements(chain_ctx)
    status = int(chain_ctx.contents.TrustStatus.dwErrorStatus) & ~CERT_TRUST_IS_NOT_TIME_NESTED
    unknown_issuer = bool(status & _UNKNOWN_ISSUER_BITS)

    if anchors is not None:
        # Defence in depth for the extra-anchor engines: whatever the engine
        # was told, the chain must end at one of the user's certificates.
        if not elements or _encoded(elements[-1]) not in anchors:
            code = _issuer_code(elements, peer_ders, status | CERT_TRUST_IS_PARTIAL_CHAIN)
            return _Failure(
                code,
                "certificate chain does not end at a trusted certificate "
                "(neither the Windows certificate store nor the loaded CA certificates)",
                unknown_issuer=True,
            )
        if fallback:
            # The root is one of ours, so "untrusted root" is expected here.
            status &= ~CERT_TRUST_IS_UNTRUSTED_ROOT
            unknown_issuer = bool(status & _UNKNOWN_ISSUER_BITS)

    # The SSL policy (name, usage, validity, trust as Windows judges them).
    extra = SSL_EXTRA_CERT_CHAIN_POLICY_PARA()
    extra.cbSize = ctypes.sizeof(extra)
    extra.dwAuthType = AUTHTYPE_SERVER
    extra.fdwChecks = 0 if policy_host else SECURITY_FLAG_IGNORE_CERT_CN_INVALID
    name_buffer = None
    if policy_host:
        name_buffer = ctypes.create_unicode_buffer(policy_host)
        extra.pwszServerName = ctypes.cast(name_buffer, c_void_p)
    para = CERT_CHAIN_POLICY_PARA()
    para.cbSize = ctypes.sizeof(para)
    para.pvExtraPolicyPara = ctypes.cast(byref(extra), c_void_p)
    if fallback:
        para.dwFlags = CERT_CHAIN_POLICY_ALLOW_UNKNOWN_CA_FLAG
        extra.fdwChecks |= SECURITY_FLAG_IGNORE_UNKNOWN_CA
    policy = CERT_CHAIN_POLICY_STATUS()
    policy.cbSize = ctypes.sizeof(policy)
    if not api.CertVerifyCertificateChainPolicy(
        CERT_CHAIN_POLICY_SSL, chain_ctx, byref(para), byref(policy)
    ):
        raise _os_error("CertVerifyCertificateChainPolicy")
    del name_buffer
    error = int(policy.dwError)
    if error in _REVOCATION_UNKNOWN_ERRORS and status & ~_REVOCATION_UNKNOWN_BITS:
        # "Could not check revocation" is the least telling answer when the
        # chain is also broken otherwise (OpenSSL, too, reports chain errors
        # before CRL ones): report what the engine found instead.
        error = 0
    if error:
        name, text, code = _describe_policy_error(error)
        if error in (CERT_E_UNTRUSTEDROOT, CERT_E_CHAINING):
            unknown_issuer = True
            code = _issuer_code(elements, peer_ders, status)
        elif error == CERT_E_EXPIRED:
            code, text = _time_code(api, elements, int(policy.lElementIndex))
        elif error == CERT_E_CN_NO_MATCH and ip_host:
            code = _common.X509_V_ERR_IP_ADDRESS_MISMATCH
        return _Failure(code, _with_code(text, error, name), unknown_issuer=unknown_issuer)

    # What the engine itself found, even if the policy let it pass.
    if status:
        bits, name, text, code = _status_error(status)
        if bits & _UNKNOWN_ISSUER_BITS:
            code = _issuer_code(elements, peer_ders, status)
        elif bits == CERT_TRUST_IS_NOT_TIME_VALID:
            code, text = _time_code(api, elements, -1)
        return _Failure(code, _with_code(text, status, name), unknown_issuer=unknown_issuer)

    if ip_host is not None and not _leaf_has_ip(leaf, ip_host):
        return _Failure(
            _common.X509_V_ERR_IP_ADDRESS_MISMATCH,
            "IP address mismatch, certificate is not valid for this address",
            unknown_issuer=False,
        )
    return None


# -- the leaf's iPAddress subjectAltName entries (a minimal DER reader) -------

_OID_SUBJECT_ALT_NAME = b"\x06\x03\x55\x1d\x11"  # 2.5.29.17, tag and length included


def _tlv(data: bytes, pos: int) -> "tuple[int, int, int]":
    """(tag, value start, value end) of the DER element at *pos*."""
    return _common.der_element(data, pos)


def _children(data: bytes, start: int, end: int) -> "list[tuple[int, int, int, int]]":
    """(tag, value start, value end, element start) of each child."""
    out = []
    pos = start
    while pos < end:
        tag, vstart, vend = _tlv(data, pos)
        out.append((tag, vstart, vend, pos))
        pos = vend
    return out


def leaf_ip_addresses(der: bytes) -> "list[bytes]":
    """Packed iPAddress entries of the certificate's subjectAltName.

    Only what a name check needs: Certificate -> tbsCertificate ->
    [3] extensions -> the subjectAltName extension -> GeneralNames -> [7].
    Raises ValueError on malformed input (the caller treats that as no match).
    """
    tag, start, _ = _tlv(der, 0)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, tbs_start, tbs_end = _tlv(der, start)
    if tag != 0x30:
        raise ValueError("not a certificate")
    for tag, vstart, _vend, _ in _children(der, tbs_start, tbs_end):
        if tag != 0xA3:
            continue
        seq_tag, seq_start, seq_end = _tlv(der, vstart)
        if seq_tag != 0x30:
            raise ValueError("bad extensions")
        for ext_tag, ext_start, ext_end, _ in _children(der, seq_start, seq_end):
            if ext_tag != 0x30:
                raise ValueError("bad extension")
            parts = _children(der, ext_start, ext_end)
            if not parts or der[parts[0][3] : parts[0][2]] != _OID_SUBJECT_ALT_NAME:
                continue
            octets = parts[-1]
            if octets[0] != 0x04:
                raise ValueError("bad subjectAltName")
            names_tag, names_start, names_end = _tlv(der, octets[1])
            if names_tag != 0x30:
                raise ValueError("bad subjectAltName")
            return [
                der[nstart:nend]
                for ntag, nstart, nend, _ in _children(der, names_start, names_end)
                if ntag == 0x87
            ]
    return []


def _leaf_has_ip(der: bytes, host: str) -> bool:
    try:
        wanted = ipaddress.ip_address(host).packed
        return wanted in leaf_ip_addresses(der)
    except ValueError:
        return False


# -- extra anchors --------------------------------------------------------------


class _Anchors:
    """The certificates from load_verify_locations() and their chain engine.

    The engine is built on first need and freed when the last user lets go
    of this object (Verifier replaced it or died; an in-flight verification
    keeps its own reference), so no lock is held across chain building.
    """

    def __init__(self, ders: "Sequence[bytes]") -> None:
        self.ders = tuple(dict.fromkeys(bytes(d) for d in ders))
        self.set = frozenset(self.ders)
        self._lock = threading.Lock()
        self._built = False
        self._store: int | None = None
        self._engine: int | None = None
        self._api: _Crypt32 | None = None
        # cbSize of the engine config that was accepted: 88 (exclusive roots
        # may be CAs), 80 (exclusive self-signed roots only), or 0 when no
        # private engine could be made and chains are built with the default
        # engine plus a root check (see Verifier._evaluate).
        self.config_size = 0

    def engine(self, api: "_Crypt32") -> "int | None":
        with self._lock:
            if not self._built:
                self._built = True
                self._api = api
                self._build(api)
            return self._engine

    def _build(self, api: "_Crypt32") -> None:
        store = _open_memory_store(api)
        engine = None
        try:
            engine = self._create_engine(api, store)
        finally:
            if engine is None:
                _close_store(api, store)
        if engine is None:
            return  # no private engine: Verifier uses the fallback
        # The store stays open as long as the engine that uses it.
        _counters.opened()
        self._engine = engine
        self._store = store

    def _create_engine(self, api: "_Crypt32", store: int) -> "int | None":
        """A chain engine whose exclusive roots are the anchors in *store*."""
        added = 0
        for der in self.ders:
            # A certificate Windows cannot decode is simply not an anchor.
            if _add_cert(api, store, der, want_context=False):
                added += 1
        if not added:
            return None
        config = CERT_CHAIN_ENGINE_CONFIG()
        config.hExclusiveRoot = store
        config.dwExclusiveFlags = CERT_CHAIN_EXCLUSIVE_ENABLE_CA_FLAG
        handle = c_void_p()
        # Full size first (Windows 8+: an anchor need not be self-signed).
        # Windows 7 and Wine 8 refuse it as an invalid parameter; their
        # shorter form still carries hExclusiveRoot, only the flag is lost,
        # so a non-self-signed anchor then ends no chain: stricter, not looser.
        for size in _ENGINE_CONFIG_SIZES:
            config.cbSize = size
            if api.CertCreateCertificateChainEngine(byref(config), byref(handle)):
                if not handle.value:
                    return None
                self.config_size = size
                return int(handle.value)
            if _last_error() not in (E_INVALIDARG, ERROR_INVALID_PARAMETER):
                break
        return None

    def close(self) -> None:
        with self._lock:
            api, engine, store = self._api, self._engine, self._store
            self._engine = self._store = None
        if api is None:
            return
        if engine is not None:
            api.CertFreeCertificateChainEngine(engine)
            _counters.closed()
        if store is not None:
            _close_store(api, store)

    def __del__(self) -> None:
        # At interpreter shutdown ctypes may already be gone: nothing to do then.
        with contextlib.suppress(Exception):
            self.close()


# -- the backend's contract with the facade --------------------------------------


class Verifier:
    """Per-SSLContext verification state.

    Thread-safe: many threads may verify at once.  The only lock guards the
    swap of the extra-anchor set; native chain building runs unlocked.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._anchors: _Anchors | None = None
        self._exclusive = False

    def set_extra_anchors(self, ders: "Sequence[bytes]", *, exclusive: bool = False) -> None:
        """Trust *ders* (the full list) in addition to the system store or,
        with *exclusive*, instead of it (a pinned context: only a chain that
        ends at one of them is trusted, built by the exclusive-root engine)."""
        new = _Anchors(ders) if ders else None
        with self._lock:
            self._anchors = new
            self._exclusive = exclusive
        # The old _Anchors frees its engine when its last in-flight user ends.

    def verify(
        self,
        chain: "Sequence[bytes]",
        host: "str | None",
        *,
        check_hostname: bool,
        verify_flags: int,
    ) -> None:
        """Return if Windows trusts *chain* for *host*; raise SSLCertVerificationError otherwise."""
        try:
            self._verify(chain, host, check_hostname, verify_flags)
        except ssl.SSLCertVerificationError:
            raise
        except Exception as exc:  # OSError, ctypes.ArgumentError, ValueError, ...
            # Whatever broke, the answer is "not verified" (fail closed).
            raise _common.verification_error(
                _common.X509_V_ERR_UNSPECIFIED,
                f"the Windows certificate verifier failed: {exc}",
                host,
            ) from exc

    def _verify(
        self, chain: "Sequence[bytes]", host: "str | None", check_hostname: bool, verify_flags: int
    ) -> None:
        ders = [bytes(d) for d in chain]
        if not ders:
            raise _common.verification_error(
                _common.X509_V_ERR_UNSPECIFIED, "the peer sent no certificate", host
            )
        if check_hostname and not host:
            raise _common.verification_error(
                _common.X509_V_ERR_HOSTNAME_MISMATCH,
                "no host name to check the certificate against",
                host,
            )
        name = host if check_hostname else None
        ip_host = name if name is not None and _common.is_ip_address(name) else None
        policy_host = name if ip_host is None else None

        flags = CERT_CHAIN_DISABLE_AIA
        if verify_flags & ssl.VERIFY_CRL_CHECK_CHAIN & ~ssl.VERIFY_CRL_CHECK_LEAF:
            flags |= CERT_CHAIN_REVOCATION_CHECK_CHAIN_EXCLUDE_ROOT
        elif verify_flags & ssl.VERIFY_CRL_CHECK_LEAF:
            flags |= CERT_CHAIN_REVOCATION_CHECK_END_CERT

        api = _load_crypt32()
        with self._lock:
            anchors, exclusive = self._anchors, self._exclusive
        args = (ders, policy_host, ip_host, flags)
        if exclusive:
            # Pinned: the system store plays no part.  The exclusive-root
            # engine builds only to the anchors, and _judge insists the
            # chain's root is one of them, byte for byte.
            if anchors is None:
                raise _common.verification_error(
                    _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                    "unable to get local issuer certificate (this context trusts only the "
                    "CA certificates loaded into it, and none could be used)",
                    host,
                )
            engine = anchors.engine(api)
            pinned = self._evaluate(api, engine, *args, anchors=anchors, fallback=engine is None)
            if pinned is None:
                return
            raise pinned.error(host)
        failure = self._evaluate(api, None, *args, anchors=None, fallback=False)
        if failure is None:
            return
        if anchors is not None and failure.unknown_issuer:
            engine = anchors.engine(api)
            if engine is not None:
                second = self._evaluate(api, engine, *args, anchors=anchors, fallback=False)
            else:
                second = self._evaluate(api, None, *args, anchors=anchors, fallback=True)
            if second is None:
                return
            if not second.unknown_issuer:
                # The loaded CA does vouch for the chain, which fails for
                # another reason (name, dates, ...): that is the real answer.
                failure = second
        raise failure.error(host)

    def _evaluate(
        self,
        api: "_Crypt32",
        engine: "int | None",
        ders: "list[bytes]",
        policy_host: "str | None",
        ip_host: "str | None",
        flags: int,
        *,
        anchors: "_Anchors | None",
        fallback: bool,
    ) -> "_Failure | None":
        """Build and judge the chain of ders[0] with *engine* (None: the default)."""
        store = _open_memory_store(api)
        try:
            leaf = None
            try:
                leaf = _add_cert(api, store, ders[0], want_context=True)
                if leaf is None:
                    return _Failure(
                        _common.X509_V_ERR_UNSPECIFIED,
                        _with_code(
                            "the peer's certificate could not be decoded", _last_error(), ""
                        ),
                        unknown_issuer=False,
                    )
                for index, der in enumerate(ders[1:], start=1):
                    if not _add_cert(api, store, der, want_context=False):
                        return _Failure(
                            _common.X509_V_ERR_UNSPECIFIED,
                            f"the peer's certificate #{index} could not be decoded",
                            unknown_issuer=False,
                        )
                if fallback and anchors is not None:
                    # No private engine: give the default engine our anchors
                    # as candidates; _judge then insists the root is one.
                    for der in anchors.ders:
                        _add_cert(api, store, der, want_context=False)
                para = CERT_CHAIN_PARA()
                para.cbSize = ctypes.sizeof(para)
                para.RequestedUsage.dwType = USAGE_MATCH_TYPE_AND
                usages = (c_char_p * 1)(SZ_OID_PKIX_KP_SERVER_AUTH)
                para.RequestedUsage.Usage.cUsageIdentifier = 1
                para.RequestedUsage.Usage.rgpszUsageIdentifier = usages
                chain_ctx = POINTER(CERT_CHAIN_CONTEXT)()
                if not api.CertGetCertificateChain(
                    engine, leaf, None, store, byref(para), flags, None, byref(chain_ctx)
                ):
                    raise _os_error("CertGetCertificateChain")
                _counters.opened()
                try:
                    return _judge(
                        api,
                        chain_ctx,
                        peer_ders=frozenset(ders),
                        policy_host=policy_host,
                        ip_host=ip_host,
                        leaf=ders[0],
                        anchors=anchors.set if anchors is not None else None,
                        fallback=fallback,
                    )
                finally:
                    api.CertFreeCertificateChain(chain_ctx)
                    _counters.closed()
            finally:
                if leaf is not None:
                    api.CertFreeCertificateContext(leaf)
                    _counters.closed()
        finally:
            _close_store(api, store)


def store_certificates() -> "tuple[tuple[object, ...], tuple[bytes, ...]]":
    """The ROOT store's certificates (what CryptoAPI chains end at), as
    CPython's ``ssl.enum_certificates("ROOT")`` lists them (CertOpenStore
    over the CurrentUser and LocalMachine ROOT stores): DER, trusted for
    server authentication or for every purpose.  Read on each call; the
    key is constant, so "public root" decisions read it once per process."""
    enum: Any = getattr(ssl, "enum_certificates", None)
    ders: list[bytes] = []
    if enum is not None:
        try:
            entries = enum("ROOT")
        except OSError:
            entries = []
        for cert, encoding, trust in entries:
            if encoding == "x509_asn" and (trust is True or _SERVER_AUTH_OID in trust):
                ders.append(bytes(cert))
    return ("windows-root",), tuple(dict.fromkeys(ders))


_SERVER_AUTH_OID = "1.3.6.1.5.5.7.3.1"


def describe_store() -> str:
    """One line for ``truststore status``."""
    return "Windows certificate store (CryptoAPI, CurrentUser + LocalMachine ROOT)"


def live_native_objects() -> "tuple[int, int]":
    """(objects open now, stores closed while still referenced) -- for tests."""
    return _counters.live, _counters.leaks
