"""Requests, completions and output constraints: the values that cross the provider seam.

Everything here validates itself on construction, so a malformed request fails with a pydantic
`ValidationError` naming the field before any provider sees it.

Constraint kinds dispatch in one place, `ConstraintVisitor`: every piece of per-kind work (the
key that names a constraint here, vLLM's `structured_outputs` key, the XGrammar compile, the
local validation and output check, the mock's sampler) is one engine class with one method per
kind, and `visit` is the only switch on the kind. Why engines rather than methods on the
constraint types: these types are the seam every layer imports and stay plain data, while the
engines live with their backends (XGrammar and the JSON check in `constraints`, the wire format
in `providers.modal_vllm`, the sampler in `providers.sampling`) and import what those need
(lazily, where it is heavy); the arrows point one way. And a new kind cannot be half-handled:
it adds an abstract method, and mypy names every engine that cannot be instantiated until it
says what to do with it.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import Annotated, Any, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator
from pydantic.dataclasses import dataclass

__all__ = [
    "Choice",
    "Completion",
    "CompletionRequest",
    "Constraint",
    "ConstraintKind",
    "ConstraintVisitor",
    "FinishReason",
    "Grammar",
    "Hop",
    "JsonSchema",
    "Message",
    "Regex",
    "Role",
    "Usage",
    "constraint_key",
    "exact_key",
]

Role: TypeAlias = Literal["system", "user", "assistant"]
ConstraintKind: TypeAlias = Literal["json_schema", "grammar", "regex", "choice"]
FinishReason: TypeAlias = Literal["stop", "length", "content_filter", "tool_calls", "abort"]

# OpenAI's rule for response_format names; vLLM accepts anything, so the stricter rule wins.
_SCHEMA_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_FROZEN = ConfigDict(frozen=True, extra="forbid")
_CONSTRAINT = ConfigDict(extra="forbid")


class Message(BaseModel):
    """One chat message."""

    model_config = _FROZEN

    role: Role
    content: str

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str) -> Message:
        return cls(role="assistant", content=content)


@dataclass(frozen=True, config=_CONSTRAINT)
class JsonSchema:
    """The output must be JSON valid under `schema` (JSON Schema). `Completion.parsed` holds it."""

    schema: dict[str, Any]
    name: Annotated[str, Field(pattern=_SCHEMA_NAME)] = "output"
    strict: bool = True
    kind: Literal["json_schema"] = dataclasses.field(default="json_schema", repr=False)

    def __eq__(self, other: object) -> bool:
        # As JSON Schema compares values: key order aside and 1 == 1.0, but true is not 1 (a
        # Python dict says it is, and a cache would then hand `const: 1` the check of
        # `const: true`).
        if not isinstance(other, JsonSchema):
            return NotImplemented
        return (self.name, self.strict) == (other.name, other.strict) and _json_equal(
            self.schema, other.schema
        )

    def __hash__(self) -> int:
        return _content_hash(self)

    @classmethod
    def from_model(cls, model: type[BaseModel], *, name: str | None = None) -> JsonSchema:
        """The schema of a pydantic model, named after it."""
        return cls(model.model_json_schema(), name=name or model.__name__)


@dataclass(frozen=True, config=_CONSTRAINT)
class Grammar:
    """The output must match an XGrammar EBNF grammar (start rule `root`)."""

    ebnf: Annotated[str, Field(min_length=1)]
    kind: Literal["grammar"] = dataclasses.field(default="grammar", repr=False)

    def __hash__(self) -> int:
        return _content_hash(self)


@dataclass(frozen=True, config=_CONSTRAINT)
class Regex:
    """The whole output must match `pattern`."""

    pattern: Annotated[str, Field(min_length=1)]
    kind: Literal["regex"] = dataclasses.field(default="regex", repr=False)

    def __hash__(self) -> int:
        return _content_hash(self)


@dataclass(frozen=True, config=_CONSTRAINT)
class Choice:
    """The output must be exactly one of `options`."""

    options: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    kind: Literal["choice"] = dataclasses.field(default="choice", repr=False)

    def __hash__(self) -> int:
        return _content_hash(self)

    @field_validator("options")
    @classmethod
    def _distinct(cls, options: list[str]) -> list[str]:
        if len(set(options)) != len(options):
            raise ValueError("choice options must be distinct")
        return options


Constraint: TypeAlias = Annotated[
    JsonSchema | Grammar | Regex | Choice, Field(discriminator="kind")
]
T = TypeVar("T")


class ConstraintVisitor(ABC, Generic[T]):
    """Per-kind work for one engine: a method per constraint kind, chosen by `visit` (the one
    place the kinds are told apart; see the module docstring)."""

    def visit(self, constraint: Constraint) -> T:
        match constraint:
            case JsonSchema():
                return self.json_schema(constraint)
            case Grammar():
                return self.grammar(constraint)
            case Regex():
                return self.regex(constraint)
            case Choice():
                return self.choice(constraint)
        raise TypeError(f"not a constraint: {constraint!r}")

    @abstractmethod
    def json_schema(self, constraint: JsonSchema) -> T: ...

    @abstractmethod
    def grammar(self, constraint: Grammar) -> T: ...

    @abstractmethod
    def regex(self, constraint: Regex) -> T: ...

    @abstractmethod
    def choice(self, constraint: Choice) -> T: ...


def constraint_key(constraint: Constraint) -> str:
    """A stable string naming a constraint's content; the cache key for compiled grammars.

    JSON keys keep their order: property order shapes the grammar a schema compiles to.
    Computed once per instance: a real-world schema serializes in milliseconds, and every
    cache lookup of every request would pay it again on the event loop.
    """
    cached: str | None = constraint.__dict__.get("_key")
    if cached is None:
        cached = _key(constraint)
        object.__setattr__(constraint, "_key", cached)  # frozen: its content cannot change
    return cached


def exact_key(constraint: Constraint) -> tuple[Constraint, str]:
    """A cache key for what depends on how a constraint is written, not only on what it means:
    the grammar XGrammar compiles and the body sent (property order shapes what a server
    generates). Equal constraints with keys in another order get entries of their own."""
    return (constraint, constraint_key(constraint))


def _content_hash(constraint: Constraint) -> int:
    """A hash that agrees with `==`: equal constraints (dicts compare without regard to key
    order, 1 == 1.0) hash alike, so they can key dicts and `lru_cache`s. Computed once per
    instance, for the reason `constraint_key` is."""
    cached: int | None = constraint.__dict__.get("_hash")
    if cached is None:
        fields = (_frozen(getattr(constraint, f.name)) for f in dataclasses.fields(constraint))
        cached = hash((type(constraint).__name__, *fields))
        object.__setattr__(constraint, "_hash", cached)
    return cached


def _json_equal(first: Any, second: Any) -> bool:
    """JSON equality: objects without regard to key order, numbers by value, booleans apart
    from numbers."""
    if first is second:
        return True
    if isinstance(first, bool) or isinstance(second, bool):
        return type(first) is type(second) and first == second
    if isinstance(first, dict):
        return (
            isinstance(second, dict)
            and first.keys() == second.keys()
            and all(_json_equal(item, second[key]) for key, item in first.items())
        )
    if isinstance(first, list | tuple):
        return (
            isinstance(second, list | tuple)
            and len(first) == len(second)
            and all(_json_equal(a, b) for a, b in zip(first, second, strict=True))
        )
    return bool(first == second)


def _frozen(value: Any) -> Hashable:
    """`value` as a hashable that is equal to another's whenever `_json_equal` says the values
    are: a dict as its items' frozenset, a list as a tuple, a boolean tagged (Python hashes
    True as 1). Numbers hash by value, as they compare (1 and 1.0 alike)."""
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, dict):
        return frozenset((key, _frozen(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    try:
        hash(value)
    except TypeError:  # something no JSON schema holds; a constant never contradicts ==
        return "<unhashable>"
    return value  # type: ignore[no-any-return]


class _Content(ConstraintVisitor[str]):
    def json_schema(self, constraint: JsonSchema) -> str:
        return json.dumps(constraint.schema, separators=(",", ":"))

    def grammar(self, constraint: Grammar) -> str:
        return constraint.ebnf

    def regex(self, constraint: Regex) -> str:
        return constraint.pattern

    def choice(self, constraint: Choice) -> str:
        return json.dumps(constraint.options)


def _key(constraint: Constraint) -> str:
    content = _Content().visit(constraint)
    return f"{constraint.kind}:{content}"


class CompletionRequest(BaseModel):
    """What the harness asks of a provider. `adapter=None` means the base model."""

    model_config = _FROZEN

    messages: Annotated[list[Message], Field(min_length=1)]
    adapter: Annotated[str | None, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")] = None
    constraint: Constraint | None = None
    max_tokens: Annotated[int, Field(gt=0, le=1_000_000)] = 512
    temperature: Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 1.0
    stop: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=16)] = Field(
        default_factory=list
    )
    seed: Annotated[int | None, Field(ge=-(2**63), lt=2**63)] = None
    timeout_s: Annotated[float | None, Field(gt=0.0, allow_inf_nan=False)] = None
    """Bound on one HTTP attempt (the provider's `request_timeout_s` when unset)."""
    deadline_s: Annotated[float | None, Field(gt=0.0, allow_inf_nan=False)] = None
    """Bound on the whole call: readiness wait, model lookup, every attempt and backoff. When
    unset, the provider's own worst case, or what an enclosing `hi_moe.deadline.scope` (a
    Fleet step) leaves, whichever is sooner."""

    @classmethod
    def from_prompt(
        cls, prompt: str, *, system: str | None = None, **fields: Any
    ) -> CompletionRequest:
        """A one-turn request: an optional system message, then `prompt` as the user."""
        messages = [Message.system(system)] if system is not None else []
        messages.append(Message.user(prompt))
        return cls(messages=messages, **fields)


class Usage(BaseModel):
    """Token counts as the backend reported them."""

    # `total_tokens` is derived; ignoring it on input lets a dumped Usage validate again.
    model_config = ConfigDict(frozen=True, extra="ignore")

    prompt_tokens: Annotated[int, Field(ge=0)] = 0
    completion_tokens: Annotated[int, Field(ge=0)] = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Hop(BaseModel):
    """One provider a `FallbackProvider` call passed over before the answer (or the error)."""

    model_config = _FROZEN

    provider: str
    error: str
    """The error's type (`ProviderUnavailable`, `ConstraintViolation`, ...), or `skipped`."""
    message: str
    usage: Usage = Field(default_factory=lambda: Usage())
    """Tokens spent there (a rejected output's), counted although nothing was returned."""
    latency_s: Annotated[float, Field(ge=0.0)] = 0.0
    model: str | None = None
    """The model that gave a rejected output, where known."""
    busy_share_s: Annotated[float, Field(ge=0.0)] = 0.0
    cold_share_s: Annotated[float, Field(ge=0.0)] = 0.0
    cold_wait_s: Annotated[float, Field(ge=0.0)] = 0.0
    """What the failed call occupied of its provider (see `Completion.busy_share_s`)."""


class Completion(BaseModel):
    """A checked answer: `text` satisfies the request's constraint, or it was never returned."""

    model_config = _FROZEN

    text: str
    parsed: Any = None
    finish_reason: FinishReason = "stop"
    usage: Usage = Field(default_factory=Usage)
    provider: str
    model: str
    adapter: str | None = None
    latency_s: Annotated[float, Field(ge=0.0)] = 0.0
    request_id: str | None = None
    hops: tuple[Hop, ...] = ()
    """Under a `FallbackProvider`: the providers tried before `provider` answered."""
    busy_share_s: Annotated[float, Field(ge=0.0)] = 0.0
    """Its share of the provider's busy time: seconds in flight, each split evenly among the
    requests in flight then (`hi_moe.cost.meter`). What GPU time is apportioned by."""
    cold_share_s: Annotated[float, Field(ge=0.0)] = 0.0
    """The part of `busy_share_s` spent waiting for a cold server to start."""
    cold_wait_s: Annotated[float, Field(ge=0.0)] = 0.0
    """Wall-clock seconds this call waited for a cold server to start."""
