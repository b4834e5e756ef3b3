"""Distribution CA-store layouts, built as a tree to lay over ``/`` in a
private mount namespace (tests and benchmarks share this).

``build_layout(root, distro, pems)`` writes, under *root*, the files and
symbolic links a distribution's trust tools produce for the CA certificates
*pems* (PEM blocks), and returns where that distribution's OpenSSL looks.
``namespace_argv(layout, argv)`` wraps a command so that it runs with the
layout in place of this machine's store: overlay mounts (upper layer on a
private tmpfs) over ``/etc``, ``/var/lib`` and ``/usr/lib/ssl``, so nothing on
the real file systems changes; OpenSSL's compiled-in paths on this machine
(``/usr/lib/ssl/cert.pem`` and ``/usr/lib/ssl/certs``, Debian's OPENSSLDIR)
are pointed where that distribution's OpenSSL points.  Needs root and
unshare(1).

What each layout reproduces (paths and link structure as the tools make them;
``openssl rehash`` names the hashed entries, as c_rehash/p11-kit do):

* ``debian``: update-ca-certificates: ``/etc/ssl/certs/<name>.pem`` plus
  ``<hash>.0`` links, bundle ``/etc/ssl/certs/ca-certificates.crt``;
  OpenSSL: file ``/usr/lib/ssl/cert.pem`` -> that bundle, dir ``/usr/lib/ssl/certs``
  -> ``/etc/ssl/certs``.
* ``fedora`` (also RHEL 9, CentOS Stream): update-ca-trust (p11-kit):
  ``/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem`` (``# label`` comment
  lines), ``.../pem/directory-hash/<Label>.pem`` plus ``<hash>.0`` links;
  ``/etc/pki/tls/cert.pem`` and ``/etc/pki/tls/certs/ca-bundle.crt`` link to the
  bundle; ``/etc/ssl/certs`` -> ``../pki/tls/certs``.  OpenSSL (OPENSSLDIR
  ``/etc/pki/tls``): file ``/etc/pki/tls/cert.pem``, dir ``/etc/pki/tls/certs``
  (no hashed names there).
* ``opensuse``: update-ca-certificates: ``/var/lib/ca-certificates/ca-bundle.pem``,
  ``/var/lib/ca-certificates/pem/<name>.pem`` plus ``<hash>.0`` links,
  ``/etc/ssl/certs`` -> ``/var/lib/ca-certificates/pem``, ``/etc/ssl/ca-bundle.pem``
  -> the bundle.  OpenSSL (OPENSSLDIR ``/etc/ssl``): dir ``/etc/ssl/certs``,
  file ``/etc/ssl/cert.pem`` (not shipped).
* ``alpine``: update-ca-certificates: ``/etc/ssl/certs/ca-cert-<name>.pem`` plus
  ``<hash>.0`` links, bundle ``/etc/ssl/certs/ca-certificates.crt``,
  ``/etc/ssl/cert.pem`` -> ``certs/ca-certificates.crt``.  OpenSSL: ``/etc/ssl``.
* ``arch``: update-ca-trust (p11-kit): ``/etc/ca-certificates/extracted/tls-ca-bundle.pem``,
  ``.../extracted/cadir/<Label>.pem`` plus ``<hash>.0`` links; ``/etc/ssl/certs``
  holds links to those and its own ``<hash>.0`` links, ``ca-certificates.crt``
  -> the bundle; ``/etc/ssl/cert.pem`` -> the bundle.  OpenSSL: ``/etc/ssl``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

DISTROS = ("debian", "fedora", "opensuse", "alpine", "arch")

# Directories replaced wholesale by the layout (inside the namespace only).
_REPLACED = ("/etc/ssl", "/etc/pki", "/var/lib/ca-certificates", "/etc/ca-certificates")

NAMESPACE_SCRIPT = r"""
set -eu
stage=$1; cafile=$2; capath=$3; shift 3
scratch=$(mktemp -d)
mount -t tmpfs -o mode=0700 tmpfs "$scratch"
for dir in /etc /var/lib /usr/lib/ssl; do
    mkdir -p "$scratch/upper$dir" "$scratch/work$dir"
    mount -t overlay overlay \
        -o "lowerdir=$dir,upperdir=$scratch/upper$dir,workdir=$scratch/work$dir" "$dir"
    mountpoint -q "$dir" || exit 99
done
[ -f /etc/ssl/openssl.cnf ] && cp /etc/ssl/openssl.cnf "$scratch/openssl.cnf"
rm -rf /etc/ssl /etc/pki /var/lib/ca-certificates /etc/ca-certificates
cp -a "$stage/." /
if [ -f "$scratch/openssl.cnf" ] && [ ! -e /etc/ssl/openssl.cnf ]; then
    mkdir -p /etc/ssl && cp "$scratch/openssl.cnf" /etc/ssl/openssl.cnf
fi
ln -sfn "$cafile" /usr/lib/ssl/cert.pem
ln -sfn "$capath" /usr/lib/ssl/certs
exec "$@"
"""


def _rehash(directory: Path) -> None:
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)


def _label(index: int) -> str:
    return f"Test Root {index:03d}"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def build_layout(root: Path, distro: str, pems: list[bytes]) -> dict[str, str]:
    """Write *distro*'s CA-store layout for *pems* under *root* (a tree that
    mirrors ``/``).  Returns ``stage`` (the tree), ``openssl_cafile`` and
    ``openssl_capath`` (where that distribution's OpenSSL looks by default),
    ``bundle`` (the bundle's real path) and ``lazy_dir`` (the hashed directory
    a correct backend should look up lazily, as a path seen from ``/``)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    bundle = b"".join(pems)
    if distro == "debian":
        certs = root / "etc/ssl/certs"
        for index, pem in enumerate(pems):
            _write(certs / f"test-root-{index:03d}.pem", pem)
        _write(certs / "ca-certificates.crt", bundle)
        _rehash(certs)
        return {
            "stage": str(root),
            "openssl_cafile": "/etc/ssl/certs/ca-certificates.crt",
            "openssl_capath": "/etc/ssl/certs",
            "bundle": "/etc/ssl/certs/ca-certificates.crt",
            "lazy_dir": "/usr/lib/ssl/certs",
        }
    if distro == "fedora":
        pem_dir = root / "etc/pki/ca-trust/extracted/pem"
        labelled = b"".join(f"# {_label(i)}\n".encode() + pem for i, pem in enumerate(pems))
        _write(pem_dir / "tls-ca-bundle.pem", labelled)
        hashed = pem_dir / "directory-hash"
        for index, pem in enumerate(pems):
            _write(hashed / f"{_label(index)}.pem", pem)
        _rehash(hashed)
        _link(root / "etc/pki/tls/cert.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")
        _link(
            root / "etc/pki/tls/certs/ca-bundle.crt",
            "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        )
        _link(root / "etc/ssl/certs", "../pki/tls/certs")
        return {
            "stage": str(root),
            "openssl_cafile": "/etc/pki/tls/cert.pem",
            "openssl_capath": "/etc/pki/tls/certs",
            "bundle": "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            "lazy_dir": "/etc/pki/ca-trust/extracted/pem/directory-hash",
        }
    if distro == "opensuse":
        var = root / "var/lib/ca-certificates"
        _write(var / "ca-bundle.pem", bundle)
        for index, pem in enumerate(pems):
            _write(var / "pem" / f"test-root-{index:03d}.pem", pem)
        _rehash(var / "pem")
        _link(root / "etc/ssl/certs", "/var/lib/ca-certificates/pem")
        _link(root / "etc/ssl/ca-bundle.pem", "/var/lib/ca-certificates/ca-bundle.pem")
        return {
            "stage": str(root),
            "openssl_cafile": "/etc/ssl/cert.pem",
            "openssl_capath": "/etc/ssl/certs",
            "bundle": "/var/lib/ca-certificates/ca-bundle.pem",
            "lazy_dir": "/usr/lib/ssl/certs",
        }
    if distro == "alpine":
        certs = root / "etc/ssl/certs"
        for index, pem in enumerate(pems):
            _write(certs / f"ca-cert-test-root-{index:03d}.pem", pem)
        _write(certs / "ca-certificates.crt", bundle)
        _rehash(certs)
        _link(root / "etc/ssl/cert.pem", "certs/ca-certificates.crt")
        return {
            "stage": str(root),
            "openssl_cafile": "/etc/ssl/cert.pem",
            "openssl_capath": "/etc/ssl/certs",
            "bundle": "/etc/ssl/certs/ca-certificates.crt",
            "lazy_dir": "/usr/lib/ssl/certs",
        }
    if distro == "arch":
        extracted = root / "etc/ca-certificates/extracted"
        labelled = b"".join(f"# {_label(i)}\n".encode() + pem for i, pem in enumerate(pems))
        _write(extracted / "tls-ca-bundle.pem", labelled)
        certs = root / "etc/ssl/certs"
        for index, pem in enumerate(pems):
            name = f"{_label(index)}.pem"
            _write(extracted / "cadir" / name, pem)
            _link(certs / name, f"../../ca-certificates/extracted/cadir/{name}")
        _rehash(extracted / "cadir")
        _rehash(certs)
        _link(certs / "ca-certificates.crt", "../../ca-certificates/extracted/tls-ca-bundle.pem")
        _link(root / "etc/ssl/cert.pem", "../ca-certificates/extracted/tls-ca-bundle.pem")
        return {
            "stage": str(root),
            "openssl_cafile": "/etc/ssl/cert.pem",
            "openssl_capath": "/etc/ssl/certs",
            "bundle": "/etc/ca-certificates/extracted/tls-ca-bundle.pem",
            "lazy_dir": "/usr/lib/ssl/certs",
        }
    raise ValueError(f"unknown distribution {distro!r}; one of {', '.join(DISTROS)}")


def namespace_argv(layout: dict[str, str], argv: list[str]) -> list[str]:
    """*argv* run inside a private mount namespace with *layout* in place."""
    return [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "bash",
        "-c",
        NAMESPACE_SCRIPT,
        "layout",
        layout["stage"],
        layout["openssl_cafile"],
        layout["openssl_capath"],
        *argv,
    ]


def namespaces_available() -> str | None:
    """None when layouts can be mounted here, else why not."""
    if os.uname().sysname != "Linux" or os.geteuid() != 0:
        return "needs root on Linux (mount namespace, overlay mounts)"
    for tool in ("unshare", "openssl", "mountpoint"):
        if shutil.which(tool) is None:
            return f"not installed: {tool}"
    if not Path("/usr/lib/ssl").is_dir():
        return "this machine's OpenSSL directory is not /usr/lib/ssl"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if probe.returncode:
        return f"no mount namespaces here: {probe.stderr.strip()}"
    return None
