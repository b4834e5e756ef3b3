"""One context, many users: threads, asyncio and fork().

Handshakes on a shared context must run side by side (OpenSSL releases the
GIL; nothing of ours may serialise them), each connection must get its own
verdict, and a forked child must be able to use a context its parent made.
The time bounds are generous behaviour checks (parallel vs serial), not
speed claims.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import trustme

import truststore
from clientside import REQUEST, fetch
from support import HTTP_BODY, TLSServer, serve_cert

STALL = 0.25


@pytest.fixture
def ctx(os_store: trustme.CA) -> truststore.SSLContext:
    return truststore.SSLContext()


@pytest.fixture
def server(os_store: trustme.CA) -> Iterator[TLSServer]:
    with serve_cert(os_store.issue_cert("localhost")) as srv:
        yield srv


@pytest.fixture
def stalled_server(os_store: trustme.CA) -> Iterator[TLSServer]:
    with serve_cert(os_store.issue_cert("localhost"), handshake_delay=STALL) as srv:
        yield srv


def test_many_threads_share_one_context(ctx: ssl.SSLContext, server: TLSServer) -> None:
    """16 threads x 20 handshakes; every other thread asks for a host the
    certificate does not cover and must be refused, without that verdict
    leaking into the connections around it."""
    threads, rounds = 16, 20

    def worker(index: int) -> list[str]:
        host = "localhost" if index % 2 == 0 else "wrong.test"
        verdicts = []
        for _ in range(rounds):
            try:
                fetch(ctx, server, host)
                verdicts.append("ok")
            except ssl.SSLCertVerificationError as exc:
                verdicts.append(f"rejected {exc.verify_code}")
        return verdicts

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(worker, range(threads)))
    for index, verdicts in enumerate(results):
        expected = "ok" if index % 2 == 0 else "rejected 62"
        assert verdicts == [expected] * rounds, (index, verdicts)
    assert ctx.session_stats()["connect_good"] == threads // 2 * rounds


def test_stalled_handshakes_run_in_parallel(ctx: ssl.SSLContext, stalled_server: TLSServer) -> None:
    count = 8
    barrier = threading.Barrier(count)

    def one() -> float:
        barrier.wait()
        start = time.perf_counter()
        fetch(ctx, stalled_server, "localhost")
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        each = list(pool.map(lambda _: one(), range(count)))
    total = time.perf_counter() - start
    assert min(each) >= STALL * 0.9  # the stall really happened
    assert total < 4 * STALL, (total, each)  # serial would be >= 8 x STALL


def _max_tick_gap(duration: float, during: threading.Thread | None = None) -> tuple[float, int]:
    """Run an asyncio loop ticking every 10 ms; the largest gap between ticks."""

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        worst = 0.0
        ticks = 0
        last = loop.time()
        end = last + duration
        while loop.time() < end:
            await asyncio.sleep(0.01)
            now = loop.time()
            worst = max(worst, now - last)
            last = now
            ticks += 1
        return worst, ticks

    if during is not None:
        during.start()
    return asyncio.run(main())


def test_event_loop_keeps_ticking_while_a_thread_handshakes(
    ctx: ssl.SSLContext, stalled_server: TLSServer
) -> None:
    done: list[float] = []

    def handshakes() -> None:
        for _ in range(3):
            start = time.perf_counter()
            fetch(ctx, stalled_server, "localhost")
            done.append(time.perf_counter() - start)

    worker = threading.Thread(target=handshakes)
    worst, ticks = _max_tick_gap(3 * STALL + 0.1, during=worker)
    worker.join(10)
    assert len(done) == 3 and min(done) >= STALL * 0.9
    assert ticks > 20
    assert worst < STALL * 0.8, worst  # a blocked loop would miss a whole stall


def test_asyncio_handshakes_on_the_shared_context_do_not_block_the_loop(
    ctx: ssl.SSLContext, stalled_server: TLSServer
) -> None:
    async def main() -> tuple[float, list[bytes]]:
        loop = asyncio.get_running_loop()
        worst = 0.0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst
            last = loop.time()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                worst = max(worst, loop.time() - last)
                last = loop.time()

        async def get() -> bytes:
            reader, writer = await asyncio.open_connection(
                stalled_server.host, stalled_server.port, ssl=ctx, server_hostname="localhost"
            )
            writer.write(REQUEST)
            data = await reader.read()
            writer.close()
            return data

        tick = asyncio.create_task(ticker())
        start = loop.time()
        bodies = await asyncio.gather(*(get() for _ in range(4)))
        elapsed = loop.time() - start
        stop.set()
        await tick
        assert elapsed < 3 * STALL, elapsed  # the four ran together
        return worst, list(bodies)

    worst, bodies = asyncio.run(main())
    assert all(body.endswith(HTTP_BODY) for body in bodies)
    assert worst < STALL * 0.8, worst


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_child_uses_parent_context_while_a_thread_is_mid_handshake(
    ctx: ssl.SSLContext, server: TLSServer, os_store: trustme.CA
) -> None:
    with serve_cert(os_store.issue_cert("localhost"), handshake_delay=1.0) as slow:
        mid_handshake = threading.Thread(target=fetch, args=(ctx, slow, "localhost"))
        mid_handshake.start()
        time.sleep(0.2)  # connected, waiting in the handshake for the stalled server
        assert mid_handshake.is_alive()
        pid = os.fork()
        if pid == 0:  # the child: only this thread exists here
            status = 1
            try:
                fetch(ctx, server, "localhost")
                status = 2
                try:
                    fetch(ctx, server, "wrong.test")
                except ssl.SSLCertVerificationError as exc:
                    if exc.verify_code == 62:
                        status = 3
                fresh = truststore.SSLContext()
                fetch(fresh, server, "localhost")
                if status == 3:
                    status = 0
            finally:
                os._exit(status)
        deadline = time.monotonic() + 30
        while True:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.02)
        mid_handshake.join(10)
    assert os.WIFEXITED(wait_status), wait_status
    assert os.WEXITSTATUS(wait_status) == 0
    # The parent's interrupted-by-fork handshake finished normally too.
    assert not mid_handshake.is_alive()


def test_wrap_socket_from_many_threads_before_connect(
    ctx: ssl.SSLContext, server: TLSServer
) -> None:
    """Sockets wrapped up front and connected later, from several threads."""

    def one(_: int) -> bytes:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.connect((server.host, server.port))
            tls.sendall(REQUEST)
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data

    with ThreadPoolExecutor(8) as pool:
        assert all(body.endswith(HTTP_BODY) for body in pool.map(one, range(32)))
