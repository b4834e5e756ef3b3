"""Compare two runs of a test suite: injection off, then on.

    python compare.py --pair NAME OFF_OUTCOMES OFF_REFUSALS ON_OUTCOMES ON_REFUSALS ...

OUTCOMES are written by ``outcomes.py``, REFUSALS by ``loopback_only.py``.
A test is *comparable* when the loopback guard refused nothing during it in
either run and it does not carry the network marker; those that are not are
counted and left out.  The exit status is 1 when a comparable test that
passed with injection off does not pass with it on (failed, error, missing)
and is not listed in ``intended.INTENDED`` (test id -> reason, beside this
file), or when a run was not in the injection state it claims; 0 otherwise.
Listed differences that did not happen are reported (stale entries) but do
not fail the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
STDLIB_CONTEXT = "ssl.SSLContext"


@dataclass
class Run:
    label: str
    exitstatus: int
    context_classes: dict[str, str]
    tests: dict[str, dict[str, str]]
    refused: dict[str, list[str]]
    marked: list[str]

    @classmethod
    def load(cls, label: str, outcomes_path: str, refusals_path: str) -> Run:
        with open(outcomes_path, encoding="utf-8") as stream:
            outcomes = json.load(stream)
        with open(refusals_path, encoding="utf-8") as stream:
            refusals = json.load(stream)
        return cls(
            label=label,
            exitstatus=outcomes["exitstatus"],
            context_classes=outcomes["context_classes"],
            tests=outcomes["tests"],
            refused=refusals["refused"],
            marked=refusals["marked"],
        )

    def counts(self) -> Counter[str]:
        return Counter(entry["outcome"] for entry in self.tests.values())

    def outcome(self, test: str) -> str:
        entry = self.tests.get(test)
        return entry["outcome"] if entry else "missing"

    def message(self, test: str) -> str:
        entry = self.tests.get(test)
        return entry["message"] if entry else "not run (collection failed or test not found)"


@dataclass
class Comparison:
    not_comparable: dict[str, str] = field(default_factory=dict)  # test -> why
    regressions: list[str] = field(default_factory=list)  # pass off, not on; unlisted
    intended_seen: list[str] = field(default_factory=list)  # pass off, not on; listed
    stale: list[str] = field(default_factory=list)  # listed, but no difference
    improvements: list[str] = field(default_factory=list)  # not pass off, pass on
    state_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressions and not self.state_errors


def compare(off: Run, on: Run, intended: dict[str, str]) -> Comparison:
    result = Comparison()
    for run, expect_stdlib in ((off, True), (on, False)):
        classes = run.context_classes
        if not classes:
            result.state_errors.append(f"{run.label}: no SSLContext class recorded")
        for name, cls in sorted(classes.items()):
            if (cls == STDLIB_CONTEXT) != expect_stdlib:
                state = "the stdlib's" if expect_stdlib else "an injected"
                result.state_errors.append(f"{run.label}: {name} is {cls}, expected {state}")
        if run.exitstatus not in (0, 1):
            result.state_errors.append(f"{run.label}: pytest exit status {run.exitstatus}")

    for run in (off, on):
        for test, calls in run.refused.items():
            result.not_comparable.setdefault(test, f"{run.label}: refused {calls[0]}")
        for test in run.marked:
            result.not_comparable.setdefault(test, f"{run.label}: marked requires_network")

    for test in sorted(set(off.tests) | set(on.tests)):
        if test in result.not_comparable:
            continue
        passed_off = off.outcome(test) == "passed"
        passed_on = on.outcome(test) == "passed"
        if passed_off and not passed_on:
            (result.intended_seen if test in intended else result.regressions).append(test)
        elif passed_on and not passed_off:
            result.improvements.append(test)
    result.stale = sorted(set(intended) - set(result.intended_seen))
    return result


def summary(off: Run, on: Run, intended: dict[str, str], result: Comparison) -> str:
    lines = []
    width = max(len(o) for o in OUTCOMES)
    lines.append("run  " + " ".join(f"{o:>{width}}" for o in OUTCOMES) + f" {'total':>{width}}")
    for run in (off, on):
        counts = run.counts()
        cells = " ".join(f"{counts[o]:>{width}}" for o in OUTCOMES)
        classes = ", ".join(sorted(set(run.context_classes.values()))) or "?"
        lines.append(f"{run.label:<4} {cells} {sum(counts.values()):>{width}}  ({classes})")
    lines.append("")
    lines.append(
        f"not comparable (the loopback guard refused a call, or marked as needing "
        f"the network): {len(result.not_comparable)}"
    )
    for test, why in sorted(result.not_comparable.items()):
        lines.append(f"  {test}: {why}")
    lines.append(
        f"intended differences seen: {len(result.intended_seen)} (listed: {len(intended)})"
    )
    for test in result.intended_seen:
        lines.append(f"  {test}: on={on.outcome(test)}; {intended[test]}")
    if result.stale:
        lines.append(f"listed as intended but no difference this time: {len(result.stale)}")
        for test in result.stale:
            lines.append(f"  {test}: off={off.outcome(test)} on={on.outcome(test)}")
    lines.append(f"pass only with injection on: {len(result.improvements)}")
    for test in result.improvements:
        lines.append(f"  {test}: off={off.outcome(test)}: {off.message(test)}")
    lines.append(f"DIFFERENCES (pass off, not on, not intended): {len(result.regressions)}")
    for test in result.regressions:
        lines.append(f"  {test}: on={on.outcome(test)}: {on.message(test)}")
    for error in result.state_errors:
        lines.append(f"RUN STATE ERROR: {error}")
    lines.append("OK" if result.ok else "FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pair",
        nargs=5,
        action="append",
        required=True,
        metavar=("NAME", "OFF_OUTCOMES", "OFF_REFUSALS", "ON_OUTCOMES", "ON_REFUSALS"),
        help="one off/on pair of runs (repeatable)",
    )
    parser.add_argument("--title", default="injection off vs on")
    args = parser.parse_args(argv)
    from intended import INTENDED  # beside this file, which is on sys.path[0]

    failed = []
    for name, *paths in args.pair:
        off = Run.load("off", paths[0], paths[1])
        on = Run.load("on", paths[2], paths[3])
        result = compare(off, on, INTENDED)
        print(f"\n=== compat [{name}]: {args.title}")
        print(summary(off, on, INTENDED, result))
        if not result.ok:
            failed.append(name)
    print("\ncompat: " + (f"FAILED ({', '.join(failed)})" if failed else "OK"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
