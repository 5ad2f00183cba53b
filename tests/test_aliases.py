"""Model names users reach for: shipped aliases point at current models (the installed SDKs' own
model lists and deprecation data are the judge); a maker's bare model id (gpt-4o, claude-sonnet-4-5,
gemini-2.5-flash) resolves to its maker's API without an alias; a retiring model warns once per
process with its date and successor; a retired one is refused before sending, naming the successor."""

from __future__ import annotations

import asyncio
import datetime
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from fmclient import Client, ConfigurationError
from fmclient import deprecations as lifecycle
from fmclient.config import load_settings
from fmclient.deprecations import deprecation, known_models
from tests.fakes import anthropic as fa
from tests.fakes import openai as fo
from tests.fakes.server import FakeServer, Reply


@pytest.fixture
def today(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Set the day the lifecycle checks see (the real one moves on), and forget earlier warnings."""
    monkeypatch.setattr(lifecycle, "_warned", set())

    def set_day(iso: str) -> None:
        monkeypatch.setattr(lifecycle, "_today", lambda: datetime.date.fromisoformat(iso))

    set_day("2026-12-07")
    return set_day


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


def test_a_retiring_model_warns_once_per_process(
    fake_server: FakeServer, caplog: pytest.LogCaptureFixture, today: Callable[[str], None]
) -> None:
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
        f"anthropic/{retiring} is deprecated: its provider retires it on 2027-01-22 (per the installed "
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


# -- bare model ids --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("gpt-4o", "openai"),
        ("gpt-4o-mini", "openai"),
        ("o3", "openai"),
        ("gpt-6.2-sol", "openai"),
        ("gpt-image-1", "openai"),
        ("gpt-image-2.6-sunburst", "openai"),
        ("text-embedding-3-large", "openai"),
        ("claude-sonnet-4-5", "anthropic"),
        ("claude-opus-5-5", "anthropic"),
        ("gemini-2.5-flash", "gemini"),
        ("gemini-3.8-flash", "gemini"),
        ("imagen-4.0-generate-001", "gemini"),
        ("mistral-large-latest", "mistral"),
        ("gpt-6.3-sol", "openai"),  # newer than the installed SDK, but of a family the table knows
        ("gpt-4o-2024-11-20", "openai"),
    ],
)
def test_a_makers_bare_model_id_goes_to_its_makers_api(name: str, provider: str) -> None:
    target = load_settings(env={}).resolve(name)
    assert (target.provider, target.model, target.requested) == (provider, name, name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "unknown model or alias"),  # Bedrock's id: say where
        ("claude-sonnet-4-5@20250929", "unknown model or alias"),  # Vertex's id
        ("llama3.2", "did you mean 'llama-3'"),  # open weights: many hosts, no one maker's API
        ("gpt-oss-20b", "unknown model or alias"),
        ("claude-sonet", "did you mean 'claude-sonnet'"),  # a misspelt alias is still one
        # the maker's shape, but known to neither its SDK nor a family of its own: a typo, refused
        # before sending rather than answered with a 404 after
        ("gpt-5o-typo", "name it 'openai/gpt-5o-typo'"),
        ("claude-sonnet-9-typo", "name it 'anthropic/claude-sonnet-9-typo'"),
    ],
)
def test_ids_without_one_makers_api_still_need_a_provider(name: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(env={}).resolve(name)


def test_an_alias_or_a_configured_provider_wins_over_the_bare_id(fake_server: FakeServer) -> None:
    settings = load_settings(env={}, overrides={"aliases": {"gpt-4o": "bedrock/openai.gpt-oss-120b-1:0"}})
    assert str(settings.resolve("gpt-4o")) == "bedrock/openai.gpt-oss-120b-1:0"


def test_a_bare_id_is_sent_to_the_makers_api_and_warns_with_date_and_successor(
    fake_server: FakeServer, caplog: pytest.LogCaptureFixture, today: Callable[[str], None]
) -> None:
    fake_server.queue(
        Reply(body=fo.completion_body(fo.Answer(text="hello"))), Reply(body=fo.completion_body(fo.Answer(text="again")))
    )
    providers = {"openai": {"base_url": f"{fake_server.url}/v1", "api_key": "sk-test-123456"}}
    with caplog.at_level(logging.WARNING, logger="fmclient"), Client(providers=providers) as client:
        assert client.complete("hi", model="gpt-4o", max_tokens=5).text == "hello"
        assert client.complete("hi", model="gpt-4o", max_tokens=5).text == "again"
    assert [r.path for r in fake_server.requests] == ["/v1/chat/completions"] * 2
    assert [r.json()["model"] for r in fake_server.requests] == ["gpt-4o"] * 2
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == [
        "openai/gpt-4o is deprecated: its provider retires it on 2027-01-14; its replacement is openai/gpt-6-luna"
    ]


@pytest.mark.parametrize(
    ("model", "day", "message"),
    [
        ("o3", "2026-12-11", "openai/o3 was retired on 2026-12-11: use openai/gpt-6.1-sol"),
        ("gpt-4", "2026-12-07", "openai/gpt-4 was retired on 2026-10-23: use openai/gpt-5.6-sol"),
        ("gpt-4o", "2027-02-01", "openai/gpt-4o was retired on 2027-01-14: use openai/gpt-6-luna"),
        # a date only the SDK publishes: no successor known, so the provider's page is named
        ("chatgpt-4o-latest", "2026-12-07", "retired on 2026-02-17 (per the installed openai SDK): see https://"),
    ],
)
def test_a_retired_model_is_refused_before_sending_naming_its_successor(
    fake_server: FakeServer, today: Callable[[str], None], model: str, day: str, message: str
) -> None:
    today(day)
    providers = {"openai": {"base_url": f"{fake_server.url}/v1", "api_key": "sk-test-123456"}}
    with Client(providers=providers) as client, pytest.raises(ConfigurationError) as caught:
        client.complete("hi", model=model, max_tokens=5)
    assert message in str(caught.value)
    assert fake_server.requests == []


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("gpt-image-1", "openai/gpt-image-1 was retired on 2026-10-23: use openai/gpt-image-2.5-sunburst"),
        ("gpt-image-1.5", "openai/gpt-image-1.5 was retired on 2026-12-01: use openai/gpt-image-2.6-sunburst"),
        ("openai/chatgpt-image-latest", "retired on 2026-12-01: use openai/gpt-image-2.6-sunburst"),
        # DALL-E is in no image family: refused as retired, not as "does not generate images"
        ("dall-e-3", "openai/dall-e-3 was retired on 2026-05-12: use openai/gpt-image-2.6-sunburst"),
    ],
)
def test_a_shut_down_image_model_is_refused_before_sending_naming_its_successor(
    fake_server: FakeServer, today: Callable[[str], None], model: str, message: str
) -> None:
    fo.FakeOpenAI(fake_server)  # answers images as the API does, were anything sent
    providers = {"openai": {"base_url": f"{fake_server.url}/v1", "api_key": "sk-test-123456"}}
    with Client(providers=providers) as client:
        with pytest.raises(ConfigurationError) as caught:
            client.generate_image("a kite", model=model)
        assert message in str(caught.value)
        with pytest.raises(ConfigurationError, match="was retired on"):
            asyncio.run(client.agenerate_image("a kite", model=model))
    assert fake_server.requests == []


def test_the_openai_sdks_image_model_dates_in_prose_are_read() -> None:
    # "GPT Image 1 was shut down on October 23, 2026": the SDK's words, not retirements.toml's.
    from fmclient.deprecations import _openai, _parse_date

    dates = _openai()[1]
    assert _parse_date(dates["gpt-image-1"]) == datetime.date(2026, 10, 23)
    assert _parse_date(dates["dall-e-2"]) == _parse_date(dates["dall-e-3"]) == datetime.date(2026, 5, 12)
    assert "gpt-image-2.6-sunburst" not in dates


def test_a_retired_gemini_and_claude_model_is_refused(today: Callable[[str], None]) -> None:
    gemini = Client(providers={"gemini": {"api_key": "gem-test-123456"}})
    with gemini, pytest.raises(ConfigurationError, match=r"gemini/gemini-2\.5-flash was retired on 2026-12-01: "):
        gemini.complete("hi", model="gemini-2.5-flash")
    anthropic = Client(providers={"anthropic": {"api_key": "ant-test-123456"}})
    with anthropic, pytest.raises(ConfigurationError, match="use anthropic/claude-sonnet-4-6"):
        anthropic.complete("hi", model="claude-sonnet-4-20250514")


def test_other_hosts_keep_their_own_schedules(fake_server: FakeServer, today: Callable[[str], None]) -> None:
    # An OpenAI-compatible server that calls its model "gpt-4" is not OpenAI: it is not refused.
    fake_server.queue(Reply(body=fo.completion_body(fo.Answer(text="served"))))
    providers = {"corp": {"type": "openai", "base_url": f"{fake_server.url}/v1", "api_key": "corp-key-123456"}}
    with Client(providers=providers) as client:
        assert client.complete("hi", model="corp/gpt-4", max_tokens=5).text == "served"
    assert lifecycle.check_lifecycle(load_settings(env={}).provider_settings("bedrock"), "gpt-4") is None


def test_the_cli_prints_a_warning_as_its_own_line_and_an_error_as_one(
    fake_server: FakeServer, today: Callable[[str], None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fmclient.cli import main

    config = tmp_path / "c.toml"
    config.write_text(f'[providers.openai]\nbase_url = "{fake_server.url}/v1"\napi_key = "sk-test-123456"\n')
    fake_server.queue(Reply(body=fo.completion_body(fo.Answer(text="hello"))), fo.error_reply(401, "bad key"))
    assert main(["--config", str(config), "complete", "hi", "--no-stream", "-m", "gpt-4o"]) == 0
    out = capsys.readouterr()
    assert out.out == "hello\n"
    assert out.err.splitlines() == [
        "fmclient: warning: openai/gpt-4o is deprecated: its provider retires it on 2027-01-14; "
        "its replacement is openai/gpt-6-luna"
    ]
    lifecycle._warned.clear()
    assert main(["--config", str(config), "complete", "hi", "--no-stream", "-m", "gpt-4o"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("fmclient: AuthenticationError: ") and "(warning: openai/gpt-4o is deprecated" in err
    today("2027-01-15")
    assert main(["--config", str(config), "complete", "hi", "-m", "gpt-4o"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "fmclient: ConfigurationError: [openai/gpt-4o] openai/gpt-4o was retired on 2027-01-14: use "
        "openai/gpt-6-luna, which its provider names as the replacement"
    ]
    assert len(fake_server.requests) == 2


# -- the retirement table --------------------------------------------------------------------------
def retirements() -> list[tuple[str, str, datetime.date, str | None, str]]:
    return [(p, m, *facts) for (p, m), facts in sorted(lifecycle._table().items())]


@pytest.mark.parametrize(("provider", "model", "retires", "successor", "source"), retirements())
def test_each_retirement_has_a_source_and_a_current_successor(
    provider: str, model: str, retires: datetime.date, successor: str | None, source: str
) -> None:
    assert source and isinstance(retires, datetime.date)
    assert successor, f"{model}: the error must name a successor"
    later = deprecation(provider, successor)
    assert later is None or (later.retires_on is not None and later.retires_on > retires), (model, later)
    known = known_models(provider)
    if known is not None and provider == "openai" and successor.startswith(("gpt-6", "gpt-5.6")):
        assert successor in known, f"{model} -> {successor}: unknown to the installed openai SDK"
    # Where the installed SDK publishes a date too, the two agree.
    sdk_date = lifecycle._data(provider)[1].get(model)
    if sdk_date is not None and any(c.isdigit() for c in sdk_date):
        assert lifecycle._parse_date(sdk_date) == retires, (model, sdk_date)
    assert load_settings(env={}).resolve(model).provider == provider  # reachable by its bare id


def test_sdk_dates_in_both_spellings_are_read() -> None:
    assert lifecycle._parse_date("January 22nd, 2027") == datetime.date(2027, 1, 22)
    assert lifecycle._parse_date("June 1st, 2026") == datetime.date(2026, 6, 1)
    assert lifecycle._parse_date("2026-12-11") == datetime.date(2026, 12, 11)
    assert lifecycle._parse_date("Not a supported model ID") is None


def test_reattaching_to_a_batch_job_of_a_retired_model_is_not_refused(today: Callable[[str], None]) -> None:
    # A job submitted before the model retired still gives its results; a new request does not go.
    client = Client(providers={"openai": {"api_key": "sk-test-123456"}})
    today("2026-12-12")
    route = client._engine.route("o3", None)
    route.ensure_ready("o3", sending=False)  # what batch_job does
    with pytest.raises(ConfigurationError, match="retired on 2026-12-11"):
        route.ensure_ready("o3")  # what complete() and submit_batch() do
    client.close()


def test_a_retired_model_is_refused_as_retired_before_the_key_and_the_profile_on_every_capability(
    fake_server: FakeServer, today: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "retired, use X" is the useful answer, whatever else is wrong with the call: every
    # capability asks the route's lifecycle before its profile check and before the key.
    today("2027-02-01")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with Client(providers={"openai": {"base_url": f"{fake_server.url}/v1"}}) as client:  # no key
        with pytest.raises(ConfigurationError, match="openai/gpt-4o was retired on 2027-01-14"):
            client.complete("hi", model="gpt-4o", max_tokens=5)
        with pytest.raises(ConfigurationError, match="openai/gpt-4o was retired on 2027-01-14"):
            client.embed(["hi"], model="openai/gpt-4o")  # and not "does not make embeddings"
    assert fake_server.requests == []
