"""``python -m truststore`` / the ``truststore`` script, installed in a venv.

SPEC "Command line": status, enable/disable (round trip in
test_autoinject_startup.py), ``check URL|HOST[:PORT]`` with exit 0 trusted /
1 not trusted / 2 could not check, one-line errors, ``--help`` everywhere.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
import trustme

import truststore
from support import serve_cert
from venvs import Venv, product_environ, refused_port

pytestmark = pytest.mark.slow

Store = tuple[trustme.CA, dict[str, str]]


def cli(venv: Venv, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return venv.run("-m", "truststore", *args, env=product_environ(**env), timeout=60)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("truststore: error: ")
    return lines[0]


def test_status_reports_version_backend_store_and_rule(installed: Venv, store_ca: Store) -> None:
    _ca, store = store_ca
    result = cli(installed, "status", **store)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith(f"truststore-auto {truststore.__version__} (Python ")
    assert first.endswith(f", {installed.prefix})")
    lines = dict(line.split(":", 1) for line in rest)
    assert lines["backend"].strip() == "OpenSSL with the system CA locations"
    # Where the store was found: the directory and bundle OpenSSL's defaults name.
    assert store["SSL_CERT_DIR"] in lines["OS store"]
    assert store["SSL_CERT_FILE"] in lines["OS store"]
    assert lines["injection"].strip() == "active in this interpreter"
    assert lines["decided by"].strip() == "default (on) -> on"
    assert lines["config"].strip() == f"{installed.config} (absent)"

    off = cli(installed, "status", TRUSTSTORE_INJECT=" No ", **store)
    assert "injection:  inactive in this interpreter" in off.stdout
    assert "decided by: environment variable TRUSTSTORE_INJECT=No -> off" in off.stdout
    assert "start-up:" not in off.stdout  # the hook ran, and decided "off"


def test_console_script(installed: Venv) -> None:
    script = installed.bin / "truststore"
    version = subprocess.run(
        [str(script), "--version"], env=product_environ(), capture_output=True, text=True
    )
    assert version.returncode == 0
    assert version.stdout.strip() == f"truststore-auto {truststore.__version__}"
    status = subprocess.run(
        [str(script), "status"], env=product_environ(), capture_output=True, text=True
    )
    assert status.returncode == 0 and "injection:  active" in status.stdout, status.stderr


@pytest.mark.parametrize("command", [None, "status", "enable", "disable", "check"])
def test_help_everywhere(installed: Venv, command: str | None) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    result = cli(installed, *args)
    assert result.returncode == 0 and result.stderr == ""
    prog = "truststore" if command is None else f"truststore {command}"
    assert result.stdout.startswith(f"usage: {prog}")
    if command == "check":
        assert "URL|HOST[:PORT]" in result.stdout and "Exit status 0" in result.stdout


def test_check_trusted_server_prints_chain_and_exits_0(installed: Venv, store_ca: Store) -> None:
    ca, store = store_ca
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    with serve_cert(leaf) as server:
        results = [
            cli(installed, "check", server.url, **store),
            cli(installed, "check", f"localhost:{server.port}", **store),
            cli(installed, "check", f"https://localhost:{server.port}/some/path?q=1", **store),
        ]
    for result, host in zip(results, ["127.0.0.1", "localhost", "localhost"], strict=True):
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert result.stderr == ""
        out = result.stdout.splitlines()
        assert out[0].startswith(f"{host}:{server.port}: TLSv1.")
        assert out[-1].startswith(f"{host}:{server.port}: TRUSTED")
        # The chain up to the root from the OS store: leaf, then the CA.
        subjects = [line for line in out if line.strip().startswith(("0: subject:", "1: subject:"))]
        assert len(subjects) == 2, out
        assert "Testing cert" in subjects[0] and "Testing CA" in subjects[1]
        assert sum("issuer:" in line for line in out) == 2
        assert sum("expires:" in line for line in out) == 2


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown CA", "unable to get local issuer certificate"),
        ("wrong host", "IP address mismatch"),
        ("expired", "certificate has expired"),
    ],
)
def test_check_untrusted_server_exits_1_with_the_reason(
    installed: Venv, store_ca: Store, case: str, reason: str
) -> None:
    ca, store = store_ca
    if case == "unknown CA":
        leaf = trustme.CA().issue_cert("127.0.0.1")
    elif case == "wrong host":
        leaf = ca.issue_cert("elsewhere.example")
    else:
        yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        leaf = ca.issue_cert("127.0.0.1", not_after=yesterday)
    with serve_cert(leaf) as server:
        result = cli(installed, "check", server.url, **store)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr == ""
    first, *rest = result.stdout.splitlines()
    assert first.startswith(f"127.0.0.1:{server.port}: NOT TRUSTED: ")
    assert reason in first
    assert rest[0] == "chain offered by the server:" and "subject:" in rest[1]


@pytest.fixture
def not_tls_server() -> Iterator[int]:
    """Accepts, answers plain HTTP garbage, hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nnot tls\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_check_errors_are_one_line_and_exit_2(installed: Venv, not_tls_server: int) -> None:
    with refused_port() as port:
        refused = one_error_line(cli(installed, "check", f"127.0.0.1:{port}"))
    assert f"cannot connect to 127.0.0.1:{port}" in refused and "refused" in refused
    assert "cannot connect" in one_error_line(
        cli(installed, "check", f"127.0.0.1:{not_tls_server}")
    )
    assert "only https://" in one_error_line(cli(installed, "check", "http://127.0.0.1:1/"))
    assert "bad port" in one_error_line(cli(installed, "check", "127.0.0.1:99999"))
    assert "bad port" in one_error_line(cli(installed, "check", "https://127.0.0.1:x/"))
    assert "no host" in one_error_line(cli(installed, "check", ""))
    assert "invalid choice" in one_error_line(cli(installed, "bogus"))
    assert "required" in one_error_line(cli(installed))
    assert "cannot load" in one_error_line(
        cli(installed, "check", "--ca-file", "/nonexistent.pem", "127.0.0.1:1")
    )


# -- for CI images: JSON, --require-active, proxies (issue 12) -----------------

STATUS_KEYS = {
    "version",
    "python",
    "executable",
    "prefix",
    "backend",
    "os_store",
    "active",
    "decision",
    "precedence",
    "config",
    "install",
    "start_up",
    "flags",
    "package",
    "advice",
    "warnings",
}


def test_status_json_and_require_active(installed: Venv) -> None:
    result = cli(installed, "status", "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    info = json.loads(result.stdout)
    assert set(info) == STATUS_KEYS
    assert info["active"] is True
    assert info["decision"] == {"enabled": True, "rule": "default (on)"}
    assert info["config"]["path"] == str(installed.config)
    assert info["install"] == {"kind": "site", "location": str(installed.site_packages)}
    assert info["start_up"]["ran"] is True
    assert info["package"]["state"] == "ours"
    assert info["package"]["distributions"] == [
        next(p.name for p in installed.site_packages.glob("truststore_auto-*.dist-info"))
    ]
    assert info["package"]["files"]["truststore/__init__.py"]["content_of"].startswith(
        "truststore_auto-"
    )

    assert cli(installed, "status", "--require-active").returncode == 0
    off = cli(installed, "status", "--require-active", TRUSTSTORE_INJECT="0")
    assert off.returncode == 1
    assert off.stderr == "truststore: injection is not active in this interpreter\n"
    assert "injection:  inactive" in off.stdout
    off_json = json.loads(cli(installed, "status", "--json", TRUSTSTORE_INJECT="0").stdout)
    assert off_json["active"] is False
    assert off_json["decision"]["rule"] == "environment variable TRUSTSTORE_INJECT=0"
    no_site = installed.run(
        "-S",
        *("-m", "truststore", "status", "--json", "--require-active"),
        env=product_environ(PYTHONPATH=str(installed.site_packages)),
    )
    assert no_site.returncode == 1
    explained = json.loads(no_site.stdout)["start_up"]
    assert explained["ran"] is False and "python -S" in explained["explanation"]


CHECK_KEYS = {
    "target",
    "host",
    "port",
    "proxy",
    "backend",
    "trusted",
    "verdict",
    "reason",
    "verify_code",
    "tls_version",
    "chain_kind",
    "chain",
}


def test_check_json(installed: Venv, store_ca: Store) -> None:
    ca, store = store_ca
    with (
        serve_cert(ca.issue_cert("127.0.0.1")) as good,
        serve_cert(trustme.CA().issue_cert("127.0.0.1")) as bad,
    ):
        trusted = cli(installed, "check", "--json", good.url, **store)
        untrusted = cli(installed, "check", "--json", bad.url, **store)
    with refused_port() as port:
        error = cli(installed, "check", "--json", f"127.0.0.1:{port}", **store)
    assert trusted.returncode == 0, trusted.stderr
    verdict = json.loads(trusted.stdout)
    assert set(verdict) == CHECK_KEYS
    assert (verdict["trusted"], verdict["verdict"], verdict["proxy"]) == (True, "trusted", None)
    assert [c["subject"] for c in verdict["chain"]][1:] == [verdict["chain"][0]["issuer"]]
    assert untrusted.returncode == 1
    refused = json.loads(untrusted.stdout)
    assert (refused["trusted"], refused["verdict"], refused["verify_code"]) == (
        False,
        "untrusted",
        20,
    )
    assert "unable to get local issuer certificate" in refused["reason"]
    assert error.returncode == 2 and json.loads(error.stdout)["verdict"] == "error"


class ConnectProxy:
    """A loopback HTTP proxy that only tunnels (CONNECT) to 127.0.0.1, and
    records each request head; ``refuse`` answers 407 instead."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.requests: list[str] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        client.settimeout(20)
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            self.requests.append(text)
            method, authority, _ = text.split("\r\n", 1)[0].split(" ", 2)
            host, _, port = authority.rpartition(":")
            if self.refuse or method != "CONNECT" or host != "127.0.0.1":
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                return
            with socket.create_connection((host, int(port)), timeout=20) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

                def pump(src: socket.socket, dst: socket.socket) -> None:
                    try:
                        while data := src.recv(65536):
                            dst.sendall(data)
                    except OSError:
                        pass
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)

                back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
                back.start()
                pump(client, upstream)
                back.join(timeout=20)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def connect_proxy() -> Iterator[ConnectProxy]:
    proxy = ConnectProxy()
    yield proxy
    proxy.close()


def test_check_goes_through_https_proxy_with_connect(
    installed: Venv, store_ca: Store, connect_proxy: ConnectProxy
) -> None:
    ca, store = store_ca
    proxy_url = f"http://user:s%40cret@127.0.0.1:{connect_proxy.port}"
    with serve_cert(ca.issue_cert("127.0.0.1")) as server:
        result = cli(installed, "check", server.url, HTTPS_PROXY=proxy_url, **store)
        as_json = cli(installed, "check", "--json", server.url, https_proxy=proxy_url, **store)
        # NO_PROXY names the host: straight there, as requests and curl do.
        direct = cli(
            installed, "check", server.url, HTTPS_PROXY=proxy_url, NO_PROXY="127.0.0.1", **store
        )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"(through proxy {proxy_url})" in result.stdout.splitlines()[0]
    assert json.loads(as_json.stdout)["proxy"] == proxy_url
    assert direct.returncode == 0 and "through proxy" not in direct.stdout
    # Two tunnels (text and JSON runs), none for the NO_PROXY run; each a
    # CONNECT to the server with the proxy credentials, nothing else.
    assert len(connect_proxy.requests) == 2, connect_proxy.requests
    for head in connect_proxy.requests:
        lines = head.split("\r\n")
        assert lines[0] == f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"
        assert f"Host: 127.0.0.1:{server.port}" in lines
        token = base64.b64encode(b"user:s@cret").decode()
        assert f"Proxy-Authorization: Basic {token}" in lines


def test_check_through_a_proxy_that_refuses_is_one_line(installed: Venv, store_ca: Store) -> None:
    ca, store = store_ca
    proxy = ConnectProxy(refuse=True)
    try:
        with serve_cert(ca.issue_cert("127.0.0.1")) as server:
            result = cli(
                installed, "check", server.url, HTTPS_PROXY=f"127.0.0.1:{proxy.port}", **store
            )
    finally:
        proxy.close()
    line = one_error_line(result)
    assert f"refused CONNECT 127.0.0.1:{server.port}: HTTP/1.1 407" in line
