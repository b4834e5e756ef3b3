"""Connection state: what one client connection is verified against, and
the socket classes that run that verification after the handshake.

A context (``_api.SSLContext``) decides *what* is trusted; this module decides
*when*: each connection gets a ``Pending`` record when its SSL object is made
(``before_wrap``), and its handshake is followed by exactly one verification
with the context's verifier (``verify_peer``).  The record's state goes pending -> verifying -> verified | failed,
under its own lock: every method that moves application bytes (and
``do_handshake``) runs the handshake and verification if nobody has, waits
while another thread verifies, and raises once the connection failed.  So no
byte moves before the verdict, whatever the threads, and nothing that escapes
verification (KeyboardInterrupt, SystemExit, gevent.Timeout...) leaves a
connection usable.  A verified connection pays one dict look-up per call.
"""

# Annotations that are not builtins are quoted instead of ``from __future__
# import annotations``: __future__ is a module import of its own, paid at the
# first context of every process (issue 13).
import _ssl
import _thread
import socket
import ssl

from . import _api, _common

# Typing names only for the type checker (``typing`` is slow to import).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from typing_extensions import Buffer

    _T = TypeVar("_T")

# Resumable sessions remembered per context (oldest forgotten first).
MAX_REMEMBERED_SESSIONS = 256

_STD_SSLSOCKET_SESSION: "Any" = vars(ssl.SSLSocket)["session"]
_STD_SSLOBJECT_SESSION: "Any" = vars(ssl.SSLObject)["session"]


def is_verifying_owner(owner: "Any") -> bool:
    return isinstance(owner, (VerifyingSSLSocket, VerifyingSSLObject))


# Connection states.  Plain ints, not an enum: they are read on every data
# call of a connection that is not verified yet.
PENDING = 0  # handshake not finished (or not started)
VERIFYING = 1  # handshake done, verification running (the lock is held)
VERIFIED = 2  # the verdict was "trusted" (or nothing had to be verified)
FAILED = 3  # refused, or verification did not finish: for good

PENDING_KEY = "_truststore_pending"
_VERIFIED_KEY = "_truststore_verified"


class Failed:
    """Stands in for the SSL object of a connection whose peer was rejected.

    Any use (read, write, shutdown, ...) raises the verification error again,
    so a caller that catches the first error cannot talk to the peer anyway.
    """

    def __init__(self, error: "ssl.SSLCertVerificationError") -> None:
        self._error = error

    def __getattr__(self, name: str) -> "Any":
        raise self._error


class Pending:
    """One client connection's verification: what it is verified against
    (fixed when its SSL object is created, as OpenSSL fixes its own settings
    then) and where it stands (``state``, changed only under ``lock``).

    It sits in the owner's ``__dict__`` under ``_truststore_pending`` until
    the verdict is "trusted"; the data methods check only that key, so a
    verified connection pays one dict look-up per call.
    """

    __slots__ = (
        "_host",
        "check_hostname",
        "context",
        "error",
        "lock",
        "native",
        "peer_der",
        "peer_info",
        "security_level",
        "server_hostname",
        "state",
        "verify_flags",
        "verify_mode",
    )

    def __init__(
        self,
        context: "_api.SSLContext",
        server_hostname: "str | None",
        check_hostname: bool,
        verify_mode: int,
        verify_flags: int,
        native: bool,
        security_level: int = 0,
    ) -> None:
        self.context = context
        self.server_hostname = server_hostname
        self.check_hostname = check_hostname
        self.verify_mode = verify_mode
        self.verify_flags = verify_flags
        self.native = native
        self.security_level = security_level
        self._host: str | bool | None = False  # not normalised yet
        # Re-entrant so that the verifying thread, re-entering (a signal
        # handler, a verifier calling back), gets an error, not a deadlock.
        self.lock = _thread.RLock()
        self.state = PENDING
        self.error: ssl.SSLCertVerificationError | None = None
        self.peer_der: bytes | None = None  # the leaf that was verified
        self.peer_info: dict[str, Any] | None = None  # its getpeercert() dict

    @property
    def host(self) -> "str | None":
        """The normalised host name, worked out on first use: on the OpenSSL
        path most connections never need it."""
        if self._host is False:
            self._host = _common.normalize_host(self.server_hostname)
        return self._host  # type: ignore[return-value]


def _enrich_native_error(
    owner: "Any", exc: "ssl.SSLCertVerificationError"
) -> "ssl.SSLCertVerificationError":
    """OpenSSL's error in our shape: same code, message naming the host."""
    pending: Pending | None = owner.__dict__.get(PENDING_KEY)
    message = getattr(exc, "verify_message", None) or str(exc)
    if pending is not None and pending.context._os_store_empty:
        message += f" (no trusted CA certificates could be loaded: {_api.store_description()})"
    return _common.verification_error(
        getattr(exc, "verify_code", None) or _common.X509_V_ERR_UNSPECIFIED,
        message,
        owner.server_hostname,
    )


def _await_verdict(owner: "Any", handshake: "Callable[[], None]") -> None:
    """Return only once *owner*'s peer is verified; raise if it never will be.

    The first caller runs *handshake* (OpenSSL's) and then our verification,
    holding the connection's lock throughout; any other thread calling a data
    method meanwhile waits here for the verdict.  Nothing leaves VERIFYING
    except through a verdict: whatever escapes verification (an error, a
    KeyboardInterrupt, SystemExit, gevent.Timeout...) fails the connection
    for good.
    """
    record: Pending | None = owner.__dict__.get(PENDING_KEY)
    if record is None:
        return
    with record.lock:
        state = record.state
        if state == FAILED:
            assert record.error is not None
            raise record.error
        if state == VERIFIED:
            return
        if state == VERIFYING:
            # Only this very thread can get here (the lock is re-entrant).
            raise ssl.SSLError("the connection was used while its own peer was being verified")
        try:
            handshake()
        except ssl.SSLCertVerificationError as exc:
            # OpenSSL refused (the native path): final, like our own refusal.
            error = _enrich_native_error(owner, exc)
            record.error, record.state = error, FAILED
            raise error from None
        record.state = VERIFYING
        try:
            verify_peer(record.context, owner._sslobj, record)
        except BaseException as exc:
            if isinstance(exc, ssl.SSLCertVerificationError):
                error = exc
            else:
                error = _common.verification_error(
                    _common.X509_V_ERR_UNSPECIFIED,
                    f"verification did not finish ({type(exc).__name__}); "
                    "the connection cannot be used",
                    record.host,
                )
            record.error, record.state = error, FAILED
            owner._sslobj = Failed(error)
            owner._truststore_refused()
            raise
        record.state = VERIFIED
        owner.__dict__[_VERIFIED_KEY] = record
        del owner.__dict__[PENDING_KEY]


def _remember_session(owner: "Any", session: "Any") -> None:
    """Record that *session* came from a connection verified for its host."""
    verified: Pending | None = owner.__dict__.get(_VERIFIED_KEY)
    if verified is None or session is None or verified.verify_mode == ssl.CERT_NONE:
        return
    # Bookkeeping only: an unrecorded session is simply never resumed.  (Not
    # contextlib.suppress: contextlib costs ~0.9 ms at the first import ssl.)
    try:  # noqa: SIM105
        record_verified_session(
            verified.context, session.id, verified.host if verified.check_hostname else None
        )
    except Exception:
        pass


def _peercert(owner: "Any", binary_form: bool, std: "Callable[[bool], Any]") -> "Any":
    """``getpeercert()``: after *our* verification, what the standard library
    gives for a verified peer (OpenSSL was told CERT_NONE, so CPython would
    hide the dict); and never a certificate other than the verified one."""
    if PENDING_KEY in owner.__dict__:
        record: Pending = owner.__dict__[PENDING_KEY]
        with record.lock:  # waits while another thread verifies
            if record.state == FAILED:
                assert record.error is not None
                raise record.error
        # Not verified yet: the standard library's answer ("handshake not
        # done yet", or nothing).  With the handshake done, the peer must be
        # verified first; the data methods do that.
        if record.native or std(True) is None:
            return std(binary_form)
        _await_verdict(owner, lambda: None)
    verified: Pending | None = owner.__dict__.get(_VERIFIED_KEY)
    if verified is None or verified.native or verified.peer_der is None:
        return std(binary_form)
    der = std(True)
    if der != verified.peer_der:
        # A renegotiation swapped the certificate (refused upstream by
        # OP_NO_RENEGOTIATION; this is the backstop).
        raise _common.verification_error(
            _common.X509_V_ERR_UNSPECIFIED,
            "the peer's certificate changed after verification",
            verified.host,
        )
    if binary_form:
        return der
    if verified.verify_mode == ssl.CERT_NONE:
        return {}
    if verified.peer_info is None:
        chain = owner._sslobj.get_unverified_chain()
        verified.peer_info = chain[0].get_info()
    return dict(verified.peer_info)


def _remembering_session_property(std: "Any") -> "property":
    """ssl.py's ``session`` property, recording what a verified connection
    hands out: a resumed handshake is accepted only for such sessions."""

    def fget(self: "Any") -> "ssl.SSLSession | None":
        session: ssl.SSLSession | None = std.fget(self)
        _remember_session(self, session)
        return session

    def fset(self: "Any", value: "ssl.SSLSession | None") -> None:
        std.fset(self, value)

    return property(fget, fset, doc=std.__doc__)


class VerifyingSSLSocket(ssl.SSLSocket):
    """``ssl.SSLSocket`` that verifies through the backend after its handshake.

    Every method that moves application bytes first waits for the verdict
    (running the handshake itself if nobody did: with
    ``do_handshake_on_connect=False`` OpenSSL would otherwise run it inside
    ``SSL_read``/``SSL_write``, where we would never see its end).
    """

    def _truststore_settle(self) -> None:
        record: Pending = self.__dict__[PENDING_KEY]
        if record.state == PENDING and getattr(self, "_sslobj", None) is None:
            # Closed, or its connect() failed: no TLS at all, ssl.py raises
            # its own error (a failed connection is FAILED, never PENDING).
            return
        _await_verdict(self, lambda: super(VerifyingSSLSocket, self).do_handshake())

    def _truststore_refused(self) -> None:
        self.close()

    def do_handshake(self, block: bool = False) -> None:
        if PENDING_KEY not in self.__dict__:
            return super().do_handshake(block)
        _await_verdict(self, lambda: super(VerifyingSSLSocket, self).do_handshake(block))
        return None

    def read(self, len: int = 1024, buffer: "Any" = None) -> "Any":
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().read(len, buffer)

    def write(self, data: "Buffer") -> int:
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().write(data)

    def send(self, data: "Buffer", flags: int = 0) -> int:
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().send(data, flags)

    def sendall(self, data: "Buffer", flags: int = 0) -> None:
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().sendall(data, flags)

    def sendfile(self, file: "Any", offset: int = 0, count: "int | None" = None) -> int:
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().sendfile(file, offset, count)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().recv(buflen, flags)

    def recv_into(self, buffer: "Buffer", nbytes: "int | None" = None, flags: int = 0) -> int:
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().recv_into(buffer, nbytes, flags)

    def recvfrom(self, buflen: int = 1024, flags: int = 0) -> "tuple[bytes, Any]":
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().recvfrom(buflen, flags)

    def recvfrom_into(
        self, buffer: "Buffer", nbytes: "int | None" = None, flags: int = 0
    ) -> "tuple[int, Any]":
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().recvfrom_into(buffer, nbytes, flags)

    def unwrap(self) -> "socket.socket":
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().unwrap()

    def getpeercert(self, binary_form: bool = False) -> "Any":
        return _peercert(self, binary_form, super().getpeercert)

    session = _remembering_session_property(_STD_SSLSOCKET_SESSION)


class VerifyingSSLObject(ssl.SSLObject):
    """``ssl.SSLObject`` (the asyncio / memory-BIO path), same treatment."""

    def _truststore_settle(self) -> None:
        _await_verdict(self, super().do_handshake)

    def _truststore_refused(self) -> None:
        pass  # the caller owns the transport

    def do_handshake(self) -> None:
        if PENDING_KEY not in self.__dict__:
            return super().do_handshake()
        _await_verdict(self, super().do_handshake)
        return None

    def read(self, len: int = 1024, buffer: "Any" = None) -> "Any":
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().read(len, buffer)

    def write(self, data: "Buffer") -> int:
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().write(data)

    def unwrap(self) -> None:
        if PENDING_KEY in self.__dict__:
            self._truststore_settle()
        return super().unwrap()

    def getpeercert(self, binary_form: bool = False) -> "Any":
        return _peercert(self, binary_form, super().getpeercert)

    session = _remembering_session_property(_STD_SSLOBJECT_SESSION)


_combined_classes: "dict[tuple[type, type], type]" = {}
_combined_lock = _thread.allocate_lock()


def with_verification(cls: "type[_T]", mixin: "type") -> "type[_T]":
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


# -- what a context does per connection ----------------------------------------
# Functions of the context's, kept here rather than as methods of
# _api.SSLContext: _api is loaded by every ``import ssl`` of an injected
# interpreter, this module only at the first context (issue 13).


def before_wrap(
    context: "_api.SSLContext", owner: "Any", server_side: bool, server_hostname: "str | None"
) -> None:
    """Fix, per connection, what its handshake will be verified against
    (``SSLContext._wrap_socket``/``_wrap_bio`` call this first)."""
    if "_is_client" not in context.__dict__:
        # A subclass skipped our __init__: this is a plain stdlib context
        # (no OS store, OpenSSL's own checks), which fails closed.
        return
    if server_side:
        if context._is_client:
            # The owner's CAs only; refuses (ValueError) when the OS
            # store joined this context without the owner asking.
            # (_api's global, read through vars(): mypy sees no export.)
            backend = vars(_api)["_backend"]
            context._trust.check_server(context, backend, context.verify_mode != ssl.CERT_NONE)
        return
    if not context._trust.settled:
        context._settle_client()
    if context.check_hostname and not server_hostname:
        # ssl.SSLSocket checks this, but wrap_bio() does not, and OpenSSL
        # would then match no name at all.  No I/O has happened yet.
        raise ValueError("check_hostname requires server_hostname")
    intercept = context._intercept_active()
    if not is_verifying_owner(owner):
        if not intercept:
            return  # OpenSSL verifies; only session/host binding is lost
        # Someone drives the C object without ssl.py's classes; we would
        # never see the end of its handshake, and OpenSSL verifies
        # nothing here.  Fail closed.
        raise ssl.SSLError(
            "truststore.SSLContext needs ssl.SSLSocket/ssl.SSLObject (or "
            f"subclasses) to verify the peer; got {type(owner).__name__}"
        )
    security_level = 0
    if intercept:
        check_hostname, verify_mode = context._user_check_hostname, context._user_verify_mode
        # OpenSSL verifies nothing here, so it would also accept a TLS 1.2
        # renegotiation to any certificate: refuse renegotiation (set on
        # every wrap, so that clearing ``options`` cannot reopen it; the
        # SSL object copies the options when it is made).
        options = _api._C_OPTIONS.__get__(context)
        if not options & _api._NO_RENEGOTIATION:
            _api._C_OPTIONS.__set__(context, options | _api._NO_RENEGOTIATION)
        # OpenSSL's security-level checks of the peer chain are lost with
        # CERT_NONE too; verify_peer applies them (_chain_policy).
        security_level = _api._C_SECURITY_LEVEL.__get__(context)
    else:
        # The C values directly: the Python properties build enums, and
        # this runs for every connection.
        check_hostname = _api._C_CHECK_HOSTNAME.__get__(context)
        verify_mode = _api._C_VERIFY_MODE.__get__(context)
    owner.__dict__[PENDING_KEY] = Pending(
        context,
        server_hostname,
        check_hostname,
        verify_mode,
        _api._C_VERIFY_FLAGS.__get__(context),
        native=not intercept,
        security_level=security_level,
    )


def record_verified_session(
    context: "_api.SSLContext", session_id: bytes, host: "str | None"
) -> None:
    """Remember that *context* verified the connection that made this
    session (for *host*, when names matter): check_resumed_session's list."""
    with context._truststore_lock:
        sessions = context._verified_sessions
        sessions.pop(session_id, None)
        sessions[session_id] = host
        while len(sessions) > MAX_REMEMBERED_SESSIONS:
            del sessions[next(iter(sessions))]


def check_resumed_session(context: "_api.SSLContext", sslobj: "Any", pending: "Pending") -> None:
    """A resumed session skips certificate checks (OpenSSL does not even
    re-check the host name).  Accept it only if *context* verified the
    connection that produced it, for the same host when names matter.
    Only the session actually resumed counts: the one offered at wrap
    time can be swapped (``sock.session = ...``) before the handshake."""
    resumed: bytes | None = None
    try:
        resumed = sslobj.session.id
    except Exception:
        resumed = None
    with context._truststore_lock:
        recorded = (
            [context._verified_sessions[resumed]]
            if resumed is not None and resumed in context._verified_sessions
            else []
        )
    if not recorded:
        raise _common.verification_error(
            _common.X509_V_ERR_UNSPECIFIED,
            "resumed a TLS session that this context did not verify",
            pending.host,
        )
    if pending.check_hostname and pending.host not in recorded:
        raise _common.verification_error(
            _common.X509_V_ERR_HOSTNAME_MISMATCH,
            f"resumed a TLS session verified for {recorded[0]!r}, not for this host",
            pending.host,
        )


def verify_peer(context: "_api.SSLContext", sslobj: "Any", pending: "Pending") -> None:
    """The verdict on one finished handshake of *context* (raises
    ``ssl.SSLCertVerificationError`` unless the peer is trusted)."""
    if pending.verify_mode == ssl.CERT_NONE:
        return
    if sslobj.session_reused:
        check_resumed_session(context, sslobj, pending)
    if pending.native:
        # OpenSSL verified during the handshake, except when there was
        # nothing to verify: with an anonymous (aNULL) suite it ignores
        # SSL_VERIFY_PEER and the peer sends no certificate at all.
        if not sslobj.session_reused and sslobj.getpeercert(True) is None:
            raise _common.verification_error(
                _common.X509_V_ERR_UNSPECIFIED, "the peer sent no certificate", pending.host
            )
        return
    chain = sslobj.get_unverified_chain() or []
    ders = [cert.public_bytes(_ssl.ENCODING_DER) for cert in chain]
    if not ders:
        if sslobj.session_reused:
            return  # vouched for by check_resumed_session
        raise _common.verification_error(
            _common.X509_V_ERR_UNSPECIFIED,
            "the peer sent no certificate",
            pending.host,
        )
    pending.peer_der = ders[0]
    if pending.security_level > 0:
        # Imported here: only the intercept path needs it.
        from . import _chain_policy

        _chain_policy.check(ders, pending.security_level, pending.host, context._trust.anchors)
    try:
        context._verifier.verify(
            ders,
            pending.host,
            check_hostname=pending.check_hostname,
            verify_flags=pending.verify_flags,
        )
    except ssl.SSLCertVerificationError:
        raise
    except Exception as exc:
        # A backend bug or an OS API failure must never read as "trusted".
        raise _common.verification_error(
            _common.X509_V_ERR_UNSPECIFIED,
            f"the OS verifier failed: {exc!r}",
            pending.host,
        ) from exc
