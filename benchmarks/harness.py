"""The six comparisons: set-up, interleaved runs, medians.

The orchestrating process (this one) builds the venvs, the certificates and
the stores, runs the loopback servers, and starts every measurement as a
subprocess of the right venv's interpreter (``probe.py``), alternating the
environments so that drift (CPU frequency, other load) hits all of them
alike.  Nothing here times anything that runs in this process, except the
start-up row, which times whole interpreter runs.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stats, stores, venvs
from .servers import LoopbackHTTPSIndex, LoopbackTLSServer, write_simple_index

PROBE = Path(__file__).resolve().parent / "probe.py"
STALL_SECONDS = 0.25
THREADS = 8
STARTUP_TIMEOUT = 60.0  # one interpreter start; a hung one is killed
SCALE_SIZES_FULL = (1, 150, 1000, 10000)
SCALE_SIZES_QUICK = (1, 150)
SCALE_LAYOUTS = ("file", "dir", "file+dir")
CONN_CLIENTS = ("urllib3", "requests", "httpx")
DISTRO_LAYOUTS = ("debian", "fedora", "opensuse")
# Only what a program needs to run; everything that could redirect trust
# (SSL_CERT_*, REQUESTS_CA_BUNDLE, PIP_CERT, proxies, PYTHON*) stays out.
PASSED_THROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
    # Set by Bench.prepare: the product's store-plan cache lives in the
    # run's work directory, warm after the first process (row 12 measures
    # it cold and warm), never in the user's ~/.cache.
    "TRUSTSTORE_CACHE_DIR",
)


@dataclass(frozen=True)
class Plan:
    """How much of everything one run does (full or --quick)."""

    quick: bool
    startup_rounds: int  # rounds with every environment
    startup_cheap_pass: int  # rounds of `python -c pass` for bare/ours/ours-off
    startup_cheap_requests: int  # same for `import requests`
    conn_rounds: int
    conn_n: int
    conn_budget_s: float
    reused_rounds: int
    reused_budget_s: float
    reused_block: int
    threads_rounds: int
    asyncio_rounds: int
    asyncio_seconds: float
    scale_sizes: tuple[int, ...]
    scale_reps: int
    scale_budget_s: float
    startup_cheap_ssl: int  # rounds of `import ssl` (bare/ours/ours-off only)
    create_rounds: int  # httpx.Client() creation
    create_n: int
    create_budget_s: float
    pip_rounds: int
    layout_rounds: int
    layout_budget_s: float
    memory_count: int
    plan_processes: int  # row 12: fresh processes per kind (cold, warm)

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(
                quick=True,
                startup_rounds=4,
                startup_cheap_pass=10,
                startup_cheap_requests=4,
                conn_rounds=1,
                conn_n=6,
                conn_budget_s=0.6,
                reused_rounds=1,
                reused_budget_s=0.6,
                reused_block=5,
                threads_rounds=1,
                asyncio_rounds=1,
                asyncio_seconds=0.4,
                scale_sizes=SCALE_SIZES_QUICK,
                scale_reps=1,
                scale_budget_s=0.15,
                startup_cheap_ssl=10,
                create_rounds=1,
                create_n=10,
                create_budget_s=0.3,
                pip_rounds=1,
                layout_rounds=1,
                layout_budget_s=0.2,
                memory_count=100,
                plan_processes=4,
            )
        return cls(
            quick=False,
            startup_rounds=40,
            startup_cheap_pass=400,
            startup_cheap_requests=60,
            conn_rounds=8,
            conn_n=30,
            conn_budget_s=5.0,
            reused_rounds=2,
            reused_budget_s=6.0,
            reused_block=20,
            threads_rounds=6,
            asyncio_rounds=2,
            asyncio_seconds=2.0,
            scale_sizes=SCALE_SIZES_FULL,
            scale_reps=3,
            scale_budget_s=0.6,
            startup_cheap_ssl=300,
            create_rounds=4,
            create_n=100,
            create_budget_s=1.5,
            pip_rounds=8,
            layout_rounds=6,
            layout_budget_s=0.6,
            memory_count=1000,
            plan_processes=20,
        )


class ProbeError(RuntimeError):
    pass


def log(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


def product_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    env.update(extra or {})
    return env


@dataclass
class Bench:
    plan: Plan
    cache: Path
    work: Path
    envs: dict[str, venvs.Env] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(20240601))
    os_store: dict[str, str] = field(default_factory=dict)
    bare_bundle: str = ""
    notes: list[str] = field(default_factory=list)

    # -- running things in a venv ------------------------------------------
    def probe(
        self,
        env: venvs.Env,
        spec: dict[str, Any],
        extra_env: dict[str, str] | None = None,
        *,
        inject: bool | None = None,
        timeout: float = 600,
        prefix: list[str] | None = None,
    ) -> dict[str, Any]:
        """Run probe.py in *env*; *prefix* starts it in a layout's namespace."""
        spec = dict(spec)
        spec["inject_public"] = env.inject_public if inject is None else inject
        proc = subprocess.run(
            [*(prefix or []), env.python, str(self.work / "probe.py"), json.dumps(spec)],
            env=product_environ(extra_env),
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            raise ProbeError(
                f"{env.name} probe {spec['mode']} failed (exit {proc.returncode}):\n"
                f"{proc.stderr[-3000:]}{proc.stdout[-1000:]}"
            )
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    def os_store_environ(self, layout: str = "file+dir") -> dict[str, str]:
        return layout_environ(self.os_store, layout)

    # -- set-up ----------------------------------------------------------------
    def prepare(self) -> None:
        shutil.copy(PROBE, self.work / "probe.py")
        os.environ["TRUSTSTORE_CACHE_DIR"] = str(self.work / "plan-cache")
        wheel = venvs.find_or_build_wheel(self.cache)
        log(f"wheel: {wheel}")
        started = time.monotonic()
        self.envs = venvs.build_all(self.cache, wheel)
        log(f"venvs ready in {time.monotonic() - started:.1f}s under {self.cache / 'venvs'}")
        certifi_path = subprocess.run(
            [self.envs["bare"].python, "-c", "import certifi; print(certifi.where())"],
            env=product_environ(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        self.ca = stores.benchmark_ca(self.cache)
        ca_pem = self.ca.cert_pem.bytes()
        source, machine = stores.machine_bundle(certifi_path)
        self.machine_bundle = (source, len(machine))
        # The OS store of rows 2-5: this machine's CAs plus ours, as a bundle
        # and a hashed directory holding the same certificates (Debian's
        # layout).  Written per run: it follows the machine's bundle.
        self.os_pems = [*machine, ca_pem]
        self.os_store = stores.write_store(self.work / "os-store", self.os_pems)
        # The pip row's --cert for bare pip: the benchmark CA alone.
        self.ca_file = self.work / "bench-ca.pem"
        self.ca_file.write_bytes(ca_pem)
        self.index_packages = write_simple_index(self.work / "index")
        # bare: a copy of certifi's bundle with our CA appended.
        bare_bundle = self.work / "certifi-plus-bench-ca.pem"
        bare_bundle.write_bytes(Path(certifi_path).read_bytes().rstrip(b"\n") + b"\n" + ca_pem)
        self.bare_bundle = str(bare_bundle)
        self.certifi_count = len(stores.split_pem(Path(certifi_path).read_bytes()))

    @contextmanager
    def servers(self) -> Iterator[None]:
        import trustme

        leaf = self.ca.issue_cert("127.0.0.1")
        stranger = trustme.CA(organization_name="not trusted by anyone")
        untrusted_leaf = stranger.issue_cert("127.0.0.1")
        contexts = []
        for cert in (leaf, leaf, untrusted_leaf):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert.configure_cert(ctx)
            contexts.append(ctx)
        self.fast = LoopbackTLSServer(contexts[0])
        self.stalled = LoopbackTLSServer(contexts[1], stall=STALL_SECONDS)
        self.untrusted = LoopbackTLSServer(contexts[2])
        self.index = LoopbackHTTPSIndex(contexts[0], self.work / "index")
        self.untrusted_index = LoopbackHTTPSIndex(contexts[2], self.work / "index")
        try:
            yield
        finally:
            for server in (self.fast, self.stalled, self.untrusted):
                server.close()
            self.index.close()
            self.untrusted_index.close()

    # -- preflight: every environment really verifies ---------------------------
    def preflight(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, env in self.envs.items():
            spec: dict[str, Any] = {
                "mode": "preflight",
                "trusted_url": self.fast.url,
                "untrusted_url": self.untrusted.url,
            }
            if name == "bare":
                spec["ca_certs"] = self.bare_bundle
                extra = {"REQUESTS_CA_BUNDLE": self.bare_bundle}
            else:
                extra = self.os_store_environ()
            result = self.probe(env, spec, extra)
            bad = {k: v for k, v in result["checks"].items() if v != "ok"}
            if bad:
                raise ProbeError(f"{name}: preflight failed, not measuring: {bad}")
            found[name] = result
            log(f"preflight {name}: verifies; ssl.SSLContext is {result['ssl_context_class']}")
        return found

    # -- row 1 ---------------------------------------------------------------------
    def row_startup(self) -> dict[str, Any]:
        inject_public = "import truststore; truststore.inject_into_ssl(); "
        variants: list[tuple[str, venvs.Env, str, dict[str, str]]] = [
            ("bare", self.envs["bare"], "", {}),
            ("ours", self.envs["ours"], "", {}),
            ("ours-off", self.envs["ours"], "", {"TRUSTSTORE_INJECT": "0"}),
            ("truststore", self.envs["truststore"], inject_public, {}),
            ("pip-system-certs", self.envs["pip-system-certs"], "", {}),
        ]
        # bare/ours/ours-off are cheap to start, and the 1 ms budget needs
        # many pairs to be resolved on a busy machine: they get extra rounds.
        cheap = {"bare", "ours", "ours-off"}
        # `import ssl` is what every HTTPS program pays first; injection
        # hooks it, so it is compared for the cheap variants only (the
        # alternatives' cost is all in their start-up).
        programs = {
            "pass": "pass",
            "import requests": "import requests",
            "import ssl": "import ssl",
        }
        rounds_for = {
            "pass": (self.plan.startup_rounds, self.plan.startup_cheap_pass),
            "import requests": (self.plan.startup_rounds, self.plan.startup_cheap_requests),
            "import ssl": (0, self.plan.startup_cheap_ssl),
        }
        unexpected: dict[str, str] = {}

        def run(
            variant: tuple[str, venvs.Env, str, dict[str, str]], program: str
        ) -> tuple[float, float]:
            """(wall ms, child CPU ms) of one interpreter run."""
            name, env, prefix, extra = variant
            code = prefix + programs[program]
            wall, cpu, returncode, text = timed_process(
                [env.python, "-c", code], product_environ(extra), self.work
            )
            if returncode != 0:
                raise ProbeError(f"{name} {code!r} exited {returncode}: {text[-2000:]}")
            if text and name not in unexpected:
                unexpected[name] = text[:300]
            return wall, cpu

        for variant in variants:  # warm the page cache and .pyc files
            for program in programs:
                if rounds_for[program][0] == 0 and variant[0] not in cheap:
                    continue
                for _ in range(1 if self.plan.quick else 2):
                    run(variant, program)
        wall: dict[str, dict[str, list[float | None]]] = {
            p: {v[0]: [] for v in variants} for p in programs
        }
        cpu: dict[str, dict[str, list[float | None]]] = {
            p: {v[0]: [] for v in variants} for p in programs
        }
        deadline = time.monotonic() + (60 if self.plan.quick else 300)
        total = max(cheap_rounds for _, cheap_rounds in rounds_for.values())
        done = 0
        for rnd in range(total):
            if time.monotonic() > deadline and rnd >= 3:
                break
            # The cheap variants of one program run back to back, in a random
            # order, as one block: the differences that are the result (a
            # few tenths of a millisecond) then come from neighbouring runs,
            # not from runs with a 100-300 ms interpreter of another variant
            # (and its effect on caches and clocks) between them.  Blocks and
            # the other variants' runs are shuffled among each other.
            units: list[list[tuple[tuple[str, venvs.Env, str, dict[str, str]], str]]] = []
            for program, (all_rounds, cheap_rounds) in rounds_for.items():
                if rnd >= max(all_rounds, cheap_rounds):
                    continue
                block = [(variant, program) for variant in variants if variant[0] in cheap]
                self.rng.shuffle(block)
                units.append(block)
                if rnd < all_rounds:
                    units += [[(v, program)] for v in variants if v[0] not in cheap]
            self.rng.shuffle(units)
            measured: set[tuple[str, str]] = set()
            for variant, program in (job for unit in units for job in unit):
                w, c = run(variant, program)
                wall[program][variant[0]].append(w)
                cpu[program][variant[0]].append(c)
                measured.add((program, variant[0]))
            for program in programs:  # keep the lists aligned round by round
                for variant in variants:
                    if (program, variant[0]) not in measured:
                        wall[program][variant[0]].append(None)
                        cpu[program][variant[0]].append(None)
            done += 1
        result: dict[str, Any] = {"rounds": done, "unexpected_output": unexpected}
        for program in programs:
            entry: dict[str, Any] = {}
            for name, _env, _prefix, _extra in variants:
                if rounds_for[program][0] == 0 and name not in cheap:
                    continue
                entry[name] = _paired(wall[program][name], wall[program]["bare"])
                entry[name]["cpu"] = _paired(cpu[program][name], cpu[program]["bare"])
            result[program] = entry
        # What the import itself adds, start-up aside: per round, ours' extra
        # for `import ssl` minus ours' extra for `pass` (same round).
        for name in ("ours", "ours-off"):
            extra = []
            for v, b, pv, pb in zip(
                wall["import ssl"][name],
                wall["import ssl"]["bare"],
                wall["pass"][name],
                wall["pass"]["bare"],
                strict=True,
            ):
                if v is not None and b is not None and pv is not None and pb is not None:
                    extra.append((v - b) - (pv - pb))
            result["import ssl"][name]["import_only_ms"] = stats.summary(extra)
        log(f"start-up: {done} rounds")
        return result

    # -- row 2 ---------------------------------------------------------------------
    def conn_variants(
        self, client: str
    ) -> list[tuple[str, venvs.Env, dict[str, Any], dict[str, str]]]:
        bare = self.envs["bare"]
        found: list[tuple[str, venvs.Env, dict[str, Any], dict[str, str]]] = []
        if client == "urllib3":
            found.append(("bare", bare, {"ca_certs": self.bare_bundle}, {}))
            # Control for "ours, bundle only": plain urllib3 loading the very
            # bundle the OS store holds (it has more CAs than certifi).
            found.append(("bare-os-bundle", bare, {"ca_certs": self.os_store["bundle"]}, {}))
        elif client == "httpx":
            # probe.py gives httpx this file as an SSLContext per Client
            # (trust_env=False for every variant: see _httpx_client there).
            found.append(("bare", bare, {"ca_certs": self.bare_bundle}, {}))
        else:
            found.append(("bare", bare, {}, {"REQUESTS_CA_BUNDLE": self.bare_bundle}))
        if client == "httpx":
            # The floors: the same first request with verification off (no
            # trust work at all), which no verifying variant can beat; and
            # the same after `import certifi; certifi.where()`, which
            # httpx's default verify=True does before any trust work, in
            # bare and ours alike (probe.HTTPX_FLOORS).  httpx only: urllib3
            # (and so requests) still loads OpenSSL's default certificates
            # into a context it makes for CERT_NONE, so theirs would be no
            # floor.
            found.append(("no-verify", bare, {"floor": "verify-off"}, {}))
            found.append(("no-verify+certifi", bare, {"floor": "verify-off+certifi"}, {}))
        found += [
            ("ours", self.envs["ours"], {}, self.os_store_environ("file+dir")),
            ("ours-bundle-only", self.envs["ours"], {}, self.os_store_environ("file")),
            ("truststore", self.envs["truststore"], {}, self.os_store_environ("file+dir")),
            (
                "pip-system-certs",
                self.envs["pip-system-certs"],
                {},
                self.os_store_environ("file+dir"),
            ),
        ]
        return found

    def row_connection(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for client in CONN_CLIENTS:
            variants = self.conn_variants(client)
            times: dict[str, list[float]] = {v[0]: [] for v in variants}
            cpu: dict[str, list[float]] = {v[0]: [] for v in variants}
            firsts: dict[str, list[float]] = {v[0]: [] for v in variants}
            first_cpu: dict[str, list[float]] = {v[0]: [] for v in variants}
            for rnd in range(self.plan.conn_rounds):
                order = list(variants)
                self.rng.shuffle(order)
                for name, env, spec_extra, extra_env in order:
                    spec = {
                        "mode": "conn",
                        "client": client,
                        "url": self.fast.url,
                        "n": self.plan.conn_n,
                        "min_n": 3,
                        "budget_s": self.plan.conn_budget_s / len(variants),
                        **spec_extra,
                    }
                    out = self.probe(env, spec, extra_env)
                    times[name].extend(out["times_ms"])
                    cpu[name].extend(out["cpu_ms"])
                    firsts[name].append(out["first_ms"])
                    first_cpu[name].append(out["first_cpu_ms"])
                log(f"connection {client}: round {rnd + 1}/{self.plan.conn_rounds}")
            result[client] = _compare(times, cpu, firsts, first_cpu)
        return result

    # -- rows 3-5: one context, two kinds, in ours' and the public venv ----------
    def _context_envs(self) -> list[tuple[str, venvs.Env, dict[str, str]]]:
        # TRUSTSTORE_INJECT=0 in ours: the process compares our class with
        # the standard library's one, which injection would have replaced.
        return [
            ("ours", self.envs["ours"], {**self.os_store_environ(), "TRUSTSTORE_INJECT": "0"}),
            ("truststore", self.envs["truststore"], self.os_store_environ()),
        ]

    def _alternate_processes(
        self, rounds: int, make_spec: Callable[[str], dict[str, Any]]
    ) -> dict[str, list[dict[str, Any]]]:
        outputs: dict[str, list[dict[str, Any]]] = {}
        for rnd in range(rounds):
            order = self._context_envs()
            if rnd % 2:
                order.reverse()
            for name, env, extra in order:
                out = self.probe(env, make_spec(name), extra, inject=False)
                outputs.setdefault(name, []).append(out)
        return outputs

    def row_reused(self) -> dict[str, Any]:
        per_process = self.plan.reused_budget_s / max(1, self.plan.reused_rounds)
        outputs = self._alternate_processes(
            self.plan.reused_rounds,
            lambda name: {
                "mode": "reused",
                "kinds": ["truststore", "plain"],
                "port": self.fast.port,
                "budget_s": per_process,
                "block_size": self.plan.reused_block,
                "max_blocks": 400,
            },
        )
        result: dict[str, Any] = {}
        for name, outs in outputs.items():
            merged: dict[str, list[float]] = {"truststore": [], "plain": []}
            merged_cpu: dict[str, list[float]] = {"truststore": [], "plain": []}
            for out in outs:
                for kind, values in out["times_ms"].items():
                    merged[kind].extend(values)
                for kind, values in out["cpu_ms"].items():
                    merged_cpu[kind].extend(values)
            med = {kind: stats.median(values) for kind, values in merged.items()}
            rate = {kind: (1000.0 / m if m else None) for kind, m in med.items()}
            result[name] = {
                "handshake_ms": {kind: stats.summary(v) for kind, v in merged.items()},
                "per_second": {k: (round(v, 1) if v else None) for k, v in rate.items()},
                "ratio": stats.ratio(rate["truststore"], rate["plain"]),
                "cpu_ms": {kind: stats.summary(v) for kind, v in merged_cpu.items()},
                # client CPU per handshake, plain / ours: >1 means ours is cheaper
                "cpu_ratio": stats.ratio(
                    stats.median(merged_cpu["plain"]), stats.median(merged_cpu["truststore"])
                ),
            }
        log("reused context: done")
        return result

    def row_threads(self) -> dict[str, Any]:
        outputs = self._alternate_processes(
            2 if self.plan.threads_rounds > 1 else 1,
            lambda name: {
                "mode": "threads",
                "kinds": ["truststore", "plain"],
                "port": self.stalled.port,
                "threads": THREADS,
                "rounds": max(1, self.plan.threads_rounds // 2),
                "budget_s": 30.0,
            },
        )
        result: dict[str, Any] = {"threads": THREADS, "stall_ms": STALL_SECONDS * 1000}
        for name, outs in outputs.items():
            merged: dict[str, list[float]] = {"truststore": [], "plain": []}
            errors: list[str] = []
            for out in outs:
                for kind, values in out["walls_ms"].items():
                    merged[kind].extend(values)
                errors += out["errors"]
            result[name] = {
                "wall_ms": {kind: stats.summary(v) for kind, v in merged.items()},
                "ratio": stats.ratio(
                    stats.median(merged["truststore"]), stats.median(merged["plain"])
                ),
                "errors": errors[:3],
            }
        log("threads: done")
        return result

    def row_asyncio(self) -> dict[str, Any]:
        outputs = self._alternate_processes(
            1,
            lambda name: {
                "mode": "asyncio",
                "kinds": ["truststore", "plain"],
                "port": self.fast.port,
                "stall_port": self.stalled.port,
                "seconds": self.plan.asyncio_seconds,
                "rounds": self.plan.asyncio_rounds,
            },
        )
        result: dict[str, Any] = {"tick_ms": 2.0, "stall_ms": STALL_SECONDS * 1000}
        for name, outs in outputs.items():
            entry: dict[str, Any] = {}
            for kind, data in outs[0]["kinds"].items():
                lags = data["lags_ms"]
                entry[kind] = {
                    "worst_ms": stats._round(max(lags) if lags else None),
                    "p99_ms": stats._round(stats.quantile(lags, 0.99)),
                    "median_ms": stats._round(stats.median(lags)),
                    "ticks": len(lags),
                    "loop_handshakes": data["loop_handshakes"],
                    "loop_failures": data["loop_failures"],
                    "thread_handshakes": data["thread"],
                }
            result[name] = entry
        log("asyncio: done")
        return result

    # -- row 6 ---------------------------------------------------------------------
    def row_scale(self) -> dict[str, Any]:
        ca_pem = self.ca.cert_pem.bytes()
        largest = max(self.plan.scale_sizes)
        started = time.monotonic()
        fillers = stores.filler_cas(self.cache, max(0, largest - 1))
        log(f"scale: {len(fillers)} filler CAs ready in {time.monotonic() - started:.1f}s")
        entries: list[dict[str, Any]] = []
        names = ["bare", "ours", "truststore"]
        for size in self.plan.scale_sizes:
            started = time.monotonic()
            store = stores.cached_store(self.cache, f"scale-{size}", [*fillers[: size - 1], ca_pem])
            log(f"scale: store of {size} CAs ready in {time.monotonic() - started:.1f}s")
            big = size >= 5000
            reps = 1 if big else self.plan.scale_reps
            for layout in SCALE_LAYOUTS:
                collected: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
                for _ in range(reps):
                    order = list(names)
                    self.rng.shuffle(order)
                    for name in order:
                        spec = {
                            "mode": "scale",
                            "port": self.fast.port,
                            "budget_s": self.plan.scale_budget_s,
                            "min_n": 1 if big else 3,
                            "max_n": 400,
                        }
                        out = self.probe(
                            self.envs[name], spec, layout_environ(store, layout), timeout=900
                        )
                        collected[name].append(out)
                for name, outs in collected.items():
                    entries.append(
                        {
                            "size": size,
                            "layout": layout,
                            "env": name,
                            "context_class": outs[0]["context_class"],
                            "cold_create_ms": stats.median([o["cold_create_ms"] for o in outs]),
                            "first_conn_ms": stats.median([o["first_conn_ms"] for o in outs]),
                            "create_ms": stats.median([x for o in outs for x in o["create_ms"]]),
                            "create_cpu_ms": stats.median(
                                [x for o in outs for x in o["create_cpu_ms"]]
                            ),
                            "new_ctx_conn_ms": stats.median(
                                [x for o in outs for x in o["new_ctx_conn_ms"]]
                            ),
                            "reused_conn_ms": stats.median(
                                [x for o in outs for x in o["reused_conn_ms"]]
                            ),
                            "n": sum(len(o["create_ms"]) for o in outs),
                        }
                    )
                log(f"scale: {size} CAs, {layout}: done")
        return {
            "entries": entries,
            "layouts": list(SCALE_LAYOUTS),
            "sizes": list(self.plan.scale_sizes),
        }

    # -- row 7: httpx.Client() creation alone ----------------------------------------------
    def row_httpx(self) -> dict[str, Any]:
        bare = self.envs["bare"]
        variants: list[tuple[str, venvs.Env, dict[str, Any], dict[str, str]]] = [
            ("bare", bare, {"ca_certs": self.bare_bundle}, {}),
            ("ours", self.envs["ours"], {}, self.os_store_environ()),
            ("truststore", self.envs["truststore"], {}, self.os_store_environ()),
            ("pip-system-certs", self.envs["pip-system-certs"], {}, self.os_store_environ()),
        ]
        times: dict[str, list[float]] = {v[0]: [] for v in variants}
        cpu: dict[str, list[float]] = {v[0]: [] for v in variants}
        firsts: dict[str, list[float]] = {v[0]: [] for v in variants}
        first_cpu: dict[str, list[float]] = {v[0]: [] for v in variants}
        for _ in range(self.plan.create_rounds):
            order = list(variants)
            self.rng.shuffle(order)
            for name, env, spec_extra, extra_env in order:
                spec = {
                    "mode": "client_create",
                    "n": self.plan.create_n,
                    "min_n": 3,
                    "budget_s": self.plan.create_budget_s,
                    **spec_extra,
                }
                out = self.probe(env, spec, extra_env)
                times[name].extend(out["times_ms"])
                cpu[name].extend(out["cpu_ms"])
                firsts[name].append(out["first_ms"])
                first_cpu[name].append(out["first_cpu_ms"])
        log("httpx.Client() creation: done")
        return _compare(times, cpu, firsts, first_cpu)

    # -- row 8: pip against a local HTTPS index ------------------------------------------
    def _pip_argv(self, env: venvs.Env, url: str, mode: str, cert: bool, dest: Path) -> list[str]:
        argv = [
            env.python,
            "-m",
            "pip",
            "download",
            "--no-cache-dir",
            "--no-deps",
            "--only-binary=:all:",
            "--progress-bar",
            "off",
            "--retries",
            "0",
            "--timeout",
            "20",
            "-d",
            str(dest),
            "--index-url",
            url,
            *self.index_packages,
        ]
        if mode == "legacy-certs":
            argv.append("--use-deprecated=legacy-certs")
        if cert:
            argv += ["--cert", str(self.ca_file)]
        return argv

    def row_pip(self) -> dict[str, Any]:
        # Every variant sees the same OS store (SSL_CERT_FILE/SSL_CERT_DIR);
        # no pip configuration file is read (PIP_CONFIG_FILE=os.devnull).
        # pip's default verifies with its vendored truststore, i.e. the OS
        # store, so bare pip needs nothing more; with legacy-certs bare pip
        # trusts only its vendored certifi and needs --cert (the benchmark CA
        # alone) to reach the index at all: that is its baseline.
        pip_env = {
            **self.os_store_environ(),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }
        variants = [
            ("bare", "default", self.envs["bare"], False),
            ("ours", "default", self.envs["ours"], False),
            ("bare", "legacy-certs", self.envs["bare"], True),
            ("ours", "legacy-certs", self.envs["ours"], False),
        ]
        downloads = self.work / "pip-downloads"
        counter = [0]

        def run(env: venvs.Env, mode: str, cert: bool, url: str) -> tuple[float, float, int, str]:
            counter[0] += 1
            dest = downloads / str(counter[0])
            dest.mkdir(parents=True)
            try:
                found = timed_process(
                    self._pip_argv(env, url, mode, cert, dest),
                    product_environ(pip_env),
                    self.work,
                    timeout=120,
                )
                wheels = len(list(dest.glob("*.whl")))
            finally:
                shutil.rmtree(dest, ignore_errors=True)
            if found[2] == 0 and wheels != len(self.index_packages):
                raise ProbeError(
                    f"pip exited 0 but downloaded {wheels} wheels:\n{found[3][-2000:]}"
                )
            return found

        checks: dict[str, str] = {}
        for name, mode, env, cert in variants:  # preflight + warm-up
            key = f"{name} {mode}"
            _w, _c, code, text = run(env, mode, cert, self.untrusted_index.url)
            if code == 0 or "certificate verify failed" not in text.lower():
                raise ProbeError(f"pip {key}: the untrusted index was not refused:\n{text[-2000:]}")
            if self.plan.quick:  # the measured run below checks the trusted index
                checks[key] = "ok"
                continue
            _w, _c, code, text = run(env, mode, cert, self.index.url)
            if code != 0:
                raise ProbeError(
                    f"pip {key}: download from the trusted index failed:\n{text[-3000:]}"
                )
            checks[key] = "ok"
        wall: dict[str, list[float | None]] = {f"{v[0]} {v[1]}": [] for v in variants}
        cpu: dict[str, list[float | None]] = {f"{v[0]} {v[1]}": [] for v in variants}
        for rnd in range(self.plan.pip_rounds):
            order = list(variants)
            self.rng.shuffle(order)
            for name, mode, env, cert in order:
                w, c, code, text = run(env, mode, cert, self.index.url)
                if code != 0:
                    raise ProbeError(f"pip {name} {mode} failed:\n{text[-3000:]}")
                wall[f"{name} {mode}"].append(w)
                cpu[f"{name} {mode}"].append(c)
            log(f"pip: round {rnd + 1}/{self.plan.pip_rounds}")
        result: dict[str, Any] = {"packages": self.index_packages, "checks": checks}
        for mode in ("default", "legacy-certs"):
            base = f"bare {mode}"
            result[mode] = {
                name: {
                    **_paired(wall[f"{name} {mode}"], wall[base]),
                    "cpu": _paired(cpu[f"{name} {mode}"], cpu[base]),
                }
                for name in ("bare", "ours")
            }
        result["bare_cert"] = {"default": None, "legacy-certs": "the benchmark CA (--cert)"}
        return result

    # -- row 9: distribution layouts, in a mount namespace ---------------------------------
    def row_layouts(self) -> dict[str, Any]:
        prefix, reason = stores.namespace_prefix()
        if prefix is None:
            log(f"layouts: skipped ({reason})")
            return {"skipped": reason}
        paths = ssl.get_default_verify_paths()
        scripts = {
            name: stores.build_layout(
                name,
                self.work / "layouts" / name,
                self.os_pems,
                (paths.openssl_cafile, paths.openssl_capath),
            )
            for name in DISTRO_LAYOUTS
        }
        variants: list[tuple[str, venvs.Env, dict[str, Any]]] = [
            ("bare", self.envs["bare"], {"ca_certs": self.bare_bundle}),
            ("bare-os", self.envs["bare"], {}),
            ("ours", self.envs["ours"], {}),
        ]
        result: dict[str, Any] = {"namespace": " ".join(prefix)}
        for layout in DISTRO_LAYOUTS:
            outs: dict[str, list[dict[str, Any]]] = {v[0]: [] for v in variants}
            for _ in range(self.plan.layout_rounds):
                order = list(variants)
                self.rng.shuffle(order)
                for name, env, spec_extra in order:
                    spec = {
                        "mode": "layout",
                        "url": self.fast.url,
                        "untrusted_url": self.untrusted.url,
                        "port": self.fast.port,
                        "budget_s": self.plan.layout_budget_s,
                        "min_n": 3,
                        "max_n": 200,
                        **spec_extra,
                    }
                    # A plan cache per layout, as each would be a machine of its own.
                    extra = {"TRUSTSTORE_CACHE_DIR": str(self.work / "plan-cache-layouts" / layout)}
                    out = self.probe(env, spec, extra, prefix=[*prefix, "sh", str(scripts[layout])])
                    if out["untrusted"] != "ok":
                        raise ProbeError(f"layout {layout}, {name}: {out['untrusted']}")
                    outs[name].append(out)
            # plain = the standard library's create_default_context() (both bare runs)
            plain = [o for name in ("bare", "bare-os") for o in outs[name]]
            firsts = {
                name: stats.median([o["first_ms"] for o in got]) for name, got in outs.items()
            }
            firsts_cpu = {
                name: stats.median([o["first_cpu_ms"] for o in got]) for name, got in outs.items()
            }
            new_conn = {
                "plain": stats.median([x for o in plain for x in o["new_ctx_conn_ms"]]),
                "ours": stats.median([x for o in outs["ours"] for x in o["new_ctx_conn_ms"]]),
            }
            create = {
                "plain": stats.median([x for o in plain for x in o["create_ms"]]),
                "ours": stats.median([x for o in outs["ours"] for x in o["create_ms"]]),
            }
            result[layout] = {
                "label": stores.LAYOUTS[layout].label,
                "describe": stores.LAYOUTS[layout].describe,
                "first_ms": firsts,
                "first_ratio": stats.ratio(firsts["ours"], firsts["bare"]),
                "first_ratio_os": stats.ratio(firsts["ours"], firsts["bare-os"]),
                "first_cpu_ms": firsts_cpu,
                "first_cpu_ratio": stats.ratio(firsts_cpu["ours"], firsts_cpu["bare"]),
                "new_ctx_conn_ms": new_conn,
                "new_ctx_conn_ratio": stats.ratio(new_conn["ours"], new_conn["plain"]),
                "create_ms": create,
                "processes": len(outs["ours"]),
                "ours_store": outs["ours"][0]["store"] if outs["ours"] else None,
                "context_class": outs["ours"][0]["context_class"] if outs["ours"] else None,
            }
            log(f"layouts: {layout} done")
        return result

    # -- row 10: memory with many live contexts -----------------------------------------
    def row_plan(self) -> dict[str, Any]:
        """The first context's store plan in a new process, Debian-style
        store (bundle + hashed directory): with an empty plan cache (the
        first process after the store changed: the baseline) and with the
        cache the earlier processes left (every later process)."""
        env = self.envs["ours"]
        warm_dir = self.work / "plan-cache-warm"
        shutil.rmtree(warm_dir, ignore_errors=True)
        store = self.os_store_environ()
        spec = {"mode": "plan"}
        self.probe(env, spec, {**store, "TRUSTSTORE_CACHE_DIR": str(warm_dir)})  # warms it
        found: dict[str, list[float]] = {"cold": [], "warm": [], "cold_cpu": [], "warm_cpu": []}
        summaries: set[str] = set()
        for index in range(self.plan.plan_processes):
            kinds = ["cold", "warm"]
            self.rng.shuffle(kinds)
            for kind in kinds:
                if kind == "cold":
                    directory = self.work / "plan-cache-cold" / str(index)
                    shutil.rmtree(directory, ignore_errors=True)
                else:
                    directory = warm_dir
                result = self.probe(env, spec, {**store, "TRUSTSTORE_CACHE_DIR": str(directory)})
                found[kind].append(result["plan_ms"])
                found[f"{kind}_cpu"].append(result["plan_cpu_ms"])
                summaries.add(result["summary"])
        if len(summaries) != 1:
            raise ProbeError(f"cold and warm plans differ: {sorted(summaries)}")
        log("plan: done")
        return {
            "cold": stats.summary(found["cold"]),
            "warm": stats.summary(found["warm"]),
            "cold_cpu": stats.summary(found["cold_cpu"]),
            "warm_cpu": stats.summary(found["warm_cpu"]),
            "ratio": stats.ratio(stats.median(found["warm"]), stats.median(found["cold"])),
            "summary": summaries.pop(),
        }

    def row_memory(self) -> dict[str, Any]:
        variants = [("bare", self.envs["bare"]), ("ours", self.envs["ours"])]
        self.rng.shuffle(variants)
        found: dict[str, Any] = {}
        for name, env in variants:
            spec = {
                "mode": "memory",
                "port": self.fast.port,
                "count": self.plan.memory_count,
                "budget_s": 120.0,
            }
            found[name] = self.probe(env, spec, self.os_store_environ())
        found["ratio"] = stats.ratio(found["ours"]["delta_kib"], found["bare"]["delta_kib"])
        log("memory: done")
        return found


def timed_process(
    argv: list[str], environ: dict[str, str], cwd: Path, timeout: float = STARTUP_TIMEOUT
) -> tuple[float, float, int, str]:
    """Run *argv* to the end: (wall ms, the child's CPU ms from wait4, exit
    code, its output).  A hung process is killed after *timeout*."""
    with tempfile.TemporaryFile() as output:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=environ, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    return elapsed * 1000.0, (usage.ru_utime + usage.ru_stime) * 1000.0, proc.returncode, text


def _compare(
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
    firsts: dict[str, list[float]],
    first_cpu: dict[str, list[float]],
) -> dict[str, Any]:
    """Medians and ratios to "bare" of per-operation and first-in-process
    times (wall clock and the measuring process's CPU time)."""
    base = stats.median(times["bare"])
    base_cpu = stats.median(cpu["bare"])
    base_first = stats.median(firsts["bare"])
    base_first_cpu = stats.median(first_cpu["bare"])
    return {
        name: {
            "ms": stats.summary(times[name]),
            "ratio": stats.ratio(stats.median(times[name]), base),
            "cpu_ms": stats.summary(cpu[name]),
            "cpu_ratio": stats.ratio(stats.median(cpu[name]), base_cpu),
            "first_ms": stats.summary(firsts[name]),
            "first_ratio": stats.ratio(stats.median(firsts[name]), base_first),
            "first_cpu_ms": stats.summary(first_cpu[name]),
            "first_cpu_ratio": stats.ratio(stats.median(first_cpu[name]), base_first_cpu),
        }
        for name in times
    }


def _paired(values: list[float | None], base: list[float | None]) -> dict[str, Any]:
    """Medians of one variant's runs and of its differences to bare's run
    in the same round (rounds where either is missing are left out)."""
    pairs = [(v, b) for v, b in zip(values, base, strict=True) if v is not None and b is not None]
    own = [v for v, _ in pairs]
    diffs = [v - b for v, b in pairs]
    return {
        "ms": stats.summary(own),
        "diff_ms": stats.summary(diffs),
        "ratio": stats.ratio(stats.median(own), stats.median([b for _, b in pairs])),
        "pairs": len(pairs),
    }


def layout_environ(store: dict[str, str], layout: str) -> dict[str, str]:
    """SSL_CERT_FILE/SSL_CERT_DIR for a store layout.

    ``file``: the bundle only (the directory variable names an empty one);
    ``dir``: the hashed directory only (the file variable names a missing
    file); ``file+dir``: both, holding the same certificates, as Debian and
    Ubuntu ship them.
    """
    if layout == "file":
        return {"SSL_CERT_FILE": store["bundle"], "SSL_CERT_DIR": store["empty"]}
    if layout == "dir":
        return {"SSL_CERT_FILE": store["missing"], "SSL_CERT_DIR": store["hashed"]}
    if layout == "file+dir":
        return {"SSL_CERT_FILE": store["bundle"], "SSL_CERT_DIR": store["hashed"]}
    raise ValueError(layout)


def machine_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "orchestrator_python": sys.version.split()[0],
        "loadavg_start": list(os.getloadavg()),
    }


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="truststore-bench-"))
