"""Hardening matrix row 9: one documented rule per odd host name.

The rule is what CPython + OpenSSL do on Linux with the same
``server_hostname`` (CPython IDNA-encodes the name; OpenSSL's
``a2i_IPADDRESS`` decides "address or DNS name"; addresses match IP SANs
only, names match DNS SANs case-insensitively, one wildcard label, no
partial wildcards).  Every case below is checked three ways:

* a real handshake through ``truststore.SSLContext`` gives the documented
  verdict;
* a plain ``ssl.SSLContext`` with the same CA gives the same verdict (so the
  rule *is* CPython's, not ours);
* ``_common.normalize_host`` -- the single value the Windows and macOS
  backends receive -- classifies the name the same way (address vs DNS
  name) and keeps or folds exactly what OpenSSL keeps or folds.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509

import truststore
from support import TLSServer
from test_hardening_peer import Cert, issue, make_root
from truststore import _common

_HOSTNAME_MISMATCH = 62
_IP_ADDRESS_MISMATCH = 64


def dns(name: str) -> x509.GeneralName:
    return x509.DNSName(name)


def ip(address: str) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(address))


@dataclass(frozen=True)
class Case:
    sans: tuple[x509.GeneralName, ...]
    host: str
    trusted: bool
    # What normalize_host hands the other backends for the IDNA-encoded host.
    normalized: str
    is_address: bool
    rule: str


CASES = {
    "LOCALHOST": Case(
        (dns("localhost"),), "LOCALHOST", True, "localhost", False,
        "DNS names compare case-insensitively",
    ),
    "trailing-dot-host": Case(
        (dns("localhost"),), "localhost.", False, "localhost.", False,
        "a trailing dot is kept: 'localhost.' does not match DNS:localhost",
    ),
    "trailing-dot-san": Case(
        (dns("localhost."),), "localhost.", True, "localhost.", False,
        "...and matches only a SAN written with the dot",
    ),
    "unicode": Case(
        (dns("xn--bcher-kva.example"),), "b\u00fccher.example", True, "xn--bcher-kva.example", False,
        "Unicode is IDNA-encoded before matching: it matches its punycode SAN",
    ),
    "unicode-uppercase": Case(
        (dns("xn--bcher-kva.example"),), "B\u00dcCHER.example", True, "xn--bcher-kva.example", False,
        "IDNA folds case first",
    ),
    "punycode": Case(
        (dns("xn--bcher-kva.example"),), "XN--BCHER-KVA.example", True, "xn--bcher-kva.example", False,
        "punycode is an ordinary (case-insensitive) DNS name",
    ),
    "brackets": Case(
        (ip("::1"),), "[::1]", False, "[::1]", False,
        "brackets are URL syntax, not part of an address: '[::1]' is a DNS name, "
        "so it never matches IP:::1",
    ),
    "ipv6": Case(
        (ip("::1"),), "0:0:0:0:0:0:0:1", True, "::1", True,
        "IPv6 addresses compare as addresses, in any spelling",
    ),
    "v4-mapped-vs-v4-san": Case(
        (ip("127.0.0.1"),), "::ffff:127.0.0.1", False, "::ffff:127.0.0.1", True,
        "an IPv4-mapped IPv6 address stays IPv6: it does not match IP:127.0.0.1",
    ),
    "v4-mapped-vs-mapped-san": Case(
        (ip("::ffff:127.0.0.1"),), "::ffff:127.0.0.1", True, "::ffff:127.0.0.1", True,
        "...and matches an IPv4-mapped IP SAN",
    ),
    "zone-id": Case(
        (ip("fe80::1"),), "fe80::1%lo", False, "fe80::1%lo", False,
        "a zone id makes it a non-address: 'fe80::1%lo' never matches IP:fe80::1",
    ),
    "ip-only-as-dns-san": Case(
        (dns("127.0.0.1"),), "127.0.0.1", False, "127.0.0.1", True,
        "an address matches IP SANs only, never a DNS SAN spelling it",
    ),
    "ip-as-ip-san": Case(
        (ip("127.0.0.1"),), "127.0.0.1", True, "127.0.0.1", True,
        "(control) an address matches its IP SAN",
    ),
    "wildcard-one-label": Case(
        (dns("*.example.com"),), "A.example.com", True, "a.example.com", False,
        "a wildcard stands for exactly one whole left-most label",
    ),
    "wildcard-across-labels": Case(
        (dns("*.example.com"),), "a.b.example.com", False, "a.b.example.com", False,
        "...never for two labels",
    ),
    "wildcard-apex": Case(
        (dns("*.example.com"),), "example.com", False, "example.com", False,
        "...never for none (the apex)",
    ),
    "wildcard-partial": Case(
        (dns("a*.example.com"),), "ab.example.com", False, "ab.example.com", False,
        "partial-label wildcards are not honoured",
    ),
    "wildcard-tld": Case(
        (dns("*.com"),), "example.com", False, "example.com", False,
        "a wildcard directly under a top-level label is not honoured",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def root() -> Cert:
    return make_root("host-name root")


@pytest.fixture(scope="module")
def servers(root: Cert) -> Iterator[Callable[[tuple[x509.GeneralName, ...]], TLSServer]]:
    """One loopback server per SAN set, shared by the cases that use it."""
    running: dict[tuple[str, ...], TLSServer] = {}

    def get(sans: tuple[x509.GeneralName, ...]) -> TLSServer:
        key = tuple(repr(s) for s in sans)
        if key not in running:
            leaf = issue(root, sans=sans)
            running[key] = TLSServer(leaf.pem, leaf.key_pem)
        return running[key]

    try:
        yield get
    finally:
        for server in running.values():
            server.close()


def verdict(ctx: ssl.SSLContext, server: TLSServer, host: str) -> bool | int:
    """True when trusted, else OpenSSL's verify code."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        try:
            with ctx.wrap_socket(sock, server_hostname=host):
                return True
        except ssl.SSLCertVerificationError as exc:
            return int(exc.verify_code)


@pytest.mark.parametrize("name", sorted(CASES))
def test_host_name_rule(
    name: str, root: Cert, servers: Callable[[tuple[x509.GeneralName, ...]], TLSServer]
) -> None:
    case = CASES[name]
    server = servers(case.sans)
    ours = truststore.SSLContext()
    ours.load_verify_locations(cadata=root.pem.decode())
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain.load_verify_locations(cadata=root.pem.decode())

    result = verdict(ours, server, case.host)
    assert verdict(plain, server, case.host) == result, "differs from CPython + OpenSSL"
    if case.trusted:
        assert result is True, case.rule
    else:
        expected = _IP_ADDRESS_MISMATCH if case.is_address else _HOSTNAME_MISMATCH
        assert result == expected, case.rule

    # What every other backend receives: ssl's IDNA encoding, then ours.
    encoded = ours._encode_hostname(case.host)  # type: ignore[attr-defined]
    normalized = _common.normalize_host(encoded)
    assert normalized is not None
    assert _common.is_ip_address(normalized) is case.is_address
    if case.is_address:
        # Python 3.13 spells IPv4-mapped addresses differently from 3.10;
        # the address is what counts.
        assert ipaddress.ip_address(normalized) == ipaddress.ip_address(case.normalized)
    else:
        assert normalized == case.normalized
    assert _common.normalize_host(normalized) == normalized


def _sends_sni(host: str) -> bool:
    """CPython sends SNI for DNS names only: the ClientHello it writes tells,
    without a server, whether CPython + OpenSSL took *host* for an address."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_bio(incoming, outgoing, server_hostname=host)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    pos = 5 + 4 + 2 + 32  # record and handshake headers, version, random
    pos += 1 + hello[pos]  # session id
    pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")  # cipher suites
    pos += 1 + hello[pos]  # compression methods
    end = pos + 2 + int.from_bytes(hello[pos : pos + 2], "big")
    pos += 2
    while pos < end:
        kind = int.from_bytes(hello[pos : pos + 2], "big")
        if kind == 0:  # server_name
            return True
        pos += 4 + int.from_bytes(hello[pos + 2 : pos + 4], "big")
    return False


@pytest.mark.parametrize(
    "host",
    [
        *sorted({c.host for c in CASES.values()}),
        "10.1.2.3",
        "2001:db8::8:800:200c:417a",
        "::",
        "1.2.3",
        "127.1",
        "0x7f.0.0.1",
        "1::2:3:4:5:6:7:8",
        "::1%",
        "host.example",
    ],
)
def test_address_or_name_agrees_with_openssl(host: str) -> None:
    """normalize_host's address test against the one OpenSSL applies."""
    encoded = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)._encode_hostname(host)  # type: ignore[attr-defined]
    assert _common.is_ip_address(encoded) is not _sends_sni(encoded)
