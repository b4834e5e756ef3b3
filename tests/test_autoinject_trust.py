"""Issue 11 end to end, in installed venvs: what unmodified programs trust.

* A root the administrator removed from the OS store but that certifi still
  carries is refused (requests ``verify=True``; pip
  ``--use-deprecated=legacy-certs``): certifi means "the default
  certificates", which is the OS store.  The venv's own certifi (or pip's
  vendored copy) gets the test root appended, which is what "present in
  certifi" means to an installed program.
* A copy of certifi with a corporate CA appended (``REQUESTS_CA_BUNDLE``)
  trusts that CA, and the OS store for the rest.
* A private CA file is a pin: an OS-trusted server for the same host is
  refused.

Every "on" run has its "off" control (``TRUSTSTORE_INJECT=0``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from support import serve_cert
from venvs import (
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


@contextlib.contextmanager
def appended(bundle: Path, ca: trustme.CA) -> Iterator[None]:
    """*ca* appended to an installed bundle, put back afterwards."""
    original = bundle.read_bytes()
    try:
        bundle.write_bytes(original + b"\n" + ca.cert_pem.bytes())
        yield
    finally:
        bundle.write_bytes(original)


def test_requests_refuses_a_root_removed_from_the_os_store_but_in_certifi(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]]
) -> None:
    _os_ca, store = store_ca
    removed = trustme.CA()
    certifi_bundle = installed.site_packages / "certifi" / "cacert.pem"
    assert certifi_bundle.is_file()
    with (
        appended(certifi_bundle, removed),
        serve_cert(removed.issue_cert("127.0.0.1")) as server,
    ):
        on = run_clients(installed, server.url, product_environ(**store), ("requests",))
        off = run_clients(
            installed, server.url, product_environ(TRUSTSTORE_INJECT="0", **store), ("requests",)
        )
    assert verdicts(on) == {"requests": "cert"}, on
    assert verdicts(off) == {"requests": "ok"}, off  # certifi itself trusts it


def test_certifi_copy_with_a_corporate_ca_trusts_it_and_the_os_store(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]], tmp_path: Path
) -> None:
    os_ca, store = store_ca
    corporate = trustme.CA()
    copy = tmp_path / "corporate-bundle.pem"
    certifi_bundle = installed.site_packages / "certifi" / "cacert.pem"
    copy.write_bytes(certifi_bundle.read_bytes() + corporate.cert_pem.bytes())
    env = {**store, "REQUESTS_CA_BUNDLE": str(copy)}
    outcomes = {}
    for label, ca in (("corporate", corporate), ("os", os_ca)):
        with serve_cert(ca.issue_cert("127.0.0.1")) as server:
            outcomes[label, "on"] = run_clients(
                installed, server.url, product_environ(**env), ("requests",)
            )
            outcomes[label, "off"] = run_clients(
                installed, server.url, product_environ(TRUSTSTORE_INJECT="0", **env), ("requests",)
            )
    assert verdicts(outcomes["corporate", "on"]) == {"requests": "ok"}, outcomes
    assert verdicts(outcomes["os", "on"]) == {"requests": "ok"}, outcomes
    # Controls: the copy alone trusts the corporate CA, not the OS store's.
    assert verdicts(outcomes["corporate", "off"]) == {"requests": "ok"}, outcomes
    assert verdicts(outcomes["os", "off"]) == {"requests": "cert"}, outcomes


_PIN_PROGRAM = r"""
import json, ssl, sys, urllib.request
import requests, urllib3, httpx
url, cafile = sys.argv[1], sys.argv[2]
out = {}
def attempt(name, call):
    try:
        call()
        out[name] = "ok"
    except Exception as exc:
        text = repr(exc) + repr(exc.__cause__) + repr(exc.__context__)
        out[name] = "cert" if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify" in text else "error: " + text[:200]
attempt("requests", lambda: requests.get(url, verify=cafile, timeout=20))
attempt("urllib3", lambda: urllib3.PoolManager(ca_certs=cafile).request("GET", url, retries=False))
attempt("httpx", lambda: httpx.get(url, verify=ssl.create_default_context(cafile=cafile), timeout=20))
attempt("urllib.request", lambda: urllib.request.urlopen(url, context=ssl.create_default_context(cafile=cafile), timeout=20))
print(json.dumps(out))
"""


def test_private_ca_pin_refuses_an_os_trusted_server(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]], tmp_path: Path
) -> None:
    os_ca, store = store_ca
    private = trustme.CA()
    pin = tmp_path / "private-ca.pem"
    private.cert_pem.write_to_path(str(pin))
    results = {}
    for label, ca in (("os", os_ca), ("private", private)):
        with serve_cert(ca.issue_cert("127.0.0.1")) as server:
            result = installed.run(
                code=_PIN_PROGRAM,
                script_args=(server.url, str(pin)),
                env=product_environ(**store),
                timeout=180,
            )
        assert result.returncode == 0, result.stderr
        results[label] = json.loads(result.stdout.strip().splitlines()[-1])
    clients = ("requests", "urllib3", "httpx", "urllib.request")
    assert results["private"] == dict.fromkeys(clients, "ok"), results
    assert results["os"] == dict.fromkeys(clients, "cert"), results


def test_pip_legacy_certs_refuses_a_root_removed_from_the_os_store(
    fresh_venv: object,
    store_ca: tuple[trustme.CA, dict[str, str]],
    tmp_path: Path,
) -> None:
    """pip's legacy path verifies with its vendored certifi through its
    vendored requests: injected, that bundle means the OS store."""
    venv: Venv = fresh_venv()  # type: ignore[operator]
    _os_ca, store = store_ca
    removed = trustme.CA()
    root = tmp_path / "index"
    wheel_name = write_tiny_index(root)
    vendored = venv.site_packages / "pip" / "_vendor" / "certifi" / "cacert.pem"
    assert vendored.is_file()
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    with (
        appended(vendored, removed),
        StaticHTTPSServer(root, removed.issue_cert("127.0.0.1")) as server,
    ):
        for inject in ("1", "0"):
            runs[inject] = subprocess.run(
                pip_download_argv(
                    venv,
                    server.url + "simple/",
                    tmp_path / f"dest-{inject}",
                    "-v",
                    "--use-deprecated=legacy-certs",
                ),
                env=pip_under_test_environ(TRUSTSTORE_INJECT=inject, **store),
                capture_output=True,
                text=True,
                timeout=300,
            )
    refused = runs["1"]
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
    assert not (tmp_path / "dest-1" / wheel_name).exists()
    assert runs["0"].returncode == 0, runs["0"].stderr[-2000:]  # vendored certifi trusts it
    assert (tmp_path / "dest-0" / wheel_name).is_file()
