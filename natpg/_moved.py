"""Names that moved to another module and stay importable from their old one."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def moved_names(module: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``module`` that finds each name of ``homes`` (name →
    the module it moved to) in its new home on first use. Lazily, because the new home imports
    the old module: importing it at the top of the old one would be circular."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
