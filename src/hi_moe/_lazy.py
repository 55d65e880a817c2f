"""Lazy public names for a package's `__init__`: each is imported from its module on first use.

This is how `import hi_moe` stays cheap (pydantic, openai and XGrammar load with the first name
that needs them), and how naming `MockProvider` never loads the openai SDK.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str], *, extra: tuple[str, ...] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module `__getattr__` and `__dir__` for `package`, whose public name N lives in the
    module `where[N]`. A name once loaded is cached in the package, so later lookups are plain
    attribute reads."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted([*where, *extra])

    return __getattr__, __dir__
