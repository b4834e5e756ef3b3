"""The environments compared, each a virtualenv of its own.

* ``bare``: requests, urllib3, httpx, certifi and a current pip (the pip
  row needs pip >= 24.2, whose vendored truststore and
  ``--use-deprecated=legacy-certs`` it compares); nothing that changes
  verification.
* ``ours``: the same plus this project's wheel (auto-injects via its .pth).
* ``truststore``: the same plus the public ``truststore`` from PyPI, injected
  by the probe calling ``truststore.inject_into_ssl()`` before anything else
  (no sitecustomize, no .pth of ours).
* ``pip-system-certs``: the same plus ``pip-system-certs`` from PyPI, which
  injects (pip's vendored truststore) from its own .pth at start-up.

Venvs are cached under the cache directory, keyed by the interpreter, the
requirements and the wheel's content, and rebuilt when any of them changes.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON = ("requests", "urllib3", "httpx", "certifi", "pip>=24.2")
INSTALL_TIMEOUT = 900


@dataclass(frozen=True)
class Env:
    name: str  # key in results
    label: str  # for tables and charts
    extra: tuple[str, ...]  # requirements beyond COMMON
    inject_public: bool = False  # probe calls truststore.inject_into_ssl() first
    path: Path = Path()

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")


ENVS = (
    Env("bare", "bare (certifi)", ()),
    Env("ours", "ours (truststore-auto)", ("<wheel>",)),
    Env("truststore", "public truststore", ("truststore",), inject_public=True),
    Env("pip-system-certs", "pip-system-certs", ("pip-system-certs",)),
)


def find_or_build_wheel(cache: Path) -> Path:
    """TRUSTSTORE_TEST_WHEEL if set, else a wheel built from the work tree."""
    given = os.environ.get("TRUSTSTORE_TEST_WHEEL")
    if given:
        path = Path(given)
        if not path.is_file():
            raise RuntimeError(f"TRUSTSTORE_TEST_WHEEL={given} is not a file")
        return path
    out = cache / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    found = sorted(out.glob("truststore_auto-*.whl"))
    if not found:
        raise RuntimeError("pip wheel produced no truststore_auto wheel")
    return found[-1]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _install_environ() -> dict[str, str]:
    """pip keeps the machine's index/proxy settings; the product's switch and
    Python path tweaks are dropped so they cannot leak into the build."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "TRUSTSTORE_INJECT", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def _create_venv(path: Path) -> None:
    try:
        import virtualenv  # noqa: F401  (the bench extra; faster than venv+ensurepip)

        command = [
            sys.executable,
            "-m",
            "virtualenv",
            "--quiet",
            "--no-periodic-update",
            "-p",
            sys.executable,
            str(path),
        ]
    except ImportError:
        command = [sys.executable, "-m", "venv", str(path)]
    subprocess.run(command, check=True, timeout=INSTALL_TIMEOUT, env=_install_environ())


def _build(env: Env, wheel: Path, cache: Path) -> Env:
    requirements = [*COMMON, *(str(wheel) if r == "<wheel>" else r for r in env.extra)]
    key = json.dumps(
        {
            "python": sys.version,
            "base": sys.base_prefix,
            "requirements": requirements,
            "wheel": _sha256(wheel) if "<wheel>" in env.extra else None,
        },
        sort_keys=True,
    )
    path = cache / "venvs" / env.name
    marker = path / ".bench-key"
    built = Env(env.name, env.label, env.extra, env.inject_public, path)
    if marker.exists() and marker.read_text() == key and Path(built.python).exists():
        return built
    shutil.rmtree(path, ignore_errors=True)
    _create_venv(path)
    proc = subprocess.run(
        [built.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        timeout=INSTALL_TIMEOUT,
        env=_install_environ(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip install into {path} failed:\n{proc.stdout}{proc.stderr}")
    marker.write_text(key)
    return built


def build_all(cache: Path, wheel: Path) -> dict[str, Env]:
    """All four environments, built in parallel (pip mostly waits on I/O)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(ENVS)) as pool:
        futures = {env.name: pool.submit(_build, env, wheel, cache) for env in ENVS}
        return {name: future.result() for name, future in futures.items()}
