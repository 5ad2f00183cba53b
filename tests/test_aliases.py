"""Shipped aliases point at current models: the installed SDKs' own model lists and deprecation
data are the judge. A deprecated target is marked, and a call to it warns once per process."""

from __future__ import annotations

import logging
import warnings

import pytest

from fmclient import Client
from fmclient.config import load_settings
from fmclient.deprecations import deprecation, known_models
from tests.fakes import anthropic as fa
from tests.fakes.server import FakeServer


def shipped_targets() -> list[tuple[str, str, str, str]]:
    """(alias, provider, adapter type, model id) for every alias fmclient ships."""
    settings = load_settings(env={})
    out = []
    for alias in sorted(settings.aliases):
        target = settings.resolve(alias)
        out.append((alias, target.provider, settings.provider_settings(target.provider).type, target.model))
    return out


def test_the_installed_sdks_publish_the_data_the_checks_read() -> None:
    # Without these the next test would pass for want of data; the dev install has both SDKs.
    assert known_models("anthropic") and "claude-sonnet-5-5" in known_models("anthropic")  # type: ignore[operator]
    assert known_models("openai") and "text-embedding-3-small" in known_models("openai")  # type: ignore[operator]
    found = deprecation("anthropic", "claude-opus-4-5")
    assert found is not None and found.retires == "January 22nd, 2027"
    found = deprecation("openai", "o3")
    assert found is not None and found.retires == "2026-12-11"
    assert deprecation("openai", "gpt-6.2-sol") is None
    assert "claude-opus-4-1" not in known_models("anthropic")  # type: ignore[operator]


@pytest.mark.parametrize(("alias", "provider", "type_name", "model"), shipped_targets())
def test_every_alias_target_is_current_in_its_sdk(alias: str, provider: str, type_name: str, model: str) -> None:
    found = deprecation(type_name, model)
    assert found is None, f"alias {alias!r} -> {provider}/{model}: the {type_name} SDK says {found}"
    if provider != type_name:
        return  # a named provider on a shared adapter (mistral): the SDK's own list is not its
    known = known_models(type_name)
    if known is not None:
        assert model in known, f"alias {alias!r} -> {provider}/{model} is unknown to the installed {type_name} SDK"


def test_a_retiring_model_warns_once_per_process(fake_server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    retiring = "claude-opus-4-5-20251101"  # in the anthropic SDK's deprecated-models table
    providers = {"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}}
    fake_server.queue(*(fa.message_reply(f"reply {i}") for i in range(4)))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="fmclient"):
        warnings.simplefilter("always")
        for _ in range(2):  # two clients, two calls each: still one process
            with Client(providers=providers) as client:
                for _ in range(2):
                    client.complete("hi", model=f"anthropic/{retiring}", max_tokens=5)
    assert len(fake_server.requests) == 4
    logged = [r.getMessage() for r in caplog.records if r.name == "fmclient" and "deprecated" in r.getMessage()]
    assert logged == [
        f"anthropic/{retiring} is deprecated: its provider retires it on January 22nd, 2027 (per the installed "
        "anthropic SDK); point the alias or model name at a current model"
    ]
    sdk_warnings = [w for w in caught if issubclass(w.category, DeprecationWarning) and retiring in str(w.message)]
    assert sdk_warnings == []  # the SDK's per-call warning is not repeated on top


def test_a_current_model_does_not_warn(fake_server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    fake_server.queue(fa.message_reply("fine"))
    providers = {"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}}
    with caplog.at_level(logging.WARNING, logger="fmclient"), Client(providers=providers) as client:
        client.complete("hi", model="claude-sonnet", max_tokens=5)
    assert [r for r in caplog.records if "deprecated" in r.getMessage()] == []
    assert len(fake_server.requests) == 1
