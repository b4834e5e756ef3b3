"""truststore-auto's start-up rules, beyond the gate's common cases."""

# truststore_autoinject (the gate, run at every start) decides the common
# starts by itself and imports this module only for the rest: a switch
# variable that is not exactly an on/off word, a config that is not one of
# the short forms, an install outside sys.prefix, an internal error, and the
# first watched import (ssl, urllib3's and requests' TLS modules).  Before
# anything of the ``truststore`` package runs, find_package() makes sure,
# without executing it, that the package an import would load is
# truststore-auto's own: the public ``truststore`` distribution ships the same
# top-level package and may have replaced our files, and a module of that
# name may come earlier on sys.path.  This module is not part of the package
# for that reason.  Everything else (the arming of loaders, injection) is in
# truststore/_hook.py, imported only once the package is verified.  Only
# site's modules (os, stat, sys) are imported here.  The gate imports this
# module by name, as site imports the gate: a same-named file earlier on
# sys.path would shadow it, as an ssl.py in a program's directory shadows the
# standard library's; unlike ``truststore``, no other distribution ships it.

import os
import stat  # already loaded: os imports it
import sys

import truststore_autoinject as _gate

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_FILENAME = "truststore-auto.conf"
FIX = "pip install --force-reinstall --no-deps truststore-auto"
CONFIG_LIMIT = 65536  # longer configs are refused with a warning, not cut
ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")
# The gate's find_spec holds the same names as a constant (a test checks).
WATCHED = frozenset(
    {
        "ssl",
        "truststore._api",
        "urllib3.util.ssl_",
        "requests.adapters",
        "pip._vendor.urllib3.util.ssl_",
        "pip._vendor.requests.adapters",
    }
)

_warned = False
_hook = None  # truststore._hook, once verified and imported


def startup():
    """The gate's slow path: decide by the full rules, record, install.
    Called by the gate's startup(), once per process, for what it does not
    decide itself (or when its fast path failed); never raises."""
    try:
        _decide()
    except Exception as exc:
        warn(f"auto-injection disabled by an internal error: {exc!r}")


def _decide():
    raw = os.environ.get("TRUSTSTORE_INJECT")
    word = None if raw is None else raw.strip().lower()
    if word in ON or word in OFF:
        enabled = word in ON
        _gate._decision = (enabled, "environment variable TRUSTSTORE_INJECT=" + raw.strip())
    elif word is None and HERE.startswith(os.path.join(sys.prefix, "")):
        # Installed in this environment: its config is in sys.prefix.
        path = os.path.join(sys.prefix, CONFIG_FILENAME)
        setting, problem = read_config(path)
        if problem:
            warn(problem)
        enabled = setting is not False
        _gate._decision = (
            (True, "default (on)") if setting is None else (setting, f"config file {path}")
        )
    else:
        # A bad variable, a --user install, a directory outside sys.prefix:
        # the full rules live in the hook; load it (only if the package is
        # ours).
        hook = _verified_hook()
        if hook is None:
            return
        enabled = hook.startup_decision()
    _gate._state = "on" if enabled else "off"
    if enabled:
        _gate.install()


def install():
    """Install the gate's finder (as start-up does with injection on)."""
    _gate.install()


def find_watched(fullname, path=None, target=None):
    """The gate's find_spec for a watched name: the real spec, armed by the
    hook; None (the next finder decides) if the package is not ours."""
    hook = _hook or _verified_hook()
    return None if hook is None else hook.find_watched(_gate, fullname, path, target)


def after_import(name):
    """*name* (ssl) was loaded before the finder was installed: patch it now."""
    hook = _hook or _verified_hook()
    if hook is not None:
        hook.after_import(name)


def _is_ours(finder):
    # The gate module is the finder.  By type and module name, not identity:
    # a gate imported again (removed from sys.modules) is a new module object
    # and must still be recognised; type() and a module's __dict__ never run
    # user code.
    return type(finder) is type(sys) and finder.__dict__.get("__name__") == _gate.__name__


def _verified_hook():
    # truststore._hook, imported only once find_package() says the package is
    # ours; None (after at most one warning) otherwise.  Remembered: checked
    # once per process.  At ssl's import sys.path also holds the program's
    # own directory, so a truststore.py there counts as "shadowed" too.
    global _hook
    if _hook is not None or _gate._state in ("shadowed", "foreign", "damaged"):
        return _hook
    state, detail = find_package()
    if state == "ours":
        try:
            from truststore import _hook as hook
        except Exception as exc:
            state, detail = "damaged", f"cannot load truststore._hook ({exc!r})"
        else:
            _hook = hook
            return hook
    _gate._state = state
    if state == "foreign":
        warn(
            f"auto-injection is off: the truststore package in {HERE} was replaced by "
            f"{detail}; truststore-auto provides the same API, run: {FIX}"
        )
    elif state == "damaged":
        warn(f"auto-injection is off: {detail}; run: {FIX}")
    # "shadowed": another truststore comes first on purpose (PYTHONPATH, a
    # checkout): respected quietly; `python -m truststore status` explains.
    return None


def find_package():
    """(state, detail) for the truststore package an import loads (or has
    loaded), without executing it: "ours", "shadowed" (another comes first),
    "foreign" (ours replaced by another distribution), "damaged"."""
    ours = os.path.join(HERE, "truststore", "__init__.py")
    loaded = sys.modules.get("truststore")
    if loaded is None:
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            loaded = None if find is None or _is_ours(finder) else find("truststore", None)
            if loaded is not None:
                break
        origin = getattr(loaded, "origin", None)
    else:
        origin = getattr(loaded, "__file__", None)
    if origin != ours and not (origin and os.path.isfile(ours) and os.path.samefile(origin, ours)):
        if os.path.isfile(ours):
            return "shadowed", str(origin or loaded)
        return "damaged", f"{ours} is missing"
    try:
        with open(ours, "rb") as f:
            mine = b'__distribution__ = "truststore-auto"' in f.read(4096)
    except OSError as exc:
        return "damaged", f"cannot read {ours}: {exc.strerror or exc}"
    if mine:
        return "ours", ours
    others = [n for n in os.listdir(HERE) if n.lower().startswith("truststore-")]
    return "foreign", ", ".join(sorted(others)) or "another distribution"


def parse_config(text):
    """The ``inject`` setting of *text* (None: none); ValueError if malformed."""
    # Blank lines and '#' comments are skipped; unknown keys are ignored so
    # that a newer version's file still reads; a line that is not
    # 'key = value', or an inject value that is not an on/off word, makes the
    # whole file malformed (the caller warns and applies the default).
    result = None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"line {number} is not 'key = value'")
        if key.strip().lower() == "inject":
            value = value.strip().lower()
            if value not in ON and value not in OFF:
                raise ValueError(f"line {number}: inject must be on or off")
            result = value in ON
    return result


def read_config(path):
    """(setting, problem): the config's ``inject`` value, or why it was ignored."""
    # A missing file (or a dangling symlink) is no problem and costs one
    # failed open.  Non-blocking open, then regular files only: a FIFO or a
    # device in the config's place must not stall every interpreter's start;
    # the descriptor is closed on every path (a directory opens fine).
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as exc:
        return None, f"ignoring {path}: {exc.strerror or exc}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, f"ignoring {path}: not a regular file"
        data = b""
        while len(data) <= CONFIG_LIMIT:
            chunk = os.read(fd, CONFIG_LIMIT + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > CONFIG_LIMIT:
            return None, f"ignoring {path}: longer than {CONFIG_LIMIT // 1024} KiB"
        if data.startswith(b"\xef\xbb\xbf"):  # a BOM from a Windows editor
            data = data[3:]
        return parse_config(data.decode("utf-8")), None
    except (OSError, UnicodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, f"ignoring {path}: {reason}"
    finally:
        os.close(fd)


def decision():
    """(enabled, rule) as startup() decided in this interpreter; None: it did not run."""
    return _gate._decision


def gate_state():
    """None (startup() did not run), "off", "on", or why the hook stood down:
    "shadowed", "foreign", "damaged"."""
    return _gate._state


def warn(message):
    """One ``truststore-auto:`` line on stderr, at most once per process."""
    global _warned
    if _warned:
        return
    _warned = True
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(f"truststore-auto: {message}\n")
            stream.flush()
    except Exception:
        pass
