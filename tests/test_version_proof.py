"""Version-proof by construction (issue 14).

Everything this package patches is named in tables: the ssl.py properties
whose setters go back to the C base through the global name ``SSLContext``
(``_api._GLOBAL_SUPER_PROPERTIES``, derived from the running ``ssl``), the
modules the start-up hook watches (``_hook.WATCHED``) and the HTTP modules'
attribute names (``_inject.PATCH_TABLE``).  These tests check each table
against what the running interpreter and the installed libraries actually
have, so a new CPython or a new urllib3/requests/aiohttp/pip makes them fail
loudly instead of leaving something silently unpatched (or recursing).

Injection is process-wide, so everything that injects runs in a fresh
interpreter.
"""

from __future__ import annotations

import _ssl
import ast
import inspect
import json
import os
import re
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from support import run_python, scrubbed_environ
from truststore import _api, _hook, _inject

SRC = str(Path(__file__).resolve().parents[1] / "src")
PACKAGE_DIR = Path(SRC)

# The environment as the test run started (the autouse fixture scrubs the
# registry settings later); pip needs it to reach the package index.
_STARTUP_ENVIRON = dict(os.environ)


def _run_json(code: str, **env: str) -> Any:
    """Run *code* in a fresh interpreter (a given PYTHONPATH, then this
    checkout's ``src``; no auto-injection) and return the JSON it printed last."""
    paths = [*env.pop("PYTHONPATH", "").split(os.pathsep), SRC]
    environ = scrubbed_environ(
        PYTHONPATH=os.pathsep.join(p for p in paths if p), TRUSTSTORE_INJECT="0", **env
    )
    result = run_python(textwrap.dedent(code), env=environ, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("{", "["))]
    assert lines, result.stdout + result.stderr
    return json.loads(lines[-1])


# -- ssl.py: every super(SSLContext, SSLContext) use is covered ---------------


def _global_super_uses(source: str) -> list[tuple[str, str, str | None, int]]:
    """(first argument, second argument, attribute taken from it or None,
    line) for every two-argument ``super(Name, Name)`` call in *source*."""
    tree = ast.parse(source)
    attribute_of: dict[int, str] = {
        id(node.value): node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
    }
    uses = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "super"
            and len(node.args) == 2
            and all(isinstance(arg, ast.Name) for arg in node.args)
        ):
            first, second = (arg.id for arg in node.args if isinstance(arg, ast.Name))
            uses.append((first, second, attribute_of.get(id(node)), node.lineno))
    return uses


def _ssl_source() -> str:
    # The running interpreter's own ssl.py: no skip if it cannot be read
    # (a frozen or source-less stdlib is exactly where this must not pass).
    return inspect.getsource(ssl)


def test_every_global_super_in_the_running_ssl_py_is_covered() -> None:
    source = _ssl_source()
    uses = [use for use in _global_super_uses(source) if use[0] == "SSLContext"]
    # The parse must see every textual occurrence (3.10-3.13 have seven).
    textual = re.findall(r"super\(\s*SSLContext\s*,", source)
    assert uses and len(uses) == len(textual), (uses, textual)
    for first, second, name, line in uses:
        where = f"ssl.py line {line}: super({first}, {second})"
        # super(SSLContext, self) would fail for contexts made before
        # injection (not instances of our class): nothing covers that.
        assert second == "SSLContext", where
        assert name is not None, where
        if name in vars(ssl.SSLContext):
            # ssl.py wraps this C attribute in a property of its own: with
            # SSLContext = ours, the lookup must stop at the C level.
            assert name in _api._GLOBAL_SUPER_PROPERTIES, where
            found = getattr(super(_api.SSLContext, _api.SSLContext), name)
            assert found is not vars(ssl.SSLContext)[name], where
            assert found is vars(_api._SuperTarget)[name], where
        else:
            # Goes past ssl.py's class straight to the C attribute.
            assert hasattr(_ssl._SSLContext, name), where


def test_global_super_properties_are_derived_from_the_running_ssl() -> None:
    expected = {
        name
        for name, value in vars(ssl.SSLContext).items()
        if isinstance(value, property) and hasattr(_ssl._SSLContext, name)
    }
    assert set(_api._GLOBAL_SUPER_PROPERTIES) == expected
    # Every name ssl.py's source routes through super(SSLContext, SSLContext)
    # to a property of its own is among them (not just "the same set").
    from_source = {
        name for first, _, name, _ in _global_super_uses(_ssl_source()) if first == "SSLContext"
    }
    assert {n for n in from_source if n in vars(ssl.SSLContext)} <= expected


def test_every_shadowed_c_property_is_re_exposed() -> None:
    """What _SuperTarget puts in front of the C base is only ever reached
    through super(); normal access on our contexts still runs ssl.py's
    properties (or our deliberate override of verify_mode), and nothing else
    of _ssl._SSLContext (such as 3.15's set_groups / set_ciphersuites /
    set_client_sigalgs, which are C methods) is hidden from our class."""
    shadowed = {name for name in vars(_api._SuperTarget) if not name.startswith("__")}
    assert shadowed == set(_api._GLOBAL_SUPER_PROPERTIES)
    for name in shadowed:
        assert name in vars(_api.SSLContext), name
    ours = set(vars(_api.SSLContext))
    for name in dir(_ssl._SSLContext):
        if name.startswith("__") or name in ours:
            continue
        assert inspect.getattr_static(_api.SSLContext, name) is inspect.getattr_static(
            ssl.SSLContext, name
        ), name


EXERCISE = """
import _ssl, json, ssl
import truststore
from truststore import _api

STD = _api._StdSSLContext
# Every ssl.py property over a C attribute, found here independently of the
# table under test.
NAMES = [n for n, v in vars(STD).items() if isinstance(v, property) and hasattr(_ssl._SSLContext, n)]

def exercise(ctx, names=NAMES):
    # Read each property and write back what was read: the setter is the
    # path that goes through super(SSLContext, SSLContext).
    out = {}
    for name in names:
        try:
            value = getattr(ctx, name)
            if vars(STD)[name].fset is None:
                try:
                    setattr(ctx, name, value)
                    out[name] = "writable?"
                except AttributeError:
                    out[name] = "read-only"
                continue
            setattr(ctx, name, value)
            after = getattr(ctx, name)
            out[name] = "ok" if after == value else f"{value!r} became {after!r}"
        except RecursionError:
            out[name] = "RecursionError"
        except Exception as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    if "_msg_callback" in names:
        # The other branch of ssl.py's setter: a callable gets wrapped.
        def callback(*args):
            pass
        try:
            ctx._msg_callback = callback
            kept = ctx._msg_callback is callback
            ctx._msg_callback = None
            out["_msg_callback(callable)"] = "ok" if kept else "lost"
        except RecursionError:
            out["_msg_callback(callable)"] = "RecursionError"
    return out
"""


def _expected_exercise() -> dict[str, str]:
    expected = {
        name: ("read-only" if value.fset is None else "ok")
        for name, value in vars(ssl.SSLContext).items()
        if isinstance(value, property) and hasattr(_ssl._SSLContext, name)
    }
    if "_msg_callback" in expected:
        expected["_msg_callback(callable)"] = "ok"
    return expected


def test_every_derived_property_works_on_contexts_made_before_and_after_inject() -> None:
    data = _run_json(
        EXERCISE
        + """
contexts = {
    "stdlib client, made before inject": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
    "stdlib server, made before inject": ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
    "ours, made before inject": truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
}
truststore.inject_into_ssl()
contexts["ssl.SSLContext(), made after inject"] = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
contexts["create_default_context(), after inject"] = ssl.create_default_context()
contexts["server context, made after inject"] = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
contexts["stdlib class, made after inject"] = STD(ssl.PROTOCOL_TLS_CLIENT)
injected = {label: exercise(ctx) for label, ctx in contexts.items()}
truststore.extract_from_ssl()
extracted = {label: exercise(ctx) for label, ctx in contexts.items()}

# Control: a replacement class without the C-level stand-ins (what a missing
# name in the table means) must make the same exercise report recursion.
uncovered = type("Uncovered", (STD,), {})
ssl.SSLContext = uncovered
control = exercise(uncovered(ssl.PROTOCOL_TLS_CLIENT))
ssl.SSLContext = STD
print(json.dumps({"injected": injected, "extracted": extracted, "control": control}))
"""
    )
    expected = _expected_exercise()
    for phase in ("injected", "extracted"):
        for label, result in data[phase].items():
            assert result == expected, (phase, label)
    writable = [name for name, outcome in expected.items() if outcome == "ok"]
    assert writable
    for name in writable:
        assert data["control"][name] == "RecursionError", data["control"]


def test_a_property_a_future_ssl_py_adds_is_covered_without_a_release() -> None:
    """Stand-in for a new CPython: before truststore is imported, ssl.py's
    SSLContext gains one more property written the ssl.py way (setter through
    super(SSLContext, SSLContext), global name looked up at call time), over a
    C attribute no released ssl.py wraps.  The derived table covers it; the
    fixed tuple this package shipped before would have recursed."""
    data = _run_json(
        """
import json, ssl
source = '''
def _get(self):
    return super(SSLContext, SSLContext).post_handshake_auth.__get__(self, SSLContext)

def _set(self, value):
    super(SSLContext, SSLContext).post_handshake_auth.__set__(self, value)
'''
namespace = vars(ssl)  # the functions' globals are ssl's, as in ssl.py
exec(source, namespace)
ssl.SSLContext.post_handshake_auth = property(namespace.pop("_get"), namespace.pop("_set"))
before = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
"""
        + EXERCISE
        + """
NEW = ("post_handshake_auth",)
truststore.inject_into_ssl()
results = {
    "stdlib, made before inject": exercise(before, NEW),
    "made after inject": exercise(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), NEW),
    "stdlib class, after inject": exercise(STD(ssl.PROTOCOL_TLS_CLIENT), NEW),
}
for ctx in (before, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)):
    ctx.post_handshake_auth = True
    results.setdefault("set True", []).append(ctx.post_handshake_auth)
truststore.extract_from_ssl()

# The fixed tuple of earlier releases, rebuilt the way _api builds its classes.
OLD = ("minimum_version", "maximum_version", "options", "verify_flags",
       "verify_mode", "_msg_callback")
old_target = type("OldTarget", (STD,), {n: _api._c_level_property(n) for n in OLD})
old_class = type("OldSSLContext", (old_target,), {n: vars(STD)[n] for n in OLD})
ssl.SSLContext = old_class
old = exercise(old_class(ssl.PROTOCOL_TLS_CLIENT), NEW)
ssl.SSLContext = STD
print(json.dumps({"derived": _api._GLOBAL_SUPER_PROPERTIES, "results": results, "old": old}))
"""
    )
    assert "post_handshake_auth" in data["derived"]
    results = data["results"]
    assert results.pop("set True") == [True, True]
    for label, result in results.items():
        assert result == {"post_handshake_auth": "ok"}, label
    assert data["old"] == {"post_handshake_auth": "RecursionError"}


# -- the start-up hook's watched modules ---------------------------------------


def test_watched_modules_are_ssl_plus_modules_the_patch_table_knows() -> None:
    watched = _hook.WATCHED
    assert isinstance(watched, frozenset)
    assert "ssl" in watched
    # Every other watched name is one the patcher handles (else the hook's
    # call would do nothing) or the library's own facade (so that using the
    # library before ssl still injects), and the set stays tiny: one lookup
    # per import.
    assert watched - {"ssl", _hook.API_MODULE} <= set(_inject.PATCH_TABLE)
    assert len(watched) <= 8


def test_the_gate_watches_the_same_names_as_its_rules() -> None:
    """The gate's find_spec holds the watched names as a constant (a set
    literal the compiler folds into a frozenset: nothing to build at start);
    the rules and the hook use WATCHED: the two must not drift apart."""
    import truststore_autoinject as gate
    import truststore_autoinject_rules as rules

    folded = [c for c in gate.find_spec.__code__.co_consts if isinstance(c, frozenset)]
    assert folded == [rules.WATCHED] == [_hook.WATCHED]


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            top_level.add("." * node.level + (node.module or ""))
    return top_level


def test_hook_imports_only_modules_loaded_before_site() -> None:
    gate = _top_level_imports(PACKAGE_DIR / "truststore_autoinject.py")
    assert gate <= {"os", "sys"}, gate
    rules = _top_level_imports(PACKAGE_DIR / "truststore_autoinject_rules.py")
    assert rules <= {"os", "stat", "sys", "truststore_autoinject"}, rules
    gate_modules = {"truststore_autoinject", "truststore_autoinject_rules"}
    config = _top_level_imports(PACKAGE_DIR / "truststore_autoinject_config.py")
    assert config <= {"os", "stat", "sys", *gate_modules}, config
    hook = _top_level_imports(PACKAGE_DIR / "truststore" / "_hook.py")
    assert hook <= {"os", "stat", "sys", "truststore_autoinject_config", *gate_modules}, hook


def test_hook_needs_nothing_importlib_removes_in_3_15_or_3_16() -> None:
    """3.15 removes loaders' load_module() and stops setting __package__ and
    __cached__; 3.16 stops honouring __loader__.  The hook must rely only on
    find_spec / exec_module / __spec__."""
    source = "\n".join(
        (PACKAGE_DIR / name).read_text(encoding="utf-8")
        for name in (
            "truststore_autoinject.py",
            "truststore_autoinject_rules.py",
            "truststore_autoinject_config.py",
            "truststore/_hook.py",
        )
    )
    tree = ast.parse(source)
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    used |= {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.isidentifier()  # getattr(module, "__package__"), not prose
    }
    gone = {"load_module", "find_module", "find_loader", "__package__", "__cached__", "__loader__"}
    assert not used & gone, used & gone
    import truststore_autoinject

    assert callable(truststore_autoinject.find_spec)  # the module is the finder


def test_watched_names_are_what_the_installed_libraries_load() -> None:
    """With the hook installed, importing the installed urllib3, requests,
    aiohttp and pip's vendored copies reaches the patcher for every watched
    module (a library that moved its ssl_ module would not), and every
    attribute of the patch table ends up ours."""
    data = _run_json(
        """
import json, sys
import truststore_autoinject as gate
gate.install()
import ssl                       # the hook injects here
import truststore, truststore._inject as inject
seen = []
original = inject.patch_imported_module
def recording(name):
    seen.append(name)
    original(name)
inject.patch_imported_module = recording
import urllib3, requests, aiohttp, aiohttp.connector
import pip._vendor.urllib3, pip._vendor.requests
ours = {}
for name, patch in inject.PATCH_TABLE.items():
    module = sys.modules[name]
    if patch.class_attribute:
        ours[name + "." + patch.class_attribute] = (
            getattr(module, patch.class_attribute) is truststore._api.InjectedSSLContext)
    context = getattr(module, patch.context_attribute or "-", None)
    if context is not None:
        ours[name + "." + patch.context_attribute] = isinstance(context, truststore.SSLContext)
print(json.dumps({"seen": seen, "ours": ours, "injected": ssl.SSLContext is truststore._api.InjectedSSLContext}))
"""
    )
    assert data["injected"]
    assert set(data["seen"]) >= _hook.WATCHED - {"ssl", _hook.API_MODULE}, data["seen"]
    assert data["ours"] and all(data["ours"].values()), data["ours"]


# -- the patched modules' attribute names ----------------------------------------

ATTRIBUTE_REPORT = """
import importlib, json, re
from truststore import _api, _inject  # _api first: it imports _inject

def version(text):
    return tuple(int(part) for part in re.match(r"\\d+(?:\\.\\d+)*", text).group().split("."))

report = {}
for name, patch in _inject.PATCH_TABLE.items():
    package = importlib.import_module(patch.package)
    module = importlib.import_module(name)
    found = version(package.__version__)
    expected = (patch.since is None or found >= tuple(patch.since)) and (
        patch.before is None or found < tuple(patch.before))
    main = [n for n in (patch.class_attribute, patch.context_attribute) if n]
    report[name] = {
        "version": package.__version__,
        "expected": expected,
        "main": {n: hasattr(module, n) for n in main},
        "reads": {n: hasattr(module, n) for n in patch.reads},
    }
print(json.dumps(report))
"""


def _check_attribute_report(report: dict[str, Any]) -> list[str]:
    """The patch table's names against one set of installed libraries."""
    assert set(report) == set(_inject.PATCH_TABLE)
    in_range = []
    for name, entry in report.items():
        where = f"{name} ({_inject.PATCH_TABLE[name].package} {entry['version']})"
        assert entry["main"], where
        if entry["expected"]:
            # The release is one we patch: every name we read must be there.
            assert all(entry["main"].values()), (where, entry)
            assert all(entry["reads"].values()), (where, entry)
            in_range.append(name)
        else:
            # Outside the bounds we claim: then it really must be absent, or
            # the bounds in _inject.PATCH_TABLE are stale.
            assert not any(entry["main"].values()), (where, entry)
    return in_range


def test_patched_attributes_exist_in_the_installed_libraries() -> None:
    in_range = _check_attribute_report(_run_json(ATTRIBUTE_REPORT))
    # urllib3's class reference has no version bounds: always checked.
    assert {"urllib3.util.ssl_", "pip._vendor.urllib3.util.ssl_"} <= set(in_range)


REQUESTS_THAT_PRELOADS = "requests==2.32.4"
PIP_THAT_PRELOADS = "pip==24.2"  # vendors requests 2.32.3 on urllib3 1.26


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        env=_STARTUP_ENVIRON,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def preloading_releases(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PYTHONPATH with requests 2.32.4 and pip 24.2 (current releases no
    longer build a context at import, so the in-range branch of the table
    check needs these from the registry)."""
    target = tmp_path_factory.mktemp("preloading")
    installed = _pip("install", "-q", "--no-deps", "--target", str(target), REQUESTS_THAT_PRELOADS)
    assert installed.returncode == 0, installed.stderr[-500:]
    fetched = _pip(
        "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(target), PIP_THAT_PRELOADS
    )
    assert fetched.returncode == 0, fetched.stderr[-500:]
    pip_wheel = next(target.glob("pip-*.whl"))
    return os.pathsep.join([str(target), str(pip_wheel)])


def test_patched_attributes_exist_in_releases_that_build_a_context_at_import(
    preloading_releases: str,
) -> None:
    report = _run_json(ATTRIBUTE_REPORT, PYTHONPATH=preloading_releases)
    assert report["requests.adapters"]["version"] == REQUESTS_THAT_PRELOADS.split("==")[1]
    in_range = _check_attribute_report(report)
    assert {"requests.adapters", "pip._vendor.requests.adapters"} <= set(in_range)


# Module globals that hold ssl.SSLContext in the HTTP libraries but are not
# in the patch table, each with the reason it needs no patch.  A new one
# appearing (or a verifying context built at import anywhere not in the
# table) fails the scan below.
NOT_PATCHED = {
    # Re-exports of urllib3.util.ssl_.SSLContext: urllib3 makes its contexts
    # through util.ssl_'s own global (create_urllib3_context), which we patch.
    ("urllib3.util", "SSLContext"): "re-export",
    ("pip._vendor.urllib3.util", "SSLContext"): "re-export",
    # aiohttp uses these names for isinstance checks and annotations only
    # (our class is a subclass); it makes contexts with ssl.SSLContext(...) /
    # ssl.create_default_context(), looked up on the ssl module at call time.
    ("aiohttp.client_exceptions", "SSLContext"): "isinstance/annotations",
    ("aiohttp.client_reqrep", "SSLContext"): "isinstance/annotations",
    ("aiohttp.connector", "SSLContext"): "isinstance/annotations",
    ("aiohttp.web", "SSLContext"): "isinstance/annotations",
    ("aiohttp.web_runner", "SSLContext"): "isinstance/annotations",
}

# Optional third-party dependencies some submodules import.
OPTIONAL = {"OpenSSL", "socks", "h2", "js", "pyodide", "gunicorn", "brotli", "zstandard", "ntlm"}

SCAN = """
import importlib, json, pkgutil, ssl, warnings
warnings.simplefilter("ignore")
found, skipped = [], []
for top in ("urllib3", "requests", "aiohttp", "pip._vendor.urllib3", "pip._vendor.requests"):
    package = importlib.import_module(top)
    names = [top] + [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            skipped.append([name, exc.name or "", str(exc)])
            continue
        for attribute, value in list(vars(module).items()):
            if value is ssl.SSLContext:
                found.append([name, attribute, "class"])
            elif isinstance(value, ssl.SSLContext) and value.verify_mode != ssl.CERT_NONE:
                found.append([name, attribute, "verifying context"])
print(json.dumps({"found": found, "skipped": skipped}))
"""


def _check_scan(data: dict[str, Any]) -> None:
    for name, missing, message in data["skipped"]:
        # Only optional third-party imports, or another OS's bindings.
        assert missing.split(".")[0] in OPTIONAL or "securetransport" in name, (name, message)
    table = {(name, patch.class_attribute) for name, patch in _inject.PATCH_TABLE.items()}
    table |= {(name, patch.context_attribute) for name, patch in _inject.PATCH_TABLE.items()}
    unexplained = [
        (name, attribute, kind)
        for name, attribute, kind in data["found"]
        if (name, attribute) not in table and (name, attribute) not in NOT_PATCHED
    ]
    assert not unexplained, unexplained
    # The scan does see what we patch (it is not vacuous).
    assert ["urllib3.util.ssl_", "SSLContext", "class"] in data["found"]


def test_every_import_time_ssl_reference_in_the_http_libraries_is_patched_or_explained() -> None:
    _check_scan(_run_json(SCAN))


def test_import_time_contexts_of_older_releases_are_all_in_the_table(
    preloading_releases: str,
) -> None:
    data = _run_json(SCAN, PYTHONPATH=preloading_releases)
    _check_scan(data)
    for name in ("requests.adapters", "pip._vendor.requests.adapters"):
        assert [name, "_preloaded_ssl_context", "verifying context"] in data["found"]


# -- PEP 829 / site: the files the wheel ships ---------------------------------


def test_startup_files_are_ascii_and_share_one_base_name() -> None:
    """3.15's site skips a .pth's import lines when a .start file with the
    same base name sits beside it (so the hook is started once, by the
    .start); from 3.20 .pth files must be UTF-8.  Both files are ASCII, the
    common subset of UTF-8 and every locale encoding older Pythons use."""
    pth = PACKAGE_DIR / "truststore_autoinject.pth"
    start = PACKAGE_DIR / "truststore_autoinject.start"
    assert pth.stem == start.stem
    for path in (pth, start):
        path.read_bytes().decode("ascii")
    lines = [line for line in pth.read_text().splitlines() if line.strip()]
    # site executes a .pth line only if it starts with "import" + space/tab.
    assert lines and all(re.match(r"import[ \t]", line) for line in lines), lines


def _opens_text_without_encoding(call: ast.Call) -> bool:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and (func.value.id, name) == ("os", "open")
    ):
        return False  # os.open: a file descriptor, no text layer
    if name not in {"open", "fdopen", "read_text", "write_text"}:
        return False
    if any(keyword.arg == "encoding" for keyword in call.keywords):
        return False
    modes = [keyword.value for keyword in call.keywords if keyword.arg == "mode"]
    if name in {"open", "fdopen"} and len(call.args) >= 2:
        modes.append(call.args[1])
    return not any(
        isinstance(mode, ast.Constant) and isinstance(mode.value, str) and "b" in mode.value
        for mode in modes
    )


def test_no_file_is_read_or_written_in_the_locale_encoding() -> None:
    """PEP 686 (3.15) makes UTF-8 the default text encoding, where 3.10-3.14
    use the locale's: any text-mode open without an explicit encoding would
    read the config (or a CA file) differently across versions."""
    offenders = []
    for path in sorted((PACKAGE_DIR / "truststore").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [
            f"{path.name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _opens_text_without_encoding(node)
        ]
    assert not offenders, offenders
