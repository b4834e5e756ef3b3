"""Hardening matrix rows 5-7: a damaged or changing OS trust store (Linux).

The "OS store" is what OpenSSL's defaults point at, steered here with
``SSL_CERT_FILE``/``SSL_CERT_DIR`` (set per test; the autouse fixture has
removed this machine's values).  Every verdict comes from a real handshake
with a loopback server.  Where the store is readable, the trust set must be
exactly what ``set_default_verify_paths()`` gives a stdlib context; where
it is damaged, the certificates that can be read still count, and a store
with nothing in it fails closed with a message naming what was searched.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import truststore
from support import FILE_CAPABILITY_SCRIPT as _FILE_CAPABILITY_SCRIPT
from support import TLSServer, serve_cert
from support import privilege_tools as _privilege_tools

pytestmark = pytest.mark.skipif(
    sys.platform in ("win32", "darwin"), reason="the OpenSSL backend's store (Linux/BSD)"
)


class Site:
    """A CA and a loopback server presenting a leaf it issued."""

    def __init__(self, ca: trustme.CA, server: TLSServer) -> None:
        self.ca = ca
        self.server = server

    @property
    def pem(self) -> bytes:
        return self.ca.cert_pem.bytes()


@pytest.fixture(scope="module")
def sites() -> Iterator[list[Site]]:
    """Three independent CAs, each with a server for ``localhost``."""
    made: list[Site] = []
    try:
        for _ in range(3):
            ca = trustme.CA()
            made.append(Site(ca, serve_cert(ca.issue_cert("localhost"))))
        yield made
    finally:
        for site in made:
            site.server.close()


def outcome(ctx: ssl.SSLContext, site: Site) -> str | ssl.SSLCertVerificationError:
    """ "trusted", or the verification error the handshake raised."""
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=20) as sock:
        try:
            with ctx.wrap_socket(sock, server_hostname="localhost"):
                return "trusted"
        except ssl.SSLCertVerificationError as exc:
            return exc


def trusted(ctx: ssl.SSLContext, site: Site) -> bool:
    return outcome(ctx, site) == "trusted"


def stdlib_default_paths() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_default_verify_paths()
    return ctx


def hashed_dir(path: Path, *sites: Site) -> Path:
    """A CA directory with ``openssl rehash`` names, as distributions ship."""
    path.mkdir(parents=True)
    for index, site in enumerate(sites):
        (path / f"ca{index}.pem").write_bytes(site.pem)
    subprocess.run(["openssl", "rehash", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    path = tmp_path / "empty-dir"
    path.mkdir()
    return path


# -- 5. SSL_CERT_FILE ----------------------------------------------------------


def _file_case(kind: str, tmp_path: Path) -> str:
    if kind == "missing":
        return str(tmp_path / "no-such-bundle.pem")
    if kind == "dev-null":
        return os.devnull
    if kind == "directory":
        return str(tmp_path)
    path = tmp_path / "bundle.pem"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 40)
    elif kind == "only-bad-block":
        path.write_bytes(
            b"-----BEGIN CERTIFICATE-----\nMIIB////notbase64////\n-----END CERTIFICATE-----\n"
        )
    else:  # pragma: no cover
        raise AssertionError(kind)
    return str(path)


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "dev-null", "directory", "garbage", "only-bad-block"]
)
def test_cert_file_with_nothing_usable_fails_closed_naming_the_search(
    kind: str,
    tmp_path: Path,
    empty_dir: Path,
    sites: list[Site],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = _file_case(kind, tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", bundle)
    monkeypatch.setenv("SSL_CERT_DIR", str(empty_dir))
    ctx = truststore.SSLContext()
    result = outcome(ctx, sites[0])
    assert isinstance(result, ssl.SSLCertVerificationError)
    message = str(result)
    assert "no trusted CA certificates could be loaded" in message
    # Names every place it looked, and the host.
    assert bundle in message and str(empty_dir) in message
    assert "'localhost'" in message
    assert result.verify_code == 20  # unable to get local issuer certificate
    # The stdlib with the same defaults agrees that nothing is trusted.
    assert not trusted(stdlib_default_paths(), sites[0])


_BAD_BLOCKS = {
    # base64 that does not decode
    "bad-base64": b"-----BEGIN CERTIFICATE-----\nMIIB////not*base64////\n-----END CERTIFICATE-----\n",
    # decodes, but is not a certificate
    "bad-der": b"-----BEGIN CERTIFICATE-----\n"
    + base64.encodebytes(b"\x30\x82\x01\x00" + b"\x00" * 40)
    + b"-----END CERTIFICATE-----\n",
    # an END line that never comes
    "truncated": b"-----BEGIN CERTIFICATE-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n",
}


@pytest.mark.parametrize("bad", sorted(_BAD_BLOCKS))
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_one_bad_block_among_good_ones(
    bad: str,
    position: str,
    tmp_path: Path,
    empty_dir: Path,
    sites: list[Site],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good_a, good_b, untrusted = sites
    block = _BAD_BLOCKS[bad]
    if position == "first":
        content = block + good_a.pem + good_b.pem
    elif position == "middle":
        content = good_a.pem + block + good_b.pem
    else:
        content = good_a.pem + good_b.pem + block
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(content)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty_dir))
    ctx = truststore.SSLContext()
    # An unterminated block must not swallow the good one after it.
    assert trusted(ctx, good_a)
    assert trusted(ctx, good_b)
    result = outcome(ctx, untrusted)
    assert isinstance(result, ssl.SSLCertVerificationError)
    assert "no trusted CA certificates could be loaded" not in str(result)


# -- 6. SSL_CERT_DIR ---------------------------------------------------------


def _assert_trust_set(expected: list[bool], sites: list[Site]) -> None:
    """truststore trusts exactly *expected*, and so do the stdlib's defaults."""
    ours = truststore.SSLContext()
    stdlib = stdlib_default_paths()
    assert [trusted(ours, site) for site in sites] == expected
    assert [trusted(stdlib, site) for site in sites] == expected


@pytest.mark.timeout(60)
def test_cert_dir_several_entries(
    tmp_path: Path, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = hashed_dir(tmp_path / "first", sites[0])
    second = hashed_dir(tmp_path / "second", sites[1])
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", os.pathsep.join([str(first), str(second)]))
    _assert_trust_set([True, True, False], sites)


@pytest.mark.timeout(60)
def test_cert_dir_missing_and_empty_entries(
    tmp_path: Path, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hashed_dir(tmp_path / "real", sites[2])
    entries = [str(tmp_path / "gone"), "", str(real), str(tmp_path / "gone" / "deeper"), ""]
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", os.pathsep.join(entries))
    _assert_trust_set([False, False, True], sites)


@pytest.mark.timeout(60)
def test_cert_dir_without_hashed_names(
    tmp_path: Path, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSSL finds CAs in a directory by subject hash only; a directory of
    plain ``*.pem`` files trusts nothing, for the stdlib and for us."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "ca.pem").write_bytes(sites[0].pem)
    (plain / "ca.crt").write_bytes(sites[1].pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(plain))
    _assert_trust_set([False, False, False], sites)
    result = outcome(truststore.SSLContext(), sites[0])
    assert isinstance(result, ssl.SSLCertVerificationError)
    assert str(plain) in str(result)


@pytest.mark.timeout(60)
def test_cert_dir_symlink_loops(
    tmp_path: Path, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loops everywhere a walk could follow them; no hang, right trust set."""
    real = hashed_dir(tmp_path / "real", sites[0], sites[1])
    # A hashed name that points at itself (sites[1]'s hash: its look-up
    # meets the loop), and a sub-directory link back to the parent.
    for entry in real.iterdir():
        if entry.is_symlink() and entry.resolve() == (real / "ca1.pem").resolve():
            entry.unlink()
            entry.symlink_to(entry.name)
    (real / "ca1.pem").unlink()
    (real / "parent").symlink_to(".")
    # An SSL_CERT_DIR entry that is itself a loop, and a two-link cycle.
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "cycle-a").symlink_to("cycle-b")
    (tmp_path / "cycle-b").symlink_to("cycle-a")
    entries = [str(tmp_path / "loop"), str(tmp_path / "cycle-a"), str(real)]
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", os.pathsep.join(entries))
    started = time.monotonic()
    _assert_trust_set([True, False, False], sites)
    assert time.monotonic() - started < 30


# -- 7. the CA file replaced while running -----------------------------------


def _replace(path: Path, content: bytes) -> None:
    """Atomically, the way package managers install files."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(content)
    os.replace(temporary, path)


def test_ca_file_replaced_on_disk(
    tmp_path: Path, empty_dir: Path, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new, _ = sites
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(old.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty_dir))
    before = truststore.SSLContext()
    assert (trusted(before, old), trusted(before, new)) == (True, False)

    _replace(bundle, new.pem)
    after = truststore.SSLContext()
    # New contexts see the new file...
    assert (trusted(after, old), trusted(after, new)) == (False, True)
    # ...existing ones keep the store they were created with.
    assert (trusted(before, old), trusted(before, new)) == (True, False)

    # Rewritten in place (same inode, new size), too.
    bundle.write_bytes(old.pem + new.pem)
    both = truststore.SSLContext()
    assert (trusted(both, old), trusted(both, new)) == (True, True)
    assert (trusted(after, old), trusted(after, new)) == (False, True)


@pytest.mark.timeout(120)
def test_ca_file_flipping_while_contexts_are_made(
    tmp_path: Path, empty_dir: Path, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every context made while the file keeps changing trusts exactly one
    version of it: never both, never neither (no half-read bundle)."""
    first, second, _ = sites
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(first.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty_dir))
    stop = threading.Event()

    def flip() -> None:
        versions = [second.pem, first.pem]
        count = 0
        while not stop.is_set():
            _replace(bundle, versions[count % 2])
            count += 1

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        contexts = [truststore.SSLContext() for _ in range(40)]
    finally:
        stop.set()
        flipper.join(timeout=10)
    for ctx in contexts:
        verdict = (trusted(ctx, first), trusted(ctx, second))
        assert verdict in {(True, False), (False, True)}


# -- 16. secure execution (setuid/setgid/file capabilities) ---------------------

_SECURE_CHILD = r"""
import ctypes, json, socket, ssl, sys
sys.path[:0] = sys.argv[2:4]
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
libc.getauxval.argtypes = [ctypes.c_ulong]
import truststore
from truststore import _openssl

def verdict(ctx):
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                return "trusted"
        except ssl.SSLCertVerificationError as exc:
            return f"rejected ({exc.verify_code})"

stdlib = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
stdlib.set_default_verify_paths()
from_proc = _openssl._auxv_at_secure()
_openssl._auxv_at_secure = lambda: None  # the getauxval()/issetugid() path too
from_libc = _openssl._at_secure()
print(json.dumps({
    "both_ways": [from_proc, from_libc],
    "at_secure": libc.getauxval(23),
    "stdlib": verdict(stdlib),
    "ours": verdict(truststore.SSLContext()),
    "explicit": _openssl.default_locations()[2],
}))
"""


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "privilege",
    [
        # The shapes of a set-user-ID and a set-group-ID program: the real id
        # differs from the effective one at exec, so the kernel sets AT_SECURE.
        "setuid",
        "setgid",
        # A copy of the interpreter with a file capability, run by an
        # unprivileged user (real = effective ids; AT_SECURE from the
        # capability alone).
        "file-capability",
        # Controls: an ordinary process, and the same unprivileged user with
        # the same copy minus the capability, honour the variables (so the
        # files are readable and the secure cases cannot pass vacuously).
        "ordinary",
        "unprivileged-user",
    ],
)
def test_secure_execution_ignores_cert_variables(privilege: str, sites: list[Site]) -> None:
    """A privileged process does not let its invoker choose its trust store:
    OpenSSL reads SSL_CERT_FILE/SSL_CERT_DIR with secure_getenv(), which
    ignores them when AT_SECURE is set; the store we load agrees."""
    import shutil
    import tempfile

    why = _privilege_tools()
    if why:
        pytest.skip(why)
    shared = Path(tempfile.mkdtemp(prefix="truststore-secure-"))  # readable by user 65534
    try:
        shared.chmod(0o755)
        attacker = shared / "attacker.pem"
        attacker.write_bytes(sites[0].pem)
        hashed = hashed_dir(shared / "attacker-dir", sites[0])
        for path in [attacker, hashed, *hashed.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        src = str(Path(truststore.__file__).resolve().parents[1])
        child = ["-c", _SECURE_CHILD, str(sites[0].server.port), src, src]
        python = os.path.realpath(sys.executable)
        argv = {
            "setuid": ["setpriv", "--ruid=65534", "--", python, *child],
            "setgid": ["setpriv", "--rgid=65534", "--keep-groups", "--", python, *child],
            "file-capability": ["unshare", "-m", "--propagation", "private", "bash", "-c",
                                _FILE_CAPABILITY_SCRIPT, "fcap", "caps", python, *child],
            "unprivileged-user": ["unshare", "-m", "--propagation", "private", "bash", "-c",
                                  _FILE_CAPABILITY_SCRIPT, "fcap", "none", python, *child],
            "ordinary": [python, *child],
        }[privilege]  # fmt: skip
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SSL_CERT", "PYTEST", "PYTHON"))
        }
        secure = privilege in ("setuid", "setgid", "file-capability")
        for variables in (
            {"SSL_CERT_FILE": str(attacker)},
            {"SSL_CERT_DIR": str(hashed), "SSL_CERT_FILE": str(shared / "none.pem")},
        ):
            result = subprocess.run(
                argv, env={**env, **variables}, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, result.stderr
            seen = json.loads(result.stdout.splitlines()[-1])
            if secure:
                assert seen == {
                    "both_ways": [True, True],
                    "at_secure": 1,
                    "stdlib": "rejected (20)",
                    "ours": "rejected (20)",
                    "explicit": False,
                }, variables
            else:
                assert seen == {
                    "both_ways": [False, False],
                    "at_secure": 0,
                    "stdlib": "trusted",
                    "ours": "trusted",
                    "explicit": True,
                }, variables
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# -- 17. what OpenSSL's look-up by name finds ------------------------------------


def _openssl_hash(pem: bytes, option: str = "-subject_hash") -> str:
    return (
        subprocess.run(
            ["openssl", "x509", "-noout", option],
            input=pem,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .strip()
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("naming", ["stale-hash", "old-style-hash", "suffix-gap", "plain-name"])
def test_bundle_ca_in_directory_under_a_name_lookup_never_opens(
    naming: str, tmp_path: Path, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory holds a bundle CA, but under a name OpenSSL's look-up by
    subject hash never opens: the CA stays trusted (from the bundle), exactly
    as for set_default_verify_paths()."""
    listed, misnamed, outsider = sites
    certs = hashed_dir(tmp_path / "certs", listed)
    if naming == "stale-hash":
        name = _openssl_hash(outsider.pem) + ".0"  # another CA's hash
    elif naming == "old-style-hash":
        name = _openssl_hash(misnamed.pem, "-subject_hash_old") + ".0"  # OpenSSL 0.9.8
    elif naming == "suffix-gap":
        name = _openssl_hash(misnamed.pem) + ".1"  # no .0 before it
    else:
        name = "misnamed.pem"
    (certs / name).write_bytes(misnamed.pem)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(listed.pem + misnamed.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))
    _assert_trust_set([True, True, False], sites)


# -- 18. non-regular files named like hashed entries -------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "char-device", "directory", "socket"])
def test_hashed_entry_that_is_not_a_regular_file(
    kind: str, tmp_path: Path, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO (or device, directory, socket) named like the hashed entry of a
    bundle CA must not block, or cost, a new context: only regular files are
    read, without blocking, and only so much.  The stdlib is not affected
    (OpenSSL opens entries only on look-up, and finds this CA in the bundle
    first), and neither may we be."""
    listed, blocked, _outsider = sites
    certs = hashed_dir(tmp_path / "certs", listed)
    entry = certs / (_openssl_hash(blocked.pem) + ".0")
    if kind == "fifo":
        os.mkfifo(entry)
    elif kind == "char-device":
        entry.symlink_to("/dev/zero")
    elif kind == "directory":
        entry.mkdir()
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(entry))
        listener.close()
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(listed.pem + blocked.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))

    made: list[ssl.SSLContext] = []
    worker = threading.Thread(target=lambda: made.append(truststore.SSLContext()), daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():
        if kind == "fifo":  # let the stuck open() return, so the test can end
            os.close(os.open(entry, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"a new context blocked on a {kind} in the CA directory")
    assert [trusted(made[0], site) for site in sites] == [True, True, False]
    assert [trusted(stdlib_default_paths(), site) for site in sites] == [True, True, False]
