"""Connection state: what one client connection is verified against, and
the socket classes that run that verification after the handshake.

A context (``_api.SSLContext``) decides *what* is trusted; this module decides
*when*: each connection gets a ``Pending`` record when its SSL object is made,
and its handshake is followed by exactly one verification through the
context.  The data methods finish a pending handshake first, so no byte moves
before the verdict.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import typing
from typing import Any

from . import _api, _common

if typing.TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Buffer

_T = typing.TypeVar("_T")

# Resumable sessions remembered per context (oldest forgotten first).
MAX_REMEMBERED_SESSIONS = 256

_STD_SSLSOCKET_SESSION: Any = vars(ssl.SSLSocket)["session"]
_STD_SSLOBJECT_SESSION: Any = vars(ssl.SSLObject)["session"]


def is_verifying_owner(owner: Any) -> bool:
    return isinstance(owner, (VerifyingSSLSocket, VerifyingSSLObject))


class Failed:
    """Stands in for the SSL object of a connection whose peer was rejected.

    Any use (read, write, shutdown, ...) raises the verification error again,
    so a caller that catches the first error cannot talk to the peer anyway.
    """

    def __init__(self, error: ssl.SSLCertVerificationError) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Any:
        raise self._error


class Pending:
    """What a client connection must be verified against, fixed when its SSL
    object is created (as OpenSSL fixes its own settings then)."""

    __slots__ = (
        "_host",
        "check_hostname",
        "context",
        "native",
        "offered_session",
        "server_hostname",
        "verify_flags",
        "verify_mode",
    )

    def __init__(
        self,
        context: _api.SSLContext,
        server_hostname: str | None,
        check_hostname: bool,
        verify_mode: int,
        verify_flags: int,
        offered_session: bytes | None,
        native: bool,
    ) -> None:
        self.context = context
        self.server_hostname = server_hostname
        self.check_hostname = check_hostname
        self.verify_mode = verify_mode
        self.verify_flags = verify_flags
        self.offered_session = offered_session
        self.native = native
        self._host: str | bool | None = False  # not normalised yet

    @property
    def host(self) -> str | None:
        """The normalised host name, worked out on first use: on the OpenSSL
        path most connections never need it."""
        if self._host is False:
            self._host = _common.normalize_host(self.server_hostname)
        return self._host  # type: ignore[return-value]


def _finish_handshake(owner: Any) -> None:
    """Verify once, right after the real handshake; remember the outcome."""
    pending: Pending | None = owner.__dict__.pop("_truststore_pending", None)
    if pending is None:
        return
    try:
        pending.context._verify_peer(owner._sslobj, pending)
    except ssl.SSLCertVerificationError as exc:
        owner._sslobj = Failed(exc)
        raise
    if pending.verify_mode != ssl.CERT_NONE:
        # Sessions are recorded when the caller reads ``.session`` (the only
        # way to resume one); reading it here would copy the session, peer
        # certificate included, on every handshake.
        owner.__dict__["_truststore_verified"] = pending


def _remember_session(owner: Any, session: Any) -> None:
    """Record that *session* came from a connection verified for its host."""
    verified: Pending | None = owner.__dict__.get("_truststore_verified")
    if verified is None or session is None:
        return
    with contextlib.suppress(Exception):
        verified.context._remember_session(
            session.id, verified.host if verified.check_hostname else None
        )


def _enrich_native_error(
    owner: Any, exc: ssl.SSLCertVerificationError
) -> ssl.SSLCertVerificationError:
    """OpenSSL's error in our shape: same code, message naming the host."""
    pending: Pending | None = owner.__dict__.get("_truststore_pending")
    message = getattr(exc, "verify_message", None) or str(exc)
    if pending is not None and pending.context._os_store_empty:
        message += f" (no trusted CA certificates could be loaded: {_api.store_description()})"
    return _common.verification_error(
        getattr(exc, "verify_code", None) or _common.X509_V_ERR_UNSPECIFIED,
        message,
        owner.server_hostname,
    )


def _run_handshake(owner: Any, handshake: Callable[[], None]) -> None:
    """*handshake*, then our verification; OpenSSL's own verification error
    is re-raised in our shape (same code, the host named)."""
    try:
        handshake()
    except ssl.SSLCertVerificationError as exc:
        if "_truststore_pending" not in owner.__dict__:
            raise
        raise _enrich_native_error(owner, exc) from None
    _finish_handshake(owner)


def _remembering_session_property(std: Any) -> property:
    """ssl.py's ``session`` property, recording what a verified connection
    hands out: a resumed handshake is accepted only for such sessions."""

    def fget(self: Any) -> ssl.SSLSession | None:
        session: ssl.SSLSession | None = std.fget(self)
        _remember_session(self, session)
        return session

    def fset(self: Any, value: ssl.SSLSession | None) -> None:
        std.fset(self, value)

    return property(fget, fset, doc=std.__doc__)


class VerifyingSSLSocket(ssl.SSLSocket):
    """``ssl.SSLSocket`` that verifies through the backend after its handshake.

    With ``do_handshake_on_connect=False`` a caller may read or write without
    calling ``do_handshake()``; OpenSSL then runs the handshake by itself
    inside ``SSL_read``/``SSL_write``, where we would never see its end.  So
    the data methods finish (and verify) a pending handshake first.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            _run_handshake(self, lambda: super(VerifyingSSLSocket, self).do_handshake(block))
        except ssl.SSLCertVerificationError:
            if isinstance(getattr(self, "_sslobj", None), Failed):
                self.close()  # our verification refused the peer
            raise

    def _handshake_before_data(self) -> None:
        if "_truststore_pending" in self.__dict__ and getattr(self, "_sslobj", None) is not None:
            self.do_handshake()

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        self._handshake_before_data()
        return super().read(len, buffer)

    def write(self, data: Buffer) -> int:
        self._handshake_before_data()
        return super().write(data)

    def send(self, data: Buffer, flags: int = 0) -> int:
        self._handshake_before_data()
        return super().send(data, flags)

    session = _remembering_session_property(_STD_SSLSOCKET_SESSION)


class VerifyingSSLObject(ssl.SSLObject):
    """``ssl.SSLObject`` (the asyncio / memory-BIO path), same treatment."""

    def do_handshake(self) -> None:
        _run_handshake(self, lambda: super(VerifyingSSLObject, self).do_handshake())

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        if "_truststore_pending" in self.__dict__:
            self.do_handshake()  # see VerifyingSSLSocket
        return super().read(len, buffer)

    def write(self, data: Buffer) -> int:
        if "_truststore_pending" in self.__dict__:
            self.do_handshake()
        return super().write(data)

    session = _remembering_session_property(_STD_SSLOBJECT_SESSION)


_combined_classes: dict[tuple[type, type], type] = {}
_combined_lock = threading.Lock()


def with_verification(cls: type[_T], mixin: type) -> type[_T]:
    """*cls* (a user's SSLSocket/SSLObject subclass) plus our handshake hook."""
    if issubclass(cls, mixin):
        return cls
    key = (cls, mixin)
    with _combined_lock:
        combined = _combined_classes.get(key)
        if combined is None:
            combined = type(f"Truststore{cls.__name__}", (mixin, cls), {})
            _combined_classes[key] = combined
    return combined
