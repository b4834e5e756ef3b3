"""The measuring side: runs *inside* one benchmark venv's interpreter.

Usage: ``<venv>/bin/python probe.py '<json spec>'``; prints one JSON object.

Only the standard library and what the venv holds (requests, urllib3 and
the package under test) are used, so nothing of the orchestrating process
leaks in.  For the public ``truststore`` the spec asks for
``truststore.inject_into_ssl()`` before anything else is imported: that is
how its documentation tells users to switch it on.  ``ours`` and
``pip-system-certs`` inject themselves from their .pth at start-up.

Every loop is bounded twice: by a count and by a time budget.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"  # the servers' certificates carry this IP address
IO_TIMEOUT = 20.0


def _now() -> float:
    return time.perf_counter()


def _cpu() -> float:
    """This process's CPU time: unlike wall time, other load on the machine
    barely moves it, so it cross-checks the wall-clock medians."""
    return time.process_time()


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


def _is_verify_failure(exc: BaseException) -> bool:
    """True when *exc* (or what it wraps) is a certificate verification failure."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if "certificate verify failed" in str(current).lower():
            return True
        for nxt in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nxt, BaseException):
                pending.append(nxt)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False


# -- HTTP clients, a new pool/session per request ----------------------------


def _urllib3_once(url: str, ca_certs: str | None) -> None:
    import urllib3

    kwargs: dict[str, Any] = {"ca_certs": ca_certs} if ca_certs else {}
    with urllib3.PoolManager(**kwargs) as pool:
        response = pool.request("GET", url, retries=False, timeout=IO_TIMEOUT)
    if response.status != 200:
        raise RuntimeError(f"unexpected status {response.status}")


def _requests_once(url: str, ca_certs: str | None) -> None:
    import requests

    # REQUESTS_CA_BUNDLE (set by the orchestrator for bare) is honoured by
    # the Session itself, exactly as in a user's program.
    with requests.Session() as session:
        response = session.get(url, timeout=IO_TIMEOUT)
    response.raise_for_status()


def _httpx_client(ca_certs: str | None) -> Any:
    """A new ``httpx.Client`` as a program makes it.

    ``trust_env=False``: the orchestrator's SSL_CERT_FILE/SSL_CERT_DIR stand
    for the OS store (for OpenSSL and the injected code), and httpx would
    otherwise load that file itself, which it does not do on a machine where
    they are unset (it loads certifi).  With *ca_certs* (bare: certifi plus
    the benchmark CA) the context is made per client from that file, which
    is what httpx does with certifi's file by default; and as httpx does,
    it first asks ``certifi.where()`` for that file (the first call of a
    process imports importlib.resources, ~2 ms, which ours pays too).
    """
    import httpx

    if ca_certs:
        import ssl

        import certifi

        certifi.where()
        return httpx.Client(trust_env=False, verify=ssl.create_default_context(cafile=ca_certs))
    return httpx.Client(trust_env=False)


def _httpx_once(url: str, ca_certs: str | None) -> None:
    with _httpx_client(ca_certs) as client:
        response = client.get(url, timeout=IO_TIMEOUT)
    response.raise_for_status()


def _httpx_unverified_once(url: str, ca_certs: str | None) -> None:
    """httpx with verification off (``verify=False``): no trust work and no
    certifi, the floor that no verifying variant can go under."""
    import httpx

    with httpx.Client(trust_env=False, verify=False) as client:
        response = client.get(url, timeout=IO_TIMEOUT)
    response.raise_for_status()


def _httpx_unverified_with_certifi_once(url: str, ca_certs: str | None) -> None:
    """The same, after what httpx's default ``verify=True`` asks of certifi
    before any trust work: ``import certifi`` (which imports
    ``importlib.resources``) and ``certifi.where()`` (whose first call
    imports ``importlib.readers`` and ``zipfile``).  Bare and ours both pay
    that inside the measured window, so this is the floor for a verifying
    httpx client that uses certifi's file, as httpx does by default."""
    import certifi

    certifi.where()
    _httpx_unverified_once(url, ca_certs)


# The floor variants of httpx's first-request row, by spec["floor"].
HTTPX_FLOORS: dict[str, Callable[[str, str | None], None]] = {
    "verify-off": _httpx_unverified_once,
    "verify-off+certifi": _httpx_unverified_with_certifi_once,
}


CLIENTS: dict[str, Callable[[str, str | None], None]] = {
    "urllib3": _urllib3_once,
    "requests": _requests_once,
    "httpx": _httpx_once,
}


def _versions() -> dict[str, str | None]:
    import importlib.metadata

    found: dict[str, str | None] = {}
    for dist in (
        "requests",
        "urllib3",
        "httpx",
        "certifi",
        "pip",
        "truststore",
        "pip-system-certs",
        "truststore-auto",
    ):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def mode_preflight(spec: dict[str, Any]) -> dict[str, Any]:
    """Prove the environment verifies: the trusted server works, the
    untrusted one is rejected, through both clients."""
    import ssl

    checks: dict[str, str] = {}
    for client, once in CLIENTS.items():
        try:
            once(spec["trusted_url"], spec.get("ca_certs"))
            checks[f"{client} trusted"] = "ok"
        except Exception as exc:
            checks[f"{client} trusted"] = f"FAILED: {exc!r}"
        try:
            once(spec["untrusted_url"], spec.get("ca_certs"))
            checks[f"{client} untrusted"] = "FAILED: an untrusted certificate was accepted"
        except Exception as exc:
            checks[f"{client} untrusted"] = (
                "ok" if _is_verify_failure(exc) else f"FAILED: wrong error {exc!r}"
            )
    cls = ssl.SSLContext
    return {
        "checks": checks,
        "ssl_context_class": f"{cls.__module__}.{cls.__qualname__}",
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "versions": _versions(),
    }


def mode_conn(spec: dict[str, Any]) -> dict[str, Any]:
    """Row 2: one HTTPS request per new PoolManager / Session."""
    # "floor" (httpx only): a floor variant, verification off (HTTPX_FLOORS).
    floor = spec.get("floor")
    once = HTTPX_FLOORS[floor] if floor else CLIENTS[spec["client"]]
    url, ca_certs = spec["url"], spec.get("ca_certs")
    # Import the client first: "first request" is the first connection of a
    # process that has its libraries loaded (the public truststore's
    # inject_into_ssl() has already imported urllib3, the others not).
    __import__(spec["client"])
    start, start_cpu = _now(), _cpu()
    once(url, ca_certs)
    first, first_cpu = _now() - start, _cpu() - start_cpu
    times: list[float] = []
    cpu: list[float] = []
    deadline = _now() + spec["budget_s"]
    while len(times) < spec["n"] and (_now() < deadline or len(times) < spec["min_n"]):
        t0, c0 = _now(), _cpu()
        once(url, ca_certs)
        times.append(_ms(_now() - t0))
        cpu.append(_ms(_cpu() - c0))
    return {
        "first_ms": _ms(first),
        "first_cpu_ms": _ms(first_cpu),
        "times_ms": times,
        "cpu_ms": cpu,
    }


# -- raw handshakes on a chosen context -------------------------------------


def _contexts(spec: dict[str, Any]) -> dict[str, Any]:
    """The contexts a comparison runs on, by kind.

    ``plain`` is the standard library's class with ``set_default_verify_paths()``:
    exactly the roots the OS store holds (the orchestrator points
    SSL_CERT_FILE/SSL_CERT_DIR at it).  ``truststore`` is the installed
    package's ``truststore.SSLContext`` (ours or the public one, whichever
    this venv holds).  Neither is injected in this process.
    """
    import ssl

    made: dict[str, Any] = {}
    for kind in spec["kinds"]:
        if kind == "plain":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.set_default_verify_paths()
        elif kind == "truststore":
            import truststore

            ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        else:
            raise ValueError(kind)
        made[kind] = ctx
    return made


def _handshake(ctx: Any, address: tuple[str, int]) -> None:
    import socket

    with (
        socket.create_connection(address, timeout=IO_TIMEOUT) as sock,
        ctx.wrap_socket(sock, server_hostname=HOST),
    ):
        pass


def _alternating(kinds: list[str], block: int) -> list[str]:
    """A/B then B/A: neither kind always goes first."""
    return kinds if block % 2 == 0 else list(reversed(kinds))


def mode_reused(spec: dict[str, Any]) -> dict[str, Any]:
    """Row 3: sequential handshakes on one long-lived context per kind,
    alternating blocks of ``block_size`` handshakes between the kinds."""
    contexts = _contexts(spec)
    address = (HOST, spec["port"])
    for ctx in contexts.values():
        for _ in range(3):
            _handshake(ctx, address)  # warm-up, not recorded
    times: dict[str, list[float]] = {kind: [] for kind in contexts}
    cpu: dict[str, list[float]] = {kind: [] for kind in contexts}
    deadline = _now() + spec["budget_s"]
    block = 0
    while block < spec["max_blocks"] and (_now() < deadline or block < 2):
        for kind in _alternating(list(contexts), block):
            for _ in range(spec["block_size"]):
                t0, c0 = _now(), _cpu()
                _handshake(contexts[kind], address)
                times[kind].append(_ms(_now() - t0))
                cpu[kind].append(_ms(_cpu() - c0))
        block += 1
    return {"times_ms": times, "cpu_ms": cpu, "blocks": block}


def mode_threads(spec: dict[str, Any]) -> dict[str, Any]:
    """Row 4: N threads, one shared context, one handshake each, against a
    server that stalls every handshake; the wall time of the whole batch."""
    import threading

    contexts = _contexts(spec)
    address = (HOST, spec["port"])
    walls: dict[str, list[float]] = {kind: [] for kind in contexts}
    errors: list[str] = []
    deadline = _now() + spec["budget_s"]
    rnd = 0
    while rnd < spec["rounds"] and (_now() < deadline or rnd < 1):
        for kind in _alternating(list(contexts), rnd):
            ctx = contexts[kind]
            barrier = threading.Barrier(spec["threads"] + 1)

            def worker(ctx: Any = ctx, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    _handshake(ctx, address)
                except Exception as exc:
                    errors.append(repr(exc))

            workers = [threading.Thread(target=worker) for _ in range(spec["threads"])]
            for thread in workers:
                thread.start()
            barrier.wait()
            t0 = _now()
            for thread in workers:
                thread.join(timeout=60)
            walls[kind].append(_ms(_now() - t0))
        rnd += 1
    return {"walls_ms": walls, "errors": errors[:5], "rounds": rnd}


def mode_asyncio(spec: dict[str, Any]) -> dict[str, Any]:
    """Row 5: how long the event loop is stuck while another thread
    handshakes (with a stalling server) on the same context.

    The loop runs a 2 ms ticker and, concurrently, TLS connections of its own
    (asyncio.open_connection with the shared context) to a prompt server.  A
    context that holds a lock through a handshake makes the loop wait for the
    other thread's whole stalled handshake.
    """
    import asyncio
    import threading

    contexts = _contexts(spec)
    stall_address = (HOST, spec["stall_port"])
    results: dict[str, dict[str, Any]] = {}
    tick = 0.002

    for rnd in range(spec["rounds"]):
        for kind in _alternating(list(contexts), rnd):
            ctx = contexts[kind]
            stop = threading.Event()
            thread_count = [0]

            def background(
                ctx: Any = ctx, stop: threading.Event = stop, thread_count: list[int] = thread_count
            ) -> None:
                while not stop.is_set():
                    try:
                        _handshake(ctx, stall_address)
                    except Exception:
                        time.sleep(0.01)
                    thread_count[0] += 1

            async def measure(ctx: Any = ctx) -> tuple[list[float], int, int]:
                lags: list[float] = []
                loop_handshakes = [0, 0]  # done, failed
                end = _now() + spec["seconds"]

                async def ticker() -> None:
                    while _now() < end:
                        t0 = _now()
                        await asyncio.sleep(tick)
                        lags.append(max(0.0, _now() - t0 - tick))

                async def client() -> None:
                    while _now() < end:
                        try:
                            _reader, writer = await asyncio.wait_for(
                                asyncio.open_connection(
                                    HOST, spec["port"], ssl=ctx, server_hostname=HOST
                                ),
                                timeout=IO_TIMEOUT,
                            )
                            writer.close()
                            await asyncio.wait_for(writer.wait_closed(), timeout=IO_TIMEOUT)
                            loop_handshakes[0] += 1
                        except Exception:
                            loop_handshakes[1] += 1
                            await asyncio.sleep(0.01)

                await asyncio.gather(ticker(), client())
                return lags, loop_handshakes[0], loop_handshakes[1]

            worker = threading.Thread(target=background, daemon=True)
            worker.start()
            time.sleep(0.05)  # the worker is inside its first stalled handshake
            lags, done, failed = asyncio.run(measure())
            stop.set()
            worker.join(timeout=5)
            entry = results.setdefault(
                kind, {"lags_ms": [], "loop_handshakes": 0, "loop_failures": 0, "thread": 0}
            )
            entry["lags_ms"].extend(_ms(lag) for lag in lags)
            entry["loop_handshakes"] += done
            entry["loop_failures"] += failed
            entry["thread"] += thread_count[0]
    return {"kinds": results}


def mode_scale(spec: dict[str, Any]) -> dict[str, Any]:
    """Row 6: what a context costs to make, and a connection to run, with
    the store the orchestrator set up.  Contexts come from
    ``ssl.create_default_context()``, i.e. whatever this environment's
    injection (or none) makes of it, as urllib3 and requests get them."""
    return _context_costs(spec, (HOST, spec["port"]))


def _context_costs(spec: dict[str, Any], address: tuple[str, int]) -> dict[str, Any]:
    import ssl

    t0 = _now()
    first = ssl.create_default_context()
    cold_create = _now() - t0
    t0 = _now()
    _handshake(first, address)
    first_conn = _now() - t0
    creates: list[float] = []
    creates_cpu: list[float] = []
    new_conns: list[float] = []
    reused: list[float] = []
    deadline = _now() + spec["budget_s"]
    while len(creates) < spec["max_n"] and (_now() < deadline or len(creates) < spec["min_n"]):
        t0, c0 = _now(), _cpu()
        ctx = ssl.create_default_context()
        t1, c1 = _now(), _cpu()
        _handshake(ctx, address)
        t2 = _now()
        _handshake(first, address)
        t3 = _now()
        creates.append(_ms(t1 - t0))
        creates_cpu.append(_ms(c1 - c0))
        new_conns.append(_ms(t2 - t0))
        reused.append(_ms(t3 - t2))
    return {
        "cold_create_ms": _ms(cold_create),
        "first_conn_ms": _ms(first_conn),
        "create_ms": creates,
        "create_cpu_ms": creates_cpu,
        "new_ctx_conn_ms": new_conns,
        "reused_conn_ms": reused,
        "context_class": type(first).__module__ + "." + type(first).__qualname__,
    }


def mode_client_create(spec: dict[str, Any]) -> dict[str, Any]:
    """``httpx.Client()`` creation alone (and closing it), no request: what
    a program pays that makes a client per task.  The first creation of the
    process is reported apart."""
    import httpx  # noqa: F401  (imports are not what this row measures)

    ca_certs = spec.get("ca_certs")
    t0, c0 = _now(), _cpu()
    _httpx_client(ca_certs).close()
    first, first_cpu = _now() - t0, _cpu() - c0
    times: list[float] = []
    cpu: list[float] = []
    deadline = _now() + spec["budget_s"]
    while len(times) < spec["n"] and (_now() < deadline or len(times) < spec["min_n"]):
        t0, c0 = _now(), _cpu()
        client = _httpx_client(ca_certs)
        times.append(_ms(_now() - t0))
        cpu.append(_ms(_cpu() - c0))
        client.close()
    return {
        "first_ms": _ms(first),
        "first_cpu_ms": _ms(first_cpu),
        "times_ms": times,
        "cpu_ms": cpu,
    }


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def mode_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Resident memory held by ``count`` live client contexts, each made by
    ``ssl.create_default_context()`` and used for one handshake (so that
    whatever is loaded on first use is loaded), all kept referenced."""
    import gc
    import ssl

    address = (HOST, spec["port"])
    warm = ssl.create_default_context()  # first-context costs are not per context
    _handshake(warm, address)
    gc.collect()
    before = _rss_kib()
    contexts = []
    deadline = _now() + spec["budget_s"]
    t0 = _now()
    for _ in range(spec["count"]):
        ctx = ssl.create_default_context()
        _handshake(ctx, address)
        contexts.append(ctx)
        if _now() > deadline:
            break
    elapsed = _now() - t0
    gc.collect()
    after = _rss_kib()
    return {
        "count": len(contexts),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "delta_kib": after - before,
        "per_context_kib": round((after - before) / max(1, len(contexts)), 2),
        "seconds": round(elapsed, 3),
        "context_class": type(warm).__module__ + "." + type(warm).__qualname__,
    }


def _store_summary() -> str | None:
    """How the product (if installed) read this store: diagnostics for the
    layout rows; private API, so any failure just gives None."""
    try:
        from truststore import _openssl  # type: ignore[attr-defined]

        return str(_openssl.describe_store())
    except Exception:
        return None


def mode_layout(spec: dict[str, Any]) -> dict[str, Any]:
    """The distribution-layout rows, inside the layout's mount namespace:
    the first urllib3 request of the process (new PoolManager; ``ca_certs``
    for bare with certifi, none for urllib3's own default, the OS store),
    proof that an untrusted server is refused, then the scale row's
    per-context costs on ``ssl.create_default_context()``."""
    import urllib3  # noqa: F401  (the first request is timed after imports)

    url, ca_certs = spec["url"], spec.get("ca_certs")
    t0, c0 = _now(), _cpu()
    _urllib3_once(url, ca_certs)
    first, first_cpu = _now() - t0, _cpu() - c0
    refused = "FAILED: an untrusted certificate was accepted"
    try:
        _urllib3_once(spec["untrusted_url"], ca_certs)
    except Exception as exc:
        refused = "ok" if _is_verify_failure(exc) else f"FAILED: wrong error {exc!r}"
    result = _context_costs(spec, (HOST, spec["port"]))
    result.update(
        {
            "first_ms": _ms(first),
            "first_cpu_ms": _ms(first_cpu),
            "untrusted": refused,
            "store": _store_summary(),
        }
    )
    return result


def mode_plan(spec: dict[str, Any]) -> dict[str, Any]:
    """Row 12: the store plan of the first context of a process (what the
    OpenSSL backend decides to load for the OS store), timed alone, after
    ``import ssl`` (the product loads then); the process's store-plan cache
    (TRUSTSTORE_CACHE_DIR) is empty or warm, as the harness chose."""
    import ssl  # noqa: F401

    from truststore import _openssl

    t0, c0 = _now(), _cpu()
    plan = _openssl.current_plan()
    elapsed, cpu = _now() - t0, _cpu() - c0
    return {"plan_ms": _ms(elapsed), "plan_cpu_ms": _ms(cpu), "summary": plan.summary}


MODES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "preflight": mode_preflight,
    "conn": mode_conn,
    "reused": mode_reused,
    "threads": mode_threads,
    "asyncio": mode_asyncio,
    "scale": mode_scale,
    "client_create": mode_client_create,
    "memory": mode_memory,
    "layout": mode_layout,
    "plan": mode_plan,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("inject_public"):
        import truststore

        truststore.inject_into_ssl()
    result = MODES[spec["mode"]](spec)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
