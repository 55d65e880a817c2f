"""The Dispatcher: which provider, adapter, system prompt and output constraint serve a step.

Routing is data, not code: `Route` rules pick a provider by domain and output kind (grammar
steps to vLLM, JSON steps to OpenAI, say), the rest go to the primary, and `fallbacks` follow:
`candidates` gives that order, and a `FallbackProvider` walks it (the Dispatcher itself never
retries). Before a run the Dispatcher asks each provider what it has (adapters, constraint
kinds); `assign` fits a step to one provider: a missing adapter falls back to the base model,
an unsupported constraint to JSON, and the assignment records why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from hi_moe import deadline
from hi_moe.errors import ConfigError, HiMoeError
from hi_moe.pipeline.plan import OutputKind, Step
from hi_moe.pipeline.settings import Route
from hi_moe.pipeline.specialists import system_prompt
from hi_moe.providers.base import InferenceProvider
from hi_moe.types import Constraint, Grammar, JsonSchema

__all__ = ["Assignment", "Dispatcher", "Route", "code_constraints", "extract_output"]

log = logging.getLogger(__name__)

FENCE = "```"


class Assignment(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    step_id: str
    provider: str
    adapter: str | None
    system_prompt: str
    constraint: Constraint | None
    max_tokens: int
    notes: tuple[str, ...] = ()


def code_constraints(*, max_lines: int, line_chars: int) -> tuple[Grammar, JsonSchema]:
    """A code step's output: a fenced Python block where grammars are enforced (bounded, so a
    weak model's output still ends), a {"code": ...} object where only JSON is."""
    grammar = Grammar(
        f'root ::= "{FENCE}python\\n" line{{1,{max_lines}}} "{FENCE}"\n'
        f'line ::= [^`\\n]{{0,{line_chars}}} "\\n"\n'
    )
    schema = JsonSchema(
        {
            "type": "object",
            "properties": {
                "code": {"type": "string", "maxLength": max_lines * (line_chars + 1)},
            },
            "required": ["code"],
            "additionalProperties": False,
        },
        name="code",
    )
    return grammar, schema


def json_constraint(max_chars: int) -> JsonSchema:
    return JsonSchema(
        {
            "type": "object",
            "properties": {"answer": {"type": "string", "maxLength": max_chars}},
            "required": ["answer"],
            "additionalProperties": False,
        },
        name="answer",
    )


def extract_output(output: OutputKind, text: str, parsed: object) -> str:
    """The step's answer from a completion: code without its fence, JSON as text."""
    if output == "code":
        if isinstance(parsed, dict) and isinstance(parsed.get("code"), str):
            return str(parsed["code"])
        body = text.strip()
        if body.startswith(FENCE):
            body = body.split("\n", 1)[1] if "\n" in body else ""
            body = body.removesuffix(FENCE).rstrip("\n")
        return body
    return text


class Dispatcher:
    def __init__(
        self,
        providers: Mapping[str, InferenceProvider],
        *,
        primary: str,
        routes: Sequence[Route] = (),
        fallbacks: Sequence[str] = (),
        adapters: Mapping[str, str] | None = None,
        prompts: Mapping[str, str] | None = None,
        max_tokens: Mapping[OutputKind, int] | None = None,
        code_max_lines: int = 200,
        code_line_chars: int = 160,
        json_max_chars: int = 2000,
    ) -> None:
        names = {primary, *fallbacks, *(route.provider for route in routes)}
        missing = sorted(names - providers.keys())
        if missing:
            raise ConfigError(
                f"routing names providers that are not loaded: {', '.join(missing)}",
                setting="HI_MOE_PIPELINE__ROUTES",
            )
        self.providers = dict(providers)
        self.primary = primary
        self.routes = tuple(routes)
        self.fallbacks = tuple(fallbacks)
        self.adapters = dict(adapters or {})
        self.prompts = dict(prompts or {})
        self.max_tokens: dict[OutputKind, int] = {"code": 1024, "text": 512, "json": 512}
        self.max_tokens.update(max_tokens or {})
        self.code_grammar, self.code_schema = code_constraints(
            max_lines=code_max_lines, line_chars=code_line_chars
        )
        self.json_schema = json_constraint(json_max_chars)
        self._served: dict[str, set[str] | None] = {}

    async def survey(self, timeout_s: float = 10.0) -> dict[str, HiMoeError]:
        """Ask every provider, all at once, which adapters it serves. A provider that cannot
        say within `timeout_s` (it is down or cold, say) is asked again at its next
        `UnknownAdapter`, not waited for now; meanwhile its adapters are assumed served.
        Returns the errors of the providers that failed to answer, by name."""
        failures: dict[str, HiMoeError] = {}

        async def ask(name: str, provider: InferenceProvider) -> set[str] | None:
            try:
                with deadline.scope(timeout_s):
                    async with asyncio.timeout(timeout_s):
                        return set(await provider.adapters())
            except HiMoeError as error:
                failures[name] = error
                log.warning("cannot list %s's adapters: %s", name, error)
            except TimeoutError:
                log.warning("cannot list %s's adapters: no answer in %.0f s", name, timeout_s)
            return None

        names = list(self.providers)
        answers = await asyncio.gather(*(ask(n, self.providers[n]) for n in names))
        self._served.update(zip(names, answers, strict=True))
        return failures

    def candidates(self, step: Step) -> list[str]:
        """Providers for a step, first choice first: the matching route's, the primary, then
        the fallbacks."""
        chosen = next((r.provider for r in self.routes if r.matches(step)), self.primary)
        order = [chosen, self.primary, *self.fallbacks]
        return list(dict.fromkeys(order))

    def assign(self, step: Step, provider: str | None = None) -> Assignment:
        """The assignment for `step` on `provider` (by default its first candidate)."""
        name = provider or self.candidates(step)[0]
        if name not in self.providers:
            raise ConfigError(f"no provider {name!r} is loaded", setting="HI_MOE_PIPELINE__ROUTES")
        chosen = self.providers[name]
        notes: list[str] = []

        adapter = self.adapters.get(step.domain)
        served = self._served.get(name)
        if adapter is not None and not chosen.capabilities.adapters:
            notes.append(f"{name} serves no adapters: base model instead of {adapter}")
            adapter = None
        elif adapter is not None and served is not None and adapter not in served:
            notes.append(f"{name} lacks adapter {adapter}: base model instead")
            adapter = None

        constraint: Constraint | None = None
        kinds = chosen.capabilities.constraint_kinds
        if step.output == "code":
            if "grammar" in kinds:
                constraint = self.code_grammar
            elif "json_schema" in kinds:
                constraint = self.code_schema
                notes.append(f"{name} cannot enforce grammars: code asked for as JSON")
            else:
                notes.append(f"{name} enforces no constraints: code unconstrained")
        elif step.output == "json":
            if "json_schema" in kinds:
                constraint = self.json_schema
            else:
                notes.append(f"{name} cannot enforce JSON schemas: JSON unconstrained")
        return Assignment(
            step_id=step.id,
            provider=name,
            adapter=adapter,
            system_prompt=system_prompt(step.domain, self.prompts),
            constraint=constraint,
            max_tokens=self.max_tokens[step.output],
            notes=tuple(notes),
        )

    def forget_adapters(self, provider: str) -> None:
        """Ask `provider` for its adapters again before trusting the list."""
        self._served.pop(provider, None)
