"""Hardening matrix rows 1-4: the .pth never breaks an interpreter's start.

Every test here runs the *installed* product: a virtualenv built once per
session from the wheel (``TRUSTSTORE_TEST_WHEEL``, or one built from this
checkout), whose ``site`` runs ``truststore_autoinject.pth`` like a user's
would.  Tests that damage an installation get their own copy of it.

The promise under test (SPEC "Start-up rules"): whatever goes wrong, the
interpreter starts, the user's exit status is untouched, no traceback, and at
most one line starting ``truststore-auto:`` goes to stderr.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from support import scrubbed_environ

pytestmark = pytest.mark.slow

# pip needs this machine's index settings to build the wheel; the product
# under test never sees them (see _product_env).
_BUILD_ENV = dict(os.environ)

# The user's program: reports whether ssl.SSLContext is ours, then exits
# with a status the product must not change.
PROBE = "import ssl, sys; print(ssl.SSLContext.__module__); sys.exit(7)"
USER_STATUS = 7
INJECTED = "truststore._api"
NOT_INJECTED = "ssl"


class Venv:
    """A virtualenv with the product installed the way a user installs it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = path / "bin" / "python"
        out = subprocess.run(
            [
                str(self.python),
                "-c",
                "import sys, sysconfig; print(sys.prefix); print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=_product_env(),
        ).stdout.split("\n")
        self.prefix = Path(out[0])
        self.site_packages = Path(out[1])
        self.config = self.prefix / "truststore-auto.conf"

    def run(
        self,
        *args: str,
        env: Mapping[str | bytes, str | bytes] | None = None,
        code: str = PROBE,
        unprivileged: bool = False,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        """``python [args] -c code`` in this venv with a clean environment;
        *unprivileged*: without root's power to read any file."""
        prefix, preexec = _without_dac_override() if unprivileged else ([], None)
        return subprocess.run(
            [*prefix, str(self.python), *args, "-c", code],
            env=_product_env() if env is None else env,  # type: ignore[arg-type]
            capture_output=True,
            timeout=timeout,
            preexec_fn=preexec,
        )


def _product_env(**extra: str) -> dict[str, str]:
    """What the product runs with: no CA/proxy/index variables, no PYTHON*."""
    env = {
        k: v
        for k, v in scrubbed_environ().items()
        if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


def _virtualenv(path: Path, *, seed: bool) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "virtualenv",
            "-q",
            "--no-periodic-update",
            *([] if seed else ["--no-seed"]),
            str(path),
        ],
        check=True,
        capture_output=True,
        env=_BUILD_ENV,
    )


@pytest.fixture(scope="session")
def product(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Venv:
    """The session's venv: ``pip install`` of the wheel (the session's one,
    from tests/venvs.py), nothing else."""
    base = tmp_path_factory.mktemp("hardening-startup")
    path = base / "venv"
    _virtualenv(path, seed=True)
    subprocess.run(
        [
            str(path / "bin" / "python"),
            *["-m", "pip", "install", "-q", "--no-deps", "--no-index"],
            str(wheel),
        ],
        check=True,
        capture_output=True,
        env=_BUILD_ENV,
    )
    venv = Venv(path)
    assert (venv.site_packages / "truststore_autoinject.pth").is_file()
    return venv


@pytest.fixture
def damaged(product: Venv, tmp_path: Path) -> Venv:
    """A private copy of the installed product, free to be broken."""
    path = tmp_path / "venv"
    _virtualenv(path, seed=False)
    copy = Venv(path)
    for entry in product.site_packages.iterdir():
        if entry.name.startswith(("truststore", "truststore_auto")) or entry.name == "__pycache__":
            target = copy.site_packages / entry.name
            if entry.is_dir():
                shutil.copytree(entry, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(entry, target)
    return copy


@pytest.fixture
def config_file(product: Venv) -> Iterator[Path]:
    """The product venv's config path, removed again (whatever it became)."""

    def remove() -> None:
        path = product.config
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()

    remove()
    yield product.config
    remove()


def stderr_lines(result: subprocess.CompletedProcess[bytes]) -> list[bytes]:
    return result.stderr.splitlines()


def assert_healthy_start(
    result: subprocess.CompletedProcess[bytes], *, injected: bool, warns: bool
) -> None:
    """The user's program ran to its own exit, with the expected verdict."""
    lines = stderr_lines(result)
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    assert result.returncode == USER_STATUS, result.stderr.decode(errors="replace")
    assert result.stdout.decode().strip() == (INJECTED if injected else NOT_INJECTED)
    if warns:
        assert len(lines) == 1, lines
        assert lines[0].startswith(b"truststore-auto: "), lines
    else:
        assert lines == [], lines


# -- 1. TRUSTSTORE_INJECT ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "injected", "warns"),
    [
        pytest.param(b"0", False, False, id="0-off"),
        pytest.param(b" Off ", False, False, id="spaced-Off-off"),
        pytest.param(b"TRUE", True, False, id="TRUE-on"),
        pytest.param(b"\t1\n", True, False, id="whitespace-1-on"),
        # Not an on/off word: one warning, variable ignored, default (on).
        pytest.param(b"", True, True, id="empty-ignored"),
        pytest.param(b"garbage", True, True, id="garbage-ignored"),
        pytest.param(b"yes\nplease", True, True, id="newline-ignored"),
        pytest.param(b"\xff\xfeoff", True, True, id="non-utf8-ignored"),
        pytest.param("\u00f6ff".encode(), True, True, id="non-ascii-ignored"),
    ],
)
def test_switch_variable_values(product: Venv, value: bytes, injected: bool, warns: bool) -> None:
    env: dict[str | bytes, str | bytes] = {
        k.encode(): v.encode("utf-8", "surrogateescape") for k, v in _product_env().items()
    }
    env[b"TRUSTSTORE_INJECT"] = value
    result = product.run(env=env)
    assert_healthy_start(result, injected=injected, warns=warns)
    if warns:
        # The bad value is shown escaped, so the warning stays one line.
        assert b"TRUSTSTORE_INJECT=" in result.stderr


def test_switch_variable_warns_once_when_site_runs_again(product: Venv) -> None:
    """Embedders re-run site.main(); the .pth runs again, the warning does not."""
    code = "import site; site.main(); site.main(); " + PROBE
    result = product.run(env=_product_env(TRUSTSTORE_INJECT="maybe"), code=code)
    assert_healthy_start(result, injected=True, warns=True)


def test_switch_variable_reaches_subprocesses(product: Venv) -> None:
    code = textwrap.dedent(
        """
        import subprocess, sys
        out = subprocess.run([sys.executable, "-c", "import ssl; print(ssl.SSLContext.__module__)"],
                             capture_output=True, text=True).stdout
        print(out.strip()); sys.exit(7)
        """
    )
    result = product.run(env=_product_env(TRUSTSTORE_INJECT="off"), code=code)
    assert_healthy_start(result, injected=False, warns=False)


# -- 2. the environment's config file ---------------------------------------


def _without_dac_override() -> tuple[list[str], Callable[[], None] | None]:
    """(argv prefix, preexec_fn) that make a mode-000 file unreadable.

    Root reads any file through CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH.
    Removing both from the bounding set before exec leaves uid 0 with the
    ordinary owner/group/other checks, so the file is really unreadable:
    util-linux's ``setpriv`` does that; without it, prctl() in the child.
    A non-root user needs neither.
    """
    if os.geteuid() != 0:
        return [], None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"], None
    # Resolved here, in the parent: the child between fork and exec must
    # only call the function.
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl

    def drop() -> None:
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return [], drop


def _make_config(path: Path, kind: str) -> None:
    if kind == "corrupt-value":
        path.write_text("inject = maybe\n")
    elif kind == "corrupt-line":
        path.write_text("this is not a setting\ninject = off\n")
    elif kind == "nul-bytes":
        path.write_bytes(b"\0" * 100_000)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "invalid-utf8":
        path.write_bytes(b"inject = off\n# \xff\xfe\n")
    elif kind == "directory":
        path.mkdir()
        (path / "inject").write_text("off\n")
    elif kind == "symlink-loop":
        path.symlink_to(path.name)
    elif kind == "symlink-cycle":
        other = path.with_name(path.name + ".other")
        path.symlink_to(other.name)
        other.symlink_to(path.name)
    elif kind == "dangling-symlink":
        path.symlink_to("does-not-exist.conf")
    elif kind == "unreadable":
        path.write_text("inject = off\n")
        path.chmod(0)
    elif kind == "fifo":
        os.mkfifo(path)
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "warns"),
    [
        ("corrupt-value", True),
        ("corrupt-line", True),
        ("nul-bytes", True),
        ("invalid-utf8", True),
        ("directory", True),
        ("symlink-loop", True),
        ("symlink-cycle", True),
        ("unreadable", True),
        # A FIFO nobody writes to: opening it for reading would block the
        # interpreter's start for ever; it is not a file, so it is ignored.
        ("fifo", True),
        # Nothing to ignore: no setting, no warning, default applies.
        ("empty", False),
        ("dangling-symlink", False),
    ],
)
def test_bad_config_file(product: Venv, config_file: Path, kind: str, warns: bool) -> None:
    _make_config(config_file, kind)
    try:
        result = product.run(unprivileged=kind == "unreadable", timeout=15)
    finally:
        other = config_file.with_name(config_file.name + ".other")
        if os.path.lexists(other):
            other.unlink()
    # Every broken file means "no setting": the default (on) applies.
    assert_healthy_start(result, injected=True, warns=warns)
    if warns:
        assert str(config_file).encode() in result.stderr


def test_good_config_file_still_decides(product: Venv, config_file: Path) -> None:
    """The control for the rows above: a readable file does switch it off."""
    config_file.write_text("inject = off\n")
    assert_healthy_start(product.run(), injected=False, warns=False)
    config_file.chmod(0)
    if os.geteuid() == 0:
        # Root still reads it, so the file still decides...
        assert_healthy_start(product.run(), injected=False, warns=False)
    # ...while a process that may not read it falls back to the default.
    assert_healthy_start(product.run(unprivileged=True), injected=True, warns=True)


# -- 3. half-uninstalled, no ssl, -S, -I, late site --------------------------


def test_package_gone_pth_left(damaged: Venv) -> None:
    shutil.rmtree(damaged.site_packages / "truststore")
    assert (damaged.site_packages / "truststore_autoinject.pth").exists()
    result = damaged.run()
    assert_healthy_start(result, injected=False, warns=True)
    assert b"is missing; run: pip install --force-reinstall" in result.stderr


@pytest.mark.parametrize(
    "name", ["truststore_autoinject.py", "truststore_autoinject_rules.py"], ids=["gate", "rules"]
)
@pytest.mark.parametrize("damage", ["gone", "truncated"])
def test_gate_modules_damaged(damaged: Venv, name: str, damage: str) -> None:
    """The gate's own modules deleted or cut (an interrupted upgrade): the
    interpreter starts, no traceback, ssl stays the standard library's."""
    path = damaged.site_packages / name
    if damage == "gone":
        path.unlink()
    else:
        path.write_text(path.read_text()[:700])
    result = damaged.run()
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    assert result.returncode == USER_STATUS, result.stderr.decode(errors="replace")
    assert result.stdout.decode().strip() == NOT_INJECTED
    assert len(stderr_lines(result)) <= 1
    # A config the gate cannot decide alone sends the start itself to the rules.
    (damaged.prefix / "truststore-auto.conf").write_text("inject=off\n")
    result = damaged.run()
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    assert result.returncode == USER_STATUS
    assert result.stdout.decode().strip() == NOT_INJECTED


@pytest.mark.parametrize("damage", ["gone", "truncated"])
def test_config_reader_damaged(damaged: Venv, damage: str) -> None:
    """truststore_autoinject_config.py deleted or cut: the common start (no
    config) never loads it and still injects at import ssl; a start that
    needs the full rules starts with ssl the standard library's, at most
    one line, no traceback."""
    path = damaged.site_packages / "truststore_autoinject_config.py"
    if damage == "gone":
        path.unlink()
    else:
        path.write_text(path.read_text()[:700])
    for leftover in damaged.site_packages.glob("__pycache__/truststore_autoinject_config.*"):
        leftover.unlink()
    result = damaged.run()
    assert_healthy_start(result, injected=True, warns=False)
    for variable, config in (("perhaps", None), (None, "inject=off\n")):
        if config is not None:
            (damaged.prefix / "truststore-auto.conf").write_text(config)
        extra = {} if variable is None else {"TRUSTSTORE_INJECT": variable}
        result = damaged.run(env=_product_env(**extra))
        assert_healthy_start(result, injected=False, warns=True)
        assert b"auto-injection disabled by an internal error" in result.stderr


def test_pth_gone_package_left(damaged: Venv) -> None:
    (damaged.site_packages / "truststore_autoinject.pth").unlink()
    assert_healthy_start(damaged.run(), injected=False, warns=False)
    # The library itself still works for code that imports it.
    code = "import ssl, truststore, sys; ctx = truststore.SSLContext(); print(ssl.SSLContext.__module__); sys.exit(7)"
    assert_healthy_start(damaged.run(code=code), injected=False, warns=False)


def test_hook_module_truncated(damaged: Venv) -> None:
    """An interrupted upgrade left half a file: SyntaxError at import.
    truststore._hook holds the rules of the slow paths (and the CLI's): the
    common start and injection do not load it."""
    hook = damaged.site_packages / "truststore" / "_hook.py"
    hook.write_text(hook.read_text()[:500])
    assert_healthy_start(damaged.run(), injected=True, warns=False)
    result = damaged.run(env=_product_env(TRUSTSTORE_INJECT="perhaps"))
    assert_healthy_start(result, injected=False, warns=True)
    assert b"cannot load truststore._hook (SyntaxError" in result.stderr


def test_package_init_truncated(damaged: Venv) -> None:
    """The package's own __init__ cut after the ownership line: it is ours,
    but cannot load; ssl stays the standard library's, one line."""
    init = damaged.site_packages / "truststore" / "__init__.py"
    text = init.read_text()
    init.write_text(text[: text.index("def __getattr__") + 20])
    result = damaged.run()
    assert_healthy_start(result, injected=False, warns=True)
    assert b"could not patch ssl: SyntaxError" in result.stderr


def test_backend_module_gone(damaged: Venv) -> None:
    """The hook loads, the backend does not: ssl stays the stdlib's, one warning."""
    (damaged.site_packages / "truststore" / "_openssl.py").unlink()
    result = damaged.run()
    assert_healthy_start(result, injected=False, warns=True)
    assert b"could not patch ssl" in result.stderr


@pytest.fixture
def no_ssl_dir(tmp_path: Path) -> Path:
    """A PYTHONPATH entry that makes this Python look built without ssl.

    ``_ssl`` is an extension module in ``lib-dynload``; a ``_ssl.py`` earlier
    on ``sys.path`` shadows it, and ``import ssl`` fails exactly as on a
    Python compiled without OpenSSL: ModuleNotFoundError for ``_ssl``.
    """
    directory = tmp_path / "no-ssl"
    directory.mkdir()
    (directory / "_ssl.py").write_text(
        "raise ModuleNotFoundError(\"No module named '_ssl'\", name='_ssl')\n"
    )
    return directory


def test_python_without_ssl(product: Venv, no_ssl_dir: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        import urllib.request, http.client, json   # these cope without ssl
        try:
            import ssl
        except ImportError as exc:
            print(type(exc).__name__, exc.name, exc.__cause__, exc.__context__)
        sys.exit(7)
        """
    )
    env = _product_env(PYTHONPATH=str(no_ssl_dir))
    result = product.run(env=env, code=code)
    assert result.returncode == USER_STATUS, result.stderr
    assert result.stderr == b""
    assert result.stdout.decode().split() == ["ModuleNotFoundError", "_ssl", "None", "None"]
    # The same program, product switched off: the same outcome.
    off = product.run(env={**env, "TRUSTSTORE_INJECT": "0"}, code=code)
    assert (off.returncode, off.stdout, off.stderr) == (
        result.returncode,
        result.stdout,
        result.stderr,
    )


def test_python_dash_S(product: Venv) -> None:
    """No site, no .pth, no injection, no hook module loaded."""
    code = "import ssl, sys; print(ssl.SSLContext.__module__); assert 'truststore' not in sys.modules; sys.exit(7)"
    assert_healthy_start(product.run("-S", code=code), injected=False, warns=False)


def test_python_dash_I(product: Venv) -> None:
    """Isolated mode still runs site-packages' .pth files (and reads our
    variable, which is not a PYTHON* one)."""
    assert_healthy_start(product.run("-I"), injected=True, warns=False)
    off = product.run("-I", env=_product_env(TRUSTSTORE_INJECT="0"))
    assert_healthy_start(off, injected=False, warns=False)


def test_site_imported_late(product: Venv) -> None:
    """Embedded-style start: the application imports site itself."""
    late = "import site; site.main(); " + PROBE
    assert_healthy_start(product.run("-S", code=late), injected=True, warns=False)


def test_ssl_imported_before_site(product: Venv) -> None:
    """An embedder that loaded ssl first: the hook injects at once."""
    code = (
        "import ssl; before = ssl.SSLContext.__module__; import site; site.main(); "
        "assert before == 'ssl', before; " + PROBE
    )
    assert_healthy_start(product.run("-S", code=code), injected=True, warns=False)


# -- 4. a patched module that fails to import -------------------------------

# The failing module stores the exception it raises, so the program can
# check that what reached it is that very object.
_RAISE_ONCE = textwrap.dedent(
    """
    import builtins
    _exc = LookupError("{name} refused to load", 42)
    builtins.__dict__.setdefault("raised", []).append(_exc)
    raise _exc
    """
)


def test_failing_ssl_import_propagates_then_later_import_is_patched(
    product: Venv, tmp_path: Path
) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "_ssl.py").write_text(_RAISE_ONCE.format(name="_ssl"))
    code = textwrap.dedent(
        f"""
        import builtins, sys
        try:
            import ssl
        except LookupError as exc:
            assert exc is builtins.raised[0], (exc, builtins.raised)
            assert exc.args == ("_ssl refused to load", 42)
            assert exc.__cause__ is None and exc.__context__ is None
            print("propagated unchanged")
        else:
            raise SystemExit("the import did not fail")
        assert "ssl" not in sys.modules
        sys.path.remove({str(shadow)!r})
        import ssl
        print(ssl.SSLContext.__module__)
        sys.exit(7)
        """
    )
    result = product.run(env=_product_env(PYTHONPATH=str(shadow)), code=code)
    assert result.returncode == USER_STATUS, result.stderr
    assert result.stderr == b""
    assert result.stdout.decode().split("\n")[:2] == ["propagated unchanged", INJECTED]


def test_failing_requests_adapters_import_then_later_import_is_patched(
    product: Venv, tmp_path: Path
) -> None:
    """A watched HTTP module whose body raises the first time it runs.

    Stands in for requests < 2.33, which builds ``_preloaded_ssl_context`` at
    import; the hook must replace that context once the module does load.
    """
    package = tmp_path / "fake" / "requests"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "adapters.py").write_text(
        textwrap.dedent(
            """
            import builtins, ssl
            if not builtins.__dict__.get("raised"):
                _exc = LookupError("adapters refused to load", 42)
                builtins.raised = [_exc]
                raise _exc
            _preloaded_ssl_context = ssl.create_default_context()
            BUILT_AT_IMPORT = _preloaded_ssl_context
            """
        )
    )
    code = textwrap.dedent(
        """
        import builtins, sys
        try:
            import requests.adapters
        except LookupError as exc:
            assert exc is builtins.raised[0] and exc.args == ("adapters refused to load", 42)
            assert exc.__cause__ is None and exc.__context__ is None
            print("propagated unchanged")
        assert "requests.adapters" not in sys.modules
        import requests.adapters as adapters
        ctx = adapters._preloaded_ssl_context
        print(type(ctx).__module__, ctx is not adapters.BUILT_AT_IMPORT)
        sys.exit(7)
        """
    )
    result = product.run(env=_product_env(PYTHONPATH=str(tmp_path / "fake")), code=code)
    assert result.returncode == USER_STATUS, result.stderr
    assert result.stderr == b""
    assert result.stdout.decode().split("\n")[:2] == ["propagated unchanged", f"{INJECTED} True"]


# -- issue 10 row 13: the config file's descriptor and size --------------------

_OPEN_FILES = textwrap.dedent(
    """
    import os, ssl, sys
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink("/proc/self/fd/" + fd))
        except OSError:
            pass
    print(ssl.SSLContext.__module__)
    print("\\n".join(names))
    sys.exit(7)
    """
)


def test_config_directory_leaks_no_file_descriptor(product: Venv, config_file: Path) -> None:
    config_file.mkdir()
    result = product.run(code=_OPEN_FILES)
    assert result.returncode == USER_STATUS, result.stderr
    lines = stderr_lines(result)
    assert len(lines) == 1 and b"not a regular file" in lines[0], lines
    module, *open_files = result.stdout.decode().splitlines()
    assert module == INJECTED
    assert str(config_file) not in open_files, open_files


@pytest.mark.parametrize("size", [65536, 65537, 200_000])
def test_config_longer_than_64_kib_is_refused_with_a_warning(
    product: Venv, config_file: Path, size: int
) -> None:
    """Not cut silently: a file whose first 64 KiB say "off" but which goes on
    (here: comments) is refused as a whole, with one line; the default applies."""
    head = b"inject = off\n"
    config_file.write_bytes(head + b"#" * (size - len(head) - 1) + b"\n")
    result = product.run()
    if size <= 65536:
        assert_healthy_start(result, injected=False, warns=False)
    else:
        assert_healthy_start(result, injected=True, warns=True)
        assert b"longer than 64 KiB" in result.stderr
