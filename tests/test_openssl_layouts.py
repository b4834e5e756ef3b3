"""Each distribution family's CA-store layout, for real, in a private mount
namespace (see ``tests/layouts.py``): the trust set we load equals what
``set_default_verify_paths()`` gives there, certificate by certificate, and
the hashed directory is looked up lazily.

Certificate by certificate: every root of the store (three test CAs with a
loopback server each, plus this machine's roots as a realistic filler) is
checked with ``openssl verify`` against the plan's locations and against
OpenSSL's defaults; the test CAs also by handshakes, ours against a stdlib
context, with an untrusted CA as the control.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from layouts import DISTROS, build_layout, namespace_argv, namespaces_available
from support import TLSServer, scrubbed_environ, serve_cert

if sys.platform in ("win32", "darwin"):
    pytest.skip("the OpenSSL backend is the Linux/BSD one", allow_module_level=True)

SRC = str(Path(__file__).resolve().parents[1] / "src")
MACHINE_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

CHILD = r"""
import json, os, socket, ssl, subprocess, sys, tempfile, time
sys.path[:0] = [sys.argv[1]]
ports, roots_dir, reference_bundle = json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
started = time.perf_counter()
from truststore import _openssl
plan = _openssl.current_plan()
plan_ms = (time.perf_counter() - started) * 1e3
import truststore
ours = truststore.SSLContext()
# What the backend parses up front, on a plain context (the facade's own
# cert_store_stats() reports the whole trust set, read on demand).
probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_openssl.load_os_trust(probe)
before = probe.cert_store_stats()

def verdict(ctx, port):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                return "trusted"
        except ssl.SSLCertVerificationError as exc:
            return f"rejected ({exc.verify_code})"

stdlib = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
if reference_bundle:  # what the distribution's own OpenSSL would trust
    stdlib.load_verify_locations(reference_bundle)
else:
    stdlib.set_default_verify_paths()
roots = sorted(os.path.join(roots_dir, n) for n in os.listdir(roots_dir))

def verify(options):
    out = subprocess.run(["openssl", "verify", "-show_chain", *options, *roots],
                         capture_output=True, text=True)
    text = out.stdout + out.stderr
    return {r: (f"{r}: OK" in text) for r in roots}

ours_options = ["-no-CAfile", "-no-CApath", "-no-CAstore"]
if plan.capath:
    ours_options += ["-CApath", plan.capath]
if plan.cafile:
    ours_options += ["-CAfile", plan.cafile]
elif plan.extra_der:
    extra = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    for der in plan.extra_der:
        extra.write(ssl.DER_cert_to_PEM_cert(der))
    extra.close()
    ours_options += ["-CAfile", extra.name]
print(json.dumps({
    "capath": plan.capath, "cafile": plan.cafile, "extra": len(plan.extra_der),
    "plan_ms": plan_ms, "eager_before_handshakes": before["x509_ca"],
    "ours": [verdict(ours, p) for p in ports],
    "stdlib": [verdict(stdlib, p) for p in ports],
    "roots_ours": verify(ours_options),
    "roots_stdlib": verify(["-CAfile", reference_bundle] if reference_bundle else []),
}))
"""


def _machine_roots() -> list[bytes]:
    try:
        data = Path(MACHINE_BUNDLE).read_bytes()
    except OSError:
        return []
    end = b"-----END CERTIFICATE-----\n"
    return [block + end for block in data.split(end) if b"-----BEGIN CERTIFICATE-----" in block]


@pytest.fixture(scope="module")
def test_cas() -> list[trustme.CA]:
    return [trustme.CA(organization_name=f"Layout Test CA {i}") for i in range(4)]


def _run_layout(
    distro: str, tmp_path: Path, test_cas: list[trustme.CA], foreign_openssl: bool
) -> tuple[dict[str, str], dict[str, object], int]:
    why = namespaces_available()
    if why:
        pytest.skip(why)
    in_store, outsider = test_cas[:3], test_cas[3]
    fillers = _machine_roots()
    pems = [ca.cert_pem.bytes() for ca in in_store] + fillers
    layout = build_layout(tmp_path / "root", distro, pems)
    reference = ""
    if foreign_openssl:
        # A Python whose OpenSSL looks elsewhere (python.org-style builds,
        # OPENSSLDIR=/usr/local/ssl): its defaults hold nothing here.
        layout = {**layout, "openssl_cafile": "/nonexistent/cert.pem"}
        layout["openssl_capath"] = "/nonexistent/certs"
        reference = layout["bundle"]
    roots_dir = tmp_path / "roots"
    roots_dir.mkdir()
    for index, pem in enumerate([*pems, outsider.cert_pem.bytes()]):
        (roots_dir / f"root-{index:03d}.pem").write_bytes(pem)
    before = Path("/etc/ssl/certs").stat().st_mtime_ns, sorted(Path("/etc/ssl/certs").iterdir())

    servers: list[TLSServer] = [serve_cert(ca.issue_cert("localhost")) for ca in test_cas]
    try:
        ports = [server.port for server in servers]
        result = subprocess.run(
            namespace_argv(
                layout,
                [sys.executable, "-c", CHILD, SRC, json.dumps(ports), str(roots_dir), reference],
            ),
            env=scrubbed_environ(),
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        for server in servers:
            server.close()
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    # The machine's own store is untouched.
    assert (
        Path("/etc/ssl/certs").stat().st_mtime_ns,
        sorted(Path("/etc/ssl/certs").iterdir()),
    ) == before

    return layout, seen, len(pems)


def _assert_same_trust(seen: dict[str, object], roots_dir: Path, count: int) -> int:
    # Handshakes: the three store CAs trusted, the outsider not, as the stdlib.
    assert seen["ours"] == seen["stdlib"] == ["trusted"] * 3 + ["rejected (20)"], seen
    # Certificate by certificate, every root of the store and the outsider.
    assert seen["roots_ours"] == seen["roots_stdlib"]
    roots = seen["roots_stdlib"]
    assert isinstance(roots, dict)
    trusted_roots = sum(roots.values())
    assert trusted_roots >= 3 and not roots[str(roots_dir / f"root-{count:03d}.pem")]
    return trusted_roots


@pytest.mark.timeout(300)
@pytest.mark.parametrize("distro", DISTROS)
def test_layout_trust_set_equals_openssl_defaults(
    distro: str, tmp_path: Path, test_cas: list[trustme.CA]
) -> None:
    layout, seen, count = _run_layout(distro, tmp_path, test_cas, foreign_openssl=False)
    trusted_roots = _assert_same_trust(seen, tmp_path / "roots", count)
    # Lazily: the expected hashed directory, nothing parsed up front.
    assert layout["lazy_dir"] in str(seen["capath"] or "").split(":"), seen["capath"]
    assert seen["extra"] == 0 and seen["cafile"] is None
    assert seen["eager_before_handshakes"] == 0
    print(f"{distro}: plan decided in {seen['plan_ms']:.2f} ms; {trusted_roots} roots trusted")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("distro", ["fedora", "debian"])
def test_layout_with_a_python_whose_openssl_looks_elsewhere(
    distro: str, tmp_path: Path, test_cas: list[trustme.CA]
) -> None:
    """OpenSSL's defaults are empty, so the distribution fallback finds the
    bundle; its hashed copy still serves it lazily, and the trust set is the
    bundle's, root by root."""
    _layout, seen, count = _run_layout(distro, tmp_path, test_cas, foreign_openssl=True)
    _assert_same_trust(seen, tmp_path / "roots", count)
    expected = {
        "fedora": "/etc/pki/ca-trust/extracted/pem/directory-hash",
        "debian": "/etc/ssl/certs",
    }[distro]
    assert expected in str(seen["capath"] or "").split(":"), seen["capath"]
    assert seen["extra"] == 0 and seen["cafile"] is None
    assert seen["eager_before_handshakes"] == 0
