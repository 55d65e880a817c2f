"""The providers, one module each, behind `InferenceProvider`.

Imports are lazy: naming `MockProvider` does not load the openai SDK that the remote providers
need, and vice versa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hi_moe._lazy import lazy_exports

if TYPE_CHECKING:
    from hi_moe.providers.base import Capabilities, Health, InferenceProvider
    from hi_moe.providers.fallback import Cooldown, FallbackProvider
    from hi_moe.providers.mock import MockProvider, ScriptExhausted
    from hi_moe.providers.modal_vllm import ModalVLLMProvider, VLLMProvider
    from hi_moe.providers.openai_json import OpenAIJSONProvider

__all__ = [
    "Capabilities",
    "Cooldown",
    "FallbackProvider",
    "Health",
    "InferenceProvider",
    "MockProvider",
    "ModalVLLMProvider",
    "OpenAIJSONProvider",
    "ScriptExhausted",
    "VLLMProvider",
]

_WHERE = {
    "Capabilities": "hi_moe.providers.base",
    "Health": "hi_moe.providers.base",
    "Cooldown": "hi_moe.providers.fallback",
    "FallbackProvider": "hi_moe.providers.fallback",
    "InferenceProvider": "hi_moe.providers.base",
    "MockProvider": "hi_moe.providers.mock",
    "ScriptExhausted": "hi_moe.providers.mock",
    "ModalVLLMProvider": "hi_moe.providers.modal_vllm",
    "VLLMProvider": "hi_moe.providers.modal_vllm",
    "OpenAIJSONProvider": "hi_moe.providers.openai_json",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
