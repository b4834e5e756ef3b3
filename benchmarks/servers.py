"""Loopback TLS servers the benchmark clients connect to.

They run as threads of the orchestrating process (which otherwise only waits
for the measuring subprocesses), bind 127.0.0.1 only, and serve one thread per
connection so that stalled handshakes overlap.  Every connection gets a tiny
HTTP/1.1 answer if it sends a request, and is closed otherwise.

The pip row gets a static package index of its own (``LoopbackHTTPSIndex``),
served the same way.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import socket
import ssl
import threading
import time
import zipfile
from pathlib import Path

BODY = b"ok\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)
_IO_TIMEOUT = 10.0


class LoopbackTLSServer:
    """TLS on 127.0.0.1:<ephemeral>; ``stall`` delays each handshake."""

    def __init__(self, context: ssl.SSLContext, *, stall: float = 0.0) -> None:
        self.context = context
        self.stall = stall
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.handshakes = 0
        self.failed_handshakes = 0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._stopping.is_set():
                conn.close()
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(_IO_TIMEOUT)
        try:
            if self.stall:
                time.sleep(self.stall)
            try:
                tls = self.context.wrap_socket(conn, server_side=True)
            except (OSError, ValueError):
                # Clients that reject our certificate (the preflight's
                # untrusted server) end up here; so do clients that hang up.
                with self._lock:
                    self.failed_handshakes += 1
                return
            with self._lock:
                self.handshakes += 1
            with tls:
                request = b""
                deadline = time.monotonic() + _IO_TIMEOUT
                while b"\r\n\r\n" not in request and time.monotonic() < deadline:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                if b"\r\n\r\n" in request:
                    tls.sendall(RESPONSE)
        except (OSError, ValueError):
            pass  # a raw-handshake client closed without a request
        finally:
            conn.close()

    def close(self) -> None:
        self._stopping.set()
        # Wake the blocking accept() with one last connection.
        with contextlib.suppress(OSError), socket.create_connection(self.address, timeout=1):
            pass
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackTLSServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a package index for the pip row --------------------------------------------


class _IndexHandler(http.server.SimpleHTTPRequestHandler):
    # HTTP/1.1 with Content-Length: pip keeps its connection alive, as
    # against PyPI or any real index.
    protocol_version = "HTTP/1.1"
    timeout = _IO_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietHTTPServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients refusing the untrusted index's certificate end up here


class LoopbackHTTPSIndex:
    """A static PEP 503 "simple" index over TLS on 127.0.0.1:<ephemeral>."""

    def __init__(self, context: ssl.SSLContext, root: Path) -> None:
        handler = functools.partial(_IndexHandler, directory=str(root))
        self._httpd = _QuietHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # The handshake happens on the connection's first read, in its own
        # handler thread, not in the accepting thread.
        self._httpd.socket = context.wrap_socket(
            self._httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/simple/"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


INDEX_PACKAGES = ("bench-pkg-a", "bench-pkg-b", "bench-pkg-c")


def write_simple_index(root: Path, packages: tuple[str, ...] = INDEX_PACKAGES) -> list[str]:
    """Write a small wheel per package (about 20 kB, pure Python) and a
    PEP 503 index of them under *root*; return the requirement names."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in packages:
        module = name.replace("-", "_")
        wheel_name = f"{module}-1.0-py3-none-any.whl"
        wheel = files / wheel_name
        _write_wheel(wheel, name, module)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        page = root / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        (page / "index.html").write_text(
            "<!DOCTYPE html>\n<html><body>\n"
            f'<a href="../../files/{wheel_name}#sha256={digest}">{wheel_name}</a>\n'
            "</body></html>\n"
        )
        entries.append(f'<a href="{name}/">{name}</a>')
    (root / "simple" / "index.html").write_text(
        "<!DOCTYPE html>\n<html><body>\n" + "\n".join(entries) + "\n</body></html>\n"
    )
    return list(packages)


def _write_wheel(path: Path, name: str, module: str) -> None:
    dist_info = f"{module}-1.0.dist-info"
    # Varied text, so the wheel is not one compressed run.
    payload = "".join(f"VALUE_{i} = {i * 7919 % 104729}\n" for i in range(1200))
    members = {
        f"{module}/__init__.py": f'"""{name}: a benchmark package."""\n{payload}'.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nSummary: benchmark\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: truststore-auto-benchmarks\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record_lines = []
    for member, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{member},sha256={digest},{len(data)}")
    record_lines.append(f"{dist_info}/RECORD,,")
    members[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
