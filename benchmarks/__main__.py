"""``python -m benchmarks [--quick] [--out DIR]``: build the venvs, run every
comparison interleaved, print the tables, write JSON and a PNG chart."""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from . import harness, report

ROOT = Path(__file__).resolve().parent.parent
ROWS = (
    "startup",
    "connection",
    "reused",
    "threads",
    "asyncio",
    "scale",
    "httpx",
    "pip",
    "layouts",
    "memory",
    "plan",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="truststore-auto side by side with bare certifi, the public "
        "truststore and pip-system-certs (loopback only; no timing assertions).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="few samples, small stores (< 2 minutes; for CI)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where latest.json and latest.png go (default: benchmarks/results/, "
        "or .nox/_bench/results-quick/ with --quick so that a quick run never "
        "replaces the committed results)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=ROOT / ".nox" / "_bench",
        help="venvs, CA certificates and big stores are cached here (default: .nox/_bench)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=ROWS,
        help="run only this row (repeatable; results go to .nox/_bench/results-partial/ "
        "unless --out is given)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out is not None:
        out: Path = args.out
    elif args.quick or args.only:  # never replace the committed results with a partial run
        out = ROOT / ".nox" / "_bench" / ("results-quick" if args.quick else "results-partial")
    else:
        out = ROOT / "benchmarks" / "results"
    cache: Path = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    plan = harness.Plan.make(args.quick)
    selected = args.only or list(ROWS)
    started = time.monotonic()
    machine = harness.machine_info()
    work = harness.new_workdir()
    bench = harness.Bench(plan=plan, cache=cache, work=work)
    timings: dict[str, float] = {}
    rows: dict[str, Any] = {}
    try:
        bench.prepare()
        timings["prepare"] = round(time.monotonic() - started, 1)
        with bench.servers():
            preflight = bench.preflight()
            for row in selected:
                t0 = time.monotonic()
                harness.log(f"row {row} ...")
                rows[row] = getattr(bench, f"row_{row}")()
                timings[row] = round(time.monotonic() - t0, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours = preflight["ours"]
    machine["loadavg_end"] = list(os.getloadavg())
    results: dict[str, Any] = {
        "meta": {
            "command": "python -m benchmarks" + (" --quick" if args.quick else ""),
            "quick": args.quick,
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "duration_s": round(time.monotonic() - started, 1),
            "row_seconds": timings,
            "machine": machine,
            "python": ours["python"],
            "openssl": ours["openssl"],
            "versions": {name: pre["versions"] for name, pre in preflight.items()},
            "ssl_context_class": {
                name: pre["ssl_context_class"] for name, pre in preflight.items()
            },
            "os_store": {
                "machine_bundle": bench.machine_bundle[0],
                "machine_cas": bench.machine_bundle[1],
                "plus": "the benchmark CA; bundle + openssl-rehash'ed directory",
            },
            "certifi_cas": bench.certifi_count,
            "plan": plan.__dict__,
        },
        "rows": rows,
    }
    results["targets"] = report.evaluate_targets(rows)
    text = report.render_text(results)
    sys.stdout.write(text)
    report.write_json(results, out / "latest.json")
    report.write_chart(results, out / "latest.png")
    (out / "latest.md").write_text(text)
    harness.log(
        f"wrote {out / 'latest.json'}, {out / 'latest.png'} in {results['meta']['duration_s']}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
