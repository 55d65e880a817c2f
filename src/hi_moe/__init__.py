"""hi_moe: one inference interface for LLM orchestration harnesses.

`import hi_moe` is cheap: the public names below are loaded on first use (a module-level
`__getattr__`), and the heavy libraries (openai, xgrammar, torch, modal, vllm) only where a
provider or a constraint needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hi_moe import _moved
from hi_moe._lazy import lazy_exports

_moved.install()

if TYPE_CHECKING:
    from hi_moe.config import Settings
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
    from hi_moe.providers.registry import load_provider
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
    "Settings": "hi_moe.config",
    "load_provider": "hi_moe.providers.registry",
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

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, extra=("__version__",))
