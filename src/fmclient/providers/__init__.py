"""Provider adapters, found by type name and imported on first use.

``BUILTIN`` maps an adapter type to ``module:Class``. Third-party packages add their own through
the ``fmclient.providers`` entry-point group (``name = "package.module:Class"``). Nothing here
imports an SDK: importing ``fmclient`` stays cheap.
"""

from __future__ import annotations

import importlib

from fmclient.errors import ConfigurationError
from fmclient.providers.base import Capabilities, Provider, ProviderSettings

__all__ = ["BUILTIN", "Capabilities", "Provider", "ProviderSettings", "adapter_class", "known_types"]

BUILTIN: dict[str, str] = {
    "anthropic": "fmclient.providers.anthropic:AnthropicProvider",
    "openai": "fmclient.providers.openai:OpenAIProvider",
    "gemini": "fmclient.providers.gemini:GeminiProvider",
    "bedrock": "fmclient.providers.bedrock:BedrockProvider",
    "ollama": "fmclient.providers.ollama:OllamaProvider",
    "llamacpp": "fmclient.providers.llamacpp:LlamaCppProvider",
    "mock": "fmclient.testing.mock:MockProvider",
}

_plugins: dict[str, str] | None = None


def _plugin_types() -> dict[str, str]:
    global _plugins
    if _plugins is None:
        from importlib.metadata import entry_points  # slow to import; plugins are rare

        _plugins = {ep.name: ep.value for ep in entry_points(group="fmclient.providers")}
    return _plugins


def known_types() -> list[str]:
    return sorted({*BUILTIN, *_plugin_types()})


def adapter_class(type_name: str) -> type[Provider]:
    target = BUILTIN.get(type_name) or _plugin_types().get(type_name)
    if target is None:
        raise ConfigurationError(f"unknown provider type {type_name!r}; known types: {', '.join(known_types())}")
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load the {type_name!r} adapter ({target}): {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigurationError(f"{target} is not an fmclient Provider subclass")
    return cls
