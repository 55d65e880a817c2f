"""Fuzzing the provider seam: requests, grammars, JSON schemas, regexes and choices.

For every generated input, through `MockProvider`, `ModalVLLMProvider` and
`OpenAIJSONProvider`: either a typed error (pydantic's `ValidationError` when a value is built,
a `HiMoeError` from a provider) or a result that really satisfies its constraint; never another
exception, never a hang. Input that a provider can refuse on its own (a malformed or
unsupported constraint) is refused before anything is sent. The remote providers talk to an
in-process transport that answers with fuzzed text, and a socket guard fails any real
connection attempt.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hi_moe import constraints
from hi_moe.errors import HiMoeError, InvalidConstraint, UnsupportedConstraint
from hi_moe.providers import MockProvider, ModalVLLMProvider, OpenAIJSONProvider
from hi_moe.providers.retry import RetryPolicy
from hi_moe.types import Choice, Completion, CompletionRequest, JsonSchema
from tests.support import refuse_connections

pytestmark = pytest.mark.integration

BASE, ADAPTER = "fuzz-base", "python-lora"
DEADLINE_S = 20.0  # per provider call: far above any honest call here, so a hang shows
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=True,  # the same cases on every run: CI failures reproduce
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# -- the guard and the transport ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Fail, and record, any attempt to open a real connection."""
    attempts = refuse_connections(monkeypatch, OSError)
    yield attempts
    assert attempts == [], "a real connection was attempted"


@dataclass
class FakeServer:
    """An in-process OpenAI-compatible endpoint: answers every completion with `reply`."""

    reply: str
    sent: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        path = request.url.path
        if path.endswith("/health"):
            return httpx.Response(200, json={})
        if path.endswith("/models"):
            models = [{"id": BASE, "parent": None}, {"id": ADAPTER, "parent": BASE}]
            return httpx.Response(200, json={"object": "list", "data": models})
        body = json.loads(request.content)
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-fuzz",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", BASE),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def chat_requests(self) -> list[httpx.Request]:
        return [r for r in self.sent if r.url.path.endswith("/chat/completions")]


@dataclass
class Outcome:
    provider: str
    completion: Completion | None = None
    error: BaseException | None = None
    sent: int = 0
    """Chat completion requests that reached the transport."""


async def send_everywhere(request: CompletionRequest, reply: str) -> list[Outcome]:
    """The request through each provider; each call bounded by DEADLINE_S."""
    outcomes: list[Outcome] = []
    no_retry = RetryPolicy(max_attempts=1)
    for name in ("mock", "modal", "openai"):
        server = FakeServer(reply)
        async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as client:
            provider: Any
            if name == "mock":
                provider = MockProvider(adapters=[ADAPTER], seed=7)
            elif name == "modal":
                provider = ModalVLLMProvider(
                    "http://127.0.0.1:9", http_client=client, retry=no_retry
                )
            else:
                provider = OpenAIJSONProvider(
                    "gpt-fuzz",
                    "sk-fuzz",
                    base_url="http://127.0.0.1:9/v1",
                    adapters={ADAPTER: "ft:gpt-fuzz"},
                    http_client=client,
                    retry=no_retry,
                )
            outcome = Outcome(name)
            try:
                outcome.completion = await asyncio.wait_for(provider.complete(request), DEADLINE_S)
            except HiMoeError as error:
                outcome.error = error
            finally:
                await provider.aclose()
            outcome.sent = len(server.chat_requests())
            outcomes.append(outcome)
    return outcomes


def check_outcomes(request: CompletionRequest, outcomes: list[Outcome]) -> None:
    """The properties every outcome keeps, whatever the input was."""
    for outcome in outcomes:
        where = f"{outcome.provider}: {request!r}"
        if isinstance(outcome.error, InvalidConstraint | UnsupportedConstraint):
            assert outcome.sent == 0, f"{where}: sent although refused"
        if outcome.completion is not None and request.constraint is not None:
            # Fail closed: nothing comes back that breaks its constraint.
            parsed = constraints.check(request.constraint, outcome.completion.text)
            if isinstance(request.constraint, JsonSchema):
                assert outcome.completion.parsed == parsed, where
        if outcome.provider == "mock" and outcome.error is None:
            assert outcome.completion is not None
        assert outcome.sent <= 1, f"{where}: retried although retries are off"


def build_and_send(build: Any, reply: str) -> tuple[CompletionRequest | None, list[Outcome]]:
    """Build the request (a `ValidationError` is a typed refusal) and send it everywhere."""
    try:
        request = build()
    except ValidationError:
        return None, []
    outcomes = asyncio.run(send_everywhere(request, reply))
    check_outcomes(request, outcomes)
    return request, outcomes


def prompt(constraint: object = None, **fields: Any) -> Any:
    def build() -> CompletionRequest:
        return CompletionRequest.model_validate(
            {
                "messages": [{"role": "user", "content": "fuzz"}],
                "constraint": constraint,
                "max_tokens": 256,
                **fields,
            }
        )

    return build


def refused_before_sending(outcomes: list[Outcome], provider: str) -> bool:
    chosen = next(o for o in outcomes if o.provider == provider)
    return isinstance(chosen.error, InvalidConstraint | UnsupportedConstraint) and chosen.sent == 0


replies = st.one_of(
    st.sampled_from(["", "yes", "no", "{}", '{"a": 1}', "[1, 2]", "ab", "```python\nx\n```"]),
    st.text(max_size=40),
)


# -- requests ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
good_messages: st.SearchStrategy[list[dict[str, str]]] = st.lists(
    st.builds(
        dict,
        role=st.sampled_from(["system", "user", "assistant"]),
        content=st.text(max_size=60),
    ),
    min_size=1,
    max_size=4,
)
messy_messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.one_of(
                st.sampled_from(["system", "user", "assistant", "tool", "", "USER"]), scalars
            ),
            "content": st.one_of(st.text(max_size=60), scalars),
        }
    ),
    max_size=4,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Good values seven times in eight, so that whole requests are often valid, too."""
    return st.integers(0, 7).flatmap(lambda pick: bad if pick == 0 else good)


request_fields = st.fixed_dictionaries(
    {"messages": mostly(good_messages, st.one_of(messy_messages, scalars))},
    optional={
        "adapter": mostly(
            st.sampled_from([ADAPTER, "missing-lora"]), st.one_of(st.just(""), scalars)
        ),
        "max_tokens": mostly(st.integers(1, 512), st.integers(-5, 2_000_000) | scalars),
        "temperature": mostly(st.floats(0, 2), st.floats(-1, 3) | scalars),
        "top_p": mostly(st.floats(0.01, 1), st.floats(-0.5, 1.5) | scalars),
        "stop": mostly(
            st.lists(st.text(min_size=1, max_size=5), max_size=4),
            st.lists(st.text(max_size=5), max_size=20) | scalars,
        ),
        "seed": mostly(st.integers(0, 2**31), st.integers(-(2**64), 2**64) | scalars),
        "timeout_s": mostly(st.floats(1, 60), st.floats(-1, 60) | scalars),
        "constraint": mostly(
            st.none() | st.just({"kind": "choice", "options": ["a", "b"]}),
            st.fixed_dictionaries({"kind": st.sampled_from(["choice", "regex", "nope"])}),
        ),
    },
)


def test_fuzzed_request_fields() -> None:
    seen: list[bool] = []

    @settings(FUZZ, max_examples=300)
    @given(fields=request_fields, reply=replies)
    def case(fields: dict[str, Any], reply: str) -> None:
        request, outcomes = build_and_send(lambda: CompletionRequest.model_validate(fields), reply)
        seen.append(request is not None)
        if request is None:
            return
        for outcome in outcomes:
            if request.adapter not in (None, ADAPTER):  # served by none of them
                assert outcome.error is not None, outcome
            elif request.constraint is None and outcome.provider != "mock":
                assert outcome.completion is not None, outcome
                assert outcome.completion.text == reply
                assert outcome.sent == 1

    case()
    print(f"\nrequests: {len(seen)} cases, {sum(seen)} valid")
    assert len(seen) >= 300
    assert 0 < sum(seen) < len(seen)  # both sides of validation were reached


# -- grammars ---------------------------------------------------------------------------------

VALID_GRAMMARS = [
    'root ::= "yes" | "no"',
    'root ::= [a-z]+ ("," [a-z]+)*',
    'root ::= expr\nexpr ::= term ("+" term)*\nterm ::= [0-9]+ | "(" expr ")"',
    'root ::= "```python\\n" line{1,3} "```"\nline ::= [^`\\n]{0,20} "\\n"',
]
GRAMMAR_PIECES = ["root", " ::= ", '"a"', "[a-z]", "|", "(", ")", "*", "+", "?", "{1,3}", "\n"]


@st.composite
def grammars(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.text(max_size=60))
    if choice == 1:
        return "".join(draw(st.lists(st.sampled_from(GRAMMAR_PIECES), max_size=14)))
    base = draw(st.sampled_from(VALID_GRAMMARS))
    if choice == 2:
        return base
    at = draw(st.integers(0, len(base)))
    cut = draw(st.integers(0, 4))
    return base[:at] + draw(st.text(max_size=3)) + base[at + cut :]


def xgrammar_accepts(build: Any) -> bool:
    """XGrammar's own verdict: it raises RuntimeError, or UnicodeDecodeError when its message
    cuts a multi-byte character."""
    try:
        build()
    except (RuntimeError, UnicodeDecodeError):
        return False
    return True


def test_fuzzed_grammars() -> None:
    xgr = pytest.importorskip("xgrammar", reason="needs the grammar extra (xgrammar)")
    seen: list[str] = []

    @settings(FUZZ, max_examples=250)
    @given(ebnf=grammars(), reply=replies)
    def case(ebnf: str, reply: str) -> None:
        request, outcomes = build_and_send(prompt({"kind": "grammar", "ebnf": ebnf}), reply)
        if request is None:
            seen.append("refused")
            return
        valid = xgrammar_accepts(lambda: xgr.Grammar.from_ebnf(ebnf))
        seen.append("valid" if valid else "invalid")
        assert refused_before_sending(outcomes, "modal") is not valid
        assert refused_before_sending(outcomes, "openai")  # JSON only: never a grammar
        assert refused_before_sending(outcomes, "mock") is not valid

    case()
    print(f"\ngrammars: {len(seen)} cases, {seen.count('valid')} valid")
    assert len(seen) >= 250
    assert 0 < seen.count("valid") < len(seen)


# -- JSON schemas -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def schemas(draw: st.DrawFn, depth: int = 0) -> Any:
    """Mostly well-formed schemas, some with a keyword of the wrong type or value."""
    kind = draw(st.sampled_from(["object", "array", "string", "integer", "number", "boolean"]))
    if depth >= 2:
        kind = draw(st.sampled_from(["string", "integer", "boolean"]))
    schema: dict[str, Any] = {"type": kind}
    if kind == "object":
        names = draw(st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), max_size=3))
        schema["properties"] = {n: draw(schemas(depth + 1)) for n in names}
        schema["required"] = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
        schema["additionalProperties"] = False
    elif kind == "array":
        schema["items"] = draw(schemas(depth + 1))
        schema["maxItems"] = draw(st.integers(0, 3))
    elif kind == "string":
        if draw(st.booleans()):
            schema["maxLength"] = draw(st.integers(0, 12))
        if draw(st.booleans()):
            schema["enum"] = draw(st.lists(st.text(max_size=4), min_size=1, max_size=3))
    elif kind in ("integer", "number"):
        low = draw(st.integers(-100, 100))
        schema.update(minimum=low, maximum=low + draw(st.integers(0, 50)))
    if draw(st.integers(0, 5)) == 0:  # break it
        broken: dict[str, Any] = draw(
            st.sampled_from(
                [
                    {"type": "strnig"},
                    {"minLength": -1},
                    {"required": "name"},
                    {"properties": []},
                    {"maxItems": "3"},
                    {"enum": []},
                    {"type": 7},
                ]
            )
        )
        schema.update(broken)
    return schema


def test_fuzzed_json_schemas() -> None:
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    seen: list[str] = []

    @settings(FUZZ, max_examples=250)
    @given(schema=st.one_of(schemas(), json_values), reply=replies)
    def case(schema: Any, reply: str) -> None:
        request, outcomes = build_and_send(prompt({"kind": "json_schema", "schema": schema}), reply)
        if request is None:
            seen.append("refused")
            return
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError:
            seen.append("invalid")
            for provider in ("mock", "modal", "openai"):
                assert refused_before_sending(outcomes, provider), (provider, schema)
            return
        seen.append("valid")
        mock = next(o for o in outcomes if o.provider == "mock")
        if mock.completion is not None:
            validator_for(schema)(schema).validate(mock.completion.parsed)

    case()
    print(f"\nJSON schemas: {len(seen)} cases, {seen.count('valid')} valid")
    assert len(seen) >= 250
    assert 0 < seen.count("valid") < len(seen)


# -- regexes ----------------------------------------------------------------------------------

regexes = st.one_of(
    st.text(alphabet="ab01()[]{}*+?|^$\\.-,dws:", max_size=16),
    st.sampled_from([r"[a-z]{1,8}", r"\d{3}-\d{4}", r"(yes|no)", r"[A-Z][a-z]+( [a-z]+){0,2}"]),
    st.text(max_size=10),
)


def test_fuzzed_regexes() -> None:
    xgr = pytest.importorskip("xgrammar", reason="needs the grammar extra (xgrammar)")
    seen: list[str] = []

    @settings(FUZZ, max_examples=200)
    @given(pattern=regexes, reply=replies)
    def case(pattern: str, reply: str) -> None:
        request, outcomes = build_and_send(prompt({"kind": "regex", "pattern": pattern}), reply)
        if request is None:
            seen.append("refused")
            return
        valid = xgrammar_accepts(lambda: xgr.Grammar.from_regex(pattern))
        seen.append("valid" if valid else "invalid")
        assert refused_before_sending(outcomes, "modal") is not valid
        assert refused_before_sending(outcomes, "openai")
        mock = next(o for o in outcomes if o.provider == "mock")
        # Cross-check with Python's re where the dialects agree: XGrammar ignores anchors
        # ("$0" matches "0") and reads some escapes its own way.
        if mock.completion is not None and valid and not set(pattern) & set("^$\\"):
            try:
                compiled = re.compile(pattern)
            except re.error:
                return  # XGrammar takes some patterns Python's re does not
            assert compiled.fullmatch(mock.completion.text), (pattern, mock.completion.text)

    case()
    print(f"\nregexes: {len(seen)} cases, {seen.count('valid')} valid")
    assert len(seen) >= 200
    assert 0 < seen.count("valid") < len(seen)


# -- choices ----------------------------------------------------------------------------------


def test_fuzzed_choices() -> None:
    seen: list[bool] = []

    @settings(FUZZ, max_examples=100)
    @given(
        options=mostly(
            st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=5, unique=True),
            st.lists(st.text(max_size=6), max_size=5) | scalars,  # empty or repeated options
        ),
        reply=replies,
    )
    def case(options: Any, reply: str) -> None:
        request, outcomes = build_and_send(prompt({"kind": "choice", "options": options}), reply)
        seen.append(request is not None)
        if request is None:
            return
        assert isinstance(request.constraint, Choice)
        assert refused_before_sending(outcomes, "openai")
        for outcome in outcomes:
            if outcome.completion is not None:
                assert outcome.completion.text in request.constraint.options

    case()
    print(f"\nchoices: {len(seen)} cases, {sum(seen)} valid")
    assert len(seen) >= 100
    assert 0 < sum(seen) < len(seen)
