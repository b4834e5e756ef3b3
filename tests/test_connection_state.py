"""Per-connection state on the post-handshake ("intercept") path (issue 10).

On Windows and macOS OpenSSL is told ``CERT_NONE`` and the peer is verified
after the handshake; these tests drive that path through the macOS backend
against the C stand-in (``tests/macos_standin/``, fixtures shared with
``test_macos_standin.py``), with real TLS servers on 127.0.0.1:

1. a second thread's data call while the first verifies waits for the
   verdict (driven by a verifier that blocks on an event, not by sleeping);
2. anything escaping verification (KeyboardInterrupt, SystemExit, any
   BaseException) fails the connection for good, sockets and memory BIOs;
3. ``SSLContext.__init__`` called twice keeps verification on;
4. a TLS 1.2 renegotiation to another certificate is refused;
6. a resumed session counts only if *it* (not the one offered at wrap time)
   was verified for this host;
7. the context's security level applies to the peer chain (key sizes,
   signature digests), never weaker than a plain ``ssl.SSLContext``;
11. ``getpeercert()`` (and asyncio's ``peercert``) after verification is the
    standard library's dict.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import ctypes
import datetime
import io
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import truststore
from support import HTTP_BODY
from test_macos_standin import (
    PKI,
    Issued,
    MacSSLContext,
    StandIn,
    _context,
    _get,
    _get_fails,
    _issue,
    _no_cf_leaks,
    pki,
    standin,
    standin_builds,
)
from truststore import _common, _macos

# The stand-in's fixtures, shared with test_macos_standin.py (pytest finds
# fixtures in the module's namespace; this tuple marks them as used).
SHARED_FIXTURES = (_no_cf_leaks, pki, standin, standin_builds)

SECRET = b"the secret that must not reach an unverified peer"
GREETING = b"greeting from the server\n"
TIMEOUT = 20.0


# -- servers ---------------------------------------------------------------------


class RecordingServer:
    """TLS server on 127.0.0.1: greets each client, records every byte it gets."""

    def __init__(
        self, chain_pem: bytes, key_pem: bytes, tmp: Path, *, context: ssl.SSLContext | None = None
    ) -> None:
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (tmp / "chain.pem").write_bytes(chain_pem)
        (tmp / "key.pem").write_bytes(key_pem)
        context.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
        self.context = context
        self.received = bytearray()
        self.got_data = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

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
                with self._lock:
                    self.received += chunk
                self.got_data.set()

    def close(self) -> None:
        self._listener.close()

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recording(issued: Issued, tmp: Path, **kw: Any) -> RecordingServer:
    return RecordingServer(issued.chain_pem, issued.key_pem, tmp, **kw)


# -- a verifier that blocks on an event (the OS call that takes a while) ----------


class Gate:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.escape: BaseException | None = None
        self.calls = 0


def gated_context_class(gate: Gate) -> type[MacSSLContext]:
    class GatedVerifier(_macos.Verifier):
        def verify(self, *args: Any, **kwargs: Any) -> None:
            gate.calls += 1
            gate.entered.set()
            if not gate.release.wait(TIMEOUT):
                raise AssertionError("the test never released the verifier")
            if gate.escape is not None:
                raise gate.escape
            super().verify(*args, **kwargs)

    class GatedContext(MacSSLContext):
        _verifier_class = GatedVerifier

    return GatedContext


def _blocked_in_gate(thread: threading.Thread) -> bool:
    """Is *thread* waiting for another thread's verdict (inside _connection)?"""
    frame = sys._current_frames().get(thread.ident)  # type: ignore[arg-type]
    while frame is not None:
        if frame.f_code.co_name == "_await_verdict" and frame.f_code.co_filename.endswith(
            "_connection.py"
        ):
            return True
        frame = frame.f_back
    return False


def _wait_blocked_or_done(thread: threading.Thread) -> None:
    deadline = time.monotonic() + TIMEOUT
    while thread.is_alive() and not _blocked_in_gate(thread):
        assert time.monotonic() < deadline, "second thread neither blocked nor finished"
        time.sleep(0.002)


# -- 1. a second thread while the first verifies ------------------------------------

OPS: dict[str, Callable[[ssl.SSLSocket], object]] = {
    "sendall": lambda tls: tls.sendall(SECRET),
    "send": lambda tls: tls.send(SECRET),
    "write": lambda tls: tls.write(SECRET),
    "sendfile": lambda tls: tls.sendfile(io.BytesIO(SECRET)),  # type: ignore[arg-type]
    "recv": lambda tls: tls.recv(100),
    "recv_into": lambda tls: bytes(_recv_into(tls)),
    "read": lambda tls: tls.read(100),
    "do_handshake": lambda tls: tls.do_handshake(),
    "unwrap": lambda tls: tls.unwrap(),
}


def _recv_into(tls: ssl.SSLSocket) -> bytearray:
    buffer = bytearray(100)
    return buffer[: tls.recv_into(buffer)]


def _race(
    context: ssl.SSLContext,
    gate: Gate,
    port: int,
    op: str,
    before_close: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Thread A handshakes and blocks in the verifier; thread B runs *op*
    meanwhile; then the verifier is released.  Returns both outcomes."""
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}

    def run(target: dict[str, Any], call: Callable[[], object]) -> None:
        try:
            target["value"] = call()
        except BaseException as exc:
            target["exc"] = exc

    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        tls = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        a = threading.Thread(target=run, args=(first, tls.do_handshake))
        a.start()
        assert gate.entered.wait(TIMEOUT)
        b = threading.Thread(target=run, args=(second, lambda: OPS[op](tls)))
        b.start()
        _wait_blocked_or_done(b)
        gate.release.set()
        a.join(TIMEOUT)
        b.join(TIMEOUT)
        assert not a.is_alive() and not b.is_alive()
        # Still open: closing with the greeting unread sends a TCP reset,
        # which may drop what the server has not read yet.
        before_close()
        tls.close()
    return first, second


@pytest.mark.parametrize("op", list(OPS))
def test_second_thread_waits_for_a_refusal(
    standin: StandIn, pki: PKI, tmp_path: Path, op: str
) -> None:
    gate = Gate()
    context = gated_context_class(gate)()  # no anchor: the verdict is "untrusted"
    with _recording(pki.good, tmp_path) as server:
        first, second = _race(context, gate, server.port, op)
    assert isinstance(first.get("exc"), ssl.SSLCertVerificationError), first
    assert isinstance(second.get("exc"), ssl.SSLCertVerificationError), second
    assert SECRET not in server.received
    assert gate.calls == 1


@pytest.mark.parametrize("op", ["sendall", "recv", "do_handshake"])
def test_second_thread_proceeds_after_approval(
    standin: StandIn, pki: PKI, tmp_path: Path, op: str
) -> None:
    gate = Gate()
    context = gated_context_class(gate)()
    context.load_verify_locations(cadata=pki.root.cert_pem.bytes().decode())
    with _recording(pki.good, tmp_path) as server:

        def secret_arrives() -> None:
            deadline = time.monotonic() + TIMEOUT
            while op == "sendall" and SECRET not in server.received:
                assert time.monotonic() < deadline, bytes(server.received)
                server.got_data.wait(0.05)

        first, second = _race(context, gate, server.port, op, secret_arrives)
    assert "exc" not in first and "exc" not in second, (first, second)
    if op == "recv":
        assert GREETING.startswith(second["value"]) and second["value"]
    assert gate.calls == 1


# -- 2. anything escaping verification fails the connection ------------------------


class Escape(BaseException):
    """Stands in for gevent.Timeout and friends."""


ESCAPES = [KeyboardInterrupt, SystemExit, Escape]


@pytest.mark.parametrize("escape", ESCAPES, ids=lambda e: e.__name__)
def test_escape_during_verification_fails_the_socket(
    standin: StandIn, pki: PKI, tmp_path: Path, escape: type[BaseException]
) -> None:
    gate = Gate()
    gate.release.set()
    gate.escape = escape("interrupted")
    context = gated_context_class(gate)()
    # The chain is trusted: only the escape stands between us and the data.
    context.load_verify_locations(cadata=pki.root.cert_pem.bytes().decode())
    with (
        _recording(pki.good, tmp_path) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
    ):
        tls = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        with pytest.raises(escape):
            tls.do_handshake()
        gate.escape = None  # a retry would now be approved: it must not even ask
        for op in ("do_handshake", "sendall", "recv", "write", "read"):
            with pytest.raises(ssl.SSLCertVerificationError):
                OPS[op](tls)
        tls.close()
    assert SECRET not in server.received
    assert gate.calls == 1


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
                raise ConnectionError("server closed during the handshake") from None
            incoming.write(data)
    sock.sendall(outgoing.read())


@pytest.mark.parametrize("escape", ESCAPES, ids=lambda e: e.__name__)
def test_escape_during_verification_fails_the_memory_bio(
    standin: StandIn, pki: PKI, tmp_path: Path, escape: type[BaseException]
) -> None:
    gate = Gate()
    gate.release.set()
    gate.escape = escape("interrupted")
    context = gated_context_class(gate)()
    context.load_verify_locations(cadata=pki.root.cert_pem.bytes().decode())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with (
        _recording(pki.good, tmp_path) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock,
    ):
        with pytest.raises(escape):
            _bio_handshake(tls, sock, incoming, outgoing)
        gate.escape = None
        with pytest.raises(ssl.SSLCertVerificationError):
            tls.do_handshake()
        with pytest.raises(ssl.SSLCertVerificationError):
            tls.write(SECRET)
        with pytest.raises(ssl.SSLCertVerificationError):
            tls.read(100)
        with pytest.raises(ssl.SSLCertVerificationError):
            tls.unwrap()
        sock.sendall(outgoing.read())
    assert SECRET not in server.received
    assert gate.calls == 1


# -- 3. __init__ twice -------------------------------------------------------------


def test_init_twice_keeps_verification(standin: StandIn, pki: PKI) -> None:
    context = _context(pki.root)
    MacSSLContext.__init__(context)  # a mixin / cooperative subclass does this
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    foreign = _issue(pki.other_root, "localhost", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    with foreign.server() as server:
        _get_fails(context, server)
    with pki.good.server() as server:
        _get_fails(context, server, "wrong.example")
        assert _get(context, server, "localhost").endswith(HTTP_BODY)


def test_init_twice_keeps_the_users_switches(standin: StandIn, pki: PKI) -> None:
    context = _context(pki.root)
    context.check_hostname = False
    MacSSLContext.__init__(context)
    # Like the standard library, whose SSLContext has no __init__ at all.
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname


# -- 4. renegotiation --------------------------------------------------------------


def _native_ssl_pointer(sslobj: object) -> int:
    """The ``SSL *`` inside a CPython ``_ssl._SSLSocket`` (PySSLSocket:
    PyObject_HEAD, the socket weakref, then ``SSL *ssl``; 3.10-3.13)."""
    head = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
    return int(
        ctypes.c_void_p.from_address(id(sslobj) + head + ctypes.sizeof(ctypes.c_void_p)).value or 0
    )


def _libssl() -> ctypes.CDLL:
    # dlsym on _ssl's own handle finds the libssl that _ssl is linked with.
    lib = ctypes.CDLL(_ssl.__file__)
    for name in ("SSL_renegotiate", "SSL_do_handshake", "SSL_get_fd", "SSL_renegotiate_pending"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_int
    lib.SSL_use_certificate_chain_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.SSL_use_PrivateKey_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    return lib


# OpenSSL's SSL_OP_BIT(16) (include/openssl/ssl.h.in); ssl.py has no name for it.
SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION = 0x00010000


class RenegotiatingServer:
    """TLS 1.2 server on 127.0.0.1 presenting *first*; after the client's
    first message it switches to *second* and renegotiates (OpenSSL's
    ``SSL_renegotiate`` on its own SSL object: Python has no API for it)."""

    def __init__(self, first: Issued, second: Issued, tmp: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.maximum_version = ssl.TLSVersion.TLSv1_2
        # A full handshake, so the new certificate is really sent.
        self.context.options |= SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION | ssl.OP_NO_TICKET
        (tmp / "first.pem").write_bytes(first.chain_pem)
        (tmp / "first.key").write_bytes(first.key_pem)
        (tmp / "second.pem").write_bytes(second.chain_pem)
        (tmp / "second.key").write_bytes(second.key_pem)
        self.context.load_cert_chain(tmp / "first.pem", tmp / "first.key")
        self.second = (str(tmp / "second.pem").encode(), str(tmp / "second.key").encode())
        self.lib = _libssl()
        self.hello_request_sent: bool | None = None
        self.renegotiated = False
        self.received_after = bytearray()
        self.done = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve_one, daemon=True).start()

    def _serve_one(self) -> None:
        try:
            conn, _ = self._listener.accept()
            with conn, self.context.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(TIMEOUT)
                tls.recv(100)  # the client's first message, under the first certificate
                pointer = _native_ssl_pointer(tls._sslobj)  # type: ignore[attr-defined]
                assert self.lib.SSL_get_fd(pointer) == tls.fileno(), "not the SSL object"
                chain, key = self.second
                assert self.lib.SSL_use_certificate_chain_file(pointer, chain) == 1
                assert self.lib.SSL_use_PrivateKey_file(pointer, key, 1) == 1  # PEM
                tls.setblocking(True)
                assert self.lib.SSL_renegotiate(pointer) == 1
                # A server's SSL_do_handshake sends the HelloRequest and
                # returns; the renegotiation runs inside its later reads.
                self.hello_request_sent = self.lib.SSL_do_handshake(pointer) == 1
                self._read_through_renegotiation(tls, pointer)
        except OSError:
            pass
        finally:
            self._listener.close()
            self.done.set()

    def _read_through_renegotiation(self, tls: ssl.SSLSocket, pointer: int) -> None:
        """Read (non-blocking) until the renegotiation is complete, say so,
        then record everything the client sends under the new certificate."""
        tls.setblocking(False)
        deadline = time.monotonic() + TIMEOUT
        announced = False
        while time.monotonic() < deadline:
            try:
                chunk = tls.recv(65536)
            except ssl.SSLWantReadError:
                select.select([tls], [], [], 0.05)
                chunk = None
            if chunk == b"":
                return
            if announced and chunk:
                self.received_after += chunk
            if not announced and not self.lib.SSL_renegotiate_pending(pointer):
                self.renegotiated = True
                tls.setblocking(True)
                tls.sendall(b"renegotiated\n")
                tls.setblocking(False)
                announced = True


def _renegotiation_client(context: ssl.SSLContext, port: int) -> list[bytes | None]:
    """Talk through a renegotiation; returns every peer certificate seen."""
    seen: list[bytes | None] = []
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        seen.append(tls.getpeercert(True))
        tls.sendall(b"hello")
        data = b""
        with contextlib.suppress(ssl.SSLError, OSError):
            # The server's HelloRequest is processed in here.
            while b"renegotiated\n" not in data and (chunk := tls.recv(100)):
                data += chunk
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            seen.append(tls.getpeercert(True))
        with contextlib.suppress(ssl.SSLError, OSError):
            tls.sendall(SECRET)
    return seen


@pytest.mark.parametrize("clear_option", [False, True], ids=["default", "option-cleared"])
def test_renegotiation_to_another_certificate_is_refused(
    standin: StandIn, pki: PKI, tmp_path: Path, clear_option: bool
) -> None:
    untrusted = _issue(pki.other_root, "localhost", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    context = _context(pki.root)
    if clear_option:
        # The user cannot reopen the hole by clearing the option.
        context.options &= ~ssl.OP_NO_RENEGOTIATION
    server = RenegotiatingServer(pki.good, untrusted, tmp_path)
    seen = _renegotiation_client(context, server.port)
    assert server.done.wait(TIMEOUT)
    assert seen[0] == pki.good.ders[0]
    assert all(cert == pki.good.ders[0] for cert in seen), "the new certificate was accepted"
    assert server.hello_request_sent
    assert not server.renegotiated
    assert SECRET not in server.received_after


def test_renegotiation_is_refused_by_the_standard_library_too(pki: PKI, tmp_path: Path) -> None:
    """Control: the stdlib (OpenSSL verifying) refuses the untrusted one."""
    untrusted = _issue(pki.other_root, "localhost", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    plain = ssl.create_default_context(cadata=pki.root.cert_pem.bytes().decode())
    server = RenegotiatingServer(pki.good, untrusted, tmp_path)
    seen = _renegotiation_client(plain, server.port)
    assert server.done.wait(TIMEOUT)
    assert SECRET not in server.received_after
    assert untrusted.ders[0] not in seen
    # And the server really renegotiates to the other certificate with a
    # client that does not verify (so the tests above can fail).
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    server = RenegotiatingServer(pki.good, untrusted, tmp_path)
    seen = _renegotiation_client(unverified, server.port)
    assert server.done.wait(TIMEOUT)
    assert server.renegotiated and seen == [pki.good.ders[0], untrusted.ders[0]]
    assert SECRET in server.received_after


# -- 6. resumed-session host binding ----------------------------------------------


@pytest.fixture
def two_names(pki: PKI, tmp_path: Path) -> Iterator[RecordingServer]:
    leaf = _issue(
        pki.intermediate, "alpha.example", "beta.example", eku=[ExtendedKeyUsageOID.SERVER_AUTH]
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # session ids, resumed at will
    with _recording(leaf, tmp_path, context=context) as server:
        yield server


def _session_for(context: ssl.SSLContext, port: int, host: str) -> ssl.SSLSession:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.recv(len(GREETING))
        session = tls.session
        assert session is not None
        return session


@pytest.mark.parametrize("path", ["intercept", "openssl"])
def test_only_the_resumed_session_counts(
    standin: StandIn,
    pki: PKI,
    two_names: RecordingServer,
    path: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if path == "intercept":
        context: ssl.SSLContext = _context(pki.root)
    else:
        # Linux's own path: OpenSSL verifies against the "OS store", and the
        # same resumed-session binding applies after the handshake.
        (tmp_path / "store.pem").write_bytes(pki.root.cert_pem.bytes())
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "store.pem"))
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
        context = truststore.SSLContext()
    alpha = _session_for(context, two_names.port, "alpha.example")
    beta = _session_for(context, two_names.port, "beta.example")
    with socket.create_connection(("127.0.0.1", two_names.port), timeout=TIMEOUT) as raw:
        tls = context.wrap_socket(
            raw, server_hostname="alpha.example", session=alpha, do_handshake_on_connect=False
        )
        tls.session = beta  # what is actually offered, and resumed
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            tls.do_handshake()
        tls.close()
    assert info.value.verify_code == _common.X509_V_ERR_HOSTNAME_MISMATCH
    # Control: alpha's own session still resumes for alpha.
    with (
        socket.create_connection(("127.0.0.1", two_names.port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="alpha.example", session=alpha) as tls,
    ):
        assert tls.session_reused
        assert tls.recv(len(GREETING))


# -- 7. security level ---------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: Any,
    issuer: tuple[x509.Certificate, Any] | None,
    *,
    ca: bool,
    digest: hashes.HashAlgorithm,
) -> tuple[x509.Certificate, Any]:
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # Key identifiers: Python 3.13's default contexts verify strictly.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if isinstance(digest, hashes.SHA1):
        return _resigned_with_sha1(builder.sign(issuer_key, hashes.SHA256()), issuer_key), key
    return builder.sign(issuer_key, digest), key


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


def _resigned_with_sha1(cert: x509.Certificate, issuer_key: Any) -> x509.Certificate:
    """*cert* (signed by an RSA key with SHA-256) signed again with SHA-1:
    ``cryptography`` no longer signs certificates with SHA-1 itself.  Both
    algorithm identifiers are the same length, so the TBS keeps its shape."""
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(SHA256_WITH_RSA) == 1
    tbs = tbs.replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _der_tlv(0x30, SHA1_WITH_RSA + b"\x05\x00")
    der = _der_tlv(0x30, tbs + algorithm + _der_tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


WEAK_CHAINS = ["rsa1024-leaf", "sha1-leaf", "rsa1024-intermediate", "sha1-intermediate", "good"]


@pytest.fixture(scope="module")
def weak_chains() -> tuple[bytes, dict[str, Issued]]:
    """A root (RSA-2048, SHA-256) and, per name, a chain with one weakness."""
    sha256, sha1 = hashes.SHA256(), hashes.SHA1()  # weak on purpose
    root = _cert(
        "weak-chain root", rsa.generate_private_key(65537, 2048), None, ca=True, digest=sha256
    )
    chains: dict[str, Issued] = {}

    def issued(*certs: tuple[x509.Certificate, Any]) -> Issued:
        pems = [_pem(c) for c, _ in certs]
        key_pem = certs[0][1].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Issued([ssl.PEM_cert_to_DER_cert(p.decode()) for p in pems], b"".join(pems), key_pem)

    p256 = ec.generate_private_key(ec.SECP256R1())
    chains["rsa1024-leaf"] = issued(
        _cert("leaf", rsa.generate_private_key(65537, 1024), root, ca=False, digest=sha256)
    )
    chains["sha1-leaf"] = issued(_cert("leaf", p256, root, ca=False, digest=sha1))
    weak_int = _cert("int", rsa.generate_private_key(65537, 1024), root, ca=True, digest=sha256)
    chains["rsa1024-intermediate"] = issued(
        _cert("leaf", p256, weak_int, ca=False, digest=sha256), weak_int
    )
    sha1_int = _cert("int", rsa.generate_private_key(65537, 2048), root, ca=True, digest=sha1)
    chains["sha1-intermediate"] = issued(
        _cert("leaf", p256, sha1_int, ca=False, digest=sha256), sha1_int
    )
    chains["good"] = issued(_cert("leaf", p256, root, ca=False, digest=sha256))
    return _pem(root[0]), chains


def _weak_server(issued: Issued, tmp: Path) -> RecordingServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets the server load weak chains
    return _recording(issued, tmp, context=context)


def _outcome(context: ssl.SSLContext, port: int) -> int | None:
    """None if the handshake verified, else the verify_code."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.recv(len(GREETING))
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_code
    return None


@pytest.mark.parametrize("level", [None, 0, 1, 2, 3])
@pytest.mark.parametrize("chain", WEAK_CHAINS)
def test_security_level_applies_to_the_peer_chain(
    standin: StandIn,
    weak_chains: tuple[bytes, dict[str, Issued]],
    tmp_path: Path,
    chain: str,
    level: int | None,
) -> None:
    root_pem, chains = weak_chains
    plain = ssl.create_default_context(cadata=root_pem.decode())
    ours = MacSSLContext()
    ours.load_verify_locations(cadata=root_pem.decode())
    if level is not None:
        for context in (plain, ours):
            context.set_ciphers(f"DEFAULT:@SECLEVEL={level}")
    assert ours.security_level == plain.security_level  # type: ignore[attr-defined]
    with _weak_server(chains[chain], tmp_path) as server:
        expected = _outcome(plain, server.port)
        got = _outcome(ours, server.port)
    if level == 0:
        assert expected is None
    elif level is None and chain != "good":
        assert expected in (66, 67, 68), expected  # the stdlib refuses: so must we
    assert got == expected


# -- 11. getpeercert() after verification --------------------------------------------


def test_getpeercert_after_verification(standin: StandIn, pki: PKI) -> None:
    plain = ssl.create_default_context(cadata=pki.root.cert_pem.bytes().decode())
    ours = _context(pki.root)

    def peercert(context: ssl.SSLContext) -> object:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return tls.getpeercert()

    with pki.good.server() as server:
        expected = peercert(plain)
        got = peercert(ours)
    assert expected and got == expected
    assert ("DNS", "localhost") in got["subjectAltName"]  # type: ignore[index]


def test_getpeercert_stays_empty_without_verification(standin: StandIn, pki: PKI) -> None:
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ours = MacSSLContext()
    for context in (plain, ours):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    results = []
    with pki.good.server() as server:
        for context in (plain, ours):
            with (
                socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                results.append(tls.getpeercert())
    assert results == [{}, {}]


def test_asyncio_peercert_after_verification(standin: StandIn, pki: PKI) -> None:
    ours = _context(pki.root)

    async def main(port: int) -> object:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ours, server_hostname="localhost"
        )
        try:
            return writer.get_extra_info("peercert")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    with pki.good.server() as server:
        cert = asyncio.run(main(server.port))
    assert cert and ("DNS", "localhost") in cert["subjectAltName"]  # type: ignore[index]


def test_getpeercert_memory_bio(standin: StandIn, pki: PKI) -> None:
    ours = _context(pki.root)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ours.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with (
        pki.good.server() as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock,
    ):
        _bio_handshake(tls, sock, incoming, outgoing)
        cert = tls.getpeercert()
    assert cert and ("DNS", "localhost") in cert["subjectAltName"]  # type: ignore[index]
