"""The Linux/OpenSSL backend: the OS store is whatever OpenSSL's defaults
(``SSL_CERT_FILE``/``SSL_CERT_DIR`` or the compiled-in paths) hold, loaded
once per context, with hashed directories looked up lazily.

The reference for "the same trust" is a stdlib context after
``set_default_verify_paths()``: every test compares verdicts on real
handshakes against both."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import truststore
from clientside import fetch
from support import TLSServer, environ, scrubbed_environ, serve_cert

if sys.platform in ("win32", "darwin"):
    pytest.skip("the OpenSSL backend is the Linux/BSD one", allow_module_level=True)

from truststore import _openssl

SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)


def write_bundle(path: Path, *cas: trustme.CA) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(ca.cert_pem.bytes() for ca in cas))
    return path


def write_hashed_dir(path: Path, *cas: trustme.CA) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for ca in cas:
        ca.cert_pem.write_to_path(str(path / f"{id(ca):x}.pem"))
    subprocess.run(["openssl", "rehash", str(path)], check=True, capture_output=True)
    return path


def verdict(ctx: ssl.SSLContext, server: TLSServer) -> str:
    try:
        fetch(ctx, server, "localhost")
    except ssl.SSLCertVerificationError as exc:
        return f"rejected ({exc.verify_code})"
    return "trusted"


def stdlib_reference() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_default_verify_paths()
    return ctx


def _native_ca_certs(ctx: ssl.SSLContext) -> list[bytes]:
    """What the native context holds (not the report of its trust set)."""
    import _ssl

    return list(_ssl._SSLContext.get_ca_certs(ctx, True))


class Servers:
    """One loopback server per CA, each presenting a leaf for localhost."""

    def __init__(self, *cas: trustme.CA) -> None:
        self.by_ca = {ca: serve_cert(ca.issue_cert("localhost")) for ca in cas}

    def verdicts(self, ctx: ssl.SSLContext) -> list[str]:
        return [verdict(ctx, server) for server in self.by_ca.values()]

    def close(self) -> None:
        for server in self.by_ca.values():
            server.close()


@pytest.fixture
def four_cas() -> Iterator[tuple[list[trustme.CA], Servers]]:
    cas = [trustme.CA() for _ in range(4)]
    servers = Servers(*cas)
    try:
        yield cas, servers
    finally:
        servers.close()


def test_trust_set_equals_set_default_verify_paths(
    tmp_path: Path, four_cas: tuple[list[trustme.CA], Servers]
) -> None:
    (bundle_only, dir_only, both, _neither), servers = four_cas
    env = {
        "SSL_CERT_FILE": str(write_bundle(tmp_path / "bundle.pem", bundle_only, both)),
        "SSL_CERT_DIR": str(write_hashed_dir(tmp_path / "certs", dir_only, both)),
    }
    with environ(env):
        ctx = truststore.SSLContext()
        ours = servers.verdicts(ctx)
        # Only the certificate the directory lacks was parsed (the rest is
        # looked up); the context reports what the stdlib's lists.
        # bundle_only parsed; dir_only and both looked up by the handshakes.
        assert len(_native_ca_certs(ctx)) == 3
        std = stdlib_reference()
        reference = servers.verdicts(std)
        # Both list the bundle and what their handshakes looked up.
        assert ctx.cert_store_stats() == std.cert_store_stats()
    assert ours == reference
    assert ours == ["trusted", "trusted", "trusted", "rejected (20)"]


def test_cert_dir_is_a_path_list(
    tmp_path: Path, four_cas: tuple[list[trustme.CA], Servers]
) -> None:
    (first, second, _third, _fourth), servers = four_cas
    dirs = [
        write_hashed_dir(tmp_path / "one", first),
        tmp_path / "does-not-exist",
        write_hashed_dir(tmp_path / "two", second),
    ]
    env = {
        "SSL_CERT_FILE": str(tmp_path / "no-bundle.pem"),
        "SSL_CERT_DIR": os.pathsep.join(str(d) for d in dirs),
    }
    with environ(env):
        ours = servers.verdicts(truststore.SSLContext())
        reference = servers.verdicts(stdlib_reference())
    assert ours == reference == ["trusted", "trusted", "rejected (20)", "rejected (20)"]


def test_bundle_certificates_missing_from_the_directory_are_trusted(
    tmp_path: Path, four_cas: tuple[list[trustme.CA], Servers]
) -> None:
    """A directory with hashed names, but not every bundle CA in it (a
    hand-added bundle entry, a stale directory): the rest still counts."""
    (in_both, bundle_only, bundle_only_2, _neither), servers = four_cas
    env = {
        "SSL_CERT_FILE": str(
            write_bundle(tmp_path / "bundle.pem", in_both, bundle_only, bundle_only_2)
        ),
        "SSL_CERT_DIR": str(write_hashed_dir(tmp_path / "certs", in_both)),
    }
    with environ(env):
        ctx = truststore.SSLContext()
        assert servers.verdicts(ctx) == servers.verdicts(stdlib_reference())
        assert ctx.cert_store_stats() == stdlib_reference().cert_store_stats()
        assert servers.verdicts(ctx)[:3] == ["trusted"] * 3


def test_bundle_with_trust_settings_keeps_openssl_meaning(
    tmp_path: Path, four_cas: tuple[list[trustme.CA], Servers]
) -> None:
    """``TRUSTED CERTIFICATE`` blocks (Fedora's trust bundle) carry trust
    settings; a CA marked "reject serverAuth" must stay rejected."""
    (distrusted, plain, _, _neither), servers = four_cas
    distrusted.cert_pem.write_to_path(str(tmp_path / "distrusted.pem"))
    marked = subprocess.run(
        [
            "openssl",
            "x509",
            "-in",
            str(tmp_path / "distrusted.pem"),
            "-addreject",
            "serverAuth",
            "-trustout",
        ],
        check=True,
        capture_output=True,
    ).stdout
    assert b"BEGIN TRUSTED CERTIFICATE" in marked
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(marked + plain.cert_pem.bytes())
    env = {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(tmp_path / "no-dir")}
    with environ(env):
        ours = servers.verdicts(truststore.SSLContext())
        reference = servers.verdicts(stdlib_reference())
    assert ours == reference
    assert ours[:2] == ["rejected (28)", "trusted"]


def test_bundle_with_crls_loads_them_like_openssl(tmp_path: Path) -> None:
    from certs import Issuer

    ca = trustme.CA()
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca.cert_pem.bytes() + Issuer.from_trustme(ca).crl([]))
    with environ({"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(tmp_path / "no-dir")}):
        assert truststore.SSLContext().cert_store_stats() == stdlib_reference().cert_store_stats()
        assert truststore.SSLContext().cert_store_stats()["crl"] == 1


# -- once per context, fresh per new context ------------------------------------------


def test_store_is_loaded_once_per_context(tmp_path: Path) -> None:
    old, new = trustme.CA(), trustme.CA()
    bundle = write_bundle(tmp_path / "bundle.pem", old)
    with (
        environ({"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(tmp_path / "no-dir")}),
        serve_cert(old.issue_cert("localhost")) as old_server,
        serve_cert(new.issue_cert("localhost")) as new_server,
    ):
        ctx = truststore.SSLContext()
        assert verdict(ctx, old_server) == "trusted"  # the first use loads the store
        bundle.unlink()
        # The context already holds the store: no connection reads the disk.
        for _ in range(3):
            assert verdict(ctx, old_server) == "trusted"
        # A new context sees the store as it is now: empty.
        assert verdict(truststore.SSLContext(), old_server) == "rejected (20)"

        # The bundle changes (a different size) and later gets replaced
        # atomically (same size, new inode), as update-ca-certificates does.
        write_bundle(bundle, old, new)
        both = truststore.SSLContext()
        assert [verdict(both, s) for s in (old_server, new_server)] == ["trusted"] * 2
        replacement = write_bundle(tmp_path / "bundle.new", new)
        os.replace(replacement, bundle)
        only_new = truststore.SSLContext()
        assert [verdict(only_new, s) for s in (old_server, new_server)] == [
            "rejected (20)",
            "trusted",
        ]
        # Contexts made earlier keep what they loaded.
        assert verdict(ctx, old_server) == "trusted"
        assert verdict(ctx, new_server) == "rejected (20)"


def test_hashed_directory_changes_are_seen_by_new_contexts(tmp_path: Path) -> None:
    first, second = trustme.CA(), trustme.CA()
    certs = write_hashed_dir(tmp_path / "certs", first)
    env = {"SSL_CERT_FILE": str(tmp_path / "no-bundle"), "SSL_CERT_DIR": str(certs)}
    with (
        environ(env),
        serve_cert(second.issue_cert("localhost")) as server,
    ):
        assert verdict(truststore.SSLContext(), server) == "rejected (20)"
        write_hashed_dir(certs, second)
        assert verdict(truststore.SSLContext(), server) == "trusted"


# -- nothing there -------------------------------------------------------------------


def test_nothing_loadable_fails_closed_naming_what_was_searched(tmp_path: Path) -> None:
    ca = trustme.CA()
    missing_file = tmp_path / "missing-bundle.pem"
    missing_dir = tmp_path / "missing-certs"
    with (
        environ({"SSL_CERT_FILE": str(missing_file), "SSL_CERT_DIR": str(missing_dir)}),
        serve_cert(ca.issue_cert("localhost")) as server,
    ):
        ctx = truststore.SSLContext()
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            fetch(ctx, server, "localhost")
        # The user chose these paths: no silent fallback to the distribution's.
        assert truststore._api.store_description().startswith("nothing loadable")
    message = str(info.value)
    assert str(missing_file) in message and str(missing_dir) in message
    assert "'localhost'" in message


def test_store_with_only_garbage_counts_as_empty(tmp_path: Path) -> None:
    garbage = tmp_path / "bundle.pem"
    garbage.write_bytes(b"not a certificate\n")
    plan = _openssl._plan_for(str(garbage), [str(tmp_path)], fallback_ok=False)
    assert plan.empty
    assert plan.searched == (str(tmp_path), str(garbage))


# -- the distribution fallback ---------------------------------------------------------


@pytest.fixture
def fake_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Point the fallback list at files under tmp_path (the list is data; the
    code that walks it is the real one)."""
    fallback_file = tmp_path / "distro" / "ca-certificates.crt"
    fallback_dir = tmp_path / "distro" / "certs"
    monkeypatch.setattr(
        _openssl,
        "FALLBACK_FILES",
        ((str(tmp_path / "distro" / "absent.pem"), "absent"), (str(fallback_file), "test")),
    )
    monkeypatch.setattr(_openssl, "FALLBACK_DIRS", ((str(fallback_dir), "test"),))
    return fallback_file, fallback_dir


def test_fallback_used_only_when_the_defaults_are_empty(
    tmp_path: Path, fake_fallbacks: tuple[Path, Path]
) -> None:
    fallback_file, fallback_dir = fake_fallbacks
    ca = trustme.CA()
    write_bundle(fallback_file, ca)
    write_hashed_dir(fallback_dir, ca)
    empty_default = str(tmp_path / "compiled-in" / "cert.pem")
    empty_dirs = [str(tmp_path / "compiled-in" / "certs")]

    plan = _openssl._plan_for(empty_default, empty_dirs, fallback_ok=True)
    assert not plan.empty
    # The fallback bundle's certificate is in the fallback directory under
    # its subject hash: looked up lazily, nothing loaded up front.
    assert plan.capath == str(fallback_dir)
    assert plan.cafile is None and plan.extra_der == ()
    assert plan.searched[:2] == (empty_dirs[0], empty_default)
    assert str(fallback_file) in plan.searched
    assert "distribution fallback" in plan.summary
    # A fallback bundle certificate the directory lacks is loaded.
    write_bundle(fallback_file, ca, trustme.CA())
    plan = _openssl._plan_for(empty_default, empty_dirs, fallback_ok=True)
    assert plan.capath == str(fallback_dir) and len(plan.extra_der) == 1

    # The user set SSL_CERT_FILE/SSL_CERT_DIR: their choice stands, even empty.
    plan = _openssl._plan_for(empty_default, empty_dirs, fallback_ok=False)
    assert plan.empty and plan.cafile is None and plan.capath is None
    assert str(fallback_file) not in plan.searched

    # Defaults that hold something: the fallback is not even looked at.
    real_default = write_bundle(tmp_path / "compiled-in" / "real.pem", trustme.CA())
    plan = _openssl._plan_for(str(real_default), empty_dirs, fallback_ok=True)
    # No directory covers it: OpenSSL's file loader, with the DER list as
    # the fallback should OpenSSL refuse the file.
    assert plan.cafile == str(real_default) and len(plan.extra_der) == 1
    assert str(fallback_file) not in plan.searched


def test_plan_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fallbacks: tuple[Path, Path]
) -> None:
    """current_plan() reads SSL_CERT_FILE/SSL_CERT_DIR like OpenSSL: set
    (even to an empty store) means explicit, and explicit means no fallback."""
    fallback_file, _ = fake_fallbacks
    write_bundle(fallback_file, trustme.CA())
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    assert _openssl.current_plan().empty
    monkeypatch.delenv("SSL_CERT_DIR")
    file, dirs, explicit = _openssl.default_locations()
    assert (file, explicit) == (str(tmp_path / "none.pem"), True)
    assert dirs == [d for d in ssl.get_default_verify_paths().openssl_capath.split(os.pathsep) if d]


def _mount_namespace_works() -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind / /mnt"], capture_output=True
    )
    return probe.returncode == 0


def test_fallback_end_to_end_when_openssl_defaults_are_empty(tmp_path: Path) -> None:
    """A Python whose OpenSSL looks in an empty place (python.org-style
    builds on a distribution): in a private mount namespace the compiled-in
    directory is hidden, and the distribution's bundle is found by the
    fallback list, for real, in a fresh interpreter."""
    if not _mount_namespace_works():
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    defaults = ssl.get_default_verify_paths()
    compiled_dir = Path(defaults.openssl_cafile).parent
    ca = trustme.CA()
    empty = tmp_path / "empty"
    empty.mkdir()
    distro = tmp_path / "etc-ssl"
    write_bundle(distro / "certs" / "ca-certificates.crt", ca)
    code = f"""
import socket, ssl, sys
sys.path[:0] = [{SRC!r}, {TESTS!r}]
import truststore
from truststore import _openssl
plan = _openssl.current_plan()
print("PLAN", plan.cafile, plan.empty)
ctx = truststore.SSLContext()
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
    print("VERIFIED", tls.version())
"""
    with serve_cert(ca.issue_cert("localhost")) as server:
        script = (
            f"mount --bind {empty} {compiled_dir} && mount --bind {distro} /etc/ssl && "
            f'exec "$0" -c "$1" "$2"'
        )
        env = scrubbed_environ()
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, sys.executable, code, str(server.port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "PLAN /etc/ssl/certs/ca-certificates.crt False" in result.stdout
        assert "VERIFIED" in result.stdout
        # Same namespace trick, but the user pointed SSL_CERT_FILE somewhere
        # empty: that choice is honoured and verification fails closed.
        env["SSL_CERT_FILE"] = str(tmp_path / "nothing.pem")
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, sys.executable, code, str(server.port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
        assert "nothing.pem" in result.stderr


# -- a distribution's hashed copy of the bundle (Fedora/RHEL directory-hash) ---------


@pytest.fixture
def substitute_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the substitute list at a directory under tmp_path (the list is
    data; the code that checks and uses it is the real one)."""
    path = tmp_path / "directory-hash"
    monkeypatch.setattr(_openssl, "SUBSTITUTE_DIRS", ((str(path), "test"),))
    return path


@pytest.mark.parametrize(
    "variant", ["same-as-bundle", "extra-ca", "misfiled", "group-writable", "crl-entry"]
)
def test_hashed_copy_of_the_bundle_is_used_only_when_it_adds_nothing(
    variant: str,
    tmp_path: Path,
    substitute_dir: Path,
    four_cas: tuple[list[trustme.CA], Servers],
) -> None:
    """OpenSSL's defaults name a bundle and a directory without hashed names
    (Fedora, RHEL); a hashed copy of the bundle elsewhere is looked up lazily
    only while every certificate it can give is one of the bundle's, filed
    under its own hash, in a directory only root or this user can write.
    Otherwise the bundle is loaded as the stdlib loads it."""
    (first, second, third, outsider), servers = four_cas
    bundle = write_bundle(tmp_path / "tls-ca-bundle.pem", first, second, third)
    write_hashed_dir(substitute_dir, first, second, third)
    substitute_dir.chmod(0o755)
    if variant == "extra-ca":
        write_hashed_dir(substitute_dir, outsider)
    elif variant == "misfiled":
        entry = next(p for p in sorted(substitute_dir.iterdir()) if p.name.endswith(".0"))
        entry.rename(substitute_dir / "00000000.0")
    elif variant == "group-writable":
        substitute_dir.chmod(0o775)
    elif variant == "crl-entry":
        (substitute_dir / "00000000.r0").write_bytes(b"")
    no_hashes = tmp_path / "certs"
    no_hashes.mkdir()
    with environ({"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(no_hashes)}):
        plan = _openssl.current_plan()
        ctx = truststore.SSLContext()
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _openssl.load_os_trust(probe)  # what the backend parses up front
        up_front = probe.cert_store_stats()["x509_ca"]
        ours = servers.verdicts(ctx)
        reference = servers.verdicts(stdlib_reference())
    assert ours == reference == ["trusted"] * 3 + ["rejected (20)"]
    if variant == "same-as-bundle":
        assert plan.capath == str(substitute_dir) and plan.cafile is None
        assert up_front == 0  # nothing parsed up front
    else:
        assert plan.capath is None and plan.cafile == str(bundle)
        assert up_front == 3


def test_hashed_copy_that_gains_a_ca_later_is_dropped(
    tmp_path: Path, substitute_dir: Path, four_cas: tuple[list[trustme.CA], Servers]
) -> None:
    (first, second, third, outsider), servers = four_cas
    bundle = write_bundle(tmp_path / "tls-ca-bundle.pem", first, second, third)
    write_hashed_dir(substitute_dir, first, second, third)
    substitute_dir.chmod(0o755)
    no_hashes = tmp_path / "certs"
    no_hashes.mkdir()
    with environ({"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(no_hashes)}):
        assert _openssl.current_plan().capath == str(substitute_dir)
        write_hashed_dir(substitute_dir, outsider)  # the bundle did not change
        assert _openssl.current_plan().capath is None
        assert servers.verdicts(truststore.SSLContext())[3] == "rejected (20)"


def test_same_subject_ca_only_in_the_directory_stays_untrusted(tmp_path: Path) -> None:
    """The bundle holds CA A; the hashed directory holds A and a twin with A's
    subject and another key (A.0, A.1).  The stdlib finds A in the bundle, so
    OpenSSL never looks that subject up in the directory and the twin is
    never trusted.  Leaving A to the look-up would load the twin with it:
    A must be loaded up front instead."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from certs import CA_KEY_USAGE, Issuer, new_key, new_root

    original = new_root()
    key = new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    twin_cert = (
        x509.CertificateBuilder()
        .subject_name(original.cert.subject)
        .issuer_name(original.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    twin = Issuer(twin_cert, key)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "original.pem").write_bytes(original.cert_pem)
    (certs / "twin.pem").write_bytes(twin.cert_pem)
    subprocess.run(["openssl", "rehash", str(certs)], check=True, capture_output=True)
    assert len([p for p in certs.iterdir() if p.is_symlink()]) == 2  # <hash>.0 and .1
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(original.cert_pem)
    servers = [
        TLSServer(leaf.chain_pem(), leaf.key_pem)
        for leaf in (original.issue("localhost"), twin.issue("localhost"))
    ]
    try:
        with environ({"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(certs)}):
            ours = [verdict(truststore.SSLContext(), server) for server in servers]
            reference = [verdict(stdlib_reference(), server) for server in servers]
    finally:
        for server in servers:
            server.close()
    assert ours == reference == ["trusted", "rejected (20)"]
