"""Loopback TLS servers the benchmark clients connect to.

They run as threads of the orchestrating process (which otherwise only waits
for the measuring subprocesses), bind 127.0.0.1 only, and serve one thread per
connection so that stalled handshakes overlap.  Every connection gets a tiny
HTTP/1.1 answer if it sends a request, and is closed otherwise.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

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
