"""Trust rules: what a context trusts, decided in one place.

README.md's table ("What each kind of context trusts") is the reference;
every rule below cites its row.  Two kinds of context:

* **library** (``truststore.SSLContext`` used directly): the public
  truststore package's rule.  A client trusts the OS store *plus* whatever
  ``load_verify_locations()`` adds.
* **injected** (made through the standard library's names while injected,
  ``ssl.SSLContext(...)``, ``ssl.create_default_context(...)``, and so every
  HTTP stack): exactly what the standard library would trust, with the OS
  store standing in for "the default certificates":

  - ``load_default_certs()`` / ``set_default_verify_paths()``: the OS store
    as it is at the time of the call (Linux: ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` re-read then); repeating the call while the store is
    unchanged adds nothing and costs a few ``stat()`` calls.
  - a general-purpose public bundle (certifi, a copy of it, a distribution
    bundle): its public roots mean "the defaults", i.e. the OS store; any
    other certificate in it (a corporate CA appended to a copy) is trusted
    as given.  See ``classify_bundle`` for "public" and "general-purpose".
  - any other CA material (a private CA file, a short pin list, ``cadata``,
    ``capath``): exactly as given; the OS store only if the defaults were
    also asked for.  Pins stay pins.
  - nothing at all loaded by the first client-side handshake: the OS store
    (the truststore promise: a bare client context verifies against the OS).

* Both kinds, server side: a context verifies *clients* against what its
  owner loaded, never against the OS store it did not ask for.  The OS store
  is therefore loaded lazily, at the first client-side use, once (Linux:
  into the native context; Windows/macOS: the OS is asked per verification
  and the verifier is told whether the system's roots count or only the
  anchors).  A context already used as a verifying server never gets the OS
  store added behind its owner's back, and a context that got it that way
  refuses to verify clients (ValueError), which is failing closed.

Nothing here runs per connection once a context is settled: the facade
checks one attribute (``ContextTrust.settled``).
"""

# Annotations that are not builtins are quoted instead of ``from __future__
# import annotations``: __future__ is a module import of its own, paid at the
# first context of every process (issue 13).
import _ssl
import _thread
import os
import ssl
import stat
import sys

from . import _common, _openssl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# -- "general-purpose public bundle" -------------------------------------------
#
# Size: certifi has shipped 120-150 roots since 2014, distribution bundles
# 120-150, vendored/older copies of certifi the same order.  A pin list or a
# private CA file holds one to a handful of certificates; an organisation's
# own bundle of internal CAs rarely more than a dozen or two.  32 is well
# below every public bundle and well above every pin list we know of.
GENERAL_MIN_CERTS = 32
# Share: at least half the bundle's certificates must be publicly trusted
# roots (byte-for-byte in the OS store or in an installed certifi).  An old
# certifi copy (2015) still shares about 80% with today's; a corporate copy
# of certifi with a few internal CAs appended well over 90%.  A bundle that is
# mostly private CAs with some public ones mixed in is someone's deliberate
# choice, and is trusted exactly as given.
GENERAL_MIN_PUBLIC_SHARE = 0.5

# Bundles larger than this are not read by us (OpenSSL still loads them).
_MAX_BUNDLE_BYTES = 16 << 20


class BundleVerdict:
    """What a CA file handed to ``load_verify_locations`` is.

    (A plain class: ``typing.NamedTuple`` would load ``typing`` at the first
    ``import ssl`` of every injected process.)"""

    __slots__ = ("general", "private_ders", "size")

    def __init__(self, general: bool, private_ders: "tuple[bytes, ...]", size: int) -> None:
        self.general = general  # a general-purpose public bundle ("the defaults")
        self.private_ders = private_ders  # its certificates that are not public roots
        self.size = size  # certificates in it


_found_by_spec: "dict[str, str | None]" = {}

# (package, the bundle's path inside it)
_REFERENCE_BUNDLES = (
    ("certifi", ("cacert.pem",)),
    ("pip._vendor.certifi", ("cacert.pem",)),
)


def reference_bundle_paths() -> "tuple[str, ...]":
    """certifi's ``cacert.pem`` (and pip's vendored copy), located without
    importing anything: from the module when it is already imported (the
    usual case: a program that loads certifi's bundle asked certifi where it
    is), else, for ``certifi`` only, by ``find_spec`` (reads no module code;
    once per process).  pip's copy counts only while pip runs.  Their
    content is re-read whenever their stat changes."""
    paths = []
    for package, relative in _REFERENCE_BUNDLES:
        module = sys.modules.get(package)
        location = None
        if module is not None:
            file = getattr(module, "__file__", None)
            location = os.path.dirname(file) if isinstance(file, str) else None
        elif package == "certifi":
            if package not in _found_by_spec:
                _found_by_spec[package] = _spec_location(package)
            location = _found_by_spec[package]
        if location:
            candidate = os.path.join(location, *relative)
            if os.path.isfile(candidate):
                paths.append(candidate)
    return tuple(paths)


def _spec_location(package: str) -> "str | None":
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations), None)


def _stat_key(path: str) -> "tuple[object, ...] | None":
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (path, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


# One reader for every file of CA material, _openssl's: a non-blocking open,
# fstat before any read, and one read of the whole file in the common case.
_read_regular = _openssl._read_regular


def _plain_pem_ders(data: bytes) -> "list[bytes] | None":
    """Every CERTIFICATE block as DER; None if the file holds anything else
    (TRUSTED CERTIFICATE, CRLs, keys) or a damaged block: then only
    OpenSSL's own loader gives it its exact meaning."""
    bodies = _openssl.certificate_bodies(data)
    if bodies is None:
        return None
    ders = []
    for body in bodies:
        der = _openssl.decode_body(b"".join(body.split()))
        if der is None:
            return None
        ders.append(der)
    return ders


_cache_lock = _thread.allocate_lock()
_verdicts: "dict[tuple[object, ...], BundleVerdict | None]" = {}
_references: "dict[tuple[object, ...], frozenset[bytes]]" = {}


def _public_reference(backend: "Any") -> "tuple[tuple[object, ...], frozenset[bytes]]":
    """Certificates that are publicly trusted roots: the OS store's and any
    installed certifi's, with the disk state they were read from."""
    store_key, store_ders = backend.store_certificates()
    paths = reference_bundle_paths()
    key = (store_key, tuple(_stat_key(p) for p in paths))
    with _cache_lock:
        known = _references.get(key)
    if known is not None:
        return key, known
    found = set(store_ders)
    for path in paths:
        data = _read_regular(path, _MAX_BUNDLE_BYTES)
        if data:
            found.update(_common.pem_to_der_list(data))
    reference = frozenset(found)
    with _cache_lock:
        if len(_references) > 8:
            _references.clear()
        _references[key] = reference
    return key, reference


def _classify_uncached(path: str, public: "frozenset[bytes]") -> "BundleVerdict | None":
    data = _read_regular(path, _MAX_BUNDLE_BYTES)
    if data is None:
        return None
    ders = _plain_pem_ders(data)
    if not ders:
        return None
    unique = list(dict.fromkeys(ders))
    private = tuple(d for d in unique if d not in public)
    public_count = len(unique) - len(private)
    general = len(unique) >= GENERAL_MIN_CERTS and public_count >= GENERAL_MIN_PUBLIC_SHARE * len(
        unique
    )
    return BundleVerdict(general, private, len(unique))


def _same_file(a: "tuple[object, ...] | None", b: "tuple[object, ...] | None") -> bool:
    # (path, inode, device, size, mtime): the same file under another name
    # (a symlink, a relative path) is the same file.
    return a is not None and b is not None and a[1:] == b[1:]


def _classify_reference(path: str) -> "BundleVerdict | None":
    data = _read_regular(path, _MAX_BUNDLE_BYTES)
    bodies = _openssl.certificate_bodies(data) if data is not None else None
    if not bodies:
        return None
    # Complete blocks only (what certificate_bodies keeps): a truncated one
    # counts for nothing towards "general-purpose".
    count = len(bodies)
    # A certifi whose cacert.pem was replaced by a few private CAs (a known
    # way to pin requests) stays a pin: the size rule still applies.
    if count < GENERAL_MIN_CERTS:
        return _classify_uncached(path, frozenset())
    return BundleVerdict(True, (), count)


def classify_bundle(path: str, backend: "Any") -> "BundleVerdict | None":
    """Is *path* a general-purpose public bundle?  None when it cannot be
    judged (unreadable, not plain PEM certificates): then it is ordinary CA
    material and OpenSSL loads it as given.

    Parsed at most once per process per state of the file, the OS store and
    certifi (stat keys), never per context."""
    file_key = _stat_key(path)
    if file_key is None:
        return None
    own_bundles = getattr(backend, "store_bundle_paths", None)
    references = reference_bundle_paths() + (own_bundles() if own_bundles else ())
    if any(_same_file(file_key, _stat_key(ref)) for ref in references):
        # certifi itself (requests, httpx, pip), or the OS store's own bundle
        # (httpx and others load SSL_CERT_FILE when it is set): every
        # certificate in it is public by definition, so only its size needs
        # judging, and nothing has to be parsed (the common case, on every
        # new context).
        key: tuple[object, ...] = (file_key, "reference")
        with _cache_lock:
            if key in _verdicts:
                return _verdicts[key]
        verdict = _classify_reference(path)
    else:
        reference_key, public = _public_reference(backend)
        key = (file_key, reference_key)
        with _cache_lock:
            if key in _verdicts:
                return _verdicts[key]
        verdict = _classify_uncached(path, public)
    with _cache_lock:
        if len(_verdicts) > 64:
            _verdicts.clear()
        _verdicts[key] = verdict
    return verdict


# -- CA material -> DER anchors (intercepting backends) ---------------------------

# OpenSSL's by-directory look-up opens only ``<hash of the issuer name it
# needs>.N`` (``c_rehash`` / ``openssl rehash`` names), counting N up from 0
# until a name is missing (crypto/x509/by_dir.c), so only such files, filed
# under their own subject's hash, can ever anchor a chain.


def _subject_hash_matches(der: bytes, name: str) -> bool:
    """OpenSSL finds a file only under its certificate's subject-name hash
    (X509_NAME_hash_ex): a certificate filed under any other name can never
    anchor a chain there, so it must not anchor one here either.  The hash is
    the OpenSSL backend's pure-Python one (checked against ``openssl x509
    -hash``); a name it cannot hash with certainty is no anchor."""
    value = _openssl.subject_hash(der)
    return value is not None and f"{value:08x}" == name.split(".", 1)[0]


def capath_anchor_ders(capath: "Any") -> "list[bytes]":
    """What OpenSSL's look-up could find in *capath* (os.pathsep-separated
    directories, as OpenSSL's X509_LOOKUP_add_dir takes them)."""
    ders: list[bytes] = []
    for directory in os.fsdecode(capath).split(os.pathsep):
        if not directory:
            continue
        try:
            names = sorted(n for n in os.listdir(directory) if _openssl.is_hashed_name(n))
        except OSError:
            continue
        for name in names:
            data = _read_regular(os.path.join(directory, name), 1 << 20)
            if not data:
                continue
            for der in _common.pem_to_der_list(data):
                if _subject_hash_matches(der, name):
                    ders.append(der)
    return ders


def collect_anchor_ders(cafile: "Any", capath: "Any", cadata: "Any") -> "list[bytes]":
    """DER of the certificates the native context just accepted.

    Only called after OpenSSL loaded the same inputs without error, so the
    inputs exist and parse.
    """
    ders: list[bytes] = []
    if cafile is not None:
        data = _read_regular(os.fsdecode(cafile), 64 << 20)
        if data:
            ders.extend(_common.pem_to_der_list(data))
    if capath is not None:
        ders.extend(capath_anchor_ders(capath))
    if cadata is not None:
        if isinstance(cadata, str):
            ders.extend(_common.pem_to_der_list(cadata))
        else:
            ders.extend(_common.split_der_sequence(bytes(cadata)))
    return ders


# -- per-context state ---------------------------------------------------------------


def _load_os_into(context: "ssl.SSLContext", backend: "Any", plan: "Any") -> bool:
    """Load the OS store (as *plan* found it) into the native context."""
    return bool(backend.load_os_trust(context, plan))


class ContextTrust:
    """What one context trusts, and whether the OS store is part of it.

    ``settled`` turns True at the first client-side use; until then every
    decision can still change (the stdlib's store also only takes shape
    when the program loads things).  All changes run under ``lock``.
    """

    __slots__ = (
        "_anchors",
        "_loaded_plans",
        "_pending_plans",
        "additive",
        "asked_defaults",
        "loaded_material",
        "lock",
        "os_empty",
        "os_unasked",
        "os_verifies",
        "served_verifying",
        "settled",
        "system_roots",
    )

    def __init__(self, *, additive: bool, os_verifies: bool) -> None:
        self.lock = _thread.allocate_lock()
        self.additive = additive  # library rule: the OS store plus what is loaded
        # The OS verifies (Windows/macOS): nothing is loaded into the native
        # context; the verifier is told the anchors and whether the system's
        # roots count.  Else (Linux/BSD) the OS store is loaded natively.
        self.os_verifies = os_verifies
        self.asked_defaults = False  # load_default_certs() & co., or a public bundle
        self.loaded_material = False  # load_verify_locations() succeeded at least once
        self.os_unasked = False  # the OS store is in use without the owner asking
        self.served_verifying = False  # used server-side with client verification
        self.settled = False
        self.os_empty = False  # the OS store turned out empty (for error messages)
        self.system_roots = False  # intercept: the OS's own roots count
        self._pending_plans: list[Any] = []
        self._loaded_plans: list[Any] = []
        self._anchors: list[bytes] = []

    # -- what the program asks for -------------------------------------------
    def ask_defaults(self, context: "ssl.SSLContext", backend: "Any") -> None:
        """``load_default_certs()`` / ``set_default_verify_paths()`` / a public
        bundle: the OS store, as it is now."""
        plan = None
        if not self.os_verifies:
            plan = backend.current_plan()  # the store as it is now (env re-read)
        with self.lock:
            self.asked_defaults = True
            if self.os_verifies:
                self.system_roots = True
                self._configure(context)
                return
            if self._has(self._loaded_plans, plan) or self._has(self._pending_plans, plan):
                return  # unchanged on disk: nothing to add, nothing to do
            if self.settled or self.served_verifying:
                self._load(context, backend, plan)
            else:
                self._pending_plans.append(plan)  # loaded at first use (see settle)

    def add_material(self, context: "ssl.SSLContext", anchors: "list[bytes]") -> None:
        """``load_verify_locations()`` succeeded; *anchors* are its certificates
        (intercepting backends only: elsewhere the native store holds them)."""
        with self.lock:
            self.loaded_material = True
            if self.os_verifies and anchors:
                self._anchors.extend(anchors)
                self._configure(context)

    @property
    def anchors(self) -> "tuple[bytes, ...]":
        """The certificates loaded as anchors (intercepting backends)."""
        return tuple(self._anchors)

    # -- first uses -------------------------------------------------------------
    def settle_client(
        self, context: "ssl.SSLContext", backend: "Any", start_intercepting: "Any" = None
    ) -> None:
        """The first client-side use: decide whether the OS store is in.

        *start_intercepting* (a context of a generic protocol on an
        OS-verifying backend) switches the context to "the OS verifies"; it
        runs under the lock that server-side uses take, and not at all once
        the context verified clients (its native settings must stay)."""
        with self.lock:
            if self.settled:
                return
            if start_intercepting is not None and not self.served_verifying:
                start_intercepting()
            if self.os_verifies:
                # Only a context that now verifies through the OS gets the
                # system's roots; one that served first stays native (its
                # client side then trusts what its owner loaded: fail closed).
                intercepting = context.__dict__.get("_intercept") is True
                if intercepting and (
                    self.additive or self.asked_defaults or not self.loaded_material
                ):
                    self.system_roots = True
                    self.os_unasked = not self.asked_defaults
                self._configure(context)
            elif self._pending_plans:
                self._load_pending(context, backend)
            elif (
                self.additive or (not self.loaded_material and not self.asked_defaults)
            ) and not self.served_verifying:
                # Library rule, or nothing loaded at all: the OS store.  Not
                # for a context that already verifies clients with its
                # owner's CAs (that would widen whom it accepts).
                self._load(context, backend, backend.current_plan())
                self.os_unasked = True
            self.settled = True

    def check_server(self, context: "ssl.SSLContext", backend: "Any", verifying: bool) -> None:
        """A server-side use: the owner's CAs only, as the stdlib."""
        with self.lock:
            if verifying and context.__dict__.get("_intercept") is True:
                raise ValueError(
                    "this context verifies servers through the OS and cannot verify "
                    "client certificates; use a separate context for the server side "
                    "(ssl.PROTOCOL_TLS_SERVER)"
                )
            if verifying and self.os_unasked:
                raise ValueError(
                    "this context trusts the OS store for servers, which its owner did not "
                    "ask for; it cannot verify client certificates. Use a separate context "
                    "for the server side (ssl.PROTOCOL_TLS_SERVER)"
                )
            if self._pending_plans and not self.os_verifies:
                # The owner asked for the defaults: the stdlib would have
                # loaded them, for clients as well.
                self._load_pending(context, backend)
            if verifying:
                self.served_verifying = True

    # -- internals ----------------------------------------------------------------
    @staticmethod
    def _has(plans: "list[Any]", plan: "Any") -> bool:
        return plan is not None and any(p is plan or p == plan for p in plans)

    def _load(self, context: "ssl.SSLContext", backend: "Any", plan: "Any") -> None:
        if self._has(self._loaded_plans, plan):
            return
        self.os_empty = not _load_os_into(context, backend, plan)
        self._loaded_plans.append(plan)

    def _load_pending(self, context: "ssl.SSLContext", backend: "Any") -> None:
        plans, self._pending_plans = self._pending_plans, []
        for plan in plans:
            self._load(context, backend, plan)

    def attach(self, context: "Any") -> None:
        """The context's verifier was just made: tell it the anchors."""
        self._configure(context)

    def _configure(self, context: "Any") -> None:
        verifier = getattr(context, "_verifier", None)
        if verifier is not None:
            verifier.set_extra_anchors(list(self._anchors), exclusive=not self.system_roots)

    def uses_os_store(self) -> bool:
        """Would (or does) this context's client side trust the OS store?"""
        with self.lock:
            if self.os_verifies:
                if self.settled:
                    return self.system_roots
            elif self.settled:
                return bool(self._loaded_plans)
            if self.asked_defaults or self.additive:
                return True
            return not self.loaded_material and not self.served_verifying


def report_context(context: "ssl.SSLContext", backend: "Any", std_class: "Any") -> "Any":
    """A plain context holding what *context* trusts, for ``get_ca_certs()``
    and ``cert_store_stats()``: its own certificates plus, when the OS store
    is (or will be) part of its trust, the store's, read now.  None when the
    native context alone is the answer (a pin)."""
    state: ContextTrust | None = context.__dict__.get("_trust")
    if state is None or context.__dict__.get("_is_client") is not True:
        return None
    if not state.uses_os_store():
        return None
    report = std_class(ssl.PROTOCOL_TLS_CLIENT)
    own = _ssl._SSLContext.get_ca_certs(context, True)
    if own:
        _ssl._SSLContext.load_verify_locations(report, None, None, b"".join(own))
    report_into: Any = getattr(backend, "report_into", None)
    if report_into is not None:
        report_into(report)
    else:
        _key, ders = backend.store_certificates()
        for der in ders:
            try:
                _ssl._SSLContext.load_verify_locations(report, None, None, der)
            except Exception:
                continue  # one the OS accepts but OpenSSL cannot parse
    return report
