"""Start-up gate and import hook; runs in every interpreter of the environment.

``truststore_autoinject.pth`` (PEP 829 ``.start`` on 3.15+) calls
``startup()`` while ``site`` runs.  Only ``sys``/``os``/``stat`` are used (all
loaded before ``site``); ``ssl`` and the backends load only when the program
itself imports ``ssl``.  Never raises; at most one ``truststore-auto:`` line.
"""

# Docstrings here are short on purpose: this module is unmarshalled at every
# interpreter start (SPEC budget: 1 ms for the whole .pth).  The reasoning
# lives in comments, which cost nothing at run time.

import os
import stat  # already loaded: os imports it
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

SWITCH_VARIABLE = "TRUSTSTORE_INJECT"
CONFIG_FILENAME = "truststore-auto.conf"
ON_WORDS = frozenset({"1", "true", "yes", "on"})
OFF_WORDS = frozenset({"0", "false", "no", "off"})

# Modules patched right after they load.  ``ssl`` gets our SSLContext; the
# others keep their own reference to the class (urllib3) or a context built at
# import time (requests >= 2.32) that must follow it.
WATCHED = frozenset(
    {
        "ssl",
        "urllib3.util.ssl_",
        "requests.adapters",
        "pip._vendor.urllib3.util.ssl_",
        "pip._vendor.requests.adapters",
    }
)

_started = False
_warned = False
_decision: "tuple[bool, str] | None" = None


def parse_switch(value: str) -> "bool | None":
    """True/False for an on/off word (any case, spaces ignored), else None."""
    word = value.strip().lower()
    if word in ON_WORDS:
        return True
    if word in OFF_WORDS:
        return False
    return None


def config_path(prefix: "str | None" = None) -> str:
    """The environment's config file, in ``sys.prefix`` (stays with a venv)."""
    return os.path.join(sys.prefix if prefix is None else prefix, CONFIG_FILENAME)


def format_config(enabled: bool) -> str:
    """The text ``enable``/``disable`` write."""
    return (
        "# truststore-auto settings for this Python environment.\n"
        "# Written by `python -m truststore enable|disable`; the\n"
        "# TRUSTSTORE_INJECT environment variable overrides it.\n"
        f"inject = {'on' if enabled else 'off'}\n"
    )


def parse_config(text: str) -> "bool | None":
    """The ``inject`` setting of *text* (None: none); ValueError if malformed."""
    # Blank lines and '#' comments are skipped; unknown keys are ignored so
    # that a newer version's file still reads; a line that is not
    # 'key = value', or an inject value that is not an on/off word, makes the
    # whole file malformed (the caller warns and applies the default).
    result = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"line {number} is not 'key = value'")
        if key.strip().lower() == "inject":
            result = parse_switch(value)
            if result is None:
                raise ValueError(f"line {number}: inject must be on or off")
    return result


def read_config(path: "str | None" = None) -> "tuple[bool | None, str | None]":
    """(setting, problem): the config's ``inject`` value, or why it was ignored."""
    # A missing file (or a dangling symlink) is no problem; anything else that
    # stops it from being read (permissions, a directory, a FIFO, a symlink
    # loop, bad bytes) is.
    path = config_path() if path is None else path
    try:
        # Non-blocking open, then regular files only: a FIFO (or a device)
        # in the config's place must not stall every interpreter's start.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        with open(os.open(path, flags), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None, f"ignoring {path}: not a regular file"
            data = f.read(65536)
        if data.startswith(b"\xef\xbb\xbf"):  # a BOM from a Windows editor
            data = data[3:]
        return parse_config(data.decode("utf-8")), None
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except (OSError, UnicodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, f"ignoring {path}: {reason}"


def decide(
    environ: "os._Environ[str] | dict[str, str] | None" = None,
) -> "tuple[bool, str, list[str]]":
    """(enabled, the rule that decided, warnings); first matching rule wins."""
    env = os.environ if environ is None else environ
    warnings: list[str] = []
    raw = env.get(SWITCH_VARIABLE)
    if raw is not None:
        parsed = parse_switch(raw)
        if parsed is not None:
            return parsed, f"environment variable {SWITCH_VARIABLE}={raw.strip()}", warnings
        # repr() keeps a value with newlines or odd bytes on one line.
        warnings.append(f"ignoring {SWITCH_VARIABLE}={raw!r}: use 1/true/yes/on or 0/false/no/off")
    setting, problem = read_config()
    if problem:
        warnings.append(problem)
    if setting is not None:
        return setting, f"config file {config_path()}", warnings
    return True, "default (on)", warnings


def decision() -> "tuple[bool, str] | None":
    """What ``startup()`` decided in this interpreter (None: it did not run)."""
    return _decision


def _warn(message: str) -> None:
    # One line on stderr, at most once per process, whatever happens.
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


def startup() -> None:
    """Entry point of the .pth/.start file.  Idempotent; never raises."""
    # site processes a venv's .pth twice per start (cpython#75723), embedders
    # may run site.main() again: the second call returns at once.
    global _started, _decision
    if _started:
        return
    _started = True
    try:
        enabled, rule, warnings = decide()
        _decision = (enabled, rule)
        if warnings:
            _warn(warnings[0])
        if enabled:
            install()
    except Exception as exc:
        _warn(f"auto-injection disabled by an internal error: {exc!r}")


def install() -> None:
    """Put the finder first on ``sys.meta_path``; inject now if ssl is loaded."""
    if not any(_is_ours(f) for f in sys.meta_path):
        sys.meta_path.insert(0, PostImportFinder())
    # An embedding application (or code run before site) may have imported
    # ssl already; inject_into_ssl also fixes the HTTP modules already loaded.
    if "ssl" in sys.modules:
        _after_import("ssl")


def _is_ours(finder: object) -> bool:
    # By type name, not isinstance: a reloaded _hook defines a new class and
    # must still recognise the old instance; type() never runs user code.
    cls = type(finder)
    return cls.__name__ == "PostImportFinder" and cls.__module__ == __name__


def _after_import(name: str) -> None:
    # Patch *name*, which just finished loading.  Never raises: a backend
    # that cannot load leaves ssl as it was (the stdlib still verifies), with
    # one warning line.
    try:
        if name == "ssl":
            from . import _api

            _api.inject_into_ssl()
        else:
            inject = sys.modules.get("truststore._inject")
            if inject is not None:
                inject.patch_imported_module(name)
    except Exception as exc:
        _warn(f"could not patch {name}: {exc!r}")


class PostImportFinder:
    """Meta-path finder that only watches the names in ``WATCHED``."""

    # For a watched name it asks the finders after it for the real spec and
    # returns that spec unchanged (same loader object, so __loader__ and
    # __spec__.loader stay truthful), after arranging for _after_import to run
    # once the loader has executed the module.  Nothing of ours wraps the
    # search or the execution in a try: import errors propagate unchanged.
    # Every other name costs one set lookup.

    def find_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None" = None,
        target: "ModuleType | None" = None,
    ) -> "ModuleSpec | None":
        if fullname not in WATCHED:
            return None
        # Only the finders after this one: those before it have declined.
        finders = sys.meta_path
        start = next((i + 1 for i, f in enumerate(finders) if f is self), 0)
        for finder in finders[start:]:
            if _is_ours(finder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec: ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                _arm(spec)
                return spec
        return None

    def invalidate_caches(self) -> None:
        """Nothing is cached here."""


def _arm(spec: "ModuleSpec") -> None:
    # Wrap exec_module on the loader *instance* so _after_import runs right
    # after the module body.  A loader shared by many modules (zipimport) is
    # wrapped once and patches only watched names.  A loader that is a class
    # (BuiltinImporter, FrozenImporter) is left alone: patching it would
    # change every module it loads; such Pythons (frozen ssl) are not served.
    loader = spec.loader
    if loader is None or isinstance(loader, type):
        return
    original: Callable[[ModuleType], None] | None = getattr(loader, "exec_module", None)
    if original is None or getattr(original, "_truststore_wrapper", False):
        return

    def exec_module(module: "ModuleType") -> None:
        original(module)
        module_spec = getattr(module, "__spec__", None)
        name = module_spec.name if module_spec is not None else module.__name__
        if name in WATCHED:
            _after_import(name)

    exec_module._truststore_wrapper = True  # type: ignore[attr-defined]
    exec_module.__wrapped__ = original  # type: ignore[attr-defined]
    # A loader that refuses attributes (slots, a C type) stays unpatched:
    # the import itself must not be disturbed.
    try:
        setattr(loader, "exec_module", exec_module)  # noqa: B010
    except (AttributeError, TypeError):
        return
