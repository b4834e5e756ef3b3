"""Installed-product fixtures for the auto-injection tests (``test_autoinject_*``).

The product under test is the *wheel*, installed into virtualenvs the way a
user installs it, and exercised by real programs run as subprocesses:

* ``wheel`` (session): ``TRUSTSTORE_TEST_WHEEL`` (nox builds it once per
  run), else built once from this checkout with ``pip wheel``.
* ``client_venv`` (session): a virtualenv for the running interpreter's
  version with the wheel plus requests, httpx, urllib3 and aiohttp.  Tests
  must leave it as they found it; ``installed`` hands it out with its config
  file removed before and after each test.
* ``fresh_venv`` (function): a factory for small venvs holding only the
  wheel, for tests that break, uninstall or reinstall.

Installing uses this machine's package-index settings (captured when pytest
imports this module, before the autouse scrubber runs); the product itself
always runs with ``product_environ()``: no CA-bundle, proxy, ``PIP_*`` or
``PYTHON*`` variables unless a test sets them.

Also here: ``StaticHTTPSServer`` (a PEP 503 "simple" index over TLS on
127.0.0.1, for ``pip download``), ``write_tiny_index`` and
``CLIENT_PROGRAM``, which fetches one URL with every HTTP client and reports
per client.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from support import scrubbed_environ

REPO = Path(__file__).resolve().parent.parent
CONFIG_NAME = "truststore-auto.conf"
CLIENT_PACKAGES = ("requests", "httpx", "urllib3", "aiohttp")
WHEEL_VARIABLE = "TRUSTSTORE_TEST_WHEEL"

# The machine's environment as pytest started: pip needs its index/mirror
# settings (and CA variables) to *install* things.  Never used to run the
# product.
_INSTALL_ENVIRON = {k: v for k, v in os.environ.items() if k != "TRUSTSTORE_INJECT"}


def install_environ() -> dict[str, str]:
    """Environment for pip/virtualenv when they install (not under test)."""
    return dict(_INSTALL_ENVIRON)


def product_environ(**extra: str) -> dict[str, str]:
    """Environment for the product under test: scrubbed, plus *extra*."""
    env = {
        k: v
        for k, v in scrubbed_environ().items()
        if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


def pip_under_test_environ(**extra: str) -> dict[str, str]:
    """For running pip *as a client under test*: no pip config files either
    (this machine's /etc/pip.conf names a CA bundle and local indexes)."""
    return product_environ(PIP_CONFIG_FILE=os.devnull, **extra)


class Venv:
    """A virtualenv; ``run`` executes the product's Python in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bin = path / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / "python"
        out = subprocess.run(
            [
                str(self.python),
                "-c",
                "import sys, sysconfig; print(sys.prefix); print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=product_environ(),
        ).stdout.splitlines()
        self.prefix = Path(out[0])
        self.site_packages = Path(out[1])
        self.config = self.prefix / CONFIG_NAME

    def run(
        self,
        *args: str,
        code: str | None = None,
        script_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``python [args] [-c code [script_args]]`` in this venv, scrubbed."""
        argv = [str(self.python), *args]
        if code is not None:
            argv += ["-c", code, *script_args]
        return subprocess.run(
            argv,
            env=product_environ() if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )

    def pip_install(self, *args: str) -> None:
        """Install with this machine's index settings (setup, not a test)."""
        result = subprocess.run(
            [str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
            env=install_environ(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode:
            raise RuntimeError(f"pip install {' '.join(args)} failed:\n{result.stderr}")

    def remove_config(self) -> None:
        if self.config.is_dir() and not self.config.is_symlink():
            shutil.rmtree(self.config)
        elif os.path.lexists(self.config):
            self.config.unlink()


def make_venv(path: Path) -> Venv:
    """A fresh virtualenv for the interpreter running the tests."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "virtualenv",
            "-q",
            "--no-periodic-update",
            "--no-setuptools",
            "-p",
            sys.executable,
            str(path),
        ],
        check=True,
        capture_output=True,
        env=install_environ(),
        timeout=300,
    )
    return Venv(path)


def build_wheel(directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(directory), str(REPO)],
        check=True,
        capture_output=True,
        env=install_environ(),
        timeout=600,
    )
    (found,) = directory.glob("truststore_auto-*.whl")
    return found


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get(WHEEL_VARIABLE) or _INSTALL_ENVIRON.get(WHEEL_VARIABLE)
    if given:
        return Path(given)
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Venv:
    venv = make_venv(tmp_path_factory.mktemp("autoinject") / "clients")
    # One pip process: the product is not active while it installs.
    venv.pip_install(str(wheel), *CLIENT_PACKAGES)
    assert (venv.site_packages / "truststore_autoinject.pth").is_file()
    return venv


@pytest.fixture
def installed(client_venv: Venv) -> Iterator[Venv]:
    """The shared client venv with no config file, before and after the test."""
    client_venv.remove_config()
    yield client_venv
    client_venv.remove_config()


@pytest.fixture
def fresh_venv(tmp_path: Path, wheel: Path) -> Callable[[], Venv]:
    """Factory: a new small venv with only the wheel installed."""
    count = 0

    def make() -> Venv:
        nonlocal count
        count += 1
        venv = make_venv(tmp_path / f"venv{count}")
        venv.pip_install("--no-deps", "--no-index", str(wheel))
        return venv

    return make


@pytest.fixture
def store_ca(tmp_path: Path) -> tuple[trustme.CA, dict[str, str]]:
    """A CA and the SSL_CERT_FILE/SSL_CERT_DIR of an "OS store" holding only it."""
    from support import make_store

    ca = trustme.CA()
    return ca, make_store(tmp_path / "os-store", ca, hashed=True)


# -- the programs under test ---------------------------------------------------

# Fetches sys.argv[1] with each client named in sys.argv[2:] and prints one
# JSON object: client -> "ok" | "cert: <message>" | "error: <type>: <message>".
# "cert" means a certificate verification failure anywhere in the exception
# chain, so a failure for another reason can never pass for a rejection.
CLIENT_PROGRAM = r"""
import asyncio, json, ssl, sys, urllib.parse

URL, CLIENTS = sys.argv[1], sys.argv[2:]
parts = urllib.parse.urlsplit(URL)
EXPECTED = b"hello from the loopback server"

def fetch_requests():
    import requests
    return requests.get(URL, timeout=20).content

def fetch_httpx():
    import httpx
    return httpx.get(URL, timeout=20).content

def fetch_urllib3():
    import urllib3
    return urllib3.PoolManager().request("GET", URL, timeout=20, retries=False).data

def fetch_aiohttp():
    import aiohttp
    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.get(URL, timeout=aiohttp.ClientTimeout(total=20)) as response:
                return await response.read()
    return asyncio.run(main())

def fetch_urllib_request():
    import urllib.request
    with urllib.request.urlopen(URL, timeout=20) as response:
        return response.read()

def fetch_http_client():
    import http.client
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=20)
    try:
        conn.request("GET", parts.path or "/")
        return conn.getresponse().read()
    finally:
        conn.close()

def is_cert_failure(exc):
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e):
            return True
        todo += [e.__cause__, e.__context__]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        todo += [getattr(e, "reason", None), getattr(e, "os_error", None)]
    return False

result = {}
for name in CLIENTS:
    try:
        body = globals()["fetch_" + name.replace(".", "_")]()
        result[name] = "ok" if EXPECTED in body else "error: wrong body %r" % (body[:80],)
    except Exception as exc:
        kind = "cert" if is_cert_failure(exc) else "error"
        result[name] = "%s: %s: %s" % (kind, type(exc).__name__, str(exc)[:300])
result["_ssl_context_class"] = ssl.SSLContext.__module__ + "." + ssl.SSLContext.__qualname__
print(json.dumps(result))
"""

ALL_CLIENTS = ("requests", "httpx", "urllib3", "aiohttp", "urllib.request", "http.client")


def run_clients(
    venv: Venv, url: str, env: dict[str, str], clients: tuple[str, ...] = ALL_CLIENTS
) -> dict[str, str]:
    """Run CLIENT_PROGRAM in *venv*; client -> its outcome string."""
    return parse_client_output(
        venv.run(code=CLIENT_PROGRAM, script_args=(url, *clients), env=env, timeout=180)
    )


def client_argv(venv: Venv, url: str, clients: tuple[str, ...] = ALL_CLIENTS) -> list[str]:
    return [str(venv.python), "-c", CLIENT_PROGRAM, url, *clients]


def parse_client_output(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, (result.returncode, result.stdout, result.stderr)
    outcome: dict[str, str] = json.loads(lines[-1])
    return outcome


def verdicts(outcome: dict[str, str]) -> dict[str, str]:
    """client -> "ok" / "cert" / "error" (the details stay in *outcome*)."""
    return {k: v.split(":", 1)[0] for k, v in outcome.items() if not k.startswith("_")}


# -- a tiny package index over HTTPS ------------------------------------------

TINY_PROJECT = "tinypkg-truststore-test"
TINY_VERSION = "1.0"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def write_tiny_index(root: Path) -> str:
    """A PEP 503 index under *root*: /simple/<project>/ -> one small wheel.

    Returns the wheel's file name.
    """
    module = TINY_PROJECT.replace("-", "_")
    dist_info = f"{module}-{TINY_VERSION}.dist-info"
    files = {
        f"{module}/__init__.py": b"VALUE = 42\n",
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {TINY_PROJECT}\nVersion: {TINY_VERSION}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: truststore-auto-tests\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    wheel_name = f"{module}-{TINY_VERSION}-py3-none-any.whl"
    (root / "files").mkdir(parents=True, exist_ok=True)
    wheel_path = root / "files" / wheel_name
    with zipfile.ZipFile(wheel_path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    sha = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
    project_dir = root / "simple" / TINY_PROJECT
    project_dir.mkdir(parents=True, exist_ok=True)
    (root / "simple" / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="{TINY_PROJECT}/">{TINY_PROJECT}</a></body></html>\n'
    )
    (project_dir / "index.html").write_text(
        "<!DOCTYPE html><html><body>"
        f'<a href="../../files/{wheel_name}#sha256={sha}">{wheel_name}</a>'
        "</body></html>\n"
    )
    return wheel_name


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    server: StaticHTTPSServer

    def log_message(self, format: str, *args: Any) -> None:
        self.server.requests.append(self.path)


class StaticHTTPSServer(http.server.ThreadingHTTPServer):
    """Serves a directory over TLS on 127.0.0.1 until closed.

    The TLS handshake runs in each request's thread, so a client that rejects
    the certificate never blocks the listener.  ``requests`` lists the paths
    answered (handshakes that failed never get that far).
    """

    daemon_threads = True

    def __init__(self, directory: Path, cert: trustme.LeafCert) -> None:
        self.directory = directory
        self.requests: list[str] = []
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self.tls)

        def handler(*args: Any) -> _QuietHandler:
            return _QuietHandler(*args, directory=str(directory))

        super().__init__(("127.0.0.1", 0), handler)
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        conn.settimeout(30)
        return self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up or rejects our certificate is not an error."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StaticHTTPSServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pip_download_argv(venv: Venv, index_url: str, dest: Path, *extra: str) -> list[str]:
    """``pip download`` of the tiny project from *index_url*: no cache (a
    cached response would skip TLS), no retries, nothing but that index."""
    return [
        str(venv.python),
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--retries",
        "0",
        "--timeout",
        "20",
        "--index-url",
        index_url,
        "-d",
        str(dest),
        *extra,
        TINY_PROJECT,
    ]


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where nothing listens (bound, never listening)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def copy_tree_for_build(destination: Path) -> Path:
    """The working tree's build inputs, copied so a build writes nothing here."""
    destination.mkdir(parents=True)
    for name in ("src", "pyproject.toml", "README.md", "LICENSE", "SECURITY.md"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.exists():
            shutil.copy2(source, destination / name)
    return destination
