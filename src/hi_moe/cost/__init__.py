"""What requests and runs cost: prices as configuration (`[prices]`), GPU time apportioned to
requests by their time in flight, and the per-run account the pipeline keeps."""

from hi_moe.cost.account import CostAccount, RunCost
from hi_moe.cost.meter import InFlight, InFlightMeter, apportion, current_request
from hi_moe.cost.prices import Cost, CostBasis, Prices, ProviderPrice, TokenPrice

__all__ = [
    "Cost",
    "CostAccount",
    "CostBasis",
    "InFlight",
    "InFlightMeter",
    "Prices",
    "ProviderPrice",
    "RunCost",
    "TokenPrice",
    "apportion",
    "current_request",
]
