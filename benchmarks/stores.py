"""Certificate material and the "OS stores" the benchmarks point OpenSSL at.

An OS store, as OpenSSL sees it, is a PEM bundle (``SSL_CERT_FILE``) plus a
directory of certificates named by subject hash (``SSL_CERT_DIR``), which is
what ``update-ca-certificates`` maintains on Debian and Ubuntu.  The stores
made here have the same shape, with ``openssl rehash`` doing the naming.

Everything expensive (the benchmark CA, thousands of filler CAs, stores with
10,000 hashed entries) is cached on disk under the cache directory and
reused while its inputs are unchanged.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import trustme

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.DOTALL
)
MACHINE_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def split_pem(data: bytes) -> list[bytes]:
    """The CERTIFICATE blocks of a PEM bundle, each ending in a newline."""
    blocks = []
    for match in _PEM_CERT.finditer(data):
        block = match.group(0)
        blocks.append(block if block.endswith(b"\n") else block + b"\n")
    return blocks


def machine_bundle(fallback: str) -> tuple[str, list[bytes]]:
    """This machine's CA bundle (path, certificates); *fallback* (certifi's
    bundle) when the machine has none, so the store is still ~140 CAs."""
    for path in (*MACHINE_BUNDLES, fallback):
        try:
            blocks = split_pem(Path(path).read_bytes())
        except OSError:
            continue
        if blocks:
            return path, blocks
    raise RuntimeError("no CA bundle found on this machine, not even certifi's")


def require_openssl_cli() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise RuntimeError("the `openssl` command is needed (openssl rehash); install openssl")
    return found


def write_store(directory: Path, pems: list[bytes]) -> dict[str, str]:
    """Write *pems* as a bundle and as a hashed directory under *directory*.

    Returns the paths: ``bundle`` (all certificates in one file), ``hashed``
    (one file per certificate plus ``openssl rehash`` links), ``empty`` (a
    directory with nothing in it) and ``missing`` (a file name that does not
    exist), from which the callers build SSL_CERT_FILE/SSL_CERT_DIR pairs.
    """
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "bundle.pem"
    bundle.write_bytes(b"".join(pems))
    hashed = directory / "hashed"
    if hashed.exists():
        shutil.rmtree(hashed)
    hashed.mkdir()
    for index, pem in enumerate(pems):
        (hashed / f"ca-{index:05d}.pem").write_bytes(pem)
    subprocess.run(
        [require_openssl_cli(), "rehash", str(hashed)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    empty = directory / "empty"
    empty.mkdir(exist_ok=True)
    return {
        "bundle": str(bundle),
        "hashed": str(hashed),
        "empty": str(empty),
        "missing": str(directory / "no-such-bundle.pem"),
    }


def cached_store(cache: Path, name: str, pems: list[bytes]) -> dict[str, str]:
    """``write_store`` once per distinct content; later runs reuse it."""
    digest = hashlib.sha256(b"".join(pems)).hexdigest()[:16]
    directory = cache / "stores" / f"{name}-{digest}"
    marker = directory / ".complete"
    if marker.exists():
        return {
            "bundle": str(directory / "bundle.pem"),
            "hashed": str(directory / "hashed"),
            "empty": str(directory / "empty"),
            "missing": str(directory / "no-such-bundle.pem"),
        }
    parent = cache / "stores"
    if parent.exists():  # drop stale stores of the same name (old test CA)
        for old in parent.glob(f"{name}-*"):
            shutil.rmtree(old, ignore_errors=True)
    paths = write_store(directory, pems)
    marker.write_text("ok\n")
    return paths


def benchmark_ca(cache: Path) -> trustme.CA:
    """The CA every benchmark server's certificate chains to.

    Cached (trustme CAs are valid for decades) so that the big stores that
    contain it need not be rebuilt on every run; leaves are issued per run.
    """
    directory = cache / "cas"
    cert_path = directory / "bench-ca.pem"
    key_path = directory / "bench-ca.key"
    if cert_path.exists() and key_path.exists():
        try:
            return trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
        except Exception:
            pass  # unreadable: make a new one
    ca = trustme.CA(organization_name="truststore-auto benchmarks")
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(key_path, ca.private_key_pem.bytes())
    _write_atomic(cert_path, ca.cert_pem.bytes())
    return ca


def filler_cas(cache: Path, count: int) -> list[bytes]:
    """*count* distinct self-signed CA certificates (EC P-256), cached.

    They are never used to sign anything: they are the other CAs of a big
    store, which OpenSSL must parse (bundle) or skip (hashed directory).
    """
    directory = cache / "cas"
    directory.mkdir(parents=True, exist_ok=True)
    best: list[bytes] = []
    for existing in directory.glob("fillers-*.pem"):
        blocks = split_pem(existing.read_bytes())
        if len(blocks) >= count and (not best or len(blocks) < len(best)):
            best = blocks
    if best:
        return best[:count]
    blocks = _make_fillers(count)
    for old in directory.glob("fillers-*.pem"):
        old.unlink()
    _write_atomic(directory / f"fillers-{count}.pem", b"".join(blocks))
    return blocks


def _make_fillers(count: int) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    blocks = []
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "truststore-auto benchmark fillers"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Filler CA {index:05d}"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        blocks.append(cert.public_bytes(serialization.Encoding.PEM))
    return blocks


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# -- distribution layouts, realised in a private mount namespace ----------------
#
# Where a distribution keeps its store, and where its OpenSSL build looks by
# default, decides what bare Python pays per context and what the product can
# do lazily.  A layout is reproduced for one process at a time: the
# orchestrator prepares the files under the run's work directory, and
# ``layout_command()`` starts the measured process under ``unshare --mount``,
# where a small shell script mounts them over the real paths (bind mounts
# over directories that exist here, a read-only overlay over the parent of
# those that do not, e.g. /etc/pki on a Debian host).  Nothing outside the
# namespace changes: the real /etc is never written.
#
# This machine's OpenSSL has its own compiled-in defaults (``OPENSSLDIR``,
# /usr/lib/ssl on Debian); the layout points those default names (cert.pem and
# certs, as ``ssl.get_default_verify_paths()`` reports them) at the files the
# distribution's OpenSSL build would read, the way Debian's own /usr/lib/ssl
# is a set of links into /etc/ssl.  SSL_CERT_FILE/SSL_CERT_DIR stay unset, so
# bare Python and the product see the layout exactly as on the distribution.


class LayoutSpec:
    """One distribution's store: the files it ships and what its OpenSSL
    build reads by default (``default_cafile`` may be a path that does not
    exist there, as on openSUSE)."""

    def __init__(
        self,
        name: str,
        label: str,
        default_cafile: str,
        default_capath: str,
        describe: str,
    ) -> None:
        self.name = name
        self.label = label
        self.default_cafile = default_cafile
        self.default_capath = default_capath
        self.describe = describe


LAYOUTS = {
    "debian": LayoutSpec(
        "debian",
        "Debian/Ubuntu",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/certs",
        "/etc/ssl/certs: one PEM file per CA, `openssl rehash` links and the bundle "
        "ca-certificates.crt (update-ca-certificates); OpenSSL defaults: "
        "cert.pem -> /etc/ssl/certs/ca-certificates.crt, certs -> /etc/ssl/certs",
    ),
    "fedora": LayoutSpec(
        "fedora",
        "Fedora/RHEL",
        "/etc/pki/tls/cert.pem",
        "/etc/pki/tls/certs",
        "bundle /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem, the same CAs hashed in "
        "/etc/pki/ca-trust/extracted/pem/directory-hash/ (update-ca-trust); OpenSSL "
        "defaults: /etc/pki/tls/cert.pem -> the bundle, /etc/pki/tls/certs holding only "
        "ca-bundle.crt -> the bundle (no hashed names); /etc/ssl/certs -> /etc/pki/tls/certs",
    ),
    "opensuse": LayoutSpec(
        "opensuse",
        "openSUSE/SLES",
        "/etc/ssl/cert.pem",
        "/etc/ssl/certs",
        "bundle /var/lib/ca-certificates/ca-bundle.pem (/etc/ssl/ca-bundle.pem links to it), "
        "hashed PEM directory /var/lib/ca-certificates/pem (/etc/ssl/certs links to it), "
        "hashed TRUSTED CERTIFICATE directory /var/lib/ca-certificates/openssl; OpenSSL "
        "defaults: /etc/ssl/cert.pem (absent), /etc/ssl/certs",
    ),
}


def _hashed_dir(directory: Path, pems: list[bytes], suffix: str = ".pem") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, pem in enumerate(pems):
        (directory / f"ca-{index:05d}{suffix}").write_bytes(pem)
    subprocess.run(
        [require_openssl_cli(), "rehash", str(directory)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def _trusted_certificates(pems: list[bytes]) -> list[bytes]:
    """The same CAs as OpenSSL TRUSTED CERTIFICATE blocks (serverAuth), the
    form p11-kit writes to openSUSE's /var/lib/ca-certificates/openssl."""
    found = []
    for pem in pems:
        out = subprocess.run(
            [require_openssl_cli(), "x509", "-addtrust", "serverAuth", "-trustout"],
            input=pem,
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
        found.append(out)
    return found


def _layout_files(name: str, root: Path, pems: list[bytes]) -> None:
    """Write the distribution's store under *root* (a stand-in for /)."""

    def link(path: str, target: str) -> None:
        where = root / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, where)

    bundle = b"".join(pems)
    if name == "debian":
        certs = root / "etc/ssl/certs"
        _hashed_dir(certs, pems)
        (certs / "ca-certificates.crt").write_bytes(bundle)
    elif name == "fedora":
        pem = root / "etc/pki/ca-trust/extracted/pem"
        pem.mkdir(parents=True)
        (pem / "tls-ca-bundle.pem").write_bytes(bundle)
        _hashed_dir(pem / "directory-hash", pems)
        link("/etc/pki/tls/cert.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")
        link(
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        )
        link("/etc/ssl/certs", "/etc/pki/tls/certs")
        link("/etc/ssl/cert.pem", "/etc/pki/tls/cert.pem")
    elif name == "opensuse":
        var = root / "var/lib/ca-certificates"
        var.mkdir(parents=True)
        (var / "ca-bundle.pem").write_bytes(bundle)
        _hashed_dir(var / "pem", pems)
        _hashed_dir(var / "openssl", _trusted_certificates(pems))
        link("/etc/ssl/certs", "/var/lib/ca-certificates/pem")
        link("/etc/ssl/ca-bundle.pem", "/var/lib/ca-certificates/ca-bundle.pem")
    else:
        raise ValueError(name)


def _place(root: Path, path: str, target: str) -> None:
    """Make *path* (under *root*) a link to *target*, unless it is *target*."""
    if path == target:
        return
    where = root / path.lstrip("/")
    if where.is_dir() and not where.is_symlink():
        shutil.rmtree(where)
    elif where.is_symlink() or where.exists():
        where.unlink()
    where.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, where)


_CERT_LIKE = re.compile(r"(^[0-9a-f]{8}\.r?[0-9]+$)|(\.(pem|crt|cer)$)")


def _copy_host_entries(host: Path, staged: Path) -> None:
    """Keep what else lives in a host directory the layout replaces
    (openssl.cnf, ...): symlinks and small regular files that are not
    certificates; never subdirectories (no private keys are copied)."""
    try:
        entries = list(host.iterdir())
    except OSError:
        return
    for entry in entries:
        target = staged / entry.name
        if target.exists() or target.is_symlink() or _CERT_LIKE.search(entry.name):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_file() and entry.stat().st_size < (1 << 20):
            shutil.copy2(entry, target)


def _is_real_dir(path: str | Path) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def build_layout(
    name: str, directory: Path, pems: list[bytes], default_paths: tuple[str, str]
) -> Path:
    """Prepare layout *name* holding *pems* under *directory*; return the
    shell script that mounts it (run as ``unshare --mount sh SCRIPT cmd...``).

    *default_paths* is (openssl_cafile, openssl_capath) of the measured
    interpreter's OpenSSL: these names are pointed at the layout's defaults.
    """
    spec = LAYOUTS[name]
    shutil.rmtree(directory, ignore_errors=True)
    root = directory / "root"
    root.mkdir(parents=True)
    _layout_files(name, root, pems)
    default_file, default_dir = default_paths
    _place(root, default_file, spec.default_cafile)
    _place(root, default_dir, spec.default_capath)

    # Staged directories are matched with the host's, top down.  A staged
    # tree the host lacks (/etc/pki on Debian) is added by a read-only
    # overlay of its parent; a host directory that gets files of the layout
    # is replaced whole by a bind mount (its other entries, such as
    # openssl.cnf, are copied in), so no host certificate shows through.
    mounts: list[tuple[str, str]] = []
    layers: dict[str, Path] = {}

    def walk(staged: Path, real: str) -> None:
        for entry in sorted(staged.iterdir()):
            real_path = os.path.join(real, entry.name)
            if not os.path.lexists(real_path):
                layer = layers.setdefault(
                    real, directory / "layers" / (real.strip("/").replace("/", "_") or "root")
                )
                layer.mkdir(parents=True, exist_ok=True)
                os.rename(entry, layer / entry.name)
            elif _is_real_dir(real_path) and _is_real_dir(entry):
                if all(_is_real_dir(child) for child in entry.iterdir()):
                    walk(entry, real_path)
                else:
                    _copy_host_entries(Path(real_path), entry)
                    mounts.append((real_path, f"mount --bind '{entry}' '{real_path}'"))
            else:
                raise RuntimeError(
                    f"layout {name}: {real_path} is not a directory here; cannot stage it"
                )

    walk(root, "/")
    for real, layer in layers.items():
        mounts.append(
            (real, f"mount -t overlay bench-layout -o 'lowerdir={layer}:{real}' '{real}'")
        )
    mounts.sort(key=lambda item: item[0].rstrip("/").count("/"))
    script = directory / "enter.sh"
    script.write_text(
        "\n".join(["#!/bin/sh", "set -e", *(line for _, line in mounts), 'exec "$@"']) + "\n"
    )
    return script


def namespace_prefix() -> tuple[list[str] | None, str]:
    """The command prefix that starts a process in a private mount
    namespace (root: ``unshare --mount``; otherwise a user namespace that maps
    the caller to root), or None and the reason it is not available."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "no `unshare` command"
    candidates = [[unshare, "--mount", "--propagation", "private"]]
    if os.geteuid() != 0:
        candidates = [[unshare, "--user", "--map-root-user", "--mount", "--propagation", "private"]]
    reason = ""
    with tempfile.TemporaryDirectory(prefix="bench-ns-") as target:
        for prefix in candidates:
            probe = subprocess.run(
                [
                    *prefix,
                    "sh",
                    "-c",
                    f"mount -t tmpfs bench-probe '{target}' && umount '{target}'",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if probe.returncode == 0:
                return prefix, ""
            reason = (probe.stderr or probe.stdout).strip()[:200]
    return None, f"cannot make a mount namespace: {reason}"
