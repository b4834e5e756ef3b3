"""The parts of the Windows backend that run anywhere.

The backend itself is exercised under Wine (tests/wine/run.sh); here: it
imports on every platform, fails closed where crypt32 is missing, parses
subjectAltName iPAddress entries, and its ctypes layouts have the sizes
Microsoft's headers give on 64-bit Windows.
"""

from __future__ import annotations

import ctypes
import ssl
import sys

import pytest
import trustme

from truststore import _common, _windows


def _leaf_der(*identities: str) -> bytes:
    cert = trustme.CA().issue_cert(*identities)
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def test_ip_addresses_from_subject_alt_name() -> None:
    der = _leaf_der("localhost", "127.0.0.1", "::1", "example.org")
    assert _windows.leaf_ip_addresses(der) == [
        bytes([127, 0, 0, 1]),
        bytes(15) + b"\x01",
    ]
    assert _windows._leaf_has_ip(der, "127.0.0.1")
    assert _windows._leaf_has_ip(der, "::1")
    assert not _windows._leaf_has_ip(der, "127.0.0.2")
    assert not _windows._leaf_has_ip(der, "not an address")


def test_dns_only_certificate_has_no_ip() -> None:
    der = _leaf_der("localhost")
    assert _windows.leaf_ip_addresses(der) == []
    assert not _windows._leaf_has_ip(der, "127.0.0.1")


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x05\x02\x01", b"\x04\x00", b"\x30\x84\xff"])
def test_malformed_der_is_no_match(der: bytes) -> None:
    with pytest.raises(ValueError):
        _windows.leaf_ip_addresses(der)
    assert not _windows._leaf_has_ip(der, "127.0.0.1")


def test_truncated_certificate_is_no_match() -> None:
    der = _leaf_der("127.0.0.1")
    assert not _windows._leaf_has_ip(der[: len(der) // 2], "127.0.0.1")


@pytest.mark.skipif(sys.platform == "win32", reason="crypt32 exists there")
def test_fails_closed_without_crypt32() -> None:
    verifier = _windows.Verifier()  # cheap: loads nothing
    verifier.set_extra_anchors([b"anything"])
    der = _leaf_der("localhost")
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        verifier.verify([der], "localhost", check_hostname=True, verify_flags=0)
    assert info.value.verify_code == _common.X509_V_ERR_UNSPECIFIED
    assert "localhost" in str(info.value)


def test_empty_chain_is_rejected_everywhere() -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _windows.Verifier().verify([], "localhost", check_hostname=True, verify_flags=0)


def test_describe_store() -> None:
    assert "Windows" in _windows.describe_store()


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="64-bit layouts")
def test_struct_layouts_match_64_bit_windows() -> None:
    assert ctypes.sizeof(_windows.CERT_CHAIN_ENGINE_CONFIG) == 88
    assert _windows._ENGINE_CONFIG_SIZES == (88, 80)
    assert ctypes.sizeof(_windows.CERT_CONTEXT) == 40
    assert ctypes.sizeof(_windows.CERT_CHAIN_ELEMENT) == 56
    assert ctypes.sizeof(_windows.CERT_CHAIN_PARA) == 32
    assert ctypes.sizeof(_windows.CERT_CHAIN_POLICY_PARA) == 16
    assert ctypes.sizeof(_windows.SSL_EXTRA_CERT_CHAIN_POLICY_PARA) == 24
    assert ctypes.sizeof(_windows.CERT_CHAIN_POLICY_STATUS) == 24
    assert _windows.CERT_SIMPLE_CHAIN.rgpElement.offset == 16
    assert _windows.CERT_CHAIN_CONTEXT.rgpChain.offset == 16


def test_every_known_policy_error_maps_to_an_openssl_code() -> None:
    for code, (name, text, openssl_code) in _windows._POLICY_ERRORS.items():
        assert name.startswith(("CERT_E_", "TRUST_E_", "CRYPT_E_")), hex(code)
        assert text and openssl_code > 0
    assert _windows._POLICY_ERRORS[_windows.CERT_E_CN_NO_MATCH][2] == (
        _common.X509_V_ERR_HOSTNAME_MISMATCH
    )
    assert _windows._POLICY_ERRORS[_windows.CERT_E_EXPIRED][2] == (
        _common.X509_V_ERR_CERT_HAS_EXPIRED
    )
    assert _windows._POLICY_ERRORS[_windows.CERT_E_UNTRUSTEDROOT][2] == (
        _common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    )
