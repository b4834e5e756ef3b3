"""truststore-auto's import hook, which injects when ``ssl`` loads, and the
entry to the full start-up rules."""

# truststore_autoinject (the gate, run at every start) imports this module at
# the first watched import (ssl, urllib3's and requests' TLS modules), where
# it is the one module of ours to load before the library's, and for the
# starts it does not decide by itself (a switch variable that is not exactly
# an off word, a config that is not one of the forms `enable`/`disable`
# write, an install outside sys.prefix, an internal error), whose rules are
# in truststore_autoinject_config, loaded by startup() only then: every
# injected ``import ssl`` loads this module, so it holds only what that
# needs, and the rare (issue 13).  Before anything of the ``truststore``
# package runs, find_package() makes sure, without executing it, that the
# package an import would load is truststore-auto's own: the public
# ``truststore`` distribution ships the same top-level package and may have
# replaced our files, and a module of that name may come earlier on sys.path.
# This module is not part of the package for that reason.
# truststore/_hook.py holds the rest of the rules API the CLI uses.  Only
# site's modules (os, sys) are imported here.  The gate imports this module
# by name, as site imports the gate: a same-named file earlier on sys.path
# would shadow it, as an ssl.py in a program's directory shadows the
# standard library's; unlike ``truststore``, no other distribution ships it.

import os
import sys

import truststore_autoinject as _gate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = "pip install --force-reinstall --no-deps truststore-auto"
API_MODULE = "truststore._api"
# The gate's find_spec holds the same names as a constant (a test checks).
WATCHED = frozenset(
    {
        "ssl",
        API_MODULE,
        "urllib3.util.ssl_",
        "requests.adapters",
        "pip._vendor.urllib3.util.ssl_",
        "pip._vendor.requests.adapters",
    }
)

_warned = False
_verdict: "bool | None" = None  # is the package ours? Checked once per process.


def startup() -> None:
    """The gate's slow path: decide by the full rules, record, install.
    Called by the gate's startup(), once per process, for what it does not
    decide itself (or when its fast path failed); never raises."""
    try:
        import truststore_autoinject_config as config

        config.decide()
    except Exception as exc:
        warn(f"auto-injection disabled by an internal error: {exc!r}")


def install() -> None:
    """Install the gate's finder (as start-up does with injection on)."""
    _gate.install()


def find_watched(
    fullname: str,
    path: "Sequence[str] | None" = None,
    target: "ModuleType | None" = None,
) -> "ModuleSpec | None":
    """The gate's find_spec for a watched name: the real spec, armed; None
    (the next finders decide, unarmed) if the package is not ours."""
    # Asks the finders after the gate for the real spec and returns that
    # spec unchanged (same loader object, so __loader__ and __spec__.loader
    # stay truthful), after arranging for after_import to run once the loader
    # has executed the module.  Nothing of ours wraps the search or the
    # execution in a try: import errors propagate unchanged.
    if not _package_is_ours():
        return None
    finders = sys.meta_path
    start = next((i + 1 for i, f in enumerate(finders) if f is _gate), 0)
    for other in finders[start:]:
        if _is_ours(other):
            continue
        find = getattr(other, "find_spec", None)
        if find is None:
            continue
        spec: ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            _arm(spec)
            return spec
    return None


def after_import(name: str) -> None:
    """Patch *name*, which just finished loading (or was loaded before the
    finder was installed).  Never raises: a backend that cannot load leaves
    ssl as it was (the stdlib still verifies), with one warning line."""
    try:
        if not _package_is_ours():
            return
        if name == "ssl" or name == API_MODULE:
            _inject_when_ready(name)
        else:
            _patch_http_module(name)
    except Exception as exc:
        warn(f"could not patch {name}: {exc!r}")


def _patch_http_module(name: str) -> None:
    # Once truststore._api has loaded (which is what injecting needs), an
    # HTTP module that finishes loading is patched; _api leaves loading
    # _inject, which holds the patch table, to this first need.
    if "truststore._inject" not in sys.modules:
        api = sys.modules.get(API_MODULE)
        if api is None or getattr(getattr(api, "__spec__", None), "_initializing", False):
            return
    from truststore import _inject

    _inject.patch_imported_module(name)


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
        from truststore import _api as api  # its completion injects already
    elif getattr(getattr(api, "__spec__", None), "_initializing", False):
        return
    inject = getattr(api, "inject_into_ssl", None)
    if inject is not None:
        inject()


def _arm(spec: "ModuleSpec") -> None:
    # Wrap exec_module on the loader *instance* so after_import runs right
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


def _is_ours(finder: object) -> bool:
    # The gate module is the finder.  By type and module name, not identity:
    # a gate imported again (removed from sys.modules) is a new module object
    # and must still be recognised; type() and a module's __dict__ never run
    # user code.
    return type(finder) is type(sys) and finder.__dict__.get("__name__") == _gate.__name__


def _package_is_ours() -> bool:
    # find_package() once per process; until it says "ours", nothing of the
    # package runs.  At ssl's import sys.path also holds the program's own
    # directory, so a truststore.py there counts as "shadowed" too.
    global _verdict
    if _verdict is None:
        state, detail = find_package()
        if state == "ours":
            _verdict = True
        else:
            _stand_down(state, detail)
    return _verdict is True


def _stand_down(state: str, detail: str) -> None:
    global _verdict
    _verdict = False
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


def find_package() -> "tuple[str, str]":
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


def decision() -> "tuple[bool, str] | None":
    """(enabled, rule) as startup() decided in this interpreter; None: it did not run."""
    return _gate._decision


def gate_state() -> "str | None":
    """None (startup() did not run), "off", "on", or why the hook stood down:
    "shadowed", "foreign", "damaged"."""
    return _gate._state


def warn(message: str) -> None:
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
