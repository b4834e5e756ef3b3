"""Pytest plugin: the process under test reaches loopback addresses only.

Load it with ``-p loopback_only`` (``tests/compat`` on ``sys.path``).  From the
moment pytest loads it (before any conftest imports), every way Python code
in this process starts network traffic is checked *before* the system call:

* ``socket.socket.connect`` / ``connect_ex`` to an AF_INET/AF_INET6 address
  that is not loopback (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104), and
  ``sendto`` / ``sendmsg`` with such a destination, raise
  ``LoopbackOnlyError`` (an ``OSError`` with ``errno.ENETUNREACH``, what a
  machine without a route raises, so callers take their "no network" path);
* ``socket.create_connection`` to such an address or to a non-local name, the
  same (or the lookup error below) without creating a socket;
* name lookups (``getaddrinfo``, ``gethostbyname[_ex]``, ``gethostbyaddr``,
  ``getnameinfo``) of anything but an IP literal, ``localhost`` or
  ``localhost.`` raise ``LoopbackOnlyLookupError``, a ``socket.gaierror``
  (``EAI_NONAME``): a resolver may send a DNS query, so it must not run.

Other families (AF_UNIX, socketpair) are untouched.  Each refusal is recorded
with the test that was running (a refusal in a server thread counts for the
running test); ``--loopback-only-report=PATH`` writes them as JSON, and tests
carrying the marker named by ``--loopback-only-network-marker`` (default
``requires_network``) are recorded too, since they declare that they need
more than loopback.  The terminal summary gives the counts.

Code that calls the C module ``_socket`` directly, and child processes, are
outside this guard.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

LOCAL_NAMES = frozenset({"localhost", "localhost."})
OUTSIDE_TESTS = "<outside any test>"


class LoopbackOnlyError(OSError):
    """A connection or datagram to a non-loopback address, refused in-process."""


class LoopbackOnlyLookupError(socket.gaierror):
    """A lookup of a name that may need a resolver, refused in-process."""


# What the guard replaced, to restore it; empty while the guard is off.
# _ABSENT: the name was inherited (socket.socket's methods come from the C
# base class), so restoring means deleting ours.
_ABSENT = object()
_originals: dict[str, Any] = {}
_lock = threading.Lock()
_current_test = OUTSIDE_TESTS
# One entry per refusal: {"test", "call", "target"}.
refusals: list[dict[str, str]] = []


def _text(host: object) -> str:
    if isinstance(host, bytes | bytearray):
        return bytes(host).decode("ascii", "replace")
    return str(host)


def ip_is_loopback(host: object) -> bool | None:
    """True/False for an IP literal (scope ids ignored), None for anything else."""
    text = _text(host).partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def name_is_local(host: object) -> bool:
    """Whether looking *host* up needs no resolver: None, an IP literal, localhost."""
    if host is None:
        return True
    if ip_is_loopback(host) is not None:
        return True
    return _text(host).lower() in LOCAL_NAMES


def _record(call: str, target: object) -> str:
    with _lock:
        refusals.append({"test": _current_test, "call": call, "target": repr(target)})
    return f"loopback_only: refused {call} to {target!r}: only loopback is allowed in this test run"


def _refuse_address(call: str, target: object) -> LoopbackOnlyError:
    return LoopbackOnlyError(errno.ENETUNREACH, _record(call, target))


def _refuse_lookup(call: str, target: object) -> LoopbackOnlyLookupError:
    return LoopbackOnlyLookupError(socket.EAI_NONAME, _record(call, target))


def _check_sockaddr(sock: socket.socket, call: str, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) and address else address
    verdict = ip_is_loopback(host)
    if verdict is None:
        # connect(("name", port)) resolves inside the C call: allow only
        # names that never reach a resolver.
        verdict = _text(host).lower() in LOCAL_NAMES
    if not verdict:
        raise _refuse_address(call, address)


def _guarded_methods() -> dict[str, Callable[..., Any]]:
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_sendto = socket.socket.sendto
    original_sendmsg = socket.socket.sendmsg

    def connect(self: socket.socket, address: Any) -> None:
        _check_sockaddr(self, "connect", address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check_sockaddr(self, "connect_ex", address)
        return original_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        # sendto(data, address) or sendto(data, flags, address)
        if args:
            _check_sockaddr(self, "sendto", args[-1])
        return original_sendto(self, data, *args)

    def sendmsg(self: socket.socket, buffers: Any, *args: Any, **kwargs: Any) -> int:
        # sendmsg(buffers[, ancdata[, flags[, address]]])
        address = args[2] if len(args) > 2 else kwargs.get("address")
        if address is not None:
            _check_sockaddr(self, "sendmsg", address)
        return original_sendmsg(self, buffers, *args, **kwargs)

    return {"connect": connect, "connect_ex": connect_ex, "sendto": sendto, "sendmsg": sendmsg}


def _guarded_functions() -> dict[str, Callable[..., Any]]:
    original_getaddrinfo = socket.getaddrinfo
    original_gethostbyname = socket.gethostbyname
    original_gethostbyname_ex = socket.gethostbyname_ex
    original_gethostbyaddr = socket.gethostbyaddr
    original_getnameinfo = socket.getnameinfo
    original_create_connection = socket.create_connection

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not name_is_local(host):
            raise _refuse_lookup("getaddrinfo", host)
        return original_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host: str) -> str:
        if not name_is_local(host):
            raise _refuse_lookup("gethostbyname", host)
        return original_gethostbyname(host)

    def gethostbyname_ex(host: str) -> Any:
        if not name_is_local(host):
            raise _refuse_lookup("gethostbyname_ex", host)
        return original_gethostbyname_ex(host)

    def gethostbyaddr(host: str) -> Any:
        # A reverse lookup of anything but loopback may ask DNS (PTR).
        if not (ip_is_loopback(host) or _text(host).lower() in LOCAL_NAMES):
            raise _refuse_lookup("gethostbyaddr", host)
        return original_gethostbyaddr(host)

    def getnameinfo(sockaddr: Any, flags: int) -> Any:
        numeric = flags & socket.NI_NUMERICHOST
        if not numeric and not ip_is_loopback(sockaddr[0]):
            raise _refuse_lookup("getnameinfo", sockaddr)
        return original_getnameinfo(sockaddr, flags)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        host = address[0]
        verdict = ip_is_loopback(host)
        if verdict is False:
            raise _refuse_address("create_connection", address)
        if verdict is None and not name_is_local(host):
            raise _refuse_lookup("create_connection", address)
        return original_create_connection(address, *args, **kwargs)

    return {
        "getaddrinfo": getaddrinfo,
        "gethostbyname": gethostbyname,
        "gethostbyname_ex": gethostbyname_ex,
        "gethostbyaddr": gethostbyaddr,
        "getnameinfo": getnameinfo,
        "create_connection": create_connection,
    }


def install() -> None:
    """Switch the guard on (idempotent)."""
    with _lock:
        if _originals:
            return
        for name, replacement in _guarded_methods().items():
            _originals["method:" + name] = socket.socket.__dict__.get(name, _ABSENT)
            setattr(socket.socket, name, replacement)
        for name, replacement in _guarded_functions().items():
            _originals["function:" + name] = getattr(socket, name)
            setattr(socket, name, replacement)


def uninstall() -> None:
    """Switch the guard off, restoring what ``install`` replaced."""
    with _lock:
        for key, original in _originals.items():
            kind, _, name = key.partition(":")
            owner = socket.socket if kind == "method" else socket
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _originals.clear()


def installed() -> bool:
    return bool(_originals)


@contextmanager
def guard() -> Iterator[list[dict[str, str]]]:
    """The guard for the length of a ``with`` block.

    Yields a list that holds the block's refusals once the block has ended.
    """
    was_installed = installed()
    start = len(refusals)
    install()
    mine: list[dict[str, str]] = []
    try:
        yield mine
    finally:
        mine.extend(refusals[start:])
        if not was_installed:
            uninstall()


# --- pytest hooks ----------------------------------------------------------

# Node ids of the tests carrying the network marker.
_MARKED = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loopback_only")
    group.addoption(
        "--loopback-only-report",
        metavar="PATH",
        help="write the refused calls and the tests that made them to PATH (JSON)",
    )
    group.addoption(
        "--loopback-only-network-marker",
        metavar="NAME",
        default="requires_network",
        help="tests with this marker are recorded as needing more than loopback",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Before conftest files import the code under test.
    install()


def pytest_configure(config: pytest.Config) -> None:
    install()
    config.stash[_MARKED] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    global _current_test
    marker = item.config.getoption("--loopback-only-network-marker")
    if marker and item.get_closest_marker(marker) is not None:
        item.config.stash[_MARKED].append(item.nodeid)
    _current_test = item.nodeid
    try:
        return (yield)
    finally:
        _current_test = OUTSIDE_TESTS


def report(config: pytest.Config) -> dict[str, Any]:
    """The refusals and marked tests, as ``--loopback-only-report`` writes them."""
    by_test: dict[str, list[str]] = {}
    marked: list[str] = config.stash.get(_MARKED, [])
    for refusal in refusals:
        by_test.setdefault(refusal["test"], []).append(f"{refusal['call']} {refusal['target']}")
    return {
        "refused": by_test,
        "marked": sorted(set(marked)),
        "marker": config.getoption("--loopback-only-network-marker"),
    }


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    data = report(config)
    tests = {t for t in data["refused"] if t != OUTSIDE_TESTS}
    terminalreporter.write_line(
        f"loopback_only: refused {len(refusals)} non-loopback calls in {len(tests)} tests"
        + (" (and outside tests)" if OUTSIDE_TESTS in data["refused"] else "")
        + f"; {len(data['marked'])} tests marked {data['marker']}"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    path = config.getoption("--loopback-only-report", None)
    if path:
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(report(config), stream, indent=1, sort_keys=True)
    uninstall()
