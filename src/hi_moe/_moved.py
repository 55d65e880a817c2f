"""Old module paths from before the layout was regrouped, kept importable.

`import hi_moe.serving` (say) gives the very module `hi_moe.ops.serving`, not a copy: patching
one patches the other, and `isinstance` checks agree. Installed by `hi_moe/__init__.py`; only the
names below are handled, everything else is left to Python's own finders.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

MOVED = {
    "hi_moe.serving": "hi_moe.ops.serving",
    "hi_moe.tiny": "hi_moe.ops.tiny",
    "hi_moe.training": "hi_moe.ops.training",
    "hi_moe.deploy": "hi_moe.ops.deploy",
    "hi_moe.deployment_check": "hi_moe.ops.deployment_check",
    "hi_moe.doctor": "hi_moe.ops.doctor",
    "hi_moe.sandbox": "hi_moe.pipeline.sandbox",
    "hi_moe.specialists": "hi_moe.pipeline.specialists",
    "hi_moe.retry": "hi_moe.providers.retry",
    "hi_moe.sampling": "hi_moe.providers.sampling",
    "hi_moe.json_sampler": "hi_moe.providers.sampling.json_sampler",
    "hi_moe.json_check": "hi_moe.constraints.json_check",
    "hi_moe.schema_formats": "hi_moe.constraints.formats",
    "hi_moe.display": "hi_moe.cli.display",
}


def new_name(old: str) -> str | None:
    """Where module `old` lives now (submodules of a moved package included), or None."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before) :]
    return None


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        target = new_name(spec.name)
        assert target is not None
        module = importlib.import_module(target)
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just pointed `__spec__` at the old name; the module keeps its
        # own (pickling and `importlib.reload` go by it).
        module.__spec__ = self._specs[module.__name__]


def install() -> None:
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
