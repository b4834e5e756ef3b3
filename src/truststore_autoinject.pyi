# Types of the start-up gate (the .py carries none: it is unmarshalled at
# every interpreter start).  Not shipped; for mypy.
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

_started: bool
_decision: tuple[bool, str] | None
_state: str | None

def startup() -> None: ...
def install() -> None: ...
def find_spec(
    fullname: str,
    path: Sequence[str] | None = None,
    target: ModuleType | None = None,
) -> ModuleSpec | None: ...
