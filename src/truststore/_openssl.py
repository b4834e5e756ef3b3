"""Linux/BSD backend: the OS trust store is an OpenSSL store.

On these systems the store the administrator manages (``update-ca-certificates``,
``update-ca-trust``, ...) is a PEM bundle plus, on many distributions, a
directory of certificates named by subject hash.  OpenSSL verifies against it
during the handshake; this module only decides, once per context, what to
load into the context so that the trust set is exactly what
``SSLContext.set_default_verify_paths()`` would give, without its cost.

Why not simply call ``set_default_verify_paths()``?  It parses the whole
bundle (about 140 certificates, ~25 ms with OpenSSL 3) for every context, and
urllib3 makes a context per connection.  A hashed directory gives the same
certificates lazily: OpenSSL opens ``<subject-hash>.N`` only when a chain needs
that issuer.  So the bundle is read once per process (and again only when it
changes on disk), and only the certificates it holds that the hashed
directories lack are loaded eagerly.  On Debian and Ubuntu, where
``update-ca-certificates`` writes both from the same source, that is none.
"""

from __future__ import annotations

import _ssl
import base64
import binascii
import os
import re
import ssl
import threading
from typing import NamedTuple

# Where distributions keep their bundle when the Python's OpenSSL was built
# with other defaults (python.org-style builds, manylinux, conda-less
# static builds).  Used only when OpenSSL's own defaults hold nothing and the
# user set neither SSL_CERT_FILE nor SSL_CERT_DIR.  Collected from Go's
# crypto/x509 (root_linux.go, root_bsd.go) and the public truststore package.
FALLBACK_FILES: tuple[tuple[str, str], ...] = (
    ("/etc/ssl/certs/ca-certificates.crt", "Debian, Ubuntu, Gentoo, Arch, Alpine"),
    ("/etc/pki/tls/certs/ca-bundle.crt", "Fedora, RHEL, CentOS (legacy name)"),
    ("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "Fedora, RHEL 7+, CentOS 7+"),
    ("/etc/pki/tls/cert.pem", "Fedora <= 34, RHEL <= 9"),
    ("/etc/ssl/ca-bundle.pem", "openSUSE, SLES"),
    ("/etc/pki/tls/cacert.pem", "OpenELEC"),
    ("/etc/ssl/cert.pem", "Alpine, Arch, OpenBSD, Void"),
    ("/usr/local/etc/ssl/cert.pem", "FreeBSD"),
    ("/usr/local/share/certs/ca-root-nss.crt", "DragonFly BSD, FreeBSD (ca_root_nss)"),
    ("/etc/openssl/certs/ca-certificates.crt", "NetBSD"),
)
FALLBACK_DIRS: tuple[tuple[str, str], ...] = (
    ("/etc/ssl/certs", "Debian, Ubuntu, SLES 10/11 (hashed)"),
    ("/etc/pki/tls/certs", "Fedora, RHEL"),
    ("/system/etc/security/cacerts", "Android"),
)

# ``c_rehash`` / ``openssl rehash`` names: 8 hex digits of the subject hash,
# a dot, a collision counter.  OpenSSL's directory lookup opens only these.
_HASHED_NAME = re.compile(r"^[0-9a-f]{8}\.[0-9]+$")
# The body excludes "-": base64 has none, so a block whose END line is missing
# cannot swallow the next BEGIN and the good certificate after it.
_PEM_BODY = re.compile(rb"-----BEGIN CERTIFICATE-----([^-]*)-----END CERTIFICATE-----")
_ANY_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


class StorePlan(NamedTuple):
    """What to load into each client context, decided once per on-disk state."""

    capath: str | None  # hashed directories, os.pathsep-joined, looked up lazily
    cafile: str | None  # a bundle for OpenSSL's own loader (nothing of it in a directory)
    extra_der: tuple[bytes, ...]  # bundle certificates the directories lack (or the
    # whole bundle, as the fallback when OpenSSL refuses ``cafile``)
    summary: str  # one line for ``truststore status``
    searched: tuple[str, ...]  # every location looked at, for error messages
    empty: bool  # nothing at all could be loaded


_plan_lock = threading.Lock()
_plan_cache: dict[tuple[object, ...], StorePlan] = {}
_last_plan: StorePlan | None = None


def _stat_key(path: str) -> tuple[object, ...]:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (path, None)
    return (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)


def default_locations() -> tuple[str | None, list[str], bool]:
    """OpenSSL's default bundle and directories, as X509_STORE_set_default_paths
    reads them: the environment variable if set (even to ""), else the
    compiled-in default.  Returns (file, dirs, user_chose_explicitly)."""
    paths = ssl.get_default_verify_paths()
    env_file = os.environ.get(paths.openssl_cafile_env)
    env_dir = os.environ.get(paths.openssl_capath_env)
    cafile = env_file if env_file is not None else paths.openssl_cafile
    capath = env_dir if env_dir is not None else paths.openssl_capath
    dirs = [d for d in (capath or "").split(os.pathsep) if d]
    return (cafile or None), dirs, (env_file is not None or env_dir is not None)


def _hashed_names(directory: str) -> list[str] | None:
    """The entries OpenSSL's lazy look-up can open in *directory*.

    None when the directory cannot be listed or has no hashed names (then a
    look-up there would find nothing).
    """
    try:
        names = [n for n in os.listdir(directory) if _HASHED_NAME.match(n)]
    except (OSError, ValueError):
        return None
    return names or None


def _hashed_bodies(directory: str, names: list[str]) -> set[bytes]:
    """The certificates behind *names*, as base64 bodies without white space."""
    bodies: set[bytes] = set()
    for name in names:
        try:
            with open(os.path.join(directory, name), "rb") as f:
                data = f.read(1 << 20)
        except (OSError, ValueError):
            continue
        for match in _PEM_BODY.finditer(data):
            bodies.add(b"".join(match.group(1).split()))
    return bodies


def _read_bundle(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(64 << 20)
    except (OSError, ValueError):
        return None


def _bundle_bodies(data: bytes) -> list[bytes] | None:
    """The bundle's certificates as base64 bodies, or None when it holds
    anything but plain CERTIFICATE blocks (TRUSTED CERTIFICATE trust
    settings, CRLs, ...), whose meaning only OpenSSL itself gives exactly."""
    if set(_ANY_PEM_BEGIN.findall(data)) - {b"CERTIFICATE"}:
        return None
    return [b"".join(body.split()) for body in _PEM_BODY.findall(data)]


def _plan_for(cafile: str | None, dirs: list[str], fallback_ok: bool) -> StorePlan:
    searched: list[str] = [*dirs] + ([cafile] if cafile is not None else [])
    summary: list[str] = []

    bodies: list[bytes] | None = []
    if cafile is not None:
        data = _read_bundle(cafile)
        bodies = _bundle_bodies(data) if data else []

    lazy_dirs: list[str] = []
    covered: set[bytes] = set()
    for directory in dirs:
        names = _hashed_names(directory)
        if names is None:
            continue
        lazy_dirs.append(directory)
        summary.append(f"directory {directory} ({len(names)} hashed entries, looked up lazily)")
        # Reading the entries only pays when there is a bundle to compare.
        if bodies and not covered.issuperset(bodies):
            covered |= _hashed_bodies(directory, names)

    whole_file: str | None = None
    extra: list[bytes] = []
    if cafile is not None and bodies is None:
        whole_file = cafile
        summary.append(f"file {cafile} (loaded whole)")
    elif cafile is not None and bodies:
        damaged = 0
        for body in bodies:
            if body in covered:
                continue
            try:
                extra.append(base64.b64decode(body, validate=True))
            except (binascii.Error, ValueError):
                damaged += 1  # must not cost the good certificates their trust
        if extra and len(extra) == len(bodies):
            # Nothing is covered by a directory and nothing is damaged:
            # OpenSSL's own file loader is the fastest way in; the DER list
            # stays as the fallback should OpenSSL refuse the file.
            whole_file = cafile
        summary.append(
            f"file {cafile} ({len(bodies)} certificates, {len(extra)} not in a hashed directory"
            + (f", {damaged} damaged and skipped)" if damaged else ")")
        )

    empty = not lazy_dirs and whole_file is None and not extra
    if empty and fallback_ok:
        for path, _distro in FALLBACK_FILES:
            if path in searched:
                continue
            searched.append(path)
            data = _read_bundle(path)
            if data and b"-----BEGIN CERTIFICATE-----" in data:
                whole_file = path
                summary.append(f"file {path} (distribution fallback)")
                break
        for directory, _distro in FALLBACK_DIRS:
            if directory in searched:
                continue
            searched.append(directory)
            if _hashed_names(directory) is not None:
                lazy_dirs.append(directory)
                summary.append(f"directory {directory} (distribution fallback, lazy)")
        empty = not lazy_dirs and whole_file is None

    return StorePlan(
        capath=os.pathsep.join(lazy_dirs) or None,
        cafile=whole_file,
        extra_der=tuple(extra),
        summary="; ".join(summary) if summary else "nothing found",
        searched=tuple(searched),
        empty=empty,
    )


def current_plan() -> StorePlan:
    """The plan for the store as it is on disk now (cached per disk state)."""
    global _last_plan
    cafile, dirs, explicit = default_locations()
    key = (
        (_stat_key(cafile) if cafile else None),
        tuple(_stat_key(d) for d in dirs),
        explicit,
    )
    with _plan_lock:
        plan = _plan_cache.get(key)
    if plan is None:
        plan = _plan_for(cafile, dirs, fallback_ok=not explicit)
        with _plan_lock:
            if len(_plan_cache) > 16:
                _plan_cache.clear()
            _plan_cache[key] = plan
    _last_plan = plan
    return plan


def _load_der_list(ctx: ssl.SSLContext, ders: tuple[bytes, ...]) -> None:
    load = _ssl._SSLContext.load_verify_locations
    try:
        load(ctx, None, None, b"".join(ders))
    except ssl.SSLError:
        # One malformed certificate must not cost the others their trust.
        for der in ders:
            try:
                load(ctx, None, None, der)
            except ssl.SSLError:
                continue


def load_os_trust(ctx: ssl.SSLContext, plan: StorePlan | None = None) -> bool:
    """Load the OS store into *ctx* (as *plan* found it, default: as it is
    now); False when nothing could be loaded.

    Calls the C-level loader so that no subclass override runs here.
    """
    if plan is None:
        plan = current_plan()
    load = _ssl._SSLContext.load_verify_locations
    if plan.capath:
        load(ctx, None, plan.capath, None)
    if plan.cafile:
        try:
            load(ctx, plan.cafile, None, None)
        except (ssl.SSLError, OSError):
            # Changed on disk since it was planned, or OpenSSL refuses a
            # block our parser accepted: fall back to the certificates one
            # by one.
            if plan.extra_der:
                _load_der_list(ctx, plan.extra_der)
    elif plan.extra_der:
        _load_der_list(ctx, plan.extra_der)
    return not plan.empty


def describe_store() -> str:
    """Where the store was found, for ``truststore status`` and errors."""
    plan = current_plan()
    if plan.empty:
        return "nothing loadable; searched " + ", ".join(plan.searched)
    return plan.summary


# -- the store's content (for _trust: "public root", and what contexts report) --

_content_lock = threading.Lock()
_content_cache: dict[tuple[object, ...], tuple[bytes, ...]] = {}


def store_certificates() -> tuple[tuple[object, ...], tuple[bytes, ...]]:
    """The OS store's bundle certificates as DER, with the disk state they
    were read from; used (once per state) to recognise publicly trusted
    roots.  The hashed directories are not read: distributions generate
    them from the same source as the bundle, and a CA only a directory
    holds merely counts as "not public", i.e. trusted as given where a
    program hands it over, which it is anyway."""
    cafile, _dirs, explicit = default_locations()
    plan = current_plan()
    files = [f for f in (cafile, plan.cafile) if f]
    key = (tuple(_stat_key(f) for f in files), explicit)
    with _content_lock:
        known = _content_cache.get(key)
    if known is not None:
        return key, known
    bodies: list[bytes] = []
    for path in dict.fromkeys(files):
        data = _read_bundle(path)
        if data:
            bodies.extend(b"".join(body.split()) for body in _PEM_BODY.findall(data))
    ders: list[bytes] = list(plan.extra_der)
    for body in dict.fromkeys(bodies):
        try:
            ders.append(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            continue
    content = tuple(dict.fromkeys(ders))
    with _content_lock:
        if len(_content_cache) > 8:
            _content_cache.clear()
        _content_cache[key] = content
    return key, content


def report_into(ctx: ssl.SSLContext) -> None:
    """Load into *ctx* what ``set_default_verify_paths()`` would make
    ``get_ca_certs()`` list: the bundle's certificates (OpenSSL lists a
    hashed directory's only once a handshake looked them up, and so do we:
    the directories are registered, not read)."""
    cafile, _dirs, _explicit = default_locations()
    plan = current_plan()
    load = _ssl._SSLContext.load_verify_locations
    for path in dict.fromkeys(f for f in (cafile, plan.cafile) if f):
        try:
            load(ctx, path, None, None)
        except (ssl.SSLError, OSError, ValueError):
            continue
    if plan.extra_der and not plan.cafile:
        _load_der_list(ctx, plan.extra_der)
