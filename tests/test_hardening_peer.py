"""Hardening matrix rows 8 and 10: hostile or odd peers, misused contexts.

Row 8: whatever a server sends (no certificate, garbage DER, a tampered
certificate, a chain 100+ deep, a 1 MB certificate, 10,000 SANs) the client
fails closed, in bounded time, with ``ssl.SSLCertVerificationError`` when
the certificate could be parsed and checked, and ``ssl.SSLError`` when
OpenSSL refuses the handshake message before any check (unparseable DER, a
certificate message over OpenSSL's 100 KiB limit).  Never a connection.

Row 10: ``check_hostname`` without ``server_hostname`` is a ``ValueError``
before any byte is sent; a server context checks *client* certificates as
client certificates, against the CAs its owner chose.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import truststore
from certs import CA_KEY_USAGE
from support import TLSServer

# Generous: these bound a hang, not a speed.
BOUND_SECONDS = 30.0
CLIENT_TIMEOUT = 20.0


# -- certificates that trustme cannot make ------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Cert:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_root(name: str = "hardening root") -> Cert:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Cert(cert, key)


def issue(
    issuer: Cert,
    subject: str = "leaf",
    *,
    sans: Sequence[x509.GeneralName] = (x509.DNSName("localhost"),),
    ca: bool = False,
    usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.SERVER_AUTH,),
    extra: Sequence[x509.ExtensionType] = (),
) -> Cert:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(subject, issuer.cert.subject, key.public_key()).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
        critical=False,
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return Cert(builder.sign(issuer.key, hashes.SHA256()), key)


def der_to_pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


# -- the client side -------------------------------------------------------------


@pytest.fixture(scope="module")
def root() -> Cert:
    return make_root()


@pytest.fixture
def os_trusts(root: Cert, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Put roots into the "OS store" (OpenSSL's default file; empty dir)."""

    def install(*roots: Cert) -> None:
        bundle = tmp_path / "os-bundle.pem"
        bundle.write_bytes(b"".join(r.pem for r in roots))
        empty = tmp_path / "os-dir"
        empty.mkdir(exist_ok=True)
        monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
        monkeypatch.setenv("SSL_CERT_DIR", str(empty))

    install(root)
    return install


def connect(
    port: int, ctx: ssl.SSLContext | None = None, host: str = "localhost"
) -> tuple[ssl.SSLSocket | None, BaseException | None, float]:
    """Handshake with 127.0.0.1:port; (socket or None, error or None, seconds)."""
    ctx = truststore.SSLContext() if ctx is None else ctx
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=host)
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        return None, exc, time.monotonic() - started
    return tls, None, time.monotonic() - started


def assert_rejected(
    port: int,
    expected: type[ssl.SSLError] = ssl.SSLCertVerificationError,
    ctx: ssl.SSLContext | None = None,
    host: str = "localhost",
) -> ssl.SSLError:
    tls, error, seconds = connect(port, ctx, host)
    if tls is not None:
        tls.close()
        raise AssertionError("the handshake succeeded")
    assert isinstance(error, expected), repr(error)
    assert seconds < BOUND_SECONDS
    return error


def serve(leaf: Cert, *chain: Cert, **kwargs: object) -> TLSServer:
    pem = leaf.pem + b"".join(c.pem for c in chain)
    return TLSServer(pem, leaf.key_pem, **kwargs)  # type: ignore[arg-type]


# -- a server that speaks just enough TLS 1.2 to send any Certificate message --


class RawCertificateServer:
    """Answers one ClientHello with ServerHello + a Certificate message
    holding *ders* verbatim, as a hostile server could.  OpenSSL's client
    parses (and, if it parses, verifies) that message before needing
    anything else from the server."""

    def __init__(self, ders: Sequence[bytes]) -> None:
        self.ders = list(ders)
        self.alert: bytes | None = None
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(CLIENT_TIMEOUT)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def _handshake(kind: int, body: bytes) -> bytes:
        return bytes([kind]) + len(body).to_bytes(3, "big") + body

    def _flight(self) -> bytes:
        # renegotiation_info (empty): OpenSSL clients refuse servers without it.
        extensions = b"\xff\x01\x00\x01\x00"
        hello = (
            b"\x03\x03"  # TLS 1.2
            + os.urandom(32)
            + b"\x00"  # no session id
            + b"\xc0\x2b"  # ECDHE-ECDSA-AES128-GCM-SHA256, offered by default
            + b"\x00"  # no compression
            + len(extensions).to_bytes(2, "big")
            + extensions
        )
        listing = b"".join(len(d).to_bytes(3, "big") + d for d in self.ders)
        payload = self._handshake(2, hello) + self._handshake(
            11, len(listing).to_bytes(3, "big") + listing
        )
        records = b""
        for start in range(0, len(payload), 16384):
            chunk = payload[start : start + 16384]
            records += b"\x16\x03\x03" + len(chunk).to_bytes(2, "big") + chunk
        return records

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            try:
                header = conn.recv(5, socket.MSG_WAITALL)
                length = int.from_bytes(header[3:5], "big")
                conn.recv(length, socket.MSG_WAITALL)  # the ClientHello
                conn.sendall(self._flight())
                self.alert = conn.recv(7, socket.MSG_WAITALL)
            except OSError:
                pass

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RawCertificateServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- 8. no certificate -----------------------------------------------------------


@pytest.fixture(scope="module")
def anonymous_server() -> Iterator[TLSServer]:
    """A real OpenSSL server that has no certificate at all: TLS 1.2 with
    anonymous (aNULL) cipher suites only.  TLS 1.3 has no such suites."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("aNULL:@SECLEVEL=0")
    with TLSServer(b"", b"", context=ctx) as server:
        yield server


def _anonymous_client(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """The only way to reach an anonymous server: the user allows aNULL."""
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("aNULL:@SECLEVEL=0")
    return ctx


def test_no_certificate_default_ciphers_never_connect(
    anonymous_server: TLSServer, os_trusts: object
) -> None:
    """Our defaults offer no anonymous suite: the handshake fails."""
    assert_rejected(anonymous_server.port, ssl.SSLError)


def test_no_certificate_even_with_anonymous_ciphers_allowed(
    anonymous_server: TLSServer, os_trusts: object
) -> None:
    # Control: the stdlib, told the same, connects to a peer it never
    # verified (OpenSSL ignores SSL_VERIFY_PEER for anonymous suites).
    plain = _anonymous_client(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    tls, error, _ = connect(anonymous_server.port, plain)
    assert tls is not None, error
    with tls:
        assert tls.getpeercert() is None
    # Ours fails closed: verification was asked for, and there is nothing
    # to verify.
    error = assert_rejected(anonymous_server.port, ctx=_anonymous_client(truststore.SSLContext()))
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "no certificate" in str(error) and "'localhost'" in str(error)


def test_no_certificate_asyncio(anonymous_server: TLSServer, os_trusts: object) -> None:
    """The memory-BIO path (asyncio) fails closed the same way."""

    async def attempt() -> None:
        ctx = _anonymous_client(truststore.SSLContext())
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", anonymous_server.port, ssl=ctx, server_hostname="localhost"
            ),
            CLIENT_TIMEOUT,
        )
        writer.close()

    with pytest.raises(ssl.SSLCertVerificationError, match="no certificate"):
        asyncio.run(attempt())


def test_no_certificate_with_verification_off_still_connects(
    anonymous_server: TLSServer,
) -> None:
    """Only the user turns checks off, and then they are off."""
    ctx = _anonymous_client(truststore.SSLContext())
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls, error, _ = connect(anonymous_server.port, ctx)
    assert tls is not None, error
    tls.close()


def test_empty_certificate_message(os_trusts: object) -> None:
    """A server that picks a signed suite, then sends an empty chain."""
    with RawCertificateServer([]) as server:
        assert_rejected(server.port, ssl.SSLError)


# -- 8. garbage and tampered certificates -------------------------------------


@pytest.mark.parametrize(
    "kind", ["random-bytes", "sequence-of-garbage", "truncated-certificate", "empty-entry"]
)
def test_garbage_der(kind: str, root: Cert, os_trusts: object) -> None:
    good = issue(root).der
    ders = {
        "random-bytes": [os.urandom(600)],
        "sequence-of-garbage": [b"\x30\x82\x02\x58" + os.urandom(600)],
        "truncated-certificate": [good[: len(good) // 2]],
        "empty-entry": [b""],
    }[kind]
    with RawCertificateServer(ders) as server:
        assert_rejected(server.port, ssl.SSLError)
    # The client said why, with a fatal alert (record type 21).
    assert server.alert is not None and server.alert[:1] == b"\x15"


def _tamper(der: bytes, old: bytes, new: bytes) -> bytes:
    assert der.count(old) == 1 and len(old) == len(new)
    return der.replace(old, new)


def _flip_signature(der: bytes) -> bytes:
    # The signature BIT STRING ends the certificate; change its last byte.
    return der[:-1] + bytes([der[-1] ^ 0x01])


@pytest.mark.parametrize("field", ["signature", "subject", "san-made-to-match", "validity"])
def test_tampered_certificate(field: str, root: Cert, os_trusts: object) -> None:
    """A certificate that parses but was changed after signing: the
    signature no longer matches, whatever was changed."""
    if field == "san-made-to-match":
        # Issued for xocalhost; the attacker edits it to localhost.
        leaf = issue(root, sans=[x509.DNSName("xocalhost")])
        der = _tamper(leaf.der, b"xocalhost", b"localhost")
    elif field == "subject":
        leaf = issue(root, "innocent-subject")
        der = _tamper(leaf.der, b"innocent-subject", b"attacker-subject")
    elif field == "validity":
        # notAfter pushed a year on, in the signed bytes.
        leaf = issue(root)
        stamp = leaf.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ").encode()
        later = b"%02d" % ((int(stamp[:2]) + 1) % 100) + stamp[2:]
        der = _tamper(leaf.der, stamp, later)
    else:
        leaf = issue(root)
        der = _flip_signature(leaf.der)
    with TLSServer(der_to_pem(der), leaf.key_pem) as server:
        error = assert_rejected(server.port)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 7  # X509_V_ERR_CERT_SIGNATURE_FAILURE
    assert "'localhost'" in str(error)


def test_untampered_control(root: Cert, os_trusts: object) -> None:
    """The same kind of leaf, untouched, connects (the rows above fail for
    the tampering, not for the way they were made)."""
    leaf = issue(root)
    with serve(leaf) as server:
        tls, error, _ = connect(server.port)
        assert tls is not None, error
        tls.close()


# -- 8. sizes: depth, bytes, names -----------------------------------------------


def test_chain_over_one_hundred_deep(root: Cert, os_trusts: object) -> None:
    chain = [root]
    for depth in range(105):
        chain.append(issue(chain[-1], f"intermediate {depth}", ca=True))
    leaf = issue(chain[-1])
    intermediates = list(reversed(chain[1:]))
    with serve(leaf, *intermediates) as server:
        error = assert_rejected(server.port)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 22  # X509_V_ERR_CERT_CHAIN_TOO_LONG


def test_one_megabyte_certificate(root: Cert, os_trusts: object) -> None:
    """Validly signed by a trusted root, but 1 MiB: OpenSSL's client refuses
    a Certificate message over 100 KiB before looking inside it."""
    blob = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1"), b"\x04\x83\x10\x00\x00" + b"A" * (1 << 20)
    )
    leaf = issue(root, extra=[blob])
    assert len(leaf.der) > 1 << 20
    with serve(leaf) as server:
        error = assert_rejected(server.port, ssl.SSLError)
    assert "excessive message size" in str(error).lower()


@pytest.fixture(scope="module")
def many_names_leaf(root: Cert) -> Callable[[str], Cert]:
    def make(last: str) -> Cert:
        # Short names: 10,000 of them must fit OpenSSL's 100 KiB message limit.
        names = [x509.DNSName(f"{i:x}.t") for i in range(9_999)]
        return issue(root, sans=[*names, x509.DNSName(last)])

    return make


def test_ten_thousand_sans_none_matching(
    many_names_leaf: Callable[[str], Cert], os_trusts: object
) -> None:
    leaf = many_names_leaf("not-this-host.example")
    assert (
        len(leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        == 10_000
    )
    with serve(leaf) as server:
        error = assert_rejected(server.port)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH


def test_ten_thousand_sans_last_one_matching(
    many_names_leaf: Callable[[str], Cert], os_trusts: object
) -> None:
    """The count itself is not a reason to refuse: the 10,000th name counts."""
    leaf = many_names_leaf("localhost")
    with serve(leaf) as server:
        tls, error, seconds = connect(server.port)
        assert tls is not None, error
        tls.close()
    assert seconds < BOUND_SECONDS


# -- 10. check_hostname without server_hostname ---------------------------------


class RecordingListener:
    """A plain TCP server that records every byte a client sends until the
    client closes (or *quiet* seconds pass without a byte)."""

    def __init__(self, quiet: float = CLIENT_TIMEOUT) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(CLIENT_TIMEOUT)
        self.port = self._listener.getsockname()[1]
        self.quiet = quiet
        self.received: bytes | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(self.quiet)
            data = b""
            try:
                while chunk := conn.recv(65536):
                    data += chunk
            except TimeoutError:
                pass
            self.received = data

    def join(self) -> bytes | None:
        self._thread.join(timeout=CLIENT_TIMEOUT)
        self._listener.close()
        return self.received


@pytest.mark.parametrize("server_hostname", [None, ""])
@pytest.mark.parametrize("on_connect", [True, False])
def test_check_hostname_without_server_hostname_socket(
    server_hostname: str | None, on_connect: bool
) -> None:
    listener = RecordingListener()
    ctx = truststore.SSLContext()
    assert ctx.check_hostname
    with (
        socket.create_connection(("127.0.0.1", listener.port), timeout=CLIENT_TIMEOUT) as sock,
        pytest.raises(ValueError, match="server_hostname"),
    ):
        ctx.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=on_connect)
    assert listener.join() == b""  # not one byte of a ClientHello


@pytest.mark.parametrize("server_hostname", [None, ""])
def test_check_hostname_without_server_hostname_bio(server_hostname: str | None) -> None:
    ctx = truststore.SSLContext()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ValueError, match="server_hostname"):
        ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    assert outgoing.pending == 0


def test_check_hostname_without_server_hostname_asyncio() -> None:
    """asyncio hands wrap_bio an empty server_hostname when told to.  (It
    leaves the TCP socket open after the error, hence the quiet period.)"""
    listener = RecordingListener(quiet=1.0)

    async def attempt() -> None:
        await asyncio.open_connection(
            "127.0.0.1", listener.port, ssl=truststore.SSLContext(), server_hostname=""
        )

    with pytest.raises(ValueError, match="server_hostname"):
        asyncio.run(attempt())
    assert listener.join() == b""


# -- 10. server_side: client certificates are client certificates --------------


class ClientCertServer:
    """One TLS 1.3 handshake as a server; records the client's certificate
    (or the error) as the *server* saw it."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(CLIENT_TIMEOUT)
        self.port = self._listener.getsockname()[1]
        self.peer: dict[str, object] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.peer = tls.getpeercert()  # type: ignore[assignment]
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                self.error = exc

    def result(self) -> tuple[dict[str, object] | None, BaseException | None]:
        self._thread.join(timeout=CLIENT_TIMEOUT)
        self._listener.close()
        return self.peer, self.error


@pytest.fixture
def client_ca() -> Cert:
    return make_root("client CA")


def _server_context(root: Cert, client_ca: Cert, tmp_path: Path) -> ssl.SSLContext:
    """A server context as the docs say: PROTOCOL_TLS_SERVER, CERT_REQUIRED,
    the owner's own client CA.  Made through truststore (as injection
    would make it)."""
    server_leaf = issue(root)
    chain = tmp_path / "server.pem"
    chain.write_bytes(server_leaf.pem + server_leaf.key_pem)
    ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=client_ca.pem.decode())
    return ctx


def _client_with(cert: Cert, root: Cert, tmp_path: Path) -> ssl.SSLContext:
    path = tmp_path / "client.pem"
    path.write_bytes(cert.pem + cert.key_pem)
    ctx = truststore.SSLContext()
    ctx.load_verify_locations(cadata=root.pem.decode())
    ctx.load_cert_chain(path)
    return ctx


def _client_handshake(port: int, ctx: ssl.SSLContext) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        try:
            with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                tls.recv(2)  # TLS 1.3: a refused client certificate shows here
        except (ssl.SSLError, OSError):
            pass


def test_server_accepts_client_auth_only_certificate(
    root: Cert, client_ca: Cert, tmp_path: Path, os_trusts: Callable[..., None]
) -> None:
    server = ClientCertServer(_server_context(root, client_ca, tmp_path))
    client = issue(
        client_ca, "alice", sans=[x509.RFC822Name("alice@example.org")],
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )  # fmt: skip
    _client_handshake(server.port, _client_with(client, root, tmp_path))
    peer, error = server.result()
    assert error is None
    assert peer is not None and peer["subject"] == ((("commonName", "alice"),),)


def test_server_rejects_server_auth_only_certificate_from_a_client(
    root: Cert, client_ca: Cert, tmp_path: Path, os_trusts: Callable[..., None]
) -> None:
    server = ClientCertServer(_server_context(root, client_ca, tmp_path))
    client = issue(client_ca, "mallory", usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    _client_handshake(server.port, _client_with(client, root, tmp_path))
    peer, error = server.result()
    assert peer is None
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 26  # X509_V_ERR_INVALID_PURPOSE


def test_server_does_not_trust_the_os_store_for_clients(
    root: Cert, client_ca: Cert, tmp_path: Path, os_trusts: Callable[..., None]
) -> None:
    """A client certificate from a CA the OS trusts, but the server's owner
    did not choose, is refused."""
    public_ca = make_root("publicly trusted CA")
    os_trusts(root, public_ca)
    server = ClientCertServer(_server_context(root, client_ca, tmp_path))
    client = issue(public_ca, "eve", usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    _client_handshake(server.port, _client_with(client, root, tmp_path))
    peer, error = server.result()
    assert peer is None
    assert isinstance(error, ssl.SSLCertVerificationError)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("protocol", ["PROTOCOL_TLS_CLIENT", "PROTOCOL_TLS"])
def test_client_context_used_server_side_raises(protocol: str) -> None:
    """A truststore client context trusts the whole OS store for servers;
    checking clients with it is refused before any I/O (PROTOCOL_TLS_CLIENT:
    by OpenSSL, as in the stdlib; a generic protocol once it has been used as
    a client and so holds the OS store: by us)."""
    ctx = truststore.SSLContext(getattr(ssl, protocol))
    ctx.check_hostname = False
    if protocol == "PROTOCOL_TLS":
        ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())  # client-side use
        ctx.verify_mode = ssl.CERT_REQUIRED
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(CLIENT_TIMEOUT)
        with pytest.raises((ValueError, ssl.SSLError), match="server"):
            ctx.wrap_socket(left, server_side=True)
        assert right.recv(100) == b""  # closed without a byte sent
    outgoing = ssl.MemoryBIO()
    with pytest.raises((ValueError, ssl.SSLError), match="server"):
        ctx.wrap_bio(ssl.MemoryBIO(), outgoing, server_side=True)
    assert outgoing.pending == 0
