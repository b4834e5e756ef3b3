# truststore-auto's start-up gate; the rest is in truststore_autoinject_rules.
#
# The .pth line and, on Python 3.15+, the PEP 829 .start entry call startup()
# in every interpreter, so this module holds only what the common start needs
# and nothing else (issue 13: every name, constant and docstring here is
# unmarshalled at each start; hence comments, not docstrings): the switch
# variable, one open() of the config file (absent: the default; present: one
# short read that recognises the files `enable`/`disable` write), the module
# itself as the meta-path finder (no class to create), and, in a venv, a
# one-shot wrapper that spares site its second pass over our .pth.  Every
# other case (a variable that is not exactly an off word, any other config,
# an install outside sys.prefix, an error) and the first watched import go
# to truststore_autoinject_rules, which applies the full rules and checks
# that the truststore package is ours before anything of it runs; decision()
# and gate_state() are there too.  Only site's modules (os, sys) are used.

import os
import sys

_started = False
_decision = None  # (enabled, rule), once startup() has decided
_state = None  # see truststore_autoinject_rules.gate_state()


def startup():
    # Entry point of the .pth line and the .start file; idempotent, never
    # raises.  Embedders may run site.main() again, and 3.15+ may run both
    # the .start entry and the .pth line.
    global _started, _decision, _state
    if _started:
        return
    _started = True
    try:
        prefix = sys.prefix + os.sep
        # Installed in this environment (not --user, not a system-site
        # venv's base): the config is in sys.prefix.
        here = __file__.startswith(prefix)
        # A venv's site processes its site-packages twice per start
        # (cpython#75723: venv() and then main() each call addsitepackages),
        # reading and compiling every .pth line again on the second pass:
        # about a fifth of this product's start-up cost.  Our line can only
        # repeat an import that is done, so site's addpackage is wrapped
        # until it reaches our .pth again, which it then skips, putting its
        # own function back; every other .pth goes through unchanged.  Only
        # where the second pass comes and site's addpackage takes the three
        # arguments this wrapper passes on (3.15's site runs the .start entry
        # and no longer runs this line; a site.py of another shape is left
        # alone).
        if here and sys.prefix != sys.base_prefix and sys.version_info < (3, 15):
            site = sys.modules.get("site")
            original = getattr(site, "addpackage", None)
            if getattr(getattr(original, "__code__", None), "co_argcount", 0) == 3:

                def addpackage(sitedir, name, known_paths):
                    if name == "truststore_autoinject.pth" and site.addpackage is addpackage:
                        site.addpackage = original
                        return known_paths
                    return original(sitedir, name, known_paths)

                site.addpackage = addpackage
        raw = os.environ.get("TRUSTSTORE_INJECT")
        if raw is None and here:
            path = prefix + "truststore-auto.conf"
            # One open: absent (the common case) means the default.
            # Non-blocking: a FIFO there must not stall a start.  (Not
            # os.access(): it says False for a symlink loop too, which
            # the full rules must see to warn about.)
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            except FileNotFoundError:
                _decision = (True, "default (on)")
                _state = "on"
                install()
                return
            # Decided here only for exactly what `enable`/`disable` write
            # (or the bare line); anything else is read by the full
            # rules.  pread fails on a FIFO or socket (ESPIPE) and a
            # directory (EISDIR), so no fstat is needed to refuse them.
            try:
                data = os.pread(fd, 256, 0)
            finally:
                os.close(fd)
            enabled = data in (
                b"# truststore-auto settings for this Python environment.\n"
                b"# Written by `python -m truststore enable|disable`; the\n"
                b"# TRUSTSTORE_INJECT environment variable overrides it.\n"
                b"inject = on\n",
                b"inject = on\n",
            )
            if enabled or data in (
                b"# truststore-auto settings for this Python environment.\n"
                b"# Written by `python -m truststore enable|disable`; the\n"
                b"# TRUSTSTORE_INJECT environment variable overrides it.\n"
                b"inject = off\n",
                b"inject = off\n",
            ):
                _decision = (enabled, "config file " + path)
                _state = "on" if enabled else "off"
                if enabled:
                    install()
                return
        elif raw in ("0", "false", "no", "off"):
            _decision = (False, "environment variable TRUSTSTORE_INJECT=" + raw)
            _state = "off"
            return
    except Exception:
        pass  # a fault on the fast path: the full rules decide, and warn
    try:
        import truststore_autoinject_rules as rules

        rules.startup()  # never raises, but it may be missing or damaged
    except Exception:
        pass


def install():
    # Put this module, the finder, first on sys.meta_path; inject now if ssl
    # is already loaded (another .pth imported it).
    me = sys.modules[__name__]
    if me not in sys.meta_path:
        sys.meta_path.insert(0, me)
    if "ssl" in sys.modules:
        import truststore_autoinject_rules as rules

        rules.after_import("ssl")


def find_spec(fullname, path=None, target=None):
    # The finder's one method: a watched name goes to the rules (which arm
    # the real spec's loader), every other import costs one set lookup.
    if fullname in {
        "ssl",
        "truststore._api",
        "urllib3.util.ssl_",
        "requests.adapters",
        "pip._vendor.urllib3.util.ssl_",
        "pip._vendor.requests.adapters",
    }:
        try:
            from truststore_autoinject_rules import find_watched
        except Exception:  # a partly uninstalled product: no injection
            return None
        return find_watched(fullname, path, target)
    return None
