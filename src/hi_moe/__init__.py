"""hi_moe: one inference interface for LLM orchestration harnesses.

`import hi_moe` is cheap: the public names below are loaded on first use (a module-level
`__getattr__`), and the heavy libraries (openai, xgrammar, torch, modal, vllm) only where a
provider or a constraint needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hi_moe import _moved

_moved.install()

if TYPE_CHECKING:
    from hi_moe.config import Settings, load_provider
    from hi_moe.errors import (
        ConfigError,
        ConstraintViolation,
        HiMoeError,
        InvalidConstraint,
        ProviderError,
        UnknownAdapter,
        UnsupportedConstraint,
    )
    from hi_moe.providers.base import Capabilities, Health, InferenceProvider
    from hi_moe.types import (
        Choice,
        Completion,
        CompletionRequest,
        Constraint,
        Grammar,
        JsonSchema,
        Message,
        Regex,
        Usage,
    )

__version__ = "0.1.0"

_WHERE = {
    **dict.fromkeys(
        [
            "Choice",
            "Completion",
            "CompletionRequest",
            "Constraint",
            "Grammar",
            "JsonSchema",
            "Message",
            "Regex",
            "Usage",
        ],
        "hi_moe.types",
    ),
    **dict.fromkeys(["Capabilities", "Health", "InferenceProvider"], "hi_moe.providers.base"),
    "FallbackProvider": "hi_moe.providers.fallback",
    **dict.fromkeys(["Settings", "load_provider"], "hi_moe.config"),
    **dict.fromkeys(
        [
            "ConfigError",
            "ConstraintViolation",
            "HiMoeError",
            "InvalidConstraint",
            "ProviderError",
            "UnknownAdapter",
            "UnsupportedConstraint",
        ],
        "hi_moe.errors",
    ),
}

__all__ = [
    "Capabilities",
    "Choice",
    "Completion",
    "CompletionRequest",
    "ConfigError",
    "Constraint",
    "ConstraintViolation",
    "FallbackProvider",
    "Grammar",
    "Health",
    "HiMoeError",
    "InferenceProvider",
    "InvalidConstraint",
    "JsonSchema",
    "Message",
    "ProviderError",
    "Regex",
    "Settings",
    "UnknownAdapter",
    "UnsupportedConstraint",
    "Usage",
    "load_provider",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
