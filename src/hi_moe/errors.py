"""The error tree.

Every error hi_moe raises on purpose is a `HiMoeError`. Each says what happened, and its
`retryable` attribute says whether sending the same request again could help, so callers can
decide without parsing messages::

    HiMoeError
    ├── ConfigError                 a setting is missing or wrong
    ├── ConstraintError
    │   ├── InvalidConstraint       the grammar / schema / regex / choice is malformed
    │   ├── UnsupportedConstraint   this provider cannot enforce that constraint kind
    │   └── ConstraintViolation     the output does not satisfy its constraint (text attached)
    ├── UnknownAdapter              no such LoRA specialist (the ones that exist are named)
    └── ProviderError               the backend failed; status_code, retry_after, request_id
        ├── ProviderUnavailable     5xx, connection refused or reset  (retryable)
        │   └── ProviderUnreachable nothing listens there, or no such host (retryable elsewhere)
        ├── RateLimited             429                               (retryable)
        ├── ProviderTimeout         no answer in time                 (retryable)
        │   └── ProviderNotReady    still starting when the wait ran out (retryable elsewhere)
        ├── BadResponse             a body that is not what the API promises (retryable)
        ├── RequestRejected         400/404/422 for a reason other than the above
        └── AuthenticationError     401/403: key missing, wrong or not allowed

Messages never contain secrets: providers build them from status codes and server messages,
never from request headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hi_moe.types import Constraint, Hop, Usage

__all__ = [
    "AuthenticationError",
    "BadResponse",
    "ConfigError",
    "ConstraintError",
    "ConstraintViolation",
    "HiMoeError",
    "InvalidConstraint",
    "ProviderError",
    "ProviderNotReady",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ProviderUnreachable",
    "RateLimited",
    "RequestRejected",
    "UnknownAdapter",
    "UnsupportedConstraint",
]


class HiMoeError(Exception):
    """Root of every error hi_moe raises on purpose."""

    retryable: bool = False
    hops: tuple[Hop, ...] = ()
    """Set by `FallbackProvider` on the error it raises: every provider tried before it."""
    sent: bool = False
    """Whether it ended a call that had been sent (not one refused beforehand): set with the
    shares below by the provider that raised it."""
    busy_share_s: float = 0.0
    cold_share_s: float = 0.0
    cold_wait_s: float = 0.0
    """Set by the provider that raised it: what the failed call occupied of that provider's
    time (`Completion.busy_share_s`), so a failed request's GPU time is charged too."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(HiMoeError):
    """A setting is missing, unknown or malformed. `setting` names it (as an env var)."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ConstraintError(HiMoeError):
    """Something about an output constraint."""


class InvalidConstraint(ConstraintError):
    """The constraint itself is malformed: bad EBNF, bad JSON schema, bad regex, empty choice.

    Raised before any network call. `detail` is the parser's own message.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"invalid {kind} constraint: {detail}")
        self.kind = kind
        self.detail = detail


class UnsupportedConstraint(ConstraintError):
    """The provider cannot enforce this kind of constraint. Raised before any network call."""

    def __init__(self, kind: str, provider: str, hint: str = "") -> None:
        message = f"provider {provider!r} cannot enforce {kind} constraints"
        super().__init__(f"{message}; {hint}" if hint else message)
        self.kind = kind
        self.provider = provider


class ConstraintViolation(ConstraintError):
    """An output does not satisfy its constraint. The raw `text` is attached, never returned.

    Retrying can help (sampling again may succeed) unless the output was cut off at
    `max_tokens`, where the same request will be cut off again.
    """

    def __init__(
        self,
        constraint: Constraint,
        text: str,
        reason: str,
        *,
        finish_reason: str | None = None,
    ) -> None:
        truncated = finish_reason == "length"
        suffix = " (the output was cut off at max_tokens)" if truncated else ""
        super().__init__(f"output violates its {constraint.kind} constraint: {reason}{suffix}")
        self.constraint = constraint
        self.text = text
        self.reason = reason
        self.finish_reason = finish_reason
        self.retryable = not truncated
        self.usage: Usage | None = None
        """Tokens the rejected completion cost, when a provider reports them."""
        self.model: str | None = None
        """The model that gave the rejected output, when a provider says."""


class UnknownAdapter(HiMoeError):
    """The request named a LoRA adapter the provider does not serve."""

    def __init__(self, adapter: str, available: Sequence[str], *, provider: str = "") -> None:
        names = ", ".join(sorted(available)) or "none"
        where = f" on provider {provider!r}" if provider else ""
        super().__init__(f"unknown adapter {adapter!r}{where}; available adapters: {names}")
        self.adapter = adapter
        self.available = tuple(sorted(available))
        self.provider = provider


class ProviderError(HiMoeError):
    """The backend failed to produce a completion."""

    default_retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        details = [
            f"{key}={value}"
            for key, value in (
                ("provider", self.provider or None),
                ("status", self.status_code),
                ("retry_after", self.retry_after),
                ("request_id", self.request_id),
            )
            if value is not None
        ]
        return f"{self.message} [{', '.join(details)}]" if details else self.message


class ProviderUnavailable(ProviderError):
    """5xx, connection refused or reset, or a server still starting."""

    default_retryable = True


class ProviderUnreachable(ProviderUnavailable):
    """Nothing listens on the endpoint's loopback port, or its host does not resolve: it is
    not starting, so it is not waited for. Another provider can help (`retryable`); the
    provider's own retry loop does not ask the same endpoint again at once."""


class RateLimited(ProviderError):
    """429. `retry_after` holds the server's hint in seconds when it gave one."""

    default_retryable = True


class ProviderTimeout(ProviderError):
    """No (complete) answer within the request timeout or the startup deadline."""

    default_retryable = True


class ProviderNotReady(ProviderTimeout):
    """A cold server was still starting when the wait for it ran out (the startup deadline or
    the call's). Another provider, or a later call, can help; the provider's own retry loop
    does not wait a second startup deadline."""


class BadResponse(ProviderError):
    """A response body that does not match the API: truncated, malformed, missing fields."""

    default_retryable = True


class RequestRejected(ProviderError):
    """The server refused the request as malformed (400/404/422) for another reason."""


class AuthenticationError(ProviderError):
    """401/403: the API key or proxy token is missing, wrong, or lacks permission."""
