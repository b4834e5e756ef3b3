"""Developer and CI entry points: ``nox`` runs everything CI runs.

Sessions install only what they need from pyproject's extras; the library is
imported from ``src/`` (pytest's ``pythonpath``), never installed into the
test interpreter, so the auto-injection .pth does not run inside pytest.
Tests that need the installed product build venvs of their own from the
wheel in ``TRUSTSTORE_TEST_WHEEL`` (built once per run here).
"""

from __future__ import annotations

import glob
import os
import shutil
import tarfile

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
nox.options.sessions = ["lint", "typecheck", "tests", "wine", "compat", "bench_quick"]
nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True

ROOT = os.path.dirname(os.path.abspath(__file__))


def _expose_pyenv_pythons() -> None:
    """Let nox find pythonX.Y for every pyenv-installed version.

    pyenv's shims refuse versions that are not selected; the versions' own
    bin directories always work.
    """
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    dirs = []
    for version in PYTHONS:
        found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin")))
        if found:
            dirs.append(found[-1])
    if dirs:
        os.environ["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])


_expose_pyenv_pythons()
WHEEL_DIR = os.path.join(ROOT, ".nox", "_wheel")


def _extra(name: str) -> list[str]:
    pyproject = nox.project.load_toml(os.path.join(ROOT, "pyproject.toml"))
    deps: list[str] = pyproject["project"]["optional-dependencies"][name]
    return deps


_built_wheel: list[str] = []


def _wheel(session: nox.Session) -> str:
    """Build the wheel once per nox run (or use the one named by the caller).

    Each run builds afresh into its own directory, so a code change is never
    tested through a stale wheel, and concurrent runs do not share one.
    """
    given = os.environ.get("TRUSTSTORE_TEST_WHEEL")
    if given:
        return given
    if not _built_wheel:
        target = os.path.join(WHEEL_DIR, str(os.getpid()))
        shutil.rmtree(target, ignore_errors=True)
        session.run(
            "python", "-m", "pip", "wheel", "--no-deps", "-q", "-w", target, ROOT, silent=True
        )
        _built_wheel.extend(glob.glob(os.path.join(target, "truststore_auto-*.whl")))
    return _built_wheel[0]


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install(*_extra("lint"))
    for platform in ("linux", "win32", "darwin"):
        session.run(
            "mypy",
            "--strict",
            "--platform",
            platform,
            "src/truststore",
            "src/truststore_autoinject.pyi",
            "src/truststore_autoinject_rules.py",
            "src/truststore_autoinject_config.py",
        )


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install(*_extra("test"))
    wheel = _wheel(session)
    session.run("pytest", *session.posargs, env={"TRUSTSTORE_TEST_WHEEL": wheel})


@nox.session(python=False)
def wine(session: nox.Session) -> None:
    """The Windows backend, run for real by Windows CPython under Wine."""
    session.run("bash", os.path.join(ROOT, "tests", "wine", "run.sh"), external=True)


# urllib3's tests that build or use TLS contexts (paths inside its sdist),
# run by the compat session: the TLS files proper, then the HTTPS
# connection and pool tests.  Left out: the proxy tests, whose CONNECT
# tunnels need urllib3's own Hypercorn fork (not on PyPI; they fail
# without injection too), and contrib/ (pyOpenSSL, SOCKS, Emscripten).
COMPAT_TESTS = [
    "test/with_dummyserver/test_https.py",
    "test/with_dummyserver/test_socketlevel.py",
    "test/test_ssltransport.py",
    "test/test_ssl.py",
    "test/test_util.py",
    "test/test_connection.py",
    "test/test_connectionpool.py",
    "test/test_poolmanager.py",
    "test/with_dummyserver/test_connection.py",
    "test/with_dummyserver/test_poolmanager.py",
]
# Deselected: they need a silent, unroutable address (urllib3's TARPIT_HOST)
# and, when the loopback guard refuses the connect at once instead, a worker
# thread deadlocks on urllib3's HTTP/2 probe lock until the test times out.
COMPAT_DESELECT = [
    f"test/with_dummyserver/test_https.py::TestHTTPS_{tls}::test_http2_probe_blocked_per_thread"
    for tls in ("TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3")
]
COMPAT_DIR = os.path.join(ROOT, "tests", "compat")


def _pinned(extra: str, name: str) -> str:
    """The exact version *extra* pins *name* to (``name==X``)."""
    for requirement in _extra(extra):
        project, sep, version = requirement.partition("==")
        if sep and project.strip().lower() == name:
            return version.strip()
    raise RuntimeError(f"pyproject's {extra} extra must pin {name}==X")


# 3.13: the newest Python here, whose create_default_context() is the
# strictest (VERIFY_X509_STRICT, VERIFY_X509_PARTIAL_CHAIN).
@nox.session(python="3.13")
def compat(session: nox.Session) -> None:
    """urllib3's own TLS tests, injection off then on, in one venv with the wheel.

    Two pairs of runs (the machine's store; urllib3's test CA as the store).
    Fails when a test that passes with injection off does not pass with it
    on, unless tests/compat/intended.py lists it with the reason.  All
    traffic is held to loopback by tests/compat/loopback_only.py; the
    summary counts the tests it stopped as not comparable.
    """
    version = _pinned("test", "urllib3")
    # Installing runs with injection off: the venv may hold the wheel already.
    quiet = {"TRUSTSTORE_INJECT": "0"}
    session.install(f"urllib3=={version}", *_extra("compat"), env=quiet)
    session.install("--force-reinstall", "--no-deps", _wheel(session), env=quiet)

    tmp = os.path.abspath(session.create_tmp())
    sdist = os.path.join(tmp, f"urllib3-{version}.tar.gz")
    if not os.path.exists(sdist):
        # "--no-binary urllib3", not ":all:": the same sdist, but pip may then
        # use wheels for the build backend it runs to read the sdist's
        # metadata; ":all:" builds setuptools/hatchling from source too
        # (3.7 minutes on a cold cache, against 3 seconds).
        session.run(
            "python", "-m", "pip", "download", "-q", "--no-binary", "urllib3", "--no-deps",
            "-d", tmp, f"urllib3=={version}", env=quiet,
        )  # fmt: skip
    source = os.path.join(tmp, f"urllib3-{version}")
    shutil.rmtree(source, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):  # 3.12, and backported to 3.10.12 / 3.11.4
            archive.extractall(tmp, filter="data")
        else:
            archive.extractall(tmp)
    session.run(
        "python", "-c",
        f"import urllib3, sys; sys.exit(urllib3.__version__ != {version!r})",
        env=quiet, silent=True,
    )  # fmt: skip

    # Two "OS stores", each run with injection off, then on.  "machine": this
    # machine's own (CA variables removed).  "test-ca": OpenSSL's defaults
    # (SSL_CERT_FILE/SSL_CERT_DIR, which both the stdlib's default
    # certificates and our OS store read on Linux) hold only the CA of
    # urllib3's HTTPS test server, so a test that pins a different CA and
    # expects a failure shows whether pins stay pins.
    empty_dir = os.path.join(tmp, "empty-cert-dir")
    os.makedirs(empty_dir, exist_ok=True)
    stores: dict[str, dict[str, str | None]] = {
        "machine": {"SSL_CERT_FILE": None, "SSL_CERT_DIR": None},
        "test-ca": {
            "SSL_CERT_FILE": os.path.join(source, "dummyserver", "certs", "cacert.pem"),
            "SSL_CERT_DIR": empty_dir,
        },
    }
    pairs = []
    session.chdir(source)
    for store, store_env in stores.items():
        files = []
        for label, switch in (("off", "0"), ("on", "1")):
            outcomes = os.path.join(tmp, f"outcomes-{store}-{label}.json")
            refusals = os.path.join(tmp, f"loopback-{store}-{label}.json")
            for stale in (outcomes, refusals):
                if os.path.exists(stale):
                    os.remove(stale)
            session.log(f"compat: store {store}, injection {label}")
            session.run(
                "python", "-m", "run_pytest", *COMPAT_TESTS,
                *(f"--deselect={test}" for test in COMPAT_DESELECT),
                "-p", "loopback_only", "-p", "outcomes", "-p", "asgi_tls",
                f"--outcomes-json={outcomes}", f"--loopback-only-report={refusals}",
                "-p", "no:cacheprovider", "-q", "--tb=line", "--timeout=60", "-rN",
                *session.posargs,
                # CI=1: urllib3's suite then allows 0.5 s, not 0.1 s, where an
                # operation must finish (test/__init__.py LONG_TIMEOUT): 2 busy
                # cores must not turn into differences.
                env={**store_env, "TRUSTSTORE_INJECT": switch, "PYTHONPATH": COMPAT_DIR, "CI": "1"},
                success_codes=[0, 1],
            )  # fmt: skip
            files += [outcomes, refusals]
        pairs += ["--pair", store, *files]
    session.chdir(ROOT)
    session.run(
        "python", os.path.join(COMPAT_DIR, "compare.py"),
        "--title", f"urllib3 {version}'s TLS tests, injection off vs on",
        *pairs, env=quiet,
    )  # fmt: skip


@nox.session(python="3.11")
def bench_quick(session: nox.Session) -> None:
    """Keeps the benchmark code working; prints ratios, asserts no timings."""
    session.install(*_extra("bench"))
    session.run(
        "python", "-m", "benchmarks", "--quick", env={"TRUSTSTORE_TEST_WHEEL": _wheel(session)}
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The full benchmark run behind the README's Performance section."""
    session.install(*_extra("bench"))
    session.run(
        "python",
        "-m",
        "benchmarks",
        *session.posargs,
        env={"TRUSTSTORE_TEST_WHEEL": _wheel(session)},
    )
