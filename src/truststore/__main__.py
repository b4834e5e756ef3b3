"""``python -m truststore`` / ``truststore``: status, enable, disable, check.

Every failure is one line on stderr and a non-zero exit status, never a
traceback: people run this while something is already going wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import ssl
import sys
import tempfile
import urllib.parse
from typing import Any, NoReturn

from . import __version__, _hook

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
    from . import _api

    return ssl.SSLContext is _api.InjectedSSLContext


def cmd_status(args: argparse.Namespace) -> int:
    from . import _api

    enabled, rule, warnings = _hook.decide()
    started = _hook.decision()
    config = _hook.config_path()
    setting, problem = _hook.read_config()
    if setting is None and problem is None:
        config_text = "absent" if not os.path.lexists(config) else "present, no inject setting"
    elif problem:
        config_text = problem
    else:
        config_text = f"inject = {'on' if setting else 'off'}"
    lines = [
        f"truststore-auto {__version__} (Python {sys.version.split()[0]}, {sys.prefix})",
        f"backend:    {_BACKEND_NAMES.get(_api.backend_name(), _api.backend_name())}",
        f"OS store:   {_api.store_description()}",
        f"injection:  {'active' if _injection_active() else 'inactive'} in this interpreter",
        f"decided by: {rule} -> {'on' if enabled else 'off'}",
        f"config:     {config} ({config_text})",
    ]
    if started is None:
        lines.append(
            "start-up:   the .pth hook did not run in this interpreter "
            "(python -S, or the package is not installed in this environment)"
        )
    for warning in warnings:
        lines.append(f"warning:    {warning}")
    print("\n".join(lines))
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
    before, _problem = _hook.read_config()
    try:
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


def _describe_chain(chain: list[Any]) -> list[str]:
    lines = []
    for depth, cert in enumerate(chain):
        info = cert.get_info()

        def name(field: str, info: dict[str, Any] = info) -> str:
            parts = [f"{k}={v}" for rdn in info.get(field, ()) for (k, v) in rdn]
            return ", ".join(parts) or "(empty)"

        lines.append(f"  {depth}: subject: {name('subject')}")
        lines.append(f"     issuer:  {name('issuer')}")
        lines.append(f"     expires: {info.get('notAfter', '?')}")
    return lines


def _handshake(context: ssl.SSLContext, host: str, port: int, timeout: float) -> ssl.SSLSocket:
    sock = socket.create_connection((host, port), timeout=timeout)
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


def cmd_check(args: argparse.Namespace) -> int:
    from . import _api

    host, port = parse_target(args.target)
    context = _api.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ca_file in args.ca_file or ():
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"cannot load {ca_file}: {exc}") from None
    try:
        with _handshake(context, host, port, args.timeout) as tls:
            # On Linux OpenSSL verified against the OS store and can show the
            # chain up to the root it trusted; elsewhere show what was sent.
            openssl_verified = _api.backend_name() == "truststore._openssl"
            chain = _peer_chain(tls, verified=openssl_verified)
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        print(f"{host}:{port}: NOT TRUSTED: {reason} (verify code {exc.verify_code})")
        # Fetch the chain without verifying, only to show what was offered.
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE
        try:
            with _handshake(probe, host, port, args.timeout) as tls:
                print("chain offered by the server:")
                print("\n".join(_describe_chain(_peer_chain(tls))))
        except (OSError, ssl.SSLError):
            pass
        return EXIT_UNTRUSTED
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CommandError(f"cannot connect to {host}:{port}: {exc}") from None
    label = "chain, up to the trusted root" if openssl_verified else "chain"
    print(f"{host}:{port}: {version}, {label}:")
    print("\n".join(_describe_chain(chain)))
    print(f"{host}:{port}: TRUSTED (verified by {_BACKEND_NAMES.get(_api.backend_name())})")
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
    status.set_defaults(func=cmd_status)
    enable = sub.add_parser(
        "enable",
        help="turn auto-injection on for this environment (writes its config file)",
        description=f"Write 'inject = on' to {_hook.CONFIG_FILENAME} in sys.prefix. "
        f"{_hook.SWITCH_VARIABLE} still overrides it.",
    )
    enable.set_defaults(func=cmd_enable)
    disable = sub.add_parser(
        "disable",
        help="turn auto-injection off for this environment (writes its config file)",
        description=f"Write 'inject = off' to {_hook.CONFIG_FILENAME} in sys.prefix. "
        f"{_hook.SWITCH_VARIABLE} still overrides it.",
    )
    disable.set_defaults(func=cmd_disable)
    check = sub.add_parser(
        "check",
        help="connect to a server, verify it through the OS store, print the chain",
        description="Connect to URL or HOST[:PORT] (default port 443), verify the server "
        "through the OS trust store, print the chain (subject, issuer, expiry) and the "
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
