"""The specialist domains: which adapter serves each, the system prompt it is trained and asked
with, and the one chat format both training and the harness use.

Training (`deployment/modal/training.py`) and the pipeline's Dispatcher call the same
`system_prompt` and `chat_messages`, so an adapter is asked at inference exactly as it was
taught.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SPECIALISTS",
    "Specialist",
    "chat_messages",
    "default_adapters",
    "system_prompt",
    "training_example",
]


@dataclass(frozen=True)
class Specialist:
    domain: str
    adapter: str
    prompt: str


DEFAULT_SPECIALISTS: tuple[Specialist, ...] = (
    Specialist(
        "python",
        "python-lora",
        "You are a Python specialist. Write correct, idiomatic, self-contained Python 3 code.",
    ),
    Specialist(
        "math",
        "math-lora",
        "You are a mathematics specialist. Reason step by step and state the result exactly.",
    ),
    Specialist(
        "algorithms",
        "algorithms-lora",
        "You are an algorithms specialist. Choose an efficient algorithm and justify its "
        "complexity briefly.",
    ),
    Specialist(
        "data_structures",
        "data-structures-lora",
        "You are a data structures specialist. Pick the structure that fits the access pattern "
        "and explain the trade-off briefly.",
    ),
)
GENERALIST_PROMPT = "You are a careful, concise assistant."


def default_adapters() -> dict[str, str]:
    """Domain → adapter name for the default specialists."""
    return {s.domain: s.adapter for s in DEFAULT_SPECIALISTS}


def system_prompt(domain: str, prompts: Mapping[str, str] | None = None) -> str:
    """The system prompt for a domain: configured, else the default specialist's, else a
    generalist's (an unknown domain still gets a sensible prompt)."""
    if prompts and domain in prompts:
        return prompts[domain]
    for specialist in DEFAULT_SPECIALISTS:
        if specialist.domain == domain:
            return specialist.prompt
    return GENERALIST_PROMPT


def chat_messages(
    domain: str, prompt: str, *, prompts: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """The ChatML-style messages a specialist sees: its system prompt first (so requests to one
    specialist share the longest possible prefix, which vLLM's prefix cache reuses), then the
    prompt."""
    return [
        {"role": "system", "content": system_prompt(domain, prompts)},
        {"role": "user", "content": prompt},
    ]


def training_example(domain: str, prompt: str, answer: str) -> dict[str, list[dict[str, str]]]:
    """One supervised example in the `messages` format trl's SFTTrainer reads."""
    return {"messages": [*chat_messages(domain, prompt), {"role": "assistant", "content": answer}]}
