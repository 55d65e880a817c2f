"""`[prices]`: what a request costs, from its tokens or its share of a GPU's time.

Two ways a provider is charged:

- by tokens (OpenAI and other hosted APIs): the model's price per million input and output
  tokens, found by the longest `[prices.models]` key the answering model's id starts with
  (`gpt-4.1-mini-2025-04-14` is priced as `gpt-4.1-mini`);
- by GPU time (a vLLM server on Modal): the GPU's price per second times the request's share of
  the server's busy time (`hi_moe.cost.meter`), cold-start waits charged or not.

`[prices.providers.<label>]` says which, per provider label; a label without an entry is priced
by its model's tokens when the model is in the table, else it is *unpriced*: its requests are
counted, never guessed at. The mock is free.

    [prices.providers.vllm]
    gpu = "A100-80GB"         # a Modal GPU type from the shipped table (or usd_per_s = ...)
    cold_start = "charged"    # charged | free: is waiting for a cold server billed to the run

    [prices.models."ft:gpt-4.1-mini"]
    input = 0.80              # USD per 1M tokens
    output = 3.20
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hi_moe.cost.defaults import GPU_PRICES, MODEL_PRICES
from hi_moe.cost.spent import Spent
from hi_moe.types import Usage

__all__ = ["Cost", "CostBasis", "Prices", "ProviderPrice", "TokenPrice"]

NonNegative = Annotated[float, Field(ge=0)]
CostBasis = Literal["tokens", "gpu_time", "free", "unpriced"]


class TokenPrice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input: NonNegative
    """USD per million input (prompt) tokens."""
    output: NonNegative
    """USD per million output (completion) tokens."""


class ProviderPrice(BaseModel):
    """How the provider with this label is charged: one of `gpu`, `usd_per_s`, `input` and
    `output`, or `free`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu: str | None = None
    """A GPU type from `[prices.gpus]` (Modal's names: "A100-80GB", "H100", ...)."""
    gpu_count: Annotated[int, Field(ge=1)] = 1
    usd_per_s: NonNegative | None = None
    """A price per second of the server's busy time, instead of a GPU type."""
    cold_start: Literal["charged", "free"] = "charged"
    """Whether time spent waiting for a cold server to start is charged to the requests that
    waited (Modal bills a container from its start, model loading included)."""
    input: NonNegative | None = None
    output: NonNegative | None = None
    """Token prices (USD per million) for every model of this provider."""
    free: bool = False

    @model_validator(mode="after")
    def _one_basis(self) -> ProviderPrice:
        bases = [
            self.gpu is not None,
            self.usd_per_s is not None,
            self.input is not None or self.output is not None,
            self.free,
        ]
        if sum(bases) != 1:
            raise ValueError("give exactly one of gpu, usd_per_s, input and output, or free")
        if (self.input is None) != (self.output is None):
            raise ValueError("give both input and output token prices")
        return self


class Cost(BaseModel):
    """What one request cost, and on what basis."""

    model_config = ConfigDict(frozen=True)

    usd: float = 0.0
    basis: CostBasis = "free"
    gpu_s: float = 0.0
    """GPU-seconds charged (its share of the server's busy time, times the GPUs)."""

    @property
    def priced(self) -> bool:
        return self.basis != "unpriced"


def _default_providers() -> dict[str, ProviderPrice]:
    return {"mock": ProviderPrice(free=True)}


class Prices(BaseModel):
    """`[prices]`. Entries given here are merged over the shipped table (`cost.defaults`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, TokenPrice] = Field(default_factory=dict)
    """Model id (prefix) → token prices."""
    gpus: dict[str, NonNegative] = Field(default_factory=dict)
    """GPU type → USD per second."""
    providers: dict[str, ProviderPrice] = Field(default_factory=_default_providers)
    """Provider label → how it is charged (the mock is free unless said otherwise)."""

    @field_validator("providers", mode="after")
    @classmethod
    def _over_the_defaults(cls, given: dict[str, ProviderPrice]) -> dict[str, ProviderPrice]:
        return {**_default_providers(), **given}

    @model_validator(mode="after")
    def _known_gpus(self) -> Prices:
        for label, price in self.providers.items():
            if price.gpu is not None and price.gpu not in self.gpu_table:
                known = ", ".join(sorted(self.gpu_table))
                raise ValueError(
                    f"providers.{label}.gpu: unknown GPU type {price.gpu!r} (known: {known}; "
                    "or give its price in [prices.gpus])"
                )
        return self

    @property
    def gpu_table(self) -> dict[str, float]:
        return {**GPU_PRICES, **self.gpus}

    def model_price(self, model: str | None) -> TokenPrice | None:
        """The token price of `model`: the longest table key it starts with."""
        if not model:
            return None
        table = {key: TokenPrice(input=i, output=o) for key, (i, o) in MODEL_PRICES.items()}
        table.update(self.models)
        for name in (model, model.removeprefix("ft:")):  # a fine-tune: `ft:<base>:<org>::<id>`
            matches = [k for k in table if name == k or name.startswith((k + "-", k + ":"))]
            if matches:
                return table[max(matches, key=len)]
        return None

    def price(self, provider: str, spent: Spent) -> Cost:
        """What a request to the provider labelled `provider` cost, from what it spent."""
        return self.cost(
            provider,
            model=spent.model,
            usage=spent.usage,
            busy_share_s=spent.busy_share_s,
            cold_share_s=spent.cold_share_s,
        )

    def cost(
        self,
        provider: str,
        *,
        model: str | None,
        usage: Usage,
        busy_share_s: float = 0.0,
        cold_share_s: float = 0.0,
    ) -> Cost:
        """What a request to the provider labelled `provider` cost."""
        price = self.providers.get(provider)
        if price is not None and price.free:
            return Cost(basis="free")
        if price is not None and (price.gpu is not None or price.usd_per_s is not None):
            share = busy_share_s - (cold_share_s if price.cold_start == "free" else 0.0)
            share = max(share, 0.0)
            if price.gpu is not None:
                per_s = self.gpu_table[price.gpu] * price.gpu_count
                gpu_s = share * price.gpu_count
            else:
                assert price.usd_per_s is not None
                per_s, gpu_s = price.usd_per_s, share
            return Cost(usd=share * per_s, basis="gpu_time", gpu_s=gpu_s)
        tokens = (
            TokenPrice(input=price.input, output=price.output)
            if price is not None and price.input is not None and price.output is not None
            else self.model_price(model)
        )
        if tokens is None:
            # No tokens to charge (a refused or failed call) costs nothing, priced or not.
            return Cost(basis="tokens" if usage.total_tokens == 0 else "unpriced")
        usd = (usage.prompt_tokens * tokens.input + usage.completion_tokens * tokens.output) / 1e6
        return Cost(usd=usd, basis="tokens")
