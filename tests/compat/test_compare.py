"""The compat session's bookkeeping: per-test outcomes and the off/on comparison."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compat import compare
from compat.intended import INTENDED

COMPAT_DIR = Path(__file__).resolve().parent
STDLIB = {"ssl.SSLContext": "ssl.SSLContext"}
INJECTED = {"ssl.SSLContext": "truststore._api.SSLContext"}


def run(
    label: str,
    outcomes: dict[str, str],
    *,
    classes: dict[str, str] | None = None,
    refused: dict[str, list[str]] | None = None,
    marked: list[str] | None = None,
    exitstatus: int = 1,
) -> compare.Run:
    if classes is None:
        classes = STDLIB if label == "off" else INJECTED
    return compare.Run(
        label=label,
        exitstatus=exitstatus,
        context_classes=classes,
        tests={t: {"outcome": o, "message": f"{o} message"} for t, o in outcomes.items()},
        refused=refused or {},
        marked=marked or [],
    )


def test_a_test_passing_off_and_failing_on_is_a_difference() -> None:
    off = run("off", {"a": "passed", "b": "passed", "c": "failed", "d": "skipped"})
    on = run("on", {"a": "passed", "b": "failed", "c": "failed", "d": "skipped"})
    result = compare.compare(off, on, {})
    assert result.regressions == ["b"]
    assert not result.ok


@pytest.mark.parametrize("outcome_on", ["error", "skipped", "xfailed", "xpassed", None])
def test_anything_but_a_pass_with_injection_on_counts(outcome_on: str | None) -> None:
    off = run("off", {"a": "passed"})
    on = run("on", {} if outcome_on is None else {"a": outcome_on})
    assert compare.compare(off, on, {}).regressions == ["a"]


def test_tests_failing_in_both_runs_or_only_off_do_not_fail_the_run() -> None:
    off = run("off", {"a": "failed", "b": "error"})
    on = run("on", {"a": "failed", "b": "passed"})
    result = compare.compare(off, on, {})
    assert result.ok
    assert result.improvements == ["b"]


def test_intended_differences_are_reported_not_failed_and_stale_ones_are_listed() -> None:
    off = run("off", {"a": "passed", "b": "passed"})
    on = run("on", {"a": "failed", "b": "passed"})
    result = compare.compare(off, on, {"a": "reason a", "b": "reason b"})
    assert result.ok
    assert result.intended_seen == ["a"]
    assert result.stale == ["b"]
    text = compare.summary(off, on, {"a": "reason a", "b": "reason b"}, result)
    assert "reason a" in text
    assert text.endswith("\nOK")


def test_tests_the_guard_refused_or_marked_are_not_compared() -> None:
    off = run("off", {"a": "passed", "b": "passed", "c": "passed"}, marked=["c"])
    on = run(
        "on",
        {"a": "failed", "b": "failed", "c": "failed"},
        refused={"a": ["connect ('240.0.0.0', 80)"]},
    )
    result = compare.compare(off, on, {})
    assert result.regressions == ["b"]
    assert set(result.not_comparable) == {"a", "c"}
    text = compare.summary(off, on, {}, result)
    assert "not comparable (the loopback guard refused a call" in text
    assert "): 2" in text


@pytest.mark.parametrize(
    ("off_classes", "on_classes", "exitstatus"),
    [
        (INJECTED, INJECTED, 1),  # "off" was injected
        (STDLIB, STDLIB, 1),  # "on" was not
        (STDLIB, {}, 1),  # nothing recorded
        ({"ssl.SSLContext": "ssl.SSLContext", "urllib3.util.ssl_.SSLContext": "x.Y"}, INJECTED, 1),
        (STDLIB, INJECTED, 2),  # pytest interrupted (collection error)
    ],
)
def test_a_run_in_the_wrong_state_fails(
    off_classes: dict[str, str], on_classes: dict[str, str], exitstatus: int
) -> None:
    off = run("off", {"a": "passed"}, classes=off_classes, exitstatus=exitstatus)
    on = run("on", {"a": "passed"}, classes=on_classes)
    result = compare.compare(off, on, {})
    assert result.state_errors
    assert not result.ok


def test_intended_entries_name_a_compat_test_and_give_a_reason() -> None:
    files = (
        "test/with_dummyserver/test_https.py::",
        "test/with_dummyserver/test_socketlevel.py::",
        "test/test_ssltransport.py::",
        "test/test_ssl.py::",
        "test/test_util.py::",
    )
    for test, reason in INTENDED.items():
        assert test.startswith(files), test
        assert len(reason.split()) >= 8, test


INNER_TESTS = """
import pytest

def test_pass():
    pass

def test_fail():
    assert 1 == 2

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")

def test_setup_error(broken_setup):
    pass

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

def test_teardown_error_after_pass(broken_teardown):
    pass

def test_skip():
    pytest.skip("not here")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n == 1
"""


def test_outcomes_plugin_and_compare_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    files = {}
    for label in ("off", "on"):
        outcomes = tmp_path / f"outcomes-{label}.json"
        refusals = tmp_path / f"loopback-{label}.json"
        done = subprocess.run(
            [
                sys.executable, "-m", "pytest", "-p", "outcomes", "-p", "loopback_only",
                "-p", "no:cacheprovider", "-q", f"--outcomes-json={outcomes}",
                f"--loopback-only-report={refusals}", "test_inner.py",
            ],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={"PYTHONPATH": str(COMPAT_DIR), "PATH": "/usr/bin:/bin", "TRUSTSTORE_INJECT": "0"},
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        files[label] = [str(outcomes), str(refusals)]
    tests = json.loads(Path(files["off"][0]).read_text())["tests"]
    assert {t: v["outcome"] for t, v in tests.items()} == {
        "test_inner.py::test_pass": "passed",
        "test_inner.py::test_fail": "failed",
        "test_inner.py::test_setup_error": "error",
        "test_inner.py::test_teardown_error_after_pass": "error",
        "test_inner.py::test_skip": "skipped",
        "test_inner.py::test_xfail": "xfailed",
        "test_inner.py::test_param[1]": "passed",
        "test_inner.py::test_param[2]": "failed",
    }
    assert tests["test_inner.py::test_fail"]["message"] == "assert 1 == 2"
    assert tests["test_inner.py::test_setup_error"]["message"] == "RuntimeError: setup broke"

    # Neither run is injected (TRUSTSTORE_INJECT=0, whether or not the wheel
    # is installed here): both are the stdlib's, so "on" is in
    # the wrong state and the comparison must say so and fail.
    done = subprocess.run(
        [
            sys.executable, str(COMPAT_DIR / "compare.py"),
            "--pair", "first", *files["off"], *files["on"],
            "--pair", "second", *files["off"], *files["on"],
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "RUN STATE ERROR: on: ssl.SSLContext is ssl.SSLContext" in done.stdout
    assert "=== compat [second]" in done.stdout
    assert done.stdout.endswith("compat: FAILED (first, second)\n")
    # passed failed error skipped xfailed xpassed total
    assert _counts_line(done.stdout, "off") == [2, 2, 2, 1, 1, 0, 8]


def _counts_line(text: str, label: str) -> list[int]:
    for line in text.splitlines():
        if line.startswith(label + " "):
            return [int(cell) for cell in line.split()[1:8]]
    return []
