"""The full on/off rules, as the CLI and the gate's slow paths use them.

The start-up gate ``truststore_autoinject`` (the top-level module the .pth
line and the .start entry name) handles the common start by itself; its
``truststore_autoinject_rules`` (another top-level module) holds the import
hook and checks, without executing anything, that this package is
truststore-auto's own before any of it runs; ``truststore_autoinject_config``
(a third) reads the config file for the gate's unusual starts.  This module is imported after
that check when the switch variable is not an on/off word or for a
``--user`` install (or any outside ``sys.prefix``), and by the CLI.  Only
``sys``/``os`` are used here.  Nothing here raises into the program; at most
one ``truststore-auto:`` line (the rules' ``warn``).
"""

import os
import sys

import truststore_autoinject as _gate
import truststore_autoinject_config as _config
import truststore_autoinject_rules as _rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

SWITCH_VARIABLE = "TRUSTSTORE_INJECT"
CONFIG_FILENAME = _config.CONFIG_FILENAME
# The switch words: the full start-up rules' own, so that the CLI and the
# rules cannot disagree (the gate's inline off words are only its fast path).
ON_WORDS = frozenset(_config.ON)
OFF_WORDS = frozenset(_config.OFF)
# Longer configs are refused with a warning rather than cut silently.
CONFIG_LIMIT = _config.CONFIG_LIMIT
WATCHED: "frozenset[str]" = _rules.WATCHED
API_MODULE = _rules.API_MODULE
_warn: "Callable[[str], None]" = _rules.warn
# The import hook itself (find the real spec, arm its loader, inject when
# ssl loads) is in the rules module, the one module of ours that loads before
# the library's at the first watched import.
install = _rules.install
after_import = _rules.after_import


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
    return _config.parse_config(text)


def read_config(path: "str | None" = None) -> "tuple[bool | None, str | None]":
    """(setting, problem): the config's ``inject`` value, or why it was ignored."""
    return _config.read_config(config_path() if path is None else path)


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
