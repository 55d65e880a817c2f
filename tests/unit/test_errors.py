"""One root, subclasses that say what happened, attributes that say whether to retry."""

from __future__ import annotations

import pytest

from hi_moe import Choice, Regex
from hi_moe.errors import (
    AuthenticationError,
    BadResponse,
    ConfigError,
    ConstraintError,
    ConstraintViolation,
    HiMoeError,
    InvalidConstraint,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnknownAdapter,
    UnsupportedConstraint,
)


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("x"),
        InvalidConstraint("regex", "bad"),
        UnsupportedConstraint("grammar", "openai"),
        ConstraintViolation(Regex("a"), "b", "no"),
        UnknownAdapter("x", ["a"]),
        ProviderError("x"),
        AuthenticationError("x"),
    ],
)
def test_everything_is_a_hi_moe_error(error: HiMoeError) -> None:
    assert isinstance(error, HiMoeError)


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (ProviderUnavailable, True),
        (RateLimited, True),
        (ProviderTimeout, True),
        (BadResponse, True),
        (RequestRejected, False),
        (AuthenticationError, False),
    ],
)
def test_provider_errors_say_whether_a_retry_can_help(
    cls: type[ProviderError], retryable: bool
) -> None:
    assert cls("x").retryable is retryable
    assert cls("x", retryable=not retryable).retryable is (not retryable)


def test_provider_errors_carry_transport_details_in_their_message() -> None:
    error = RateLimited(
        "slow down", provider="modal", status_code=429, retry_after=2.5, request_id="req-1"
    )
    assert (error.status_code, error.retry_after, error.request_id) == (429, 2.5, "req-1")
    assert str(error) == "slow down [provider=modal, status=429, retry_after=2.5, request_id=req-1]"


def test_a_violation_keeps_the_raw_text_and_is_retryable_unless_truncated() -> None:
    violation = ConstraintViolation(Choice(["yes", "no"]), "maybe", "not an option")
    assert violation.text == "maybe"
    assert violation.retryable
    assert isinstance(violation, ConstraintError)
    truncated = ConstraintViolation(Regex("a+"), "aa", "cut", finish_reason="length")
    assert not truncated.retryable
    assert "max_tokens" in str(truncated)


def test_unknown_adapter_names_those_that_exist() -> None:
    error = UnknownAdapter("sql-lora", ["python-lora", "math-lora"], provider="modal")
    assert error.available == ("math-lora", "python-lora")
    assert "math-lora, python-lora" in str(error)
    assert "'sql-lora'" in str(error)


def test_unsupported_constraint_says_what_to_do() -> None:
    error = UnsupportedConstraint("grammar", "openai", "use the modal provider")
    assert (
        str(error) == "provider 'openai' cannot enforce grammar constraints; use the modal provider"
    )
    assert not error.retryable
