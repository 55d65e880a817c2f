"""The shipped price table: OpenAI's models and the GPU types the Modal deployment offers.

Prices change; these are what the vendors' pages listed on the dates given. Override any of
them in `[prices]` (see `hi_moe.cost.prices`), and check before trusting a bill to them.
"""

from __future__ import annotations

__all__ = ["GPU_PRICES", "GPU_PRICES_SOURCE", "MODEL_PRICES", "MODEL_PRICES_SOURCE"]

MODEL_PRICES_SOURCE = (
    "OpenAI API pricing, standard tier, short context (developers.openai.com/api/docs/pricing), "
    "as listed in June 2026; older models as last listed while still billable"
)
MODEL_PRICES: dict[str, tuple[float, float]] = {
    # model id prefix: (USD per 1M input tokens, USD per 1M output tokens)
    "gpt-5.5": (5.00, 30.00),
    "gpt-5.5-pro": (30.00, 180.00),
    "gpt-5.4": (2.50, 15.00),
    "gpt-5.4-mini": (0.75, 4.50),
    "gpt-5.4-nano": (0.20, 1.25),
    "gpt-5.4-pro": (30.00, 180.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}

GPU_PRICES_SOURCE = "Modal pricing, per second of GPU time (modal.com/pricing), May 2026"
GPU_PRICES: dict[str, float] = {
    # Modal GPU type, as `gpu=` names it: USD per second, per GPU
    "B200": 0.001736,
    "H200": 0.001261,
    "H100": 0.001097,
    "A100-80GB": 0.000694,
    "A100-40GB": 0.000583,
    "L40S": 0.000542,
    "A10G": 0.000306,
    "L4": 0.000222,
    "T4": 0.000164,
}
