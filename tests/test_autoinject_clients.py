"""Auto-injection end to end: unmodified HTTP clients trust the OS store.

The "OS store" here is what OpenSSL's defaults point at through
``SSL_CERT_FILE``/``SSL_CERT_DIR`` (tests/test_autoinject_debian.py does the
same with the real ``/etc/ssl/certs`` and no variables).  Every client runs
its ordinary code in the installed venv; the only switch between the runs is
``TRUSTSTORE_INJECT``, so each "off" result shows what the test would see if
injection broke.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trustme

from support import serve_cert
from venvs import (
    ALL_CLIENTS,
    TINY_PROJECT,
    StaticHTTPSServer,
    Venv,
    pip_download_argv,
    pip_under_test_environ,
    product_environ,
    run_clients,
    verdicts,
    write_tiny_index,
)

pytestmark = pytest.mark.slow

INJECTED_CLASS = "truststore._api.InjectedSSLContext"
STDLIB_CLASS = "ssl.SSLContext"


def test_every_client_trusts_the_os_store_with_no_code_change(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]]
) -> None:
    ca, store = store_ca
    with serve_cert(ca.issue_cert("127.0.0.1", "localhost")) as server:
        default = run_clients(installed, server.url, product_environ(**store))
        off = run_clients(installed, server.url, product_environ(TRUSTSTORE_INJECT="0", **store))

    assert verdicts(default) == dict.fromkeys(ALL_CLIENTS, "ok"), default
    assert default["_ssl_context_class"] == INJECTED_CLASS

    # The control: the same programs without injection.  requests verifies
    # against certifi and fails.  The others find this store by themselves,
    # because OpenSSL's defaults honour SSL_CERT_FILE/SSL_CERT_DIR and httpx
    # reads both variables itself (without them httpx uses certifi: see the
    # Debian test, where it fails without injection).
    assert off["_ssl_context_class"] == STDLIB_CLASS
    assert verdicts(off) == {
        "requests": "cert",
        "httpx": "ok",
        "urllib3": "ok",
        "aiohttp": "ok",
        "urllib.request": "ok",
        "http.client": "ok",
    }, off


def test_every_client_still_rejects_what_the_os_store_does_not_vouch_for(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]]
) -> None:
    """Fail closed: injection adds the OS store, it never loosens checks."""
    _ca, store = store_ca
    stranger = trustme.CA()  # certifi does not know it either
    with serve_cert(stranger.issue_cert("127.0.0.1")) as server:
        outcome = run_clients(installed, server.url, product_environ(**store))
    assert outcome["_ssl_context_class"] == INJECTED_CLASS
    assert verdicts(outcome) == dict.fromkeys(ALL_CLIENTS, "cert"), outcome

    ca, _ = store_ca
    with serve_cert(ca.issue_cert("other.example")) as server:
        wrong_host = run_clients(installed, server.url, product_environ(**store))
    assert verdicts(wrong_host) == dict.fromkeys(ALL_CLIENTS, "cert"), wrong_host


def test_httpx_explicit_certifi_context_gets_the_os_store_too(installed: Venv) -> None:
    """httpx builds ``ssl.create_default_context(cafile=certifi.where())``.

    Injected, certifi is a general-purpose public bundle, which means "the
    default certificates": the context trusts (and lists) the OS store, as
    a stdlib context lists it after ``set_default_verify_paths()``, not
    certifi's roots.
    """
    code = (
        "import httpx, ssl, truststore\n"
        "ctx = httpx.create_ssl_context()\n"
        "loaded = {c['serialNumber'] + repr(c['subject']) for c in ctx.get_ca_certs()}\n"
        "std = truststore._api._StdSSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
        "std.set_default_verify_paths()\n"
        "wanted = {c['serialNumber'] + repr(c['subject']) for c in std.get_ca_certs()}\n"
        "print(type(ctx).__module__, len(wanted) > 50, wanted == loaded)\n"
    )
    result = installed.run(code=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["truststore._api", "True", "True"]


@pytest.fixture
def tiny_index(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "index"
    return root, write_tiny_index(root)


def _pip_download(
    venv: Venv, index_url: str, dest: Path, store: dict[str, str], inject: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # -v: pip names the TLS failure only in its verbose log.
        pip_download_argv(venv, index_url, dest, "-v", *extra),
        env=pip_under_test_environ(TRUSTSTORE_INJECT=inject, **store),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pip_download_from_an_index_only_the_os_store_trusts(
    installed: Venv,
    store_ca: tuple[trustme.CA, dict[str, str]],
    tiny_index: tuple[Path, str],
    tmp_path: Path,
) -> None:
    """pip >= 24.2 verifies through its own vendored truststore by default,
    so plain ``pip download`` works with or without us.  With
    ``--use-deprecated=legacy-certs`` pip verifies against its vendored
    certifi through its vendored requests/urllib3: that path needs the hook's
    patches of ``pip._vendor.*``, and it is the one that discriminates."""
    ca, store = store_ca
    root, wheel_name = tiny_index
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    with StaticHTTPSServer(root, ca.issue_cert("127.0.0.1")) as server:
        index = server.url + "simple/"
        for label, inject, extra in [
            ("legacy-on", "1", ("--use-deprecated=legacy-certs",)),
            ("legacy-off", "0", ("--use-deprecated=legacy-certs",)),
            ("default-on", "1", ()),
            ("default-off", "0", ()),
        ]:
            runs[label] = _pip_download(installed, index, tmp_path / label, store, inject, *extra)
        served = list(server.requests)

    for label in ("legacy-on", "default-on", "default-off"):
        result = runs[label]
        assert result.returncode == 0, (label, result.stderr)
        assert (tmp_path / label / wheel_name).is_file(), label
    failed = runs["legacy-off"]
    assert failed.returncode != 0
    log = failed.stdout + failed.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in log, log[-3000:]
    assert not (tmp_path / "legacy-off" / wheel_name).exists()
    # Three successful runs, each fetched the project page and the wheel.
    assert served.count(f"/simple/{TINY_PROJECT}/") == 3, served
    assert served.count(f"/files/{wheel_name}") == 3, served
