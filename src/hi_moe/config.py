"""Settings: plain data, read from arguments, the environment and a TOML file.

The provider they name is built by `hi_moe.providers.registry.load_provider()` (also importable
from here and from `hi_moe`): the provider is chosen by configuration, not by code.

Sources, strongest first: explicit arguments, environment variables (`HI_MOE_PROVIDER`,
`HI_MOE_MODAL__ENDPOINT`: sections are joined by a double underscore), then a TOML file
(`hi_moe.toml` in the working directory, or the file named by `HI_MOE_CONFIG`)::

    provider = "modal"

    [modal]
    endpoint = "https://you--hi-moe-vllm-serve.modal.run"

Secrets are `SecretStr`: they print as `**********` and are only unwrapped where sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from hi_moe.cost.prices import Prices
from hi_moe.errors import ConfigError
from hi_moe.pipeline.settings import PipelineSettings
from hi_moe.pipeline.specialists import default_adapters
from hi_moe.types import ConstraintKind

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConstraintSettings",
    "MockSettings",
    "ModalSettings",
    "OpenAISettings",
    "OtelSettings",
    "Settings",
    "env_name",
    "load_provider",
    "load_providers",
    "provider_class",
    "provider_names",
]

ENV_PREFIX = "HI_MOE_"
DEFAULT_CONFIG_FILE = "hi_moe.toml"
_config_file: ContextVar[Path | None] = ContextVar("hi_moe_config_file", default=None)

_SECTION = ConfigDict(extra="forbid")
Seconds = Annotated[float, Field(gt=0)]


def env_name(*path: str) -> str:
    """The environment variable that sets a setting: ('modal', 'endpoint') →
    HI_MOE_MODAL__ENDPOINT."""
    return ENV_PREFIX + "__".join(path).upper()


class MockSettings(BaseModel):
    """`[mock]`: the offline provider."""

    model_config = _SECTION

    seed: int = 0
    adapters: list[str] = Field(default_factory=lambda: sorted(default_adapters().values()))
    """The adapters the mock pretends to serve: by default the default specialists'."""
    latency_s: Annotated[float, Field(ge=0)] = 0.0


class ModalSettings(BaseModel):
    """`[modal]`: a vLLM OpenAI-compatible server, on Modal or anywhere else."""

    model_config = _SECTION

    endpoint: str | None = None
    """Base URL of the server, without /v1."""
    base_model: str | None = None
    """Served name of the base model; discovered from /v1/models when unset."""
    api_key: SecretStr | None = None
    """vLLM's --api-key, sent as a bearer token."""
    proxy_key: SecretStr | None = None
    """Modal proxy-auth token id, sent as Modal-Key."""
    proxy_secret: SecretStr | None = None
    """Modal proxy-auth token secret, sent as Modal-Secret."""
    request_timeout_s: Seconds = 120.0
    startup_timeout_s: Seconds = 900.0
    """How long to wait for a cold (scaled-to-zero) server to become healthy."""
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 4
    retry_deadline_s: Seconds = 300.0
    allow_insecure_http: bool = False
    """Allow plain http:// to a host other than loopback."""
    trust_server_constraints: list[ConstraintKind] = Field(default_factory=list)
    """Constraint kinds to send although outputs of that kind cannot be checked here (EBNF
    grammars without the grammar extra): the server is trusted to enforce them."""


class OpenAISettings(BaseModel):
    """`[openai]`: OpenAI's chat completions with strict JSON schemas."""

    model_config = _SECTION

    model: str | None = None
    api_key: SecretStr | None = None
    """Falls back to OPENAI_API_KEY."""
    base_url: str | None = None
    adapters: dict[str, str] = Field(default_factory=dict)
    """Adapter name → model id, e.g. {"python-lora": "ft:gpt-4.1-mini:acme::abc123"}."""
    request_timeout_s: Seconds = 120.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 4
    retry_deadline_s: Seconds = 300.0


class ConstraintSettings(BaseModel):
    """`[constraints]`: how long validating a constraint or checking an output may take."""

    model_config = _SECTION

    compile_timeout_s: Seconds = 30.0
    """Past this a constraint is refused as `InvalidConstraint` (an XGrammar compile of a large
    real-world schema takes seconds; the compile goes on and is cached for the next request)."""


class OtelSettings(BaseModel):
    """`[otel]`: OpenTelemetry spans of each run, stage and request (the `otel` extra), for
    `hi-moe run` and `hi-moe batch`. Off unless enabled."""

    model_config = _SECTION

    enabled: bool = False
    exporter: Literal["otlp", "console"] = "otlp"
    """otlp: OTLP/HTTP to `endpoint`; console: the spans printed on stderr."""
    endpoint: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """The collector's OTLP/HTTP base URL (http://localhost:4318; /v1/traces is appended).
    None: the exporter's default, or the OTEL_EXPORTER_OTLP_* environment variables."""
    service_name: str = "hi-moe"


class Settings(BaseSettings):
    """All of hi_moe's configuration. Build with `Settings.load()` to get `ConfigError`s."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    provider: str = "mock"
    """Which provider `load_provider()` builds: mock, vllm (alias modal), openai, or an entry
    point's name. The vllm provider's settings are the `[modal]` table."""
    mock: MockSettings = Field(default_factory=MockSettings)
    modal: ModalSettings = Field(default_factory=ModalSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    constraints: ConstraintSettings = Field(default_factory=ConstraintSettings)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Settings of third-party providers, one table each: [providers.acme]."""
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    """`[pipeline]`: specialists, limits, budget and routing for `hi-moe run`."""
    prices: Prices = Field(default_factory=Prices)
    """`[prices]`: what requests cost (`hi_moe.cost.prices`), over the shipped table."""
    otel: OtelSettings = Field(default_factory=OtelSettings)
    """`[otel]`: OpenTelemetry tracing, off by default."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get() or Path(os.environ.get("HI_MOE_CONFIG", DEFAULT_CONFIG_FILE))
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Read the settings; a bad or unknown one raises `ConfigError` naming it."""
        path = Path(config_file) if config_file is not None else None
        if path is not None and not path.is_file():
            raise ConfigError(f"config file not found: {path}", setting="HI_MOE_CONFIG")
        named = os.environ.get("HI_MOE_CONFIG")
        if path is None and named and not Path(named).is_file():
            raise ConfigError(
                f"config file not found: {named} (HI_MOE_CONFIG)", setting="HI_MOE_CONFIG"
            )
        with _reading(path):
            try:
                settings = cls(**overrides)
            except ValidationError as error:
                raise _config_error(error) from None
            except SettingsError as error:  # an environment variable that is not valid JSON
                raise _environment_error(error) from None
            except ValueError as error:  # a TOML file that does not parse, or is not UTF-8
                source = path or Path(named or DEFAULT_CONFIG_FILE)
                raise ConfigError(f"cannot read settings from {source}: {error}") from None
        _remember_secrets(settings)
        return settings

    def require(self, *path: str) -> Any:
        """The value at `path`, or `ConfigError` naming the setting when it is unset."""
        value: Any = self
        for part in path:
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None or value == "":
            toml = f"[{path[0]}] {'.'.join(path[1:])}" if len(path) > 1 else path[0]
            raise ConfigError(
                f"missing setting {'.'.join(path)}: set {env_name(*path)} or {toml} in "
                f"{DEFAULT_CONFIG_FILE}",
                setting=env_name(*path),
            )
        return value


def _remember_secrets(value: object) -> None:
    """Tell the sandbox's scrubber every secret the settings hold, so that none can come back
    in what a sandboxed program reports (a key in hi_moe.toml is not in the environment)."""
    from hi_moe.pipeline.sandbox.scrub import remember_secret

    if isinstance(value, SecretStr):
        remember_secret(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _remember_secrets(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            _remember_secrets(item)


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _config_file.set(path)
    try:
        yield
    finally:
        _config_file.reset(token)


def _environment_error(error: SettingsError) -> ConfigError:
    # pydantic-settings names the field ("pipeline"), not the variable: name the variables
    # that feed it, since one of them is what does not parse.
    field = re.search(r'field "([^"]+)"', str(error))
    prefix = env_name(field.group(1)) if field else ENV_PREFIX
    suspects = sorted(name for name in os.environ if name.upper().startswith(prefix))
    where = ", ".join(suspects) or f"the {ENV_PREFIX}* variables"
    return ConfigError(
        f"cannot read settings from the environment: {where}: lists and tables are "
        f"written as JSON ({error})",
        setting=suspects[0] if suspects else None,
    )


def _config_error(error: ValidationError) -> ConfigError:
    first = error.errors()[0]
    path = [str(part) for part in first["loc"]]
    name = env_name(*path) if path else "settings"
    return ConfigError(f"bad setting {'.'.join(path)} ({name}): {first['msg']}", setting=name)


# The provider registry lived here; its names stay importable from this module.
from hi_moe.providers.registry import (  # noqa: E402
    ENTRY_POINT_GROUP,
    load_provider,
    load_providers,
    provider_class,
    provider_names,
)
