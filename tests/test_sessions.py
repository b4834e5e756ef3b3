"""TLS session resumption: OpenSSL skips certificate and host-name checks
when a session is resumed, so a resumed connection is only as trustworthy as
the connection that produced the session.  The context must resume what it
verified, for the host it verified, and nothing else."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme

import truststore
from clientside import REQUEST, flush, pump, read_all
from support import HTTP_BODY, TLSServer, serve_cert

HOSTNAME_MISMATCH = 62

VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.fixture(params=VERSIONS, ids=["TLSv1.2", "TLSv1.3"])
def server(request: pytest.FixtureRequest, os_store: trustme.CA) -> Iterator[TLSServer]:
    """A server for a.example and www.a.example only, resuming sessions."""
    leaf = os_store.issue_cert("a.example", "www.a.example")
    with serve_cert(leaf, max_version=request.param) as srv:
        yield srv


def connect(
    ctx: ssl.SSLContext,
    server: TLSServer,
    host: str,
    session: ssl.SSLSession | None = None,
) -> tuple[bool, ssl.SSLSession | None]:
    """One request; (was the session resumed?, the session for next time)."""
    raw = socket.create_connection((server.host, server.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname=host, session=session) as tls:
        tls.sendall(REQUEST)
        assert read_all(tls).endswith(HTTP_BODY)  # TLS 1.3 tickets arrive meanwhile
        if ctx.verify_mode != ssl.CERT_NONE:
            assert tls.getpeercert()  # a verified peer, resumed or not
        return tls.session_reused, tls.session


def test_resumes_a_verified_session(server: TLSServer) -> None:
    ctx = truststore.SSLContext()
    reused, session = connect(ctx, server, "a.example")
    assert not reused and session is not None
    reused, again = connect(ctx, server, "a.example", session)
    assert reused and again is not None
    # A session handed out on a resumed connection is as good as its parent.
    reused, _ = connect(ctx, server, "a.example", again)
    assert reused
    # The same session for another name the certificate covers, verified
    # for a.example: that is a different host, so it must not resume blindly.
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(ctx, server, "www.a.example", session)


def test_stdlib_resumes_for_any_host(server: TLSServer) -> None:
    """The hole: OpenSSL resumes a session for a host it was never checked for."""
    std = ssl.create_default_context()  # the same "OS store" via SSL_CERT_FILE
    _, session = connect(std, server, "a.example")
    reused, _ = connect(std, server, "evil.example", session)
    assert reused


def test_refuses_session_of_another_host(server: TLSServer) -> None:
    ctx = truststore.SSLContext()
    _, session = connect(ctx, server, "a.example")
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        connect(ctx, server, "evil.example", session)
    assert info.value.verify_code == HOSTNAME_MISMATCH
    assert "'evil.example'" in str(info.value)
    # A fresh handshake for that host fails on the certificate, as it should.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        connect(ctx, server, "evil.example")
    assert info.value.verify_code == HOSTNAME_MISMATCH


def test_refuses_session_made_without_verification(server: TLSServer, os_store: trustme.CA) -> None:
    """Verification off for one connection, on again: its session is not trusted."""
    stranger = trustme.CA().issue_cert("a.example")
    ctx = truststore.SSLContext()
    with serve_cert(stranger, max_version=server.context.maximum_version) as untrusted:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _, session = connect(ctx, untrusted, "a.example")
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            connect(ctx, untrusted, "a.example", session)
        assert "did not verify" in str(info.value)
        # The stdlib would resume it: shows the resumption really happens.
        std = ssl.create_default_context()
        std.check_hostname = False
        std.verify_mode = ssl.CERT_NONE
        _, std_session = connect(std, untrusted, "a.example")
        std.verify_mode = ssl.CERT_REQUIRED
        std.check_hostname = True
        assert connect(std, untrusted, "a.example", std_session)[0] is True


def test_session_verified_without_host_check_is_not_enough_for_a_host(
    server: TLSServer,
) -> None:
    ctx = truststore.SSLContext()
    ctx.check_hostname = False
    _, session = connect(ctx, server, "anything.example")
    ctx.check_hostname = True
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(ctx, server, "a.example", session)


def test_rejected_resumption_poisons_the_socket(server: TLSServer) -> None:
    ctx = truststore.SSLContext()
    _, session = connect(ctx, server, "a.example")
    raw = socket.create_connection((server.host, server.port), timeout=10)
    with ctx.wrap_socket(
        raw, server_hostname="evil.example", session=session, do_handshake_on_connect=False
    ) as tls:
        with pytest.raises(ssl.SSLCertVerificationError):
            tls.do_handshake()
        with pytest.raises(OSError):
            tls.sendall(REQUEST)
        with pytest.raises(OSError):
            tls.recv(1)
        with pytest.raises(OSError):
            tls.do_handshake()


def test_rejected_resumption_poisons_the_bio(server: TLSServer) -> None:
    ctx = truststore.SSLContext()
    _, session = connect(ctx, server, "a.example")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname="evil.example", session=session)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            pump(sslobj, incoming, outgoing, sock)
        assert info.value.verify_code == HOSTNAME_MISMATCH
        flush(outgoing, sock)
        for use in (
            lambda: sslobj.write(REQUEST),
            lambda: sslobj.read(1),
            sslobj.do_handshake,
            sslobj.getpeercert,
        ):
            with pytest.raises(ssl.SSLCertVerificationError):
                use()
        assert outgoing.pending == 0


def test_resumption_over_bio(server: TLSServer) -> None:
    ctx = truststore.SSLContext()
    _, session = connect(ctx, server, "a.example")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname="a.example", session=session)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        pump(sslobj, incoming, outgoing, sock)
        assert sslobj.session_reused


def test_implicit_handshake_on_first_write_is_checked(server: TLSServer) -> None:
    """With do_handshake_on_connect=False, the first send()/recv() makes
    OpenSSL run the handshake by itself; the session binding must hold there
    too, before a byte of the request leaves."""
    ctx = truststore.SSLContext()
    _, session = connect(ctx, server, "a.example")
    for first_use in ("sendall", "recv"):
        raw = socket.create_connection((server.host, server.port), timeout=10)
        with ctx.wrap_socket(
            raw, server_hostname="evil.example", session=session, do_handshake_on_connect=False
        ) as tls:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                if first_use == "sendall":
                    tls.sendall(REQUEST)
                else:
                    tls.recv(1)
            assert info.value.verify_code == HOSTNAME_MISMATCH
            with pytest.raises(OSError):
                tls.sendall(REQUEST)


def test_implicit_handshake_on_first_bio_write_is_checked(server: TLSServer) -> None:
    ctx = truststore.SSLContext()
    _, session = connect(ctx, server, "a.example")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname="evil.example", session=session)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            for _ in range(20):  # write() drives the handshake until it can send
                try:
                    sslobj.write(REQUEST)
                    break
                except ssl.SSLWantReadError:
                    flush(outgoing, sock)
                    incoming.write(sock.recv(65536))
        assert info.value.verify_code == HOSTNAME_MISMATCH
        flush(outgoing, sock)
        with pytest.raises(ssl.SSLCertVerificationError):
            sslobj.write(REQUEST)
    assert REQUEST not in outgoing.read()
