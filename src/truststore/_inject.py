"""Injection: make ``ssl.SSLContext`` (and the HTTP stacks' copies) ours.

``inject_into_ssl()`` / ``extract_from_ssl()`` are the public switch; the
auto-injection hook calls ``patch_imported_module()`` as HTTP modules load.
"""

import _thread
import ssl
import sys

from . import _api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_injection_lock = _thread.RLock()
# Contexts that HTTP modules built at import, saved while ours stand in.
_saved_contexts: "dict[tuple[str, str], tuple[Any, Any]]" = {}


def _patch_module(name: str, injected: bool) -> None:
    """Point one already-imported HTTP module at the current SSLContext."""
    module = sys.modules.get(name)
    patch = PATCH_TABLE.get(name)
    if module is None or patch is None:
        return
    target = _api.InjectedSSLContext if injected else _api._StdSSLContext
    attribute = patch.class_attribute
    if attribute is not None and getattr(module, attribute, None) in (
        _api.InjectedSSLContext,
        _api.SSLContext,
        _api._StdSSLContext,
    ):
        setattr(module, attribute, target)
    if patch.context_attribute is not None:
        _swap_context(name, module, patch, injected)


def _swap_context(name: str, module: "Any", patch: "ModulePatch", injected: bool) -> None:
    """Replace a context *module* built at import by one made the module's
    own way (so that its settings stay), and put the original back later."""
    attribute = patch.context_attribute
    assert attribute is not None and patch.build is not None
    build = patch.build
    current = getattr(module, attribute, None)
    if not isinstance(current, _api._StdSSLContext):
        return
    key = (name, attribute)
    if injected:
        if key in _saved_contexts:
            return
        replacement = build(module, True, patch.reads)
        if not isinstance(replacement, _api.SSLContext):
            return
        _saved_contexts[key] = (current, replacement)
        setattr(module, attribute, replacement)
        return
    saved = _saved_contexts.pop(key, None)
    if saved is not None:
        original, replacement = saved
        if current is not replacement:
            return  # someone else has replaced ours since: leave theirs
        setattr(module, attribute, original)
        current = original
    if isinstance(current, _api.SSLContext):
        # Built while we were injected (the module was imported after
        # inject_into_ssl()): nothing of the stdlib's to restore, so build
        # the module's own again, now that ssl is the stdlib's.
        rebuilt = build(module, False, patch.reads)
        if rebuilt is not None and not isinstance(rebuilt, _api.SSLContext):
            setattr(module, attribute, rebuilt)


def _requests_context(module: "Any", injected: bool, reads: "tuple[str, ...]") -> "Any":
    """requests' preloaded context, made requests' own way: urllib3's
    settings (host and certificate checks, SSLKEYLOGFILE, ...) plus
    requests' CA bundle.  Injected, that bundle (certifi) is a general-purpose
    public bundle, which means the OS store (see _trust)."""
    make_name, bundle_name, unzip_name = reads
    make: Any = getattr(module, make_name, None)
    try:
        context = make() if make is not None else None
    except Exception:
        context = None
    if injected and not isinstance(context, _api.SSLContext):
        context = _api.InjectedSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bundle: Any = getattr(module, bundle_name, None)
    unzip: Any = getattr(module, unzip_name, lambda path: path)
    if context is None or bundle is None:
        return context if injected else None
    try:
        context.load_verify_locations(unzip(bundle))
    except Exception:
        return context if injected else None
    return context


def _aiohttp_context(module: "Any", injected: bool, reads: "tuple[str, ...]") -> "Any":
    (make_name,) = reads
    make: Any = getattr(module, make_name, None)
    try:
        return make(True) if make is not None else None
    except Exception:
        return None


class ModulePatch:
    """What one HTTP module keeps from ``ssl`` at import, and how we follow it.

    ``package`` names the import package whose ``__version__`` the version
    bounds refer to; ``since``/``before`` bound the releases that have
    ``context_attribute`` (and ``reads``), as checked by
    tests/test_version_proof.py against the installed libraries and against
    older releases from the registry: a library that drops or renames one of
    these names makes that test fail instead of leaving it silently unpatched.
    (A plain class: a NamedTuple costs ~0.15 ms more on the first ssl import.)
    """

    __slots__ = (
        "before",
        "build",
        "class_attribute",
        "context_attribute",
        "package",
        "reads",
        "since",
    )

    def __init__(
        self,
        package: str,
        *,
        class_attribute: "str | None" = None,
        context_attribute: "str | None" = None,
        build: "Callable[[Any, bool, tuple[str, ...]], Any] | None" = None,
        reads: "tuple[str, ...]" = (),
        since: "tuple[int, ...] | None" = None,
        before: "tuple[int, ...] | None" = None,
    ) -> None:
        self.package = package
        # A module global holding ``ssl.SSLContext`` itself: pointed at ours.
        self.class_attribute = class_attribute
        # A module global holding a verifying context built at import:
        # replaced by one ``build(module, injected, reads)`` makes, restored
        # on extract; ``reads`` are the module's other attributes it reads.
        self.context_attribute = context_attribute
        self.build = build
        self.reads = reads
        self.since = since
        self.before = before


def _requests_patch(package: str) -> "ModulePatch":
    # requests 2.32.0-2.32.4 build ``_preloaded_ssl_context`` at import
    # (2.32.5 and later make contexts per request again).
    return ModulePatch(
        package,
        context_attribute="_preloaded_ssl_context",
        build=_requests_context,
        reads=("create_urllib3_context", "DEFAULT_CA_BUNDLE_PATH", "extract_zipped_paths"),
        since=(2, 32, 0),
        before=(2, 32, 5),
    )


# The one table of module and attribute names that injection patches; the
# keys are also the modules inject/extract visit, in this order.
PATCH_TABLE: "dict[str, ModulePatch]" = {
    "urllib3.util.ssl_": ModulePatch("urllib3", class_attribute="SSLContext"),
    "requests.adapters": _requests_patch("requests"),
    "pip._vendor.urllib3.util.ssl_": ModulePatch(
        "pip._vendor.urllib3", class_attribute="SSLContext"
    ),
    "pip._vendor.requests.adapters": _requests_patch("pip._vendor.requests"),
    # aiohttp >= 3.10.6 builds its default verifying context at import.
    "aiohttp.connector": ModulePatch(
        "aiohttp",
        context_attribute="_SSL_CONTEXT_VERIFIED",
        build=_aiohttp_context,
        reads=("_make_ssl_context",),
        since=(3, 10, 6),
    ),
}
PATCHED_MODULES = tuple(PATCH_TABLE)


def _is_injected() -> bool:
    return ssl.SSLContext is _api.InjectedSSLContext


def inject_into_ssl() -> None:
    """Make ``ssl.SSLContext`` (and the HTTP stacks' copies) ours.

    Idempotent.  Contexts created earlier keep working, settings included;
    modules imported later are fixed by ``patch_imported_module`` (the
    auto-injection hook calls it as they load).
    """
    with _injection_lock:
        ssl.SSLContext = _api.InjectedSSLContext  # type: ignore[misc]
        for name in PATCHED_MODULES:
            _patch_module(name, True)


def _loaded_stdlib_class() -> "type[ssl.SSLContext]":
    """The ``SSLContext`` class that the ``ssl`` module loaded now defines.

    After ``importlib.reload(ssl)`` that is a new class, not the one captured
    when ``_api`` was imported: restoring the old one would pair it with the
    new module's functions (``super(SSLContext, ...)`` in its setters then
    fails for every new context).  ssl.py ends by pointing its class's
    ``sslsocket_class`` at the module's ``SSLSocket``, which injection leaves
    alone: the direct subclass of ``_ssl._SSLContext`` with that socket class
    is the one.
    """
    socket_class = getattr(ssl, "SSLSocket", None)
    for cls in _api._CSSLContext.__subclasses__():
        if cls.__module__ == "ssl" and vars(cls).get("sslsocket_class") is socket_class:
            return cls  # type: ignore[return-value]  # ssl.py's own subclass
    return _api._StdSSLContext


def extract_from_ssl() -> None:
    """Undo ``inject_into_ssl()``: restore the standard library's class."""
    with _injection_lock:
        ssl.SSLContext = _loaded_stdlib_class()  # type: ignore[misc]
        for name in PATCHED_MODULES:
            _patch_module(name, False)


def patch_imported_module(name: str) -> None:
    """Called by the import hook right after *name* finished loading."""
    with _injection_lock:
        _patch_module(name, _is_injected())
