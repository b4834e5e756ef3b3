"""Real HTTP clients handed an explicit ``truststore.SSLContext``.

The server's CA is only in the "OS store": each client succeeds with our
context, and fails with a plain ``ssl.SSLContext`` or with certifi, which
shows that the OS store is what made the difference.  Each client also
reports our verification error when the server is not trusted.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import aiohttp
import certifi
import httpx
import pytest
import requests
import requests.adapters
import trustme
import urllib3

import truststore
from support import HTTP_BODY, TLSServer, serve_cert

Get = Callable[[str, ssl.SSLContext], bytes]


class ContextAdapter(requests.adapters.HTTPAdapter):
    """requests takes a context only through its urllib3 pool manager."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]


def get_requests(url: str, ctx: ssl.SSLContext) -> bytes:
    with requests.Session() as session:
        session.mount("https://", ContextAdapter(ctx))
        return session.get(url, timeout=10).content


def get_urllib3(url: str, ctx: ssl.SSLContext) -> bytes:
    with urllib3.PoolManager(ssl_context=ctx, retries=False) as pool:
        return pool.request("GET", url, timeout=10).data


def get_httpx(url: str, ctx: ssl.SSLContext) -> bytes:
    with httpx.Client(verify=ctx) as client:
        return client.get(url, timeout=10).content


def get_aiohttp(url: str, ctx: ssl.SSLContext) -> bytes:
    async def main() -> bytes:
        async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx) as response:
            return await response.read()

    return asyncio.run(main())


def get_urllib(url: str, ctx: ssl.SSLContext) -> bytes:
    with urllib.request.urlopen(url, context=ctx, timeout=10) as response:
        body: bytes = response.read()
        return body


def get_http_client(url: str, ctx: ssl.SSLContext) -> bytes:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    finally:
        conn.close()


CLIENTS: dict[str, Get] = {
    "requests": get_requests,
    "urllib3": get_urllib3,
    "httpx": get_httpx,
    "aiohttp": get_aiohttp,
    "urllib.request": get_urllib,
    "http.client": get_http_client,
}


def verification_errors(exc: BaseException) -> list[ssl.SSLCertVerificationError]:
    """Every SSLCertVerificationError raised by the TLS layer, found in an
    exception's cause/context/args web (clients wrap it in their own types;
    aiohttp's wrapper is itself a CertificateError, without a verify_code)."""
    found: list[ssl.SSLCertVerificationError] = []
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError) and hasattr(item, "verify_code"):
            found.append(item)
        todo.extend([item.__cause__, item.__context__, *item.args])
        todo.extend(
            getattr(item, name, None) for name in ("reason", "os_error", "certificate_error")
        )
    return found


@pytest.fixture
def trusted_server(os_store: trustme.CA) -> Iterator[TLSServer]:
    with serve_cert(os_store.issue_cert("127.0.0.1", "localhost")) as server:
        yield server


@pytest.mark.parametrize("client", CLIENTS)
def test_client_succeeds_with_truststore(client: str, trusted_server: TLSServer) -> None:
    ctx = truststore.SSLContext()
    assert CLIENTS[client](trusted_server.url, ctx) == HTTP_BODY


def _certifi_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


@pytest.mark.parametrize(
    "make_context",
    [lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), _certifi_context],
    ids=["plain", "certifi"],
)
@pytest.mark.parametrize("client", CLIENTS)
def test_client_fails_without_the_os_store(
    client: str, make_context: Callable[[], ssl.SSLContext], trusted_server: TLSServer
) -> None:
    with pytest.raises(Exception) as info:
        CLIENTS[client](trusted_server.url, make_context())
    assert verification_errors(info.value), repr(info.value)


@pytest.mark.parametrize("client", CLIENTS)
def test_client_reports_our_verification_error(client: str, os_store: trustme.CA) -> None:
    ctx = truststore.SSLContext()
    stranger = trustme.CA()
    with serve_cert(stranger.issue_cert("127.0.0.1")) as server, pytest.raises(Exception) as info:
        CLIENTS[client](server.url, ctx)
    errors = verification_errors(info.value)
    assert errors, repr(info.value)
    assert errors[0].verify_code == 20  # unable to get local issuer certificate
    assert "'127.0.0.1'" in str(errors[0])


def test_one_context_shared_by_all_clients(trusted_server: TLSServer) -> None:
    ctx = truststore.SSLContext()
    for get in CLIENTS.values():
        assert get(trusted_server.url, ctx) == HTTP_BODY
    assert ctx.session_stats()["connect_good"] == len(CLIENTS)
