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

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
nox.options.sessions = ["lint", "typecheck", "tests", "wine", "bench_quick"]
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
