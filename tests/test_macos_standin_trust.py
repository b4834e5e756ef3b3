"""Issue 11 on the macOS backend (through the stand-in Security framework):
what each kind of context trusts, end to end with loopback servers.

The "OS store" is the stand-in's keychain (``standin.keychain_add``).  An
injected context is ``_api.InjectedSSLContext`` (what ``ssl.SSLContext`` is
while injected) verifying through ``_macos``; a library context is
``truststore.SSLContext`` doing the same (``MacSSLContext``).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

import certifi
import pytest
import trustme

from support import TLSServer
from test_macos_standin import (
    ALWAYS_TRUST,
    PKI,
    MacSSLContext,
    StandIn,
    _days,
    _der,
    _from_trustme,
    _get,
    _get_fails,
    _no_cf_leaks,
    _now,
    pki,
    standin,
    standin_builds,
)
from truststore import _api, _common, _macos, _trust

# The stand-in's fixtures, shared with test_macos_standin (named here so that
# pytest registers them for this module too).
SHARED_FIXTURES = (_no_cf_leaks, pki, standin, standin_builds)


class MacInjectedSSLContext(_api.InjectedSSLContext):
    """What ssl.SSLContext is while injected, verifying through _macos."""

    _verifier_class = _macos.Verifier


def _server_for(ca: trustme.CA) -> TLSServer:
    leaf = ca.issue_cert(
        "localhost", "127.0.0.1", not_before=_now() - _days(1), not_after=_now() + _days(30)
    )
    return _from_trustme(leaf).server()


@pytest.fixture
def private_ca() -> trustme.CA:
    return trustme.CA()


def test_injected_pin_refuses_a_keychain_trusted_server(
    standin: StandIn, pki: PKI, private_ca: trustme.CA
) -> None:
    standin.keychain_add(pki.root_der)
    pinned = MacInjectedSSLContext()
    pinned.load_verify_locations(cadata=private_ca.cert_pem.bytes().decode())
    with pki.good.server() as server:
        err = _get_fails(pinned, server)
        assert err.verify_code == standin.code(_common.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
        # Controls: the keychain does vouch for it, for a bare context, a
        # pinned one that also asked for the defaults, and a library one.
        assert _get(MacInjectedSSLContext(), server, "localhost")
        both = MacInjectedSSLContext()
        both.load_verify_locations(cadata=private_ca.cert_pem.bytes().decode())
        both.load_default_certs()
        assert _get(both, server, "localhost")
        library = MacSSLContext()
        library.load_verify_locations(cadata=private_ca.cert_pem.bytes().decode())
        assert _get(library, server, "localhost")
    with _server_for(private_ca) as server:
        assert _get(pinned, server, "localhost")
        assert _get(both, server, "localhost")


def test_injected_public_bundle_means_the_keychain(
    standin: StandIn,
    pki: PKI,
    private_ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """certifi (here with a root the keychain lacks) means the OS store; a
    private CA appended to it is trusted as given."""
    standin.keychain_add(pki.root_der)
    removed = trustme.CA()
    fake_certifi = tmp_path / "certifi" / "cacert.pem"
    fake_certifi.parent.mkdir()
    fake_certifi.write_bytes(Path(certifi.where()).read_bytes() + removed.cert_pem.bytes())
    monkeypatch.setattr(_trust, "reference_bundle_paths", lambda: (str(fake_certifi),))
    copy = tmp_path / "corporate.pem"
    copy.write_bytes(fake_certifi.read_bytes() + private_ca.cert_pem.bytes())
    ctx = MacInjectedSSLContext()
    ctx.load_verify_locations(cafile=str(copy))
    with pki.good.server() as server:
        assert _get(ctx, server, "localhost")
    with _server_for(private_ca) as server:
        assert _get(ctx, server, "localhost")
    with _server_for(removed) as server:
        _get_fails(ctx, server)


def _subject_hash_name(pem_path: Path) -> str:
    digest = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(pem_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{digest}.0"


@pytest.mark.parametrize("cls", [MacInjectedSSLContext, MacSSLContext], ids=["injected", "library"])
def test_capath_anchors_are_only_hashed_names(
    standin: StandIn, private_ca: trustme.CA, tmp_path: Path, cls: type
) -> None:
    """Issue 10 row 8: OpenSSL only ever looks up ``<subject-hash>.N``; a
    file under any other name in the directory is not an anchor."""
    hashed_ca, plain_ca = trustme.CA(), private_ca
    directory = tmp_path / "capath"
    directory.mkdir()
    source = tmp_path / "hashed.pem"
    hashed_ca.cert_pem.write_to_path(str(source))
    (directory / _subject_hash_name(source)).write_bytes(source.read_bytes())
    plain_ca.cert_pem.write_to_path(str(directory / "plain-ca.pem"))
    (directory / "0123abcd.txt").write_bytes(plain_ca.cert_pem.bytes())  # not the pattern
    # The pattern, but not its subject hash: OpenSSL's look-up never opens it.
    wrong = "00000000.0" if _subject_hash_name(source) != "00000000.0" else "00000001.0"
    (directory / wrong).write_bytes(plain_ca.cert_pem.bytes())
    ctx = cls()
    ctx.load_verify_locations(capath=str(directory))
    with _server_for(hashed_ca) as server:
        assert _get(ctx, server, "localhost")
    with _server_for(plain_ca) as server:
        _get_fails(ctx, server)
    # The stdlib agrees (OpenSSL's own look-up).
    std = _api._StdSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    std.load_verify_locations(capath=str(directory))
    with _server_for(plain_ca) as server, pytest.raises(ssl.SSLCertVerificationError):
        _get(std, server, "localhost")


def test_capath_with_a_fifo_does_not_block(tmp_path: Path) -> None:
    import os

    directory = tmp_path / "capath"
    directory.mkdir()
    os.mkfifo(directory / "0123abcd.0")
    assert _trust.capath_anchor_ders(str(directory)) == []


def _client_accepted(server_ctx: ssl.SSLContext, server_ca: trustme.CA, client: Path) -> bool:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    result: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(20)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello\n")
                result["ok"] = True
        except (OSError, ssl.SSLError) as exc:
            result["error"] = exc
        finally:
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    ctx = _api._StdSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=server_ca.cert_pem.bytes().decode())
    ctx.load_cert_chain(str(client))
    address = ("127.0.0.1", listener.getsockname()[1])
    try:
        with (
            socket.create_connection(address, timeout=20) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.recv(6)
    except (OSError, ssl.SSLError):
        pass
    thread.join(30)
    listener.close()
    return result.get("ok") is True


@pytest.mark.parametrize("cls", [MacInjectedSSLContext, MacSSLContext], ids=["injected", "library"])
@pytest.mark.parametrize("protocol", ["PROTOCOL_TLS", "PROTOCOL_TLSv1_2"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_generic_protocol_server_verifies_clients_against_its_own_ca(
    standin: StandIn, pki: PKI, tmp_path: Path, protocol: str, cls: type
) -> None:
    standin.keychain_add(pki.root_der)  # the OS trusts pki.root's clients
    server_ca, client_ca = trustme.CA(), trustme.CA()
    ctx = cls(getattr(ssl, protocol))
    server_ca.issue_cert("localhost").configure_cert(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=client_ca.cert_pem.bytes().decode())
    own = tmp_path / "own.pem"
    own.write_bytes(client_ca.issue_cert("client@example").private_key_and_cert_chain_pem.bytes())
    os_trusted = tmp_path / "os.pem"
    os_trusted.write_bytes(
        pki.intermediate.issue_cert("client@example").private_key_and_cert_chain_pem.bytes()
    )
    assert _client_accepted(ctx, server_ca, own)
    assert not _client_accepted(ctx, server_ca, os_trusted)


def test_get_ca_certs_lists_the_keychain_anchors(
    standin: StandIn, pki: PKI, private_ca: trustme.CA
) -> None:
    standin.keychain_add(pki.root_der)
    standin.keychain_add(pki.other_root_der, ALWAYS_TRUST)
    bare = MacInjectedSSLContext()
    listed = bare.get_ca_certs(binary_form=True)
    assert pki.root_der in listed and pki.other_root_der in listed
    assert bare.cert_store_stats()["x509_ca"] == len(listed)
    library = MacSSLContext()
    library.load_verify_locations(cadata=private_ca.cert_pem.bytes().decode())
    assert sorted(library.get_ca_certs(binary_form=True)) == sorted(
        [pki.root_der, pki.other_root_der, _der(private_ca.cert_pem.bytes())]
    )
    pinned = MacInjectedSSLContext()
    pinned.load_verify_locations(cadata=private_ca.cert_pem.bytes().decode())
    assert pinned.get_ca_certs(binary_form=True) == [_der(private_ca.cert_pem.bytes())]
