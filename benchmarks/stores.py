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
