"""The auto-injection hook: the full on/off rules, and what happens when a
watched module (``ssl``, urllib3's and requests' TLS modules) is imported.

The start-up gate ``truststore_autoinject`` (the top-level module the .pth
line and the .start entry name) handles the common start by itself; its
``truststore_autoinject_rules`` (another top-level module, loaded only when
the gate needs it) imports this module only once it has checked, without
executing anything, that this package is truststore-auto's own: when the
switch variable is not an on/off word, for a ``--user`` install (or any
outside ``sys.prefix``), or when the program first imports a watched module.
Only ``sys``/``os`` are used here; ``ssl`` and the backends load only when
the program imports ``ssl``.  Nothing here raises into the program; at most
one ``truststore-auto:`` line (the rules' ``warn``)."""

import os
import sys

import truststore_autoinject as _gate
import truststore_autoinject_rules as _rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

SWITCH_VARIABLE = "TRUSTSTORE_INJECT"
CONFIG_FILENAME = _rules.CONFIG_FILENAME
ON_WORDS = frozenset({"1", "true", "yes", "on"})
OFF_WORDS = frozenset({"0", "false", "no", "off"})
# Longer configs are refused with a warning rather than cut silently.
CONFIG_LIMIT = _rules.CONFIG_LIMIT
WATCHED: "frozenset[str]" = _rules.WATCHED
API_MODULE = "truststore._api"
_warn: "Callable[[str], None]" = _rules.warn


def decision() -> "tuple[bool, str] | None":
    """What start-up decided in this interpreter (None: it did not run)."""
    result: tuple[bool, str] | None = _rules.decision()
    return result


def startup() -> None:
    """The earlier entry point (``truststore._hook:startup``): the gate's."""
    _gate.startup()


def startup_decision() -> bool:
    """The gate's slow path: decide by the full rules, warn, record."""
    enabled, rule, warnings = decide()
    _gate._decision = (enabled, rule)
    if warnings:
        _warn(warnings[0])
    return enabled


def parse_switch(value: str) -> "bool | None":
    """True/False for an on/off word (any case, spaces ignored), else None."""
    word = value.strip().lower()
    if word in ON_WORDS:
        return True
    if word in OFF_WORDS:
        return False
    return None


def config_directory() -> str:
    """Where this installation's config lives: ``site.USER_BASE`` for a
    ``pip install --user``, else ``sys.prefix`` (a venv keeps its own)."""
    if not _rules.HERE.startswith(os.path.join(sys.prefix, "")):
        site = sys.modules.get("site")
        user_site = getattr(site, "USER_SITE", None)
        user_base = getattr(site, "USER_BASE", None)
        if (
            isinstance(user_site, str)
            and isinstance(user_base, str)
            and os.path.abspath(user_site) == _rules.HERE
        ):
            return user_base
    return sys.prefix


def config_path(prefix: "str | None" = None) -> str:
    """The config file (in ``config_directory()`` unless *prefix* is given)."""
    return os.path.join(config_directory() if prefix is None else prefix, CONFIG_FILENAME)


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
    return _rules.parse_config(text)


def read_config(path: "str | None" = None) -> "tuple[bool | None, str | None]":
    """(setting, problem): the config's ``inject`` value, or why it was ignored."""
    return _rules.read_config(config_path() if path is None else path)


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
    path = config_path()
    setting, problem = read_config(path)
    if problem:
        warnings.append(problem)
    if setting is not None:
        return setting, f"config file {path}", warnings
    return True, "default (on)", warnings


def find_watched(
    finder: object,
    fullname: str,
    path: "Sequence[str] | None" = None,
    target: "ModuleType | None" = None,
) -> "ModuleSpec | None":
    """The gate's finder, for a watched name: the real spec, armed."""
    # Asks the finders after *finder* for the real spec and returns that spec
    # unchanged (same loader object, so __loader__ and __spec__.loader stay
    # truthful), after arranging for after_import to run once the loader has
    # executed the module.  Nothing of ours wraps the search or the execution
    # in a try: import errors propagate unchanged.
    finders = sys.meta_path
    start = next((i + 1 for i, f in enumerate(finders) if f is finder), 0)
    for other in finders[start:]:
        if _rules._is_ours(other):
            continue
        find = getattr(other, "find_spec", None)
        if find is None:
            continue
        spec: ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            _arm(spec)
            return spec
    return None


def install() -> None:
    """Install the gate's finder (as start-up does with injection on)."""
    _gate.install()


def after_import(name: str) -> None:
    """Patch *name*, which just finished loading.  Never raises: a backend
    that cannot load leaves ssl as it was (the stdlib still verifies), with
    one warning line."""
    try:
        if name == "ssl" or name == API_MODULE:
            _inject_when_ready(name)
        else:
            inject = sys.modules.get("truststore._inject")
            if inject is not None:
                inject.patch_imported_module(name)
    except Exception as exc:
        _warn(f"could not patch {name}: {exc!r}")


def _inject_when_ready(name: str) -> None:
    # ssl loaded: inject, unless truststore._api is still executing (in this
    # thread: it is what imported ssl; in another: it will finish).  Its own
    # completion (name == API_MODULE, body done) injects instead, once ssl is
    # loaded: whichever of the two comes last does it, in every order.
    api = sys.modules.get(API_MODULE)
    if name == API_MODULE:
        if "ssl" not in sys.modules:
            return
    elif api is None:
        from . import _api as api  # its completion injects already
    elif getattr(getattr(api, "__spec__", None), "_initializing", False):
        return
    inject = getattr(api, "inject_into_ssl", None)
    if inject is not None:
        inject()


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
            after_import(name)

    exec_module._truststore_wrapper = True  # type: ignore[attr-defined]
    exec_module.__wrapped__ = original  # type: ignore[attr-defined]
    # A loader that refuses attributes (slots, a C type) stays unpatched:
    # the import itself must not be disturbed.
    try:
        setattr(loader, "exec_module", exec_module)  # noqa: B010
    except (AttributeError, TypeError):
        return
