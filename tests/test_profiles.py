"""Model-family profiles: one table, found by model id whatever the host, used by every adapter.

The cross-host tests run real SDKs against the loopback fakes and assert that a refused request
never reached the wire (the fake's request count stays zero).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from fmclient import providers
from fmclient._validation import REASONING_EFFORTS
from fmclient.client import Client
from fmclient.errors import UnsupportedFeatureError
from fmclient.profiles import DEFAULT_PROFILE, Capabilities, Profile, families, normalise_model_id, profile_for
from fmclient.providers import anthropic as anthropic_adapter
from fmclient.providers import base
from fmclient.providers.anthropic import SAMPLING_REFUSED_REASON, AnthropicProvider
from fmclient.providers.base import ProviderSettings
from fmclient.providers.bedrock import BedrockProvider
from fmclient.providers.gemini import GeminiProvider
from fmclient.providers.llamacpp import LlamaCppProvider
from fmclient.providers.ollama import OllamaProvider
from fmclient.providers.openai import OpenAIProvider
from fmclient.testing import MockProvider
from fmclient.types import ImagePart, Message, Request, TextPart, Tool
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.openai import Answer, FakeOpenAI, completion_body
from tests.fakes.server import FakeServer, Reply

WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def req(model: str = "m", *messages: Message, **kwargs: Any) -> Request:
    return Request(model=model, messages=messages or (Message("user", "hi"),), **kwargs)


# == lookup =====================================================================================
@pytest.mark.parametrize(
    ("model", "family"),
    [
        # Anthropic, Bedrock (with and without cross-region prefixes, ARNs), Vertex
        ("claude-sonnet-4-5-20250929", "claude-4-5"),
        ("claude-sonnet-4-5", "claude-4-5"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-4-5"),
        ("eu.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-4-5"),
        ("apac.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("global.anthropic.claude-opus-4-5-20251101-v1:0", "claude-4-5"),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", "claude-3"),
        ("claude-sonnet-4-5@20250929", "claude-4-5"),
        ("publishers/anthropic/models/claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("anthropic.claude-v2:1", "claude-legacy"),
        ("claude-2.1", "claude-legacy"),
        ("anthropic.claude-instant-v1", "claude-legacy"),
        ("claude-sonnet-5-5", "claude-sonnet-5-5"),
        ("claude-opus-5", "claude-5"),
        ("claude-opus-4-6", "claude-4-6"),
        ("claude-opus-4-7", "claude-4-7"),
        ("us.anthropic.claude-opus-5-5-v1:0", "claude-opus-5-5"),
        ("claude-fable-5-1", "claude-opus-5-5"),
        ("claude-mythos-5", "claude-5"),
        # Meta Llama on Bedrock, Ollama, Hugging Face ids (vLLM)
        ("meta.llama3-1-70b-instruct-v1:0", "llama-3.x"),
        ("us.meta.llama3-2-90b-instruct-v1:0", "llama-vision"),
        ("meta.llama3-8b-instruct-v1:0", "llama-3"),
        ("llama3.2:3b", "llama-3.x"),
        ("llama3.2-vision:11b", "llama-vision"),
        ("llama3", "llama-3"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.x"),
        ("us.meta.llama4-maverick-17b-instruct-v1:0", "llama-vision"),
        # Mistral on Bedrock, Ollama, its API
        ("mistral.mistral-large-2407-v1:0", "mistral-large-2"),
        ("mistral.mistral-7b-instruct-v0:2", "mistral-7b"),
        ("mistral.mixtral-8x7b-instruct-v0:1", "mistral-7b"),
        ("mistral:7b", "mistral-7b"),
        ("mistral-large-latest", "mistral"),
        # Amazon
        ("amazon.titan-text-express-v1", "titan-text"),
        ("amazon.titan-tg1-large", "titan-text"),
        ("amazon.titan-embed-text-v2:0", "titan-embed-v2"),
        ("amazon.titan-embed-text-v1", "titan-embed-v1"),
        ("amazon.nova-pro-v1:0", "nova"),
        ("us.amazon.nova-micro-v1:0", "nova-micro"),
        # OpenAI, fine-tunes
        ("gpt-4o", "gpt-4o"),
        ("ft:gpt-4o-mini-2024-07-18:my-org::abc123", "gpt-4o"),
        ("o3", "openai-o-series"),
        ("o4-mini-2025-04-16", "openai-o-series"),
        ("o3-mini", "openai-o3-mini"),
        ("gpt-5", "gpt-5"),
        ("gpt-5-mini-2025-08-07", "gpt-5"),
        ("gpt-5.1", "gpt-5-x"),
        ("gpt-5-chat-latest", "gpt-5-chat"),
        ("gpt-6.2-astra", "gpt-6"),
        ("gpt-6-luna", "gpt-6"),
        ("gpt-6.1-sol", "gpt-6"),
        ("gpt-4.1-mini", "gpt-4.1"),
        ("gpt-3.5-turbo", "gpt-3.5"),
        ("text-embedding-3-small", "embedding"),
        # Gemini, with the API's and Vertex's prefixes
        ("models/gemini-2.5-flash", "gemini-2.5"),
        ("publishers/google/models/gemini-2.0-flash-001", "gemini-2.0"),
        ("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro", "gemini-2.5"),
        ("gemini-embedding-001", "embedding"),
        ("models/text-embedding-004", "embedding"),
        ("gemma-3-27b-it", "gemma"),
        ("nomic-embed-text", "embedding"),
        # the embedded llama.cpp model
        ("smollm2-135m-instruct", "smollm2"),
    ],
)
def test_lookup_normalises_host_ids_to_the_family(model: str, family: str) -> None:
    assert profile_for(model).family == family


def test_unknown_models_get_the_permissive_default() -> None:
    for model in ("my-finetune", "qwen2.5:7b", "deepseek.r1-v1:0", ""):
        assert profile_for(model) is DEFAULT_PROFILE
    assert Profile() == DEFAULT_PROFILE
    DEFAULT_PROFILE.check(
        req(system="s", tools=(WEATHER,), tool_choice="get_weather", temperature=0.1, top_p=0.5, max_tokens=10**6),
        provider="p",
        streaming=True,
    )


def test_normalised_ids() -> None:
    assert normalise_model_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == "claude-sonnet-4-5-20250929-v1"
    assert normalise_model_id("claude-sonnet-4-5@20250929") == "claude-sonnet-4-5"
    assert normalise_model_id("ft:gpt-4o-mini-2024-07-18:org::id") == "gpt-4o-mini-2024-07-18"
    assert normalise_model_id("llama3.2:3b") == "llama3.2"
    assert normalise_model_id("publishers/google/models/gemini-2.5-pro") == "gemini-2.5-pro"
    assert normalise_model_id("models/gemini-2.5-pro") == "gemini-2.5-pro"


def test_the_table_loads_and_every_family_is_reachable() -> None:
    table = families()
    names = [name for name, _, _ in table]
    assert len(names) == len(set(names)) > 30
    for name, pattern, profile in table:
        assert profile.family == name
        assert re.compile(pattern)  # compiled at load
        if profile.max_output_tokens is not None and profile.context_window is not None:
            assert profile.max_output_tokens <= profile.context_window, name


def test_capabilities_is_the_profile_type_everywhere() -> None:
    assert base.Capabilities is Profile is Capabilities is providers.Capabilities


def test_openai_reasoning_rules_are_in_the_profile() -> None:
    for model in ("o3", "gpt-5", "gpt-5-nano"):
        profile = profile_for(model)
        assert (profile.system_role, profile.max_tokens_param, profile.reasoning) == (
            "developer",
            "max_completion_tokens",
            True,
        )
        assert not (profile.temperature or profile.top_p or profile.stop)
    assert profile_for("gpt-4o").system_role == "system"
    assert profile_for("gpt-5.1").temperature  # later gpt-5.x: the API decides by reasoning effort


# == the record: restrict and check =============================================================
def test_restrict_only_narrows_and_its_reason_is_quoted() -> None:
    profile = profile_for("claude-sonnet-4-5")
    narrowed = profile.restrict(temperature=False, max_output_tokens=1000, reason="the host says so")
    assert profile.temperature and not narrowed.temperature and narrowed.max_output_tokens == 1000
    with pytest.raises(UnsupportedFeatureError, match=r"does not support temperature: the host says so"):
        narrowed.check(req("claude-sonnet-4-5", temperature=0.2), provider="p")
    with pytest.raises(ValueError, match="only restrict"):
        profile_for("claude-2.1").restrict(tools=True, reason="no")
    with pytest.raises(ValueError, match="reason"):
        profile.restrict(temperature=False, reason="")
    with pytest.raises(TypeError, match="no restrictable field"):
        profile.restrict(family="x", reason="r")
    # limits only go down; a field the family already refuses keeps the family's own message
    assert profile.restrict(max_output_tokens=10**9, reason="r") is profile
    legacy = profile_for("claude-2.1")
    assert legacy.restrict(tools=False, reason="r") is legacy


@pytest.mark.parametrize(
    ("model", "kwargs", "streaming", "fragment"),
    [
        ("claude-sonnet-5-5", {"tools": (WEATHER,), "tool_choice": "required"}, False, "a forced tool choice"),
        ("claude-sonnet-5-5", {"tools": (WEATHER,), "tool_choice": "get_weather"}, False, "forcing a named tool"),
        ("claude-sonnet-4-5", {"max_tokens": 64_001}, False, "max_tokens=64001 (its maximum output is 64000"),
        ("claude-sonnet-4-5", {"temperature": 0.5, "top_p": 0.9}, False, "temperature and top_p together"),
        ("claude-sonnet-5", {"temperature": 0.5}, False, "temperature"),
        ("claude-opus-5-5", {"tools": (WEATHER,), "tool_choice": "required"}, False, "a forced tool choice"),
        ("claude-haiku-5-5", {"reasoning": 2048}, False, "reasoning=2048 as a token budget"),
        (
            "claude-haiku-5-5",
            {"reasoning": 2048},
            False,
            "(it takes an effort: 'low', 'medium', 'high', 'xhigh' or 'max')",
        ),
        ("claude-opus-5-5", {"reasoning": "none"}, False, "reasoning='none' (it takes an effort: 'low', 'medium',"),
        ("claude-opus-4-6", {"reasoning": "minimal"}, False, "reasoning='minimal'"),
        ("o3", {"reasoning": "xhigh"}, False, "reasoning='xhigh' (it takes an effort: 'low', 'medium' or 'high')"),
        ("o3-mini", {"reasoning": "minimal"}, False, "reasoning='minimal'"),
        ("gpt-5", {"reasoning": "none"}, False, "(it takes an effort: 'minimal', 'low', 'medium' or 'high')"),
        ("gpt-6-luna", {"reasoning": "minimal"}, False, "'none', 'low', 'medium', 'high', 'xhigh' or 'max')"),
        ("claude-2.1", {"tools": (WEATHER,)}, False, "tools"),
        ("o3", {"stop": ("x",)}, False, "stop sequences"),
        ("text-embedding-3-small", {}, False, "chat completions"),
    ],
)
def test_check_refuses_what_the_family_does_not_take(
    model: str, kwargs: dict[str, Any], streaming: bool, fragment: str
) -> None:
    with pytest.raises(UnsupportedFeatureError, match=re.escape(fragment)) as caught:
        profile_for(model).check(req(model, **kwargs), provider="p", streaming=streaming)
    assert model in str(caught.value)
    profile_for("claude-sonnet-4-5").check(req("claude-sonnet-4-5", max_tokens=64_000), provider="p")


@pytest.mark.parametrize(
    ("model", "efforts"),
    [
        ("gpt-6-luna", ("none", "low", "medium", "high", "xhigh", "max")),
        ("gpt-5-mini", ("minimal", "low", "medium", "high")),
        ("o3", ("low", "medium", "high")),
        ("o4-mini", ("low", "medium", "high")),
        ("claude-opus-5-5", ("low", "medium", "high", "xhigh", "max")),
        ("claude-sonnet-4-6", ("low", "medium", "high", "xhigh", "max")),
    ],
)
def test_a_family_takes_exactly_its_reasoning_efforts(model: str, efforts: tuple[str, ...]) -> None:
    profile = profile_for(model)
    assert profile.reasoning_efforts == efforts
    for effort in REASONING_EFFORTS:
        if effort in efforts:
            profile.check(req(model, reasoning=effort), provider="p")
        else:
            with pytest.raises(UnsupportedFeatureError, match=f"reasoning={effort!r}"):
                profile.check(req(model, reasoning=effort), provider="p")


def test_reasoning_efforts_in_the_table_are_known_efforts_of_reasoning_families() -> None:
    listed = [(name, profile) for name, _, profile in families() if profile.reasoning_efforts is not None]
    assert {name for name, _ in listed} >= {"gpt-6", "gpt-5", "openai-o-series", "claude-opus-5-5", "claude-4-6"}
    for name, profile in listed:
        assert profile.reasoning, name
        assert profile.reasoning_efforts and set(profile.reasoning_efforts) <= set(REASONING_EFFORTS), name
        # listed least to most, as REASONING_EFFORTS is
        assert list(profile.reasoning_efforts) == sorted(profile.reasoning_efforts, key=REASONING_EFFORTS.index), name
    # where the efforts are not known here (later gpt-5.x, Gemini, budget-only Claude), the server decides
    for model in ("gpt-5.1", "gemini-3-pro-preview", "claude-sonnet-4-5", "my-model"):
        assert profile_for(model).reasoning_efforts is None, model
    for effort in REASONING_EFFORTS:
        DEFAULT_PROFILE.check(req("my-model", reasoning=effort), provider="vllm")
        profile_for("gpt-5.1").check(req("gpt-5.1", reasoning=effort), provider="openai")


def test_streaming_with_tools_is_a_host_restriction() -> None:
    llama = "meta.llama3-1-70b-instruct-v1:0"
    request = req(llama, tools=(WEATHER,))
    profile_for(llama, "ollama").check(request, provider="ollama", streaming=True)
    with pytest.raises(UnsupportedFeatureError, match="tools in a streamed call: Bedrock ConverseStream"):
        profile_for(llama, "bedrock").check(request, provider="bedrock", streaming=True)
    profile_for(llama, "bedrock").check(request, provider="bedrock", streaming=False)


# == every adapter uses the table ================================================================
def test_every_adapter_starts_from_the_family_profile() -> None:
    def make(cls: type[Any], name: str, **settings: Any) -> Any:
        return cls(ProviderSettings(name=name, type=name, **settings))

    assert make(AnthropicProvider, "anthropic").capabilities("claude-3-haiku-20240307").max_output_tokens == 4096
    bedrock = make(BedrockProvider, "bedrock")
    assert bedrock.capabilities("anthropic.claude-3-haiku-20240307-v1:0").max_output_tokens == 4096
    assert bedrock.capabilities("amazon.titan-embed-text-v2:0").embeddings
    assert not bedrock.capabilities("cohere.embed-english-v3").embeddings
    assert bedrock.capabilities("anthropic.claude-sonnet-4-5-20250929-v1:0").structured_output_mode == "json_schema"
    gemini = make(GeminiProvider, "gemini")
    assert gemini.capabilities("gemini-2.5-flash").max_output_tokens == 65536
    assert gemini.capabilities("gemini-2.5-flash").max_stop_sequences == 5
    assert not gemini.capabilities("gemma-3-27b-it").system
    ollama = make(OllamaProvider, "ollama")
    assert not ollama.capabilities("llama3.2:3b").images and ollama.capabilities("llama3.2-vision").images
    assert ollama.capabilities("llama3.2").embeddings  # Ollama embeds with any model it serves
    assert ollama.capabilities("gemma3").system  # Gemma's Gemini-API restriction is not Ollama's
    assert ollama.capabilities("llama3.2").structured_output_mode == "json_grammar"
    llamacpp = make(LlamaCppProvider, "llamacpp")
    smol = llamacpp.capabilities("smollm2-135m-instruct")
    assert (smol.family, smol.tools, smol.images, smol.embeddings) == ("smollm2", False, False, True)
    native = make(OpenAIProvider, "openai")
    assert native.capabilities("o3").system_role == "developer"
    assert native.capabilities("gpt-4o").max_stop_sequences == 4
    compatible = OpenAIProvider(ProviderSettings(name="vllm", type="openai", base_url="http://localhost:8000/v1"))
    assert compatible.capabilities("o3") == DEFAULT_PROFILE.with_host_embeddings()


def test_anthropic_api_version_refusal_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(anthropic_adapter, "sdk_accepts_sampling", lambda: False)
    profile = AnthropicProvider._capabilities_for("claude-sonnet-4-5")
    with pytest.raises(UnsupportedFeatureError) as caught:
        profile.check(req("claude-sonnet-4-5", temperature=0.3), provider="anthropic")
    assert "anthropic-version 2026-10-21" in str(caught.value)
    assert SAMPLING_REFUSED_REASON in str(caught.value)
    monkeypatch.setattr(anthropic_adapter, "sdk_accepts_sampling", lambda: True)
    AnthropicProvider._capabilities_for("claude-sonnet-4-5").check(
        req("claude-sonnet-4-5", temperature=0.3), provider="anthropic"
    )


# == the same Claude request through Anthropic and Bedrock ========================================
@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def bedrock_fake(aws_env: None) -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def two_hosts(fake_server: FakeServer, bedrock_fake: FakeBedrock) -> Iterator[Client]:
    client = Client(
        providers={
            "anthropic": {"base_url": fake_server.url, "api_key": "test-key-profiles"},
            "bedrock": {"base_url": bedrock_fake.url, "region": "us-east-1"},
        },
        max_retries=0,
    )
    with client:
        yield client


PREFILL = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "The colour is"}]
IMAGE_PROMPT = [{"role": "user", "content": [TextPart("What is this?"), ImagePart(data=PNG, media_type="image/png")]}]

# (Anthropic id, Bedrock id, call keywords, what the refusal names)
CLAUDE_REFUSALS = [
    (
        "claude-sonnet-4-5-20250929",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        {"max_tokens": 100_000},
        "max_tokens",
    ),
    ("claude-3-haiku-20240307", "anthropic.claude-3-haiku-20240307-v1:0", {"max_tokens": 5000}, "max_tokens"),
    (
        "claude-sonnet-4-5-20250929",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        {"temperature": 0.4, "top_p": 0.9},
        "",
    ),
    (
        "claude-sonnet-5-5",
        "anthropic.claude-sonnet-5-5-v1:0",
        {"tools": [WEATHER], "tool_choice": "required"},
        "forced",
    ),
    (
        "claude-sonnet-5-5",
        "anthropic.claude-sonnet-5-5-v1:0",
        {"tools": [WEATHER], "tool_choice": "get_weather"},
        "named tool",
    ),
    ("claude-sonnet-5", "anthropic.claude-sonnet-5-v1:0", {"temperature": 0.2}, "temperature"),
    ("claude-2.1", "anthropic.claude-v2:1", {"tools": [WEATHER]}, "tools"),
    ("claude-sonnet-5-5", "anthropic.claude-sonnet-5-5-v1:0", {"prompt": PREFILL}, "prefilled assistant turn"),
    ("claude-2.1", "anthropic.claude-v2:1", {"prompt": IMAGE_PROMPT}, "image input"),
    ("claude-2.1", "anthropic.claude-v2:1", {"response_format": {"type": "object"}}, "structured output"),
]


@pytest.mark.parametrize(("anthropic_id", "bedrock_id", "kwargs", "what"), CLAUDE_REFUSALS)
@pytest.mark.parametrize("streaming", [False, True])
def test_same_claude_request_gets_the_same_refusal_on_anthropic_and_bedrock(
    two_hosts: Client,
    fake_server: FakeServer,
    bedrock_fake: FakeBedrock,
    anthropic_id: str,
    bedrock_id: str,
    kwargs: dict[str, Any],
    what: str,
    streaming: bool,
) -> None:
    kwargs = dict(kwargs)
    prompt = kwargs.pop("prompt", "hi")
    messages: list[str] = []
    for model in (f"anthropic/{anthropic_id}", f"bedrock/{bedrock_id}"):
        with pytest.raises(UnsupportedFeatureError) as caught:
            if streaming:
                two_hosts.stream(prompt, model=model, **kwargs).completion  # noqa: B018
            else:
                two_hosts.complete(prompt, model=model, **kwargs)
        messages.append(str(caught.value))
    assert fake_server.requests == [] and bedrock_fake.requests == []
    anthropic_what, bedrock_what = (m.split("does not support ", 1)[1] for m in messages)
    assert what in anthropic_what and what in bedrock_what
    if what:  # the family's own refusal: the same words on both hosts
        assert anthropic_what == bedrock_what


def test_claude_on_bedrock_takes_what_the_anthropic_sdk_version_refuses(
    two_hosts: Client, bedrock_fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sampling refusal is the anthropic SDK's API version, a host reason: Bedrock sends it.
    from tests.fakes.bedrock import converse_reply

    monkeypatch.setattr(anthropic_adapter, "sdk_accepts_sampling", lambda: False)
    bedrock_fake.queue(converse_reply(text="ok"))
    assert two_hosts.complete("hi", model="bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", temperature=0.3).text
    assert bedrock_fake.server.requests[0].json()["inferenceConfig"] == {"temperature": 0.3}
    fresh = AnthropicProvider(ProviderSettings(name="anthropic", type="anthropic", api_key=None))
    with pytest.raises(UnsupportedFeatureError, match="anthropic-version 2026-10-21"):
        fresh.capabilities("claude-sonnet-4-5-20250929").check(
            req("claude-sonnet-4-5-20250929", temperature=0.3), provider="anthropic"
        )


@pytest.mark.parametrize(
    ("model", "choice"),
    [
        ("meta.llama3-1-70b-instruct-v1:0", "required"),
        ("us.meta.llama3-2-90b-instruct-v1:0", "get_weather"),
        ("mistral.mistral-large-2407-v1:0", "get_weather"),
        ("cohere.command-r-plus-v1:0", "required"),
    ],
)
def test_forced_tool_choice_refused_on_bedrock_families_that_reject_it(
    bedrock_fake: FakeBedrock, model: str, choice: str
) -> None:
    with (
        Client(providers={"bedrock": {"base_url": bedrock_fake.url}}, max_retries=0) as client,
        pytest.raises(UnsupportedFeatureError, match="Bedrock Converse accepts toolChoice") as caught,
    ):
        client.complete("weather?", model=f"bedrock/{model}", tools=[WEATHER], tool_choice=choice)
    assert model in str(caught.value)
    assert bedrock_fake.requests == []


def test_forced_tool_choice_reaches_bedrock_for_families_that_take_it(bedrock_fake: FakeBedrock) -> None:
    from tests.fakes.bedrock import converse_reply

    bedrock_fake.queue(converse_reply(text="ok"), converse_reply(text="ok"))
    with Client(providers={"bedrock": {"base_url": bedrock_fake.url}}, max_retries=0) as client:
        client.complete("w?", model="bedrock/us.amazon.nova-pro-v1:0", tools=[WEATHER], tool_choice="get_weather")
        client.complete("w?", model="bedrock/mistral.mistral-large-2407-v1:0", tools=[WEATHER], tool_choice="required")
    choices = [r.json()["toolConfig"]["toolChoice"] for r in bedrock_fake.requests]
    assert choices == [{"tool": {"name": "get_weather"}}, {"any": {}}]


# == OpenAI reasoning-model rules over the wire ===================================================
def test_openai_o_series_gets_developer_role_and_max_completion_tokens(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("ok"), Answer("ok"))
    # Chat Completions pinned: by default o3 goes to the Responses API (tests/test_openai_responses.py)
    table = {"base_url": fake_server.url + "/v1", "api_key": "test-key-profiles", "api": "chat"}
    with Client(providers={"openai": table}, max_retries=0) as client:
        client.complete("hi", model="openai/o3", system="Be brief.", max_tokens=50)
        client.complete("hi", model="openai/gpt-4o", system="Be brief.", max_tokens=50)
        with pytest.raises(UnsupportedFeatureError, match="'o3' does not support temperature"):
            client.complete("hi", model="openai/o3", temperature=0.2)
        with pytest.raises(UnsupportedFeatureError, match="'gpt-5' does not support stop sequences"):
            client.complete("hi", model="openai/gpt-5", stop=["x"])
    reasoning, chat = fake.bodies()
    assert reasoning["messages"][0] == {"role": "developer", "content": "Be brief."}
    assert reasoning["max_completion_tokens"] == 50 and "max_tokens" not in reasoning
    assert chat["messages"][0] == {"role": "system", "content": "Be brief."}
    assert len(fake_server.requests) == 2  # the refused calls sent nothing


def test_openai_compatible_server_stays_permissive(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("ok"))
    table = {"type": "openai", "base_url": fake_server.url + "/v1"}
    with Client(providers={"vllm": table}, max_retries=0) as client:
        client.complete("hi", model="vllm/o3", system="Be brief.", max_tokens=5, temperature=0.2)
    (body,) = fake.bodies()
    assert body["messages"][0]["role"] == "system"
    assert (body["max_tokens"], body["temperature"]) == (5, 0.2)


# == the mock enforces real profiles (issue 10 §4k) ===============================================
def test_mock_refuses_what_production_would() -> None:
    with MockProvider() as mock:
        with pytest.raises(UnsupportedFeatureError, match="does not support temperature"):
            Client().complete("hi", model="openai/o3", temperature=0.5)  # alias -> openai/o3
        with pytest.raises(UnsupportedFeatureError, match="does not support tools"):
            Client().complete("hi", model="llama-local", tools=[WEATHER])  # the embedded SmolLM2
        with pytest.raises(UnsupportedFeatureError, match="forced tool choice"):
            Client().complete("hi", model="ollama/llama3.2", tools=[WEATHER], tool_choice="required")
        with pytest.raises(UnsupportedFeatureError, match="does not make embeddings"):
            Client().embed(["x"], model="openai/gpt-4o")
        # unknown models and compatible servers stay permissive, as in production
        Client().complete("hi", model="ollama/some-custom-model", tools=[WEATHER], temperature=0.1)
        Client().complete("hi", model="mistral-large", temperature=0.1)
        assert len(mock.calls) == 2


def test_mock_applies_the_hosts_restrictions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(anthropic_adapter, "sdk_accepts_sampling", lambda: False)
    with MockProvider() as mock:
        with pytest.raises(UnsupportedFeatureError, match="anthropic-version"):
            Client().complete("hi", model="anthropic/claude-haiku-4-5", temperature=0.5)
        Client().complete("hi", model="bedrock/anthropic.claude-haiku-4-5-20251001-v1:0", temperature=0.5)
    assert len(mock.calls) == 1


def test_mock_opt_out_accepts_everything() -> None:
    with MockProvider(enforce_profiles=False) as mock:
        Client().complete("hi", model="openai/o3", temperature=0.5, stop=["x"])
        Client().complete("hi", model="llama-local", tools=[WEATHER], tool_choice="required")
    assert len(mock.calls) == 2


@pytest.mark.fmclient_mock(enforce_profiles=False)
def test_fixture_opt_out_by_marker(fmclient_mock: MockProvider) -> None:
    Client().complete("hi", model="openai/o3", temperature=0.5)
    assert fmclient_mock.last_request.temperature == 0.5


def test_fixture_enforces_by_default(fmclient_mock: MockProvider) -> None:
    with pytest.raises(UnsupportedFeatureError):
        Client().complete("hi", model="openai/o3", temperature=0.5)
    assert fmclient_mock.calls == []


# -- every model id the installed SDKs list falls into a family whose facts are its own -------------
# Reviewed by hand against the providers' model pages (sources in families.toml). A new SDK release
# that lists a new id fails the first test below until someone decides where it belongs. "" is the
# permissive default (no facts asserted); "gpt" and "claude" are the catch-alls that assert none
# of the limits.
SDK_IDS_BY_FAMILY: dict[str, list[str]] = {
    "": ["chatgpt-image-latest", "codex-mini-latest", "dall-e-2", "dall-e-3"],
    "gpt-3.5": ["gpt-3.5-turbo", "gpt-3.5-turbo-0125", "gpt-3.5-turbo-1106"],
    "gpt-3.5-4k": ["gpt-3.5-turbo-0301", "gpt-3.5-turbo-0613"],
    "gpt-3.5-16k": ["gpt-3.5-turbo-16k", "gpt-3.5-turbo-16k-0613"],
    "gpt-4": ["gpt-4", "gpt-4-0314", "gpt-4-0613"],
    "gpt-4-32k": ["gpt-4-32k", "gpt-4-32k-0314", "gpt-4-32k-0613"],
    "gpt-4-turbo-preview": ["gpt-4-0125-preview", "gpt-4-1106-preview", "gpt-4-turbo-preview"],
    "gpt-4-turbo": ["gpt-4-turbo", "gpt-4-turbo-2024-04-09", "gpt-4-vision-preview"],
    "gpt-4o-2024-05-13": ["gpt-4o-2024-05-13"],
    "gpt-4o": [
        "chatgpt-4o-latest",
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "gpt-4o-2024-11-20",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
    ],
    "openai-audio": [
        "gpt-4o-audio-preview",
        "gpt-4o-audio-preview-2024-10-01",
        "gpt-4o-audio-preview-2024-12-17",
        "gpt-4o-audio-preview-2025-06-03",
        "gpt-4o-mini-audio-preview",
        "gpt-4o-mini-audio-preview-2024-12-17",
        "gpt-audio-mini",
        "gpt-audio-mini-2025-12-15",
    ],
    "gpt": [
        "gpt-4o-mini-search-preview",
        "gpt-4o-mini-search-preview-2025-03-11",
        "gpt-4o-search-preview",
        "gpt-4o-search-preview-2025-03-11",
    ],
    "gpt-4.1": [
        "gpt-4.1",
        "gpt-4.1-2025-04-14",
        "gpt-4.1-mini",
        "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano",
        "gpt-4.1-nano-2025-04-14",
    ],
    "gpt-5": [
        "gpt-5",
        "gpt-5-2025-08-07",
        "gpt-5-mini",
        "gpt-5-mini-2025-08-07",
        "gpt-5-nano",
        "gpt-5-nano-2025-08-07",
    ],
    "gpt-5-chat": ["gpt-5-chat-latest", "gpt-5.1-chat-latest", "gpt-5.2-chat-latest", "gpt-5.3-chat-latest"],
    "gpt-5-x": [
        "gpt-5.1",
        "gpt-5.1-2025-11-13",
        "gpt-5.1-codex",
        "gpt-5.1-mini",
        "gpt-5.2",
        "gpt-5.2-2025-12-11",
        "gpt-5.2-pro",
        "gpt-5.2-pro-2025-12-11",
        "gpt-5.4",
        "gpt-5.4-mini",
        "gpt-5.4-mini-2026-03-17",
        "gpt-5.4-nano",
        "gpt-5.4-nano-2026-03-17",
        "gpt-5.5",
        "gpt-5.5-2026-04-23",
        "gpt-5.6-luna",
        "gpt-5.6-sol",
        "gpt-5.6-terra",
    ],
    "gpt-6": ["gpt-6-astra", "gpt-6-luna", "gpt-6-sol", "gpt-6.1-sol", "gpt-6.1-terra", "gpt-6.2-astra", "gpt-6.2-sol"],
    "gpt-image-1": ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"],
    "gpt-image-2": ["gpt-image-2", "gpt-image-2-2026-04-21"],
    "gpt-image-2.5": [
        "gpt-image-2.5-flare",
        "gpt-image-2.5-flare-2026-09-08",
        "gpt-image-2.5-sunburst",
        "gpt-image-2.5-sunburst-2026-09-08",
    ],
    "gpt-image-2.6": ["gpt-image-2.6-flare", "gpt-image-2.6-sunburst"],
    "openai-o-series": ["o1", "o1-2024-12-17", "o3", "o3-2025-04-16", "o4-mini", "o4-mini-2025-04-16"],
    "openai-o1-mini": ["o1-mini", "o1-mini-2024-09-12", "o1-preview", "o1-preview-2024-09-12"],
    "openai-o3-mini": ["o3-mini", "o3-mini-2025-01-31"],
    "embedding": ["text-embedding-3-large", "text-embedding-3-small", "text-embedding-ada-002"],
    "whisper": ["whisper-1"],
    "openai-transcribe": [
        "gpt-transcribe",
        "gpt-4o-transcribe",
        "gpt-4o-transcribe-diarize",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
    ],
    "tts-1": ["tts-1", "tts-1-hd"],
    "openai-tts": ["gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"],
    "claude-4-5": ["claude-haiku-4-5", "claude-haiku-4-5-20251001", "claude-opus-4-5", "claude-opus-4-5-20251101"],
    "claude-4-6": ["claude-opus-4-6", "claude-sonnet-4-6"],
    "claude-4-7": ["claude-opus-4-7", "claude-opus-4-8"],
    "claude-5": [
        "claude-fable-5",
        "claude-fable-5-2",
        "claude-haiku-5-5",
        "claude-mythos-5",
        "claude-mythos-5-1",
        "claude-mythos-5-2",
        "claude-opus-5",
        "claude-sonnet-5",
    ],
    "claude-opus-5-5": ["claude-fable-5-1", "claude-opus-5-5"],
    "claude-sonnet-5-5": ["claude-sonnet-5-5"],
    "claude": ["claude-mythos-preview"],
}
REVIEWED = {model: family for family, models in SDK_IDS_BY_FAMILY.items() for model in models}


def sdk_model_ids() -> list[tuple[str, str]]:
    from fmclient.deprecations import known_models

    found = [(maker, model) for maker in ("openai", "anthropic") for model in sorted(known_models(maker) or ())]
    assert len(found) > 100  # both SDKs are installed in the dev environment and list their models
    return found


@pytest.mark.parametrize(("maker", "model"), sdk_model_ids())
def test_every_sdk_model_id_falls_into_the_family_reviewed_for_it(maker: str, model: str) -> None:
    assert model in REVIEWED, f"{model} ({maker} SDK) is new: decide which family's facts are its own"
    assert profile_for(model).family == REVIEWED[model]


@pytest.mark.parametrize(("maker", "model"), sdk_model_ids())
def test_every_sdk_model_id_resolves_bare_to_its_maker(maker: str, model: str) -> None:
    from fmclient.profiles import native_provider

    assert native_provider(model) == maker


@pytest.mark.parametrize(
    ("model", "context", "output", "images"),
    [
        ("gpt-4-0125-preview", 128000, 4096, False),  # GPT-4 Turbo preview, not GPT-4's 8K
        ("gpt-4-1106-preview", 128000, 4096, False),
        ("gpt-4-turbo-preview", 128000, 4096, False),
        ("gpt-4-turbo-2024-04-09", 128000, 4096, True),
        ("gpt-4-32k", 32768, None, False),  # 32K, not 8K
        ("gpt-4-32k-0613", 32768, None, False),
        ("gpt-4-0613", 8192, 8192, False),
        ("gpt-3.5-turbo-0613", 4096, None, False),  # 4K, not 16K
        ("gpt-3.5-turbo-16k", 16385, None, False),
        ("gpt-3.5-turbo-0125", 16385, 4096, False),
        ("gpt-4o-2024-05-13", 128000, 4096, True),  # the first snapshot's output limit
        ("gpt-4o-2024-08-06", 128000, 16384, True),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", 128000, 16384, True),
    ],
)
def test_the_limits_of_gpt_4_and_3_5_snapshots_are_their_own(
    model: str, context: int, output: int | None, images: bool
) -> None:
    profile = profile_for(model)
    assert (profile.context_window, profile.max_output_tokens, profile.images) == (context, output, images)


def test_a_gpt_4_turbo_preview_is_no_longer_refused_above_8k(fake_server: FakeServer) -> None:
    # The wrong family refused max_tokens above 8,192 for a 128K model, and allowed 8,192 output
    # for a model whose limit is 4,096.
    fake_server.queue(Reply(body=completion_body(Answer(text="ok"))))
    providers = {"openai": {"base_url": f"{fake_server.url}/v1", "api_key": "sk-test-123456"}}
    with Client(providers=providers) as client:
        with pytest.raises(UnsupportedFeatureError, match="its maximum output is 4096 tokens"):
            client.complete("hi", model="openai/gpt-4-0125-preview", max_tokens=8000)
        assert fake_server.requests == []
        assert client.complete("hi", model="openai/gpt-4-0125-preview", max_tokens=4096).text == "ok"
    body = fake_server.requests[0].json()
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 4096


def test_a_request_checked_once_is_still_checked_for_streaming_and_against_other_profiles() -> None:
    # A request that passed one check is checked again for a stream and against another profile
    # (any memo of passed checks must keep this).
    from dataclasses import replace

    from fmclient._validation import build_request

    request = build_request("hi", model="m", max_tokens=100)
    open_profile = replace(DEFAULT_PROFILE, streaming=False, max_output_tokens=None)
    open_profile.check(request, provider="p")
    open_profile.check(request, provider="p")  # the same pair again: passes, as before
    with pytest.raises(UnsupportedFeatureError, match="streaming"):
        open_profile.check(request, provider="p", streaming=True)
    strict = replace(DEFAULT_PROFILE, max_output_tokens=50)
    with pytest.raises(UnsupportedFeatureError, match="max_tokens=100"):
        strict.check(request, provider="p")
    # A new request object with the same content is checked again (identity, not equality).
    with pytest.raises(UnsupportedFeatureError, match="max_tokens=100"):
        strict.check(build_request("hi", model="m", max_tokens=100), provider="p")
