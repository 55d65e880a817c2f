"""`OpenAIJSONProvider`: OpenAI chat completions, which enforce JSON schemas and nothing else.

JSON schemas go out as `response_format` json_schema in strict mode, rewritten to the subset
strict mode accepts (see `strict_schema`); grammars, regexes and choices are refused before any
network call, naming a provider that can enforce them. Adapters map to model ids by
configuration, e.g. a specialist name to a fine-tuned model.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

from pydantic import SecretStr

from hi_moe import constraints
from hi_moe.constraints import json_check
from hi_moe.errors import ConfigError, ProviderError, UnknownAdapter
from hi_moe.providers.base import Capabilities, Health
from hi_moe.providers.openai_compat import OpenAICompatibleProvider
from hi_moe.providers.retry import RetryPolicy
from hi_moe.providers.strict_schema import drop_optional_nulls, to_strict, validate_for_openai
from hi_moe.types import CompletionRequest, Constraint, ConstraintKind, JsonSchema, exact_key

if TYPE_CHECKING:
    from hi_moe.config import Settings

__all__ = ["OpenAIJSONProvider"]

_HEALTH_TIMEOUT_S = 10.0


def _strict(constraint: JsonSchema) -> dict[str, Any]:
    """The strict-mode form of a schema, made once per schema as written (its key order is
    what goes on the wire; callers must not mutate it)."""
    return _strict_exact(exact_key(constraint))


@functools.lru_cache(maxsize=256)
def _strict_exact(key: tuple[JsonSchema, str]) -> dict[str, Any]:
    return to_strict(key[0].schema)


class OpenAIJSONProvider(OpenAICompatibleProvider):
    """OpenAI (or an API compatible with its strict JSON schemas); JSON-schema constraints only."""

    name = "openai"
    capabilities = Capabilities(
        constraint_kinds=frozenset({"json_schema"}), adapters=True, streaming=True
    )

    def __init__(
        self,
        model: str,
        api_key: str | SecretStr | None = None,
        *,
        base_url: str | None = None,
        adapters: Mapping[str, str] | None = None,
        http_client: Any | None = None,
        request_timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """
        Args:
            model: the model id used when a request names no adapter.
            api_key: defaults to the OPENAI_API_KEY environment variable.
            adapters: adapter name → model id (e.g. a fine-tuned model per specialist).
        """
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        key = key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError(
                "the openai provider needs an API key: set HI_MOE_OPENAI__API_KEY or "
                "OPENAI_API_KEY",
                setting="HI_MOE_OPENAI__API_KEY",
            )
        super().__init__(
            base_url=base_url or "https://api.openai.com/v1",
            api_key=key,
            http_client=http_client,
            request_timeout_s=request_timeout_s,
            retry=retry,
        )
        self.model = model
        self.adapter_models = dict(adapters or {})

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        openai = settings.openai
        return cls(
            settings.require("openai", "model"),
            openai.api_key,
            base_url=openai.base_url,
            adapters=openai.adapters,
            request_timeout_s=openai.request_timeout_s,
            retry=RetryPolicy(max_attempts=openai.max_attempts, deadline_s=openai.retry_deadline_s),
        )

    def __repr__(self) -> str:
        return f"OpenAIJSONProvider(model={self.model!r}, adapters={sorted(self.adapter_models)})"

    def unsupported_hint(self, kind: ConstraintKind) -> str:
        return (
            "OpenAI enforces JSON schemas only; send grammar, regex and choice constraints to "
            "the modal provider (vLLM), or express the choice as a JSON schema enum"
        )

    def validate_constraint(self, constraint: Constraint) -> constraints.ConstraintReport:
        return validate_for_openai(constraint)

    async def _model_for(self, request: CompletionRequest, seconds_left: float) -> str:
        if request.adapter is None:
            return self.model
        try:
            return self.adapter_models[request.adapter]
        except KeyError:
            raise UnknownAdapter(
                request.adapter, list(self.adapter_models), provider=self.name
            ) from None

    def _constraint_fields(self, constraint: Constraint) -> dict[str, Any]:
        assert isinstance(constraint, JsonSchema)  # prepare() refused every other kind
        schema = _strict(constraint) if constraint.strict else constraint.schema
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": constraint.name,
                    "schema": schema,
                    "strict": constraint.strict,
                },
            }
        }

    def _postprocess(self, request: CompletionRequest, text: str) -> str:
        constraint = request.constraint
        if not isinstance(constraint, JsonSchema) or not constraint.strict:
            return text
        try:  # strictly: a lenient read here would hide duplicate keys or NaN from the check
            value = json_check.parse(text).value
        except json_check.NotJson:
            return text  # the constraint check reports it, with the text attached
        cleaned = drop_optional_nulls(value, constraint.schema)
        return text if cleaned == value else json.dumps(cleaned, ensure_ascii=False)

    async def adapters(self) -> list[str]:
        return list(self.adapter_models)

    async def health(self) -> Health:
        started = time.perf_counter()
        try:
            await self._raw("GET", f"/models/{self.model}", timeout_s=_HEALTH_TIMEOUT_S)
        except ProviderError as error:
            return Health(provider=self.name, status="down", detail=str(error))
        return Health(provider=self.name, status="ok", latency_s=time.perf_counter() - started)
