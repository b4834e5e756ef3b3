"""The OpenSSL store plan, remembered across processes.

Deciding what to load for the OS store (``_openssl.current_plan``) means
hashing every bundle certificate's subject and reading every hashed entry
that could stand in for it: about 5 ms for Debian's 145 roots, paid by the
first context of every new process (scripts, CLI tools, CI steps), where the
same decision for an unchanged store takes about 0.1 ms when read back from
here.  So the decision is written to a small file once and read by later
processes while every file and directory it was made from is unchanged.

Why this is as safe as reading the store (a cache an attacker can write is
a trust anchor, unless it cannot name a certificate):

* It holds no certificate.  It names which of the bundle's certificates to
  load (by position in the bundle, whose bytes are read from the bundle
  itself) and which directories to look up lazily.  ``_openssl`` accepts
  OpenSSL's own bundle and directories from any cache it may read (less of
  them is all a forged entry could give), a distribution's hashed copy or
  the fallback locations (which could add trust if named wrongly) only from
  a cache root wrote, and positions inside the bundle; anything else is a
  miss.
* It is used only while the bundle and every directory it depends on have
  the device, inode, size, mtime, ctime and mode they had when it was
  written (``update-ca-certificates`` and ``update-ca-trust`` rewrite the
  bundle, so every store update is a miss); ctime cannot be set by a user.
* It is read only from a directory owned by this user (or root), that
  neither group nor others can write, as a regular file with the same
  properties, opened without following a symlink; never in a set-user-ID
  or set-group-ID process.  Whoever can write there can already write the
  user's own ``site-packages``.

Location: ``$TRUSTSTORE_CACHE_DIR`` if set (empty: no cache at all), else
``$XDG_CACHE_HOME/truststore-auto``, else ``~/.cache/truststore-auto``.
Every failure to read or write is silent: the plan is then computed as if
there were no cache.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAGIC = "truststore-auto store plan 1"
DIRECTORY_VARIABLE = "TRUSTSTORE_CACHE_DIR"
_LIMIT = 1 << 20
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def cache_directory() -> str | None:
    """Where plans are kept, or None (disabled, no home, or a process whose
    environment belongs to another user: set-user-ID / set-group-ID)."""
    if sys.platform == "win32":
        return None
    if os.getuid() != os.geteuid() or os.getgid() != os.getegid():
        return None
    chosen = os.environ.get(DIRECTORY_VARIABLE)
    if chosen is not None:
        return chosen or None
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):
        home = os.environ.get("HOME")
        if not home or not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "truststore-auto")


def _entry_path(directory: str, name: str) -> str:
    return os.path.join(directory, f"store-plan-{name}.txt")


def _owned_and_private(st: os.stat_result) -> bool:
    """Owned by this user or root, and writable by nobody else."""
    if sys.platform == "win32":
        return False
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(value: str) -> str:
    # Every escape starts with a backslash and "\\\\" is split off first,
    # from the left, so the pieces' "\\n" are exactly the escaped newlines.
    if "\\" not in value:
        return value
    return "\\".join(piece.replace("\\n", "\n") for piece in value.split("\\\\"))


def load(name: str, locations: str) -> "tuple[dict[str, str], int] | None":
    """The fields saved for *locations* (the exact text it was saved with)
    and the uid that owns the file (this user's or root's), or None: no
    cache, a file that fails any check, or another key."""
    directory = cache_directory()
    if directory is None:
        return None
    try:
        if not _owned_and_private(os.lstat(directory)) or os.path.islink(directory):
            return None
        fd = os.open(_entry_path(directory, name), _READ_FLAGS)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or not _owned_and_private(st):
            return None
        if st.st_size > _LIMIT:
            return None
        data = os.read(fd, _LIMIT + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        lines = data.decode("utf-8", "surrogateescape").split("\n")
    except UnicodeError:
        return None
    if len(lines) < 2 or lines[0] != MAGIC:
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = _unescape(value)
    if fields.get("locations") != locations:
        return None
    return fields, st.st_uid


def save(name: str, fields: "Mapping[str, str]") -> None:
    """Write *fields* (keys without "=" or newlines) atomically; never raises."""
    directory = cache_directory()
    if directory is None:
        return
    text = MAGIC + "\n" + "".join(f"{k}={_escape(v)}\n" for k, v in fields.items())
    temporary = os.path.join(directory, f".store-plan-{name}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not _owned_and_private(os.lstat(directory)) or os.path.islink(directory):
            return
        fd = os.open(temporary, _WRITE_FLAGS, 0o600)
    except (OSError, ValueError):
        return
    try:
        try:
            os.write(fd, text.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
        os.replace(temporary, _entry_path(directory, name))
    except (OSError, UnicodeError):
        # Not contextlib.suppress: contextlib is not otherwise loaded here.
        try:  # noqa: SIM105
            os.unlink(temporary)
        except OSError:
            pass
