"""``truststore.SSLContext`` is an ``ssl.SSLContext``: same attributes, same
behaviour, plus the OS store.  Each check runs the same operation on a plain
stdlib context and on ours and compares, or drives a real handshake on the
loopback interface."""

from __future__ import annotations

import socket
import ssl
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

import truststore
from clientside import REQUEST, bio_fetch, fetch, flush, pump
from support import TLSServer, make_store, serve_cert
from truststore import _common


def _pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), truststore.SSLContext()


def _outcome(action: Callable[[ssl.SSLContext], Any], ctx: ssl.SSLContext) -> tuple[str, Any]:
    try:
        return ("ok", action(ctx))
    except Exception as exc:
        return ("raised", type(exc))


def test_is_an_ssl_context_for_tls_clients() -> None:
    ctx = truststore.SSLContext()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.protocol == ssl.PROTOCOL_TLS_CLIENT
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT).protocol == ssl.PROTOCOL_TLS_CLIENT


def test_has_every_public_attribute_of_ssl_context() -> None:
    std, ours = _pair()
    missing = [name for name in dir(std) if not name.startswith("__") and not hasattr(ours, name)]
    assert missing == []


_SETTINGS: list[tuple[str, Callable[[ssl.SSLContext], Any]]] = [
    ("options", lambda c: c.options | ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION),
    ("options", lambda c: c.options & ~ssl.OP_NO_SSLv3),
    ("verify_flags", lambda c: c.verify_flags | ssl.VERIFY_X509_STRICT),
    ("verify_flags", lambda c: ssl.VERIFY_X509_PARTIAL_CHAIN),
    ("minimum_version", lambda c: ssl.TLSVersion.TLSv1_3),
    ("maximum_version", lambda c: ssl.TLSVersion.TLSv1_2),
    ("minimum_version", lambda c: ssl.TLSVersion.MINIMUM_SUPPORTED),
    ("verify_mode", lambda c: ssl.CERT_OPTIONAL),
    ("verify_mode", lambda c: ssl.CERT_NONE),  # refused: check_hostname is on
    ("verify_mode", lambda c: 7),
    ("check_hostname", lambda c: False),
    ("post_handshake_auth", lambda c: True),
    ("hostname_checks_common_name", lambda c: True),
    ("sni_callback", lambda c: lambda *args: None),  # refused on a client context
    ("sni_callback", lambda c: None),
    ("num_tickets", lambda c: 3),  # refused on a client context
    ("security_level", lambda c: 1),  # read-only
    ("protocol", lambda c: ssl.PROTOCOL_TLS_SERVER),  # read-only
    ("_msg_callback", lambda c: lambda *args: None),
]


@pytest.mark.parametrize(
    ("name", "value_for"), _SETTINGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(_SETTINGS)]
)
def test_properties_behave_like_stdlib(
    name: str, value_for: Callable[[ssl.SSLContext], Any]
) -> None:
    std, ours = _pair()
    assert _outcome(lambda c: getattr(c, name), ours) == _outcome(lambda c: getattr(c, name), std)
    outcomes = []
    for ctx in (std, ours):
        value = value_for(ctx)
        outcomes.append(_outcome(lambda c, v=value: setattr(c, name, v), ctx))
    assert outcomes[1] == outcomes[0]
    if name not in ("sni_callback", "_msg_callback"):
        assert _outcome(lambda c: getattr(c, name), ours) == _outcome(
            lambda c: getattr(c, name), std
        )
    # The coupled switches stay coupled as in the stdlib.
    assert (ours.verify_mode, ours.check_hostname) == (std.verify_mode, std.check_hostname)


def test_check_hostname_coupling_like_stdlib() -> None:
    for ctx in _pair():
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.check_hostname = True  # turns verification back on
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    std, ours = _pair()
    assert type(ours.verify_mode) is type(std.verify_mode) is ssl.VerifyMode
    assert type(ours.options) is type(std.options) is ssl.Options
    assert type(ours.verify_flags) is type(std.verify_flags) is ssl.VerifyFlags
    assert type(ours.minimum_version) is type(std.minimum_version) is ssl.TLSVersion


def test_keylog_filename(os_store: trustme.CA, tmp_path: Path) -> None:
    ctx = truststore.SSLContext()
    log = tmp_path / "keys.log"
    ctx.keylog_filename = str(log)
    assert ctx.keylog_filename == str(log)
    with serve_cert(os_store.issue_cert("localhost")) as server:
        fetch(ctx, server, "localhost")
    assert b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" in log.read_bytes()


def test_versions_and_options_reach_the_handshake(os_store: trustme.CA) -> None:
    with serve_cert(os_store.issue_cert("localhost")) as server:
        ctx = truststore.SSLContext()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        assert fetch(ctx, server, "localhost", do_handshake_on_connect=True) is not None
        raw = socket.create_connection((server.host, server.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.2"
        ctx = truststore.SSLContext()
        with pytest.warns(DeprecationWarning):  # as with the stdlib's
            ctx.options |= ssl.OP_NO_TLSv1_3
        raw = socket.create_connection((server.host, server.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.2"
        ctx = truststore.SSLContext()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        raw = socket.create_connection((server.host, server.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.3"


def test_ciphers_curves_alpn(os_store: trustme.CA) -> None:
    std, ours = _pair()
    for ctx in (std, ours):
        ctx.set_ciphers("ECDHE+AESGCM")
        ctx.set_ecdh_curve("prime256v1")
        ctx.set_alpn_protocols(["h2", "http/1.1"])
    assert ours.get_ciphers() == std.get_ciphers()
    spoiled = truststore.SSLContext()
    with pytest.raises(ssl.SSLError):
        spoiled.set_ciphers("NO-SUCH-CIPHER")
    with pytest.raises(ValueError):
        spoiled.set_ecdh_curve("no-such-curve")

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    os_store.issue_cert("localhost").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["http/1.1"])
    ours.maximum_version = ssl.TLSVersion.TLSv1_2  # so that set_ciphers applies
    with TLSServer(b"", b"", context=server_ctx) as server:
        raw = socket.create_connection((server.host, server.port), timeout=10)
        with ours.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            cipher = tls.cipher()
            assert cipher is not None and "ECDHE" in cipher[0] and "GCM" in cipher[0]


def test_session_stats_count_real_handshakes(os_store: trustme.CA) -> None:
    std, ours = _pair()
    assert ours.session_stats().keys() == std.session_stats().keys()
    with serve_cert(os_store.issue_cert("localhost")) as server:
        fetch(ours, server, "localhost")
        fetch(ours, server, "localhost")
    stats = ours.session_stats()
    assert stats["connect"] == 2
    assert stats["connect_good"] == 2


def test_load_cert_chain_presents_a_client_certificate(
    os_store: trustme.CA, tmp_path: Path
) -> None:
    client_ca = trustme.CA()
    client = client_ca.issue_cert("client@example.test")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    os_store.issue_cert("localhost").configure_cert(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ca.configure_trust(server_ctx)

    ctx = truststore.SSLContext()
    with TLSServer(b"", b"", context=server_ctx) as server:
        # Without a client certificate the server refuses us...
        with pytest.raises((ssl.SSLError, OSError)):
            fetch(ctx, server, "localhost")
        ctx.load_cert_chain(tmp_path / "client.pem")
        fetch(ctx, server, "localhost")
        assert server.handshakes == 1


def test_set_default_verify_paths_and_load_default_certs_are_harmless(
    os_store: trustme.CA,
) -> None:
    ctx = truststore.SSLContext()
    before = ctx.cert_store_stats()
    ctx.set_default_verify_paths()
    ctx.load_default_certs()
    ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    with pytest.raises(TypeError):
        ctx.load_default_certs("not a purpose")  # type: ignore[arg-type]
    assert ctx.cert_store_stats() == before
    with serve_cert(os_store.issue_cert("localhost")) as server:
        fetch(ctx, server, "localhost")


# -- what the context holds --------------------------------------------------------


def test_bundle_store_is_visible_in_get_ca_certs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cas = [trustme.CA(), trustme.CA()]
    for key, value in make_store(tmp_path / "store", *cas).items():
        monkeypatch.setenv(key, value)
    ctx = truststore.SSLContext()
    reference = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    reference.set_default_verify_paths()
    assert ctx.cert_store_stats() == reference.cert_store_stats()
    assert ctx.cert_store_stats()["x509_ca"] == 2
    assert sorted(ctx.get_ca_certs(binary_form=True)) == sorted(
        ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()) for ca in cas
    )
    subjects = [cert["subject"] for cert in ctx.get_ca_certs()]
    assert subjects == [cert["subject"] for cert in reference.get_ca_certs()]


def _ssl_native_ca_certs(ctx: ssl.SSLContext) -> list[bytes]:
    import _ssl

    return list(_ssl._SSLContext.get_ca_certs(ctx, True))


def test_hashed_store_is_looked_up_lazily_and_then_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used, unused = trustme.CA(), trustme.CA()
    env = make_store(tmp_path / "store", used, unused, hashed=True)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ctx = truststore.SSLContext()
    reference = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    reference.set_default_verify_paths()
    # The bundle duplicates the directory, so nothing is parsed into the
    # context; what it reports is what the stdlib's lists (the bundle).
    assert ctx.cert_store_stats() == reference.cert_store_stats()
    assert ctx.cert_store_stats()["x509_ca"] == 2
    with serve_cert(used.issue_cert("localhost")) as server:
        fetch(ctx, server, "localhost")
    # The CA the handshake needed was looked up in the directory, like the
    # stdlib's capath look-ups; the report still matches the stdlib's.
    assert _ssl_native_ca_certs(ctx) == [ssl.PEM_cert_to_DER_cert(used.cert_pem.bytes().decode())]
    assert sorted(ctx.get_ca_certs(binary_form=True)) == sorted(
        reference.get_ca_certs(binary_form=True)
    )


def test_load_verify_locations_shows_up_next_to_the_os_store(
    os_store: trustme.CA,
) -> None:
    ctx = truststore.SSLContext()
    extra = trustme.CA()
    ctx.load_verify_locations(cadata=extra.cert_pem.bytes().decode())
    assert ctx.cert_store_stats()["x509_ca"] == 2
    with pytest.raises(ssl.SSLError):
        ctx.load_verify_locations(
            cadata="-----BEGIN CERTIFICATE-----\nbad\n-----END CERTIFICATE-----\n"
        )
    with pytest.raises(FileNotFoundError):
        ctx.load_verify_locations(cafile="/nonexistent/ca.pem")
    with pytest.raises(TypeError):
        ctx.load_verify_locations()


# -- check_hostname needs a host, before any I/O -------------------------------------


def test_wrap_socket_without_server_hostname_raises_before_io() -> None:
    ctx = truststore.SSLContext()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with pytest.raises(ValueError, match="server_hostname"):
            ctx.wrap_socket(ours)
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(1)  # nothing was sent


def test_wrap_bio_without_server_hostname_raises_before_io() -> None:
    ctx = truststore.SSLContext()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ValueError, match="server_hostname"):
        ctx.wrap_bio(incoming, outgoing)
    assert outgoing.pending == 0
    # check_hostname off: no host needed, as in the stdlib.
    ctx.check_hostname = False
    ctx.wrap_bio(incoming, outgoing)


def test_wrap_bio_without_host_would_accept_any_name_in_the_stdlib(os_store: trustme.CA) -> None:
    """Why wrap_bio must check: the stdlib's SSLObject then matches no name."""
    std = ssl.create_default_context()  # loads the same "OS store" here
    with serve_cert(os_store.issue_cert("unrelated.test")) as server:
        bio_fetch(std, server, None)  # accepted: the hole we close
        with pytest.raises(ValueError):
            bio_fetch(truststore.SSLContext(), server, None)


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- server side -------------------------------------------------------------------


def test_server_context_is_a_plain_stdlib_server_context(
    os_store: trustme.CA, tmp_path: Path
) -> None:
    server_ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    std = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert (
        server_ctx.cert_store_stats()
        == std.cert_store_stats()
        == {
            "x509": 0,
            "crl": 0,
            "x509_ca": 0,
        }
    )
    assert (server_ctx.verify_mode, server_ctx.check_hostname) == (ssl.CERT_NONE, False)
    server_ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # a server may ask for them
    assert server_ctx.cert_store_stats()["x509_ca"] == 1
    server_ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    os_store.issue_cert("localhost").configure_cert(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    # A client certificate from a CA the OS trusts is NOT trusted by a server.
    client = os_store.issue_cert("client@example.test")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    client_ctx = truststore.SSLContext()
    client_ctx.load_cert_chain(tmp_path / "client.pem")
    with TLSServer(b"", b"", context=server_ctx) as server:
        with pytest.raises((ssl.SSLError, OSError)):
            fetch(client_ctx, server, "localhost")
        assert server.handshakes == 0
        assert _wait_for(
            lambda: any(isinstance(e, ssl.SSLCertVerificationError) for e in server.errors)
        ), server.errors
        # Trusting the client's CA explicitly works as in the stdlib.
        os_store.configure_trust(server_ctx)
        fetch(client_ctx, server, "localhost")
        assert server.handshakes == 1


def test_client_context_refuses_to_verify_clients() -> None:
    """A generic-protocol context serves like the stdlib's until it is used
    as a client; from then on it holds the whole OS store (which its owner
    did not ask for), and verifying clients with it would accept any client
    holding a publicly trusted certificate: refused.  OpenSSL refuses server
    sockets on PROTOCOL_TLS_CLIENT anyway."""
    with pytest.warns(DeprecationWarning):
        ctx = truststore.SSLContext(ssl.PROTOCOL_TLS)
    assert ctx.verify_mode == ssl.CERT_NONE
    ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())  # the first client-side use
    for mode in (ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL):
        ctx.verify_mode = mode
        a, b = socket.socketpair()
        with a, b, pytest.raises(ValueError, match="PROTOCOL_TLS_SERVER"):
            ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
        with pytest.raises(ValueError, match="PROTOCOL_TLS_SERVER"):
            ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    ctx.verify_mode = ssl.CERT_NONE  # nothing to verify: allowed
    ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    a, b = socket.socketpair()
    with a, b, ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False):
        pass
    client_only = truststore.SSLContext()
    client_only.check_hostname = False
    with pytest.raises((ValueError, ssl.SSLError)):
        client_only.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)


# -- a rejected peer stays rejected -------------------------------------------------


def test_rejected_socket_cannot_send(os_store: trustme.CA) -> None:
    ctx = truststore.SSLContext()
    with serve_cert(trustme.CA().issue_cert("localhost")) as server:
        raw = socket.create_connection((server.host, server.port), timeout=10)
        with ctx.wrap_socket(
            raw, server_hostname="localhost", do_handshake_on_connect=False
        ) as tls:
            with pytest.raises(ssl.SSLCertVerificationError):
                tls.do_handshake()
            with pytest.raises(OSError):
                tls.sendall(REQUEST)
            with pytest.raises(OSError):
                tls.do_handshake()  # no second chance
            with pytest.raises(OSError):
                tls.sendall(REQUEST)
        assert server.handshakes == 0


def test_rejected_bio_cannot_send(os_store: trustme.CA) -> None:
    ctx = truststore.SSLContext()
    with serve_cert(os_store.issue_cert("localhost")) as server:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname="wrong.test")
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            with pytest.raises(ssl.SSLCertVerificationError):
                pump(sslobj, incoming, outgoing, sock)
            flush(outgoing, sock)  # the alert
            with pytest.raises(ssl.SSLError):
                sslobj.write(REQUEST)
            with pytest.raises(ssl.SSLError):
                sslobj.do_handshake()
            assert outgoing.pending == 0
        assert server.handshakes == 0


# -- the user's socket classes ---------------------------------------------------------


def test_custom_socket_classes_are_used_and_still_verified(os_store: trustme.CA) -> None:
    handshakes: list[str] = []

    class MySocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            handshakes.append("socket")  # the user's override still runs
            super().do_handshake(block)

    class MyObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            handshakes.append("object")
            super().do_handshake()

    ctx = truststore.SSLContext()
    ctx.sslsocket_class = MySocket
    ctx.sslobject_class = MyObject
    with serve_cert(os_store.issue_cert("localhost")) as server:
        tls = fetch(ctx, server, "localhost")
        assert isinstance(tls, MySocket)
        assert isinstance(bio_fetch(ctx, server, "localhost"), MyObject)
        with pytest.raises(ssl.SSLCertVerificationError):
            fetch(ctx, server, "wrong.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            bio_fetch(ctx, server, "wrong.test")
    assert "socket" in handshakes and "object" in handshakes


def test_subclass_of_truststore_context(os_store: trustme.CA) -> None:
    class Mine(truststore.SSLContext):
        def __init__(self, protocol: int | None = None, note: str = "") -> None:
            super().__init__(protocol)
            self.note = note

    ctx = Mine(note="x")
    assert ctx.protocol == ssl.PROTOCOL_TLS_CLIENT and ctx.note == "x"
    with serve_cert(os_store.issue_cert("localhost")) as server:
        fetch(ctx, server, "localhost")
        with pytest.raises(ssl.SSLCertVerificationError):
            fetch(ctx, server, "wrong.test")


# -- the Windows/macOS path: OpenSSL verifies nothing, the OS verifier after ----


class _RefusingVerifier:
    """Stands in for the OS verifier of Windows/macOS (which cannot run on
    this platform): it refuses every chain and records what it was asked."""

    asked: typing.ClassVar[list[str | None]] = []

    def verify(
        self, ders: list[bytes], host: str | None, *, check_hostname: bool, verify_flags: int
    ) -> None:
        assert ders and all(isinstance(der, bytes) for der in ders)
        self.asked.append(host)
        raise _common.verification_error(27, "refused by the test verifier", host)

    def set_extra_anchors(self, anchors: list[bytes], *, exclusive: bool = False) -> None:
        pass


class _InterceptingContext(truststore.SSLContext):
    _verifier_class = _RefusingVerifier


@pytest.mark.parametrize("first_use", ["do_handshake", "sendall", "recv", "bio-write"])
def test_intercepting_backend_verifies_before_any_data(
    os_store: trustme.CA, first_use: str
) -> None:
    """OpenSSL runs the handshake by itself on the first read/write when the
    caller skipped do_handshake(); the OS verifier must still run first, or
    an unverified peer would get the request."""
    _RefusingVerifier.asked.clear()
    ctx = _InterceptingContext()
    assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_REQUIRED, True)
    with serve_cert(os_store.issue_cert("localhost")) as server:
        if first_use == "bio-write":
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
            with socket.create_connection((server.host, server.port), timeout=10) as sock:
                with pytest.raises(ssl.SSLCertVerificationError):
                    for _ in range(20):
                        try:
                            sslobj.write(REQUEST)
                            break
                        except ssl.SSLWantReadError:
                            flush(outgoing, sock)
                            incoming.write(sock.recv(65536))
                assert REQUEST not in outgoing.read()
        else:
            raw = socket.create_connection((server.host, server.port), timeout=10)
            with ctx.wrap_socket(
                raw, server_hostname="localhost", do_handshake_on_connect=False
            ) as tls:
                with pytest.raises(ssl.SSLCertVerificationError) as info:
                    if first_use == "do_handshake":
                        tls.do_handshake()
                    elif first_use == "sendall":
                        tls.sendall(REQUEST)
                    else:
                        tls.recv(1)
                assert info.value.verify_code == 27
                with pytest.raises(OSError):
                    tls.sendall(REQUEST)
    assert _RefusingVerifier.asked == ["localhost"]
