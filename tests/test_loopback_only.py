"""The compat session's network guard, tests/compat/loopback_only.py.

Everything that tries a non-loopback address runs inside a private network
namespace (``unshare -rn``) holding only ``lo``, with default routes pointing
at ``lo``: there, a packet the guard failed to stop is captured by a packet
socket on ``lo`` (so the test fails) and still cannot leave the machine.
A control connection made without the guard proves the capture works.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from compat import loopback_only

COMPAT_DIR = Path(__file__).resolve().parent / "compat"

# Run "$@" in a new user + network namespace with lo up and every
# destination routed to lo.
NETNS_PREFIX = [
    "unshare",
    "-rn",
    "sh",
    "-c",
    "ip link set lo up && ip route add default dev lo && "
    'ip -6 route add default dev lo && exec "$@"',
    "netns",
]


def _netns_available() -> str | None:
    """None when ``unshare -rn`` and ``ip`` work here, else why not."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run([*NETNS_PREFIX, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a private network namespace: {probe.stderr.strip()}"
    return None


def run_in_netns(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    why = _netns_available()
    if why is not None:
        pytest.skip(why)
    return subprocess.run(
        [*NETNS_PREFIX, *args], capture_output=True, text=True, timeout=120, **kwargs
    )


# Runs in the namespace: every way out, tried with the guard on, while a
# packet socket on lo records every packet; then checks that loopback still
# works under the guard, and a control connect without the guard.
PROBE = r"""
import asyncio, json, socket, ssl, sys, threading, time
sys.path.insert(0, sys.argv[1])
import loopback_only

capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
capture.bind(("lo", 0))
capture.settimeout(0.3)

def far_destinations():
    # Packet socket frames on lo: 14-byte Ethernet header, then IP.
    seen = []
    while True:
        try:
            frame = capture.recv(65535)
        except TimeoutError:
            return seen
        kind = frame[12:14]
        if kind == b"\x08\x00":
            dst = socket.inet_ntop(socket.AF_INET, frame[30:34])
        elif kind == b"\x86\xdd":
            dst = socket.inet_ntop(socket.AF_INET6, frame[38:54])
        else:
            continue
        if not (dst.startswith("127.") or dst == "::1"):
            seen.append(dst)

def tcp(family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    return s

def udp():
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

async def asyncio_open():
    await asyncio.wait_for(asyncio.open_connection("10.255.255.1", 80), 2)

def tls_connect():
    ctx = ssl.create_default_context()
    with ctx.wrap_socket(tcp(), server_hostname="example.com") as s:
        s.connect(("10.255.255.1", 443))

CHECKS = {
    "connect 10.255.255.1": lambda: tcp().connect(("10.255.255.1", 80)),
    "connect_ex 240.0.0.0": lambda: tcp().connect_ex(("240.0.0.0", 80)),
    "connect name": lambda: tcp().connect(("example.com", 80)),
    "connect 0.0.0.0": lambda: tcp().connect(("0.0.0.0", 80)),
    "connect ipv6": lambda: tcp(socket.AF_INET6).connect(("2001:db8::1", 80, 0, 0)),
    "connect ipv4-mapped": lambda: tcp(socket.AF_INET6).connect(("::ffff:10.255.255.1", 80)),
    "create_connection 10.255.255.1": lambda: socket.create_connection(("10.255.255.1", 80), 2),
    "create_connection name": lambda: socket.create_connection(("example.invalid", 80), 2),
    "sendto": lambda: udp().sendto(b"x", ("192.0.2.1", 53)),
    "sendto flags": lambda: udp().sendto(b"x", 0, ("192.0.2.1", 53)),
    "sendmsg": lambda: udp().sendmsg([b"x"], [], 0, ("192.0.2.1", 53)),
    "getaddrinfo": lambda: socket.getaddrinfo("example.com", 443),
    "gethostbyname": lambda: socket.gethostbyname("example.com"),
    "gethostbyname_ex": lambda: socket.gethostbyname_ex("example.com"),
    "gethostbyaddr": lambda: socket.gethostbyaddr("192.0.2.1"),
    "getnameinfo": lambda: socket.getnameinfo(("192.0.2.1", 80), 0),
    "ssl socket connect": tls_connect,
    "asyncio open_connection": lambda: asyncio.run(asyncio_open()),
}

def attempt(action):
    try:
        action()
    except BaseException as error:
        return {"type": type(error).__name__, "errno": getattr(error, "errno", None),
                "guard": isinstance(error, (loopback_only.LoopbackOnlyError,
                                            loopback_only.LoopbackOnlyLookupError)),
                "message": str(error)}
    return {"type": None}

def loopback_round_trip(family, host, connect_host):
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen()
    port = server.getsockname()[1]
    def serve():
        conn, _ = server.accept()
        conn.sendall(conn.recv(10).upper())
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    with socket.create_connection((connect_host, port), 5) as client:
        client.sendall(b"ping")
        return client.recv(10).decode()

report = {"refused": {}}
with loopback_only.guard() as refusals:
    for name, action in CHECKS.items():
        report["refused"][name] = attempt(action)
    unbound = tcp()
    attempt(lambda: unbound.connect(("10.255.255.1", 80)))
    report["port after refused connect"] = unbound.getsockname()[1]
    report["loopback"] = {
        "127.0.0.1": loopback_round_trip(socket.AF_INET, "127.0.0.1", "127.0.0.1"),
        "localhost": loopback_round_trip(socket.AF_INET, "127.0.0.1", "localhost"),
        "::1": loopback_round_trip(socket.AF_INET6, "::1", "::1"),
    }
    a, b = socket.socketpair()
    a.sendall(b"unix")
    report["loopback"]["socketpair"] = b.recv(10).decode()
    report["localhost lookup"] = sorted({i[4][0] for i in socket.getaddrinfo("localhost", 80)})
report["refusals recorded"] = len(refusals)
report["far packets while guarded"] = far_destinations()
report["guard removed"] = not loopback_only.installed() and "connect" not in vars(socket.socket)

control = socket.socket()
control.setblocking(False)
report["control"] = attempt(lambda: control.connect(("10.255.255.1", 80)))
time.sleep(0.1)
report["far packets of the control"] = far_destinations()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    script = tmp_path_factory.mktemp("probe") / "probe.py"
    script.write_text(PROBE)
    done = run_in_netns([sys.executable, str(script), str(COMPAT_DIR)])
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


REFUSED_ADDRESSES = [
    "connect 10.255.255.1",
    "connect_ex 240.0.0.0",
    "connect name",
    "connect 0.0.0.0",
    "connect ipv6",
    "connect ipv4-mapped",
    "create_connection 10.255.255.1",
    "sendto",
    "sendto flags",
    "sendmsg",
    "ssl socket connect",
    "asyncio open_connection",
]
REFUSED_LOOKUPS = [
    "create_connection name",
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
]


@pytest.mark.parametrize("check", REFUSED_ADDRESSES)
def test_non_loopback_destination_is_refused_with_enetunreach(
    probe: dict[str, Any], check: str
) -> None:
    outcome = probe["refused"][check]
    assert outcome["guard"], outcome
    assert outcome["errno"] == errno.ENETUNREACH
    assert "loopback_only: refused" in outcome["message"]


@pytest.mark.parametrize("check", REFUSED_LOOKUPS)
def test_lookup_of_non_local_name_is_refused_as_a_gaierror(
    probe: dict[str, Any], check: str
) -> None:
    outcome = probe["refused"][check]
    assert outcome["guard"], outcome
    assert outcome["type"] == "LoopbackOnlyLookupError"
    assert outcome["errno"] == socket.EAI_NONAME


def test_no_packet_leaves_while_guarded_and_the_capture_would_see_one(
    probe: dict[str, Any],
) -> None:
    assert probe["far packets while guarded"] == []
    # The same capture sees the control's SYN, sent without the guard.
    assert probe["control"]["type"] == "BlockingIOError"
    assert "10.255.255.1" in probe["far packets of the control"]


def test_refused_connect_never_reached_the_kernel(probe: dict[str, Any]) -> None:
    # A connect() the kernel routed would have bound an ephemeral port.
    assert probe["port after refused connect"] == 0


def test_loopback_still_works_under_the_guard(probe: dict[str, Any]) -> None:
    assert probe["loopback"] == {
        "127.0.0.1": "PING",
        "localhost": "PING",
        "::1": "PING",
        "socketpair": "unix",
    }
    assert probe["localhost lookup"]
    assert all(loopback_only.ip_is_loopback(a) for a in probe["localhost lookup"])


def test_every_refusal_is_recorded_and_the_guard_comes_off(probe: dict[str, Any]) -> None:
    # One record per refused call (the unbound-socket connect included).
    assert probe["refusals recorded"] == len(REFUSED_ADDRESSES) + len(REFUSED_LOOKUPS) + 1
    assert probe["guard removed"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        (b"127.0.0.1", True),
        ("10.255.255.1", False),
        ("240.0.0.0", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%lo", False),
        ("localhost", None),
        ("example.com", None),
    ],
)
def test_ip_is_loopback(host: str | bytes, loopback: bool | None) -> None:
    assert loopback_only.ip_is_loopback(host) is loopback


def test_uninstall_restores_the_socket_module() -> None:
    before = (socket.getaddrinfo, socket.create_connection, dict(vars(socket.socket)))
    with loopback_only.guard():
        assert socket.getaddrinfo is not before[0]
        assert "connect" in vars(socket.socket)
    assert (socket.getaddrinfo, socket.create_connection, dict(vars(socket.socket))) == before


INNER_CONFTEST = """
import socket
import pytest
import loopback_only

# Importing a conftest happens after -p plugins load: the guard is already on.
try:
    socket.getaddrinfo("conftest.invalid", 80)
    CONFTEST_LOOKUP = "resolved"
except loopback_only.LoopbackOnlyLookupError:
    CONFTEST_LOOKUP = "refused"

def pytest_configure(config):
    config.addinivalue_line("markers", "requires_network: needs the Internet")
"""

INNER_TESTS = """
import errno, socket
import pytest
import conftest

def test_conftest_saw_the_guard():
    assert conftest.CONFTEST_LOOKUP == "refused"

def test_tarpit():
    # urllib3's requires_network probe: no route means skip.
    with pytest.raises(OSError) as caught:
        socket.create_connection(("240.0.0.0", 80), 0.0001)
    assert caught.value.errno == errno.ENETUNREACH

@pytest.mark.requires_network
def test_marked():
    pass

def test_loopback():
    server = socket.create_server(("127.0.0.1", 0))
    socket.create_connection(server.getsockname(), 2).close()
    server.close()

def test_name():
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("pypi.org", 443)
"""


def test_plugin_records_the_tests_that_hit_it(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(INNER_CONFTEST))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    report = tmp_path / "report.json"
    done = run_in_netns(
        [
            sys.executable, "-m", "pytest", "-p", "loopback_only", "-p", "no:cacheprovider",
            f"--loopback-only-report={report}", "-q", str(tmp_path),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(COMPAT_DIR), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
    assert "refused 3 non-loopback calls in 2 tests (and outside tests); 1 tests marked" in (
        done.stdout
    )
    data = json.loads(report.read_text())
    assert set(data["refused"]) == {
        loopback_only.OUTSIDE_TESTS,
        "test_inner.py::test_tarpit",
        "test_inner.py::test_name",
    }
    assert data["refused"]["test_inner.py::test_tarpit"] == ["create_connection ('240.0.0.0', 80)"]
    assert data["marked"] == ["test_inner.py::test_marked"]
