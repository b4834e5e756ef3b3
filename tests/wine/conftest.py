"""Fixtures for the Windows backend tests.

These tests need a Windows Python (CryptoAPI): ``tests/wine/run.sh`` runs
them under Wine, and they run as they are on a Windows machine.  Anywhere
else this directory is not collected, so the main Linux run skips it.

Certificates come from ``pki.py``: made on the Linux side and named by
``TRUSTSTORE_TEST_PKI`` (Wine), or made here when that is unset (Windows,
where ``cryptography`` loads).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if sys.platform != "win32":
    collect_ignore_glob = ["*.py"]

HERE = Path(__file__).resolve().parent


def pem_to_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


class PKI:
    """Access to the certificates of pki.py by name."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def pem(self, name: str) -> Path:
        path = self.dir / f"{name}.pem"
        assert path.is_file(), path
        return path

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def der(self, name: str) -> bytes:
        return pem_to_der(self.pem(name))

    def chain(self, *names: str) -> list[bytes]:
        return [self.der(n) for n in names]

    def bundle(self, *names: str) -> Path:
        """One PEM file holding *names*, in order (a server's chain file)."""
        path = self.dir / ("bundle-" + "+".join(names) + ".pem")
        if not path.exists():
            path.write_text("".join(self.pem(n).read_text() for n in names))
        return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    given = os.environ.get("TRUSTSTORE_TEST_PKI")
    if given:
        return PKI(Path(given))
    sys.path.insert(0, str(HERE))
    import pki as generator  # needs cryptography: fine on Windows, not under Wine 8

    directory = tmp_path_factory.mktemp("pki")
    generator.generate(str(directory))
    return PKI(directory)


class TLSServer:
    """A TLS server on 127.0.0.1 that greets each client with b"hello\\n"."""

    def __init__(self, chain: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(chain), str(key))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(20)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                with self._lock:
                    self.handshakes += 1
                tls.sendall(b"hello\n")
                with contextlib.suppress(OSError, ssl.SSLError):
                    tls.recv(1)  # until the client closes
        except (OSError, ssl.SSLError):
            pass  # the client rejected us: that is what many tests want
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="session")
def server(pki: PKI) -> Iterator[Callable[..., TLSServer]]:
    """server("rsa-leaf", "rsa-int") -> a running server sending that chain."""
    servers: dict[tuple[str, ...], TLSServer] = {}

    def make(*chain: str) -> TLSServer:
        if chain not in servers:
            servers[chain] = TLSServer(pki.bundle(*chain), pki.key(chain[0]))
        return servers[chain]

    yield make
    for srv in servers.values():
        srv.close()


def fetch(context: ssl.SSLContext, port: int, host: str = "localhost") -> bytes:
    """Connect, handshake (verifying), read the greeting."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.recv(6)


# -- the Windows certificate store ---------------------------------------------

CERT_STORE_PROV_SYSTEM_REGISTRY_W = 13
CERT_SYSTEM_STORE_CURRENT_USER = 0x00010000
CERT_SYSTEM_STORE_LOCAL_MACHINE = 0x00020000
CERT_STORE_ADD_REPLACE_EXISTING = 3
CERT_FIND_EXISTING = 0x000D0000
CERT_NAME_SIMPLE_DISPLAY_TYPE = 4
ENCODING = 0x00010001
TEST_ROOT_NAME = "system store test root"  # pki.py's sys-root


def running_on_wine() -> bool:
    if sys.platform != "win32":
        return False
    ntdll = ctypes.WinDLL("ntdll")
    return hasattr(ntdll, "wine_get_version")


class SystemRootStore:
    """Add/remove a certificate in a ROOT system store, through CryptoAPI.

    Under Wine: CurrentUser ROOT.  On Windows that store shows a
    confirmation dialog, so LocalMachine ROOT is used (needs an elevated
    process; otherwise the test is skipped).
    """

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise RuntimeError("Windows only")
        c = ctypes.WinDLL("crypt32", use_last_error=True)
        c.CertOpenStore.restype = ctypes.c_void_p
        c.CertOpenStore.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_wchar_p,
        ]
        c.CertCloseStore.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        c.CertAddEncodedCertificateToStore.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_char_p,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_void_p,
        ]
        c.CertCreateCertificateContext.restype = ctypes.c_void_p
        c.CertCreateCertificateContext.argtypes = [
            ctypes.c_uint32,
            ctypes.c_char_p,
            ctypes.c_uint32,
        ]
        c.CertFindCertificateInStore.restype = ctypes.c_void_p
        c.CertFindCertificateInStore.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        c.CertDeleteCertificateFromStore.argtypes = [ctypes.c_void_p]
        c.CertDuplicateCertificateContext.restype = ctypes.c_void_p
        c.CertDuplicateCertificateContext.argtypes = [ctypes.c_void_p]
        c.CertEnumCertificatesInStore.restype = ctypes.c_void_p
        c.CertEnumCertificatesInStore.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        c.CertGetNameStringW.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_wchar_p,
            ctypes.c_uint32,
        ]
        c.CertFreeCertificateContext.argtypes = [ctypes.c_void_p]
        self.c = c
        self.location = (
            CERT_SYSTEM_STORE_CURRENT_USER if running_on_wine() else CERT_SYSTEM_STORE_LOCAL_MACHINE
        )

    def _open(self) -> int:
        # The registry store itself, not the system store (a collection):
        # Wine 8 does not persist a delete made through the collection.
        store = self.c.CertOpenStore(
            CERT_STORE_PROV_SYSTEM_REGISTRY_W, 0, None, self.location, "ROOT"
        )
        if not store:
            raise OSError(ctypes.get_last_error(), "CertOpenStore(ROOT) failed")
        return int(store)

    def add(self, der: bytes) -> None:
        store = self._open()
        try:
            # No context out-parameter: a context still held would keep the
            # store open, and Wine writes a registry store only on its close.
            if not self.c.CertAddEncodedCertificateToStore(
                store, ENCODING, der, len(der), CERT_STORE_ADD_REPLACE_EXISTING, None
            ):
                raise OSError(ctypes.get_last_error(), "CertAddEncodedCertificateToStore failed")
        finally:
            self.c.CertCloseStore(store, 0)

    def purge_test_roots(self) -> None:
        """Remove sys-roots that an interrupted earlier run left behind."""
        store = self._open()
        try:
            doomed = []
            cert = None
            name = ctypes.create_unicode_buffer(256)
            while True:
                cert = self.c.CertEnumCertificatesInStore(store, cert)
                if not cert:
                    break
                self.c.CertGetNameStringW(cert, CERT_NAME_SIMPLE_DISPLAY_TYPE, 0, None, name, 256)
                if name.value == TEST_ROOT_NAME:
                    doomed.append(self.c.CertDuplicateCertificateContext(cert))
            for cert in doomed:
                self.c.CertDeleteCertificateFromStore(cert)  # frees *cert*
        finally:
            self.c.CertCloseStore(store, 0)

    def remove(self, der: bytes) -> None:
        store = self._open()
        try:
            probe = self.c.CertCreateCertificateContext(ENCODING, der, len(der))
            try:
                while True:
                    found = self.c.CertFindCertificateInStore(
                        store, ENCODING, 0, CERT_FIND_EXISTING, probe, None
                    )
                    if not found:
                        break
                    self.c.CertDeleteCertificateFromStore(found)  # frees *found*
            finally:
                self.c.CertFreeCertificateContext(probe)
        finally:
            self.c.CertCloseStore(store, 0)


@pytest.fixture
def system_root(pki: PKI) -> Iterator[SystemRootStore]:
    """sys-root trusted by the OS store for the duration of the test."""
    store = SystemRootStore()
    der = pki.der("sys-root")
    try:
        store.purge_test_roots()
        store.add(der)
    except OSError as exc:
        pytest.skip(f"cannot add to the ROOT store here: {exc}")
    try:
        yield store
    finally:
        store.remove(der)
