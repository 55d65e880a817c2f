"""The provider registry: which class a provider name means, and building it from settings.

Built-in names map to classes in this package (imported only when chosen, so naming `mock`
never loads the openai SDK); third parties register theirs under the entry-point group
`hi_moe.providers`. A built-in provider whose extra is missing is one `ConfigError` naming the
`pip install` that brings it.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from hi_moe.errors import ConfigError

if TYPE_CHECKING:
    from hi_moe.config import Settings
    from hi_moe.providers.base import InferenceProvider

__all__ = [
    "ENTRY_POINT_GROUP",
    "load_provider",
    "load_providers",
    "provider_class",
    "provider_names",
]

ENTRY_POINT_GROUP = "hi_moe.providers"
_PROVIDER_SETTING = "HI_MOE_PROVIDER"

_BUILTIN_PROVIDERS = {
    "mock": "hi_moe.providers.mock:MockProvider",
    "vllm": "hi_moe.providers.modal_vllm:VLLMProvider",
    "modal": "hi_moe.providers.modal_vllm:VLLMProvider",  # the vllm provider's first name
    "openai": "hi_moe.providers.openai_json:OpenAIJSONProvider",
}
# Which extra brings what a built-in provider imports, and the module that shows it is there
# (the provider modules import their SDKs lazily, so importing them proves nothing).
_EXTRAS = {"vllm": "openai", "modal": "openai", "openai": "openai"}


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules as None: imports of it are blocked
        return False


def provider_names() -> list[str]:
    """Built-in provider names, then those registered under the `hi_moe.providers` group."""
    return [*_BUILTIN_PROVIDERS, *sorted(_entry_points().keys() - _BUILTIN_PROVIDERS.keys())]


def provider_class(name: str) -> type[InferenceProvider]:
    """The provider class registered under `name`; `ConfigError` if there is none."""
    from hi_moe.providers.base import InferenceProvider

    if name in _BUILTIN_PROVIDERS:
        module, _, attribute = _BUILTIN_PROVIDERS[name].partition(":")
        extra = _EXTRAS.get(name)
        if extra is not None and not _importable(extra):
            raise ConfigError(
                f"provider {name!r} needs the {extra} package: pip install 'hi-moe[{extra}]'",
                setting=_PROVIDER_SETTING,
            )
        try:
            found = getattr(importlib.import_module(module), attribute)
        except ImportError as error:
            raise ConfigError(
                f"provider {name!r} needs {error.name or 'a missing package'}: "
                f"pip install 'hi-moe[{extra or name}]'",
                setting=_PROVIDER_SETTING,
            ) from None
    else:
        entry = _entry_points().get(name)
        if entry is None:
            raise ConfigError(
                f"unknown provider {name!r} (HI_MOE_PROVIDER); known: "
                f"{', '.join(provider_names())}",
                setting=_PROVIDER_SETTING,
            )
        found = entry.load()
    if not (isinstance(found, type) and issubclass(found, InferenceProvider)):
        raise ConfigError(
            f"provider {name!r} is registered as {found!r}, not an InferenceProvider subclass",
            setting=_PROVIDER_SETTING,
        )
    return found


def load_provider(settings: Settings | None = None, name: str | None = None) -> InferenceProvider:
    """Build the provider `name`, by default the one `settings.provider` names (settings are
    loaded when omitted)."""
    if settings is None:
        from hi_moe.config import Settings

        settings = Settings.load()
    provider = provider_class(name or settings.provider).from_settings(settings)
    provider.compile_timeout_s = settings.constraints.compile_timeout_s
    return provider


def load_providers(settings: Settings | None = None) -> dict[str, InferenceProvider]:
    """Every provider the pipeline's routing names: the configured one first, then those in
    `[pipeline] routes` and `fallbacks`."""
    if settings is None:
        from hi_moe.config import Settings

        settings = Settings.load()
    pipeline = settings.pipeline
    names = [settings.provider, *(r.provider for r in pipeline.routes), *pipeline.fallbacks]
    return {name: load_provider(settings, name) for name in dict.fromkeys(names)}
