"""Issue 12: every kind of environment people install into, and life beside
the public ``truststore`` distribution.

Each test builds a fresh environment the way a user would (virtualenv + pip,
``uv venv`` + ``uv pip install``, ``uv run --with``, ``pip install --user``,
``pip install --target``, tox 4), with the CA only in the "OS store"
(``SSL_CERT_FILE``/``SSL_CERT_DIR``), and fetches from a loopback server with
an unmodified ``requests.get()``.  Third-party wheels (pdm, the public
truststore, requests, tox, uv) come from the package index once per session
(``pip download``/``pip install``, the index only); the environments under
test are then built offline from those files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from support import serve_cert
from venvs import Venv, install_environ, make_venv, product_environ

pytestmark = pytest.mark.slow

FIX = "pip install --force-reinstall --no-deps truststore-auto"
FETCH = textwrap.dedent(
    """
    import json, ssl, sys
    import requests
    try:
        requests.get(sys.argv[1], timeout=20)
        verdict = "ok"
    except requests.exceptions.SSLError:
        verdict = "cert"
    print(json.dumps([verdict, ssl.SSLContext.__module__]))
    """
)
LAZY = "import sys; print(json.dumps(['ssl' in sys.modules, sorted(m for m in sys.modules if 'truststore' in m)]))"


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 600):
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return result


def _checked(argv: list[str], env: dict[str, str] | None = None, **kwargs: object) -> str:
    result = _run(argv, install_environ() if env is None else env, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="session")
def index_wheels(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """pdm (which depends on the public truststore) and requests, with their
    dependencies, downloaded once from the package index; plus our wheel."""
    directory = tmp_path_factory.mktemp("index-wheels")
    _checked(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(directory), "pdm", "requests"]
    )
    shutil.copy(wheel, directory / wheel.name)
    assert list(directory.glob("truststore-*.whl")), "pdm no longer pulls in truststore?"
    return directory


@pytest.fixture(scope="session")
def uv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uv binary, from its wheel on the package index."""
    found = shutil.which("uv", path=str(Path(sys.executable).parent))
    if found:
        return Path(found)
    venv = make_venv(tmp_path_factory.mktemp("uv") / "venv")
    venv.pip_install("uv")
    return venv.bin / "uv"


def _offline_pip(venv: Venv, wheels: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [
            *(str(venv.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"),
            *("--no-index", "--find-links", str(wheels), *args),
        ],
        env=product_environ(PIP_CONFIG_FILE=os.devnull),
    )


def _fetch(python: Path | str, url: str, env: dict[str, str], *flags: str) -> list[str]:
    result = _run([str(python), *flags, "-c", FETCH, url], env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    verdict: list[str] = json.loads(result.stdout)
    return verdict


def _lazy(python: Path | str, env: dict[str, str]) -> tuple[bool, str]:
    result = _run([str(python), "-c", "import json; " + LAZY], env=env)
    assert result.returncode == 0, result.stderr
    ssl_loaded, _ = json.loads(result.stdout)
    return ssl_loaded, result.stderr


def _status(python: Path | str, env: dict[str, str], *flags: str) -> dict[str, object]:
    result = _run([str(python), *flags, "-m", "truststore", "status", "--json"], env=env)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 1, result.stderr
    info: dict[str, object] = json.loads(result.stdout)
    return info


@pytest.fixture
def server_and_store(
    tmp_path: Path,
) -> Iterator[tuple[str, dict[str, str], Callable[[], None]]]:
    """A loopback server whose CA is only in the "OS store" (and a home
    directory of the test's own, for the tools that write there)."""
    from support import make_store

    ca = trustme.CA()
    store = make_store(tmp_path / "os-store", ca, hashed=True)
    (tmp_path / "home").mkdir()
    store["HOME"] = str(tmp_path / "home")
    server = serve_cert(ca.issue_cert("127.0.0.1"))
    yield server.url, store, server.close
    server.close()


# -- beside the public truststore (pdm depends on it) ---------------------------

ORDERS = ["ours-then-theirs", "theirs-then-ours", "uninstall-theirs", "uninstall-ours"]


@pytest.mark.parametrize("order", ORDERS)
def test_clash_with_the_public_truststore(
    tmp_path: Path,
    index_wheels: Path,
    order: str,
    server_and_store: tuple[str, dict[str, str], Callable[[], None]],
) -> None:
    url, store, close = server_and_store
    venv = make_venv(tmp_path / "venv")
    env = product_environ(**store)
    ours = next(index_wheels.glob("truststore_auto-*.whl"))

    def pip(*args: str) -> None:
        result = _offline_pip(venv, index_wheels, *args)
        assert result.returncode == 0, result.stderr

    try:
        if order == "ours-then-theirs":
            pip(str(ours), "requests")
            pip("pdm")  # pulls in truststore, whose files replace ours
            # --force-reinstall of the public one has the same effect again.
            pip("--force-reinstall", "--no-deps", "truststore")
            expected_state, owner = "foreign", "truststore-"
        elif order == "theirs-then-ours":
            pip("pdm", "requests")
            pip(str(ours))
            expected_state, owner = "ours", "truststore_auto-"
        elif order == "uninstall-theirs":
            pip("pdm", "requests")
            pip(str(ours))
            _checked([str(venv.python), "-m", "pip", "uninstall", "-y", "-q", "truststore"])
            expected_state, owner = "damaged", "missing"
        else:
            pip("pdm", "requests")
            pip(str(ours))
            _checked([str(venv.python), "-m", "pip", "uninstall", "-y", "-q", "truststore-auto"])
            expected_state, owner = "gone", ""

        # Start-up stays lazy and silent whatever the state.
        ssl_loaded, stderr = _lazy(venv.python, env)
        assert (ssl_loaded, stderr) == (False, "")

        if expected_state == "gone":
            # Nothing of ours is left to run: pip removed every file our
            # RECORD lists, the shared ones too, which breaks the public
            # package until it is reinstalled (README says so).
            assert not (venv.site_packages / "truststore_autoinject.pth").exists()
            assert _fetch(venv.python, url, env) == ["cert", "ssl"]
            pip("--force-reinstall", "--no-deps", "truststore")
            pdm = _run([str(venv.bin / "pdm"), "--version"], env=env)
            assert pdm.returncode == 0, pdm.stderr
            return

        status = _status(venv.python, env)
        package = status["package"]
        assert isinstance(package, dict)
        assert package["state"] == expected_state, package
        assert len(package["distributions"]) == (2 if expected_state != "damaged" else 1)
        init = package["files"].get("truststore/__init__.py")
        assert init is not None and owner in init["content_of"], init
        if expected_state == "ours":
            assert status["active"] is True
            assert status["advice"] == []
        else:
            assert status["active"] is False
            assert any(FIX in line for line in status["advice"]), status["advice"]  # type: ignore[union-attr]
            # One line names the situation and the fix once ssl is imported.
            result = _run([str(venv.python), "-c", "import ssl"], env=env)
            lines = result.stderr.splitlines()
            assert result.returncode == 0 and len(lines) == 1, lines
            assert lines[0].startswith("truststore-auto: auto-injection is off") and FIX in lines[0]
            if expected_state == "foreign":
                assert "truststore-" in lines[0] and ".dist-info" in lines[0]
            # Fail closed meanwhile: the stdlib (certifi for requests) does
            # not know the OS store's CA.
            assert _fetch(venv.python, url, env) == ["cert", "ssl"]
            # The fix the line names.
            pip("--force-reinstall", "--no-deps", str(ours))

        # Ours stands in for the public package: requests and pdm's own
        # truststore context both verify through the OS store.
        assert _fetch(venv.python, url, env) == ["ok", "truststore._api"]
        # pdm's own code that builds its context (pdm 2.29's session module
        # cannot be imported whole with the hishel that pip resolves today,
        # so its function is taken from its source and run as written).
        pdm_context = textwrap.dedent(
            """
            import ast, importlib.util, json, os, socket, sys
            source = os.path.join(os.path.dirname(importlib.util.find_spec("pdm").origin),
                                  "models", "session.py")
            with open(source, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            (function,) = [node for node in tree.body if isinstance(node, ast.FunctionDef)
                           and node.name == "_create_truststore_ssl_context"]
            namespace = {}
            module = ast.Module(body=[function], type_ignores=[])
            flags = __import__("__future__").annotations.compiler_flag  # as pdm's file has
            exec(compile(module, source, "exec", flags=flags, dont_inherit=True), namespace)
            ctx = namespace["_create_truststore_ssl_context"]()
            with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1"):
                    pass
            print(json.dumps(type(ctx).__module__))
            """
        )
        port = url.rstrip("/").rsplit(":", 1)[1]
        result = _run([str(venv.python), "-c", pdm_context, port], env=env)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert json.loads(result.stdout) == "truststore._api"
        assert _run([str(venv.bin / "pdm"), "--version"], env=env).returncode == 0
        assert _status(venv.python, env)["package"]["state"] == "ours"  # type: ignore[index]
    finally:
        close()


def test_a_truststore_module_earlier_on_sys_path_is_never_executed(
    tmp_path: Path, fresh_venv: Callable[[], Venv]
) -> None:
    venv = fresh_venv()
    shadow = tmp_path / "shadow"
    (shadow / "truststore").mkdir(parents=True)
    (shadow / "truststore" / "__init__.py").write_text(
        "import sys; sys.stderr.write('SHADOW EXECUTED\\n')\n"
    )
    env = product_environ(PYTHONPATH=str(shadow))
    assert _lazy(venv.python, env) == (False, "")
    # Not at start-up, and not when ssl is imported either: quiet, not injected.
    result = venv.run(code="import ssl; print(ssl.SSLContext.__module__)", env=env)
    assert (result.stdout, result.stderr) == ("ssl\n", "")
    # The program's own directory counts too (it joins sys.path after site).
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "truststore.py").write_text("import sys; sys.stderr.write('SHADOW\\n')\n")
    (tmp_path / "prog" / "main.py").write_text("import ssl; print(ssl.SSLContext.__module__)\n")
    result = venv.run(str(tmp_path / "prog" / "main.py"))
    assert (result.stdout, result.stderr) == ("ssl\n", "")
    # Without the shadow, the same venv injects (so the above is not vacuous).
    plain = venv.run(code="import ssl; print(ssl.SSLContext.__module__)")
    assert (plain.stdout, plain.stderr) == ("truststore._api\n", "")


# -- uv --------------------------------------------------------------------------


def test_uv_venv_and_uv_pip_install(
    tmp_path: Path,
    uv: Path,
    index_wheels: Path,
    server_and_store: tuple[str, dict[str, str], Callable[[], None]],
) -> None:
    url, store, close = server_and_store
    env = product_environ(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_NO_CONFIG="1")
    path = tmp_path / "uv-venv"
    python = sys.executable
    try:
        _checked([str(uv), "venv", "-q", "--python", python, str(path)], env=env)
        ours = next(index_wheels.glob("truststore_auto-*.whl"))
        _checked(
            [
                *(str(uv), "pip", "install", "-q", "--offline", "--no-index"),
                *("--find-links", str(index_wheels), "--python", str(path / "bin" / "python")),
                *(str(ours), "requests"),
            ],
            env=env,
        )
        product = product_environ(**store)
        assert _lazy(path / "bin" / "python", product) == (False, "")
        assert _fetch(path / "bin" / "python", url, product) == ["ok", "truststore._api"]
        status = _status(path / "bin" / "python", product)
        assert status["install"]["kind"] == "site"  # type: ignore[index]
    finally:
        close()


def test_uv_run_with_is_ephemeral(
    tmp_path: Path,
    uv: Path,
    index_wheels: Path,
    server_and_store: tuple[str, dict[str, str], Callable[[], None]],
) -> None:
    url, store, close = server_and_store
    cache = tmp_path / "uv-cache"
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = product_environ(UV_CACHE_DIR=str(cache), UV_NO_CONFIG="1", **store)
    ours = next(index_wheels.glob("truststore_auto-*.whl"))
    base = [str(uv), "run", "-q", "--no-project", "--offline", "--no-index"]
    base += ["--find-links", str(index_wheels), "--python", sys.executable]
    base += ["--with", str(ours), "--with", "requests", "python"]
    try:
        fetched = _run([*base, "-c", FETCH, url], env=env, cwd=workdir)
        assert fetched.returncode == 0, fetched.stderr
        assert json.loads(fetched.stdout) == ["ok", "truststore._api"]
        status = _run([*base, "-m", "truststore", "status", "--json"], env=env, cwd=workdir)
        info = json.loads(status.stdout)
        assert info["install"]["kind"] == "ephemeral"
        assert any("uv's cache" in line for line in info["advice"]), info["advice"]
        # What uv really makes: a throw-away venv in builds-v0, the packages
        # from archive-v0 (ephemeral_reason() relies on this).
        assert f"{os.sep}builds-v0{os.sep}" in info["prefix"], info["prefix"]
        assert f"{os.sep}archive-v0{os.sep}" in info["install"]["location"]
        disable = _run([*base, "-m", "truststore", "disable"], env=env, cwd=workdir)
        assert disable.returncode == 2 and disable.stdout == ""
        assert disable.stderr.startswith("truststore: error: not written: ")
        assert "TRUSTSTORE_INJECT=0" in disable.stderr and len(disable.stderr.splitlines()) == 1
        # The variable is what lasts, and it works there.
        off = _run([*base, "-c", FETCH, url], env={**env, "TRUSTSTORE_INJECT": "0"}, cwd=workdir)
        assert json.loads(off.stdout) == ["cert", "ssl"]
    finally:
        close()


# -- pip install --user / --target -------------------------------------------------


def _base_python() -> str:
    """The interpreter this venv was made from (pip --user needs one)."""
    return os.path.join(
        sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}"
    )


def test_pip_install_user(
    tmp_path: Path,
    index_wheels: Path,
    server_and_store: tuple[str, dict[str, str], Callable[[], None]],
) -> None:
    url, store, close = server_and_store
    base = _base_python()
    home = tmp_path / "home"  # made by server_and_store
    user_base = tmp_path / "userbase"
    # HOME and PYTHONUSERBASE point into the test's directory: the user site
    # of this machine's account is never touched.
    user_env = {"HOME": str(home), "PYTHONUSERBASE": str(user_base)}
    ours = next(index_wheels.glob("truststore_auto-*.whl"))
    try:
        _checked(
            [
                *(base, "-m", "pip", "install", "-q", "--user", "--disable-pip-version-check"),
                *("--no-index", "--find-links", str(index_wheels), str(ours), "requests"),
            ],
            env=product_environ(PIP_CONFIG_FILE=os.devnull, **user_env),
        )
        env = product_environ(PYTHONUSERBASE=str(user_base), **store)
        assert _lazy(base, env) == (False, "")
        assert _fetch(base, url, env) == ["ok", "truststore._api"]
        status = _status(base, env)
        assert status["install"]["kind"] == "user"  # type: ignore[index]
        config = user_base / "truststore-auto.conf"
        assert status["config"]["path"] == str(config)  # type: ignore[index]
        # enable/disable write the user's own config, never sys.base_prefix.
        disable = _run([base, "-m", "truststore", "disable"], env=env)
        assert disable.returncode == 0, disable.stderr
        assert str(config) in disable.stdout and config.is_file()
        assert not Path(sys.base_prefix, "truststore-auto.conf").exists()
        assert _fetch(base, url, env)[1] == "ssl"
        assert _run([base, "-m", "truststore", "enable"], env=env).returncode == 0
        # -s (and -I, PYTHONNOUSERSITE) switch the user site off, and with it
        # the .pth: status says so (README "-I and -s").
        probe = "import ssl, sys; print(ssl.SSLContext.__module__, 'truststore' in sys.modules)"
        for flags in (["-s"], ["-I"], []):
            result = _run([base, *flags, "-c", probe], env=env)
            expected = "ssl False" if flags else "truststore._api True"
            assert (result.stdout.strip(), result.stderr) == (expected, ""), flags
        nousersite = _run([base, "-c", probe], env={**env, "PYTHONNOUSERSITE": "1"})
        assert nousersite.stdout.strip() == "ssl False"
        no_user = _run(
            [base, "-s", "-m", "truststore", "status", "--json"],
            env={**env, "PYTHONPATH": str(next(user_base.glob("lib/python*/site-packages")))},
        )
        info = json.loads(no_user.stdout)
        assert info["start_up"]["ran"] is False
        assert "user site directory is off" in info["start_up"]["explanation"]
    finally:
        close()


def test_pip_install_target(
    tmp_path: Path,
    fresh_venv: Callable[[], Venv],
    index_wheels: Path,
    server_and_store: tuple[str, dict[str, str], Callable[[], None]],
) -> None:
    url, store, close = server_and_store
    venv = fresh_venv()
    _checked([str(venv.python), "-m", "pip", "uninstall", "-q", "-y", "truststore-auto"])
    target = tmp_path / "layer"
    ours = next(index_wheels.glob("truststore_auto-*.whl"))
    try:
        result = _offline_pip(venv, index_wheels, "--target", str(target), str(ours), "requests")
        assert result.returncode == 0, result.stderr
        env = product_environ(PYTHONPATH=str(target), **store)
        # Importable, but .pth files run only in site directories.
        assert _fetch(venv.python, url, env) == ["cert", "ssl"]
        info = _status(venv.python, env)
        assert info["install"] == {"kind": "path", "location": str(target)}
        assert info["start_up"]["ran"] is False
        assert "not a site directory" in info["start_up"]["explanation"]  # type: ignore[index]
        assert any("site.addsitedir" in line for line in info["advice"])  # type: ignore[union-attr]
        # The remedy the status names: a sitecustomize that adds it as a site dir.
        custom = tmp_path / "custom"
        custom.mkdir()
        (custom / "sitecustomize.py").write_text(f"import site; site.addsitedir({str(target)!r})\n")
        fixed = product_environ(PYTHONPATH=f"{custom}{os.pathsep}{target}", **store)
        assert _fetch(venv.python, url, fixed) == ["ok", "truststore._api"]
    finally:
        close()


# -- tox 4 ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = make_venv(tmp_path_factory.mktemp("tox") / "venv")
    venv.pip_install("tox>=4")
    return venv.bin / "tox"


@pytest.mark.parametrize("pass_env", [False, True], ids=["without-pass_env", "with-pass_env"])
def test_tox_needs_pass_env_for_the_switch(
    tmp_path: Path, tox: Path, index_wheels: Path, pass_env: bool
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    ours = next(index_wheels.glob("truststore_auto-*.whl"))
    (project / "tox.ini").write_text(
        textwrap.dedent(
            f"""
            [tox]
            envlist = probe
            [testenv:probe]
            skip_install = true
            deps = {ours}
            set_env =
                PIP_NO_INDEX = 1
                PIP_FIND_LINKS = {index_wheels}
                PIP_CONFIG_FILE = {os.devnull}
            {"pass_env = TRUSTSTORE_INJECT" if pass_env else ""}
            commands = python -c "import ssl; print('SSLCONTEXT', ssl.SSLContext.__module__)"
            """
        )
    )
    env = product_environ(TRUSTSTORE_INJECT="0", VIRTUALENV_NO_PERIODIC_UPDATE="1")
    result = _run([str(tox), "-q", "-e", "probe"], env=env, cwd=project, timeout=900)
    assert result.returncode == 0, (result.stdout, result.stderr)
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("SSLCONTEXT")]
    # tox 4 passes only a fixed list of variables: without pass_env the
    # switch never reaches the test environment (README "tox").
    assert line == ("SSLCONTEXT ssl" if pass_env else "SSLCONTEXT truststore._api")
