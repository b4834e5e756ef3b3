"""Shared test machinery: real TLS servers on 127.0.0.1 and an "OS store".

Every server binds the loopback interface only and stops when its ``with``
block ends.  Certificates come from trustme (or cryptography, for odd ones)
and are made relative to now.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import trustme

# Variables this machine (and many CI images) set, which would make a test
# pass or fail for reasons other than the code under test.
SCRUBBED_VARIABLES = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "TRUSTSTORE_INJECT",
    "HTTPLIB2_CA_CERTS",
    "AWS_CA_BUNDLE",
    "NIX_SSL_CERT_FILE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)

HTTP_BODY = b"hello from the loopback server\n"
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(HTTP_BODY)).encode() + b"\r\n\r\n" + HTTP_BODY
)


def scrubbed_environ(**extra: str) -> dict[str, str]:
    """os.environ without the CA-bundle/proxy variables, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_VARIABLES}
    env.update(extra)
    return env


class TLSServer:
    """A threaded TLS server on 127.0.0.1 answering every request with 200.

    ``chain_pem``/``key_pem`` are what it presents; ``handshake_delay``
    stalls each handshake (for concurrency tests).  It serves until closed.
    """

    def __init__(
        self,
        chain_pem: bytes,
        key_pem: bytes,
        *,
        host: str = "127.0.0.1",
        handshake_delay: float = 0.0,
        max_version: ssl.TLSVersion | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            _load_chain(context, chain_pem, key_pem)
        if max_version is not None:
            context.maximum_version = max_version
        self.context = context
        self.handshake_delay = handshake_delay
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self.handshakes = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.handshake_delay:
                time.sleep(self.handshake_delay)
            with self.context.wrap_socket(conn, server_side=True) as tls:
                with self._lock:
                    self.handshakes += 1
                data = b""
                deadline = time.monotonic() + 10
                while b"\r\n\r\n" not in data and time.monotonic() < deadline:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    tls.sendall(HTTP_RESPONSE)
                with contextlib.suppress(OSError):
                    tls.unwrap()
        except (OSError, ValueError) as exc:
            with self._lock:
                self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TLSServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load_chain(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        chain = Path(tmp, "chain.pem")
        key = Path(tmp, "key.pem")
        chain.write_bytes(chain_pem)
        key.write_bytes(key_pem)
        context.load_cert_chain(chain, key)


def serve_cert(cert: trustme.LeafCert, **kwargs: object) -> TLSServer:
    """A TLSServer presenting a trustme leaf with its intermediates."""
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return TLSServer(chain, cert.private_key_pem.bytes(), **kwargs)  # type: ignore[arg-type]


def make_store(directory: Path, *cas: trustme.CA, hashed: bool = False) -> dict[str, str]:
    """An "OS store" holding *cas*: a bundle file and a directory.

    Returns the environment variables that point OpenSSL's defaults at it
    (``SSL_CERT_FILE``/``SSL_CERT_DIR``), which is what the system store is
    from OpenSSL's point of view.  With ``hashed`` the directory gets
    ``openssl rehash``-style names so lazy look-ups find the CAs.
    """
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "bundle.pem"
    bundle.write_bytes(b"".join(ca.cert_pem.bytes() for ca in cas))
    certs = directory / "certs"
    certs.mkdir(exist_ok=True)
    if hashed:
        for index, ca in enumerate(cas):
            path = certs / f"ca{index}.pem"
            ca.cert_pem.write_to_path(str(path))
        subprocess.run(["openssl", "rehash", str(certs)], check=True, capture_output=True)
    return {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(certs)}


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Temporarily set environment variables in this process."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_python(
    code: str, env: dict[str, str] | None = None, python: str = sys.executable, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter with a scrubbed environment."""
    return subprocess.run(
        [python, "-c", code],
        env=scrubbed_environ() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Runs python as user 65534 from a copy of the interpreter that, with "caps"
# as $1, carries a file capability (which sets AT_SECURE at exec).  /root is
# swapped for a tmpfs holding only a bind mount of ~/.pyenv, so that the
# unprivileged user can reach the interpreter; all of it in a private mount
# namespace, nothing on disk changes.
FILE_CAPABILITY_SCRIPT = r"""
set -eu
caps=$1; py=$2; shift 2
stage=$(mktemp -d)
mount -t tmpfs -o mode=0755 tmpfs "$stage"
mkdir -p "$stage/pyenv" "$stage/py/bin"
if [ -d /root/.pyenv ]; then
    mount --bind /root/.pyenv "$stage/pyenv"
    mount -t tmpfs -o mode=0755 tmpfs /root
    mkdir /root/.pyenv
    mount --bind "$stage/pyenv" /root/.pyenv
fi
cp "$py" "$stage/py/bin/python"
ln -s "$(dirname "$(dirname "$py")")/lib" "$stage/py/lib"
if [ "$caps" = caps ]; then setcap cap_net_bind_service+ep "$stage/py/bin/python"; fi
exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$stage/py/bin/python" "$@"
"""


def privilege_tools() -> str | None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux"
    missing = [t for t in ("setpriv", "unshare", "setcap") if not shutil.which(t)]
    if missing:
        return "not installed: " + ", ".join(missing)
    probe = subprocess.run(["setpriv", "--ruid=65534", "--", "true"], capture_output=True)
    if probe.returncode:
        return "setpriv cannot change ids here"
    return None
