"""``python -m truststore`` / ``truststore``: status, enable, disable, check.

Every failure is one line on stderr and a non-zero exit status, never a
traceback: people run this while something is already going wrong.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import sys
import tempfile
import urllib.parse
import urllib.request
from typing import Any, NoReturn

import truststore_autoinject_rules as _rules

from . import _hook


def _distribution_version() -> str:
    # From our dist-info, not from the package: when the public truststore
    # has replaced our __init__.py, the package's __version__ is its own.
    try:
        import importlib.metadata

        return importlib.metadata.version("truststore-auto")
    except Exception:
        return "unknown"


__version__ = _distribution_version()
EXIT_INACTIVE = 1

EXIT_TRUSTED = 0
EXIT_UNTRUSTED = 1
EXIT_ERROR = 2

_BACKEND_NAMES = {
    "truststore._openssl": "OpenSSL with the system CA locations",
    "truststore._windows": "Windows CryptoAPI",
    "truststore._macos": "macOS Security framework",
}


class CommandError(Exception):
    """A failure worth one line to the user."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (usage stays in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _injection_active() -> bool:
    api = sys.modules.get("truststore._api")
    return api is not None and ssl.SSLContext is getattr(api, "InjectedSSLContext", None)


def _uv_cache_dirs() -> list[str]:
    """Where uv keeps its cache (``uv run --with`` and ``uvx`` environments
    live there): ``UV_CACHE_DIR``, else the XDG cache directory."""
    found = []
    if os.environ.get("UV_CACHE_DIR"):
        found.append(os.environ["UV_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    found.append(os.path.join(xdg, "uv"))
    return [os.path.realpath(d) for d in found]


def ephemeral_reason(*paths: str) -> str | None:
    """Why *paths* (sys.prefix, our site directory) are a temporary
    environment whose files do not outlive the run, or None.

    ``uv run --with`` / ``uvx --with`` make a throw-away venv under
    ``<uv cache>/builds-v0/`` and add the requested packages from
    ``<uv cache>/archive-v0/`` (what uv 0.13 creates; checked by
    tests/test_autoinject_environments.py).
    """
    caches = _uv_cache_dirs()
    for path in paths:
        real = os.path.realpath(path)
        parts = real.split(os.sep)
        in_cache = any(real.startswith(os.path.join(c, "")) for c in caches)
        if in_cache or "builds-v0" in parts or "archive-v0" in parts:
            return f"{path} is in uv's cache (uv run --with / uvx): it is rebuilt for each run"
    return None


def install_kind() -> tuple[str, str]:
    """(kind, directory) of this installation: "site" (an environment's
    site-packages), "user" (pip install --user), "ephemeral" (uv's cache),
    "path" (importable, but from a directory site does not process: --target,
    --prefix, PYTHONPATH)."""
    import site

    here = _rules.HERE
    if ephemeral_reason(sys.prefix, here):
        return "ephemeral", here
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None

    def same(a: str, b: str) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:
            return False

    if user_site and same(user_site, here):
        return "user", here
    if any(same(d, here) for d in site.getsitepackages()):
        return "site", here
    return "path", here


def _start_up_explanation(kind: str) -> tuple[str, list[str]]:
    """(why the .pth did or did not run, what to do)."""
    ran = _rules.decision() is not None
    pth = os.path.join(_rules.HERE, "truststore_autoinject.pth")
    if ran:
        return "the .pth ran in this interpreter", []
    if sys.flags.no_site:
        return "python -S: site (and so every .pth) was skipped", [
            "run without -S, or call truststore.inject_into_ssl() in the program"
        ]
    if kind == "user":
        if sys.flags.no_user_site or sys.flags.isolated:
            return (
                "the user site directory is off (-s, -I or PYTHONNOUSERSITE): its .pth files "
                "are not processed",
                ["run without -s/-I, or install into the environment: pip install truststore-auto"],
            )
        return (
            "the user site directory is not processed by this interpreter (a venv without "
            "--system-site-packages ignores it)",
            ["install into this environment: python -m pip install truststore-auto"],
        )
    if kind == "path":
        return (
            f"{_rules.HERE} is on sys.path but is not a site directory (pip install --target, "
            "--prefix, PYTHONPATH): Python runs .pth files only in site directories",
            [
                f"add to a sitecustomize.py: import site; site.addsitedir({_rules.HERE!r})",
                "or call truststore.inject_into_ssl() in the program",
            ],
        )
    if not os.path.exists(pth):
        return f"{pth} is missing", [f"run: {_rules.FIX}"]
    return "the .pth did not run in this interpreter", []


def _read_record(dist_info: str) -> dict[str, str]:
    """path -> hash entry (``sha256=...`` or "") of a dist-info's RECORD."""
    import csv

    entries: dict[str, str] = {}
    try:
        with open(os.path.join(dist_info, "RECORD"), newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if row:
                    entries[row[0]] = row[1] if len(row) > 1 else ""
    except OSError:
        pass
    return entries


def _file_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).digest()
    except OSError:
        return None
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def package_owners(directory: str | None = None) -> dict[str, Any]:
    """Which installed distributions list the ``truststore`` package's files
    (from their dist-info RECORDs) and whose content each file has now."""
    directory = _rules.HERE if directory is None else directory
    dists: dict[str, dict[str, str]] = {}
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(directory)):
            if name.endswith(".dist-info"):
                record = _read_record(os.path.join(directory, name))
                if any(path.startswith("truststore/") for path in record):
                    dists[name] = record
    files: dict[str, dict[str, Any]] = {}
    for dist, record in dists.items():
        for path in record:
            if path.startswith("truststore/") and "__pycache__" not in path:
                entry = files.setdefault(path, {"listed_by": [], "content_of": None})
                entry["listed_by"].append(dist)
    for path, entry in files.items():
        current = _file_hash(os.path.join(directory, path))
        if current is None:
            entry["content_of"] = "missing"
            continue
        owners = [d for d in entry["listed_by"] if dists[d].get(path) == current]
        if len(owners) > 1:
            entry["content_of"] = "identical in " + ", ".join(owners)
        else:
            entry["content_of"] = owners[0] if owners else "unknown"
    return {"distributions": list(dists), "files": files}


def _package_state() -> tuple[str, str, list[str]]:
    """(state, detail, advice) for the truststore package, as the gate sees it."""
    state, detail = _rules.find_package()
    if state == "ours":
        return state, detail, []
    if state == "foreign":
        return (
            state,
            f"truststore-auto's files in {_rules.HERE}/truststore were replaced by {detail}",
            [
                f"run: {_rules.FIX}  (truststore-auto provides the public truststore's API, "
                "so tools that depend on truststore keep working)"
            ],
        )
    if state == "damaged":
        return state, detail, [f"run: {_rules.FIX}"]
    return (
        state,
        f"another truststore comes first on sys.path: {detail}",
        ["remove it from sys.path (PYTHONPATH, the current directory) to use truststore-auto"],
    )


def gather_status() -> dict[str, Any]:
    """Everything ``status`` reports; the JSON form is this dict."""
    enabled, rule, warnings = _hook.decide()
    config = _hook.config_path()
    setting, problem = _hook.read_config(config)
    if setting is None and problem is None:
        config_text = "absent" if not os.path.lexists(config) else "present, no inject setting"
    elif problem:
        config_text = problem
    else:
        config_text = f"inject = {'on' if setting else 'off'}"
    kind, location = install_kind()
    start_up, advice = _start_up_explanation(kind)
    state, detail, package_advice = _package_state()
    advice += package_advice
    ephemeral = ephemeral_reason(sys.prefix, _rules.HERE)
    if ephemeral:
        advice.append(
            f"{ephemeral}; enable/disable cannot last there: set {_hook.SWITCH_VARIABLE}=0 or 1"
        )
    backend = store = None
    if state == "ours":
        from . import _api

        backend = _BACKEND_NAMES.get(_api.backend_name(), _api.backend_name())
        store = _api.store_description()
    active = _injection_active()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "backend": backend,
        "os_store": store,
        "active": active,
        "decision": {"enabled": enabled, "rule": rule},
        "precedence": [
            f"environment variable {_hook.SWITCH_VARIABLE}",
            f"config file {config}",
            "default (on)",
        ],
        "config": {"path": config, "state": config_text},
        "install": {"kind": kind, "location": location},
        "start_up": {"ran": _rules.decision() is not None, "explanation": start_up},
        "flags": {
            "no_site": bool(sys.flags.no_site),
            "no_user_site": bool(sys.flags.no_user_site),
            "isolated": bool(sys.flags.isolated),
        },
        "package": {"state": state, "detail": detail, **package_owners()},
        "advice": advice,
        "warnings": warnings,
    }


_KIND_TEXT = {
    "site": "site-packages of this environment",
    "user": "user site-packages (pip install --user)",
    "ephemeral": "a temporary environment in uv's cache",
    "path": "a directory on sys.path that is not a site directory",
}


def cmd_status(args: argparse.Namespace) -> int:
    info = gather_status()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        decision = info["decision"]
        lines = [
            f"truststore-auto {info['version']} (Python {info['python']}, {info['prefix']})",
        ]
        if info["backend"] is not None:
            lines.append(f"backend:    {info['backend']}")
            lines.append(f"OS store:   {info['os_store']}")
        lines += [
            f"injection:  {'active' if info['active'] else 'inactive'} in this interpreter",
            f"decided by: {decision['rule']} -> {'on' if decision['enabled'] else 'off'}",
            f"precedence: {' > '.join(info['precedence'])}",
            f"config:     {info['config']['path']} ({info['config']['state']})",
            f"installed:  {info['install']['location']} ({_KIND_TEXT[info['install']['kind']]})",
        ]
        if not info["start_up"]["ran"]:
            lines.append(f"start-up:   {info['start_up']['explanation']}")
        package = info["package"]
        lines.append(f"package:    {package['state']}: {package['detail']}")
        shared = {p: e for p, e in package["files"].items() if len(e["listed_by"]) > 1}
        if len(package["distributions"]) > 1:
            lines.append(f"owners:     {', '.join(package['distributions'])} both ship truststore/")
            for path, entry in sorted(shared.items()):
                lines.append(f"  {path}: content of {entry['content_of']}")
        for line in info["advice"]:
            lines.append(f"to do:      {line}")
        for warning in info["warnings"]:
            lines.append(f"warning:    {warning}")
        print("\n".join(lines))
    if args.require_active and not info["active"]:
        print("truststore: injection is not active in this interpreter", file=sys.stderr)
        return EXIT_INACTIVE
    return 0


def write_config_atomically(path: str, text: str) -> None:
    """Write *text* to *path* so that a reader sees the old or the new file.

    A temporary file in the same directory is renamed over the target;
    ``os.replace`` is atomic on POSIX and Windows.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".truststore-auto-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _set_injection(enabled: bool) -> int:
    path = _hook.config_path()
    ephemeral = ephemeral_reason(os.path.dirname(path), _rules.HERE)
    if ephemeral:
        raise CommandError(
            f"not written: {ephemeral}, so the setting would not last; "
            f"set {_hook.SWITCH_VARIABLE}={'1' if enabled else '0'} instead"
        )
    before, _problem = _hook.read_config(path)
    try:
        # A --user install's config sits in site.USER_BASE (~/.local), which
        # may not exist yet.
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_config_atomically(path, _hook.format_config(enabled))
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    word = "on" if enabled else "off"
    if before is enabled:
        print(f"injection already {word} in {path} (unchanged)")
    else:
        previous = "default" if before is None else ("on" if before else "off")
        print(f"injection {word} for this environment: wrote {path} (was: {previous})")
    raw = os.environ.get(_hook.SWITCH_VARIABLE)
    if raw is not None and _hook.parse_switch(raw) is not None:
        print(
            f"note: {_hook.SWITCH_VARIABLE}={raw.strip()} is set in this shell "
            "and takes precedence over the config file"
        )
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_injection(True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_injection(False)


def parse_target(target: str) -> tuple[str, int]:
    """``https://host[:port]/...``, ``host``, ``host:port``, ``[v6]:port``."""
    text = target.strip()
    if "://" in text:
        url = urllib.parse.urlsplit(text)
        if url.scheme.lower() != "https":
            raise CommandError(f"only https:// URLs can be checked, not {url.scheme}://")
        try:
            port = url.port or 443
        except ValueError:
            raise CommandError(f"bad port in {target!r}") from None
        if not url.hostname:
            raise CommandError(f"no host in {target!r}")
        return url.hostname, port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise CommandError(f"no host in {target!r}")
    if not port_text:
        return host, 443
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CommandError(f"bad port in {target!r}")
    return host, int(port_text)


def _chain_info(chain: list[Any]) -> list[dict[str, str]]:
    """subject, issuer, expiry of each certificate (depth order)."""
    found = []
    for cert in chain:
        info = cert.get_info()

        def name(field: str, info: dict[str, Any] = info) -> str:
            parts = [f"{k}={v}" for rdn in info.get(field, ()) for (k, v) in rdn]
            return ", ".join(parts) or "(empty)"

        found.append(
            {
                "subject": name("subject"),
                "issuer": name("issuer"),
                "not_after": str(info.get("notAfter", "?")),
            }
        )
    return found


def _describe_chain(chain: list[dict[str, str]]) -> list[str]:
    lines = []
    for depth, cert in enumerate(chain):
        lines.append(f"  {depth}: subject: {cert['subject']}")
        lines.append(f"     issuer:  {cert['issuer']}")
        lines.append(f"     expires: {cert['not_after']}")
    return lines


def https_proxy_for(host: str) -> str | None:
    """The proxy URL that requests and curl would use for https://*host*:
    ``HTTPS_PROXY``/``https_proxy`` (or ``ALL_PROXY``), unless ``NO_PROXY``
    matches the host."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get("https") or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def _open_tunnel(proxy: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to *host*:*port* through an HTTP proxy's CONNECT
    method (RFC 9110 section 9.3.6), as requests and curl make for https."""
    url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if url.scheme.lower() != "http" or not url.hostname:
        raise CommandError(f"unsupported proxy {proxy!r} (only http:// proxies tunnel)")
    try:
        proxy_port = url.port or 80
    except ValueError:
        raise CommandError(f"bad port in proxy {proxy!r}") from None
    sock = socket.create_connection((url.hostname, proxy_port), timeout=timeout)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if url.username is not None:
            credentials = (
                f"{urllib.parse.unquote(url.username)}:{urllib.parse.unquote(url.password or '')}"
            )
            token = base64.b64encode(credentials.encode()).decode()
            request += f"Proxy-Authorization: Basic {token}\r\n"
        sock.sendall((request + "\r\n").encode("latin-1"))
        # Read the proxy's answer byte by byte up to the blank line, so that
        # nothing of the TLS stream that follows is consumed here.
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = sock.recv(1)
            if not byte or len(head) > 65536:
                raise CommandError(f"proxy {url.hostname}:{proxy_port} closed the tunnel")
            head += byte
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            raise CommandError(
                f"proxy {url.hostname}:{proxy_port} refused CONNECT {authority}: {status_line}"
            )
        return sock
    except BaseException:
        sock.close()
        raise


def _handshake(
    context: ssl.SSLContext, host: str, port: int, timeout: float, proxy: str | None
) -> ssl.SSLSocket:
    if proxy is None:
        sock = socket.create_connection((host, port), timeout=timeout)
    else:
        sock = _open_tunnel(proxy, host, port, timeout)
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _peer_chain(tls: ssl.SSLSocket, verified: bool = False) -> list[Any]:
    """The chain the server sent or, with *verified*, the one OpenSSL built
    up to the trusted root (only meaningful where OpenSSL did the verifying)."""
    sslobj: Any = tls._sslobj  # type: ignore[attr-defined]
    if verified:
        with contextlib.suppress(AttributeError, ssl.SSLError):
            built = list(sslobj.get_verified_chain() or [])
            if built:
                return built
    return list(sslobj.get_unverified_chain() or [])


def check_target(target: str, timeout: float, ca_files: list[str] | None = None) -> dict[str, Any]:
    """Connect, verify through the OS store; the verdict as ``check --json``
    prints it.  Raises CommandError when the check could not be made."""
    from . import _api

    host, port = parse_target(target)
    proxy = https_proxy_for(host)
    backend = _api.backend_name()
    result: dict[str, Any] = {
        "target": target,
        "host": host,
        "port": port,
        "proxy": proxy,
        "backend": _BACKEND_NAMES.get(backend, backend),
        "trusted": False,
        "verdict": "untrusted",
        "reason": None,
        "verify_code": None,
        "tls_version": None,
        "chain_kind": "offered",
        "chain": [],
    }
    context = _api.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ca_file in ca_files or ():
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"cannot load {ca_file}: {exc}") from None
    try:
        with _handshake(context, host, port, timeout, proxy) as tls:
            # On Linux OpenSSL verified against the OS store and can show the
            # chain up to the root it trusted; elsewhere show what was sent.
            openssl_verified = backend == "truststore._openssl"
            result["chain"] = _chain_info(_peer_chain(tls, verified=openssl_verified))
            result["tls_version"] = tls.version()
            result["chain_kind"] = "verified" if openssl_verified else "offered"
    except ssl.SSLCertVerificationError as exc:
        result["reason"] = exc.verify_message or str(exc)
        result["verify_code"] = exc.verify_code
        # Fetch the chain without verifying, only to show what was offered.
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE
        try:
            with _handshake(probe, host, port, timeout, proxy) as tls:
                result["chain"] = _chain_info(_peer_chain(tls))
        except (OSError, ssl.SSLError, CommandError):
            pass
        return result
    except (OSError, ssl.SSLError, ValueError) as exc:
        via = f" through proxy {proxy}" if proxy else ""
        raise CommandError(f"cannot connect to {host}:{port}{via}: {exc}") from None
    result["trusted"] = True
    result["verdict"] = "trusted"
    return result


def cmd_check(args: argparse.Namespace) -> int:
    try:
        result = check_target(args.target, args.timeout, args.ca_file)
    except CommandError as exc:
        if not args.json:
            raise
        print(json.dumps({"target": args.target, "verdict": "error", "reason": str(exc)}))
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return EXIT_TRUSTED if result["trusted"] else EXIT_UNTRUSTED
    where = f"{result['host']}:{result['port']}"
    if not result["trusted"]:
        print(f"{where}: NOT TRUSTED: {result['reason']} (verify code {result['verify_code']})")
        if result["chain"]:
            print("chain offered by the server:")
            print("\n".join(_describe_chain(result["chain"])))
        return EXIT_UNTRUSTED
    label = "chain, up to the trusted root" if result["chain_kind"] == "verified" else "chain"
    via = f" (through proxy {result['proxy']})" if result["proxy"] else ""
    print(f"{where}: {result['tls_version']}, {label}{via}:")
    print("\n".join(_describe_chain(result["chain"])))
    print(f"{where}: TRUSTED (verified by {result['backend']})")
    return EXIT_TRUSTED


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="truststore",
        description=(
            "Python verifies TLS with the operating system's trust store. "
            "Inspect and switch auto-injection for this environment, or check a server."
        ),
    )
    parser.add_argument("--version", action="version", version=f"truststore-auto {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    status = sub.add_parser(
        "status",
        help="version, backend, OS store location, whether injection is active and why",
        description="Show the version, the verification backend, where the OS trust store "
        "was found, and whether injection is active in this interpreter and which rule "
        "(TRUSTSTORE_INJECT, the environment's config file, or the default) decided it.",
    )
    status.add_argument(
        "--json", action="store_true", help="print a JSON object (keys: see README)"
    )
    status.add_argument(
        "--require-active",
        action="store_true",
        help=f"exit {EXIT_INACTIVE} unless injection is active in this interpreter "
        "(for a Dockerfile RUN step or a CI check)",
    )
    status.set_defaults(func=cmd_status)
    enable = sub.add_parser(
        "enable",
        help="turn auto-injection on for this environment (writes its config file)",
        description=f"Write 'inject = on' to {_hook.CONFIG_FILENAME} in sys.prefix "
        "(site.USER_BASE for a pip install --user). "
        f"{_hook.SWITCH_VARIABLE} still overrides it.",
    )
    enable.set_defaults(func=cmd_enable)
    disable = sub.add_parser(
        "disable",
        help="turn auto-injection off for this environment (writes its config file)",
        description=f"Write 'inject = off' to {_hook.CONFIG_FILENAME} in sys.prefix "
        "(site.USER_BASE for a pip install --user). "
        f"{_hook.SWITCH_VARIABLE} still overrides it.",
    )
    disable.set_defaults(func=cmd_disable)
    check = sub.add_parser(
        "check",
        help="connect to a server, verify it through the OS store, print the chain",
        description="Connect to URL or HOST[:PORT] (default port 443), verify the server "
        "through the OS trust store (through HTTPS_PROXY with CONNECT unless NO_PROXY "
        "matches, as requests and curl do), print the chain (subject, issuer, expiry) and the "
        f"verdict. Exit status {EXIT_TRUSTED}: trusted; {EXIT_UNTRUSTED}: not trusted; "
        f"{EXIT_ERROR}: could not check.",
    )
    check.add_argument("target", metavar="URL|HOST[:PORT]")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    check.add_argument(
        "--ca-file",
        action="append",
        metavar="PEM",
        help="also trust the certificates in this file (repeatable)",
    )
    check.add_argument("--json", action="store_true", help="print a JSON object (keys: see README)")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except CommandError as exc:
        print(f"truststore: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("truststore: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # the promise: one line, never a traceback
        print(f"truststore: error: {exc!r}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
