"""Pytest plugin: the ASGI "tls" scope extension for urllib3's dummy server.

urllib3's test app (``dummyserver/app.py``) answers ``/certificate`` and
``/alpn_protocol`` from ``request.scope["extensions"]["tls"]``
(``client_cert_name``, ``alpn_protocol``).  urllib3 runs its suite against
its own fork of Hypercorn, which fills that in; the fork is installed from
git, not from PyPI, and released Hypercorn leaves the extension out, so
those tests answer 500 with injection off and on alike and compare nothing.

Load with ``-p asgi_tls`` to give released Hypercorn (trio worker) the
extension: after the server's handshake the connection's peer address is
mapped to what the server's own ``ssl`` object reports (``getpeercert()``
subject, ``selected_alpn_protocol()``, ``version()``), and each ASGI call on
that connection gets it in its scope.  Only the server side is touched; the
client (urllib3, the code under test) is not.  ``client_cert_name`` joins
the subject's attributes as ``name=value`` with ", ", the names as
``getpeercert()`` gives them, which is what the app splits apart.
"""

from __future__ import annotations

from typing import Any

import hypercorn.app_wrappers
import hypercorn.trio.tcp_server
import hypercorn.utils
import trio

# Peer address (as hypercorn puts it in scope["client"]) -> "tls" extension.
_connections: dict[Any, dict[str, Any]] = {}


def describe(stream: trio.SSLStream[Any]) -> dict[str, Any]:
    """The ASGI "tls" extension for a connection that finished its handshake."""
    cert = stream.getpeercert()
    name = None
    if cert:
        name = ", ".join(f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn)
    return {
        "client_cert_name": name,
        "alpn_protocol": stream.selected_alpn_protocol(),
        "tls_version": stream.version(),
    }


def _peer(stream: trio.SSLStream[Any]) -> Any:
    sock = stream.transport_stream.socket
    return hypercorn.utils.parse_socket_addr(sock.family, sock.getpeername())


def install() -> None:
    tcp_server = hypercorn.trio.tcp_server.TCPServer
    wrapper = hypercorn.app_wrappers.ASGIWrapper
    if getattr(tcp_server.run, "_asgi_tls", False):
        return
    original_run = tcp_server.run
    original_call = wrapper.__call__

    async def run(self: Any) -> None:
        stream = self.stream
        key = None
        if isinstance(stream, trio.SSLStream):
            # trio's do_handshake() is a no-op once done, so the original
            # run() below proceeds as before; on failure it fails the same way.
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await stream.do_handshake()
                key = _peer(stream)
                _connections[key] = describe(stream)
            except (trio.BrokenResourceError, trio.TooSlowError, OSError):
                key = None
        try:
            await original_run(self)
        finally:
            if key is not None:
                _connections.pop(key, None)

    async def call(self: Any, scope: Any, *args: Any) -> None:
        info = _connections.get(scope.get("client"))
        if info is not None:
            scope.setdefault("extensions", {})["tls"] = dict(info)
        await original_call(self, scope, *args)

    run._asgi_tls = True  # type: ignore[attr-defined]
    tcp_server.run = run  # type: ignore[method-assign]
    wrapper.__call__ = call  # type: ignore[method-assign]


def pytest_configure() -> None:
    install()
