"""See auto-injection work, offline, in about a second.

Run inside a venv where truststore-auto, requests and trustme are installed
(the README's first command does that).  It

1. makes a private CA and a certificate for 127.0.0.1 (trustme);
2. puts the CA into a throw-away "OS trust store" — the directory OpenSSL
   reads on Linux, selected here with SSL_CERT_FILE/SSL_CERT_DIR so that the
   real /etc is never touched;
3. serves HTTPS on 127.0.0.1 with that certificate;
4. runs an unmodified ``requests.get()`` program twice: with injection on
   (the default) it succeeds; with TRUSTSTORE_INJECT=0 requests falls back to
   certifi's bundle and fails, as it would for any company CA.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme

CLIENT = """
import requests
try:
    r = requests.get({url!r}, timeout=10)
    print("   requests.get ->", r.status_code, r.text.strip())
except requests.exceptions.SSLError as exc:
    print("   requests.get -> SSLError:", str(exc).split("certificate verify failed: ")[-1][:70])
"""


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello over TLS from 127.0.0.1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    ca = trustme.CA(organization_name="Example Corp internal CA")
    leaf = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp, "store")
        store.mkdir()
        ca.cert_pem.write_to_path(str(store / "corp-ca.pem"))
        server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"https://127.0.0.1:{server.server_address[1]}/"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "TRUSTSTORE_INJECT")
        }
        env["SSL_CERT_FILE"] = str(store / "corp-ca.pem")
        env["SSL_CERT_DIR"] = str(store)
        print(f"A server at {url} presents a certificate from a CA that only the OS store trusts.")
        for label, switch in (("injection on (default)", None), ("TRUSTSTORE_INJECT=0", "0")):
            run_env = dict(env)
            if switch is not None:
                run_env["TRUSTSTORE_INJECT"] = switch
            print(f" - {label}:")
            sys.stdout.flush()
            subprocess.run([sys.executable, "-c", CLIENT.format(url=url)], env=run_env, check=False)
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
