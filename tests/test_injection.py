"""``inject_into_ssl()`` / ``extract_from_ssl()`` with real clients, each in
a fresh interpreter (injection is process-wide), for every import order.

The subprocess sees the "OS store" through SSL_CERT_FILE/SSL_CERT_DIR, like
OpenSSL does; on Linux a stdlib context built with the default paths sees it
too, so each client also reports which context class its TLS socket used:
that, not just a 200, is what shows the injection took effect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from certs import Issuer
from support import TLSServer, make_store, run_python, scrubbed_environ, serve_cert

SRC = str(Path(__file__).resolve().parents[1] / "src")

# One GET per client with the client's *default* TLS settings; each returns
# (body, the class of the SSLContext its connection used).
CLIENT_CODE = {
    "requests": """
        def get(url):
            import requests
            r = requests.get(url, stream=True, timeout=10)
            cls = type(r.raw._fp.fp.raw._sock.context)
            return r.raw.read(), cls
    """,
    "urllib3": """
        def get(url):
            import urllib3
            r = urllib3.PoolManager(retries=False).request("GET", url, preload_content=False, timeout=10)
            cls = type(r._fp.fp.raw._sock.context)
            return r.read(), cls
    """,
    "httpx": """
        def get(url):
            import httpx
            with httpx.Client() as client, client.stream("GET", url, timeout=10) as r:
                sslobj = r.extensions["network_stream"].get_extra_info("ssl_object")
                cls = type(sslobj.context)
                return r.read(), cls
    """,
    "aiohttp": """
        def get(url):
            import asyncio, aiohttp
            seen = []
            async def main():
                # Watch the context aiohttp hands to the event loop.
                loop = asyncio.get_running_loop()
                real = loop.create_connection
                async def create_connection(*args, **kwargs):
                    seen.append(kwargs.get("ssl"))
                    return await real(*args, **kwargs)
                loop.create_connection = create_connection
                async with aiohttp.ClientSession() as s, s.get(url) as r:
                    return await r.read()
            body = asyncio.run(main())
            return body, type(seen[0])
    """,
    "urllib.request": """
        def get(url):
            import urllib.request
            r = urllib.request.urlopen(url, timeout=10)
            cls = type(r.fp.raw._sock.context)
            return r.read(), cls
    """,
    "http.client": """
        def get(url):
            import http.client
            host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
            c = http.client.HTTPSConnection(host, int(port), timeout=10)
            c.request("GET", "/")
            r = c.getresponse()
            cls = type(r.fp.raw._sock.context)
            return r.read(), cls
    """,
}

IMPORTS = {
    "requests": "import requests",
    "urllib3": "import urllib3",
    "httpx": "import httpx",
    "aiohttp": "import aiohttp",
    "urllib.request": "import urllib.request",
    "http.client": "import http.client",
}


def script(body: str, *client_code: str) -> str:
    parts = [
        "import json, ssl, sys",
        f"sys.path.insert(0, {SRC!r})",
        *(textwrap.dedent(code) for code in client_code),
        textwrap.dedent(body),
    ]
    return "\n".join(parts)


@pytest.fixture
def store_env(tmp_path: Path, ca: trustme.CA) -> dict[str, str]:
    return scrubbed_environ(**make_store(tmp_path / "store", ca), PYTHONPATH=SRC)


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[TLSServer]:
    with serve_cert(ca.issue_cert("127.0.0.1", "localhost")) as srv:
        yield srv


def run(code: str, env: dict[str, str]) -> dict[str, object]:
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout
    data: dict[str, object] = json.loads(lines[-1])
    return data


@pytest.mark.parametrize("order", ["inject-first", "client-first"])
@pytest.mark.parametrize("client", CLIENT_CODE)
def test_client_uses_truststore_after_injection(
    client: str, order: str, store_env: dict[str, str], server: TLSServer
) -> None:
    inject = "import truststore\ntruststore.inject_into_ssl()\n"
    first, second = (
        (inject, IMPORTS[client]) if order == "inject-first" else (IMPORTS[client], inject)
    )
    body = f"""
{first}
{second}
body, cls = get({server.url!r})
print(json.dumps({{"body": body.decode(), "cls": cls.__module__ + "." + cls.__qualname__,
                  "ssl": ssl.SSLContext.__module__}}))
"""
    data = run(script(body, CLIENT_CODE[client]), store_env)
    assert data["body"] == "hello from the loopback server\n"
    assert data["cls"] == "truststore._api.InjectedSSLContext"
    assert data["ssl"] == "truststore._api"


@pytest.mark.parametrize("order", ["inject-first", "client-first"])
def test_extract_restores_everything(
    order: str, store_env: dict[str, str], server: TLSServer
) -> None:
    imports = "import requests, requests.adapters, urllib3.util.ssl_, aiohttp.connector"
    inject = "truststore.inject_into_ssl()"
    first, second = (inject, imports) if order == "inject-first" else (imports, inject)
    body = f"""
import ssl
import truststore
std = ssl.SSLContext
{first}
{second}
import urllib3.util.ssl_ as us, aiohttp.connector as ac
injected = {{
    "ssl": ssl.SSLContext is truststore._api.InjectedSSLContext,
    "urllib3": us.SSLContext is truststore._api.InjectedSSLContext,
    "aiohttp": isinstance(ac._SSL_CONTEXT_VERIFIED, truststore.SSLContext),
}}
# Through requests with its defaults (certifi): trusted via the OS store now.
body, cls = get({server.url!r})
truststore.extract_from_ssl()
truststore.extract_from_ssl()  # idempotent
extracted = {{
    "ssl": ssl.SSLContext is std,
    "urllib3": us.SSLContext is std,
    "aiohttp": type(ac._SSL_CONTEXT_VERIFIED) is std,
    "new-context": type(ssl.create_default_context()) is std,
}}
try:
    get({server.url!r})
    after = "trusted"
except requests.exceptions.SSLError as exc:
    after = "rejected"
print(json.dumps({{"injected": injected, "extracted": extracted, "cls": cls.__module__,
                  "after": after}}))
"""
    data = run(script(body, CLIENT_CODE["requests"]), store_env)
    assert data["injected"] == {"ssl": True, "urllib3": True, "aiohttp": True}
    assert data["cls"] == "truststore._api"
    assert data["extracted"] == {"ssl": True, "urllib3": True, "aiohttp": True, "new-context": True}
    # requests is back on certifi alone, which does not hold the test CA.
    assert data["after"] == "rejected"


# The environment as the test run started (the autouse fixture scrubs the
# registry settings later); pip needs it to reach the package index.
_STARTUP_ENVIRON = dict(os.environ)
REQUESTS_THAT_PRELOADS = "requests==2.32.3"
PIP_THAT_PRELOADS = "pip==24.2"


def _preloads(requests_name: str, pythonpath: str) -> bool:
    result = run_python(
        f"import {requests_name}.adapters as a; print(hasattr(a, '_preloaded_ssl_context'))",
        env=scrubbed_environ(PYTHONPATH=pythonpath),
    )
    return result.stdout.strip() == "True"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        env=_STARTUP_ENVIRON,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module", params=["requests", "pip._vendor.requests"])
def preloading_requests(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """A requests that builds its context at import, as (module name,
    PYTHONPATH that provides it).  Current releases do not, so these come
    from the registry: requests 2.32.3 (with urllib3 2 from this venv) and
    pip 24.2, whose vendored requests 2.32.3 sits on urllib3 1.26 (imported
    straight from the wheel)."""
    name: str = request.param
    target = tmp_path_factory.mktemp("preloading")
    if name == "requests":
        fetched = _pip(
            "install", "-q", "--no-deps", "--target", str(target), REQUESTS_THAT_PRELOADS
        )
        provider = str(target)
    else:
        fetched = _pip(
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(target),
            PIP_THAT_PRELOADS,
        )
        provider = str(next(target.glob("pip-*.whl"), target))
    if fetched.returncode != 0:
        pytest.skip(f"the package index is unreachable: {fetched.stderr[-300:]}")
    pythonpath = os.pathsep.join([provider, SRC])
    assert _preloads(name, pythonpath), f"{name} from {provider} does not preload a context"
    return name, pythonpath


@pytest.mark.parametrize("order", ["inject-first", "client-first"])
def test_preloaded_requests_context_is_swapped_and_restored(
    order: str, preloading_requests: tuple[str, str], store_env: dict[str, str], server: TLSServer
) -> None:
    requests_name, pythonpath = preloading_requests
    imports = f"import {requests_name}.adapters as ra\noriginal = ra._preloaded_ssl_context"
    inject = "truststore.inject_into_ssl()"
    first, second = (inject, imports) if order == "inject-first" else (imports, inject)
    body = f"""
import ssl, truststore
std = ssl.SSLContext
{first}
{second}
was_ours_at_import = isinstance(original, truststore.SSLContext)
truststore.inject_into_ssl()  # patches what was imported since, if anything
import {requests_name} as requests
def attempt():
    try:
        requests.get({server.url!r}, timeout=10).content
        return "trusted"
    except requests.exceptions.SSLError:
        return "rejected"
injected = (type(ra._preloaded_ssl_context).__module__, attempt())
truststore.extract_from_ssl()
extracted = (type(ra._preloaded_ssl_context) is std, attempt(),
             ra._preloaded_ssl_context is original)
print(json.dumps({{"injected": injected, "extracted": extracted,
                  "was_ours_at_import": was_ours_at_import}}))
"""
    data = run(script(body), dict(store_env, PYTHONPATH=pythonpath))
    assert data["injected"] == ["truststore._api", "trusted"]
    # Imported after injection, requests built one of ours (certifi + OS);
    # extraction builds requests' own again rather than keep that.
    assert data["was_ours_at_import"] is (order == "inject-first")
    is_std, after, same_object = data["extracted"]  # type: ignore[misc]
    assert is_std and after == "rejected"  # certifi alone again
    # Imported before injection: the very object requests built comes back.
    assert same_object is (order == "client-first")


def test_preloaded_requests_context_keeps_urllib3_settings(
    preloading_requests: tuple[str, str], store_env: dict[str, str], ca: trustme.CA, tmp_path: Path
) -> None:
    """The swapped-in context must be configured as urllib3 configures its
    own: no host-name match on the subject CN (a certificate without SAN is
    refused), SSLKEYLOGFILE honoured.  A bare context would weaken checks."""
    requests_name, pythonpath = preloading_requests
    cn_only = Issuer.from_trustme(ca).issue(common_name="localhost")  # no SAN at all
    good = ca.issue_cert("localhost")
    log = tmp_path / "keys.log"
    bundle = store_env["SSL_CERT_FILE"]
    with (
        TLSServer(cn_only.chain_pem(), cn_only.key_pem) as cn_server,
        serve_cert(good) as good_server,
    ):
        body = f"""
import truststore
import {requests_name} as requests, {requests_name}.adapters as ra
def attempts(**kwargs):
    results = {{}}
    for name, port in (("cn-only", {cn_server.port}), ("san", {good_server.port})):
        try:
            requests.get(f"https://localhost:{{port}}/", timeout=10, **kwargs)
            results[name] = "trusted"
        except requests.exceptions.SSLError as exc:
            results[name] = "rejected"
    return results
import os
def logged():
    return os.path.getsize({str(log)!r}) if os.path.exists({str(log)!r}) else 0
# requests' own checks, with the test CA given explicitly:
own = attempts(verify={bundle!r})
truststore.inject_into_ssl()
assert isinstance(ra._preloaded_ssl_context, truststore.SSLContext)
before = logged()
injected = attempts()
print(json.dumps({{"own": own, "injected": injected, "keys-logged": logged() > before}}))
"""
        data = run(script(body), dict(store_env, PYTHONPATH=pythonpath, SSLKEYLOGFILE=str(log)))
    assert data["injected"] == data["own"]
    assert data["injected"]["san"] == "trusted"  # type: ignore[index]
    assert data["keys-logged"] is True  # by the injected connections themselves
    assert b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" in log.read_bytes()


def test_requests_is_rejected_before_injection(
    store_env: dict[str, str], server: TLSServer
) -> None:
    """The control: requests' default (certifi) does not trust the OS store."""
    body = f"""
import requests
try:
    get({server.url!r})
    print(json.dumps({{"result": "trusted"}}))
except requests.exceptions.SSLError:
    print(json.dumps({{"result": "rejected"}}))
"""
    assert run(script(body, CLIENT_CODE["requests"]), store_env) == {"result": "rejected"}


def test_contexts_created_before_injection_keep_working(
    store_env: dict[str, str], server: TLSServer
) -> None:
    """ssl.py's property setters look up the global name ``SSLContext`` at
    call time; after injection that is our class.  Setting properties on
    contexts of every origin, before and after injection and extraction,
    must neither recurse nor lose the value."""
    body = f"""
import socket, ssl
import urllib3.util.ssl_
class Custom(ssl.SSLContext):
    pass
made_before = {{
    "plain": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
    "default": ssl.create_default_context(),
    "urllib3": urllib3.util.ssl_.create_urllib3_context(),
    "custom": Custom(ssl.PROTOCOL_TLS_CLIENT),
}}
import truststore
truststore.inject_into_ssl()
truststore.inject_into_ssl()  # idempotent
class CustomAfter(ssl.SSLContext):
    pass
made_after = {{
    "plain": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
    "default": ssl.create_default_context(),
    "urllib3": urllib3.util.ssl_.create_urllib3_context(),
    "custom": CustomAfter(ssl.PROTOCOL_TLS_CLIENT),
    "ours": truststore.SSLContext(),
}}

def exercise(ctx):
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.verify_flags |= ssl.VERIFY_X509_TRUSTED_FIRST
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname

def handshake(ctx):
    if ctx.cert_store_stats()["x509_ca"] == 0 and not isinstance(ctx, truststore.SSLContext):
        ctx.load_default_certs()
    with socket.create_connection(("127.0.0.1", {server.port})) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version()

report = {{}}
for phase in ("injected", "extracted"):
    for origin, group in (("before", made_before), ("after", made_after)):
        for name, ctx in group.items():
            exercise(ctx)
            report[f"{{phase}}/{{origin}}/{{name}}"] = (type(ctx).__name__, handshake(ctx) is not None)
    truststore.extract_from_ssl()
print(json.dumps(report))
"""
    report = run(script(body), store_env)
    assert len(report) == 18
    assert all(ok for _, ok in report.values()), report  # type: ignore[misc]
    assert report["injected/after/plain"][0] == "InjectedSSLContext"  # type: ignore[index]


def test_requests_honours_sslkeylogfile_after_injection(
    store_env: dict[str, str], server: TLSServer, tmp_path: Path
) -> None:
    log = tmp_path / "keys.log"
    body = f"""
import requests, truststore
truststore.inject_into_ssl()
body, cls = get({server.url!r})
print(json.dumps({{"cls": cls.__module__}}))
"""
    env = dict(store_env, SSLKEYLOGFILE=str(log))
    assert run(script(body, CLIENT_CODE["requests"]), env) == {"cls": "truststore._api"}
    assert b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" in log.read_bytes()


def test_the_api_knows_every_module_the_patch_table_patches() -> None:
    """``_api.inject_into_ssl`` skips loading _inject while none of these
    modules is imported (then injecting is one assignment): its list must
    be the patch table's, or a module added to the table would go unpatched."""
    from truststore import _api, _inject

    assert set(_api._PATCHED_MODULES) == set(_inject.PATCH_TABLE)


def test_injecting_with_an_http_module_loaded_patches_it_without_importing_inject_first() -> None:
    """The short path applies only while no patched module is imported: with
    urllib3 loaded first, inject_into_ssl() loads _inject and patches it."""
    body = """
import sys, ssl, urllib3.util.ssl_ as u
import truststore
before = "truststore._inject" in sys.modules
truststore.inject_into_ssl()
print(json.dumps({"before": before, "after": "truststore._inject" in sys.modules,
                  "patched": u.SSLContext is truststore._api.InjectedSSLContext}))
"""
    report = run(script(body), scrubbed_environ(PYTHONPATH=SRC))
    assert report == {"before": False, "after": True, "patched": True}
