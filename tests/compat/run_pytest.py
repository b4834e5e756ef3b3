"""``python -m run_pytest ARGS``: pytest, then exit without waiting on stray threads.

A test of the suite under comparison can leave a non-daemon thread blocked
(for instance a worker waiting on a lock a refused connection never
released); the interpreter would wait for it at exit and the session would
hang after pytest has reported.  The outcomes are written by then, so this
names the threads on stderr and exits with pytest's status.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest


def main() -> None:
    status = int(pytest.main(sys.argv[1:]))
    left = [
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and thread.is_alive() and not thread.daemon
    ]
    if left:
        print(
            f"run_pytest: not waiting for {len(left)} thread(s) the tests left running: "
            + ", ".join(left),
            file=sys.stderr,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
