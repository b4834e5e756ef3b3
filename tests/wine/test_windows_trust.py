"""Issue 11 on the Windows backend: what each kind of context trusts.

* A pinned injected context (its own CA loaded, no defaults asked for)
  verifies against its anchors only (the exclusive-root engine): a server
  whose root is in the OS store is refused.
* A bare injected context, or one that asked for the defaults, trusts the
  ROOT store; a library ``truststore.SSLContext`` adds what it loads to it.
* A general-purpose public bundle (here: the ROOT store's own roots as a
  PEM file, plus one private CA) means the OS store plus that private CA.
* A generic-protocol server verifies clients against its owner's CAs only.
* ``capath``: only ``<subject-hash>.N`` names are anchors (issue 10, row 8).
* ``get_ca_certs()`` lists the ROOT store when the OS store is in use.

Chain engines read the ROOT store when they are created (Wine's default
engine never again), so cases that need sys-root in the store run in a
fresh process, as in test_windows_backend.py.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import truststore
from conftest import PKI, TLSServer, fetch
from truststore import _api, _common, _openssl, _trust, _windows

E = _common

_CHILD = textwrap.dedent(
    """
    import json, socket, ssl, sys
    import truststore
    from truststore import _api

    rsa_root, sys_port, rsa_port, public_bundle = sys.argv[1:5]
    sys_port, rsa_port = int(sys_port), int(rsa_port)

    def outcome(ctx, port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    return tls.recv(6).decode()
        except ssl.SSLCertVerificationError as exc:
            return exc.verify_code

    truststore.inject_into_ssl()
    out = {}
    pinned = ssl.create_default_context(cafile=rsa_root)
    out["pinned/os"] = outcome(pinned, sys_port)
    out["pinned/own"] = outcome(pinned, rsa_port)
    out["bare/os"] = outcome(ssl.create_default_context(), sys_port)
    both = ssl.create_default_context(cafile=rsa_root)
    both.load_default_certs()
    out["pin+defaults/os"] = outcome(both, sys_port)
    public = ssl.create_default_context(cafile=public_bundle)
    out["public/os"] = outcome(public, sys_port)
    out["public/own"] = outcome(public, rsa_port)
    library = truststore.SSLContext()
    library.load_verify_locations(rsa_root)
    out["library/os"] = outcome(library, sys_port)
    out["library/own"] = outcome(library, rsa_port)
    print(json.dumps(out))
    """
)


def _public_bundle(path: Path, pki: PKI) -> Path:
    """The ROOT store's roots as one PEM file, rsa-root appended: a
    general-purpose public bundle with a private CA, as far as _trust can
    tell (its public roots match the OS store byte for byte)."""
    _key, ders = _windows.store_certificates()
    pems = [ssl.DER_cert_to_PEM_cert(der) for der in ders]
    path.write_text("".join(pems) + pki.pem("rsa-root").read_text())
    return path


def test_each_kind_of_context_against_an_os_trusted_server(
    pki: PKI, server: Callable[..., TLSServer], system_root: Any, tmp_path: Path
) -> None:
    bundle = _public_bundle(tmp_path / "public.pem", pki)
    verdict = _trust.classify_bundle(str(bundle), _windows)
    assert verdict is not None
    assert verdict.general, verdict.size  # the ROOT store holds >= 32 roots
    assert verdict.private_ders == (pki.der("rsa-root"),)
    sys_srv = server("sys-leaf")
    rsa_srv = server("rsa-leaf", "rsa-int")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(pki.pem("rsa-root")),
            str(sys_srv.port),
            str(rsa_srv.port),
            str(bundle),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ok = "hello\n"
    assert out == {
        "pinned/os": E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        "pinned/own": ok,
        "bare/os": ok,
        "pin+defaults/os": ok,
        "public/os": ok,
        "public/own": ok,
        "library/os": ok,
        "library/own": ok,
    }, out


def test_exclusive_anchors_with_no_anchor_refuse_everything(pki: PKI) -> None:
    verifier = _windows.Verifier()
    verifier.set_extra_anchors([], exclusive=True)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        verifier.verify(
            pki.chain("rsa-leaf", "rsa-int"), "localhost", check_hostname=True, verify_flags=0
        )
    assert info.value.verify_code == E.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    verifier.set_extra_anchors([pki.der("rsa-root")], exclusive=True)
    verifier.verify(
        pki.chain("rsa-leaf", "rsa-int"), "localhost", check_hostname=True, verify_flags=0
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        verifier.verify(
            pki.chain("ec-leaf", "ec-int"), "localhost", check_hostname=True, verify_flags=0
        )


def _hashed_name(der: bytes) -> str:
    value = _openssl.subject_hash(der)
    assert value is not None
    return f"{value:08x}.0"


@pytest.mark.parametrize("named", ["hashed", "plain"])
def test_capath_anchors_only_hashed_names(
    pki: PKI, server: Callable[..., TLSServer], tmp_path: Path, named: str
) -> None:
    directory = tmp_path / "capath"
    directory.mkdir()
    name = _hashed_name(pki.der("rsa-root")) if named == "hashed" else "rsa-root.pem"
    (directory / name).write_text(pki.pem("rsa-root").read_text())
    for cls in (_api.InjectedSSLContext, truststore.SSLContext):
        ctx = cls(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(capath=str(directory))
        srv = server("rsa-leaf", "rsa-int")
        if named == "hashed":
            assert fetch(ctx, srv.port) == b"hello\n"
        else:
            with pytest.raises(ssl.SSLCertVerificationError):
                fetch(ctx, srv.port)


def _client_accepted(server_ctx: ssl.SSLContext, pki: PKI, client_chain: tuple[str, ...]) -> bool:
    import socket
    import threading

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
    client = _api._StdSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(str(pki.pem("rsa-root")))
    client.load_cert_chain(str(pki.bundle(*client_chain)), str(pki.key(client_chain[0])))
    address = ("127.0.0.1", listener.getsockname()[1])
    try:
        with (
            socket.create_connection(address, timeout=20) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.recv(6)
    except (OSError, ssl.SSLError):
        pass
    thread.join(30)
    listener.close()
    return result.get("ok") is True


@pytest.mark.parametrize("protocol", ["PROTOCOL_TLS", "PROTOCOL_TLS_SERVER"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_generic_protocol_server_verifies_clients_against_its_own_ca(
    pki: PKI, system_root: Any, protocol: str
) -> None:
    truststore.inject_into_ssl()
    try:
        ctx = ssl.SSLContext(getattr(ssl, protocol))
        ctx.load_cert_chain(str(pki.bundle("rsa-leaf", "rsa-int")), str(pki.key("rsa-leaf")))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(pki.pem("rsa-root")))
        assert _client_accepted(ctx, pki, ("clientauth-leaf", "rsa-int"))
        assert not _client_accepted(ctx, pki, ("sys-leaf",))  # OS-trusted, not the owner's
    finally:
        truststore.extract_from_ssl()


def test_get_ca_certs_lists_the_root_store(pki: PKI, system_root: Any) -> None:
    truststore.inject_into_ssl()
    try:
        bare = ssl.create_default_context()
        listed = bare.get_ca_certs(binary_form=True)
        assert pki.der("sys-root") in listed
        assert bare.cert_store_stats()["x509_ca"] >= 1
        pinned = ssl.create_default_context(cafile=str(pki.pem("rsa-root")))
        assert pinned.get_ca_certs(binary_form=True) == [pki.der("rsa-root")]
    finally:
        truststore.extract_from_ssl()


def test_root_in_certifi_but_not_in_the_os_store_is_refused(
    pki: PKI, server: Callable[..., TLSServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "certifi" here: the ROOT store's roots plus other-root, which the OS
    store lacks (as if the administrator removed it).  Injected, that bundle
    means the OS store, so other-root's server is refused; a library context
    keeps every root of the bundle."""
    fake_certifi = tmp_path / "certifi" / "cacert.pem"
    fake_certifi.parent.mkdir()
    _key, ders = _windows.store_certificates()
    fake_certifi.write_text(
        "".join(ssl.DER_cert_to_PEM_cert(d) for d in ders) + pki.pem("other-root").read_text()
    )
    monkeypatch.setattr(_trust, "reference_bundle_paths", lambda: (str(fake_certifi),))
    verdict = _trust.classify_bundle(str(fake_certifi), _windows)
    assert verdict is not None and verdict.general and verdict.private_ders == ()
    srv = server("other-leaf", "other-root")
    injected = _api.InjectedSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    injected.load_verify_locations(str(fake_certifi))
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(injected, srv.port)
    library = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    library.load_verify_locations(str(fake_certifi))
    assert fetch(library, srv.port) == b"hello\n"
