"""Verify TLS certificates with the operating system's trust store.

``truststore.SSLContext`` is a drop-in ``ssl.SSLContext``;
``inject_into_ssl()`` makes it the one every library gets, and
``extract_from_ssl()`` undoes that.

With auto-injection on, this package is imported with ``ssl`` (the start-up
gate's rules import ``truststore._api`` then), so it imports nothing itself:
the public names resolve on first use (PEP 562).
"""

# The start-up gate's rules (truststore_autoinject_rules.py) read this file,
# without executing it, for this exact line: it is how they tell
# truststore-auto's package from the public ``truststore`` distribution's,
# which installs the same top-level name.  Keep it within the first 4 KiB.
__distribution__ = "truststore-auto"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._api import SSLContext, extract_from_ssl, inject_into_ssl

__version__ = "0.1.0"
__all__ = ["SSLContext", "extract_from_ssl", "inject_into_ssl"]


def __getattr__(name: str) -> "object":
    if name in __all__:
        from . import _api

        value = getattr(_api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(__all__))
