"""Issue 10's connection-state rows through the Windows backend (CryptoAPI).

The same cases as tests/test_connection_state.py (which drives the macOS
backend against its stand-in on Linux), here with ``truststore.SSLContext``
as it is on Windows: OpenSSL told ``CERT_NONE``, the chain verified by
``_windows.Verifier`` after the handshake.  Certificates come from pki.py.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import ctypes
import io
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import truststore
from conftest import PKI
from truststore import _common, _windows

E = _common
SECRET = b"the secret that must not reach an unverified peer"
GREETING = b"greeting\n"
TIMEOUT = 30.0


class RecordingServer:
    """TLS server on 127.0.0.1: greets each client, records every byte it gets."""

    def __init__(self, chain: Path, key: Path, *, context: ssl.SSLContext | None = None) -> None:
        self.context = context or ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(chain), str(key))
        self.received = bytearray()
        self.got_data = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        with contextlib.suppress(OSError), conn:
            tls = self.context.wrap_socket(conn, server_side=True)
            tls.sendall(GREETING)
            while chunk := tls.recv(65536):
                self.received += chunk
                self.got_data.set()

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()


def _server(pki: PKI, *chain: str, **kw: Any) -> RecordingServer:
    return RecordingServer(pki.bundle(*chain), pki.key(chain[0]), **kw)


def _anchored(pki: PKI, cls: type[truststore.SSLContext] = truststore.SSLContext) -> Any:
    context = cls()
    context.load_verify_locations(cafile=str(pki.pem("rsa-root")))
    return context


# -- a Windows verifier that blocks on an event ---------------------------------------


class Gate:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.escape: BaseException | None = None
        self.calls = 0


def gated(gate: Gate) -> type[truststore.SSLContext]:
    class GatedVerifier(_windows.Verifier):
        def verify(self, *args: Any, **kwargs: Any) -> None:
            gate.calls += 1
            gate.entered.set()
            if not gate.release.wait(TIMEOUT):
                raise AssertionError("never released")
            if gate.escape is not None:
                raise gate.escape
            super().verify(*args, **kwargs)

    class GatedContext(truststore.SSLContext):
        _verifier_class = GatedVerifier

    return GatedContext


def _blocked_in_gate(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident)  # type: ignore[arg-type]
    while frame is not None:
        if frame.f_code.co_name == "_await_verdict":
            return True
        frame = frame.f_back
    return False


OPS: dict[str, Callable[[ssl.SSLSocket], object]] = {
    "sendall": lambda tls: tls.sendall(SECRET),
    "send": lambda tls: tls.send(SECRET),
    "sendfile": lambda tls: tls.sendfile(io.BytesIO(SECRET)),  # type: ignore[arg-type]
    "recv": lambda tls: tls.recv(100),
    "recv_into": lambda tls: tls.recv_into(bytearray(100)),
    "do_handshake": lambda tls: tls.do_handshake(),
    "unwrap": lambda tls: tls.unwrap(),
}


# -- 1. -------------------------------------------------------------------------------


@pytest.mark.parametrize("op", list(OPS))
def test_second_thread_waits_for_a_refusal(pki: PKI, op: str) -> None:
    gate = Gate()
    context = gated(gate)()  # rsa-root not loaded: the verdict is "untrusted"
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}

    def run(target: dict[str, Any], call: Callable[[], object]) -> None:
        try:
            target["value"] = call()
        except BaseException as exc:
            target["exc"] = exc

    with (
        _server(pki, "rsa-leaf", "rsa-int") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
    ):
        tls = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        a = threading.Thread(target=run, args=(first, tls.do_handshake))
        a.start()
        assert gate.entered.wait(TIMEOUT)
        b = threading.Thread(target=run, args=(second, lambda: OPS[op](tls)))
        b.start()
        deadline = time.monotonic() + TIMEOUT
        while b.is_alive() and not _blocked_in_gate(b):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        gate.release.set()
        a.join(TIMEOUT)
        b.join(TIMEOUT)
        tls.close()
    assert isinstance(first.get("exc"), ssl.SSLCertVerificationError), first
    assert isinstance(second.get("exc"), ssl.SSLCertVerificationError), second
    assert SECRET not in server.received
    assert gate.calls == 1


# -- 2. -------------------------------------------------------------------------------


class Escape(BaseException):
    pass


@pytest.mark.parametrize(
    "escape", [KeyboardInterrupt, SystemExit, Escape], ids=lambda e: e.__name__
)
def test_escape_during_verification_fails_the_connection(
    pki: PKI, escape: type[BaseException]
) -> None:
    gate = Gate()
    gate.release.set()
    gate.escape = escape("interrupted")
    context = _anchored(pki, gated(gate))
    with (
        _server(pki, "rsa-leaf", "rsa-int") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
    ):
        tls = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        with pytest.raises(escape):
            tls.do_handshake()
        gate.escape = None
        for op in ("do_handshake", "sendall", "recv"):
            with pytest.raises(ssl.SSLCertVerificationError):
                OPS[op](tls)
        tls.close()
        # The memory-BIO path (asyncio, trio, urllib3's SSLTransport).
        gate.escape = escape("interrupted")
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            with pytest.raises(escape):
                _bio_handshake(obj, sock, incoming, outgoing)
            gate.escape = None
            for call in (obj.do_handshake, lambda: obj.write(SECRET), lambda: obj.read(10)):
                with pytest.raises(ssl.SSLCertVerificationError):
                    call()
    assert SECRET not in server.received
    assert gate.calls == 2


def _bio_handshake(
    tls: ssl.SSLObject, sock: socket.socket, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
) -> None:
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the handshake") from None
            incoming.write(data)
    sock.sendall(outgoing.read())


# -- 3. -------------------------------------------------------------------------------


def test_init_twice_keeps_verification(pki: PKI) -> None:
    context = _anchored(pki)
    truststore.SSLContext.__init__(context)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with (
        _server(pki, "other-leaf", "other-root") as server,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        _greeting(context, server.port)
    with _server(pki, "rsa-leaf", "rsa-int") as server:
        assert _greeting(context, server.port) == GREETING


def _greeting(context: ssl.SSLContext, port: int, host: str = "localhost", **kw: Any) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host, **kw) as tls,
    ):
        return tls.recv(len(GREETING))


# -- 4. -------------------------------------------------------------------------------

SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION = 0x00010000  # OpenSSL's SSL_OP_BIT(16)


def _libssl() -> ctypes.CDLL:
    for name in ("libssl-3", "libssl-3-x64", "libssl-1_1", "libssl-1_1-x64"):
        with contextlib.suppress(OSError):
            lib = ctypes.CDLL(name)
            break
    else:
        raise AssertionError(f"no libssl DLL next to {_ssl.__file__}")
    for fn in ("SSL_renegotiate", "SSL_do_handshake", "SSL_renegotiate_pending"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
    lib.SSL_get_fd.argtypes = [ctypes.c_void_p]
    lib.SSL_get_fd.restype = ctypes.c_int
    lib.SSL_use_certificate_chain_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.SSL_use_PrivateKey_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    return lib


def _ssl_pointer(sslobj: object) -> int:
    # PySSLSocket: PyObject_HEAD, the socket weakref, then SSL *ssl.
    offset = 3 * ctypes.sizeof(ctypes.c_void_p)
    return int(ctypes.c_void_p.from_address(id(sslobj) + offset).value or 0)


def test_renegotiation_to_another_certificate_is_refused(pki: PKI) -> None:
    lib = _libssl()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.options |= SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION | ssl.OP_NO_TICKET
    server_ctx.load_cert_chain(str(pki.bundle("rsa-leaf", "rsa-int")), str(pki.key("rsa-leaf")))
    listener = socket.create_server(("127.0.0.1", 0))
    result: dict[str, Any] = {"renegotiated": False, "after": b""}

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(TIMEOUT)
                tls.recv(100)
                p = _ssl_pointer(tls._sslobj)  # type: ignore[attr-defined]
                assert lib.SSL_get_fd(p) == tls.fileno(), "not the SSL object"
                assert lib.SSL_use_certificate_chain_file(
                    p, str(pki.bundle("other-leaf", "other-root")).encode()
                )
                assert lib.SSL_use_PrivateKey_file(p, str(pki.key("other-leaf")).encode(), 1)
                tls.setblocking(True)
                assert lib.SSL_renegotiate(p) == 1
                lib.SSL_do_handshake(p)  # sends the HelloRequest
                tls.setblocking(False)
                deadline = time.monotonic() + TIMEOUT
                while time.monotonic() < deadline:
                    try:
                        chunk = tls.recv(65536)
                    except ssl.SSLWantReadError:
                        select.select([tls], [], [], 0.05)
                        chunk = None
                    if chunk == b"":
                        return
                    if result["renegotiated"] and chunk:
                        result["after"] += chunk
                    if not result["renegotiated"] and not lib.SSL_renegotiate_pending(p):
                        result["renegotiated"] = True
                        tls.setblocking(True)
                        tls.sendall(b"renegotiated\n")
                        tls.setblocking(False)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    seen = []
    context = _anchored(pki)
    with (
        socket.create_connection(("127.0.0.1", listener.getsockname()[1]), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        seen.append(tls.getpeercert(True))
        tls.sendall(b"hello")
        data = b""
        with contextlib.suppress(ssl.SSLError, OSError):
            while b"renegotiated\n" not in data and (chunk := tls.recv(100)):
                data += chunk
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            seen.append(tls.getpeercert(True))
        with contextlib.suppress(ssl.SSLError, OSError):
            tls.sendall(SECRET)
    thread.join(TIMEOUT)
    listener.close()
    assert not result["renegotiated"]
    assert SECRET not in result["after"]
    assert all(cert == pki.der("rsa-leaf") for cert in seen)


# -- 6. -------------------------------------------------------------------------------


def test_only_the_resumed_session_counts(pki: PKI) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    context = _anchored(pki)

    def session_for(port: int, host: str) -> ssl.SSLSession:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.recv(len(GREETING))
            assert tls.session is not None
            return tls.session

    with _server(pki, "rsa-leaf", "rsa-int", context=server_ctx) as server:
        name = session_for(server.port, "localhost")
        address = session_for(server.port, "127.0.0.1")
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw:
            tls = context.wrap_socket(
                raw, server_hostname="localhost", session=name, do_handshake_on_connect=False
            )
            tls.session = address
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                tls.do_handshake()
            tls.close()
        assert info.value.verify_code == E.X509_V_ERR_HOSTNAME_MISMATCH
        assert _greeting(context, server.port, session=name) == GREETING


# -- 7. -------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [None, 0, 1, 3])
@pytest.mark.parametrize("leaf", ["rsa1024-leaf", "sha1-leaf", "rsa-leaf"])
def test_security_level_applies_to_the_peer_chain(pki: PKI, leaf: str, level: int | None) -> None:
    plain = ssl.create_default_context(cafile=str(pki.pem("rsa-root")))
    ours = _anchored(pki)
    if level is not None:
        for context in (plain, ours):
            context.set_ciphers(f"DEFAULT:@SECLEVEL={level}")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")

    def outcome(context: ssl.SSLContext) -> int | None:
        try:
            _greeting(context, server.port)
        except ssl.SSLCertVerificationError as exc:
            return exc.verify_code
        return None

    with _server(pki, leaf, "rsa-int", context=server_ctx) as server:
        expected, got = outcome(plain), outcome(ours)
    if level is None and leaf != "rsa-leaf":
        assert expected in (66, 68), expected
    assert got == expected


# -- 11. ------------------------------------------------------------------------------


def test_getpeercert_after_verification(pki: PKI) -> None:
    plain = ssl.create_default_context(cafile=str(pki.pem("rsa-root")))
    ours = _anchored(pki)

    def peercert(context: ssl.SSLContext) -> Any:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return tls.getpeercert()

    async def extra() -> Any:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=ours, server_hostname="localhost"
        )
        try:
            return writer.get_extra_info("peercert")
        finally:
            writer.close()

    with _server(pki, "rsa-leaf", "rsa-int") as server:
        expected = peercert(plain)
        assert expected and peercert(ours) == expected
        assert asyncio.run(extra()) == expected
