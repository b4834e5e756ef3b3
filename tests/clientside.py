"""Client-side helpers for the core-library tests: one real request over a
real socket, a hand-driven memory-BIO handshake, and a result check."""

from __future__ import annotations

import socket
import ssl

import pytest

from support import HTTP_BODY, TLSServer

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


def read_all(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while True:
        try:
            chunk = tls.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        data += chunk
    return data


def fetch(
    ctx: ssl.SSLContext,
    server: TLSServer,
    server_hostname: str | None,
    **wrap_kwargs: object,
) -> ssl.SSLSocket:
    """Connect, handshake, send one request, check the answer; return the
    (closed) TLS socket so that callers can look at its session."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_STREAM)
    raw.settimeout(10)
    try:
        raw.connect((server.host, server.port))
        tls = ctx.wrap_socket(raw, server_hostname=server_hostname, **wrap_kwargs)  # type: ignore[arg-type]
    except BaseException:
        raw.close()
        raise
    with tls:
        if not wrap_kwargs.get("do_handshake_on_connect", True):
            tls.do_handshake()
        tls.sendall(REQUEST)
        assert read_all(tls).endswith(HTTP_BODY)
    return tls


def expect_rejected(
    ctx: ssl.SSLContext, server: TLSServer, server_hostname: str, code: int
) -> ssl.SSLCertVerificationError:
    """The handshake must fail with *code*, and the message must name the host."""
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        fetch(ctx, server, server_hostname)
    err = info.value
    assert err.verify_code == code, (err.verify_code, err.verify_message, str(err))
    assert err.verify_message
    # The host as the context encodes it (IDNA A-label, as sent in SNI).
    assert repr(ctx._encode_hostname(server_hostname)) in str(err), str(err)  # type: ignore[attr-defined]
    return err


def pump(
    sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, sock: socket.socket
) -> None:
    """Drive a memory-BIO handshake over a blocking socket by hand."""
    while True:
        try:
            sslobj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        else:
            break
        finally:
            data = outgoing.read()
            if data:
                sock.sendall(data)
        chunk = sock.recv(65536)
        if not chunk:
            incoming.write_eof()
        else:
            incoming.write(chunk)


def flush(outgoing: ssl.MemoryBIO, sock: socket.socket) -> None:
    data = outgoing.read()
    if data:
        sock.sendall(data)


def bio_fetch(ctx: ssl.SSLContext, server: TLSServer, server_hostname: str | None) -> ssl.SSLObject:
    """One request over ``wrap_bio``, driven by hand."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        pump(sslobj, incoming, outgoing, sock)
        sslobj.write(REQUEST)
        flush(outgoing, sock)
        data = b""
        while not data.endswith(HTTP_BODY):
            try:
                data += sslobj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            incoming.write(chunk)
        assert data.endswith(HTTP_BODY)
    return sslobj
