"""What ``import ssl`` loads with injection on (issue 13: ``import ssl`` at most
1 ms over bare), and that the first context then loads the rest and verifies.

``import ssl`` under the hook needs only the class it installs: the package,
the gate's rules module (the import hook) and ``truststore._api``.  The trust rules, the connection state, the
backend and ``_inject`` (the HTTP modules' patch table) load at first use.
These tests pin that down in installed venvs, so the laziness cannot
silently regress, and check that a context made after such an import, also
by two threads racing to be first, verifies exactly as before.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest
import trustme

from support import serve_cert
from venvs import Venv, product_environ

pytestmark = pytest.mark.slow

BACKEND = (
    "truststore._windows"
    if sys.platform == "win32"
    else "truststore._macos"
    if sys.platform == "darwin"
    else "truststore._openssl"
)
# What import ssl adds with injection on, and what the first context adds.
# The gate's rules module (the import hook), the package and the facade.
AT_IMPORT = {"truststore_autoinject_rules", "truststore", "truststore._api"}
AT_FIRST_CONTEXT = {"truststore._common", "truststore._connection", "truststore._trust", BACKEND}

# argv: good port, bad port.  Prints what import ssl loaded, the class it
# left in ssl, what the first context loaded, and the two verdicts.
FIRST_CONTEXT = """
import sys
before = set(sys.modules)
import ssl
loaded = sorted(set(sys.modules) - before)
import json, socket

def ours():
    return sorted(m for m in sys.modules if m.startswith("truststore"))

at_import = ours()
installed = ssl.SSLContext.__module__ + "." + ssl.SSLContext.__qualname__
before_context = set(sys.modules)
context = ssl.create_default_context()
at_context = ours()
import truststore._api
listed = sorted(set(truststore._api._FIRST_CONTEXT_MODULES))

def verdict(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                tls.recv(64)
        return "ok"
    except ssl.SSLCertVerificationError:
        return "cert"

good, bad = (verdict(int(port)) for port in sys.argv[1:3])
beyond_ours = sorted(
    m for m in set(sys.modules) - before_context if not m.startswith("truststore")
)
print(json.dumps({
    "beyond_ours": beyond_ours,
    "loaded": loaded, "at_import": at_import, "class": installed,
    "at_context": at_context, "listed": listed, "context_class": type(context).__name__,
    "good": good, "bad": bad,
}))
"""


def _run(venv: Venv, code: str, *args: str, **env: str) -> dict[str, object]:
    result = venv.run(code=code, script_args=args, env=product_environ(**env))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_import_ssl_loads_only_the_rules_and_api_then_the_first_context_the_rest(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]]
) -> None:
    ca, store = store_ca
    with (
        serve_cert(ca.issue_cert("127.0.0.1")) as good,
        serve_cert(trustme.CA().issue_cert("127.0.0.1")) as bad,
    ):
        ports = (str(good.port), str(bad.port))
        on = _run(installed, FIRST_CONTEXT, *ports, **store)
        # The same again, now that the first run has cached the store plan
        # (the common case: every process after a store change).
        warm = _run(installed, FIRST_CONTEXT, *ports, **store)
        off = _run(installed, FIRST_CONTEXT, *ports, TRUSTSTORE_INJECT="0", **store)

    # Injection adds exactly three modules of ours to what import ssl loads
    # (nothing else: no __future__, typing, re, ipaddress, backend...).
    on_loaded, off_loaded = set(on["loaded"]), set(off["loaded"])  # type: ignore[call-overload]
    assert "ssl" in off_loaded and off_loaded <= on_loaded
    assert on_loaded - off_loaded == AT_IMPORT, on_loaded - off_loaded
    assert on["at_import"] == sorted(AT_IMPORT | {"truststore_autoinject"})
    assert on["class"] == "truststore._api.InjectedSSLContext"

    # The first context loads the rest, and verifies like before.  What it
    # loads is what _api checks for at import (a half-removed installation
    # must leave ssl alone, not fail at the first context).
    at_context = set(on["at_context"])  # type: ignore[call-overload]
    first = at_context - AT_IMPORT - {"truststore_autoinject"}
    assert first >= AT_FIRST_CONTEXT, at_context
    assert first == set(on["listed"]), (first, on["listed"])  # type: ignore[call-overload]
    assert on["context_class"] == "InjectedSSLContext"
    assert (on["good"], on["bad"]) == ("ok", "cert")
    # ... and, with the store plan cached, nothing that is not ours beyond
    # what the stdlib's first context and handshakes load (no __future__,
    # typing, re, a hash module...: issue 13).
    assert (warm["good"], warm["bad"]) == ("ok", "cert")
    assert set(warm["beyond_ours"]) <= set(off["beyond_ours"]), (  # type: ignore[call-overload]
        warm["beyond_ours"],
        off["beyond_ours"],
    )
    # The control: off, the stdlib (which reads the same store here).
    assert off["class"] == "ssl.SSLContext" and off["at_import"] == ["truststore_autoinject"]
    assert (off["good"], off["bad"]) == ("ok", "cert")


# Two threads make the first two contexts at once.  The first is held inside
# the import of truststore._trust (its execution waits on an event) until the
# second is seen waiting for that module's lock; then both must finish with
# working, verifying contexts.  argv: good port, bad port.
RACE = """
import json, socket, sys, threading
import ssl
assert "truststore._trust" not in sys.modules

first_in_import, release = threading.Event(), threading.Event()

class HoldTrust:
    # Finds truststore._trust as usual, but holds its execution (under the
    # module's import lock, as a slow import would) until released.

    def find_spec(self, name, path=None, target=None):
        if name != "truststore._trust" or release.is_set():
            return None
        import importlib.machinery
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        execute = spec.loader.exec_module

        def exec_module(module):
            first_in_import.set()
            release.wait(60)
            execute(module)

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, HoldTrust())
results = {}

def connect(label):
    try:
        context = ssl.create_default_context()
        out = []
        for port in sys.argv[1:3]:
            try:
                with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
                    with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                        out.append("ok")
            except ssl.SSLCertVerificationError:
                out.append("cert")
        results[label] = [type(context).__name__, *out]
    except BaseException as exc:
        results[label] = [repr(exc)]

def waiting_for_a_module_lock(thread):
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "acquire" and "importlib._bootstrap" in code.co_filename:
            return True
        frame = frame.f_back
    return False

first = threading.Thread(target=connect, args=("first",))
first.start()
assert first_in_import.wait(60)
second = threading.Thread(target=connect, args=("second",))
second.start()
seen = threading.Event()
for _ in range(60000):  # polls a condition (up to ~60 s); no fixed sleep
    if waiting_for_a_module_lock(second):
        seen.set()
        break
    seen.wait(0.001)
release.set()
first.join(60)
second.join(60)
print(json.dumps({"second_waited": seen.is_set(), "results": results,
                  "trust_loaded": "truststore._trust" in sys.modules}))
"""


def test_two_threads_racing_to_the_first_context_both_verify(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]]
) -> None:
    ca, store = store_ca
    with (
        serve_cert(ca.issue_cert("127.0.0.1")) as good,
        serve_cert(trustme.CA().issue_cert("127.0.0.1")) as bad,
    ):
        data = _run(installed, RACE, str(good.port), str(bad.port), **store)
    assert data["second_waited"] is True, data
    assert data["trust_loaded"] is True
    expected = ["InjectedSSLContext", "ok", "cert"]
    assert data["results"] == {"first": expected, "second": expected}, data


def test_a_deferred_module_gone_keeps_ssl_the_stdlibs(
    fresh_venv: Callable[[], Venv],
) -> None:
    """The deferred modules are checked for presence (not imported) at
    ``import ssl``: a half-removed installation still leaves ssl alone with
    one warning, as when they were imported eagerly."""
    venv = fresh_venv()
    package = venv.site_packages / "truststore"
    for leftover in [package / "_trust.py", *package.glob("__pycache__/_trust.*")]:
        leftover.unlink()
    code = "import ssl, sys; print(ssl.SSLContext.__module__, 'truststore._openssl' in sys.modules)"
    result = venv.run(code=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ssl", "False"]
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("truststore-auto: could not patch ssl"), lines
    assert "truststore._trust" in lines[0]


def test_a_deferred_module_that_cannot_load_leaves_ssl_the_stdlibs(
    fresh_venv: Callable[[], Venv],
) -> None:
    """Present but broken (an interrupted upgrade left half of _trust.py):
    found at ``import ssl``, imported only at the first context.  That
    context and every later one are the standard library's, with one
    ``truststore-auto:`` line; the program's exit status is its own.  The
    library API, asked for by name, raises instead."""
    venv = fresh_venv()
    trust = venv.site_packages / "truststore" / "_trust.py"
    trust.write_text(trust.read_text()[:700])
    for cached in (venv.site_packages / "truststore" / "__pycache__").glob("_trust.*"):
        cached.unlink()
    code = (
        "import ssl, sys\n"
        "first = ssl.create_default_context()\n"
        "second = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
        "print(type(first).__module__, type(second).__module__, ssl.SSLContext.__module__)\n"
        "print(first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname)\n"
        "try:\n"
        "    import truststore; truststore.SSLContext()\n"
        "except SyntaxError:\n"
        "    print('library raises')\n"
        "sys.exit(5)\n"
    )
    result = venv.run(code=code)
    assert result.returncode == 5, result.stderr
    assert result.stdout.split() == ["ssl", "ssl", "ssl", "True", "library", "raises"]
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("truststore-auto: could not load truststore (SyntaxError")
    assert lines[0].endswith("ssl stays the standard library's")
