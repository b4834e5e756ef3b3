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
changes on disk), and only the certificates it holds that a look-up by name
would not find in the hashed directories are loaded eagerly.

"Found by name" is OpenSSL's rule, computed here: the entry names are the
subject-name hash of ``X509_NAME_hash_ex`` (``name_hash``), tried as
``<hash>.0``, ``<hash>.1``, ... until one is missing.  The bundle's
certificates of one hash are left to the look-up only when that chain, in the
first directory that has it, holds exactly them: a certificate under any
other name counts as absent, and one the bundle lacks would be trusted where
the stdlib (which finds that subject in the bundle first) never looks.

Where OpenSSL's default directory has no hashed names (Fedora, RHEL: only the
bundle), a distribution's hashed copy of the same store elsewhere
(``SUBSTITUTE_DIRS``) is used instead, but only when every certificate
reachable in it is a certificate of the bundle: it may save parsing, never
add trust.  The entries are read without blocking, regular files only, with
a size bound, so a FIFO or a device there cannot stall a new context.

The distribution fallback (OpenSSL's defaults hold nothing) is planned the
same way, with the distribution's directories.

In a set-user-ID, set-group-ID or file-capability process ("secure execution",
``AT_SECURE``), OpenSSL ignores ``SSL_CERT_FILE``/``SSL_CERT_DIR`` (it reads
them with ``secure_getenv()``); so does this module.
"""

# Annotations that are not builtins are quoted instead of ``from __future__
# import annotations``: __future__ is a module import of its own, paid at the
# first context of every process (issue 13).
import _ssl
import _thread
import os
import ssl
import sys
from binascii import Error as _Base64Error
from binascii import a2b_base64, crc32

from . import _common, _store_cache

# typing stays unimported at run time (import cost); type checkers treat any
# name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# Where distributions keep their bundle when the Python's OpenSSL was built
# with other defaults (python.org-style builds, manylinux, conda-less
# static builds).  Used only when OpenSSL's own defaults hold nothing and the
# user set neither SSL_CERT_FILE nor SSL_CERT_DIR.  Collected from Go's
# crypto/x509 (root_linux.go, root_bsd.go) and the public truststore package.
FALLBACK_FILES: "tuple[tuple[str, str], ...]" = (
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
FALLBACK_DIRS: "tuple[tuple[str, str], ...]" = (
    ("/etc/ssl/certs", "Debian, Ubuntu, SLES 10/11 (hashed)"),
    ("/etc/pki/tls/certs", "Fedora, RHEL"),
    ("/system/etc/security/cacerts", "Android"),
)
# Hashed directories that distributions build from the same source as their
# bundle, but where OpenSSL does not look by default.  Used only as a lazy
# stand-in for certificates of the bundle (see _substitute).
SUBSTITUTE_DIRS: "tuple[tuple[str, str], ...]" = (
    ("/etc/pki/ca-trust/extracted/pem/directory-hash", "Fedora, RHEL 9, CentOS Stream"),
    ("/var/lib/ca-certificates/pem", "openSUSE, SLES"),
    ("/etc/ca-certificates/extracted/cadir", "Arch"),
    ("/etc/ssl/certs", "Debian, Ubuntu, Alpine, Arch"),
)

# open(2): O_NONBLOCK so that opening a FIFO without a writer returns at once,
# O_NOCTTY so that a terminal device never becomes the controlling one.
_OPEN_FLAGS: int = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_BUNDLE_LIMIT = 64 << 20
_ENTRY_LIMIT = 1 << 20
# getauxval(3) type of the "secure execution" flag (<elf.h>: AT_SECURE 23).
_AT_SECURE = 23
_BEGIN = b"-----BEGIN "
_END_CERT = b"-----END CERTIFICATE-----"
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


class StorePlan:
    """What to load into each client context, decided once per on-disk state."""

    __slots__ = (
        "cafile",
        "capath",
        "eager_index",
        "empty",
        "extra_der",
        "searched",
        "source",
        "summary",
        "watched",
    )

    def __init__(
        self,
        capath: "str | None",
        cafile: "str | None",
        extra_der: "tuple[bytes, ...]",
        summary: str,
        searched: "tuple[str, ...]",
        empty: bool,
    ) -> None:
        # Hashed directories, os.pathsep-joined, looked up lazily.
        self.capath = capath
        # A bundle for OpenSSL's own loader (when nothing of it is elsewhere).
        self.cafile = cafile
        # Bundle certificates no look-up by name would find (or the whole
        # bundle, as the fallback when OpenSSL refuses ``cafile``).
        self.extra_der = extra_der
        self.summary = summary  # one line for ``truststore status``
        self.searched = searched  # every location looked at, for error messages
        self.empty = empty  # nothing at all could be loaded
        # Other paths the plan depends on (substitute directories looked at).
        self.watched: tuple[str, ...] = ()
        # The bundle that was read, and which of its certificates (positions
        # among its readable ones) extra_der holds: what _store_cache keeps.
        self.source: str | None = None
        self.eager_index: tuple[int, ...] = ()


_plan_lock = _thread.allocate_lock()
_plan_cache: "dict[tuple[object, ...], tuple[StorePlan, tuple[object, ...]]]" = {}
_last_plan: "StorePlan | None" = None
_compiled_defaults: "tuple[str, str, str, str] | None" = None
_secure_execution: "bool | None" = None


def _stat_key(path: str) -> "tuple[object, ...]":
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (path, None)
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


# -- where OpenSSL looks ----------------------------------------------------------


def _at_secure() -> bool:
    """Whether this process runs in "secure execution" mode, decided the way
    OpenSSL's ``ossl_safe_getenv`` does: glibc's ``secure_getenv`` (and
    musl's OpenSSL build) use ``getauxval(AT_SECURE)``; the BSDs use
    ``issetugid()``; without either, real and effective ids are compared."""
    if sys.platform == "win32":
        return False
    from_proc = _auxv_at_secure()
    if from_proc is not None:
        return from_proc
    try:
        import ctypes

        libc = ctypes.CDLL(None)
    except (ImportError, OSError):
        libc = None
    if libc is not None:
        # getauxval(3): "unsigned long getauxval(unsigned long type)".
        getauxval = getattr(libc, "getauxval", None)
        if getauxval is not None:
            getauxval.restype = ctypes.c_ulong
            getauxval.argtypes = [ctypes.c_ulong]
            return bool(getauxval(_AT_SECURE))
        # issetugid(2) (FreeBSD, OpenBSD, NetBSD, macOS): "int issetugid(void)".
        issetugid = getattr(libc, "issetugid", None)
        if issetugid is not None:
            issetugid.restype = ctypes.c_int
            issetugid.argtypes = []
            return bool(issetugid())
    return os.getuid() != os.geteuid() or os.getgid() != os.getegid()


def _auxv_at_secure() -> "bool | None":
    """AT_SECURE from /proc/self/auxv (proc(5): the ELF auxiliary vector, pairs
    of native unsigned longs), which costs one small read where importing
    ctypes costs over a millisecond.  None when it cannot be read (no /proc;
    a non-dumpable process whose /proc entries root owns)."""
    data = _read_regular("/proc/self/auxv", 1 << 16)
    if not data:
        return None
    word = 8 if sys.maxsize > 1 << 32 else 4
    order = sys.byteorder
    for pos in range(0, len(data) - 2 * word + 1, 2 * word):
        if int.from_bytes(data[pos : pos + word], order) == _AT_SECURE:
            return bool(int.from_bytes(data[pos + word : pos + 2 * word], order))
    return None


def _secure_getenv(name: str) -> "str | None":
    global _secure_execution
    value = os.environ.get(name)
    if value is None:
        return None
    if _secure_execution is None:  # fixed for the life of the process
        _secure_execution = _at_secure()
    return None if _secure_execution else value


def default_locations() -> "tuple[str | None, list[str], bool]":
    """OpenSSL's default bundle and directories, as X509_STORE_set_default_paths
    reads them: the environment variable if set (even to "") and the process
    is not in secure execution, else the compiled-in default.  Returns (file,
    dirs, user_chose_explicitly)."""
    global _compiled_defaults
    if _compiled_defaults is None:
        # (file variable, default file, directory variable, default directory)
        found = _ssl.get_default_verify_paths()
        _compiled_defaults = (str(found[0]), str(found[1]), str(found[2]), str(found[3]))
    file_env, default_file, dir_env, default_dir = _compiled_defaults
    env_file = _secure_getenv(file_env)
    env_dir = _secure_getenv(dir_env)
    cafile = env_file if env_file is not None else default_file
    capath = env_dir if env_dir is not None else default_dir
    dirs = [d for d in (capath or "").split(os.pathsep) if d]
    return (cafile or None), dirs, (env_file is not None or env_dir is not None)


def store_bundle_paths() -> "tuple[str, ...]":
    """The bundle file OpenSSL's defaults name (``SSL_CERT_FILE`` or the
    compiled-in one), if it exists: a program that loads it by path (httpx
    does when ``SSL_CERT_FILE`` is set) is loading the OS store's own
    certificates, all of them public roots by definition."""
    cafile, _dirs, _explicit = default_locations()
    return (cafile,) if cafile and os.path.isfile(cafile) else ()


# -- reading files the way nothing can stall -----------------------------------------


def _read_regular(path: str, limit: int) -> "bytes | None":
    """The content of *path* if it is a regular file of at most *limit* bytes.

    Opened non-blocking (a FIFO without a writer would block open() forever)
    and checked with fstat before any read; None for anything else."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or st.st_size > limit:  # S_ISREG
            return None
        # One read of one byte more than fstat says: a shorter answer is the
        # whole file (one system call for the common case); a file that grew
        # meanwhile is read on, to the limit.
        chunks = [os.read(fd, st.st_size + 1)]
        total = len(chunks[0])
        while total > st.st_size:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


# -- PEM and DER --------------------------------------------------------------------------


def certificate_bodies(data: bytes) -> "list[bytes] | None":
    """The base64 bodies of the CERTIFICATE blocks of *data*; None when it holds
    any other PEM kind (TRUSTED CERTIFICATE trust settings, CRLs, ...), whose
    meaning only OpenSSL itself gives exactly.

    A body ends at the first "-" (base64 has none), so a block whose END line
    is missing cannot swallow the next BEGIN and the good certificate after it;
    such a block is left out."""
    bodies = []
    pos = data.find(_BEGIN)
    while pos >= 0:
        label_end = data.find(b"-----", pos + 11)
        if label_end < 0:
            break
        if data[pos + 11 : label_end] != b"CERTIFICATE":
            return None
        start = label_end + 5
        end = data.find(b"-", start)
        if end < 0:
            break
        if data.startswith(_END_CERT, end):
            bodies.append(data[start:end])
            end += len(_END_CERT)
        pos = data.find(_BEGIN, end)
    return bodies


def _clean_base64(text: bytes) -> bool:
    """Whether a PEM body with its white space removed (``b"".join(body.split())``)
    is clean base64, as OpenSSL's PEM reader needs it."""
    if not text or text.translate(None, _BASE64) or len(text) % 4:
        return False
    padding = text.find(b"=")
    return padding < 0 or (padding >= len(text) - 2 and not text[padding:].strip(b"="))


def decode_body(text: bytes) -> "bytes | None":
    """DER from a PEM body with its white space removed; None unless it is
    clean base64 (OpenSSL's PEM reader would refuse the block)."""
    if not _clean_base64(text):
        return None
    try:
        return a2b_base64(text)
    except (_Base64Error, ValueError):
        return None


# The DER reader shared with the other certificate parsers; a ValueError
# means a certificate whose look-up name we cannot vouch for.
_tlv = _common.der_element


def _der_header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((tag, length))
    size = (length.bit_length() + 7) >> 3
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big")


def subject_span(der: bytes, total: "int | None" = None) -> "tuple[int, int]":
    """Where the subject Name's content lies in a DER certificate.

    With *total*, *der* is only the first bytes of a certificate that is
    *total* bytes long (the subject must lie inside them)."""
    whole = len(der) if total is None else total
    tag, start, end = _header(der, 0)
    if tag != 0x30 or end != whole:
        raise ValueError("not a certificate")
    tag, pos, tbs_end = _header(der, start)
    if tag != 0x30 or tbs_end > end:
        raise ValueError("no tbsCertificate")
    tbs_end = min(tbs_end, len(der))
    if der[pos] == 0xA0:  # [0] EXPLICIT version
        pos = _tlv(der, pos, tbs_end)[2]
    # serialNumber, signature, issuer, validity, then subject
    for expected in (0x02, 0x30, 0x30, 0x30):
        tag, _, pos_next = _tlv(der, pos, tbs_end)
        if tag != expected:
            raise ValueError("unexpected field")
        pos = pos_next
    tag, start, end = _tlv(der, pos, tbs_end)
    if tag != 0x30:
        raise ValueError("no subject")
    return start, end


def _header(der: bytes, pos: int) -> "tuple[int, int, int]":
    """(tag, content start, declared content end) of the element at *pos*,
    which may run past the end of *der*."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(der):
            raise ValueError("bad length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    return tag, pos, pos + length


# String types OpenSSL canonicalises (x_name.c ASN1_MASK_CANON), with how
# ASN1_STRING_to_UTF8 reads their bytes: UTF8String; PrintableString,
# T61String, IA5String as one byte per character (Latin-1); UniversalString
# as UCS-4; BMPString as UCS-2 (no surrogate pairs).  (VisibleString is in
# that mask too, but an X509_NAME_ENTRY value may not be one: B_ASN1_PRINTABLE
# lacks it, so OpenSSL refuses such a name.)
_CANON_TAGS = {0x0C: "utf-8", 0x13: "latin-1", 0x14: "latin-1", 0x16: "latin-1",
               0x1C: "utf-32-be", 0x1E: "utf-16-be"}  # fmt: skip
# Other types an X509_NAME_ENTRY value may have (B_ASN1_PRINTABLE): copied
# as they are.  NumericString, BIT STRING, SEQUENCE and the tags OpenSSL maps
# to B_ASN1_UNKNOWN.
_VERBATIM_TAGS = frozenset({0x12, 0x03, 0x30, 0x07, 0x08, 0x09, 0x0B, 0x0D, 0x0E, 0x0F, 0x1D})


def _canonical_value(tag: int, content: bytes) -> bytes:
    """The canonical UTF8String content of a name value (x_name.c
    asn1_string_canon): converted to UTF-8, leading and trailing white space
    dropped, inner runs of it collapsed to one space, ASCII lower-cased; bytes
    outside ASCII are kept as they are."""
    codec = _CANON_TAGS[tag]
    if content.isascii():
        if codec == "utf-16-be" or codec == "utf-32-be":
            utf8 = _wide_to_utf8(codec, content)
        else:
            utf8 = content  # ASCII is its own UTF-8 (and Latin-1)
    elif codec == "utf-8":
        content.decode("utf-8")  # OpenSSL refuses what is not UTF-8
        utf8 = content
    elif codec == "latin-1":
        utf8 = content.decode("latin-1").encode("utf-8")
    else:
        utf8 = _wide_to_utf8(codec, content)
    # bytes.split() splits on exactly OpenSSL's ossl_isspace set (ASCII
    # space, \t, \n, \v, \f, \r); bytes.lower() touches ASCII only.
    return b" ".join(utf8.split()).lower()


def _wide_to_utf8(codec: str, content: bytes) -> bytes:
    if codec == "utf-16-be" and len(content) % 2:
        raise ValueError("odd BMPString")
    text = content.decode(codec)
    if codec == "utf-16-be" and len(text) * 2 != len(content):
        raise ValueError("surrogates in a BMPString")  # OpenSSL reads UCS-2
    return text.encode("utf-8")


_sha1_new: "Callable[..., Any] | None" = None

# Canonical encodings of RDNs already seen (raw DER of the RDN -> canonical).
_canonical_rdns: "dict[bytes, bytes]" = {}


def name_hash(der: bytes, start: int, end: int) -> int:
    """OpenSSL's X509_NAME_hash_ex of the Name whose content is der[start:end]:
    the first four bytes, little-endian, of the SHA-1 of the name's canonical
    encoding (x_name.c x509_name_canon, i2d_name_canon).  That encoding is each
    non-empty RDN as a DER SET OF its attributes, values canonicalised and
    the attribute encodings sorted, concatenated with no outer SEQUENCE
    header.  Raises ValueError where OpenSSL would refuse the name or this
    reader cannot be sure."""
    rdns = []
    pos = start
    while pos < end:
        tag, rdn_pos, rdn_end = _tlv(der, pos, end)
        if tag != 0x31:
            raise ValueError("RDN is not a SET")
        raw = der[pos:rdn_end]
        known = _canonical_rdns.get(raw)
        if known is not None:  # bundles repeat many RDNs (C=US, O=...)
            rdns.append(known)
            pos = rdn_end
            continue
        attributes = []
        while rdn_pos < rdn_end:
            tag, ava_start, ava_end = _tlv(der, rdn_pos, rdn_end)
            if tag != 0x30:
                raise ValueError("attribute is not a SEQUENCE")
            tag, oid_start, oid_end = _tlv(der, ava_start, ava_end)
            if tag != 0x06:
                raise ValueError("no attribute type")
            if oid_start - ava_start == 2:  # short-form length: already DER
                oid = der[ava_start:oid_end]
            else:
                oid = _der_header(0x06, oid_end - oid_start) + der[oid_start:oid_end]
            tag, value_start, value_end = _tlv(der, oid_end, ava_end)
            if value_end != ava_end:
                raise ValueError("trailing data in attribute")
            if tag in _CANON_TAGS:
                canon = _canonical_value(tag, der[value_start:value_end])
                value = _der_header(0x0C, len(canon)) + canon
            elif tag == 0x30:
                value = der[oid_end:value_end]  # kept whole, header and all
            elif tag in _VERBATIM_TAGS:
                value = _der_header(tag, value_end - value_start) + der[value_start:value_end]
            else:
                raise ValueError("value type OpenSSL does not accept in a name")
            body = oid + value
            attributes.append(_der_header(0x30, len(body)) + body)
            rdn_pos = ava_end
        pos = rdn_end
        canonical = b""  # an empty RDN leaves nothing in OpenSSL's entry list
        if attributes:
            if len(attributes) > 1:
                attributes.sort()  # DER SET OF order
            body = b"".join(attributes)
            canonical = _der_header(0x31, len(body)) + body
        if len(_canonical_rdns) > 4096:
            _canonical_rdns.clear()
        _canonical_rdns[raw] = canonical
        rdns.append(canonical)
    digest = _sha1(b"".join(rdns))
    return int.from_bytes(digest[:4], "little")


def _sha1(data: bytes) -> bytes:
    global _sha1_new
    if _sha1_new is None:
        # The cheapest SHA-1 at hand: OpenSSL's, when hashlib already loaded
        # it; else CPython's own small module (importing _hashlib walks every
        # OpenSSL digest, ~0.7 ms); else whatever hashlib offers.
        new: Callable[..., Any]
        try:
            if "_hashlib" in sys.modules:
                import _hashlib

                new = _hashlib.openssl_sha1
            else:
                new = __import__("_sha1").sha1  # CPython's own; no type stubs
        except ImportError:  # pragma: no cover - a Python built without them
            import hashlib

            new = hashlib.sha1
        _sha1_new = new
    return bytes(_sha1_new(data, usedforsecurity=False).digest())  # a name hash, not a MAC


def subject_hash(der: bytes) -> "int | None":
    """``openssl x509 -hash`` of a DER certificate, or None when it cannot be
    computed with certainty."""
    try:
        start, end = subject_span(der)
        return name_hash(der, start, end)
    except (ValueError, IndexError, UnicodeError):
        return None


# Base64 characters decoded to find a subject: 768 bytes of DER, where the
# subject of every certificate of a usual store lies.
_SUBJECT_PREFIX = 1024


def _text_subject_hash(text: bytes) -> "int | None":
    """subject_hash() of the certificate whose clean base64 (white space
    removed) is *text*, decoding only its start where that suffices."""
    if len(text) > _SUBJECT_PREFIX:
        total = len(text) // 4 * 3 - (len(text) - len(text.rstrip(b"=")))
        try:
            der = a2b_base64(text[:_SUBJECT_PREFIX])
            start, end = subject_span(der, total)
            return name_hash(der, start, end)
        except (ValueError, IndexError, UnicodeError, _Base64Error):
            pass  # the subject runs past the prefix, or something is odd
    return subject_hash(a2b_base64(text))


# -- the hashed directory, as OpenSSL's by_dir look-up sees it -------------------------


def _entry_certificates(data: bytes, known: "dict[bytes, bytes]") -> "list[bytes] | None":
    """The certificates OpenSSL's by_dir loader would add from a hashed entry
    (as base64 text without white space), when they are all bundle
    certificates (*known* maps a bundle body, as written or as text, to its
    text): plain CERTIFICATE blocks only.  Anything else (trust settings, a
    damaged block, no block at all, a certificate the bundle lacks) makes
    OpenSSL's loader stop or give more; None."""
    bodies = certificate_bodies(data)
    if not bodies or data.count(_BEGIN) != len(bodies):
        return None
    texts = []
    for body in bodies:
        # Usually the entry is written exactly as in the bundle: no splitting.
        text = known.get(body) or known.get(b"".join(body.split()))
        if text is None:
            return None
        texts.append(text)
    return texts


class _HashedDir:
    """One directory of ``<hash>.N`` entries, listed once, read on demand."""

    __slots__ = ("_entries", "_prefix", "known", "names", "path")

    def __init__(self, path: str, names: "list[str]") -> None:
        self.path = path
        self._prefix = os.path.join(path, "")
        self.names = frozenset(names)
        # The bundle's certificates (body as written, or text -> text), set
        # by the planner.
        self.known: dict[bytes, bytes] = {}
        self._entries: dict[str, list[bytes] | None] = {}

    def entry(self, name: str) -> "list[bytes] | None":
        """The certificates of one entry; None when it is not a regular
        file, too big, or not certainly bundle certificates only."""
        if name not in self._entries:
            data = _read_regular(self._prefix + name, _ENTRY_LIMIT)
            self._entries[name] = None if data is None else _entry_certificates(data, self.known)
        return self._entries[name]

    def chain(self, hash_value: int) -> "list[bytes] | None":
        """Every certificate OpenSSL's look-up of *hash_value* loads from here
        (entries ``<hash>.0``, ``.1``, ... in order, until one is missing);
        None when an entry on the way is anything this module cannot read
        for certain (OpenSSL might load more, or block)."""
        found: list[bytes] = []
        suffix = 0
        while True:
            name = f"{hash_value:08x}.{suffix}"
            if name not in self.names:
                return found
            certificates = self.entry(name)
            if certificates is None:
                if not os.path.lexists(os.path.join(self.path, name)):
                    return found  # removed since it was listed
                if not os.path.exists(os.path.join(self.path, name)):
                    return found  # a dangling link: OpenSSL's stat() fails too
                return None
            found.extend(certificates)
            suffix += 1


def is_hashed_name(name: str) -> bool:
    """``c_rehash`` / ``openssl rehash`` names: 8 lower-case hex digits of the
    subject hash, a dot, a collision counter.  OpenSSL's look-up opens only
    these (``%08lx.%d``)."""
    counter = name[9:]
    return (
        len(name) >= 10
        and name[8] == "."
        and not name[:8].strip("0123456789abcdef")
        and counter.isdigit()
        and counter.isascii()
    )


def _hashed_dir(directory: str) -> "_HashedDir | None":
    """*directory* with the entries OpenSSL's lazy look-up can open there.

    None when it cannot be listed or has no hashed names (then a look-up
    there would find nothing).
    """
    try:
        names = [n for n in os.listdir(directory) if is_hashed_name(n)]
    except (OSError, ValueError):
        return None
    return _HashedDir(directory, names) if names else None


def _hashed_names(directory: str) -> "list[str] | None":
    found = _hashed_dir(directory)
    return None if found is None else sorted(found.names)


def _group_found(hash_value: int, group: "set[bytes]", dirs: "list[_HashedDir]") -> bool:
    """Whether leaving the bundle certificates of one subject hash to the
    look-up gives what the stdlib has: OpenSSL consults the directories in
    order and stops at the first whose ``<hash>.0`` exists; what that chain
    loads must be exactly *group*.  More would add trust (a certificate the
    stdlib never looks up, because the bundle already gave one of that
    subject); less would lose some."""
    for directory in dirs:
        chain = directory.chain(hash_value)
        if chain is None:
            return False
        if chain:
            return set(chain) == group
    return False


def _substitute(
    directory: str, known: "dict[bytes, bytes]", hashes: "dict[bytes, int | None]"
) -> "_HashedDir | None":
    """*directory* as a lazy stand-in for bundle certificates, if it can only
    ever give certificates of the bundle (*hashes*: each bundle certificate
    with its subject hash): every hashed entry is a regular file of plain
    certificates, all in the bundle and filed under their own hash, and there
    are no CRL entries (``<hash>.rN``).  Only root (or this user) may be able
    to write it."""
    try:
        st = os.stat(directory)
        owner_ok = sys.platform == "win32" or st.st_uid in (0, os.geteuid())
        if (st.st_mode & 0o022) or not owner_ok:
            return None
        names = os.listdir(directory)
    except (OSError, ValueError):
        return None
    hashed = _HashedDir(directory, [n for n in names if is_hashed_name(n)])
    if not hashed.names:
        return None
    hashed.known = known
    for name in names:
        if len(name) > 9 and name[8] == "." and name[9] == "r":
            return None  # a CRL look-up would read it
    for name in hashed.names:
        certificates = hashed.entry(name)
        if certificates is None:
            return None
        for text in certificates:
            filed_under = hashes.get(text)
            if filed_under is None or f"{filed_under:08x}" != name[:8]:
                return None
    return hashed


def _eager(
    texts: "list[bytes]", dirs: "list[_HashedDir]", written: "dict[bytes, bytes]"
) -> "tuple[list[bytes], _HashedDir | None, bool]":
    """The bundle certificates (clean base64 text) to load eagerly, those a
    look-up by name in *dirs* would not give exactly; a substitute directory
    (see SUBSTITUTE_DIRS) that lets more of them be looked up lazily, or
    None; and whether substitutes were looked at.  *written* maps each
    bundle body as written to its text."""
    known = dict(written)
    known.update((text, text) for text in texts)
    for directory in dirs:
        directory.known = known
    hashes: dict[bytes, int | None] = {text: _text_subject_hash(text) for text in texts}
    groups: dict[int, set[bytes]] = {}
    for text, hash_value in hashes.items():
        if hash_value is not None:
            groups.setdefault(hash_value, set()).add(text)

    def eager_with(candidates: "list[_HashedDir]") -> "list[bytes]":
        lazy: set[bytes] = set()
        for hash_value, group in groups.items():
            if _group_found(hash_value, group, candidates):
                lazy |= group
        return [text for text in texts if text not in lazy]

    eager = eager_with(dirs) if dirs else list(texts)
    if len(eager) < 2:
        return eager, None, False
    listed = {os.path.realpath(d.path) for d in dirs}
    for path, _distro in SUBSTITUTE_DIRS:
        if os.path.realpath(path) in listed:
            continue  # already one of OpenSSL's own directories
        substitute = _substitute(path, known, hashes)
        if substitute is None:
            continue
        fewer = eager_with([*dirs, substitute])
        if len(fewer) < len(eager):
            return fewer, substitute, True
    return eager, None, True


# -- the plan -------------------------------------------------------------------------------


def _plan_for(cafile: "str | None", dirs: "list[str]", fallback_ok: bool) -> "StorePlan":
    searched: list[str] = [*dirs] + ([cafile] if cafile is not None else [])
    plan = _plan_locations(cafile, dirs, "")
    if plan.empty and fallback_ok:
        # OpenSSL's defaults hold nothing: the distribution's own store.
        fallback_file = None
        for path, _distro in FALLBACK_FILES:
            if path in searched:
                continue
            searched.append(path)
            data = _read_regular(path, _BUNDLE_LIMIT)
            if data and b"-----BEGIN CERTIFICATE-----" in data:
                fallback_file = path
                break
        fallback_dirs = [d for d, _distro in FALLBACK_DIRS if d not in searched]
        searched.extend(fallback_dirs)
        plan = _plan_locations(fallback_file, fallback_dirs, ", distribution fallback")
    plan.searched = tuple(searched)
    return plan


def _plan_locations(cafile: "str | None", dirs: "list[str]", note: str) -> "StorePlan":
    """The plan for one bundle and its directories (*note* goes into the
    summary of each)."""
    summary: list[str] = []
    bodies: list[bytes] | None = []
    if cafile is not None:
        data = _read_regular(cafile, _BUNDLE_LIMIT)
        bodies = certificate_bodies(data) if data else []

    lazy: list[_HashedDir] = []
    for directory in dirs:
        hashed = _hashed_dir(directory)
        if hashed is None:
            continue
        lazy.append(hashed)
        summary.append(
            f"directory {directory} ({len(hashed.names)} hashed entries, looked up lazily{note})"
        )

    whole_file: str | None = None
    extra: list[bytes] = []
    watched: tuple[str, ...] = ()
    source: str | None = None
    eager_index: tuple[int, ...] = ()
    if cafile is not None and bodies is None:
        whole_file = cafile
        summary.append(f"file {cafile} (loaded whole{note})")
    elif cafile is not None and bodies:
        texts, written, damaged = _bundle_texts(bodies)
        eager, substitute, looked = _eager(texts, lazy, written)
        extra = [a2b_base64(text) for text in eager]
        eager_set = set(eager)
        eager_index = tuple(i for i, text in enumerate(texts) if text in eager_set)
        source = cafile
        if looked:
            watched = tuple(path for path, _distro in SUBSTITUTE_DIRS)
        if substitute is not None:
            lazy.append(substitute)
            summary.append(
                f"directory {substitute.path} (the bundle's hashed copy, looked up lazily)"
            )
        if extra and len(extra) == len(bodies):
            # Nothing is left to a directory and nothing is damaged:
            # OpenSSL's own file loader is the fastest way in; the DER list
            # stays as the fallback should OpenSSL refuse the file.
            whole_file = cafile
        summary.append(
            f"file {cafile} ({len(bodies)} certificates, {len(extra)} not in a hashed directory"
            + (f", {damaged} damaged and skipped" if damaged else "")
            + f"{note})"
        )
    lazy_dirs = [d.path for d in lazy]
    plan = StorePlan(
        capath=os.pathsep.join(lazy_dirs) or None,
        cafile=whole_file,
        extra_der=tuple(extra),
        summary="; ".join(summary) if summary else "nothing found",
        searched=(),
        empty=not lazy_dirs and whole_file is None and not extra,
    )
    plan.watched = watched
    plan.source = source
    plan.eager_index = eager_index
    return plan


def _bundle_texts(bodies: "list[bytes]") -> "tuple[list[bytes], dict[bytes, bytes], int]":
    """The bundle's readable certificates as base64 text without white
    space, in order; each body as written -> its text; how many were
    damaged (skipped: one bad block must not cost the others their trust)."""
    texts: list[bytes] = []
    written: dict[bytes, bytes] = {}
    damaged = 0
    for body in bodies:
        text = b"".join(body.split())
        if _clean_base64(text):
            texts.append(text)
            written[body] = text
        else:
            damaged += 1
    return texts, written, damaged


def _plan_key(cafile: "str | None", dirs: "list[str]", explicit: bool) -> "tuple[object, ...]":
    return (
        (_stat_key(cafile) if cafile else None),
        tuple(_stat_key(d) for d in dirs),
        explicit,
    )


def current_plan() -> "StorePlan":
    """The plan for the store as it is on disk now (cached per disk state:
    the bundle, OpenSSL's directories, and the substitute directories when
    the plan looked at them)."""
    global _last_plan
    cafile, dirs, explicit = default_locations()
    key = _plan_key(cafile, dirs, explicit)
    with _plan_lock:
        cached = _plan_cache.get(key)
    plan = None
    if cached is not None:
        plan, watched_key = cached
        if plan.watched and tuple(_stat_key(p) for p in plan.watched) != watched_key:
            plan = None
    if plan is None:
        # Taken before planning: a change while planning leaves a key that
        # no longer matches, so the next context plans again.
        substitutes_key = tuple(_stat_key(p) for p, _distro in SUBSTITUTE_DIRS)
        locations = repr((cafile, tuple(dirs), explicit, ssl.OPENSSL_VERSION, sys.platform))
        state = repr(
            (
                _stat_key(__file__),  # this algorithm: an upgrade plans anew
                tuple(_stat_key(p) for p in _dependency_paths(cafile, dirs)),
            )
        )
        plan = _plan_from_cache(locations, state, cafile, dirs)
        if plan is None:
            plan = _plan_for(cafile, dirs, fallback_ok=not explicit)
            _plan_to_cache(locations, state, plan, cafile, dirs)
        watched_key = substitutes_key if plan.watched else ()
        with _plan_lock:
            if len(_plan_cache) > 16:
                _plan_cache.clear()
            _plan_cache[key] = (plan, watched_key)
    _last_plan = plan
    return plan


# -- the plan across processes (see _store_cache for why it is safe) ---------------


def _dependency_paths(cafile: "str | None", dirs: "list[str]") -> "list[str]":
    """Every file and directory a plan for these locations can depend on."""
    paths = [cafile] if cafile else []
    paths += dirs
    paths += [path for path, _distro in SUBSTITUTE_DIRS]
    paths += [path for path, _distro in FALLBACK_FILES]
    paths += [path for path, _distro in FALLBACK_DIRS]
    return list(dict.fromkeys(paths))


def _cache_name(locations: str) -> str:
    return f"{crc32(locations.encode('utf-8', 'surrogateescape')):08x}"


def _beyond_openssl(plan: "StorePlan", cafile: "str | None", dirs: "list[str]") -> bool:
    """Whether *plan* uses a location other than OpenSSL's own (a
    distribution's hashed copy, the fallback list)."""
    own = {cafile, None}
    return (
        any(d not in dirs for d in (plan.capath or "").split(os.pathsep) if d)
        or plan.cafile not in own
        or plan.source not in own
    )


def _written_by_root() -> bool:
    return sys.platform != "win32" and os.geteuid() == 0


def _plan_to_cache(
    locations: str, state: str, plan: "StorePlan", cafile: "str | None", dirs: "list[str]"
) -> None:
    if _beyond_openssl(plan, cafile, dirs) and not _written_by_root():
        return  # _plan_from_cache would not take it from this user's cache
    _store_cache.save(
        _cache_name(locations),
        {
            "locations": locations,
            "state": state,
            "capath": plan.capath or "",
            "cafile": plan.cafile or "",
            "source": plan.source or "",
            "eager": ",".join(str(i) for i in plan.eager_index),
            "summary": plan.summary,
            "searched": "\0".join(plan.searched),
            "watched": "\0".join(plan.watched),
            "empty": "1" if plan.empty else "",
        },
    )


def _plan_from_cache(
    locations: str, state: str, cafile: "str | None", dirs: "list[str]"
) -> "StorePlan | None":
    """The plan saved for these locations while every path it depends on
    is as it is now; None for anything else.  OpenSSL's own bundle and
    directories are accepted from this user's cache, the other locations of
    this module's lists only from root's, and the certificates come from
    the bundle itself: a forged entry can only leave certificates out (fail
    closed), never add one."""
    found = _store_cache.load(_cache_name(locations), locations)
    if found is None:
        return None
    fields, writer = found
    if fields.get("state") != state:
        return None
    try:
        capath = fields["capath"]
        whole_file = fields["cafile"]
        source = fields["source"]
        eager_index = tuple(int(i) for i in fields["eager"].split(",") if i)
        summary = fields["summary"]
        searched = tuple(p for p in fields["searched"].split("\0") if p)
        watched = tuple(p for p in fields["watched"].split("\0") if p)
        empty = fields["empty"] == "1"
    except (KeyError, ValueError):
        return None
    allowed_dirs = set(dirs)
    allowed_files = {"", *([cafile] if cafile else [])}
    if writer == 0:
        # Locations beyond OpenSSL's own could add trust if a forged entry
        # named them; root, who alone can write them, may vouch for them.
        allowed_dirs |= {d for d, _ in SUBSTITUTE_DIRS} | {d for d, _ in FALLBACK_DIRS}
        allowed_files |= {f for f, _ in FALLBACK_FILES}
    if any(d not in allowed_dirs for d in capath.split(os.pathsep) if d):
        return None
    if whole_file not in allowed_files or source not in allowed_files:
        return None
    extra: list[bytes] = []
    if eager_index:
        data = _read_regular(source, _BUNDLE_LIMIT) if source else None
        bodies = certificate_bodies(data) if data else None
        if not bodies:
            return None
        texts = _bundle_texts(bodies)[0]
        if max(eager_index) >= len(texts) or min(eager_index) < 0:
            return None
        extra = [a2b_base64(texts[i]) for i in eager_index]
    plan = StorePlan(
        capath=capath or None,
        cafile=whole_file or None,
        extra_der=tuple(extra),
        summary=summary,
        searched=searched,
        empty=empty,
    )
    plan.watched = watched
    plan.source = source or None
    plan.eager_index = eager_index
    return plan


def _load_der_list(ctx: "ssl.SSLContext", ders: "tuple[bytes, ...]") -> None:
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


def load_os_trust(ctx: "ssl.SSLContext", plan: "StorePlan | None" = None) -> bool:
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

_content_lock = _thread.allocate_lock()
_content_cache: "dict[tuple[object, ...], tuple[bytes, ...]]" = {}


def store_certificates() -> "tuple[tuple[object, ...], tuple[bytes, ...]]":
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
        data = _read_regular(path, _BUNDLE_LIMIT)
        if data:
            bodies.extend(b"".join(body.split()) for body in certificate_bodies(data) or ())
    ders: list[bytes] = list(plan.extra_der)
    for body in dict.fromkeys(bodies):
        der = decode_body(body)
        if der is not None:
            ders.append(der)
    content = tuple(dict.fromkeys(ders))
    with _content_lock:
        if len(_content_cache) > 8:
            _content_cache.clear()
        _content_cache[key] = content
    return key, content


def report_into(ctx: "ssl.SSLContext") -> None:
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
