"""The container-image flow, for real: a corporate root CA added the Debian way.

A Dockerfile does ``COPY corp.crt /usr/local/share/ca-certificates/`` and
``RUN update-ca-certificates``; after that, every Python program of the
image should trust the CA with no ``SSL_CERT_FILE`` and no code change.

This runs exactly that inside a private mount namespace (``unshare -m``):
tmpfs copies are mounted over ``/etc/ssl/certs``,
``/usr/local/share/ca-certificates`` and the hook directory
``/etc/ca-certificates/update.d`` (emptied: the Java keystore hook would write
to /var and run dpkg triggers), the CA goes in, the real
``update-ca-certificates`` rebuilds the store, and the clients run with no CA
variable at all.  The machine's own /etc is compared before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from support import serve_cert
from venvs import (
    ALL_CLIENTS,
    StaticHTTPSServer,
    Venv,
    client_argv,
    pip_download_argv,
    pip_under_test_environ,
    product_environ,
    verdicts,
    write_tiny_index,
)

pytestmark = pytest.mark.slow

WATCHED_DIRS = ("/etc/ssl/certs", "/usr/local/share/ca-certificates")
CA_NAME = "truststore-auto-test-corp-root"

NAMESPACE_SCRIPT = r"""
set -eu
stage=$1; ca=$2; shift 2
for dir in /etc/ssl/certs /usr/local/share/ca-certificates /etc/ca-certificates/update.d; do
    [ -d "$dir" ] || continue
    mkdir -p "$stage$dir"
    cp -a "$dir/." "$stage$dir/"
    mount -t tmpfs -o mode=0755 tmpfs "$dir"
    cp -a "$stage$dir/." "$dir/"
done
if [ -d /etc/ca-certificates/update.d ]; then
    find /etc/ca-certificates/update.d -mindepth 1 -delete
fi
cp "$ca" "/usr/local/share/ca-certificates/$CA_NAME.crt"
update-ca-certificates >&2
exec "$@"
"""

# Runs each {name: {"argv": [...], "env": {...}}} and writes
# {name: [returncode, stdout, stderr]}; stdlib only.
DRIVER = r"""
import json, subprocess, sys
runs = json.load(open(sys.argv[1]))
out = {}
for name, spec in runs.items():
    r = subprocess.run(spec["argv"], env=spec["env"], capture_output=True, text=True, timeout=300)
    out[name] = [r.returncode, r.stdout, r.stderr]
with open(sys.argv[2], "w") as f:
    json.dump(out, f)
"""


def _snapshot(root: str) -> dict[str, str]:
    """Every entry under *root*: symlink target, or file content hash."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                entries[path] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    entries[path] = hashlib.sha256(f.read()).hexdigest()
            else:
                entries[path] = "dir"
    return entries


def _require_namespace_tools() -> None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root on Linux (mount namespace, tmpfs mounts)")
    missing = [t for t in ("unshare", "update-ca-certificates") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (.ci/run installs them)")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"no mount namespaces here: {probe.stderr.strip()}")


def test_update_ca_certificates_corporate_root_reaches_every_client(
    installed: Venv, tmp_path: Path
) -> None:
    _require_namespace_tools()
    ca = trustme.CA(organization_name="Corp Root CA for truststore-auto tests")
    ca_file = tmp_path / "corp.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    index_root = tmp_path / "index"
    wheel_name = write_tiny_index(index_root)
    before = {d: _snapshot(d) for d in WATCHED_DIRS}

    # Nothing below sets SSL_CERT_FILE/SSL_CERT_DIR: product_environ drops them.
    plain = product_environ()
    off = product_environ(TRUSTSTORE_INJECT="0")
    with (
        serve_cert(ca.issue_cert("127.0.0.1", "localhost")) as server,
        StaticHTTPSServer(index_root, ca.issue_cert("127.0.0.1")) as index,
    ):
        legacy = ("-v", "--use-deprecated=legacy-certs")
        simple = index.url + "simple/"
        runs = {
            "store": {"argv": ["ls", f"/etc/ssl/certs/{CA_NAME}.pem"], "env": plain},
            "clients-on": {"argv": client_argv(installed, server.url), "env": plain},
            "clients-off": {"argv": client_argv(installed, server.url), "env": off},
            "pip-on": {
                "argv": pip_download_argv(installed, simple, tmp_path / "dl-on", *legacy),
                "env": pip_under_test_environ(),
            },
            "pip-off": {
                "argv": pip_download_argv(installed, simple, tmp_path / "dl-off", *legacy),
                "env": pip_under_test_environ(TRUSTSTORE_INJECT="0"),
            },
            "status": {"argv": [str(installed.python), "-m", "truststore", "status"], "env": plain},
            "check": {
                "argv": [str(installed.python), "-m", "truststore", "check", server.url],
                "env": plain,
            },
        }
        runs_file = tmp_path / "runs.json"
        runs_file.write_text(json.dumps(runs))
        results_file = tmp_path / "results.json"
        namespace = subprocess.run(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "bash",
                "-c",
                NAMESPACE_SCRIPT,
                "namespace",
                str(tmp_path / "stage"),
                str(ca_file),
                sys.executable,
                "-I",
                "-c",
                DRIVER,
                str(runs_file),
                str(results_file),
            ],
            env={**product_environ(), "CA_NAME": CA_NAME},
            capture_output=True,
            text=True,
            timeout=900,
        )
    after = {d: _snapshot(d) for d in WATCHED_DIRS}
    assert after == before, "the machine's own trust store changed"
    assert namespace.returncode == 0, namespace.stderr
    added = re.search(r"(\d+) added", namespace.stderr)
    assert added and int(added.group(1)) >= 1, namespace.stderr
    results = json.loads(results_file.read_text())

    assert results["store"][0] == 0, results["store"]

    on = json.loads(results["clients-on"][1].splitlines()[-1])
    assert on["_ssl_context_class"] == "truststore._api.InjectedSSLContext"
    assert verdicts(on) == dict.fromkeys(ALL_CLIENTS, "ok"), on

    # Without injection: the certifi users (requests, and httpx with no
    # SSL_CERT_* variable) reject the corporate CA; what reads OpenSSL's
    # defaults already sees the rebuilt store.
    without = json.loads(results["clients-off"][1].splitlines()[-1])
    assert verdicts(without) == {
        "requests": "cert",
        "httpx": "cert",
        "urllib3": "ok",
        "aiohttp": "ok",
        "urllib.request": "ok",
        "http.client": "ok",
    }, without

    assert results["pip-on"][0] == 0, results["pip-on"][2]
    assert (tmp_path / "dl-on" / wheel_name).is_file()
    assert results["pip-off"][0] != 0
    assert "CERTIFICATE_VERIFY_FAILED" in results["pip-off"][1] + results["pip-off"][2]

    code, status, _ = results["status"]
    assert code == 0
    assert "/etc/ssl/certs" in status or "/usr/lib/ssl" in status, status
    code, check, err = results["check"]
    assert code == 0, (check, err)
    assert "TRUSTED" in check and "Corp Root CA for truststore-auto tests" in check, check
