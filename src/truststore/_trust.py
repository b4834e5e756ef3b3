"""Trust material: what a context trusts, and where it comes from.

The OS store is loaded (Linux/BSD) or consulted (Windows, macOS) by the
backend; this module turns what a program hands to ``load_verify_locations``
into the DER certificates an intercepting backend anchors on.
"""

from __future__ import annotations

import os
import typing
from typing import Any

from . import _common

if typing.TYPE_CHECKING:
    import ssl


def load_os_trust(context: ssl.SSLContext, backend: Any) -> bool:
    """Load the OS store into the native context where the backend has one
    to load (Linux/BSD); elsewhere the OS API is asked per verification."""
    loader: Any = getattr(backend, "load_os_trust", None)
    return True if loader is None else bool(loader(context))


def _read_anchor_file(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    return _common.pem_to_der_list(data)


def collect_anchor_ders(cafile: Any, capath: Any, cadata: Any) -> list[bytes]:
    """DER of the certificates the native context just accepted.

    Only called after OpenSSL loaded the same inputs without error, so the
    inputs exist and parse.
    """
    ders: list[bytes] = []
    if cafile is not None:
        ders.extend(_read_anchor_file(os.fsdecode(cafile)))
    if capath is not None:
        directory = os.fsdecode(capath)
        for entry in sorted(os.listdir(directory)):
            full = os.path.join(directory, entry)
            if os.path.isfile(full):
                try:
                    ders.extend(_read_anchor_file(full))
                except OSError:
                    continue
    if cadata is not None:
        if isinstance(cadata, str):
            ders.extend(_common.pem_to_der_list(cadata))
        else:
            ders.extend(_common.split_der_sequence(bytes(cadata)))
    return ders
