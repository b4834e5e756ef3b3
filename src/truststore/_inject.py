"""Injection: make ``ssl.SSLContext`` (and the HTTP stacks' copies) ours.

``inject_into_ssl()`` / ``extract_from_ssl()`` are the public switch; the
auto-injection hook calls ``patch_imported_module()`` as HTTP modules load.
"""

from __future__ import annotations

import ssl
import sys
import threading
from typing import Any, cast

from . import _api

_injection_lock = threading.RLock()
# Contexts that HTTP modules built at import, saved while ours stand in.
_saved_contexts: dict[tuple[str, str], tuple[Any, Any]] = {}


def _patch_module(name: str, injected: bool) -> None:
    """Point one already-imported HTTP module at the current SSLContext."""
    module = sys.modules.get(name)
    if module is None:
        return
    target = _api.SSLContext if injected else _api._StdSSLContext
    if name.endswith("urllib3.util.ssl_"):
        if getattr(module, "SSLContext", None) in (_api.SSLContext, _api._StdSSLContext):
            setattr(module, "SSLContext", target)  # noqa: B010
    elif name.endswith("requests.adapters"):
        # requests 2.32-2.33 builds one context at import.
        _swap_context(name, module, "_preloaded_ssl_context", injected, _requests_context)
    elif name == "aiohttp.connector":
        # aiohttp >= 3.10 builds its default verifying context at import.
        _swap_context(name, module, "_SSL_CONTEXT_VERIFIED", injected, _aiohttp_context)


def _swap_context(name: str, module: Any, attribute: str, injected: bool, build: Any) -> None:
    """Replace a context *module* built at import by one made the module's
    own way (so that its settings stay), and put the original back later."""
    current = getattr(module, attribute, None)
    if not isinstance(current, _api._StdSSLContext):
        return
    key = (name, attribute)
    if injected:
        if key in _saved_contexts:
            return
        replacement = build(module, True)
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
        rebuilt = build(module, False)
        if rebuilt is not None and not isinstance(rebuilt, _api.SSLContext):
            setattr(module, attribute, rebuilt)


def _requests_context(module: Any, injected: bool) -> Any:
    """requests' preloaded context, made requests' own way: urllib3's
    settings (host and certificate checks, SSLKEYLOGFILE, ...) plus
    requests' CA bundle.  Injected, that bundle is trusted in addition to the
    OS store, as ``load_verify_locations()`` always is."""
    make: Any = getattr(module, "create_urllib3_context", None)
    try:
        context = make() if make is not None else None
    except Exception:
        context = None
    if injected and not isinstance(context, _api.SSLContext):
        context = _api.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bundle: Any = getattr(module, "DEFAULT_CA_BUNDLE_PATH", None)
    unzip: Any = getattr(module, "extract_zipped_paths", lambda path: path)
    if context is None or bundle is None:
        return context if injected else None
    try:
        context.load_verify_locations(unzip(bundle))
    except Exception:
        return context if injected else None
    return context


def _aiohttp_context(module: Any, injected: bool) -> Any:
    make: Any = getattr(module, "_make_ssl_context", None)
    try:
        return make(True) if make is not None else None
    except Exception:
        return None


PATCHED_MODULES = (
    "urllib3.util.ssl_",
    "requests.adapters",
    "pip._vendor.urllib3.util.ssl_",
    "pip._vendor.requests.adapters",
    "aiohttp.connector",
)


def _is_injected() -> bool:
    return ssl.SSLContext is _api.SSLContext


def inject_into_ssl() -> None:
    """Make ``ssl.SSLContext`` (and the HTTP stacks' copies) ours.

    Idempotent.  Contexts created earlier keep working, settings included;
    modules imported later are fixed by ``patch_imported_module`` (the
    auto-injection hook calls it as they load).
    """
    with _injection_lock:
        ssl.SSLContext = _api.SSLContext  # type: ignore[misc]
        for name in PATCHED_MODULES:
            _patch_module(name, True)


def _loaded_stdlib_class() -> type[ssl.SSLContext]:
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
            return cast("type[ssl.SSLContext]", cls)
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
