"""macOS backend: the peer's chain is judged by the Security framework.

After the TLS handshake (OpenSSL verified nothing) the facade hands every
client connection's chain to :meth:`Verifier.verify`, which asks
``SecTrust`` whether the keychain's anchors and trust settings vouch for it.
Nothing is loaded at import: the frameworks are opened with ``ctypes`` on first
use, so this module imports (and type-checks) on every platform.

Ownership follows Apple's Create Rule: every object returned by a function
with ``Create`` or ``Copy`` in its name (and the ``CFErrorRef`` that
``SecTrustEvaluateWithError`` hands back) belongs to us and is released with
``CFRelease`` on every path, through :class:`_Owned`.
https://developer.apple.com/library/archive/documentation/CoreFoundation/Conceptual/CFMemoryMgmt/Concepts/Ownership.html

Missing intermediates are never fetched from the network.  By default
SecTrust downloads a missing issuer from the URL in a certificate's
Authority Information Access extension when the SSL policy is used, so a
server with an incomplete chain would pass on macOS only; the contract says
such a chain fails everywhere (the Windows backend sets
``CERT_CHAIN_DISABLE_AIA`` for the same reason).  Every evaluation therefore
calls ``SecTrustSetNetworkFetchAllowed(trust, false)``, except the one that
checks revocation (``VERIFY_CRL_CHECK_LEAF``/``_CHAIN``): the same switch
governs revocation fetching (OCSP, CRL), and a positive revocation answer
is required.  That evaluation runs only after the chain has passed with
fetching off, so the network can add a revocation failure but never
complete a chain the peer left incomplete.

Tests run this module against a stand-in library (``tests/macos_standin``)
selected with :func:`_use_libraries`; that function is the only test seam.
"""

# Annotations that are not builtins are quoted instead of ``from __future__
# import annotations``: __future__ is a module import of its own, paid at the
# first context of every process (issue 13).
import ctypes
import ssl
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

from . import _common

__all__ = ["Verifier", "describe_store", "store_certificates"]

_SECURITY_PATH: "Final" = "/System/Library/Frameworks/Security.framework/Security"
_COREFOUNDATION_PATH: "Final" = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation"

# C types, as CFBase.h / MacTypes.h / SecBase.h / SecTrust.h declare them.
_Ref = ctypes.c_void_p  # every CFTypeRef / SecXxxRef
_CFIndex = ctypes.c_long  # CFIndex is `signed long`
_Boolean = ctypes.c_ubyte  # Boolean is `unsigned char`
_OSStatus = ctypes.c_int32  # OSStatus is `SInt32`
_CFStringEncoding = ctypes.c_uint32
_CFOptionFlags = ctypes.c_ulong
_SecTrustResultType = ctypes.c_uint32

_kCFStringEncodingUTF8: "Final" = 0x08000100  # CFString.h, CFStringBuiltInEncodings

# SecPolicyCreateRevocation flags (SecPolicy.h).
_kSecRevocationOCSPMethod: "Final" = 1 << 0
_kSecRevocationCRLMethod: "Final" = 1 << 1
_kSecRevocationRequirePositiveResponse: "Final" = 1 << 3
_kSecRevocationUseAnyAvailableMethod: "Final" = _kSecRevocationOCSPMethod | _kSecRevocationCRLMethod

# SecTrustResultType values (SecTrust.h).
_TRUST_RESULT_NAMES: "Final" = {
    0: "kSecTrustResultInvalid",
    1: "kSecTrustResultProceed",
    2: "kSecTrustResultConfirm",
    3: "kSecTrustResultDeny",
    4: "kSecTrustResultUnspecified",
    5: "kSecTrustResultRecoverableTrustFailure",
    6: "kSecTrustResultFatalTrustFailure",
    7: "kSecTrustResultOtherError",
}
_kSecTrustResultProceed: "Final" = 1
_kSecTrustResultDeny: "Final" = 3
_kSecTrustResultUnspecified: "Final" = 4
_kSecTrustResultRecoverableTrustFailure: "Final" = 5
_kSecTrustResultOtherError: "Final" = 7

# OSStatus codes a trust evaluation reports (SecBase.h), with the OpenSSL
# X509_V_ERR_* code each one is closest to.
_errSecHostNameMismatch: "Final" = -67602
_STATUS_CODES: "Final" = {
    -67602: ("errSecHostNameMismatch", _common.X509_V_ERR_HOSTNAME_MISMATCH),
    -67605: ("errSecNoBasicConstraintsCA", _common.X509_V_ERR_INVALID_CA),
    -67608: ("errSecInvalidKeyUsageForPolicy", _common.X509_V_ERR_INVALID_PURPOSE),
    -67609: ("errSecInvalidExtendedKeyUsage", _common.X509_V_ERR_INVALID_PURPOSE),
    -67611: ("errSecPathLengthConstraintExceeded", _common.X509_V_ERR_PATH_LENGTH_EXCEEDED),
    -67629: ("errSecSSLBadExtendedKeyUsage", _common.X509_V_ERR_INVALID_PURPOSE),
    -67635: ("errSecIncompleteCertRevocationCheck", _common.X509_V_ERR_UNABLE_TO_GET_CRL),
    -67654: ("errSecTrustSettingDeny", _common.X509_V_ERR_CERT_REJECTED),
    -67688: ("errSecInvalidSignature", _common.X509_V_ERR_CERT_SIGNATURE_FAILURE),
    -67808: ("errSecVerifyFailed", _common.X509_V_ERR_CERT_SIGNATURE_FAILURE),
    -67818: ("errSecCertificateExpired", _common.X509_V_ERR_CERT_HAS_EXPIRED),
    -67819: ("errSecCertificateNotValidYet", _common.X509_V_ERR_CERT_NOT_YET_VALID),
    -67820: ("errSecCertificateRevoked", _common.X509_V_ERR_CERT_REVOKED),
    -67843: ("errSecNotTrusted", _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
    -25318: ("errSecCreateChainFailed", _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
    -67900: ("errSecCertificateNameNotAllowed", _common.X509_V_ERR_PERMITTED_VIOLATION),
    -67901: ("errSecCertificateValidityPeriodTooLong", _common.X509_V_ERR_UNSPECIFIED),
}

_CRL_FLAGS: "Final" = ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_CRL_CHECK_CHAIN


class _Rejected(Exception):
    """Internal: verification failed with this OpenSSL-style code and text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bind(lib: "ctypes.CDLL", name: str, restype: "Any", *argtypes: "Any") -> "Callable[..., Any]":
    function = lib[name]
    function.restype = restype
    function.argtypes = argtypes
    return function


class _Native:
    """The CoreFoundation and Security functions this backend calls.

    Prototypes are declared from Apple's headers so ctypes converts every
    argument and result with the right width (CFIndex is a C ``long``,
    Boolean an ``unsigned char``, OSStatus an ``int32_t``).
    """

    def __init__(self, security_path: str, corefoundation_path: str) -> None:
        cf = ctypes.CDLL(corefoundation_path)
        sec = ctypes.CDLL(security_path)
        self.security_path = security_path

        # kCFAllocatorDefault is a *variable* holding the allocator (NULL on
        # Apple's side); its value is what the Create functions expect.
        # https://developer.apple.com/documentation/corefoundation/kcfallocatordefault
        self.allocator: int | None = _Ref.in_dll(cf, "kCFAllocatorDefault").value
        # kCFTypeArrayCallBacks is a struct; CFArrayCreate takes its address,
        # and with it the array retains its values and releases them when it
        # goes away. https://developer.apple.com/documentation/corefoundation/kcftypearraycallbacks
        self.array_callbacks: int = ctypes.addressof(_Ref.in_dll(cf, "kCFTypeArrayCallBacks"))

        # https://developer.apple.com/documentation/corefoundation/cfrelease
        # (CFRelease(NULL) crashes, so callers never pass NULL.)
        self.CFRelease = _bind(cf, "CFRelease", None, _Ref)
        # https://developer.apple.com/documentation/corefoundation/cfretain
        self.CFRetain = _bind(cf, "CFRetain", _Ref, _Ref)
        # https://developer.apple.com/documentation/corefoundation/cfdatacreate(_:_:_:)
        self.CFDataCreate = _bind(cf, "CFDataCreate", _Ref, _Ref, ctypes.c_char_p, _CFIndex)
        # https://developer.apple.com/documentation/corefoundation/cfarraycreate(_:_:_:_:)
        self.CFArrayCreate = _bind(
            cf, "CFArrayCreate", _Ref, _Ref, ctypes.POINTER(_Ref), _CFIndex, _Ref
        )
        # https://developer.apple.com/documentation/corefoundation/cfstringcreatewithbytes(_:_:_:_:_:)
        self.CFStringCreateWithBytes = _bind(
            cf,
            "CFStringCreateWithBytes",
            _Ref,
            _Ref,
            ctypes.c_char_p,
            _CFIndex,
            _CFStringEncoding,
            _Boolean,
        )
        # https://developer.apple.com/documentation/corefoundation/cfstringgetlength(_:)
        self.CFStringGetLength = _bind(cf, "CFStringGetLength", _CFIndex, _Ref)
        # https://developer.apple.com/documentation/corefoundation/cfstringgetmaximumsizeforencoding(_:_:)
        self.CFStringGetMaximumSizeForEncoding = _bind(
            cf, "CFStringGetMaximumSizeForEncoding", _CFIndex, _CFIndex, _CFStringEncoding
        )
        # https://developer.apple.com/documentation/corefoundation/cfstringgetcstring(_:_:_:_:)
        self.CFStringGetCString = _bind(
            cf, "CFStringGetCString", _Boolean, _Ref, ctypes.c_char_p, _CFIndex, _CFStringEncoding
        )
        # https://developer.apple.com/documentation/corefoundation/cferrorgetcode(_:)
        self.CFErrorGetCode = _bind(cf, "CFErrorGetCode", _CFIndex, _Ref)
        # https://developer.apple.com/documentation/corefoundation/cferrorcopydescription(_:)
        self.CFErrorCopyDescription = _bind(cf, "CFErrorCopyDescription", _Ref, _Ref)

        # Returns NULL when the data is not a valid DER X.509 certificate.
        # https://developer.apple.com/documentation/security/seccertificatecreatewithdata(_:_:)
        self.SecCertificateCreateWithData = _bind(
            sec, "SecCertificateCreateWithData", _Ref, _Ref, _Ref
        )
        # server=true evaluates a server's certificate; a NULL host name
        # means no name check. https://developer.apple.com/documentation/security/secpolicycreatessl(_:_:)
        self.SecPolicyCreateSSL = _bind(sec, "SecPolicyCreateSSL", _Ref, _Boolean, _Ref)
        # macOS 10.9+. https://developer.apple.com/documentation/security/secpolicycreaterevocation(_:)
        self.SecPolicyCreateRevocation = _bind(
            sec, "SecPolicyCreateRevocation", _Ref, _CFOptionFlags
        )
        # https://developer.apple.com/documentation/security/sectrustcreatewithcertificates(_:_:_:)
        self.SecTrustCreateWithCertificates = _bind(
            sec, "SecTrustCreateWithCertificates", _OSStatus, _Ref, _Ref, ctypes.POINTER(_Ref)
        )
        # Setting anchors makes them the *only* ones trusted until
        # SecTrustSetAnchorCertificatesOnly(false) is called afterwards.
        # https://developer.apple.com/documentation/security/sectrustsetanchorcertificates(_:_:)
        self.SecTrustSetAnchorCertificates = _bind(
            sec, "SecTrustSetAnchorCertificates", _OSStatus, _Ref, _Ref
        )
        # https://developer.apple.com/documentation/security/sectrustsetanchorcertificatesonly(_:_:)
        self.SecTrustSetAnchorCertificatesOnly = _bind(
            sec, "SecTrustSetAnchorCertificatesOnly", _OSStatus, _Ref, _Boolean
        )
        # macOS 10.9+, like SecPolicyCreateRevocation; no Python this package
        # supports runs on anything older.  Bound unconditionally: where it is
        # missing the framework counts as not loadable and every verification
        # fails closed, rather than silently allowing AIA fetching.
        # https://developer.apple.com/documentation/security/sectrustsetnetworkfetchallowed(_:_:)
        self.SecTrustSetNetworkFetchAllowed = _bind(
            sec, "SecTrustSetNetworkFetchAllowed", _OSStatus, _Ref, _Boolean
        )
        # macOS 10.14+: returns `bool` and, on failure, a CFError we own.
        # https://developer.apple.com/documentation/security/sectrustevaluatewitherror(_:_:)
        self.SecTrustEvaluateWithError: Callable[..., Any] | None
        try:
            self.SecTrustEvaluateWithError = _bind(
                sec, "SecTrustEvaluateWithError", ctypes.c_bool, _Ref, ctypes.POINTER(_Ref)
            )
        except AttributeError:
            self.SecTrustEvaluateWithError = None
        # Deprecated in 10.15 but the only evaluation call before 10.14.
        # https://developer.apple.com/documentation/security/sectrustevaluate(_:_:)
        self.SecTrustEvaluate = _bind(
            sec, "SecTrustEvaluate", _OSStatus, _Ref, ctypes.POINTER(_SecTrustResultType)
        )

        # For get_ca_certs() and "public root" decisions only, so optional:
        # without them the store's content reads as empty (never as trusted).
        # https://developer.apple.com/documentation/security/sectrustcopyanchorcertificates(_:)
        # https://developer.apple.com/documentation/security/sectrustsettingscopycertificates(_:_:)
        # https://developer.apple.com/documentation/security/seccertificatecopydata(_:)
        # https://developer.apple.com/documentation/corefoundation/cfarraygetcount(_:)
        # https://developer.apple.com/documentation/corefoundation/cfarraygetvalueatindex(_:_:)
        # https://developer.apple.com/documentation/corefoundation/cfdatagetlength(_:)
        # https://developer.apple.com/documentation/corefoundation/cfdatagetbyteptr(_:)
        self.store_functions: dict[str, Callable[..., Any]] | None
        try:
            self.store_functions = {
                "anchors": _bind(
                    sec, "SecTrustCopyAnchorCertificates", _OSStatus, ctypes.POINTER(_Ref)
                ),
                "settings": _bind(
                    sec,
                    "SecTrustSettingsCopyCertificates",
                    _OSStatus,
                    ctypes.c_uint32,
                    ctypes.POINTER(_Ref),
                ),
                "copy_data": _bind(sec, "SecCertificateCopyData", _Ref, _Ref),
                "count": _bind(cf, "CFArrayGetCount", _CFIndex, _Ref),
                "at": _bind(cf, "CFArrayGetValueAtIndex", _Ref, _Ref, _CFIndex),
                "length": _bind(cf, "CFDataGetLength", _CFIndex, _Ref),
                "bytes": _bind(cf, "CFDataGetBytePtr", ctypes.c_void_p, _Ref),
            }
        except AttributeError:
            self.store_functions = None

    def anchor_certificates(self) -> "list[bytes]":
        """The system anchors plus the user and admin trust settings'
        certificates, DER.  Every Copy result is released here."""
        functions = self.store_functions
        if functions is None:
            return []
        arrays: list[int] = []
        anchors = _Ref()
        if int(functions["anchors"](ctypes.byref(anchors))) == 0 and anchors.value:
            arrays.append(anchors.value)
        # kSecTrustSettingsDomainUser = 0, kSecTrustSettingsDomainAdmin = 1
        # (SecTrustSettings.h); errSecNoTrustSettings when a domain has none.
        for domain in (0, 1):
            found = _Ref()
            if int(functions["settings"](domain, ctypes.byref(found))) == 0 and found.value:
                arrays.append(found.value)
        ders: list[bytes] = []
        try:
            for array in arrays:
                for index in range(int(functions["count"](array))):
                    cert = functions["at"](array, index)  # Get rule: not ours
                    data = functions["copy_data"](cert) if cert else None
                    if not data:
                        continue
                    try:
                        length = int(functions["length"](data))
                        pointer = functions["bytes"](data)
                        ders.append(ctypes.string_at(pointer, length))
                    finally:
                        self.release(data)
        finally:
            for array in arrays:
                self.release(array)
        return ders

    # -- small typed helpers ------------------------------------------------
    def release(self, ref: int) -> None:
        self.CFRelease(ref)

    def retain(self, ref: int) -> int:
        return int(self.CFRetain(ref))

    def string(self, ref: int) -> str:
        """A CFString's text (empty when it cannot be read)."""
        length = int(self.CFStringGetLength(ref))
        size = int(self.CFStringGetMaximumSizeForEncoding(length, _kCFStringEncodingUTF8))
        if size < 0 or size > 1 << 20:
            return ""
        buffer = ctypes.create_string_buffer(size + 1)
        if not self.CFStringGetCString(ref, buffer, size + 1, _kCFStringEncodingUTF8):
            return ""
        return buffer.value.decode("utf-8", "replace")


class _Owned:
    """Collects the CF objects we own and releases all of them on exit."""

    def __init__(self, native: "_Native") -> None:
        self._native = native
        self._refs: list[int] = []

    def __enter__(self) -> "_Owned":
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._refs:
            self._native.release(self._refs.pop())

    def own(self, ref: "int | None", what: str) -> int:
        """Take ownership of *ref* (a Create/Copy result); NULL is an error."""
        if not ref:
            raise _Rejected(_common.X509_V_ERR_UNSPECIFIED, f"{what} returned NULL")
        self._refs.append(ref)
        return ref

    def array(self, refs: "Sequence[int]", what: str) -> int:
        """A CFArray of *refs*, owned; the array retains its elements."""
        values = (_Ref * len(refs))(*refs)
        native = self._native
        return self.own(
            native.CFArrayCreate(native.allocator, values, len(refs), native.array_callbacks), what
        )

    def certificate(self, der: bytes) -> "int | None":
        """A SecCertificate for *der*, owned; None when Apple cannot parse it."""
        native = self._native
        data = self.own(native.CFDataCreate(native.allocator, der, len(der)), "CFDataCreate")
        ref = native.SecCertificateCreateWithData(native.allocator, data)
        return self.own(ref, "SecCertificateCreateWithData") if ref else None


_paths: "tuple[str, str]" = (_SECURITY_PATH, _COREFOUNDATION_PATH)
_native_cache: "_Native | None" = None
_native_lock = threading.Lock()


def _use_libraries(security: "str | None" = None, corefoundation: "str | None" = None) -> None:
    """Test seam: take Security/CoreFoundation from these files from now on.

    ``tests/macos_standin`` builds a library exporting both frameworks'
    symbols and passes its path twice.  Called with no arguments it restores
    the system frameworks.  Verifications already running keep the libraries
    they started with.
    """
    global _paths, _native_cache
    with _native_lock:
        _paths = (security or _SECURITY_PATH, corefoundation or _COREFOUNDATION_PATH)
        _native_cache = None


def _native() -> "_Native":
    """The frameworks, opened on first use (not at import)."""
    global _native_cache
    native = _native_cache
    if native is not None:
        return native
    with _native_lock:
        if _native_cache is None:
            try:
                _native_cache = _Native(*_paths)
            except (OSError, AttributeError, ValueError) as exc:
                raise _Rejected(
                    _common.X509_V_ERR_UNSPECIFIED,
                    f"the macOS Security framework could not be loaded ({exc})",
                ) from exc
        return _native_cache


class _Anchors:
    """The user's extra anchors as one CFArray, built once and shared.

    The array is released when this object goes away (weakref.finalize), or
    at once by :meth:`close`; a verification in flight holds its own retain.
    """

    def __init__(self, native: "_Native", ders: "Sequence[bytes]") -> None:
        self.native = native
        self.array: int | None = None
        with _Owned(native) as owned:
            # An anchor Apple cannot parse is left out: that can only make
            # fewer chains trusted, never more.
            certs = [ref for ref in map(owned.certificate, ders) if ref is not None]
            if certs:
                self.array = native.retain(owned.array(certs, "CFArrayCreate"))
        self._finalizer = weakref.finalize(self, _release_if_set, native, self.array)
        self._finalizer.atexit = False  # never call into a framework during shutdown

    def close(self) -> None:
        self._finalizer()


def _release_if_set(native: "_Native", ref: "int | None") -> None:
    if ref:
        native.release(ref)


class Verifier:
    """Per-SSLContext verification state; safe to share between threads.

    The only shared mutable state is the anchor list, guarded by a lock that
    is never held during a trust evaluation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._anchor_ders: tuple[bytes, ...] = ()
        self._anchors: _Anchors | None = None
        self._exclusive = False

    def set_extra_anchors(self, ders: "Sequence[bytes]", *, exclusive: bool = False) -> None:
        """Trust these DER certificates in addition to the system's anchors
        or, with *exclusive*, instead of them (a pinned context)."""
        new = tuple(bytes(der) for der in ders)
        with self._lock:
            old, self._anchors = self._anchors, None
            self._anchor_ders = new
            self._exclusive = exclusive
        if old is not None:
            old.close()

    def _retained_anchors(self, native: "_Native") -> "int | None":
        """A +1 reference to the extra anchors' CFArray, or None if none."""
        with self._lock:
            if not self._anchor_ders:
                return None
            anchors = self._anchors
            if anchors is None or anchors.native is not native:
                # Built here, once, not per verification.  Forget the old
                # cache before building: if building fails, nothing may
                # point at an array that close() released.
                self._anchors = None
                if anchors is not None:
                    anchors.close()
                anchors = _Anchors(native, self._anchor_ders)
                self._anchors = anchors
            return native.retain(anchors.array) if anchors.array else None

    def verify(
        self,
        chain: "Sequence[bytes]",
        host: "str | None",
        *,
        check_hostname: bool,
        verify_flags: int,
    ) -> None:
        """Raise ``ssl.SSLCertVerificationError`` unless macOS trusts *chain*."""
        try:
            self._verify(chain, host, check_hostname, verify_flags)
        except _Rejected as rejected:
            raise _common.verification_error(rejected.code, rejected.message, host) from None
        except Exception as exc:  # fail closed: no other exception may escape
            raise _common.verification_error(
                _common.X509_V_ERR_UNSPECIFIED,
                f"macOS trust evaluation failed ({type(exc).__name__}: {exc})",
                host,
            ) from exc

    def _verify(
        self, chain: "Sequence[bytes]", host: "str | None", check_hostname: bool, verify_flags: int
    ) -> None:
        if not chain:
            raise _Rejected(_common.X509_V_ERR_UNSPECIFIED, "the peer sent no certificate")
        name: bytes | None = None
        if check_hostname:
            if not host:
                raise _Rejected(
                    _common.X509_V_ERR_HOSTNAME_MISMATCH,
                    "no host name to check the certificate against",
                )
            # The facade passes the IDNA (ASCII) form; anything else, or a
            # NUL that a C string would cut the name at, matches nothing.
            if not host.isascii() or "\0" in host:
                raise _Rejected(
                    _common.X509_V_ERR_HOSTNAME_MISMATCH,
                    f"the host name {host!r} is not a valid ASCII name",
                )
            name = host.encode("ascii")
        revocation = bool(verify_flags & _CRL_FLAGS)
        native = _native()

        with _Owned(native) as owned:
            certs = []
            for index, der in enumerate(chain):
                ref = owned.certificate(bytes(der))
                if ref is None:
                    raise _Rejected(
                        _common.X509_V_ERR_UNSPECIFIED,
                        f"certificate #{index} sent by the peer is not a valid DER X.509 "
                        "certificate (SecCertificateCreateWithData returned NULL)",
                    )
                certs.append(ref)
            evaluation = _Evaluation(native, owned.array(certs, "CFArrayCreate"))
            with self._lock:
                evaluation.anchors_only = self._exclusive
            anchors = self._retained_anchors(native)
            if anchors is not None:
                evaluation.anchors = owned.own(anchors, "CFRetain")
            elif evaluation.anchors_only:
                # Pinned, and not one usable anchor: nothing can be trusted
                # (an empty anchor array would let the keychain back in).
                raise _Rejected(
                    _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                    "unable to get local issuer certificate (this context trusts only the "
                    "CA certificates loaded into it, and none could be used)",
                )

            # First from what is at hand, network fetching off: the chain
            # the peer sent must be complete.  Only then, if asked for,
            # revocation, which needs the network (see the module docstring).
            result = evaluation.run(name)
            if result is None and revocation:
                evaluation.revocation = True
                result = evaluation.run(name)
            if result is None:
                return
            # Only the 10.13 path gets here: SecTrustEvaluate gives a verdict
            # but no reason.  A chain that passes without the name check
            # failed on the name (unless it already passed with the name, and
            # failed only on revocation).
            if (
                result == _kSecTrustResultRecoverableTrustFailure
                and name is not None
                and not evaluation.revocation
                and evaluation.run(None) is None
            ):
                raise _Rejected(
                    _mismatch_code(host),
                    "certificate name does not match input (SecTrustEvaluate: "
                    "the chain is trusted without the host name)",
                )
            label = f"{_TRUST_RESULT_NAMES.get(result, 'unknown result')} ({result})"
            if result == _kSecTrustResultDeny:
                raise _Rejected(
                    _common.X509_V_ERR_CERT_REJECTED,
                    "a keychain trust setting marks a certificate of the chain as not "
                    f"trusted (SecTrustEvaluate: {label})",
                )
            raise _Rejected(
                _common.X509_V_ERR_UNSPECIFIED,
                f"certificate is not trusted (SecTrustEvaluate: {label})",
            )


def _mismatch_code(host: "str | None") -> int:
    if host and _common.is_ip_address(host):
        return _common.X509_V_ERR_IP_ADDRESS_MISMATCH
    return _common.X509_V_ERR_HOSTNAME_MISMATCH


class _Evaluation:
    """One chain, evaluated by SecTrust against one set of policies.

    :meth:`run` may be called more than once (again with revocation, and on
    the 10.13 path without the host name); each run owns and releases its own
    objects.
    """

    def __init__(self, native: "_Native", certificates: int) -> None:
        self.native = native
        self.certificates = certificates  # CFArray, leaf first, owned by the caller
        # Check revocation, and with it allow network fetching.
        self.revocation = False
        self.anchors: int | None = None  # CFArray of extra anchors, owned by the caller
        # Pinned context: the anchors and nothing else (not the keychain's).
        self.anchors_only = False

    def run(self, name: "bytes | None") -> "int | None":
        """None when trusted.  On failure, raise with Apple's reason
        (SecTrustEvaluateWithError) or return the SecTrustResultType
        (SecTrustEvaluate, where no reason is given)."""
        native = self.native
        with _Owned(native) as owned:
            trust = self._create_trust(owned, name)
            if native.SecTrustEvaluateWithError is not None:
                self._evaluate_with_error(owned, trust, name)
                return None
            result = _SecTrustResultType(_kSecTrustResultOtherError)
            status = int(native.SecTrustEvaluate(trust, ctypes.byref(result)))
            if status != 0:
                raise _Rejected(
                    _common.X509_V_ERR_UNSPECIFIED, f"SecTrustEvaluate failed (OSStatus {status})"
                )
            if result.value in (_kSecTrustResultProceed, _kSecTrustResultUnspecified):
                return None
            return int(result.value)

    def _create_trust(self, owned: "_Owned", name: "bytes | None") -> int:
        native = self.native
        host = None
        if name is not None:
            # An explicit length, so the name cannot be cut short at a NUL.
            host = owned.own(
                native.CFStringCreateWithBytes(
                    native.allocator, name, len(name), _kCFStringEncodingUTF8, 0
                ),
                "CFStringCreateWithBytes",
            )
        policies = [owned.own(native.SecPolicyCreateSSL(1, host), "SecPolicyCreateSSL")]
        if self.revocation:
            # Apple checks revocation (OCSP, CRL) over the network for every
            # certificate but the anchor.  RequirePositiveResponse turns a
            # missing answer (offline, responder down) into a failure, as
            # OpenSSL fails when it has no CRL; without it a check that
            # cannot reach anyone would silently pass.
            flags = _kSecRevocationUseAnyAvailableMethod | _kSecRevocationRequirePositiveResponse
            policies.append(
                owned.own(native.SecPolicyCreateRevocation(flags), "SecPolicyCreateRevocation")
            )
        policy_array = owned.array(policies, "CFArrayCreate")

        trust = _Ref()
        status = int(
            native.SecTrustCreateWithCertificates(
                self.certificates, policy_array, ctypes.byref(trust)
            )
        )
        if trust.value:
            owned.own(trust.value, "SecTrustCreateWithCertificates")
        if status != 0 or not trust.value:
            raise _Rejected(
                _common.X509_V_ERR_UNSPECIFIED,
                f"SecTrustCreateWithCertificates failed (OSStatus {status})",
            )
        if self.anchors is not None:
            # The extra anchors, *then* the system's back on (setting anchors
            # alone makes them the only ones trusted), unless the context is
            # pinned: then explicitly anchors-only, not relying on the default.
            status = int(native.SecTrustSetAnchorCertificates(trust.value, self.anchors))
            if status == 0:
                status = int(
                    native.SecTrustSetAnchorCertificatesOnly(trust.value, int(self.anchors_only))
                )
            if status != 0:
                raise _Rejected(
                    _common.X509_V_ERR_UNSPECIFIED,
                    f"setting the extra trust anchors failed (OSStatus {status})",
                )
        # Explicitly, both ways: Apple's default for the SSL policy is on.
        status = int(native.SecTrustSetNetworkFetchAllowed(trust.value, int(self.revocation)))
        if status != 0:
            raise _Rejected(
                _common.X509_V_ERR_UNSPECIFIED,
                f"SecTrustSetNetworkFetchAllowed failed (OSStatus {status})",
            )
        return trust.value

    def _evaluate_with_error(self, owned: "_Owned", trust: int, name: "bytes | None") -> None:
        native = self.native
        assert native.SecTrustEvaluateWithError is not None
        error = _Ref()
        trusted = bool(native.SecTrustEvaluateWithError(trust, ctypes.byref(error)))
        if error.value:
            owned.own(error.value, "SecTrustEvaluateWithError")
        if trusted:
            return
        if not error.value:
            raise _Rejected(
                _common.X509_V_ERR_UNSPECIFIED,
                "certificate is not trusted (SecTrustEvaluateWithError gave no reason)",
            )
        # The error's domain is NSOSStatusErrorDomain and its code the OSStatus.
        status = int(native.CFErrorGetCode(error.value))
        description = native.string(
            owned.own(native.CFErrorCopyDescription(error.value), "CFErrorCopyDescription")
        )
        symbol, code = _STATUS_CODES.get(status, ("", _common.X509_V_ERR_UNSPECIFIED))
        if status == _errSecHostNameMismatch and name is not None:
            code = _mismatch_code(name.decode("ascii"))
        label = f"{symbol}, OSStatus {status}" if symbol else f"OSStatus {status}"
        raise _Rejected(code, f"{description or 'certificate is not trusted'} ({label})")


def store_certificates() -> "tuple[tuple[object, ...], tuple[bytes, ...]]":
    """The anchors macOS trusts: the system's (SecTrustCopyAnchorCertificates)
    and the admin and user trust settings' certificates
    (SecTrustSettingsCopyCertificates), as DER.  Empty when the framework
    lacks them; the key is constant (read once per process for "public
    root" decisions, on each call for get_ca_certs())."""
    try:
        native = _native()
    except Exception:
        return ("macos",), ()
    ders: list[bytes] = []
    try:
        ders = native.anchor_certificates()
    except Exception:
        ders = []
    return ("macos",), tuple(dict.fromkeys(ders))


def describe_store() -> str:
    """Where trust comes from, for ``truststore status``."""
    security = _paths[0]
    if security == _SECURITY_PATH:
        return "macOS keychain (Security framework SecTrust)"
    return f"macOS keychain (Security framework SecTrust, loaded from {security})"
