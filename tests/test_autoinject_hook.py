"""The import hook is invisible except for the patches it is there to make.

SPEC/issue 3: import errors propagate unchanged, other finders (zipimport,
namespace packages) keep working, specs and ``__loader__`` stay truthful,
``importlib.reload`` works, and the watched modules really get patched.
Every program runs in the installed venv; where it helps, the same program
runs again with ``TRUSTSTORE_INJECT=0`` and must behave the same.
"""

from __future__ import annotations

import json
import textwrap
import zipfile
from pathlib import Path

import pytest
import trustme

from support import serve_cert
from venvs import Venv, product_environ

pytestmark = pytest.mark.slow


def run_json(venv: Venv, code: str, **env: str) -> object:
    result = venv.run(code=textwrap.dedent(code), env=product_environ(**env))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _fake_urllib3(root: Path) -> None:
    """A stand-in ``urllib3`` whose ``util.ssl_`` fails the first time.

    It holds the *standard library's* class (as a module imported before
    injection would), so "patched" is visible: the hook must swap it.
    """
    (root / "urllib3" / "util").mkdir(parents=True)
    (root / "urllib3" / "__init__.py").write_text("")
    (root / "urllib3" / "util" / "__init__.py").write_text("")
    (root / "urllib3" / "util" / "ssl_.py").write_text(
        textwrap.dedent(
            """
            import fakeerrors
            if fakeerrors.FAIL:
                raise fakeerrors.Refused("ssl_ refused to load", 7)
            import ssl
            SSLContext = getattr(ssl, "_truststore_test_std", ssl.SSLContext)
            """
        )
    )
    (root / "fakeerrors.py").write_text("class Refused(Exception):\n    pass\n\nFAIL = True\n")


IMPORT_ERROR_PROGRAM = """
import json, sys, traceback
import ssl, fakeerrors
try:
    import truststore._api as api
    ssl._truststore_test_std = api._StdSSLContext
except ImportError:
    pass
try:
    import urllib3.util.ssl_
except Exception as exc:
    frames = traceback.extract_tb(exc.__traceback__)
    first = [type(exc).__module__ + "." + type(exc).__qualname__, list(exc.args),
             exc.__cause__ is None, exc.__context__ is None,
             frames[-1].filename.endswith("ssl_.py"), frames[-1].line]
missing = "urllib3.util.ssl_" not in sys.modules
fakeerrors.FAIL = False
import urllib3.util.ssl_ as module
print(json.dumps([first, missing, module.SSLContext is ssl.SSLContext,
                  module.SSLContext.__module__]))
"""


def test_import_error_in_a_watched_module_propagates_unchanged(
    installed: Venv, tmp_path: Path
) -> None:
    _fake_urllib3(tmp_path)
    on = run_json(installed, IMPORT_ERROR_PROGRAM, PYTHONPATH=str(tmp_path))
    off = run_json(installed, IMPORT_ERROR_PROGRAM, PYTHONPATH=str(tmp_path), TRUSTSTORE_INJECT="0")
    first, missing, follows, module = on  # type: ignore[misc]
    assert first == [
        "fakeerrors.Refused",
        ["ssl_ refused to load", 7],
        True,
        True,
        True,
        'raise fakeerrors.Refused("ssl_ refused to load", 7)',
    ]
    assert missing is True
    # The later, successful import was patched: its SSLContext follows ours.
    assert (follows, module) == (True, "truststore._api")
    # Without injection: the same error, and the module keeps what it had.
    assert off == [first, True, True, "ssl"]


def test_missing_watched_module_reports_the_same_import_error(
    installed: Venv, tmp_path: Path
) -> None:
    (tmp_path / "requests").mkdir()
    (tmp_path / "requests" / "__init__.py").write_text("")
    code = """
    import json
    try:
        import requests.adapters
    except ImportError as exc:
        print(json.dumps([type(exc).__name__, str(exc), exc.name]))
    """
    on = run_json(installed, code, PYTHONPATH=str(tmp_path))
    off = run_json(installed, code, PYTHONPATH=str(tmp_path), TRUSTSTORE_INJECT="0")
    assert (
        on
        == off
        == [
            "ModuleNotFoundError",
            "No module named 'requests.adapters'",
            "requests.adapters",
        ]
    )


def test_zipimport_still_works_for_plain_and_watched_modules(
    installed: Venv, tmp_path: Path
) -> None:
    fake = tmp_path / "fake"
    _fake_urllib3(fake)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(fake.rglob("*.py")):
            zf.write(path, path.relative_to(fake).as_posix())
        zf.writestr("zipped_plain.py", "VALUE = 'from the zip'\n")
    code = """
    import json, os, ssl, zipimport, fakeerrors
    import truststore._api as api
    ssl._truststore_test_std = api._StdSSLContext
    fakeerrors.FAIL = False
    import zipped_plain, urllib3.util.ssl_ as module
    print(json.dumps([zipped_plain.VALUE,
                      type(zipped_plain.__loader__) is zipimport.zipimporter,
                      type(module.__loader__) is zipimport.zipimporter,
                      module.__spec__.loader is module.__loader__,
                      module.__file__.startswith(os.environ["PYTHONPATH"]),
                      module.SSLContext is api.InjectedSSLContext]))
    """
    assert run_json(installed, code, PYTHONPATH=str(archive)) == [
        "from the zip",
        True,
        True,
        True,
        True,
        True,
    ]


def test_namespace_packages_still_import(installed: Venv, tmp_path: Path) -> None:
    (tmp_path / "nsplain").mkdir()
    (tmp_path / "nsplain" / "part.py").write_text("VALUE = 1\n")
    # A watched module inside a namespace package (no urllib3/__init__.py).
    (tmp_path / "urllib3" / "util").mkdir(parents=True)
    (tmp_path / "urllib3" / "util" / "ssl_.py").write_text("from ssl import SSLContext\n")
    code = """
    import json
    import nsplain.part, urllib3.util.ssl_ as module, truststore
    print(json.dumps([nsplain.part.VALUE, nsplain.__file__, list(nsplain.__path__) != [],
                      type(nsplain.__spec__.loader).__name__,
                      module.SSLContext is truststore._api.InjectedSSLContext]))
    """
    value, file, has_path, loader, patched = run_json(installed, code, PYTHONPATH=str(tmp_path))  # type: ignore[misc]
    assert (value, file, has_path, patched) == (1, None, True, True)
    assert "NamespaceLoader" in loader


def test_loaders_and_specs_stay_truthful(installed: Venv) -> None:
    code = """
    import importlib.machinery, importlib.util, inspect, json, sys
    import ssl, urllib3.util.ssl_, requests.adapters
    import pip._vendor.urllib3.util.ssl_, pip._vendor.requests.adapters
    out = {}
    for name in ["ssl", "urllib3.util.ssl_", "requests.adapters",
                 "pip._vendor.urllib3.util.ssl_", "pip._vendor.requests.adapters"]:
        m = sys.modules[name]
        found = importlib.util.find_spec(name)
        out[name] = [type(m.__loader__) is importlib.machinery.SourceFileLoader,
                     m.__spec__.loader is m.__loader__, m.__spec__.name == name,
                     m.__spec__.origin == m.__file__,
                     type(found.loader) is importlib.machinery.SourceFileLoader,
                     found.origin == m.__file__,
                     "def " in inspect.getsource(m)]
    print(json.dumps(out))
    """
    on = run_json(installed, code)
    off = run_json(installed, code, TRUSTSTORE_INJECT="0")
    assert on == off
    assert all(all(checks) for checks in on.values()), on  # type: ignore[attr-defined]


def test_watched_modules_are_patched_as_they_load(installed: Venv) -> None:
    code = """
    import json, ssl, truststore
    import urllib3.util.ssl_ as u, requests.adapters as r
    import pip._vendor.urllib3.util.ssl_ as pu, pip._vendor.requests.adapters as pr
    import truststore._api
    ours = truststore._api.InjectedSSLContext  # a truststore.SSLContext subclass
    print(json.dumps([ssl.SSLContext is ours, u.SSLContext is ours, pu.SSLContext is ours,
                      getattr(r, "_preloaded_ssl_context", None) and
                      type(r._preloaded_ssl_context).__module__,
                      isinstance(ssl.create_default_context(), ours)]))
    """
    on = run_json(installed, code)
    off = run_json(installed, code, TRUSTSTORE_INJECT="0")
    # requests >= 2.32 builds a context at import; it must become one of ours.
    preloaded = on[3]  # type: ignore[index]
    assert preloaded in ("truststore._api", None)
    assert on == [True, True, True, preloaded, True]
    assert off == [False, False, False, preloaded and "ssl", False]


def test_reload_of_ssl_keeps_injection_and_verification(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]]
) -> None:
    ca, store = store_ca
    stranger = trustme.CA()
    code = """
    import importlib, json, socket, ssl, sys, truststore
    def fetch(port):
        ctx = ssl.create_default_context()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                    return [type(ctx).__module__, "ok"]
        except ssl.SSLCertVerificationError as exc:
            return [type(ctx).__module__, "cert"]
    trusted, untrusted = int(sys.argv[1]), int(sys.argv[2])
    before = fetch(trusted)
    import urllib3.util.ssl_ as u
    again = importlib.reload(ssl)
    reloaded_u = importlib.reload(u)
    ours = truststore._api.InjectedSSLContext
    print(json.dumps([before, again is ssl, ssl.SSLContext is ours,
                      reloaded_u.SSLContext is ours,
                      fetch(trusted), fetch(untrusted)]))
    """
    with (
        serve_cert(ca.issue_cert("127.0.0.1")) as good,
        serve_cert(stranger.issue_cert("127.0.0.1")) as bad,
    ):
        result = installed.run(
            code=textwrap.dedent(code),
            script_args=(str(good.port), str(bad.port)),
            env=product_environ(**store),
        )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout) == [
        ["truststore._api", "ok"],
        True,
        True,
        True,
        ["truststore._api", "ok"],
        ["truststore._api", "cert"],
    ]


def test_extract_after_reload_restores_the_reloaded_stdlib_class(
    installed: Venv, store_ca: tuple[trustme.CA, dict[str, str]]
) -> None:
    """Issue 12 item 6: ``importlib.reload(ssl)`` then ``extract_from_ssl()``
    must restore the class the reloaded module defines; the one captured at
    import made every new context fail with TypeError."""
    ca, store = store_ca
    stranger = trustme.CA()
    code = """
    import importlib, json, socket, ssl, sys, truststore
    def fetch(port):
        try:
            ctx = ssl.create_default_context()
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                    return [type(ctx).__module__, "ok"]
        except ssl.SSLCertVerificationError:
            return [type(ctx).__module__, "cert"]
        except Exception as exc:
            return ["error", type(exc).__name__ + ": " + str(exc)]
    trusted, untrusted = int(sys.argv[1]), int(sys.argv[2])
    importlib.reload(ssl)
    truststore.extract_from_ssl()
    restored = ssl.SSLContext
    print(json.dumps([restored is not truststore.SSLContext, restored.__module__,
                      restored.sslsocket_class is ssl.SSLSocket,
                      fetch(trusted), fetch(untrusted)]))
    """
    with (
        serve_cert(ca.issue_cert("127.0.0.1")) as good,
        serve_cert(stranger.issue_cert("127.0.0.1")) as bad,
    ):
        result = installed.run(
            code=textwrap.dedent(code),
            script_args=(str(good.port), str(bad.port)),
            env=product_environ(**store),
        )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # The stdlib verifies again, with its own defaults (SSL_CERT_FILE here).
    assert json.loads(result.stdout) == [True, "ssl", True, ["ssl", "ok"], ["ssl", "cert"]]


# Issue 10 row 12: the library used before ssl is imported.  Each program
# reports whether ssl.SSLContext ended up ours; stderr must stay empty.
LIBRARY_FIRST_ORDERS = {
    "SSLContext-first": "import truststore; ctx = truststore.SSLContext(); import ssl",
    "from-import": "from truststore import SSLContext; import ssl",
    "api-module": "import truststore._api; import ssl",
    "inject-call": "import truststore; truststore.inject_into_ssl(); import ssl",
    "ssl-first": "import ssl, truststore; ctx = truststore.SSLContext()",
    "urllib3-first": "import urllib3, truststore; ctx = truststore.SSLContext(); import ssl",
}


@pytest.mark.parametrize("order", sorted(LIBRARY_FIRST_ORDERS))
def test_library_before_ssl_is_injected_without_a_warning(installed: Venv, order: str) -> None:
    code = LIBRARY_FIRST_ORDERS[order] + (
        "\nimport json, ssl, truststore\n"
        "print(json.dumps([ssl.SSLContext is truststore._api.InjectedSSLContext,"
        " ssl.create_default_context().__class__.__module__]))\n"
    )
    result = installed.run(code=code)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout) == [True, "truststore._api"]


def test_library_and_ssl_imported_by_two_threads_at_once(installed: Venv) -> None:
    """Row 12, "also when another thread imports ssl": both imports released
    together by a barrier, in 15 fresh interpreters.  (importlib's module locks
    decide the interleaving; which thread wins varies from run to run.)"""
    code = textwrap.dedent(
        """
        import json, threading
        barrier = threading.Barrier(2)
        def importer():
            barrier.wait()
            import ssl
        thread = threading.Thread(target=importer)
        thread.start()
        barrier.wait()
        import truststore
        ctx = truststore.SSLContext()
        thread.join()
        import ssl
        print(json.dumps(ssl.SSLContext is truststore._api.InjectedSSLContext))
        """
    )
    for _ in range(15):
        result = installed.run(code=code)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert json.loads(result.stdout) is True
