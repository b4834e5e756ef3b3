"""urllib3 tests that are meant to behave differently with injection on.

Keys are test ids as pytest prints them (relative to urllib3's sdist), values
the reason; the README documents each behaviour listed here.  The compat
session (``compare.py``) fails on any other test that passes with injection
off and does not pass with it on.  Only behaviour the product promises
belongs here; a bug being fixed elsewhere does not.
"""

INTENDED: dict[str, str] = {
    "test/test_ssltransport.py::SingleTLSLayerTestCase::test_start_closed_socket": (
        "Fail closed on a missing host name: wrap_bio() on a context with "
        "check_hostname=True and no server_hostname raises ValueError('check_hostname "
        "requires server_hostname') at once, as ssl.SSLSocket does, where the stdlib's "
        "SSLObject would go on to a handshake that checks no name at all (any "
        "certificate from a trusted CA passes).  The test expects the OSError of the "
        "closed socket's first I/O, which never happens."
    ),
}
