"""The Windows backend (CryptoAPI), directly and through truststore.SSLContext.

Runs on a Windows Python only (tests/wine/run.sh runs it under Wine).  The
certificates are described in pki.py; "rsa-root" and friends are never in
the OS store, except sys-root while the ``system_root`` fixture holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import pytest

import truststore
from conftest import PKI, TLSServer, fetch, running_on_wine
from truststore import _common, _windows

E = _common  # X509_V_ERR_* codes
ON_WINE = running_on_wine()


def verify(
    verifier: _windows.Verifier,
    chain: list[bytes],
    host: str | None = "localhost",
    *,
    check_hostname: bool = True,
    flags: int = 0,
) -> None:
    verifier.verify(chain, host, check_hostname=check_hostname, verify_flags=flags)


def rejected(verifier: _windows.Verifier, chain: list[bytes], host: str = "localhost", **kw: Any):
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        verify(verifier, chain, host, **kw)
    return info.value


@pytest.fixture
def anchored(pki: PKI) -> _windows.Verifier:
    """A Verifier that trusts rsa-root and ec-root via set_extra_anchors."""
    v = _windows.Verifier()
    v.set_extra_anchors([pki.der("rsa-root"), pki.der("ec-root")])
    return v


# -- direct Verifier ---------------------------------------------------------------


def test_module_contract() -> None:
    assert "Windows" in _windows.describe_store()
    assert sys.platform == "win32"
    assert truststore.SSLContext._verifier_class is _windows.Verifier


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.1", "::1"])
def test_chain_to_loaded_anchor(
    pki: PKI, anchored: _windows.Verifier, kind: str, host: str
) -> None:
    verify(anchored, pki.chain(f"{kind}-leaf", f"{kind}-int"), _common.normalize_host(host))


def test_chain_with_root_sent_too(pki: PKI, anchored: _windows.Verifier) -> None:
    verify(anchored, pki.chain("rsa-leaf", "rsa-int", "rsa-root"))


def test_unknown_ca_without_anchor(pki: PKI) -> None:
    # Wine's SSL policy passes this chain; the dwErrorStatus check stops it.
    err = rejected(_windows.Verifier(), pki.chain("rsa-leaf", "rsa-int"))
    assert err.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert "localhost" in str(err)


def test_wrong_host(pki: PKI, anchored: _windows.Verifier) -> None:
    err = rejected(anchored, pki.chain("rsa-leaf", "rsa-int"), "wrong.example")
    assert err.verify_code == E.X509_V_ERR_HOSTNAME_MISMATCH
    assert "0x800B010F" in err.verify_message and "mismatch" in err.verify_message
    assert "'wrong.example'" in str(err)


def test_wrong_ip(pki: PKI, anchored: _windows.Verifier) -> None:
    err = rejected(anchored, pki.chain("rsa-leaf", "rsa-int"), "127.0.0.2")
    assert err.verify_code == E.X509_V_ERR_IP_ADDRESS_MISMATCH


def test_ip_not_matched_against_dns_names(pki: PKI, anchored: _windows.Verifier) -> None:
    # "localhost" is a DNS SAN; an address is only compared with IP SANs.
    err = rejected(anchored, pki.chain("self-signed"), "10.0.0.1")
    assert err.verify_code in (
        E.X509_V_ERR_IP_ADDRESS_MISMATCH,
        E.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
    )


def test_check_hostname_false_skips_only_the_name(pki: PKI, anchored: _windows.Verifier) -> None:
    verify(anchored, pki.chain("rsa-leaf", "rsa-int"), "wrong.example", check_hostname=False)
    verify(anchored, pki.chain("rsa-leaf", "rsa-int"), None, check_hostname=False)
    err = rejected(anchored, pki.chain("other-leaf"), "wrong.example", check_hostname=False)
    assert err.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY


def test_check_hostname_without_host_fails_closed(pki: PKI, anchored: _windows.Verifier) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        anchored.verify(pki.chain("rsa-leaf", "rsa-int"), None, check_hostname=True, verify_flags=0)


def test_expired(pki: PKI, anchored: _windows.Verifier) -> None:
    err = rejected(anchored, pki.chain("expired-leaf", "rsa-int"))
    assert err.verify_code == E.X509_V_ERR_CERT_HAS_EXPIRED
    assert "expired" in err.verify_message and "0x800B0101" in err.verify_message


def test_not_yet_valid(pki: PKI, anchored: _windows.Verifier) -> None:
    err = rejected(anchored, pki.chain("notyet-leaf", "rsa-int"))
    assert err.verify_code == E.X509_V_ERR_CERT_NOT_YET_VALID


def test_expired_and_wrong_host_still_expired_without_name_check(
    pki: PKI, anchored: _windows.Verifier
) -> None:
    err = rejected(
        anchored, pki.chain("expired-leaf", "rsa-int"), "x.example", check_hostname=False
    )
    assert err.verify_code == E.X509_V_ERR_CERT_HAS_EXPIRED


def test_untrusted_root(pki: PKI, anchored: _windows.Verifier) -> None:
    err = rejected(anchored, pki.chain("other-leaf"))
    assert err.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    err = rejected(anchored, pki.chain("other-leaf", "other-root"))
    assert err.verify_code == E.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    assert "CERT_E_UNTRUSTEDROOT" in err.verify_message or "UNTRUSTED_ROOT" in err.verify_message


def test_self_signed_leaf(pki: PKI, anchored: _windows.Verifier) -> None:
    err = rejected(anchored, pki.chain("self-signed"))
    assert err.verify_code == E.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    trusting = _windows.Verifier()
    trusting.set_extra_anchors([pki.der("self-signed")])
    verify(trusting, pki.chain("self-signed"))


def test_missing_intermediate(pki: PKI, anchored: _windows.Verifier) -> None:
    err = rejected(anchored, pki.chain("rsa-leaf"))
    assert err.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY


def test_intermediate_from_another_hierarchy_does_not_help(
    pki: PKI, anchored: _windows.Verifier
) -> None:
    err = rejected(anchored, pki.chain("rsa-leaf", "ec-int"))
    assert err.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY


def test_not_for_server_auth(pki: PKI, anchored: _windows.Verifier) -> None:
    err = rejected(anchored, pki.chain("clientauth-leaf", "rsa-int"))
    assert err.verify_code == E.X509_V_ERR_INVALID_PURPOSE


def test_intermediate_as_anchor(pki: PKI) -> None:
    v = _windows.Verifier()
    v.set_extra_anchors([pki.der("rsa-int")])
    anchors = v._anchors
    assert anchors is not None
    try:
        verify(v, pki.chain("rsa-leaf"))
        accepted = True
    except ssl.SSLCertVerificationError as exc:
        assert exc.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        accepted = False
    # With dwExclusiveFlags (88-byte config, Windows 8+) a CA anchor ends the
    # chain; with the short config (Wine 8, Windows 7) it does not: stricter.
    assert anchors.config_size in (88, 80)
    assert accepted == (anchors.config_size == 88)
    if ON_WINE:
        assert anchors.config_size == 80


@pytest.mark.parametrize("flags", [ssl.VERIFY_CRL_CHECK_LEAF, ssl.VERIFY_CRL_CHECK_CHAIN])
@pytest.mark.parametrize("leaf", ["crl-leaf", "rsa-leaf"])
def test_revocation_unreachable_fails_closed(
    pki: PKI, anchored: _windows.Verifier, flags: int, leaf: str
) -> None:
    # crl-leaf names a CRL on a closed loopback port; rsa-leaf names none.
    # Either way no revocation status can be had: rejected, as OpenSSL does.
    err = rejected(anchored, pki.chain(leaf, "rsa-int"), flags=flags)
    assert err.verify_code == E.X509_V_ERR_UNABLE_TO_GET_CRL
    assert "revocation" in err.verify_message


def test_revocation_not_checked_without_flags(pki: PKI, anchored: _windows.Verifier) -> None:
    verify(anchored, pki.chain("crl-leaf", "rsa-int"))
    verify(anchored, pki.chain("crl-leaf", "rsa-int"), flags=ssl.VERIFY_X509_STRICT)


def test_revocation_flag_on_untrusted_chain_reports_trust(pki: PKI) -> None:
    err = rejected(
        _windows.Verifier(), pki.chain("crl-leaf", "rsa-int"), flags=ssl.VERIFY_CRL_CHECK_LEAF
    )
    assert err.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY


@pytest.mark.parametrize(
    "chain",
    [
        [],
        [b""],
        [b"not a certificate"],
        [b"\x30\x03\x02\x01\x01"],
        ["rsa-leaf", b"garbage"],
    ],
)
def test_bad_input_fails_closed(pki: PKI, anchored: _windows.Verifier, chain: list[Any]) -> None:
    ders = [pki.der(c) if isinstance(c, str) else c for c in chain]
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        verify(anchored, ders)
    assert info.value.verify_code


def test_undecodable_anchor_is_ignored(pki: PKI) -> None:
    v = _windows.Verifier()
    v.set_extra_anchors([b"junk", pki.der("rsa-root")])
    verify(v, pki.chain("rsa-leaf", "rsa-int"))
    v.set_extra_anchors([b"junk"])
    rejected(v, pki.chain("rsa-leaf", "rsa-int"))


def test_anchor_sets_replace_each_other(pki: PKI) -> None:
    v = _windows.Verifier()
    v.set_extra_anchors([pki.der("rsa-root")])
    verify(v, pki.chain("rsa-leaf", "rsa-int"))
    rejected(v, pki.chain("ec-leaf", "ec-int"))
    v.set_extra_anchors([pki.der("ec-root")])
    verify(v, pki.chain("ec-leaf", "ec-int"))
    rejected(v, pki.chain("rsa-leaf", "rsa-int"))
    v.set_extra_anchors([])
    rejected(v, pki.chain("ec-leaf", "ec-int"))


def test_fallback_without_private_engine(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if CertCreateCertificateChainEngine refused every config size: the
    # default engine builds with the anchors as helpers, and the chain's root
    # must be one of them.
    monkeypatch.setattr(_windows, "_ENGINE_CONFIG_SIZES", ())
    v = _windows.Verifier()
    v.set_extra_anchors([pki.der("rsa-root")])
    verify(v, pki.chain("rsa-leaf", "rsa-int"))
    assert v._anchors is not None and v._anchors.config_size == 0
    verify(v, pki.chain("rsa-leaf", "rsa-int"), "127.0.0.1")
    assert rejected(v, pki.chain("rsa-leaf", "rsa-int"), "x.example").verify_code == (
        E.X509_V_ERR_HOSTNAME_MISMATCH
    )
    assert rejected(v, pki.chain("expired-leaf", "rsa-int")).verify_code == (
        E.X509_V_ERR_CERT_HAS_EXPIRED
    )
    assert rejected(v, pki.chain("rsa-leaf")).verify_code == (
        E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    )
    assert rejected(v, pki.chain("other-leaf", "other-root")).verify_code == (
        E.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    )
    assert rejected(v, pki.chain("ec-leaf", "ec-int")).verify_code == (
        E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    )


def test_shared_verifier_many_threads(pki: PKI, anchored: _windows.Verifier) -> None:
    good = [pki.chain("rsa-leaf", "rsa-int"), pki.chain("ec-leaf", "ec-int")]
    bad = pki.chain("other-leaf", "other-root")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        try:
            start.wait()
            for i in range(25):
                verify(anchored, good[(seed + i) % 2])
                try:
                    verify(anchored, bad)
                except ssl.SSLCertVerificationError:
                    pass
                else:
                    raise AssertionError("untrusted chain accepted")
                if seed == 0 and i % 5 == 0:
                    # Swapping anchor sets while others verify must be safe.
                    anchored.set_extra_anchors([pki.der("rsa-root"), pki.der("ec-root")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]


class _MemoryCounters(ctypes.Structure):
    # PROCESS_MEMORY_COUNTERS (psapi.h)
    _fields_ = [("cb", ctypes.c_uint32), ("PageFaultCount", ctypes.c_uint32)] + [
        (name, ctypes.c_size_t)
        for name in (
            "PeakWorkingSetSize",
            "WorkingSetSize",
            "QuotaPeakPagedPoolUsage",
            "QuotaPagedPoolUsage",
            "QuotaPeakNonPagedPoolUsage",
            "QuotaNonPagedPoolUsage",
            "PagefileUsage",
            "PeakPagefileUsage",
        )
    ]


def _process_usage() -> tuple[int, int]:
    """(committed private bytes, handle count or -1) of this process."""
    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.GetCurrentProcess.restype = ctypes.c_void_p
    me = ctypes.c_void_p(kernel32.GetCurrentProcess())
    counters = _MemoryCounters()
    counters.cb = ctypes.sizeof(counters)
    assert kernel32.K32GetProcessMemoryInfo(me, ctypes.byref(counters), counters.cb)
    handles = ctypes.c_uint32()
    ok = kernel32.GetProcessHandleCount(me, ctypes.byref(handles))
    # Wine 8 reports 0 handles: treat as unsupported.
    return counters.PagefileUsage, handles.value if ok and handles.value else -1


def test_no_native_leaks(pki: PKI) -> None:
    good = pki.chain("rsa-leaf", "rsa-int")
    cases: list[tuple[list[bytes], str | None, int]] = [
        (good, "localhost", 0),
        (good, "wrong.example", 0),
        (pki.chain("other-leaf", "other-root"), "localhost", 0),
        (pki.chain("expired-leaf", "rsa-int"), "localhost", 0),
        (pki.chain("crl-leaf", "rsa-int"), "localhost", ssl.VERIFY_CRL_CHECK_LEAF),
        ([good[0], b"garbage"], "localhost", 0),
        (good, "127.0.0.2", 0),
    ]

    def run(rounds: int) -> None:
        v = _windows.Verifier()
        v.set_extra_anchors([pki.der("rsa-root")])
        for _ in range(rounds):
            for chain, host, flags in cases:
                with contextlib.suppress(ssl.SSLCertVerificationError):
                    verify(v, chain, host, flags=flags)
            v.set_extra_anchors([pki.der("rsa-root")])  # a new engine each round
        del v

    run(20)  # warm up caches and allocator
    gc.collect()
    live0, leaks0 = _windows.live_native_objects()
    mem0, handles0 = _process_usage()
    run(150)
    gc.collect()
    live1, leaks1 = _windows.live_native_objects()
    mem1, handles1 = _process_usage()
    # Every store, context, chain and engine opened was freed ...
    assert (live1, leaks1) == (live0, leaks0) == (0, 0)
    # ... and the process did not grow (a leaked store + context is ~2 KB
    # under Wine: 150 rounds x 7 cases would be > 2 MB).
    assert mem1 - mem0 < 1_000_000, (mem0, mem1)
    if handles0 >= 0:
        assert handles1 - handles0 < 20, (handles0, handles1)


def test_anchor_engine_freed_with_verifier(pki: PKI) -> None:
    gc.collect()
    base = _windows.live_native_objects()[0]
    v = _windows.Verifier()
    v.set_extra_anchors([pki.der("rsa-root")])
    verify(v, pki.chain("rsa-leaf", "rsa-int"))
    assert _windows.live_native_objects()[0] == base + 2  # engine + its root store
    v.set_extra_anchors([pki.der("ec-root")])
    assert _windows.live_native_objects()[0] == base
    verify(v, pki.chain("ec-leaf", "ec-int"))
    del v
    gc.collect()
    assert _windows.live_native_objects()[0] == base


# -- the OS store ("system store" flow) -----------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, socket, ssl, sys
    from truststore import _windows
    import truststore

    der = [bytes.fromhex(h) for h in sys.argv[1].split(",")]
    port = int(sys.argv[2])
    out = {}
    try:
        _windows.Verifier().verify(der, "localhost", check_hostname=True, verify_flags=0)
        out["verifier"] = 0
    except ssl.SSLCertVerificationError as exc:
        out["verifier"] = exc.verify_code
    ctx = truststore.SSLContext()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                out["facade"] = tls.recv(6).decode()
    except ssl.SSLCertVerificationError as exc:
        out["facade"] = exc.verify_code
    print(json.dumps(out))
    """
)


def _in_fresh_process(pki: PKI, port: int) -> dict[str, Any]:
    # A new process: a chain engine reads the ROOT store when it is created
    # (Wine's default engine never again), so each state needs its own.
    chain = ",".join(d.hex() for d in pki.chain("sys-leaf"))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, chain, str(port)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_root_in_os_store_is_trusted(
    pki: PKI, server: Callable[..., TLSServer], system_root: Any
) -> None:
    srv = server("sys-leaf")
    assert _in_fresh_process(pki, srv.port) == {"verifier": 0, "facade": "hello\n"}
    system_root.remove(pki.der("sys-root"))
    gone = _in_fresh_process(pki, srv.port)
    assert gone == {
        "verifier": E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        "facade": E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    }


# -- end to end through truststore.SSLContext ------------------------------------------


@pytest.fixture
def ctx(pki: PKI) -> truststore.SSLContext:
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(pki.pem("rsa-root")))
    context.load_verify_locations(cadata=pki.der("ec-root"))
    return context


def test_facade_uses_windows_backend(ctx: truststore.SSLContext) -> None:
    assert isinstance(ctx._verifier, _windows.Verifier)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_facade_trusts_loaded_ca(
    ctx: truststore.SSLContext, server: Callable[..., TLSServer], kind: str, host: str
) -> None:
    srv = server(f"{kind}-leaf", f"{kind}-int")
    assert fetch(ctx, srv.port, host) == b"hello\n"


def test_facade_default_context_does_not_trust_test_ca(server: Callable[..., TLSServer]) -> None:
    srv = server("rsa-leaf", "rsa-int")
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        fetch(truststore.SSLContext(), srv.port)
    assert info.value.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY


@pytest.mark.parametrize(
    ("chain", "host", "code"),
    [
        (("rsa-leaf", "rsa-int"), "wrong.example", E.X509_V_ERR_HOSTNAME_MISMATCH),
        (("rsa-leaf", "rsa-int"), "127.0.0.2", E.X509_V_ERR_IP_ADDRESS_MISMATCH),
        (("expired-leaf", "rsa-int"), "localhost", E.X509_V_ERR_CERT_HAS_EXPIRED),
        (("other-leaf", "other-root"), "localhost", E.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN),
        (("other-leaf",), "localhost", E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
        (("rsa-leaf",), "localhost", E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
        (("clientauth-leaf", "rsa-int"), "localhost", E.X509_V_ERR_INVALID_PURPOSE),
        (("self-signed",), "localhost", E.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT),
    ],
    ids=[
        "wrong-host",
        "wrong-ip",
        "expired",
        "untrusted-root",
        "unknown-issuer",
        "missing-intermediate",
        "client-auth-only",
        "self-signed",
    ],
)
def test_facade_rejects(
    ctx: truststore.SSLContext,
    server: Callable[..., TLSServer],
    chain: tuple[str, ...],
    host: str,
    code: int,
) -> None:
    srv = server(*chain)
    # 127.0.0.2 is still this machine: connect to 127.0.0.1, claim .2.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        fetch(ctx, srv.port, host)
    assert info.value.verify_code == code
    assert host in str(info.value)


def test_facade_check_hostname_false(
    ctx: truststore.SSLContext, server: Callable[..., TLSServer]
) -> None:
    ctx.check_hostname = False
    assert fetch(ctx, server("rsa-leaf", "rsa-int").port, "wrong.example") == b"hello\n"
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(ctx, server("other-leaf", "other-root").port, "wrong.example")


def test_facade_cert_none(ctx: truststore.SSLContext, server: Callable[..., TLSServer]) -> None:
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    assert fetch(ctx, server("other-leaf", "other-root").port, "wrong.example") == b"hello\n"
    assert fetch(ctx, server("expired-leaf", "rsa-int").port) == b"hello\n"


def test_facade_revocation_flags(
    ctx: truststore.SSLContext, server: Callable[..., TLSServer]
) -> None:
    srv = server("crl-leaf", "rsa-int")
    assert fetch(ctx, srv.port) == b"hello\n"
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        fetch(ctx, srv.port)
    assert info.value.verify_code == E.X509_V_ERR_UNABLE_TO_GET_CRL


def test_facade_shared_context_threads(
    ctx: truststore.SSLContext, server: Callable[..., TLSServer]
) -> None:
    good = server("rsa-leaf", "rsa-int").port
    ec = server("ec-leaf", "ec-int").port
    bad = server("other-leaf", "other-root").port
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(6):
                assert fetch(ctx, good if (n + i) % 2 else ec) == b"hello\n"
                try:
                    fetch(ctx, bad)
                except ssl.SSLCertVerificationError as exc:
                    assert exc.verify_code == E.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
                else:
                    raise AssertionError("untrusted server accepted")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors[:3]


def test_facade_asyncio(ctx: truststore.SSLContext, server: Callable[..., TLSServer]) -> None:
    async def greet(port: int, host: str) -> bytes:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=host
        )
        try:
            return await reader.readexactly(6)
        finally:
            writer.close()

    good = server("rsa-leaf", "rsa-int").port
    assert asyncio.run(greet(good, "localhost")) == b"hello\n"
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        asyncio.run(greet(good, "wrong.example"))
    assert info.value.verify_code == E.X509_V_ERR_HOSTNAME_MISMATCH


def test_facade_no_leaks_over_connections(
    ctx: truststore.SSLContext, server: Callable[..., TLSServer]
) -> None:
    port = server("rsa-leaf", "rsa-int").port
    for _ in range(5):
        fetch(ctx, port)
    gc.collect()
    before = _windows.live_native_objects()
    for _ in range(30):
        fetch(ctx, port)
        with pytest.raises(ssl.SSLCertVerificationError):
            fetch(ctx, port, "wrong.example")
    gc.collect()
    assert _windows.live_native_objects() == before


def test_facade_socket_closed_after_rejection(
    ctx: truststore.SSLContext, server: Callable[..., TLSServer]
) -> None:
    srv = server("other-leaf", "other-root")
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    with pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw, server_hostname="localhost")
    raw.close()
