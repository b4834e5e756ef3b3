from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from support import SCRUBBED_VARIABLES, make_store

# Installed-product fixtures (wheel, venvs) for tests/test_autoinject_*.py.
pytest_plugins = ["venvs"]


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees this machine's CA-bundle or proxy variables."""
    for name in SCRUBBED_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _private_plan_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and every interpreter it starts) gets an empty store-plan
    cache of its own: nothing carries over from this machine or another test."""
    monkeypatch.setenv("TRUSTSTORE_CACHE_DIR", str(tmp_path / "plan-cache"))


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def os_store(
    tmp_path: Path, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> Iterator[trustme.CA]:
    """*ca* is in the "OS store" (OpenSSL's default file) and nothing else is."""
    for key, value in make_store(tmp_path / "store", ca).items():
        monkeypatch.setenv(key, value)
    yield ca


@pytest.fixture
def empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OS store that trusts nothing."""
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
