"""The public facade: ``SSLContext``, ``inject_into_ssl()``, ``extract_from_ssl()``.

How verification works depends on the backend (chosen once, by platform):

* Linux/BSD (``_openssl``): the operating system's store *is* an OpenSSL
  store, so the context loads it once, at its first client-side use (when
  ``_trust`` says the OS store is part of its trust), and OpenSSL verifies
  during the handshake exactly as the standard library would.  Nothing runs
  per connection except turning OpenSSL's error into our message shape.
* Windows and macOS (``_windows``/``_macos``): OpenSSL is told not to verify
  (``CERT_NONE`` on the native context), and after each client handshake the
  peer's chain goes to the OS API.  The user-visible ``verify_mode`` and
  ``check_hostname`` live on this object and are snapshotted per connection
  when its SSL object is created, like OpenSSL snapshots them; nothing shared
  is ever flipped around a handshake.

Platform code stays in the backend modules; per-connection state lives in
``_connection``, what a context trusts (library vs injected rules) in
``_trust``, injection in ``_inject``.
"""

import _ssl
import _thread
import os
import ssl
import sys

# No ``from __future__ import annotations`` (``__future__`` is a module
# import of its own): annotations that name typing-only things are quoted.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from typing_extensions import Buffer

    from . import _connection, _trust

    if sys.platform == "win32":
        from . import _windows as _backend
    elif sys.platform == "darwin":
        from . import _macos as _backend
    else:
        from . import _openssl as _backend

# What contexts need beyond this module (the backend, the trust rules, the
# connection state) is imported at the first context, not here: this module
# is loaded by every ``import ssl`` of an injected interpreter, and most
# programs that import ssl (through urllib.request, http.client, asyncio...)
# never make a context.  Until then each of these globals is a stand-in
# (_stand_in) that imports them all on its first attribute read and rebinds
# the globals to the modules themselves, so later code pays nothing for the laziness.
_BACKEND_MODULE = (
    "truststore._windows"
    if sys.platform == "win32"
    else "truststore._macos"
    if sys.platform == "darwin"
    else "truststore._openssl"
)
# (global name, module)
_DEFERRED = (
    ("_common", "truststore._common"),
    ("_connection", "truststore._connection"),
    ("_trust", "truststore._trust"),
    ("_backend", _BACKEND_MODULE),
)
# Every module of ours that the first context imports: _DEFERRED's and what
# they import in turn (_trust reads _openssl's PEM and name-hash code on
# every platform; _openssl keeps its store plan in _store_cache).
# tests/test_autoinject_lazy_import.py checks this list against what a
# first context really loads.
_FIRST_CONTEXT_MODULES = (
    *(name for _, name in _DEFERRED),
    "truststore._openssl",
    "truststore._store_cache",
)


_deferred_pending = True  # until _load_deferred() has bound them all


def _load_deferred() -> None:
    """Import the modules of _DEFERRED and bind them to their globals.

    Safe from any number of threads at once: the import system's module
    locks make every thread see each module only once it has finished
    executing, and all of them bind the same objects."""
    global _deferred_pending
    namespace = globals()
    for global_name, module_name in _DEFERRED:
        __import__(module_name)
        namespace[global_name] = sys.modules[module_name]
    _deferred_pending = False


def _stdlib_instead(exc: Exception) -> None:
    """A deferred module exists but cannot be imported (an interrupted
    upgrade left half a file, say): as when that happens at ``import ssl``,
    ssl becomes the standard library's again (which verifies, with its own
    default certificates), with one ``truststore-auto:`` line, and the
    program goes on."""
    message = f"could not load truststore ({exc!r}); ssl stays the standard library's"
    rules = sys.modules.get("truststore_autoinject_rules")
    warn = getattr(rules, "warn", None)
    try:
        if warn is not None:
            warn(message)
        else:
            sys.stderr.write(f"truststore-auto: {message}\n")
        extract_from_ssl()
    except Exception:
        if getattr(ssl, "SSLContext", None) is InjectedSSLContext:
            ssl.SSLContext = _StdSSLContext  # type: ignore[misc]


def _stand_in(module_name: str) -> "Any":
    """A module global of _DEFERRED until its first use (see there): an
    empty module of that name whose PEP 562 ``__getattr__`` loads them all.
    A module object, not an instance of a class of ours, because this runs
    at ``import ssl`` and creating a class costs ~0.05 ms.  Dunder names
    (``repr()`` asks for ``__file__``) do not load anything."""
    stand_in = type(sys)(module_name, "Stands in for the module until its first use.")

    def __getattr__(attribute: str) -> "Any":
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)
        try:
            _load_deferred()
        except AttributeError as exc:
            # Not "no such attribute": getattr(x, name, default) and
            # hasattr() must not hide a module that failed to load.
            raise ImportError(f"cannot import {module_name}: {exc!r}") from exc
        return getattr(sys.modules[module_name], attribute)

    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    return stand_in


def _check_deferred_present() -> None:
    """Refuse to load, as before the modules were deferred, when one of
    them is missing (a half-removed installation): the hook then leaves
    ssl as it was, with one warning, instead of injecting a class whose
    first context would fail.  One directory listing; a layout other than
    plain ``.py`` files (sourceless, a zip) asks the import system."""
    try:
        present = os.listdir(os.path.dirname(__file__))
    except (OSError, ValueError):
        present = []
    for module_name in _FIRST_CONTEXT_MODULES:
        if module_name in sys.modules or module_name.rpartition(".")[2] + ".py" in present:
            continue
        import importlib.util

        if importlib.util.find_spec(module_name) is None:
            raise ModuleNotFoundError(f"No module named {module_name!r}", name=module_name)


_check_deferred_present()
if not TYPE_CHECKING:
    for _global_name, _module_name in _DEFERRED:
        globals()[_global_name] = _stand_in(_module_name)
    del _global_name, _module_name

__all__ = ["SSLContext", "extract_from_ssl", "inject_into_ssl"]

# Refused on intercepting contexts (see _connection.before_wrap); 0 where OpenSSL has none.
_NO_RENEGOTIATION: int = getattr(ssl, "OP_NO_RENEGOTIATION", 0)

# The standard library's class, captured before anyone replaces it.
_StdSSLContext = ssl.SSLContext
_CSSLContext = _ssl._SSLContext
# The C-level descriptors, typed loosely: typeshed models them as plain
# attributes, but we call their __get__/__set__ to bypass Python overrides.
_C_CHECK_HOSTNAME: "Any" = vars(_CSSLContext)["check_hostname"]
_C_VERIFY_MODE: "Any" = vars(_CSSLContext)["verify_mode"]
_C_VERIFY_FLAGS: "Any" = vars(_CSSLContext)["verify_flags"]
_C_OPTIONS: "Any" = vars(_CSSLContext)["options"]
_C_SECURITY_LEVEL: "Any" = vars(_CSSLContext)["security_level"]


def _python_properties_over_c(python_class: type, c_class: type) -> "tuple[str, ...]":
    """Names of the data descriptors *python_class* defines over *c_class*'s."""
    return tuple(
        name
        for name, value in vars(python_class).items()
        if not name.startswith("__") and hasattr(type(value), "__set__") and hasattr(c_class, name)
    )


# ssl.py's property setters reach the C attribute they wrap through
# ``super(SSLContext, SSLContext).<name>.__set__`` (zero-argument super()
# cannot set a data descriptor).  That looks up the *global* name
# ``SSLContext`` at call time, so once ``ssl.SSLContext`` is our class the
# ``super()`` lands on whatever follows our class in its MRO.  Such a setter
# can only target a C attribute, and it recurses only if ssl.py also wraps
# that attribute in a property of its own: so every ssl.py property over a C
# attribute is covered, read from the running ssl module (3.10-3.13: the
# versions, options, verify flags and mode, _msg_callback and protocol),
# and a new CPython that adds one is covered without a release.
# tests/test_version_proof.py proves it against the running ssl.py source.
_GLOBAL_SUPER_PROPERTIES = _python_properties_over_c(_StdSSLContext, _CSSLContext)


def _c_level_property(name: str) -> property:
    """A property that goes straight to the C implementation of *name*."""
    c_descriptor = getattr(_CSSLContext, name)

    def fget(self: "Any") -> "Any":
        return c_descriptor.__get__(self, _CSSLContext)

    def fset(self: "Any", value: "Any") -> None:
        c_descriptor.__set__(self, value)

    return property(fget, fset, doc=f"C-level {name} (see _SuperTarget).")


if _BACKEND_MODULE != "truststore._openssl":

    class _BackendVerifierClass:
        """``SSLContext._verifier_class`` until its first read, which imports
        the backend (see _DEFERRED) and puts its ``Verifier`` on SSLContext
        in this descriptor's place."""

        def __get__(self, instance: object, owner: type) -> "type[Any] | None":
            _load_deferred()
            value: type[Any] | None = getattr(sys.modules[_BACKEND_MODULE], "Verifier", None)
            SSLContext._verifier_class = value
            return value


class _SuperTarget(_StdSSLContext):
    """Where ``super(SSLContext, SSLContext)`` lands once we are injected.

    ``SSLContext`` (ours) -> ``_SuperTarget`` -> ``ssl.SSLContext`` -> C.
    When ssl.py's own setters (running for our instances, or for stdlib
    contexts created before injection) ask ``super(<our class>, <our class>)``
    for a property, they find these C-level ones instead of ssl.py's Python
    properties again, so there is no recursion, in any injection order.
    Our class re-exposes ssl.py's properties, so normal attribute access
    still runs ssl.py's logic (enum wrapping, SSLv3 handling, callbacks).
    """

    locals().update({name: _c_level_property(name) for name in _GLOBAL_SUPER_PROPERTIES})


class SSLContext(_SuperTarget):
    """``ssl.SSLContext`` that verifies servers against the OS trust store.

    It is a real ``ssl.SSLContext`` subclass: every attribute and method
    works, and ``isinstance(ctx, ssl.SSLContext)`` holds.  Used directly (the
    library API), certificates added with ``load_verify_locations()`` are
    trusted in addition to the OS store, as in the public truststore
    package.  Contexts made through the standard library's names while
    injected are ``InjectedSSLContext`` and follow the stdlib's rules
    (pins stay pins); ``_trust`` holds both rule sets, the README the table.
    With no argument the protocol is ``PROTOCOL_TLS_CLIENT``.

    Used server-side, any context verifies *client* certificates against
    the CAs its owner chose, never against every CA the OS trusts: the OS
    store joins a context only at its first client-side use.
    """

    # The library rule: the OS store plus what is loaded (see _trust).
    _truststore_additive: "ClassVar[bool]" = True

    # ssl.py's own properties, re-exposed so that normal access runs their
    # logic (see _SuperTarget for why the MRO needs the C ones behind us).
    locals().update({name: vars(_StdSSLContext)[name] for name in _GLOBAL_SUPER_PROPERTIES})

    # The backend's per-context verifier, or None where OpenSSL itself
    # verifies against the OS store (Linux/BSD).  Tests of a backend on
    # another platform set this on a subclass; nothing else should.
    if TYPE_CHECKING:
        _verifier_class: "ClassVar[type[Any] | None]"
    elif _BACKEND_MODULE == "truststore._openssl":
        _verifier_class = None  # the OpenSSL backend has no Verifier
    else:
        _verifier_class = _BackendVerifierClass()

    def __new__(cls, protocol: "int | None" = None, *args: "Any", **kwargs: "Any") -> "SSLContext":
        if _deferred_pending:
            try:
                _load_deferred()
            except Exception as exc:
                if cls._truststore_additive:
                    raise  # the library API was asked for by name: say so
                # A context made through the standard library's name.
                _stdlib_instead(exc)
                given = () if protocol is None else (protocol,)
                return _StdSSLContext(*given, *args, **kwargs)  # type: ignore[return-value]
        if protocol is None:
            protocol = ssl.PROTOCOL_TLS_CLIENT
        self: SSLContext = _StdSSLContext.__new__(cls, protocol)
        return self

    def __init__(self, protocol: "int | None" = None) -> None:
        if "_truststore_lock" in self.__dict__:
            # Called again (a mixin, a cooperative subclass): like the
            # standard library's, whose SSLContext has no __init__, this
            # changes nothing.  Re-reading the user's view from the native
            # context would read CERT_NONE on the intercept path.
            return
        self._truststore_lock = _thread.allocate_lock()
        self._is_client = self.protocol != ssl.PROTOCOL_TLS_SERVER
        # What this context trusts; nothing is loaded until first use.  (The
        # early return above keeps a second __init__ from forgetting it, which
        # would turn a pin into "nothing loaded".)
        self._trust = _trust.ContextTrust(
            additive=self._truststore_additive, os_verifies=self._verifier_class is not None
        )
        self._verified_sessions: dict[bytes, str | None] = {}
        self._verifier: Any = None
        self._user_sslsocket_class: type[ssl.SSLSocket] = ssl.SSLSocket
        self._user_sslobject_class: type[ssl.SSLObject] = ssl.SSLObject
        self._intercept = False
        if self.protocol == ssl.PROTOCOL_TLS_CLIENT and self._verifier_class is not None:
            # Client-only: intercept from the start.  A generic protocol
            # (PROTOCOL_TLS, TLSv1_2, ...) may serve instead: it switches at
            # its first client-side use (_settle_client), never after serving.
            self._start_intercepting()

    def _start_intercepting(self) -> None:
        # The user's view starts from the native settings (TLS_CLIENT:
        # CERT_REQUIRED + check_hostname); the native context is then told
        # to accept anything, because we verify.
        self._user_check_hostname = bool(_C_CHECK_HOSTNAME.__get__(self))
        self._user_verify_mode = ssl.VerifyMode(_C_VERIFY_MODE.__get__(self))
        assert self._verifier_class is not None
        self._verifier = self._verifier_class()
        self._intercept = True
        _C_CHECK_HOSTNAME.__set__(self, False)
        _C_VERIFY_MODE.__set__(self, ssl.CERT_NONE)
        self._trust.attach(self)

    @property
    def _os_store_empty(self) -> bool:
        return self._trust.os_empty

    def _store_backend(self) -> "Any":
        """The backend whose OS store this context means: the verifier's
        module where one verifies (so that the seam ``_verifier_class``
        brings its store along), else the platform's."""
        if self._verifier_class is not None:
            module = sys.modules.get(self._verifier_class.__module__)
            if module is not None and hasattr(module, "store_certificates"):
                return module
        return _backend

    # -- the switches the user sees -------------------------------------
    @property
    def verify_mode(self) -> "ssl.VerifyMode":
        if self._intercept_active():
            return self._user_verify_mode
        return ssl.VerifyMode(_StdSSLContext.verify_mode.fget(self))  # type: ignore[attr-defined]

    @verify_mode.setter
    def verify_mode(self, value: "ssl.VerifyMode | int") -> None:
        if not self._intercept_active():
            _StdSSLContext.verify_mode.fset(self, value)  # type: ignore[attr-defined]
            return
        if value not in (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
            raise ValueError("invalid value for verify_mode")
        if value == ssl.CERT_NONE and self._user_check_hostname:
            raise ValueError("Cannot set verify_mode to CERT_NONE when check_hostname is enabled.")
        self._user_verify_mode = ssl.VerifyMode(value)

    @property
    def check_hostname(self) -> bool:
        if self._intercept_active():
            return self._user_check_hostname
        return bool(_C_CHECK_HOSTNAME.__get__(self))

    @check_hostname.setter
    def check_hostname(self, value: bool) -> None:
        if not self._intercept_active():
            _C_CHECK_HOSTNAME.__set__(self, value)
            return
        enable = bool(value)
        # Same coupling as CPython's C setter: asking for host-name checks
        # on a context that verifies nothing turns verification on.
        if enable and self._user_verify_mode == ssl.CERT_NONE:
            self._user_verify_mode = ssl.CERT_REQUIRED
        self._user_check_hostname = enable

    def _intercept_active(self) -> bool:
        # Before __init__ ran (e.g. a subclass that overrides __init__ badly)
        # the native settings are the truth.
        return self.__dict__.get("_intercept", False) is True

    # -- socket classes: ours wrap whatever the user chooses -----------------
    @property
    def sslsocket_class(self) -> "type[ssl.SSLSocket]":
        return _connection.with_verification(
            self._user_sslsocket_class, _connection.VerifyingSSLSocket
        )

    @sslsocket_class.setter
    def sslsocket_class(self, value: "type[ssl.SSLSocket]") -> None:
        self._user_sslsocket_class = value

    @property
    def sslobject_class(self) -> "type[ssl.SSLObject]":
        return _connection.with_verification(
            self._user_sslobject_class, _connection.VerifyingSSLObject
        )

    @sslobject_class.setter
    def sslobject_class(self, value: "type[ssl.SSLObject]") -> None:
        self._user_sslobject_class = value

    # -- connection creation ---------------------------------------------
    def _wrap_socket(
        self,
        sock: "Any",
        server_side: bool,
        server_hostname: "str | None" = None,
        *,
        owner: "Any" = None,
        session: "Any" = None,
    ) -> "Any":
        _connection.before_wrap(self, owner, server_side, server_hostname)
        return super()._wrap_socket(  # type: ignore[misc]
            sock, server_side, server_hostname, owner=owner, session=session
        )

    def _wrap_bio(
        self,
        incoming: "ssl.MemoryBIO",
        outgoing: "ssl.MemoryBIO",
        server_side: bool,
        server_hostname: "str | None" = None,
        *,
        owner: "Any" = None,
        session: "Any" = None,
    ) -> "Any":
        _connection.before_wrap(self, owner, server_side, server_hostname)
        return super()._wrap_bio(  # type: ignore[misc]
            incoming, outgoing, server_side, server_hostname, owner=owner, session=session
        )

    def _settle_client(self) -> None:
        switch = None
        if not self._intercept and self._verifier_class is not None:
            switch = self._start_intercepting
        self._trust.settle_client(self, _backend, switch)

    # -- trust anchors (the rules are in _trust) ------------------------------
    def load_verify_locations(
        self,
        cafile: "str | bytes | os.PathLike[str] | os.PathLike[bytes] | None" = None,
        capath: "str | bytes | os.PathLike[str] | os.PathLike[bytes] | None" = None,
        cadata: "str | Buffer | None" = None,
    ) -> None:
        """Trust these certificates (library contexts: in addition to the OS
        store; injected contexts: as the stdlib would, a general-purpose
        public bundle meaning the OS store plus its non-public certificates).

        The native context loads them, so errors are exactly the standard
        library's; an intercepting backend gets the same certificates as
        anchors.
        """
        state = self.__dict__.get("_trust")
        if state is None:
            super().load_verify_locations(cafile, capath, cadata)
            return
        bundle = None
        if cafile is not None and not state.additive:
            try:
                bundle = _trust.classify_bundle(os.fsdecode(cafile), self._store_backend())
            except (TypeError, ValueError):
                bundle = None  # the stdlib's own call below raises
            if bundle is not None and not bundle.general:
                bundle = None
        if bundle is not None:
            if capath is not None or cadata is not None:
                super().load_verify_locations(None, capath, cadata)
            if bundle.private_ders:
                _CSSLContext.load_verify_locations(self, None, None, b"".join(bundle.private_ders))
            state.ask_defaults(self, _backend)
            cafile = None
        else:
            super().load_verify_locations(cafile, capath, cadata)
        anchors: list[bytes] = []
        if state.os_verifies:
            anchors = _trust.collect_anchor_ders(cafile, capath, cadata)
            if bundle is not None:
                anchors[:0] = bundle.private_ders
        state.add_material(self, anchors)

    def load_default_certs(self, purpose: "ssl.Purpose" = ssl.Purpose.SERVER_AUTH) -> None:
        """The OS store, as it is now (see _trust: loaded at first use;
        repeated calls with the store unchanged add nothing)."""
        if not isinstance(purpose, ssl._ASN1Object):
            raise TypeError(purpose)
        if not self._is_client or "_trust" not in self.__dict__:
            super().load_default_certs(purpose)
            return
        self._trust.ask_defaults(self, _backend)

    def set_default_verify_paths(self) -> None:
        if not self._is_client or "_trust" not in self.__dict__:
            super().set_default_verify_paths()
            return
        self._trust.ask_defaults(self, _backend)

    def get_ca_certs(self, binary_form: bool = False) -> "Any":
        """The CA certificates this context trusts, the OS store's included
        when it is part of that trust (read now; OpenSSL lists a hashed
        directory's certificates only once a handshake looked them up, so
        do we)."""
        report = _trust.report_context(self, self._store_backend(), _StdSSLContext)
        if report is None:
            return super().get_ca_certs(binary_form)
        return report.get_ca_certs(binary_form)

    def cert_store_stats(self) -> "dict[str, int]":
        report = _trust.report_context(self, self._store_backend(), _StdSSLContext)
        stats: dict[str, int] = super().cert_store_stats()
        if report is None:
            return stats
        reported: dict[str, int] = report.cert_store_stats()
        # CRLs: the store's bundle may hold some (the report loaded it),
        # the native context those loaded by the owner; never counted twice.
        reported["crl"] = max(reported.get("crl", 0), stats.get("crl", 0))
        return reported


class _InjectedSuperTarget(_SuperTarget):
    """What follows ``InjectedSSLContext`` in its MRO: C-level properties
    again, for the same reason as ``_SuperTarget`` (ssl.py's setters ask
    ``super(<installed class>, <installed class>)``, and the installed class
    is now InjectedSSLContext, whose next class must not be ssl.py's)."""

    # The same (stateless) C-level properties as _SuperTarget's.
    locals().update({name: vars(_SuperTarget)[name] for name in _GLOBAL_SUPER_PROPERTIES})


def _resolved(cls: type, name: str) -> "Any":
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(name)


class InjectedSSLContext(_InjectedSuperTarget, SSLContext):
    """What ``ssl.SSLContext`` is while injected: a ``truststore.SSLContext``
    that trusts what the standard library would, the OS store standing in
    for "the default certificates" (see _trust and the README's table).

    MRO: InjectedSSLContext -> _InjectedSuperTarget (C-level properties) ->
    SSLContext -> _SuperTarget -> ssl.SSLContext -> _ssl._SSLContext.
    """

    _truststore_additive: "ClassVar[bool]" = False

    # SSLContext's view of each shadowed property (ours for verify_mode,
    # ssl.py's for the rest), so that normal access runs their logic.
    locals().update({name: _resolved(SSLContext, name) for name in _GLOBAL_SUPER_PROPERTIES})


def store_description() -> str:
    """Where this platform's OS trust store is (for ``truststore status``)."""
    describe: Any = _backend.describe_store
    return str(describe())


def backend_name() -> str:
    """The backend module's name, e.g. ``truststore._openssl``."""
    return _backend.__name__


# The public switch; the work is _inject's.  The modules its PATCH_TABLE
# patches (tests/test_injection.py checks that the two lists agree): while
# none of them is imported, injecting is one assignment, the same one
# _inject would make, so ``import ssl`` under the hook (which injects the
# moment ssl has loaded) does not load _inject at all.
_PATCHED_MODULES = (
    "urllib3.util.ssl_",
    "requests.adapters",
    "pip._vendor.urllib3.util.ssl_",
    "pip._vendor.requests.adapters",
    "aiohttp.connector",
)


def inject_into_ssl() -> None:
    """Make ``ssl.SSLContext`` (and the HTTP stacks' copies) ours.

    Idempotent.  Contexts created earlier keep working, settings included;
    modules imported later are fixed as they load (the auto-injection hook
    patches them).
    """
    modules = sys.modules
    if "truststore._inject" in modules or any(name in modules for name in _PATCHED_MODULES):
        from . import _inject

        _inject.inject_into_ssl()
    else:
        ssl.SSLContext = InjectedSSLContext  # type: ignore[misc]


def extract_from_ssl() -> None:
    """Undo ``inject_into_ssl()``: restore the standard library's class."""
    from . import _inject

    _inject.extract_from_ssl()
