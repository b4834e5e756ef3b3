"""truststore-auto's start-up decision by the full rules, for the starts
the gate does not decide by itself, and the config file's reader."""

# The gate (truststore_autoinject) decides the common starts alone; for the
# rest (a switch variable that is not exactly an off word, a config file
# other than the forms `enable`/`disable` write, an install outside
# sys.prefix, a fault on its fast path) truststore_autoinject_rules.startup()
# loads this module.  It is apart from the rules module because that one is
# also loaded by every ``import ssl`` of an injected interpreter, which needs
# none of this (issue 13).  Like the rules, this is a top-level module: the
# config is read before the ``truststore`` package is known to be ours.
# Only site's modules (os, stat, sys) and the gate's two are imported.

import os
import stat  # already loaded: os imports it
import sys

import truststore_autoinject as _gate
import truststore_autoinject_rules as _rules

CONFIG_FILENAME = "truststore-auto.conf"
CONFIG_LIMIT = 65536  # longer configs are refused with a warning, not cut
ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")


def decide() -> None:
    """Decide by the full rules, record the decision in the gate, install
    the finder when on.  May raise (the rules' startup() warns)."""
    raw = os.environ.get("TRUSTSTORE_INJECT")
    word = None if raw is None else raw.strip().lower()
    if raw is not None and (word in ON or word in OFF):
        enabled = word in ON
        _gate._decision = (enabled, "environment variable TRUSTSTORE_INJECT=" + raw.strip())
    elif raw is None and _rules.HERE.startswith(os.path.join(sys.prefix, "")):
        # Installed in this environment: its config is in sys.prefix.
        path = os.path.join(sys.prefix, CONFIG_FILENAME)
        setting, problem = read_config(path)
        if problem:
            _rules.warn(problem)
        enabled = setting is not False
        _gate._decision = (
            (True, "default (on)") if setting is None else (setting, f"config file {path}")
        )
    else:
        # A bad variable, a --user install, a directory outside sys.prefix:
        # the full rules live in truststore._hook; load it (only if the
        # package is ours).
        if not _rules._package_is_ours():
            return
        try:
            from truststore import _hook
        except Exception as exc:
            _rules._stand_down("damaged", f"cannot load truststore._hook ({exc!r})")
            return
        enabled = _hook.startup_decision()
    _gate._state = "on" if enabled else "off"
    if enabled:
        _gate.install()


def parse_config(text: str) -> "bool | None":
    """The ``inject`` setting of *text* (None: none); ValueError if malformed."""
    # Blank lines and '#' comments are skipped; unknown keys are ignored so
    # that a newer version's file still reads; a line that is not
    # 'key = value', or an inject value that is not an on/off word, makes the
    # whole file malformed (the caller warns and applies the default).
    result: bool | None = None
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


def read_config(path: str) -> "tuple[bool | None, str | None]":
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
