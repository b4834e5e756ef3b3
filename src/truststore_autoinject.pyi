# Types of the start-up gate (the .py carries none: it is unmarshalled at
# every interpreter start).  Not shipped; for mypy.
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

HERE: str
CONFIG_FILENAME: str
FIX: str
WATCHED: frozenset[str]
_decision: tuple[bool, str] | None
_state: str | None

def startup() -> None: ...
def install() -> None: ...

class PostImportFinder:
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None: ...
    def invalidate_caches(self) -> None: ...

def _is_ours(finder: object) -> bool: ...
def find_package() -> tuple[str, str]: ...
def decision() -> tuple[bool, str] | None: ...
def gate_state() -> str | None: ...
def warn(message: str) -> None: ...
