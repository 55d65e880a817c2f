"""The provider is chosen by configuration: arguments, then HI_MOE_* env vars, then TOML."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hi_moe import Settings, load_provider
from hi_moe.config import provider_class, provider_names
from hi_moe.errors import ConfigError
from hi_moe.providers import MockProvider


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No HI_MOE_* from the machine, and a working directory with no hi_moe.toml."""
    import os

    for name in list(os.environ):
        if name.startswith("HI_MOE_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_the_default_is_the_offline_mock() -> None:
    provider = load_provider()
    assert isinstance(provider, MockProvider)


def test_env_vars_with_the_prefix_configure_nested_sections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HI_MOE_MOCK__SEED", "42")
    monkeypatch.setenv("HI_MOE_MOCK__ADAPTERS", '["python-lora", "math-lora"]')
    provider = load_provider()
    assert isinstance(provider, MockProvider)
    assert provider.seed == 42


def test_toml_is_read_and_env_vars_win_over_it(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    write(
        clean_env / "hi_moe.toml",
        """
        provider = "mock"
        [mock]
        seed = 1
        adapters = ["python-lora"]
        [modal]
        endpoint = "https://from-toml.example"
        """,
    )
    monkeypatch.setenv("HI_MOE_MOCK__SEED", "2")
    settings = Settings.load()
    assert settings.mock.seed == 2
    assert settings.mock.adapters == ["python-lora"]
    assert settings.modal.endpoint == "https://from-toml.example"


def test_explicit_arguments_win_over_everything(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    write(clean_env / "hi_moe.toml", 'provider = "modal"\n')
    monkeypatch.setenv("HI_MOE_PROVIDER", "openai")
    assert Settings.load(provider="mock").provider == "mock"


def test_a_config_file_can_be_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.toml", "[mock]\nseed = 9\n")
    assert Settings.load(path).mock.seed == 9
    monkeypatch.setenv("HI_MOE_CONFIG", str(path))
    assert Settings.load().mock.seed == 9
    with pytest.raises(ConfigError, match="config file not found"):
        Settings.load(tmp_path / "missing.toml")


def test_an_unknown_provider_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        load_provider(Settings.load(provider="nonesuch"))
    assert caught.value.setting == "HI_MOE_PROVIDER"
    assert "known: mock, vllm, modal, openai" in str(caught.value)


def test_a_misspelt_or_malformed_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("HI_MOE_MOCK__SEED", "not-a-number")
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    assert caught.value.setting == "HI_MOE_MOCK__SEED"
    monkeypatch.delenv("HI_MOE_MOCK__SEED")
    write(clean_env / "hi_moe.toml", "[modal]\nendpont = 'typo'\n")
    with pytest.raises(ConfigError, match="HI_MOE_MODAL__ENDPONT"):
        Settings.load()
    write(clean_env / "hi_moe.toml", "provider = \n")
    with pytest.raises(ConfigError, match="cannot read settings"):
        Settings.load()


def test_an_environment_variable_that_is_not_json_is_named_not_the_toml_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HI_MOE_PIPELINE__ROUTES", "[{")
    with pytest.raises(ConfigError, match="from the environment: HI_MOE_PIPELINE__ROUTES") as e:
        Settings.load()
    assert "hi_moe.toml" not in str(e.value)
    assert e.value.setting == "HI_MOE_PIPELINE__ROUTES"


def test_a_missing_required_setting_names_the_env_var_and_the_toml_key() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load().require("modal", "endpoint")
    assert caught.value.setting == "HI_MOE_MODAL__ENDPOINT"
    assert "[modal] endpoint" in str(caught.value)


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HI_MOE_MODAL__API_KEY", "sk-very-secret-1")
    monkeypatch.setenv("HI_MOE_MODAL__PROXY_SECRET", "as-very-secret-2")
    monkeypatch.setenv("HI_MOE_OPENAI__API_KEY", "sk-very-secret-3")
    settings = Settings.load()
    shown = repr(settings) + str(settings) + settings.model_dump_json() + str(settings.model_dump())
    assert "very-secret" not in shown
    assert settings.modal.api_key is not None
    assert settings.modal.api_key.get_secret_value() == "sk-very-secret-1"


ACME = """
from hi_moe.providers.base import Capabilities, Health, InferenceProvider
from hi_moe.types import Completion


class AcmeProvider(InferenceProvider):
    name = "acme"
    capabilities = Capabilities(constraint_kinds=frozenset({"choice"}))

    def __init__(self, greeting):
        self.greeting = greeting

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.require("providers", "acme", "greeting"))

    async def _complete(self, request):
        return Completion(text=self.greeting, provider=self.name, model="acme-1")

    async def adapters(self):
        return []

    async def health(self):
        return Health(provider=self.name, status="ok")


NOT_A_PROVIDER = object()
"""


@pytest.fixture
def acme_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A third-party distribution registering providers in the `hi_moe.providers` group."""
    site = tmp_path / "site"
    (site / "acme_dist-1.0.dist-info").mkdir(parents=True)
    (site / "acme_hi_moe.py").write_text(ACME)
    (site / "acme_dist-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-dist\nVersion: 1.0\n"
    )
    (site / "acme_dist-1.0.dist-info" / "entry_points.txt").write_text(
        "[hi_moe.providers]\nacme = acme_hi_moe:AcmeProvider\nbroken = acme_hi_moe:NOT_A_PROVIDER\n"
    )
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.usefixtures("acme_installed")
async def test_third_party_providers_come_from_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert provider_names() == ["mock", "vllm", "modal", "openai", "acme", "broken"]
    monkeypatch.setenv("HI_MOE_PROVIDER", "acme")
    monkeypatch.setenv("HI_MOE_PROVIDERS__ACME__GREETING", "hello from acme")
    provider = load_provider()
    assert type(provider).__name__ == "AcmeProvider"
    from hi_moe import Choice, CompletionRequest

    request = CompletionRequest.from_prompt("hi", constraint=Choice(["hello from acme"]))
    assert (await provider.complete(request)).text == "hello from acme"


@pytest.mark.usefixtures("acme_installed")
def test_a_third_party_provider_missing_its_setting_or_class_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HI_MOE_PROVIDER", "acme")
    with pytest.raises(ConfigError, match="HI_MOE_PROVIDERS__ACME__GREETING"):
        load_provider()
    with pytest.raises(ConfigError, match="not an InferenceProvider subclass"):
        provider_class("broken")


def test_choosing_a_provider_whose_extra_is_missing_is_one_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def without_openai(name: str, *args: Any) -> Any:
        return None if name == "openai" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_openai)
    for name in ("vllm", "modal", "openai"):
        with pytest.raises(ConfigError, match=r"pip install 'hi-moe\[openai\]'"):
            provider_class(name)


def test_building_the_vllm_provider_without_the_openai_sdk_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hi_moe.providers.modal_vllm import VLLMProvider

    monkeypatch.setitem(sys.modules, "openai", None)  # import openai → ImportError
    with pytest.raises(ConfigError, match=r"pip install 'hi-moe\[openai\]'"):
        VLLMProvider("http://127.0.0.1:8000")
