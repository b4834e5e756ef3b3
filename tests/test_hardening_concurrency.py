"""Hardening matrix rows 11-14: concurrency and lifecycle.

11. 64 threads share one context while another thread flips the switches of
    a different context: every connection is verified with the settings of
    the context it was made on -- the shared one rejects the untrusted
    server every single time, and accepts the trusted one every time.
12. ``fork()`` while another thread is mid-handshake: the child connects.
13. ``inject_into_ssl()`` after requests, urllib3 and aiohttp made contexts;
    then changing those contexts: no RecursionError; ``extract_from_ssl()``
    puts back every class and context it replaced.
14. TLS session resumption on a second connection: verified, no error; a
    session is resumed only for the host it was verified for.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

import truststore
from support import HTTP_BODY, TLSServer, scrubbed_environ, serve_cert
from truststore import _common

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def os_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def os_store_env(os_ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    """*os_ca* alone in the OS store, as environment variables."""
    bundle = tmp_path / "os-bundle.pem"
    bundle.write_bytes(os_ca.cert_pem.bytes())
    empty = tmp_path / "os-dir"
    empty.mkdir()
    return {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(empty)}


@pytest.fixture
def os_store(os_store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in os_store_env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def trusted_server(os_ca: trustme.CA) -> Iterator[TLSServer]:
    with serve_cert(os_ca.issue_cert("localhost")) as server:
        yield server


@pytest.fixture(scope="module")
def untrusted_server(other_ca: trustme.CA) -> Iterator[TLSServer]:
    with serve_cert(other_ca.issue_cert("localhost")) as server:
        yield server


def fetch(ctx: ssl.SSLContext, server: TLSServer, host: str = "localhost", **kw: object) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock,
        ctx.wrap_socket(sock, server_hostname=host, **kw) as tls,  # type: ignore[arg-type]
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data


# -- 11. one shared context, another one's switches flipping ----------------


class CryptographyVerifier:
    """A real chain verifier (``cryptography``'s) behind the Windows/macOS
    seam of ``truststore.SSLContext``: with it, the facade takes the
    post-handshake path those backends use (native context at CERT_NONE,
    user settings snapshotted per connection), so the race this row is
    about is exercised on Linux too.  Its "OS store" is SSL_CERT_FILE."""

    def __init__(self) -> None:
        with open(os.environ["SSL_CERT_FILE"], "rb") as f:
            self._roots = x509.load_pem_x509_certificates(f.read())
        self._extra: list[x509.Certificate] = []
        self._exclusive = False

    def set_extra_anchors(self, ders: Sequence[bytes], *, exclusive: bool = False) -> None:
        self._extra = [x509.load_der_x509_certificate(d) for d in ders]
        self._exclusive = exclusive

    def verify(
        self, chain: Sequence[bytes], host: str | None, *, check_hostname: bool, verify_flags: int
    ) -> None:
        certs = [x509.load_der_x509_certificate(d) for d in chain]
        if check_hostname:
            assert host is not None
            subject: x509.GeneralName = (
                x509.IPAddress(ipaddress.ip_address(host))
                if _common.is_ip_address(host)
                else x509.DNSName(host)
            )
        else:
            sans = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
            subject = next(iter(sans.value))
        policy = PolicyBuilder().extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all().require_present(
                x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
            ),
        )
        roots = self._extra if self._exclusive else self._roots + self._extra
        if not roots:
            raise _common.verification_error(20, "no anchors", host)
        verifier = policy.store(Store(roots)).build_server_verifier(subject)
        try:
            verifier.verify(certs[0], certs[1:])
        except VerificationError as exc:
            raise _common.verification_error(
                _common.X509_V_ERR_UNSPECIFIED, str(exc), host
            ) from None


class InterceptingContext(truststore.SSLContext):
    _verifier_class = CryptographyVerifier


@pytest.mark.timeout(240)
@pytest.mark.parametrize("context_class", [truststore.SSLContext, InterceptingContext])
def test_shared_context_while_another_flips(
    context_class: type[truststore.SSLContext],
    os_store: None,
    trusted_server: TLSServer,
    untrusted_server: TLSServer,
) -> None:
    shared = context_class()
    flipping = context_class()
    if context_class is InterceptingContext:
        # OpenSSL itself verifies nothing here: every rejection below comes
        # from the per-connection snapshot and the verifier.
        assert ssl._ssl._SSLContext.verify_mode.__get__(shared) == ssl.CERT_NONE  # type: ignore[attr-defined]
    stop = threading.Event()
    flips = 0
    violations: list[str] = []
    lock = threading.Lock()

    def flip() -> None:
        nonlocal flips
        while not stop.is_set():
            flipping.check_hostname = False
            flipping.verify_mode = ssl.CERT_NONE
            # A connection on the flipping context, made while it is off,
            # must not leave anything behind for the shared one.
            with contextlib.suppress(ssl.SSLError, OSError):
                fetch(flipping, untrusted_server)  # may be back on meanwhile: fine
            flipping.verify_mode = ssl.CERT_REQUIRED
            flipping.check_hostname = True
            flips += 1

    def work(index: int) -> None:
        for round_ in range(3):
            try:
                fetch(shared, untrusted_server)
            except ssl.SSLCertVerificationError:
                pass
            except (ssl.SSLError, OSError) as exc:
                with lock:
                    violations.append(f"{index}/{round_}: untrusted gave {exc!r}")
            else:
                with lock:
                    violations.append(f"{index}/{round_}: UNTRUSTED SERVER ACCEPTED")
            try:
                fetch(shared, trusted_server, host="wrong.example")
            except ssl.SSLCertVerificationError:
                pass
            else:
                with lock:
                    violations.append(f"{index}/{round_}: WRONG HOST NAME ACCEPTED")
            try:
                assert HTTP_BODY in fetch(shared, trusted_server)
            except Exception as exc:
                with lock:
                    violations.append(f"{index}/{round_}: trusted server refused: {exc!r}")

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(64)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=200)
    stop.set()
    flipper.join(timeout=TIMEOUT)
    assert not any(worker.is_alive() for worker in workers)
    assert violations == []
    assert flips > 0
    # The shared context's own switches were never touched.
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname


# -- 12. fork() mid-handshake --------------------------------------------------

_FORK_CHILD = textwrap.dedent(
    """
    import os, signal, socket, ssl, sys, threading, time, traceback
    import truststore

    stalled_port, trusted_port, untrusted_port = map(int, sys.argv[1:4])
    body = sys.argv[4].encode()
    shared = truststore.SSLContext()
    waiting = threading.Event()

    def stalled_handshake():
        sock = socket.create_connection(("127.0.0.1", stalled_port), timeout=30)
        waiting.set()
        with shared.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")

    def fetch(ctx, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                return data

    thread = threading.Thread(target=stalled_handshake)
    thread.start()
    waiting.wait(10)
    time.sleep(0.3)  # the ClientHello is out; the thread waits in the handshake
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)  # a deadlock in the child fails instead of hanging
        try:
            assert body in fetch(shared, trusted_port)  # the inherited context
            assert body in fetch(truststore.SSLContext(), trusted_port)  # a new one
            try:
                fetch(shared, untrusted_port)
            except ssl.SSLCertVerificationError:
                pass
            else:
                raise AssertionError("the child accepted an untrusted server")
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    thread.join(30)
    print("child", os.waitstatus_to_exitcode(status), "parent-thread-alive", thread.is_alive())
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_fork_while_another_thread_is_mid_handshake(
    os_ca: trustme.CA,
    os_store_env: dict[str, str],
    trusted_server: TLSServer,
    untrusted_server: TLSServer,
) -> None:
    with serve_cert(os_ca.issue_cert("localhost"), handshake_delay=2.0) as stalled:
        env = scrubbed_environ(**os_store_env, PYTHONPATH=str(ROOT / "src"))
        result = subprocess.run(
            [
                sys.executable,
                *("-W", "ignore::DeprecationWarning", "-c", _FORK_CHILD),
                *(str(stalled.port), str(trusted_server.port), str(untrusted_server.port)),
                HTTP_BODY.decode(),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert stalled.handshakes == 1  # the parent's stalled handshake did finish
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0", "parent-thread-alive", "False"], result.stderr


# -- 13. injection after the HTTP stacks made contexts --------------------------

_INJECTION_AFTER_CONTEXTS = textwrap.dedent(
    """
    import socket, ssl, sys
    import requests, urllib3, urllib3.util.ssl_, aiohttp, aiohttp.connector
    import truststore
    from truststore import _api

    trusted_port, cafile = int(sys.argv[1]), sys.argv[2]
    url = f"https://localhost:{trusted_port}/"
    WATCHED = [ssl, urllib3.util.ssl_, urllib3.connection, requests.adapters, aiohttp.connector]

    def snapshot():
        # Every SSLContext class or instance the modules hold.
        found = {}
        for module in WATCHED:
            for name, value in vars(module).items():
                if (isinstance(value, type) and issubclass(value, _api._StdSSLContext)) or isinstance(
                    value, _api._StdSSLContext
                ):
                    found[(module.__name__, name)] = value
        return found

    class UserContext(ssl.SSLContext):  # a library's own subclass, made before injection
        pass

    # Contexts the stacks made before injection: requests' live connection
    # (urllib3 built its context), aiohttp's module-level ones, urllib3's
    # factory, the stdlib's, a subclass's.
    built = []
    factory = urllib3.connection.create_urllib3_context

    def recording_factory(*args, **kwargs):
        built.append(factory(*args, **kwargs))
        return built[-1]

    urllib3.connection.create_urllib3_context = recording_factory
    assert requests.get(url, verify=cafile, timeout=20).status_code == 200
    urllib3.connection.create_urllib3_context = factory
    made_before = {
        "requests": built[0],
        "urllib3": urllib3.util.ssl_.create_urllib3_context(),
        "aiohttp-verified": aiohttp.connector._SSL_CONTEXT_VERIFIED,
        "aiohttp-unverified": aiohttp.connector._SSL_CONTEXT_UNVERIFIED,
        "stdlib": ssl.create_default_context(cafile=cafile),
        "subclass": UserContext(ssl.PROTOCOL_TLS_CLIENT),
    }
    before = snapshot()

    def exercise(ctx):
        ctx.options |= ssl.OP_NO_TICKET
        ctx.options &= ~ssl.OP_NO_TICKET
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_flags |= ssl.VERIFY_X509_TRUSTED_FIRST
        was = (ctx.verify_mode, ctx.check_hostname)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname is True
        ctx.check_hostname = False
        ctx.verify_mode, ctx.check_hostname = was
        assert type(ctx.minimum_version) is ssl.TLSVersion, type(ctx.minimum_version)
        assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
        assert type(ctx.verify_mode) is ssl.VerifyMode
        assert type(ctx.options) is ssl.Options

    made_during = []
    for cycle in range(3):
        truststore.inject_into_ssl()
        assert issubclass(ssl.SSLContext, truststore.SSLContext)
        for name, ctx in made_before.items():
            exercise(ctx)
        fresh = urllib3.util.ssl_.create_urllib3_context()
        assert isinstance(fresh, truststore.SSLContext)
        exercise(fresh)
        exercise(ssl.create_default_context())
        made_during.append(fresh)
        # The stdlib context made before injection still verifies with its CA.
        assert requests.get(url, timeout=20).status_code == 200  # OS store, through injection
        sock = socket.create_connection(("127.0.0.1", trusted_port), timeout=20)
        with made_before["stdlib"].wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version()
        truststore.extract_from_ssl()
        after = snapshot()
        changed = sorted(k for k in before if after.get(k) is not before[k])
        assert not changed, changed
        assert ssl.SSLContext is _api._StdSSLContext
        for ctx in (*made_before.values(), *made_during):
            exercise(ctx)  # ours, made during injection, with the stdlib back
    print("ok")
    """
)


def test_inject_after_http_stacks_made_contexts(
    os_ca: trustme.CA, os_store_env: dict[str, str], trusted_server: TLSServer, tmp_path: Path
) -> None:
    cafile = tmp_path / "ca.pem"
    os_ca.cert_pem.write_to_path(str(cafile))
    env = scrubbed_environ(**os_store_env, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", _INJECTION_AFTER_CONTEXTS, str(trusted_server.port), str(cafile)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "RecursionError" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- 14. session resumption -------------------------------------------------------


@pytest.fixture(scope="module")
def two_name_servers(os_ca: trustme.CA) -> Iterator[dict[ssl.TLSVersion, TLSServer]]:
    leaf = os_ca.issue_cert("alpha.example", "beta.example")
    with (
        serve_cert(leaf, max_version=ssl.TLSVersion.TLSv1_2) as tls12,
        serve_cert(leaf, max_version=ssl.TLSVersion.TLSv1_3) as tls13,
    ):
        yield {ssl.TLSVersion.TLSv1_2: tls12, ssl.TLSVersion.TLSv1_3: tls13}


def _connect(
    ctx: ssl.SSLContext, server: TLSServer, host: str, session: ssl.SSLSession | None = None
) -> tuple[ssl.SSLSession | None, bool, str | None, dict[str, object] | None]:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock,
        ctx.wrap_socket(sock, server_hostname=host, session=session) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):  # TLS 1.3 tickets arrive with the data
            data += chunk
        assert HTTP_BODY in data
        return tls.session, tls.session_reused, tls.version(), tls.getpeercert()  # type: ignore[return-value]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption_is_verified(
    version: ssl.TLSVersion,
    os_store: None,
    two_name_servers: dict[ssl.TLSVersion, TLSServer],
) -> None:
    server = two_name_servers[version]
    ctx = truststore.SSLContext()
    session, reused, negotiated, _ = _connect(ctx, server, "alpha.example")
    assert (reused, negotiated) == (False, version.name.replace("_", "."))
    assert session is not None
    _, reused, _, peer = _connect(ctx, server, "alpha.example", session)
    assert reused is True
    assert peer is not None and ("DNS", "alpha.example") in peer["subjectAltName"]  # type: ignore[operator]
    # ...and again, from the resumed connection's own session.
    _, reused, _, _ = _connect(ctx, server, "ALPHA.example", session)
    assert reused is True


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_not_resumed_for_another_host(
    version: ssl.TLSVersion,
    os_store: None,
    two_name_servers: dict[ssl.TLSVersion, TLSServer],
) -> None:
    """OpenSSL skips certificate and name checks on resumption, so a session
    verified for one name must not carry a connection to another, even
    where the certificate would have covered both."""
    server = two_name_servers[version]
    if version is ssl.TLSVersion.TLSv1_2:
        # Control: the standard library does resume it for the other name.
        plain = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        session, _, _, _ = _connect(plain, server, "alpha.example")
        assert _connect(plain, server, "beta.example", session)[1] is True
    ctx = truststore.SSLContext()
    session, _, _, _ = _connect(ctx, server, "alpha.example")
    try:
        _, reused, _, _ = _connect(ctx, server, "beta.example", session)
    except ssl.SSLCertVerificationError as exc:
        assert "beta.example" in str(exc)
    else:
        # OpenSSL declined to resume (TLS 1.3 checks SNI): a full,
        # verified handshake is equally fine.
        assert reused is False
