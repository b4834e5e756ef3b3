"""Start-up gate and import hook: runs in *every* interpreter of the environment.

``truststore_autoinject.pth`` (and, on Python 3.15+, the PEP 829
``truststore_autoinject.start``) calls ``startup()`` while ``site`` runs.  That
is before the user's program and on every ``python`` start, so this module:

* imports nothing beyond what ``site`` already loaded (``sys``, ``os``);
* decides on/off from ``TRUSTSTORE_INJECT``, then the environment's config
  file, then the default (on);
* installs a meta-path finder that finds nothing itself but, when ``ssl`` or
  one of the HTTP modules listed in ``WATCHED`` is loaded, patches it right
  after its code ran.  ``ssl`` is never imported here: a program that never
  uses TLS never pays for it;
* never raises and never prints a traceback: at most one line starting with
  ``truststore-auto:`` goes to stderr per process.
"""

import os
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

# Modules patched as they load.  ``ssl`` gets our SSLContext; the others hold
# their own reference to the class (or a context built at import) that must
# follow it.
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
    """``True``/``False`` for a recognised on/off word, else ``None``.

    Case-insensitive, surrounding white space ignored.
    """
    word = value.strip().lower()
    if word in ON_WORDS:
        return True
    if word in OFF_WORDS:
        return False
    return None


def config_path(prefix: "str | None" = None) -> str:
    """The environment's config file: it lives in ``sys.prefix``, like pip's
    site-wide ``pip.conf``, so a venv's setting stays with that venv."""
    return os.path.join(sys.prefix if prefix is None else prefix, CONFIG_FILENAME)


def format_config(enabled: bool) -> str:
    """The text ``enable``/``disable`` write: one setting a person can read."""
    return (
        "# truststore-auto settings for this Python environment.\n"
        "# Written by `python -m truststore enable|disable`; the\n"
        "# TRUSTSTORE_INJECT environment variable overrides it.\n"
        f"inject = {'on' if enabled else 'off'}\n"
    )


def parse_config(text: str) -> "bool | None":
    """The ``inject`` setting of a config text, ``None`` when it has none.

    Raises ``ValueError`` (with the reason) for anything malformed: a line
    that is not ``key = value`` or an ``inject`` value that is not an on/off
    word.  Unknown keys are ignored so that a newer version's file still
    reads.
    """
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
    """(setting, problem): the config's ``inject`` value, or why it was ignored.

    A missing file is no problem; anything else that stops it from being
    read (permissions, a directory, a symlink loop, bad bytes) is.
    """
    path = config_path() if path is None else path
    try:
        with open(path, "rb") as f:
            data = f.read(65536)
        return parse_config(data.decode("utf-8")), None
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except (OSError, UnicodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, f"ignoring {path}: {reason}"


def decide(
    environ: "os._Environ[str] | dict[str, str] | None" = None,
) -> "tuple[bool, str, list[str]]":
    """(enabled, the rule that decided, warnings), first matching rule wins."""
    env = os.environ if environ is None else environ
    warnings: list[str] = []
    raw = env.get(SWITCH_VARIABLE)
    if raw is not None:
        parsed = parse_switch(raw)
        if parsed is not None:
            return parsed, f"environment variable {SWITCH_VARIABLE}={raw.strip()}", warnings
        warnings.append(f"ignoring {SWITCH_VARIABLE}={raw!r}: use 1/true/yes/on or 0/false/no/off")
    setting, problem = read_config()
    if problem:
        warnings.append(problem)
    if setting is not None:
        return setting, f"config file {config_path()}", warnings
    return True, "default (on)", warnings


def _warn(message: str) -> None:
    """One line on stderr, at most once per process."""
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


def decision() -> "tuple[bool, str] | None":
    """What ``startup()`` decided in this interpreter (None: it did not run)."""
    return _decision


def startup() -> None:
    """Entry point of the .pth/.start file.  Idempotent; never raises."""
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
    """Put the finder first on ``sys.meta_path`` and patch what is loaded."""
    if not any(isinstance(f, PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, PostImportFinder())
    # An embedding application (or a sitecustomize) may have imported ssl
    # already; then inject now.  inject_into_ssl also fixes the HTTP modules
    # that are loaded.
    if "ssl" in sys.modules:
        _after_import("ssl")


def _after_import(name: str) -> None:
    """Patch *name*, which just finished loading.  Never raises."""
    try:
        if name == "ssl":
            from . import _api

            _api.inject_into_ssl()
        else:
            api = sys.modules.get("truststore._api")
            if api is not None:
                api.patch_imported_module(name)
    except Exception as exc:
        _warn(f"could not patch {name}: {exc!r}")


class PostImportFinder:
    """A meta-path finder that only watches: it finds the real spec through
    the finders after it, leaves spec and loader as they are, and arranges for
    ``_after_import`` to run when the loader has executed the module.

    Import errors (missing module, exception in the module body) propagate
    unchanged, because nothing of ours wraps the search or the execution in
    a try.
    """

    def find_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None" = None,
        target: "ModuleType | None" = None,
    ) -> "ModuleSpec | None":
        if fullname not in WATCHED:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, PostImportFinder):
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
        """Nothing cached here (importlib.invalidate_caches calls this)."""


def _arm(spec: "ModuleSpec") -> None:
    """Run ``_after_import`` after ``spec.loader.exec_module``.

    The loader object itself stays (so ``module.__loader__`` and
    ``__spec__.loader`` are truthful); only its ``exec_module`` attribute is
    wrapped, on that instance.  A loader shared by many modules (zipimport)
    is fine: the wrapper patches only the watched names it executes.
    """
    loader = spec.loader
    original: Callable[[ModuleType], None] | None = getattr(loader, "exec_module", None)
    if original is None or getattr(original, "_truststore_wrapper", False):
        return

    def exec_module(module: "ModuleType") -> None:
        assert original is not None
        original(module)
        spec_of_module = getattr(module, "__spec__", None)
        name = spec_of_module.name if spec_of_module is not None else module.__name__
        if name in WATCHED:
            _after_import(name)

    exec_module._truststore_wrapper = True  # type: ignore[attr-defined]
    # A loader that refuses attributes (slots, a C type) simply stays
    # unpatched: the import itself must not be disturbed.
    try:
        setattr(loader, "exec_module", exec_module)  # noqa: B010
    except (AttributeError, TypeError):
        return
