"""Pytest plugin: one outcome per test id, written as JSON for ``compare.py``.

Load with ``-p outcomes --outcomes-json=PATH``.  A test's outcome folds its
setup, call and teardown reports, the worst winning: ``error`` (setup or
teardown failed), ``failed``, ``xpassed``, ``xfailed``, ``skipped``,
``passed``.  The file also names the ``SSLContext`` classes ``ssl`` and
urllib3 use in this process, so the caller can check that injection really
was off or on.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

# Worst first: a later phase never hides an earlier, worse one.
RANK = {"error": 0, "failed": 1, "xpassed": 2, "xfailed": 3, "skipped": 4, "passed": 5}


def phase_outcome(report: pytest.TestReport) -> str | None:
    """The outcome one phase contributes (None: a passing setup/teardown)."""
    if report.failed:
        return "failed" if report.when == "call" else "error"
    if report.skipped:
        return "xfailed" if hasattr(report, "wasxfail") else "skipped"
    if report.when == "call":
        return "xpassed" if hasattr(report, "wasxfail") else "passed"
    return None


def _message(report: pytest.TestReport) -> str:
    """One line saying why: the first ``E`` line of the traceback (for an
    exception in a server thread, that is the thread's error, not pytest's
    warning about it), else the crash message or the skip reason."""
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        return str(report.longrepr[-1])[:300]
    text = str(report.longrepr or "")
    for line in text.splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:300]
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        text = str(crash.message)
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


def context_classes() -> dict[str, str]:
    """Which SSLContext class ``ssl`` (and urllib3, if loaded) hand out here."""
    import ssl  # with injection on, importing ssl is what patches it

    classes = {}
    for module in (ssl, sys.modules.get("urllib3.util.ssl_")):
        if module is not None:
            cls = module.SSLContext
            classes[f"{module.__name__}.SSLContext"] = f"{cls.__module__}.{cls.__qualname__}"
    return classes


class Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.tests: dict[str, dict[str, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = phase_outcome(report)
        if outcome is None:
            return
        seen = self.tests.get(report.nodeid)
        if seen is None or RANK[outcome] < RANK[seen["outcome"]]:
            message = "" if outcome == "passed" else _message(report)
            self.tests[report.nodeid] = {"outcome": outcome, "message": message}

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        data: dict[str, Any] = {
            "exitstatus": int(exitstatus),
            "context_classes": context_classes(),
            "tests": self.tests,
        }
        with open(self.path, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, sort_keys=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--outcomes-json", metavar="PATH", help="write per-test outcomes to PATH")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--outcomes-json")
    if path:
        config.pluginmanager.register(Recorder(path), "outcomes-recorder")
