"""What a context trusts: the README's table, case by case (issue 11).

Two kinds of context, each tested on the OpenSSL path with real TLS servers
on 127.0.0.1:

* *injected*: made through the standard library's names while injected
  (``ssl.SSLContext(...)``, ``ssl.create_default_context(...)``).  It trusts
  what the stdlib would, with the OS store standing in for "the default
  certificates": pins stay pins.
* *library*: ``truststore.SSLContext`` used directly keeps the public
  truststore package's rule: the OS store plus whatever is loaded.

The "OS store" is what OpenSSL's defaults point at (``SSL_CERT_FILE`` /
``SSL_CERT_DIR``, the ``os_store`` fixture); "certifi" is the installed
certifi's real ``cacert.pem``, or a fake one with a test root added, found
through ``_trust``'s locator (the venv tests patch a real certifi instead).
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
import trustme

import truststore
from clientside import fetch
from support import TLSServer, make_store, scrubbed_environ, serve_cert
from truststore import _api, _common, _trust

ROOT = Path(__file__).resolve().parent.parent
_GENERAL_MIN = getattr(_trust, "GENERAL_MIN_CERTS", 32)


@pytest.fixture
def injected() -> Iterator[None]:
    truststore.inject_into_ssl()
    try:
        yield
    finally:
        truststore.extract_from_ssl()


@pytest.fixture
def os_server(os_store: trustme.CA) -> Iterator[TLSServer]:
    """A server whose certificate the OS store vouches for."""
    with serve_cert(os_store.issue_cert("localhost", "127.0.0.1")) as server:
        yield server


@pytest.fixture
def private_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def private_server(private_ca: trustme.CA) -> Iterator[TLSServer]:
    with serve_cert(private_ca.issue_cert("localhost", "127.0.0.1")) as server:
        yield server


def _accepts(ctx: ssl.SSLContext, server: TLSServer) -> bool:
    try:
        fetch(ctx, server, "localhost")
    except ssl.SSLCertVerificationError:
        return False
    return True


def _certifi_pems() -> list[bytes]:
    data = Path(certifi.where()).read_bytes()
    blocks = data.split(b"-----END CERTIFICATE-----")
    return [
        block[block.index(b"-----BEGIN CERTIFICATE-----") :] + b"-----END CERTIFICATE-----\n"
        for block in blocks
        if b"-----BEGIN CERTIFICATE-----" in block
    ]


@pytest.fixture
def fake_certifi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[trustme.CA]:
    """certifi as installed, plus a root the OS store does not hold (the
    administrator removed it, or never had it)."""
    removed = trustme.CA()
    bundle = tmp_path / "fake-certifi" / "cacert.pem"
    bundle.parent.mkdir()
    bundle.write_bytes(Path(certifi.where()).read_bytes() + removed.cert_pem.bytes())
    monkeypatch.setattr(_trust, "reference_bundle_paths", lambda: (str(bundle),))
    yield removed


# -- 1. pins stay pins -------------------------------------------------------


def test_injected_private_ca_file_is_a_pin(
    injected: None,
    private_ca: trustme.CA,
    os_server: TLSServer,
    private_server: TLSServer,
    tmp_path: Path,
) -> None:
    pem = tmp_path / "private.pem"
    private_ca.cert_pem.write_to_path(str(pem))
    ctx = ssl.create_default_context(cafile=str(pem))
    assert isinstance(ctx, truststore.SSLContext)
    assert _accepts(ctx, private_server)
    assert not _accepts(ctx, os_server)  # an OS-trusted server for the same host


def test_injected_cadata_is_a_pin(
    injected: None, private_ca: trustme.CA, os_server: TLSServer, private_server: TLSServer
) -> None:
    for cadata in (private_ca.cert_pem.bytes().decode(), _der(private_ca)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=cadata)
        assert _accepts(ctx, private_server)
        assert not _accepts(ctx, os_server)


def test_injected_capath_is_a_pin(
    injected: None,
    private_ca: trustme.CA,
    os_server: TLSServer,
    private_server: TLSServer,
    tmp_path: Path,
) -> None:
    env = make_store(tmp_path / "pins", private_ca, hashed=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(capath=env["SSL_CERT_DIR"])
    assert _accepts(ctx, private_server)
    assert not _accepts(ctx, os_server)


def test_injected_pin_plus_defaults_trusts_both(
    injected: None, private_ca: trustme.CA, os_server: TLSServer, private_server: TLSServer
) -> None:
    ctx = ssl.create_default_context(cadata=private_ca.cert_pem.bytes().decode())
    ctx.load_default_certs()
    assert _accepts(ctx, private_server)
    assert _accepts(ctx, os_server)


def test_library_context_adds_loaded_cas_to_the_os_store(
    private_ca: trustme.CA, os_server: TLSServer, private_server: TLSServer
) -> None:
    ctx = truststore.SSLContext()
    ctx.load_verify_locations(cadata=private_ca.cert_pem.bytes().decode())
    assert _accepts(ctx, private_server)
    assert _accepts(ctx, os_server)


@pytest.mark.parametrize("kind", ["injected", "library"])
def test_nothing_loaded_means_the_os_store(
    kind: str, os_server: TLSServer, private_server: TLSServer
) -> None:
    if kind == "injected":
        truststore.inject_into_ssl()
    try:
        ctx = (
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if kind == "injected"
            else truststore.SSLContext()
        )
        assert _accepts(ctx, os_server)
        assert not _accepts(ctx, private_server)
        # The decision was made at the first handshake: loading a CA later
        # adds to it, as the stdlib's store only ever grows.
        assert _accepts(ssl.create_default_context(), os_server)
    finally:
        truststore.extract_from_ssl()


def _der(ca: trustme.CA) -> bytes:
    return _common.pem_to_der_list(ca.cert_pem.bytes())[0]


# -- 2. public bundles mean "the defaults" --------------------------------------


def test_root_removed_from_the_os_store_but_in_certifi_is_refused(
    injected: None, fake_certifi: trustme.CA, os_server: TLSServer, tmp_path: Path
) -> None:
    removed = fake_certifi
    (path,) = _trust.reference_bundle_paths()
    ctx = ssl.create_default_context(cafile=path)
    with serve_cert(removed.issue_cert("localhost")) as server:
        assert not _accepts(ctx, server)
    assert _accepts(ctx, os_server)
    # The control: the stdlib itself trusts it through that bundle.
    std = _api._StdSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    std.load_verify_locations(path)
    with serve_cert(removed.issue_cert("localhost")) as server:
        assert _accepts(std, server)


def test_certifi_copy_with_a_corporate_ca_appended_trusts_it(
    injected: None,
    os_server: TLSServer,
    private_ca: trustme.CA,
    private_server: TLSServer,
    tmp_path: Path,
) -> None:
    copy = tmp_path / "corporate-bundle.pem"
    copy.write_bytes(Path(certifi.where()).read_bytes() + private_ca.cert_pem.bytes())
    ctx = ssl.create_default_context(cafile=str(copy))
    assert _accepts(ctx, private_server)  # the appended CA, as given
    assert _accepts(ctx, os_server)  # the public part means "the OS store"


@pytest.mark.parametrize(
    ("public", "private", "general"),
    [
        (_GENERAL_MIN, 1, True),  # at the size threshold
        (_GENERAL_MIN - 2, 1, False),  # one below it: a short pin list
        (40, 40, True),  # public share exactly at the threshold (1/2)
        (40, 41, False),  # share just below it: a private bundle
    ],
)
def test_general_purpose_thresholds(
    injected: None,
    public: int,
    private: int,
    general: bool,
    os_server: TLSServer,
    private_server: TLSServer,
    private_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    pems = _certifi_pems()[:public]
    assert len(pems) == public
    privates = [private_ca.cert_pem.bytes()] + [
        trustme.CA().cert_pem.bytes() for _ in range(private - 1)
    ]
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"".join(pems + privates))
    assert _trust.classify_bundle(str(bundle), _api._backend).general is general
    ctx = ssl.create_default_context(cafile=str(bundle))
    assert _accepts(ctx, private_server)  # non-public certificates: always as given
    assert _accepts(ctx, os_server) is general


def test_public_bundle_is_parsed_once_per_file_state(
    injected: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_server: TLSServer
) -> None:
    bundle = tmp_path / "cacert.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    calls = []
    original = _trust._classify_uncached
    monkeypatch.setattr(_trust, "_classify_uncached", lambda *a: calls.append(a) or original(*a))
    for _ in range(5):
        ctx = ssl.create_default_context(cafile=str(bundle))
        assert ctx.cert_store_stats()["x509_ca"] >= 1
    assert len(calls) == 1
    assert _accepts(ctx, os_server)
    bundle.write_bytes(bundle.read_bytes() + b"\n")  # a new file state
    ssl.create_default_context(cafile=str(bundle))
    assert len(calls) == 2


def test_library_context_with_certifi_keeps_every_root(
    fake_certifi: trustme.CA, os_server: TLSServer
) -> None:
    (path,) = _trust.reference_bundle_paths()
    ctx = truststore.SSLContext()
    ctx.load_verify_locations(path)
    with serve_cert(fake_certifi.issue_cert("localhost")) as server:
        assert _accepts(ctx, server)  # additive, as the public truststore
    assert _accepts(ctx, os_server)


# -- 3. load_default_certs() / set_default_verify_paths() ----------------------


@pytest.mark.parametrize("kind", ["injected", "library"])
@pytest.mark.parametrize("method", ["load_default_certs", "set_default_verify_paths"])
def test_load_default_certs_reads_ssl_cert_file_at_call_time(
    kind: str, method: str, empty_store: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "injected":
        truststore.inject_into_ssl()
    try:
        ctx = (
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if kind == "injected"
            else truststore.SSLContext()
        )
        ca = trustme.CA()
        for key, value in make_store(tmp_path / "later", ca).items():
            monkeypatch.setenv(key, value)
        getattr(ctx, method)()
        with serve_cert(ca.issue_cert("localhost")) as server:
            assert _accepts(ctx, server)
    finally:
        truststore.extract_from_ssl()


def test_repeated_load_default_certs_adds_nothing(
    injected: None, os_store: trustme.CA, monkeypatch: pytest.MonkeyPatch, os_server: TLSServer
) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_default_certs()
    assert _accepts(ctx, os_server)
    stats = ctx.cert_store_stats()
    loads = []
    monkeypatch.setattr(_trust, "_load_os_into", lambda *a: loads.append(a))
    for _ in range(100):
        ctx.load_default_certs()
        ctx.set_default_verify_paths()
    assert loads == []
    assert ctx.cert_store_stats() == stats


# -- 4. server side ------------------------------------------------------------


def _client_cert_handshake(
    server_ctx: ssl.SSLContext, server_ca: trustme.CA, client_cert: trustme.LeafCert
) -> bool:
    """Did the server accept the client's certificate?"""
    # A plain stdlib client (trustme's configure_* insist on ssl.SSLContext,
    # which is ours while injected).
    client = _api._StdSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=server_ca.cert_pem.bytes().decode())
    with client_cert.private_key_and_cert_chain_pem.tempfile() as path:
        client.load_cert_chain(path)
    with TLSServer(b"", b"", context=server_ctx) as server:
        try:
            fetch(client, server, "localhost")
        except (ssl.SSLError, OSError, AssertionError):
            pass
        else:
            return True
        for _ in range(200):  # the server thread records its error after closing
            with server._lock:
                errors = list(server.errors)
            if errors:
                break
            time.sleep(0.05)
    assert any("certificate" in str(e).lower() for e in errors), errors
    return False


@pytest.mark.parametrize(
    "protocol",
    ["PROTOCOL_TLS", "PROTOCOL_TLSv1_2", "PROTOCOL_TLS_SERVER"],
)
@pytest.mark.parametrize("kind", ["injected", "library"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_generic_protocol_server_verifies_clients_against_its_own_ca(
    kind: str, protocol: str, os_store: trustme.CA
) -> None:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    if kind == "injected":
        truststore.inject_into_ssl()
    try:
        cls = ssl.SSLContext if kind == "injected" else truststore.SSLContext
        ctx = cls(getattr(ssl, protocol))
        server_ca.issue_cert("localhost").configure_cert(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
        assert _client_cert_handshake(ctx, server_ca, client_ca.issue_cert("client@example"))
        # An OS-trusted client certificate is not a client the owner chose.
        assert not _client_cert_handshake(ctx, server_ca, os_store.issue_cert("client@example"))
    finally:
        truststore.extract_from_ssl()


# -- 5. what the context reports -----------------------------------------------


@pytest.mark.parametrize("kind", ["injected", "library"])
def test_get_ca_certs_reports_the_os_store(kind: str, os_store: trustme.CA) -> None:
    std = _api._StdSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    std.set_default_verify_paths()
    expected = std.get_ca_certs()
    assert len(expected) == 1
    if kind == "injected":
        truststore.inject_into_ssl()
    try:
        ctx = ssl.create_default_context() if kind == "injected" else truststore.SSLContext()
        assert ctx.get_ca_certs() == expected
        assert ctx.cert_store_stats() == std.cert_store_stats()
        assert ctx.get_ca_certs(binary_form=True) == std.get_ca_certs(binary_form=True)
    finally:
        truststore.extract_from_ssl()


def test_get_ca_certs_of_a_pin_is_the_pin(
    injected: None, os_store: trustme.CA, private_ca: trustme.CA
) -> None:
    ctx = ssl.create_default_context(cadata=private_ca.cert_pem.bytes().decode())
    assert ctx.get_ca_certs(binary_form=True) == [_der(private_ca)]
    assert ctx.cert_store_stats()["x509_ca"] == 1


# -- 6. the class installed as ssl.SSLContext -----------------------------------

_PROPERTY_CYCLES = textwrap.dedent(
    """
    import ssl, sys
    sys.path.insert(0, sys.argv[1])
    import truststore
    from truststore import _api

    def exercise(ctx):
        ctx.options |= ssl.OP_NO_TICKET
        ctx.options &= ~ssl.OP_NO_TICKET
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_flags |= ssl.VERIFY_X509_TRUSTED_FIRST
        ctx._msg_callback = lambda *a: None
        ctx._msg_callback = None
        if ctx.protocol != ssl.PROTOCOL_TLS_SERVER:
            ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_mode = ssl.CERT_REQUIRED
        assert type(ctx.options) is ssl.Options
        assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
        assert type(ctx.verify_mode) is ssl.VerifyMode
        assert type(ctx.verify_flags) is ssl.VerifyFlags

    def made():
        out = []
        for proto in (ssl.PROTOCOL_TLS_CLIENT, ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS):
            out += [ssl.SSLContext(proto), truststore.SSLContext(proto)]
        out.append(ssl.create_default_context())
        return out

    before = made()
    contexts = list(before)
    for cycle in range(3):
        truststore.inject_into_ssl()
        assert issubclass(ssl.SSLContext, truststore.SSLContext)
        assert isinstance(ssl.create_default_context(), truststore.SSLContext)
        contexts += made()
        for ctx in contexts:
            exercise(ctx)
        truststore.extract_from_ssl()
        assert ssl.SSLContext is _api._StdSSLContext
        contexts += made()
        for ctx in contexts:
            exercise(ctx)
    print("ok", len(contexts))
    """
)


def test_every_property_on_every_class_across_injection_cycles() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore::DeprecationWarning",
            "-c",
            _PROPERTY_CYCLES,
            str(ROOT / "src"),
        ],
        env=scrubbed_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "ok", result.stdout


def test_os_store_loads_once_under_concurrent_first_handshakes(
    injected: None, os_server: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    original = _trust._load_os_into
    monkeypatch.setattr(_trust, "_load_os_into", lambda *a: loads.append(1) or original(*a))
    ctx = ssl.create_default_context()
    start = threading.Barrier(8)
    results: list[bool] = []

    def worker() -> None:
        start.wait()
        results.append(_accepts(ctx, os_server))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [True] * 8
    assert len(loads) == 1


def test_second_init_keeps_a_pin(
    injected: None, private_ca: trustme.CA, os_server: TLSServer, private_server: TLSServer
) -> None:
    """A mixin or cooperative subclass may run __init__ twice: the pin
    loaded in between must not turn into "nothing loaded" (= the OS store)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=private_ca.cert_pem.bytes().decode())
    ctx.__init__(ssl.PROTOCOL_TLS_CLIENT)  # type: ignore[misc]
    assert _accepts(ctx, private_server)
    assert not _accepts(ctx, os_server)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_generic_context_that_served_first_keeps_serving(os_store: trustme.CA) -> None:
    """Served with verification, then used once as a client (no OS store
    added: its owner's CAs only), then serving again still works."""
    truststore.inject_into_ssl()
    try:
        server_ca, client_ca = trustme.CA(), trustme.CA()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS)
        server_ca.issue_cert("localhost").configure_cert(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
        assert _client_cert_handshake(ctx, server_ca, client_ca.issue_cert("client@example"))
        with serve_cert(os_store.issue_cert("localhost")) as server:
            assert not _accepts(ctx, server)  # no OS store slipped in
        assert _client_cert_handshake(ctx, server_ca, client_ca.issue_cert("client@example"))
        assert not _client_cert_handshake(ctx, server_ca, os_store.issue_cert("client@example"))
    finally:
        truststore.extract_from_ssl()


def test_certifi_itself_is_judged_without_parsing(
    injected: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, os_server: TLSServer
) -> None:
    installed = tmp_path / "site-packages" / "certifi" / "cacert.pem"
    installed.parent.mkdir(parents=True)
    installed.write_bytes(Path(certifi.where()).read_bytes())
    monkeypatch.setattr(_trust, "reference_bundle_paths", lambda: (str(installed),))
    calls: list[object] = []
    monkeypatch.setattr(_trust, "_classify_uncached", lambda *a: calls.append(a))
    ctx = ssl.create_default_context(cafile=str(installed))
    assert calls == []  # every certificate of certifi is public by definition
    assert _accepts(ctx, os_server)


def test_certifi_replaced_by_a_private_ca_stays_a_pin(
    injected: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    private_ca: trustme.CA,
    os_server: TLSServer,
    private_server: TLSServer,
) -> None:
    """Overwriting certifi's cacert.pem with one's own CA is a known way to
    pin requests: too small to be general-purpose, it stays a pin."""
    installed = tmp_path / "site-packages" / "certifi" / "cacert.pem"
    installed.parent.mkdir(parents=True)
    installed.write_bytes(private_ca.cert_pem.bytes())
    monkeypatch.setattr(_trust, "reference_bundle_paths", lambda: (str(installed),))
    ctx = ssl.create_default_context(cafile=str(installed))
    assert _accepts(ctx, private_server)
    assert not _accepts(ctx, os_server)


@pytest.mark.parametrize("size", [_GENERAL_MIN, _GENERAL_MIN - 1])
def test_the_os_bundle_loaded_by_path_means_the_os_store(
    injected: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """httpx loads SSL_CERT_FILE by path when it is set.  That file is the OS
    store's own bundle, so (when general-purpose by size) it means the OS
    store, hashed directory included, and is judged without parsing, like
    certifi; a small one is a pin, as any small bundle."""
    cas = [trustme.CA() for _ in range(size)]
    locations = make_store(tmp_path / "store", *cas, hashed=True)
    directory_only = trustme.CA()
    directory_only.cert_pem.write_to_path(str(Path(locations["SSL_CERT_DIR"]) / "only.pem"))
    subprocess.run(
        ["openssl", "rehash", locations["SSL_CERT_DIR"]], check=True, capture_output=True
    )
    for key, value in locations.items():
        monkeypatch.setenv(key, value)
    calls: list[object] = []
    real = _trust._classify_uncached
    monkeypatch.setattr(_trust, "_classify_uncached", lambda *a: calls.append(a) or real(*a))
    ctx = ssl.create_default_context(cafile=locations["SSL_CERT_FILE"])
    with (
        serve_cert(cas[0].issue_cert("localhost")) as in_bundle,
        serve_cert(directory_only.issue_cert("localhost")) as in_directory,
    ):
        assert _accepts(ctx, in_bundle)
        assert _accepts(ctx, in_directory) is (size >= _GENERAL_MIN)
    if size >= _GENERAL_MIN:
        assert calls == []
