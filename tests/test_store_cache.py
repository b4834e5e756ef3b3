"""The store plan remembered across processes (truststore/_store_cache.py).

Each test runs fresh interpreters against an "OS store" in tmp_path (bundle
plus hashed directory, through SSL_CERT_FILE/SSL_CERT_DIR) and a real TLS
server on 127.0.0.1.  What is checked is what a process trusts and which
store files it opened (Python's "open" audit events), never the cache's
internals: a cache may only ever save reading, never change a verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from support import TLSServer, make_store, scrubbed_environ, serve_cert

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Part of both children: one new library context per port, one handshake
# each (truststore is imported at the first call, after the child's setup).
HANDSHAKE_VERDICTS = r"""
def handshake_verdicts(ports):
    import socket, ssl, truststore
    verdicts = []
    for port in ports:
        ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                verdicts.append("trusted")
        except ssl.SSLCertVerificationError:
            verdicts.append("refused")
    return verdicts
"""

# The child: one library context, one handshake per port given; prints
# {"verdicts": [...], "store_opens": n, "cache_opens": m}: files this process
# opened under the store directory (the bundle, hashed entries) and under
# the cache directory.
CHILD = (
    HANDSHAKE_VERDICTS
    + r"""
import json, os, sys
sys.path.insert(0, SRC)
store = os.path.dirname(os.environ["SSL_CERT_FILE"])
cache = os.environ.get("TRUSTSTORE_CACHE_DIR") or "/nonexistent/"
opened, cache_opened = [], []
def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        path = os.fsdecode(args[0])
        if path.startswith(store):
            opened.append(path)
        elif path.startswith(cache):
            cache_opened.append(path)
sys.addaudithook(audit)
verdicts = handshake_verdicts(sys.argv[1:])
print(json.dumps({"verdicts": verdicts, "store_opens": len(opened), "cache_opens": len(cache_opened)}))
""".replace("SRC", repr(SRC))
)


def run_child(env: dict[str, str], *servers: TLSServer) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *(str(s.port) for s in servers)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


@pytest.fixture
def store(tmp_path: Path) -> tuple[dict[str, str], list[trustme.CA], Path]:
    """Ten CAs in bundle and hashed directory (a small Debian-style store),
    the environment that points a child at it and a cache of its own."""
    cas = [trustme.CA() for _ in range(10)]
    locations = make_store(tmp_path / "store", *cas, hashed=True)
    cache = tmp_path / "cache"
    env = scrubbed_environ(**locations, TRUSTSTORE_CACHE_DIR=str(cache))
    return env, cas, cache


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("store-plan-*.txt")) if cache.is_dir() else []


def test_an_unchanged_store_is_not_read_again_by_the_next_process(
    store: tuple[dict[str, str], list[trustme.CA], Path],
) -> None:
    env, cas, cache = store
    with serve_cert(cas[3].issue_cert("localhost")) as server:
        first = run_child(env, server)
        second = run_child(env, server)
    assert first["verdicts"] == second["verdicts"] == ["trusted"]
    # The first process read the bundle and the hashed entries to plan;
    # the second opened only the one entry OpenSSL looked up lazily.
    assert isinstance(first["store_opens"], int) and first["store_opens"] >= 10
    assert second["store_opens"] == 0
    assert len(cache_files(cache)) == 1
    assert (cache.stat().st_mode & 0o077) == 0  # private to this user


def test_every_store_change_is_seen_by_the_next_process(
    store: tuple[dict[str, str], list[trustme.CA], Path], tmp_path: Path
) -> None:
    env, cas, _cache = store
    bundle = Path(env["SSL_CERT_FILE"])
    hashed = Path(env["SSL_CERT_DIR"])
    newcomer = trustme.CA()
    with (
        serve_cert(cas[0].issue_cert("localhost")) as old,
        serve_cert(newcomer.issue_cert("localhost")) as new,
    ):
        assert run_child(env, old, new)["verdicts"] == ["trusted", "refused"]
        # update-ca-certificates adding a CA: a new bundle and a new entry.
        make_store(bundle.parent, newcomer, *cas[1:], hashed=True)
        assert run_child(env, old, new)["verdicts"] == ["refused", "trusted"]
        # The newcomer withdrawn again, and no hashed entries left: every CA
        # is only in the bundle now, so the plan must load them eagerly.
        for entry in hashed.iterdir():
            entry.unlink()
        bundle.write_bytes(b"".join(ca.cert_pem.bytes() for ca in cas))
        assert run_child(env, old, new)["verdicts"] == ["trusted", "refused"]
        # The same plan again, from the cache: the bundle is read for the
        # certificates the plan loads, the verdicts do not change.
        assert run_child(env, old, new)["verdicts"] == ["trusted", "refused"]


def _forge(entry: Path, **fields: str) -> None:
    lines = entry.read_text().split("\n")
    for index, line in enumerate(lines):
        key = line.partition("=")[0]
        if key in fields:
            lines[index] = f"{key}={fields[key]}"
    entry.write_text("\n".join(lines))


@pytest.mark.parametrize(
    "forgery",
    ["directory-not-ours", "index-out-of-range", "cafile-not-ours", "garbage"],
)
def test_a_forged_cache_entry_never_adds_trust(
    store: tuple[dict[str, str], list[trustme.CA], Path], tmp_path: Path, forgery: str
) -> None:
    """The entry keeps the real key and state (so it would be used), but
    names a directory or bundle the store does not have: it is ignored and
    the process plans from the store itself."""
    env, cas, cache = store
    attacker = trustme.CA()
    evil = make_store(tmp_path / "evil", attacker, hashed=True)
    with (
        serve_cert(cas[5].issue_cert("localhost")) as good,
        serve_cert(attacker.issue_cert("localhost")) as bad,
    ):
        assert run_child(env, good, bad)["verdicts"] == ["trusted", "refused"]
        (entry,) = cache_files(cache)
        if forgery == "directory-not-ours":
            _forge(entry, capath=evil["SSL_CERT_DIR"])
        elif forgery == "index-out-of-range":
            _forge(entry, eager="0,99999", source=env["SSL_CERT_FILE"])
        elif forgery == "cafile-not-ours":
            _forge(entry, cafile=evil["SSL_CERT_FILE"], capath="")
        else:
            entry.write_bytes(os.urandom(300))
        entry.chmod(0o600)
        result = run_child(env, good, bad)
    assert result["verdicts"] == ["trusted", "refused"]
    assert isinstance(result["store_opens"], int) and result["store_opens"] >= 10


@pytest.mark.parametrize("flaw", ["group-writable", "other-writable", "symlink", "foreign-owner"])
def test_a_cache_file_others_could_write_is_not_read(
    store: tuple[dict[str, str], list[trustme.CA], Path], tmp_path: Path, flaw: str
) -> None:
    env, cas, cache = store
    if flaw == "foreign-owner" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    with serve_cert(cas[1].issue_cert("localhost")) as server:
        run_child(env, server)
        (entry,) = cache_files(cache)
        if flaw == "group-writable":
            entry.chmod(0o620)
        elif flaw == "other-writable":
            entry.chmod(0o602)
        elif flaw == "symlink":
            moved = tmp_path / "elsewhere.txt"
            entry.rename(moved)
            entry.symlink_to(moved)
        else:
            os.chown(entry, 65534, 65534)
        result = run_child(env, server)
    assert result["verdicts"] == ["trusted"]
    # Not trusted, so planned from the store again.
    assert isinstance(result["store_opens"], int) and result["store_opens"] >= 10


def test_a_cache_directory_others_can_write_is_not_used(
    store: tuple[dict[str, str], list[trustme.CA], Path],
) -> None:
    env, cas, cache = store
    with serve_cert(cas[2].issue_cert("localhost")) as server:
        run_child(env, server)
        cache.chmod(0o777)
        result = run_child(env, server)
    assert result["verdicts"] == ["trusted"]
    assert isinstance(result["store_opens"], int) and result["store_opens"] >= 10


def test_empty_cache_variable_disables_it_and_a_bad_location_is_silent(
    store: tuple[dict[str, str], list[trustme.CA], Path], tmp_path: Path
) -> None:
    env, cas, cache = store
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with serve_cert(cas[4].issue_cert("localhost")) as server:
        for location in ("", str(blocker / "cache"), str(blocker)):
            env["TRUSTSTORE_CACHE_DIR"] = location
            for _ in range(2):
                result = run_child(env, server)  # asserts: exit 0, nothing on stderr
                assert result["verdicts"] == ["trusted"]
                assert isinstance(result["store_opens"], int) and result["store_opens"] >= 10
    assert not cache.exists()
    assert blocker.read_text() == "not a directory\n"


def test_set_user_id_process_does_not_use_the_cache(
    store: tuple[dict[str, str], list[trustme.CA], Path],
) -> None:
    """A process whose real user is not its effective one (set-user-ID)
    runs with an environment, and so a cache location, someone else chose:
    it neither reads nor writes a cache (and, as OpenSSL does, ignores
    SSL_CERT_FILE/SSL_CERT_DIR, so the test CA is not trusted there).
    setpriv changes the real uid only."""
    env, cas, _cache = store
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root and setpriv to start a process with ruid != euid")
    with serve_cert(cas[6].issue_cert("localhost")) as server:
        assert run_child(env, server)["cache_opens"] == 1  # written
        assert run_child(env, server)["cache_opens"] == 1  # read
        result = subprocess.run(
            ["setpriv", "--ruid", "65534", sys.executable, "-c", CHILD, str(server.port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["verdicts"] == ["refused"]
    assert found["cache_opens"] == 0


# As user 65534 (FILE_CAPABILITY_SCRIPT without the capability): the
# substitute list names the attacker's hashed directory (the list is data;
# a real one is a distribution's, e.g. Fedora's directory-hash), one library
# context per port.
UNPRIVILEGED_CHILD = (
    HANDSHAKE_VERDICTS
    + r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from truststore import _openssl
_openssl.SUBSTITUTE_DIRS = ((sys.argv[2], "test"),)
print(json.dumps(handshake_verdicts(sys.argv[3:])))
"""
)


def test_a_users_cache_cannot_name_a_distribution_directory() -> None:
    """Only root's cache may name a location beyond OpenSSL's own (a
    distribution's hashed copy, the fallback list): such a directory could
    hold more than the bundle, and a user's cache is writable by anything
    that runs as that user."""
    import shutil
    import tempfile

    from support import FILE_CAPABILITY_SCRIPT, privilege_tools

    why = privilege_tools()
    if why:
        pytest.skip(why)
    good, attacker = trustme.CA(), trustme.CA()
    shared = Path(tempfile.mkdtemp(prefix="truststore-cache-"))  # readable by user 65534
    try:
        shared.chmod(0o755)
        store = make_store(shared / "store", good)
        evil = make_store(shared / "evil", attacker, hashed=True)["SSL_CERT_DIR"]
        for path in shared.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        empty = shared / "empty"
        empty.mkdir(mode=0o755)
        (shared / "cache").mkdir(mode=0o700)
        os.chown(shared / "cache", 65534, 65534)  # the user's own cache directory
        env = scrubbed_environ(
            SSL_CERT_FILE=store["SSL_CERT_FILE"],
            SSL_CERT_DIR=str(empty),
            TRUSTSTORE_CACHE_DIR=str(shared / "cache"),
        )
        python = os.path.realpath(sys.executable)
        with (
            serve_cert(good.issue_cert("localhost")) as trusted,
            serve_cert(attacker.issue_cert("localhost")) as untrusted,
        ):
            argv = ["unshare", "-m", "--propagation", "private", "bash", "-c",
                    FILE_CAPABILITY_SCRIPT, "fcap", "none", python, "-c", UNPRIVILEGED_CHILD,
                    SRC, evil, str(trusted.port), str(untrusted.port)]  # fmt: skip

            def run() -> list[str]:
                result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
                assert result.returncode == 0, result.stderr
                verdicts: list[str] = json.loads(result.stdout)
                return verdicts

            assert run() == ["trusted", "refused"]
            (entry,) = cache_files(shared / "cache")
            assert entry.stat().st_uid == 65534
            _forge(entry, capath=evil)  # the state still matches: it would be used
            assert run() == ["trusted", "refused"]
    finally:
        shutil.rmtree(shared, ignore_errors=True)
