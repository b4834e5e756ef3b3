"""The macOS backend (``truststore._macos``) against a stand-in Security framework.

``tests/macos_standin/standin.c`` implements the CoreFoundation and Security
functions the backend calls (see the README there); the session builds it
twice with gcc: once like macOS 10.14+ and once without
``SecTrustEvaluateWithError``, like 10.13, so that both evaluation paths run.
The backend is pointed at it through its one seam, ``_macos._use_libraries``.
A third build, without ``SecTrustSetNetworkFetchAllowed``, is made only for
the test that needs it.

Every test runs on both paths (the ``standin`` fixture), drives the backend
directly (``Verifier().verify``) or end to end through ``truststore.SSLContext``
with real TLS servers on 127.0.0.1, and must leave no live CF object behind
(``_no_cf_leaks``).  A missing compiler or libssl-dev fails the session.
"""

from __future__ import annotations

import _ssl
import ctypes
import datetime
import gc
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

import truststore
from support import HTTP_BODY, TLSServer
from truststore import _common, _macos

SOURCE = Path(__file__).parent / "macos_standin" / "standin.c"
MODERN = "10.14+"
LEGACY = "10.13"

# Keychain trust settings understood by standin_keychain_add().
SYSTEM_ROOT, ALWAYS_TRUST, DENY = 0, 1, 2

UNSPECIFIED = _common.X509_V_ERR_UNSPECIFIED


# -- the stand-in library ------------------------------------------------------


class StandIn:
    """One build of the stand-in, plus its test controls."""

    def __init__(self, path: Path, variant: str) -> None:
        self.path = str(path)
        self.variant = variant
        lib = ctypes.CDLL(self.path)
        lib.standin_live_objects.restype = ctypes.c_long
        lib.standin_live_report.argtypes = [ctypes.c_char_p, ctypes.c_long]
        lib.standin_evaluations.restype = ctypes.c_long
        lib.standin_evaluations.argtypes = [ctypes.c_int]
        lib.standin_keychain_add.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_int]
        lib.standin_revocation_add_crl.argtypes = [ctypes.c_char_p, ctypes.c_long]
        lib.standin_network_add.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_long]
        lib.standin_network_fetches.restype = ctypes.c_long
        lib.standin_fail_network_fetch_control.argtypes = [ctypes.c_int32]
        self.lib = lib

    @property
    def legacy(self) -> bool:
        return self.variant == LEGACY

    def live(self) -> int:
        return int(self.lib.standin_live_objects())

    def live_report(self) -> str:
        buffer = ctypes.create_string_buffer(512)
        self.lib.standin_live_report(buffer, len(buffer))
        return buffer.value.decode()

    def evaluations(self) -> int:
        """Calls of the evaluation function of this build's path."""
        return int(self.lib.standin_evaluations(1 if self.legacy else 0))

    def keychain_add(self, der: bytes, setting: int = SYSTEM_ROOT) -> None:
        assert self.lib.standin_keychain_add(der, len(der), setting) == 0

    def add_crl(self, der: bytes) -> None:
        assert self.lib.standin_revocation_add_crl(der, len(der)) == 0

    def serve(self, url: str, body: bytes) -> None:
        """Put *body* at *url* on the stand-in's in-memory "network" (AIA)."""
        assert self.lib.standin_network_add(url.encode(), body, len(body)) == 0

    def fetches(self) -> int:
        """AIA fetches the stand-in has attempted (one per caIssuers URL tried)."""
        return int(self.lib.standin_network_fetches())

    def fail_fetch_control(self, status: int) -> None:
        """Make SecTrustSetNetworkFetchAllowed return *status* until reset()."""
        self.lib.standin_fail_network_fetch_control(status)

    def reset(self) -> None:
        self.lib.standin_keychain_clear()
        self.lib.standin_revocation_clear()
        self.lib.standin_network_clear()

    def code(self, modern: int, legacy: int = UNSPECIFIED) -> int:
        """The verify_code expected on this path.  SecTrustEvaluate (10.13)
        gives a verdict without a reason, so most failures are unspecified."""
        return legacy if self.legacy else modern


def _compile(output: Path, *defines: str) -> None:
    """Build the stand-in (see the README for the defines)."""
    compiler = os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None:
        pytest.fail(
            f"cannot build the macOS stand-in: {compiler!r} not found "
            "(apt-get install gcc libssl-dev)",
            pytrace=False,
        )
    command = [compiler, "-shared", "-fPIC", "-fvisibility=hidden", "-O1", "-g"]
    command += [
        "-Wall",
        "-Wextra",
        *defines,
        "-o",
        str(output),
        str(SOURCE),
        "-lcrypto",
        "-pthread",
    ]
    if sys.platform.startswith("linux"):
        # The two builds live in one process: each must call its own symbols.
        command.insert(1, "-Wl,-Bsymbolic")
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(
            "cannot build the macOS stand-in (is libssl-dev installed?):\n"
            f"{' '.join(command)}\n{proc.stdout}{proc.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def standin_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StandIn]:
    directory = tmp_path_factory.mktemp("macos_standin")
    modern = directory / "libstandin.so"
    legacy = directory / "libstandin-10.13.so"
    _compile(modern)
    _compile(legacy, "-DSTANDIN_NO_EVALUATE_WITH_ERROR")
    return {MODERN: StandIn(modern, MODERN), LEGACY: StandIn(legacy, LEGACY)}


@pytest.fixture(scope="session")
def standin_without_fetch_control(tmp_path_factory: pytest.TempPathFactory) -> StandIn:
    """A build without SecTrustSetNetworkFetchAllowed (as before macOS 10.9)."""
    path = tmp_path_factory.mktemp("macos_standin_no_fetch_control") / "libstandin-nofetch.so"
    _compile(path, "-DSTANDIN_NO_NETWORK_FETCH_CONTROL")
    return StandIn(path, "no SecTrustSetNetworkFetchAllowed")


@pytest.fixture(autouse=True)
def _no_cf_leaks(standin_builds: dict[str, StandIn]) -> Iterator[None]:
    """Every path, error paths included, releases every CF object it made."""
    baseline = {name: build.live() for name, build in standin_builds.items()}
    yield
    gc.collect()
    for name, build in standin_builds.items():
        assert build.live() == baseline[name], (
            f"{name} stand-in: {build.live() - baseline[name]} CF object(s) leaked "
            f"(live: {build.live_report()})"
        )


@pytest.fixture(params=[MODERN, LEGACY])
def standin(
    request: pytest.FixtureRequest, standin_builds: dict[str, StandIn]
) -> Iterator[StandIn]:
    build = standin_builds[request.param]
    build.reset()
    _macos._use_libraries(build.path, build.path)
    try:
        yield build
    finally:
        _macos._use_libraries()
        build.reset()


# -- certificates, made relative to now ------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _days(n: float) -> datetime.timedelta:
    return datetime.timedelta(days=n)


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))


@dataclass
class Issued:
    """A leaf and what its server sends: DER chain (leaf first) and PEMs."""

    ders: list[bytes]
    chain_pem: bytes
    key_pem: bytes

    def server(self, *, send_intermediates: bool = True) -> TLSServer:
        chain = self.chain_pem
        if not send_intermediates:
            chain = ssl.DER_cert_to_PEM_cert(self.ders[0]).encode()
        return TLSServer(chain, self.key_pem)


def _from_trustme(leaf: trustme.LeafCert) -> Issued:
    pems = [blob.bytes() for blob in leaf.cert_chain_pems]
    return Issued([_der(p) for p in pems], b"".join(pems), leaf.private_key_pem.bytes())


def _issue(
    ca: trustme.CA,
    *names: str,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    ca_issuers: str | None = None,
) -> Issued:
    """A leaf signed by *ca* with exactly the given validity and EKU
    (``eku=None``: no EKU extension at all) and, with *ca_issuers*, an
    Authority Information Access extension naming that URL as its issuer's."""
    issuer_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    issuer_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "odd leaf")]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or _now() - _days(1))
        .not_valid_after(not_after or _now() + _days(30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if ca_issuers is not None:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ca_issuers)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    leaf_pem = cert.public_bytes(serialization.Encoding.PEM)
    chain = [leaf_pem]
    parent = ca
    while parent.parent_cert is not None:
        chain.append(parent.cert_pem.bytes())
        parent = parent.parent_cert
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return Issued([_der(p) for p in chain], b"".join(chain), key_pem)


def _crl(ca: trustme.CA, revoked: Issued | None = None) -> bytes:
    """A current CRL from *ca*, revoking *revoked*'s leaf if given."""
    issuer_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    issuer_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(_now() - _days(1))
        .next_update(_now() + _days(1))
    )
    if revoked is not None:
        serial = x509.load_der_x509_certificate(revoked.ders[0]).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_now() - _days(1))
            .build()
        )
    crl = builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


@dataclass
class PKI:
    root: trustme.CA
    intermediate: trustme.CA
    other_root: trustme.CA
    good: Issued  # localhost, 127.0.0.1, ::1 - root -> intermediate -> leaf

    @property
    def root_der(self) -> bytes:
        return _der(self.root.cert_pem.bytes())

    @property
    def other_root_der(self) -> bytes:
        return _der(self.other_root.cert_pem.bytes())


@pytest.fixture(scope="module")
def pki() -> PKI:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    good = _from_trustme(
        intermediate.issue_cert(
            "localhost",
            "127.0.0.1",
            "::1",
            not_before=_now() - _days(1),
            not_after=_now() + _days(30),
        )
    )
    return PKI(root, intermediate, trustme.CA(), good)


# The caIssuers URL of the AIA test leaf.  Never resolved: the stand-in's
# "network" is an in-memory map filled by StandIn.serve().
AIA_URL = "http://aia.invalid/intermediate.der"


@pytest.fixture(scope="module")
def aia_leaf(pki: PKI) -> Issued:
    """localhost, issued by the intermediate, naming AIA_URL as its issuer's."""
    return _issue(
        pki.intermediate, "localhost", eku=[ExtendedKeyUsageOID.SERVER_AUTH], ca_issuers=AIA_URL
    )


def _rejected(
    verifier: _macos.Verifier,
    chain: list[bytes],
    host: str | None = "localhost",
    *,
    check_hostname: bool = True,
    verify_flags: int = 0,
) -> ssl.SSLCertVerificationError:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        verifier.verify(chain, host, check_hostname=check_hostname, verify_flags=verify_flags)
    return info.value


def _verifier(*anchors: bytes) -> _macos.Verifier:
    verifier = _macos.Verifier()
    if anchors:
        verifier.set_extra_anchors(list(anchors))
    return verifier


# -- the backend, called directly ------------------------------------------------


def test_valid_chain_with_custom_anchor(standin: StandIn, pki: PKI) -> None:
    before = standin.evaluations()
    _verifier(pki.root_der).verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)
    assert standin.evaluations() == before + 1  # this build's evaluation call ran


def test_system_anchor_from_keychain(standin: StandIn, pki: PKI) -> None:
    standin.keychain_add(pki.root_der)
    _verifier().verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)


def test_user_always_trust_setting(standin: StandIn, pki: PKI) -> None:
    # SecTrustEvaluate reports kSecTrustResultProceed here, not Unspecified.
    standin.keychain_add(pki.root_der, ALWAYS_TRUST)
    _verifier().verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)


def test_custom_anchors_are_added_to_the_system_ones(standin: StandIn, pki: PKI) -> None:
    standin.keychain_add(pki.other_root_der)
    other = _from_trustme(pki.other_root.issue_cert("localhost"))
    verifier = _verifier(pki.root_der)
    verifier.verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)
    verifier.verify(other.ders, "localhost", check_hostname=True, verify_flags=0)


def test_intermediate_as_custom_anchor(standin: StandIn, pki: PKI) -> None:
    intermediate_der = _der(pki.intermediate.cert_pem.bytes())
    _verifier(intermediate_der).verify(
        pki.good.ders[:1], "localhost", check_hostname=True, verify_flags=0
    )


def test_no_anchor_is_not_trusted(standin: StandIn, pki: PKI) -> None:
    err = _rejected(_verifier(), pki.good.ders)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    assert "localhost" in str(err)
    if standin.legacy:
        assert "kSecTrustResultRecoverableTrustFailure" in err.verify_message
    else:
        assert "certificate is not trusted" in err.verify_message
        assert "errSecNotTrusted, OSStatus -67843" in err.verify_message
        assert "\u201c" in err.verify_message  # Apple's description, decoded as UTF-8


def test_untrusted_root(standin: StandIn, pki: PKI) -> None:
    foreign = _from_trustme(pki.other_root.create_child_ca().issue_cert("localhost"))
    err = _rejected(_verifier(pki.root_der), foreign.ders)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


def test_missing_intermediate(standin: StandIn, pki: PKI) -> None:
    standin.keychain_add(pki.root_der)
    err = _rejected(_verifier(pki.root_der), pki.good.ders[:1])
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


def test_wrong_host(standin: StandIn, pki: PKI) -> None:
    err = _rejected(_verifier(pki.root_der), pki.good.ders, "example.com")
    # Both paths name the reason: 10.13 finds it by evaluating without the name.
    assert err.verify_code == _common.X509_V_ERR_HOSTNAME_MISMATCH
    assert "example.com" in str(err)
    assert "does not match" in err.verify_message


def test_wrong_host_on_untrusted_chain_reports_the_trust_problem(
    standin: StandIn, pki: PKI
) -> None:
    err = _rejected(_verifier(), pki.good.ders, "example.com")
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


def test_check_hostname_false_skips_only_the_name(standin: StandIn, pki: PKI) -> None:
    _verifier(pki.root_der).verify(
        pki.good.ders, "example.com", check_hostname=False, verify_flags=0
    )
    _verifier(pki.root_der).verify(pki.good.ders, None, check_hostname=False, verify_flags=0)
    err = _rejected(_verifier(), pki.good.ders, "example.com", check_hostname=False)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_ip_address_host(standin: StandIn, pki: PKI, host: str) -> None:
    _verifier(pki.root_der).verify(pki.good.ders, host, check_hostname=True, verify_flags=0)


@pytest.mark.parametrize("host", ["127.0.0.2", "::2"])
def test_wrong_ip_address(standin: StandIn, pki: PKI, host: str) -> None:
    err = _rejected(_verifier(pki.root_der), pki.good.ders, host)
    assert err.verify_code == _common.X509_V_ERR_IP_ADDRESS_MISMATCH


def test_ip_literal_does_not_match_a_dns_name(standin: StandIn, pki: PKI) -> None:
    leaf = _from_trustme(pki.intermediate.issue_cert("localhost"))
    err = _rejected(_verifier(pki.root_der), leaf.ders, "127.0.0.1")
    assert err.verify_code == _common.X509_V_ERR_IP_ADDRESS_MISMATCH


def test_expired(standin: StandIn, pki: PKI) -> None:
    leaf = _issue(
        pki.intermediate,
        "localhost",
        not_before=_now() - _days(30),
        not_after=_now() - _days(1),
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    err = _rejected(_verifier(pki.root_der), leaf.ders)
    assert err.verify_code == standin.code(_common.X509_V_ERR_CERT_HAS_EXPIRED)
    if not standin.legacy:
        assert "certificate is expired (errSecCertificateExpired" in err.verify_message


def test_not_yet_valid(standin: StandIn, pki: PKI) -> None:
    leaf = _issue(
        pki.intermediate,
        "localhost",
        not_before=_now() + _days(1),
        not_after=_now() + _days(30),
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    err = _rejected(_verifier(pki.root_der), leaf.ders)
    assert err.verify_code == standin.code(_common.X509_V_ERR_CERT_NOT_YET_VALID)


def test_client_auth_only_eku(standin: StandIn, pki: PKI) -> None:
    leaf = _issue(pki.intermediate, "localhost", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    err = _rejected(_verifier(pki.root_der), leaf.ders)
    assert err.verify_code == standin.code(_common.X509_V_ERR_INVALID_PURPOSE)


def test_server_auth_eku_is_required_for_new_certificates(standin: StandIn, pki: PKI) -> None:
    leaf = _issue(pki.intermediate, "localhost", eku=None)
    err = _rejected(_verifier(pki.root_der), leaf.ders)
    assert err.verify_code == standin.code(_common.X509_V_ERR_INVALID_PURPOSE)


def test_validity_period_too_long(standin: StandIn, pki: PKI) -> None:
    # macOS 10.15+: a TLS certificate issued after 2019-07-01 may be valid
    # for at most 825 days.
    leaf = _issue(
        pki.intermediate,
        "localhost",
        not_after=_now() + _days(900),
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    err = _rejected(_verifier(pki.root_der), leaf.ders)
    assert err.verify_code == UNSPECIFIED
    if not standin.legacy:
        assert "not standards compliant" in err.verify_message
        assert "-67901" in err.verify_message


def test_long_lived_certificate_from_before_2019_is_accepted(standin: StandIn, pki: PKI) -> None:
    leaf = _from_trustme(pki.intermediate.issue_cert("localhost"))  # 2000-01-01 .. 3000-01-01
    _verifier(pki.root_der).verify(leaf.ders, "localhost", check_hostname=True, verify_flags=0)


def test_keychain_deny_setting(standin: StandIn, pki: PKI) -> None:
    standin.keychain_add(pki.root_der)
    standin.keychain_add(_der(pki.intermediate.cert_pem.bytes()), DENY)
    err = _rejected(_verifier(pki.root_der), pki.good.ders)
    assert err.verify_code == _common.X509_V_ERR_CERT_REJECTED


@pytest.mark.parametrize("flag", [ssl.VERIFY_CRL_CHECK_LEAF, ssl.VERIFY_CRL_CHECK_CHAIN])
def test_revocation_checking(standin: StandIn, pki: PKI, flag: int) -> None:
    verifier = _verifier(pki.root_der)
    # No revocation answer available (offline): fail, like OpenSSL without a CRL.
    err = _rejected(verifier, pki.good.ders, verify_flags=flag)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_CRL)
    # Answers for the leaf and the intermediate, none revoking: trusted.
    standin.add_crl(_crl(pki.intermediate))
    standin.add_crl(_crl(pki.root))
    verifier.verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=flag)


def test_revoked_leaf(standin: StandIn, pki: PKI) -> None:
    leaf = _from_trustme(
        pki.intermediate.issue_cert(
            "localhost", not_before=_now() - _days(1), not_after=_now() + _days(9)
        )
    )
    standin.add_crl(_crl(pki.intermediate, revoked=leaf))
    standin.add_crl(_crl(pki.root))
    verifier = _verifier(pki.root_der)
    err = _rejected(verifier, leaf.ders, verify_flags=ssl.VERIFY_CRL_CHECK_LEAF)
    assert err.verify_code == standin.code(_common.X509_V_ERR_CERT_REVOKED)
    # Without a CRL flag revocation is not checked, as with OpenSSL.
    verifier.verify(leaf.ders, "localhost", check_hostname=True, verify_flags=0)


# -- network fetch of missing intermediates (AIA) --------------------------------


def test_standin_fetches_missing_intermediates_like_apple(
    standin: StandIn, pki: PKI, aia_leaf: Issued
) -> None:
    """The stand-in's AIA model, driven directly: with an SSL policy Apple
    fetches a missing issuer by default; fetching off, or a revocation policy
    with kSecRevocationNetworkAccessDisabled, stops it.  This is what makes the
    backend's "not fetched" tests below meaningful."""
    native = _macos._Native(standin.path, standin.path)
    get_allowed = standin.lib.SecTrustGetNetworkFetchAllowed
    get_allowed.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ubyte)]
    get_allowed.restype = ctypes.c_int32

    def evaluate(fetch: bool | None, revocation_flags: int | None = None) -> tuple[bool, bool]:
        """(trusted, fetch allowed) for the leaf alone, anchored at the root."""
        with _macos._Owned(native) as owned:
            leaf, root = map(owned.certificate, (aia_leaf.ders[0], pki.root_der))
            assert leaf is not None and root is not None
            policies = [owned.own(native.SecPolicyCreateSSL(1, None), "SecPolicyCreateSSL")]
            if revocation_flags is not None:
                policy = native.SecPolicyCreateRevocation(revocation_flags)
                policies.append(owned.own(policy, "SecPolicyCreateRevocation"))
            trust = ctypes.c_void_p()
            status = native.SecTrustCreateWithCertificates(
                owned.array([leaf], "certs"), owned.array(policies, "policies"), ctypes.byref(trust)
            )
            assert status == 0
            owned.own(trust.value, "SecTrustCreateWithCertificates")
            anchors = owned.array([root], "anchors")
            assert native.SecTrustSetAnchorCertificates(trust.value, anchors) == 0
            if fetch is not None:
                assert native.SecTrustSetNetworkFetchAllowed(trust.value, int(fetch)) == 0
            allowed = ctypes.c_ubyte(2)
            assert get_allowed(trust.value, ctypes.byref(allowed)) == 0
            result = ctypes.c_uint32()
            assert native.SecTrustEvaluate(trust.value, ctypes.byref(result)) == 0
            return result.value == 4, bool(allowed.value)  # kSecTrustResultUnspecified

    before = standin.fetches()
    assert evaluate(None) == (False, True)  # Apple's default: fetch on; nothing served yet
    assert standin.fetches() == before + 1
    standin.serve(AIA_URL, _der(pki.intermediate.cert_pem.bytes()))
    assert evaluate(None) == (True, True)  # the intermediate was downloaded
    assert evaluate(True) == (True, True)
    assert standin.fetches() == before + 3
    assert evaluate(False) == (False, False)
    kSecRevocationNetworkAccessDisabled = 1 << 4
    assert evaluate(None, kSecRevocationNetworkAccessDisabled) == (False, True)
    assert standin.fetches() == before + 3  # neither of the last two tried


@pytest.mark.parametrize(
    "flags",
    [0, ssl.VERIFY_CRL_CHECK_LEAF, ssl.VERIFY_CRL_CHECK_CHAIN],
    ids=["no-revocation", "crl-leaf", "crl-chain"],
)
def test_missing_intermediate_is_not_fetched(
    standin: StandIn, pki: PKI, aia_leaf: Issued, flags: int
) -> None:
    """The intermediate is one fetch away (and the stand-in would fetch it by
    default, see above), yet a chain without it fails; with revocation
    checking too, although that evaluation allows the network."""
    standin.serve(AIA_URL, _der(pki.intermediate.cert_pem.bytes()))
    standin.add_crl(_crl(pki.intermediate))
    standin.add_crl(_crl(pki.root))
    verifier = _verifier(pki.root_der)
    # The complete chain passes: with a CRL flag that takes the revocation
    # answers, which the stand-in, like macOS, only fetches with the network on.
    verifier.verify(aia_leaf.ders, "localhost", check_hostname=True, verify_flags=flags)
    before = standin.fetches()
    err = _rejected(verifier, aia_leaf.ders[:1], verify_flags=flags)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    assert standin.fetches() == before  # not even attempted


def test_network_fetch_control_failure_fails_closed(standin: StandIn, pki: PKI) -> None:
    standin.fail_fetch_control(-50)  # errSecParam
    for verifier in (_verifier(pki.root_der), _verifier()):
        standin.keychain_add(pki.root_der)
        err = _rejected(verifier, pki.good.ders)
        assert err.verify_code == UNSPECIFIED
        assert "SecTrustSetNetworkFetchAllowed failed (OSStatus -50)" in err.verify_message
        assert "localhost" in str(err)


def test_framework_without_network_fetch_control_fails_closed(
    standin_without_fetch_control: StandIn, pki: PKI
) -> None:
    """Where SecTrustSetNetworkFetchAllowed is missing (before macOS 10.9),
    nothing is trusted, rather than chains being completed from the network."""
    build = standin_without_fetch_control
    assert not hasattr(build.lib, "SecTrustSetNetworkFetchAllowed")
    build.keychain_add(pki.root_der)
    _macos._use_libraries(build.path, build.path)
    try:
        err = _rejected(_verifier(pki.root_der), pki.good.ders)
    finally:
        _macos._use_libraries()
        build.reset()
    assert err.verify_code == UNSPECIFIED
    assert "could not be loaded" in err.verify_message
    assert "SecTrustSetNetworkFetchAllowed" in err.verify_message
    assert build.live() == 0


@pytest.mark.parametrize(
    "chain",
    [
        pytest.param([], id="empty"),
        pytest.param([b"not a certificate"], id="junk"),
        pytest.param(["good+junk"], id="leaf-then-junk"),
        pytest.param(["trailing"], id="trailing-bytes"),
    ],
)
def test_undecodable_chain_fails_closed(standin: StandIn, pki: PKI, chain: list[object]) -> None:
    ders = []
    for item in chain:
        if item == "good+junk":
            ders += [pki.good.ders[0], b"\x30\x03\x02\x01\x00"]
        elif item == "trailing":
            ders += [pki.good.ders[0] + b"\x00", pki.good.ders[1]]
        else:
            assert isinstance(item, bytes)
            ders.append(item)
    err = _rejected(_verifier(pki.root_der), ders)
    assert err.verify_code == UNSPECIFIED


def test_no_host_with_check_hostname_fails_closed(standin: StandIn, pki: PKI) -> None:
    for host in (None, "", "local\x00host", "h\u00e9st"):
        err = _rejected(_verifier(pki.root_der), pki.good.ders, host)
        assert err.verify_code == _common.X509_V_ERR_HOSTNAME_MISMATCH


def test_set_extra_anchors_replaces_the_list(standin: StandIn, pki: PKI) -> None:
    verifier = _verifier(pki.root_der)
    verifier.verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)
    verifier.set_extra_anchors([pki.other_root_der])
    _rejected(verifier, pki.good.ders)
    verifier.set_extra_anchors([])
    _rejected(verifier, pki.good.ders)
    verifier.set_extra_anchors([b"junk", pki.root_der])  # an unparsable anchor is skipped
    verifier.verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)


def test_anchor_cache_follows_a_library_switch(
    standin_builds: dict[str, StandIn], pki: PKI
) -> None:
    """Anchors cached for one library are rebuilt for, never mixed with, another."""
    modern, legacy = standin_builds[MODERN], standin_builds[LEGACY]
    verifier = _verifier(pki.root_der)
    try:
        _macos._use_libraries(modern.path, modern.path)
        verifier.verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)
        assert modern.live() > 0  # the cached anchors live in the modern build
        _macos._use_libraries(legacy.path, legacy.path)
        before = legacy.evaluations()
        verifier.verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)
        assert legacy.evaluations() == before + 1
    finally:
        _macos._use_libraries()
    del verifier  # _no_cf_leaks checks both builds end at their baselines


def test_library_that_cannot_load_fails_closed(standin: StandIn, pki: PKI, tmp_path: Path) -> None:
    _macos._use_libraries(str(tmp_path / "Security"), str(tmp_path / "CoreFoundation"))
    err = _rejected(_verifier(pki.root_der), pki.good.ders)
    assert err.verify_code == UNSPECIFIED
    assert "could not be loaded" in err.verify_message
    assert "Security" in _macos.describe_store()


def test_describe_store() -> None:
    _macos._use_libraries()
    assert _macos.describe_store() == "macOS keychain (Security framework SecTrust)"


def test_one_verifier_many_threads(standin: StandIn, pki: PKI) -> None:
    """Concurrent verifications while the anchors are being replaced."""
    verifier = _verifier(pki.root_der)
    errors: list[BaseException] = []
    start = threading.Barrier(9)

    def verify_many() -> None:
        try:
            start.wait()
            for i in range(20):
                verifier.verify(pki.good.ders, "localhost", check_hostname=True, verify_flags=0)
                with pytest.raises(ssl.SSLCertVerificationError):
                    verifier.verify(
                        pki.good.ders, f"h{i}.example", check_hostname=True, verify_flags=0
                    )
        except BaseException as exc:
            errors.append(exc)

    def swap_anchors() -> None:
        start.wait()
        for i in range(40):
            extra = [pki.other_root_der] if i % 2 else []
            verifier.set_extra_anchors([pki.root_der, *extra])

    threads = [threading.Thread(target=verify_many) for _ in range(8)]
    threads.append(threading.Thread(target=swap_anchors))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def test_chain_captured_from_a_real_server(standin: StandIn, pki: PKI) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with (
        pki.good.server() as server,
        socket.create_connection(("127.0.0.1", server.port)) as sock,
        client.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        sslobj = tls._sslobj  # type: ignore[attr-defined]
        chain = [cert.public_bytes(_ssl.ENCODING_DER) for cert in sslobj.get_unverified_chain()]
    assert chain == pki.good.ders
    _verifier(pki.root_der).verify(chain, "localhost", check_hostname=True, verify_flags=0)


# -- the stand-in itself ---------------------------------------------------------


def test_legacy_build_has_no_evaluate_with_error(standin_builds: dict[str, StandIn]) -> None:
    assert hasattr(standin_builds[MODERN].lib, "SecTrustEvaluateWithError")
    assert not hasattr(standin_builds[LEGACY].lib, "SecTrustEvaluateWithError")


MISUSE = {
    "double release": """
        d = lib.CFDataCreate(None, b"x", 1)
        lib.CFRelease(d)
        lib.CFRelease(d)
    """,
    "use after release": """
        d = lib.CFDataCreate(None, b"x", 1)
        lib.CFRelease(d)
        lib.CFDataGetLength(d)
    """,
    "wrong type": """
        d = lib.CFDataCreate(None, b"x", 1)
        lib.CFStringGetLength(d)
    """,
    "release NULL": """
        lib.CFRelease(None)
    """,
    "not a CF object": """
        buf = ctypes.create_string_buffer(64)
        lib.CFRelease(ctypes.addressof(buf))
    """,
    "allocator by address": """
        alloc = ctypes.c_void_p.in_dll(lib, "kCFAllocatorDefault")
        lib.CFDataCreate(ctypes.addressof(alloc), b"x", 1)
    """,
    "network fetch on a non-trust": """
        lib.SecTrustSetNetworkFetchAllowed.argtypes = [ctypes.c_void_p, ctypes.c_ubyte]
        d = lib.CFDataCreate(None, b"x", 1)
        lib.SecTrustSetNetworkFetchAllowed(d, 0)
    """,
    "network fetch on NULL": """
        lib.SecTrustSetNetworkFetchAllowed.argtypes = [ctypes.c_void_p, ctypes.c_ubyte]
        lib.SecTrustSetNetworkFetchAllowed(None, 0)
    """,
}


@pytest.mark.parametrize("name", list(MISUSE))
def test_standin_aborts_on_misuse(standin_builds: dict[str, StandIn], name: str) -> None:
    code = "import ctypes, resource\n"
    code += "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an expected abort: no core file\n"
    code += f"lib = ctypes.CDLL({standin_builds[MODERN].path!r})\n"
    code += "for f in ('CFDataCreate', 'CFRetain'): getattr(lib, f).restype = ctypes.c_void_p\n"
    code += "for f in ('CFRelease', 'CFDataGetLength', 'CFStringGetLength'):\n"
    code += "    getattr(lib, f).argtypes = [ctypes.c_void_p]\n"
    code += "lib.CFDataCreate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_long]\n"
    code += textwrap.dedent(MISUSE[name])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGABRT, proc
    assert "macos-standin: FATAL:" in proc.stderr


# -- end to end through truststore.SSLContext ----------------------------------


class MacSSLContext(truststore.SSLContext):
    """truststore.SSLContext verifying through the macOS backend (the facade's seam)."""

    _verifier_class = _macos.Verifier


def _get(context: ssl.SSLContext, server: TLSServer, server_hostname: str | None) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while not data.endswith(HTTP_BODY):
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def _get_fails(
    context: ssl.SSLContext, server: TLSServer, server_hostname: str = "localhost"
) -> ssl.SSLCertVerificationError:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        _get(context, server, server_hostname)
    return info.value


def _context(*cas: trustme.CA) -> MacSSLContext:
    context = MacSSLContext()
    for ca in cas:
        context.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    return context


def test_facade_custom_ca(standin: StandIn, pki: PKI, tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    pki.root.cert_pem.write_to_path(str(cafile))
    context = MacSSLContext()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    context.load_verify_locations(cafile=str(cafile))
    before = standin.evaluations()
    with pki.good.server() as server:
        assert _get(context, server, "localhost").endswith(HTTP_BODY)
    assert standin.evaluations() == before + 1


def test_facade_system_anchor(standin: StandIn, pki: PKI) -> None:
    standin.keychain_add(pki.root_der)
    with pki.good.server() as server:
        assert _get(MacSSLContext(), server, "localhost").endswith(HTTP_BODY)


def test_facade_without_any_anchor(standin: StandIn, pki: PKI) -> None:
    with pki.good.server() as server:
        err = _get_fails(MacSSLContext(), server)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    assert "localhost" in str(err)


def test_facade_wrong_host(standin: StandIn, pki: PKI) -> None:
    with pki.good.server() as server:
        err = _get_fails(_context(pki.root), server, "wrong.example")
    assert err.verify_code == _common.X509_V_ERR_HOSTNAME_MISMATCH
    assert "wrong.example" in str(err)


def test_facade_expired(standin: StandIn, pki: PKI) -> None:
    leaf = _issue(
        pki.intermediate,
        "localhost",
        not_before=_now() - _days(10),
        not_after=_now() - _days(1),
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    with leaf.server() as server:
        err = _get_fails(_context(pki.root), server)
    assert err.verify_code == standin.code(_common.X509_V_ERR_CERT_HAS_EXPIRED)


def test_facade_untrusted_root(standin: StandIn, pki: PKI) -> None:
    standin.keychain_add(pki.root_der)
    foreign = _from_trustme(pki.other_root.issue_cert("localhost"))
    with foreign.server() as server:
        err = _get_fails(_context(pki.root), server)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


def test_facade_missing_intermediate(standin: StandIn, pki: PKI) -> None:
    with pki.good.server(send_intermediates=False) as server:
        err = _get_fails(_context(pki.root), server)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


@pytest.mark.parametrize("flags", [0, ssl.VERIFY_CRL_CHECK_CHAIN], ids=["plain", "crl-chain"])
def test_facade_missing_intermediate_is_not_fetched(
    standin: StandIn, pki: PKI, aia_leaf: Issued, flags: int
) -> None:
    standin.serve(AIA_URL, _der(pki.intermediate.cert_pem.bytes()))
    standin.add_crl(_crl(pki.intermediate))
    standin.add_crl(_crl(pki.root))
    context = _context(pki.root)
    context.verify_flags |= flags
    before = standin.fetches()
    with aia_leaf.server(send_intermediates=False) as server:
        err = _get_fails(context, server)
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    assert standin.fetches() == before
    with aia_leaf.server() as server:
        assert _get(context, server, "localhost").endswith(HTTP_BODY)


def test_facade_client_auth_only_certificate(standin: StandIn, pki: PKI) -> None:
    leaf = _issue(pki.intermediate, "localhost", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    with leaf.server() as server:
        err = _get_fails(_context(pki.root), server)
    assert err.verify_code == standin.code(_common.X509_V_ERR_INVALID_PURPOSE)


def test_facade_check_hostname_false(standin: StandIn, pki: PKI) -> None:
    context = _context(pki.root)
    context.check_hostname = False
    with pki.good.server() as server:
        assert _get(context, server, "wrong.example").endswith(HTTP_BODY)
        assert _get(context, server, None).endswith(HTTP_BODY)
        # Still fails closed on trust:
        bare = MacSSLContext()
        bare.check_hostname = False
        err = _get_fails(bare, server, "wrong.example")
    assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


def test_facade_cert_none(standin: StandIn, pki: PKI) -> None:
    context = MacSSLContext()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    before = standin.evaluations()
    foreign = _from_trustme(pki.other_root.issue_cert("localhost"))
    with foreign.server() as server:
        assert _get(context, server, "wrong.example").endswith(HTTP_BODY)
    assert standin.evaluations() == before  # the OS was not asked


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_facade_ip_address_host(standin: StandIn, pki: PKI, host: str) -> None:
    # The server listens on 127.0.0.1; "::1" checks the IPv6 SAN match.
    with pki.good.server() as server:
        assert _get(_context(pki.root), server, host).endswith(HTTP_BODY)
        err = _get_fails(_context(pki.root), server, "127.0.0.9")
    assert err.verify_code == _common.X509_V_ERR_IP_ADDRESS_MISMATCH


def test_facade_revocation_flags_reach_the_backend(standin: StandIn, pki: PKI) -> None:
    context = _context(pki.root)
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    with pki.good.server() as server:
        err = _get_fails(context, server)
        assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_CRL)
        standin.add_crl(_crl(pki.intermediate))
        standin.add_crl(_crl(pki.root))
        assert _get(context, server, "localhost").endswith(HTTP_BODY)


def test_facade_wrap_bio(standin: StandIn, pki: PKI) -> None:
    """The memory-BIO path (asyncio's) is verified too."""

    def handshake(context: ssl.SSLContext, server: TLSServer, host: str) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("server closed during the handshake") from None
                    incoming.write(data)
            sock.sendall(outgoing.read())

    context = _context(pki.root)
    with pki.good.server() as server:
        handshake(context, server, "localhost")
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            handshake(context, server, "wrong.example")
    assert info.value.verify_code == _common.X509_V_ERR_HOSTNAME_MISMATCH


def test_facade_shared_context_many_threads(standin: StandIn, pki: PKI) -> None:
    context = _context(pki.root)
    before = standin.evaluations()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        try:
            start.wait()
            for _ in range(5):
                assert _get(context, server, "localhost").endswith(HTTP_BODY)
        except BaseException as exc:
            errors.append(exc)

    with pki.good.server() as server:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert not errors, errors
    assert standin.evaluations() == before + 40
