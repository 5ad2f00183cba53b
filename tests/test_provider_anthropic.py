"""The Anthropic adapter: pure translation, then the real ``anthropic`` SDK against a FakeServer."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fmclient import Client
from fmclient.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFilterError,
    ContextWindowExceededError,
    FMClientError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    StructuredOutputError,
    UnsupportedFeatureError,
)
from fmclient.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicProvider,
    MalformedResponse,
    StreamState,
    build_params,
    finish_reason,
    parse_response,
    parse_stream_event,
    sdk_accepts_sampling,
    usage_from,
)
from fmclient.providers.base import ProviderSettings
from fmclient.secret import Secret
from fmclient.types import (
    Chunk,
    EmbedRequest,
    ImagePart,
    Message,
    Request,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)
from tests.fakes import anthropic as fa
from tests.fakes.server import FakeServer, Reply, sse

MODEL = "claude-sonnet-4-6"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
THINKING_CONTENT = [
    fa.thinking_block("The user wants the weather; call the tool.", "sig-EqQBCgIYAhIM"),
    fa.redacted_thinking_block("EmwKAhgBEgy3va3pzix/LafPsn4a"),
    fa.text_block("Let me check."),
    fa.tool_use_block("toolu_01", "get_weather", {"city": "Paris"}),
]


def req(*messages: Message, **kwargs: Any) -> Request:
    if not messages:
        messages = (Message(role="user", content="hi"),)
    return Request(model=kwargs.pop("model", MODEL), messages=messages, **kwargs)


def settings(server: FakeServer | None = None, **kwargs: Any) -> ProviderSettings:
    kwargs.setdefault("api_key", Secret("test-key-anthropic"))
    if server is not None:
        kwargs.setdefault("base_url", server.url)
    return ProviderSettings(name="anthropic", type="anthropic", **kwargs)


@pytest.fixture
def provider(fake_server: FakeServer) -> Iterator[AnthropicProvider]:
    adapter = AnthropicProvider(settings(fake_server))
    yield adapter
    adapter.close()


@pytest.fixture
def client(fake_server: FakeServer) -> Iterator[Client]:
    made = Client(
        providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}}, max_retries=3
    )
    yield made
    made.close()


def body(server: FakeServer, index: int = -1) -> dict[str, Any]:
    recorded = server.requests[index]
    assert recorded.method == "POST" and recorded.path == fa.MESSAGES_PATH
    data = recorded.json()
    assert isinstance(data, dict)
    return data


# == pure translation ==========================================================================


class TestBuildParams:
    def test_defaults_max_tokens_and_sends_only_what_was_asked(self) -> None:
        params = build_params(req())
        assert params == {
            "model": MODEL,
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": "hi"}],
        }
        assert DEFAULT_MAX_TOKENS == 4096

    def test_sampling_system_stop_and_history(self) -> None:
        params = build_params(
            req(
                Message(role="user", content="one"),
                Message(role="assistant", content="two"),
                Message(role="user", content="three"),
                system="Be terse.",
                max_tokens=99,
                temperature=0.3,
                top_p=0.8,
                stop=("END", "STOP"),
            )
        )
        assert params["system"] == "Be terse."
        assert params["max_tokens"] == 99
        assert params["temperature"] == 0.3
        assert params["top_p"] == 0.8
        assert params["stop_sequences"] == ["END", "STOP"]
        assert params["messages"] == [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ]

    @pytest.mark.parametrize(
        ("choice", "expected"),
        [
            ("auto", {"type": "auto"}),
            ("none", {"type": "none"}),
            ("required", {"type": "any"}),
            ("get_weather", {"type": "tool", "name": "get_weather"}),
        ],
    )
    def test_tools_and_tool_choice(self, choice: str, expected: dict[str, Any]) -> None:
        params = build_params(req(tools=(WEATHER,), tool_choice=choice))
        assert params["tools"] == [
            {"name": "get_weather", "description": "Weather for a city", "input_schema": dict(WEATHER.parameters)}
        ]
        assert params["tool_choice"] == expected

    def test_forcing_a_tool_without_tools_is_refused(self) -> None:
        with pytest.raises(BadRequestError, match="needs tools"):
            build_params(req(tool_choice="required"))
        assert "tool_choice" not in build_params(req(tool_choice="auto"))

    def test_consecutive_tool_results_share_one_user_turn(self) -> None:
        calls = (
            ToolCall("toolu_a", "get_weather", {"city": "Paris"}),
            ToolCall("toolu_b", "get_weather", {"city": "Rome"}),
        )
        params = build_params(
            req(
                Message(role="user", content="weather?"),
                Message(role="assistant", content="Checking.", tool_calls=calls),
                Message(role="tool", content="sunny", tool_call_id="toolu_a", name="get_weather"),
                Message(role="tool", content="rainy", tool_call_id="toolu_b", name="get_weather"),
                Message(role="user", content="thanks"),
            )
        )
        assert params["messages"] == [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_b", "content": "rainy"},
                ],
            },
            {"role": "user", "content": "thanks"},
        ]

    def test_tool_result_with_an_image_keeps_it(self) -> None:
        result = Message(role="tool", tool_call_id="toolu_s", content=(TextPart("screenshot:"), ImagePart(data=PNG)))
        content = build_params(req(result))["messages"][0]["content"][0]["content"]
        assert content[0] == {"type": "text", "text": "screenshot:"}
        assert content[1]["source"]["type"] == "base64"

    def test_tool_result_without_id_is_refused(self) -> None:
        with pytest.raises(BadRequestError, match="tool_call_id"):
            build_params(req(Message(role="tool", content="x")))

    def test_images_bytes_sniffed_and_urls(self) -> None:
        content = (
            TextPart("what is this?"),
            ImagePart(data=PNG),  # no media type given: sniffed
            ImagePart(url="https://example.com/cat.jpg", media_type="image/jpeg"),
        )
        params = build_params(req(Message(role="user", content=content)))
        blocks = params["messages"][0]["content"]
        assert blocks[0] == {"type": "text", "text": "what is this?"}
        assert blocks[1] == {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": ImagePart(data=PNG).base64_data},
        }
        assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}

    def test_unrecognisable_image_bytes_are_refused(self) -> None:
        with pytest.raises(BadRequestError, match="not a PNG"):
            build_params(req(Message(role="user", content=(ImagePart(data=b"nope"),))))

    def test_structured_output_is_native_and_strict(self) -> None:
        schema = {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
            "required": ["name", "age"],
        }
        params = build_params(
            req(
                response_format=ResponseFormat(name="Person", schema=schema),
                provider_options={"output_config": {"effort": "low"}},
            )
        )
        fmt = params["output_config"]["format"]
        assert params["output_config"]["effort"] == "low"  # merged, not replaced
        assert fmt["type"] == "json_schema"
        assert fmt["schema"]["additionalProperties"] is False
        assert fmt["schema"]["required"] == ["name", "age"]
        # The API does not enforce "minimum": the SDK's transform moves it into the description.
        assert "minimum" not in fmt["schema"]["properties"]["age"]
        assert "minimum: 0" in fmt["schema"]["properties"]["age"]["description"]
        assert schema["properties"]["age"] == {"type": "integer", "minimum": 0}  # caller's schema untouched
        assert "tools" not in params and "tool_choice" not in params

    def test_provider_options_pass_through(self) -> None:
        params = build_params(
            req(
                provider_options={
                    "thinking": {"type": "enabled", "budget_tokens": 2048},
                    "metadata": {"user_id": "u-1"},
                }
            )
        )
        assert params["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        assert params["metadata"] == {"user_id": "u-1"}

    def test_provider_state_is_replayed_verbatim(self) -> None:
        assistant = Message(
            role="assistant",
            content="Let me check.",
            tool_calls=(ToolCall("toolu_01", "get_weather", {"city": "Paris"}),),
            provider_state={"anthropic": {"content": THINKING_CONTENT}, "other": {"x": 1}},
        )
        params = build_params(req(Message(role="user", content="weather?"), assistant))
        assert params["messages"][1] == {"role": "assistant", "content": THINKING_CONTENT}
        # Another provider's state is not ours to replay.
        params = build_params(req(Message(role="user", content="weather?"), assistant), provider="claude-proxy")
        assert [b["type"] for b in params["messages"][1]["content"]] == ["text", "tool_use"]


class TestParse:
    def test_text_usage_with_cache_and_model(self) -> None:
        completion = parse_response(
            fa.message("Hi!", usage_=fa.usage(100, 7, cache_creation_input_tokens=20, cache_read_input_tokens=30)),
            model=MODEL,
        )
        assert completion.text == "Hi!"
        assert completion.usage == Usage(
            input_tokens=150, output_tokens=7, cached_input_tokens=30, cache_write_tokens=20
        )
        assert completion.usage.total_tokens == 157
        assert completion.model == fa.MODEL
        assert completion.provider == "anthropic"
        assert completion.message.provider_state is None

    @pytest.mark.parametrize(
        ("stop", "expected"),
        [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "other"),
            (None, "other"),
            ("something_new", "other"),
        ],
    )
    def test_finish_reasons(self, stop: str | None, expected: str) -> None:
        assert finish_reason(stop) == expected
        assert parse_response(fa.message("x", stop_reason=stop)).finish_reason == expected

    def test_tool_calls_and_thinking_state(self) -> None:
        completion = parse_response(fa.message(THINKING_CONTENT, stop_reason="tool_use"), provider="claude")
        assert completion.text == "Let me check."
        assert completion.tool_calls == [ToolCall("toolu_01", "get_weather", {"city": "Paris"})]
        assert completion.message.tool_calls == tuple(completion.tool_calls)
        assert completion.message.provider_state == {"claude": {"content": THINKING_CONTENT}}

    @pytest.mark.parametrize("bad", [{"type": "error"}, {"content": "nope"}, [1, 2], "text"])
    def test_malformed_reply(self, bad: Any) -> None:
        with pytest.raises(MalformedResponse):
            parse_response(bad)

    def test_usage_tolerates_missing_fields(self) -> None:
        assert usage_from(None) == Usage()
        assert usage_from({"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": None}) == Usage(3, 2, 0)

    def test_stream_events_fold_into_chunks(self) -> None:
        state = StreamState(provider="anthropic", model=MODEL)
        events = fa.stream_events(
            THINKING_CONTENT,
            stop_reason="tool_use",
            start_usage=fa.usage(50, 1, cache_read_input_tokens=40, cache_creation_input_tokens=0),
            final_usage={"output_tokens": 33},
        )
        chunks = [c for _, data in events if (c := parse_stream_event(data, state)) is not None]
        assert "".join(c.text for c in chunks) == "Let me check."
        deltas = [d for c in chunks for d in c.tool_calls]
        assert deltas[0].id == "toolu_01" and deltas[0].name == "get_weather" and deltas[0].index == 0
        assert json.loads("".join(d.arguments for d in deltas)) == {"city": "Paris"}
        final = chunks[-1]
        assert final.finish_reason == "tool_calls"
        assert final.usage == Usage(input_tokens=90, output_tokens=33, cached_input_tokens=40)
        assert final.model == fa.MODEL
        assert final.provider_state == {"anthropic": {"content": THINKING_CONTENT}}
        assert all(c.finish_reason is None for c in chunks[:-1])

    def test_stream_event_before_message_start_is_malformed(self) -> None:
        with pytest.raises(MalformedResponse):
            parse_stream_event(fa.text_delta(0, "x")[1], StreamState())


def test_capabilities() -> None:
    adapter = AnthropicProvider(settings())
    caps = adapter.capabilities("claude-sonnet-4-6")
    assert caps.chat and caps.tools and caps.images and caps.structured_output and caps.streaming
    assert not caps.embeddings
    assert not adapter.capabilities("claude-3-5-haiku-20241022").structured_output
    assert not adapter.capabilities("claude-sonnet-4-20250514").structured_output
    assert adapter.capabilities("claude-opus-4-1-20250805").structured_output


def test_sampling_follows_the_sdk_api_version(fake_server: FakeServer) -> None:
    # SDK 2.x speaks anthropic-version 2026-10-21, where temperature/top_p are always a 400;
    # older SDKs (the lowest-versions CI job installs one) speak 2023-06-01, which takes them.
    if int(importlib.metadata.version("anthropic").split(".")[0]) < 2:
        assert sdk_accepts_sampling() is True
        caps = AnthropicProvider(settings()).capabilities(MODEL)
        assert caps.temperature and caps.top_p
        return
    assert sdk_accepts_sampling() is False
    caps = AnthropicProvider(settings()).capabilities(MODEL)
    assert not caps.temperature and not caps.top_p
    client = Client(providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}})
    with pytest.raises(UnsupportedFeatureError, match="temperature"):
        client.complete("hi", model=f"anthropic/{MODEL}", temperature=0.2)
    adapter = AnthropicProvider(settings(fake_server))
    with pytest.raises(UnsupportedFeatureError, match="top_p"):
        adapter.complete(req(top_p=0.5))  # the adapter refuses on its own too
    assert fake_server.requests == []


def test_embed_is_unsupported() -> None:
    with pytest.raises(UnsupportedFeatureError):
        AnthropicProvider(settings()).embed(EmbedRequest(model=MODEL, texts=("a",)))


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = "import sys, fmclient, fmclient.providers.anthropic; assert 'anthropic' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


# == readiness and client set-up ===============================================================


class TestReadiness:
    def test_missing_key_names_the_variable(self) -> None:
        adapter = AnthropicProvider(ProviderSettings(name="anthropic", type="anthropic"))
        with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
            adapter.check_ready(MODEL)

    def test_custom_key_variable_is_named_too(self) -> None:
        adapter = AnthropicProvider(ProviderSettings(name="work", type="anthropic", api_key_env="WORK_KEY"))
        with pytest.raises(ConfigurationError, match="WORK_KEY or ANTHROPIC_API_KEY"):
            adapter.check_ready(MODEL)

    def test_standard_env_key_and_base_url(self, fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key-123456")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_server.url)
        adapter = AnthropicProvider(ProviderSettings(name="anthropic", type="anthropic"))
        adapter.check_ready(MODEL)
        fake_server.queue(fa.message_reply("from env"))
        assert adapter.complete(req()).text == "from env"
        headers = fake_server.requests[0].headers
        assert "env-key-123456" in headers.get("x-api-key", "") + headers.get("authorization", "")
        adapter.close()

    def test_auth_token_is_left_to_the_sdk(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "tok-123456")
        AnthropicProvider(ProviderSettings(name="anthropic", type="anthropic")).check_ready(MODEL)

    def test_unusable_sdk_profile_is_a_configuration_error(
        self, fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path))  # holds no profiles
        adapter = AnthropicProvider(
            ProviderSettings(name="anthropic", type="anthropic", profile="nope", base_url=fake_server.url)
        )
        adapter.check_ready(MODEL)  # a profile is a credential source: the SDK resolves it
        with pytest.raises(ConfigurationError, match="nope"):
            adapter.complete(req())
        assert fake_server.requests == []

    def test_key_never_in_repr(self) -> None:
        adapter = AnthropicProvider(settings())
        assert "test-key-anthropic" not in repr(adapter)

    def test_sdk_client_built_once_with_retries_off(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.message_reply("one"), fa.message_reply("two"))
        provider.complete(req())
        first = provider._client()
        provider.complete(req())
        assert provider._client() is first
        assert first.max_retries == 0
        fake_server.queue(fa.error_reply(500, "boom"))
        with pytest.raises(ServiceUnavailableError):
            provider.complete(req())
        assert len(fake_server.requests) == 3  # the 500 was not retried by the SDK

    def test_async_client_per_loop(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        async def call_twice() -> Any:
            fake_server.queue(fa.message_reply("a"), fa.message_reply("b"))
            await provider.acomplete(req())
            made = provider._aclient()
            await provider.acomplete(req())
            assert provider._aclient() is made
            assert made.max_retries == 0
            return made

        first = asyncio.run(call_twice())
        second = asyncio.run(call_twice())
        assert first is not second

    def test_clients_of_closed_loops_are_released(
        self, fake_server: FakeServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        # asyncio.run per call: the client of each finished loop is released, not kept (with its
        # sockets) forever, and aiohttp is left nothing to report as unclosed.
        import gc

        adapter = AnthropicProvider(settings(fake_server))
        for text in ("a", "b", "c"):
            fake_server.queue(fa.message_reply(text))
            assert asyncio.run(adapter.acomplete(req())).text == text
            assert len(adapter._async._clients) == 1
        adapter.close()
        assert adapter._async._clients == {}
        gc.collect()
        assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]

    def test_unknown_async_transport_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="async_transport"):
            AnthropicProvider(settings(options={"async_transport": "curl"}))

    def test_timeouts_reach_the_sdk(self, fake_server: FakeServer) -> None:
        adapter = AnthropicProvider(settings(fake_server, timeout=42.0))
        fake_server.queue(fa.message_reply(), fa.message_reply())
        adapter.complete(req())
        adapter.complete(req(timeout=7.5))
        assert adapter._client().timeout == 42.0  # settings.timeout: the client's default
        assert fake_server.requests[1].headers["x-stainless-timeout"] == "7.5"  # request.timeout: per call
        adapter.close()

    def test_unknown_provider_option_refused_before_sending(
        self, provider: AnthropicProvider, fake_server: FakeServer
    ) -> None:
        with pytest.raises(BadRequestError, match="frobnicate"):
            provider.complete(req(provider_options={"frobnicate": True}))
        assert fake_server.requests == []


# == over HTTP: the real SDK against the fake API ==============================================


class TestComplete:
    def test_plain_call_sends_everything(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.message_reply("Bonjour!", usage_=fa.usage(12, 3)))
        completion = provider.complete(
            req(
                Message(role="user", content="Say hi"),
                Message(role="assistant", content="Hi"),
                Message(role="user", content="In French"),
                system="You are terse.",
                max_tokens=50,
                stop=("###",),
                provider_options={"metadata": {"user_id": "u-42"}},
            )
        )
        assert completion.text == "Bonjour!"
        assert completion.finish_reason == "stop"
        assert completion.usage == Usage(12, 3, 0)
        assert completion.model == fa.MODEL
        assert completion.provider == "anthropic"
        # raw is the JSON body as a dict, every field as the server sent it
        assert completion.raw == fa.message("Bonjour!", usage_=fa.usage(12, 3))
        sent = body(fake_server)
        assert sent == {
            "model": MODEL,
            "max_tokens": 50,
            "system": "You are terse.",
            "stop_sequences": ["###"],
            "metadata": {"user_id": "u-42"},
            "messages": [
                {"role": "user", "content": "Say hi"},
                {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "In French"},
            ],
        }

    def test_usage_counts_cache_reads_and_writes(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(
            fa.message_reply(
                "ok", usage_=fa.usage(5, 9, cache_creation_input_tokens=1000, cache_read_input_tokens=2000)
            )
        )
        usage = provider.complete(req()).usage
        assert usage == Usage(input_tokens=3005, output_tokens=9, cached_input_tokens=2000, cache_write_tokens=1000)

    def test_tool_call_round_trip(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(
            fa.message_reply(
                [fa.text_block("Checking."), fa.tool_use_block("toolu_9", "get_weather", {"city": "Oslo"})],
                stop_reason="tool_use",
            )
        )
        question = Message(role="user", content="Weather in Oslo?")
        first = provider.complete(req(question, tools=(WEATHER,), tool_choice="required"))
        assert first.finish_reason == "tool_calls"
        assert first.tool_calls == [ToolCall("toolu_9", "get_weather", {"city": "Oslo"})]
        sent = body(fake_server)
        assert sent["tools"] == [
            {"name": "get_weather", "description": "Weather for a city", "input_schema": dict(WEATHER.parameters)}
        ]
        assert sent["tool_choice"] == {"type": "any"}

        fake_server.queue(fa.message_reply("It is 3°C in Oslo."))
        second = provider.complete(
            req(
                question,
                first.message,
                Message.tool_result("toolu_9", {"temp_c": 3}, name="get_weather"),
                tools=(WEATHER,),
            )
        )
        assert second.text == "It is 3°C in Oslo."
        assert body(fake_server)["messages"][1:] == [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_9", "content": '{"temp_c": 3}'},
                ],
            },
        ]

    def test_structured_output_through_the_client(self, client: Client, fake_server: FakeServer) -> None:
        pydantic = pytest.importorskip("pydantic")

        class City(pydantic.BaseModel):
            name: str
            population: int

        fake_server.queue(fa.message_reply('{"name": "Oslo", "population": 709000}'))
        reply = client.complete("Biggest city in Norway?", model=f"anthropic/{MODEL}", response_format=City)
        assert reply.parsed == City(name="Oslo", population=709000)
        fmt = body(fake_server)["output_config"]["format"]
        assert fmt["type"] == "json_schema"
        assert fmt["schema"]["additionalProperties"] is False
        assert set(fmt["schema"]["properties"]) == {"name", "population"}

    def test_image_input_bytes_and_url(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.message_reply("A cat and a dog."))
        content = (
            TextPart("Describe"),
            ImagePart.from_source(PNG),
            ImagePart.from_source("https://example.com/dog.png"),
        )
        assert provider.complete(req(Message(role="user", content=content))).text == "A cat and a dog."
        blocks = body(fake_server)["messages"][0]["content"]
        assert blocks == [
            {"type": "text", "text": "Describe"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": ImagePart(data=PNG).base64_data},
            },
            {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}},
        ]

    @pytest.mark.parametrize("uri", ["s3://bucket/dog.png", "gs://bucket/dog.png"])
    def test_a_storage_uri_is_refused_unsent(
        self, provider: AnthropicProvider, fake_server: FakeServer, uri: str
    ) -> None:
        content = (TextPart("Describe"), ImagePart.from_source(uri))
        with pytest.raises(UnsupportedFeatureError, match=uri.split(":")[0] + "://"):
            provider.complete(req(Message(role="user", content=content)))
        assert fake_server.requests == []

    def test_thinking_signatures_round_trip(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.message_reply(THINKING_CONTENT, stop_reason="tool_use"))
        question = Message(role="user", content="Weather in Paris?")
        thinking = {"type": "enabled", "budget_tokens": 2048}
        first = provider.complete(req(question, tools=(WEATHER,), provider_options={"thinking": thinking}))
        assert body(fake_server)["thinking"] == thinking
        assert first.text == "Let me check."

        fake_server.queue(fa.message_reply("Sunny."))
        provider.complete(
            req(
                question,
                first.message,
                Message.tool_result("toolu_01", "sunny"),
                tools=(WEATHER,),
                provider_options={"thinking": thinking},
            )
        )
        replayed = body(fake_server)["messages"][1]
        assert replayed == {"role": "assistant", "content": THINKING_CONTENT}

    def test_long_requests_are_streamed(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        # With no timeout set the SDK refuses non-streamed calls this long; complete() streams.
        fake_server.queue(fa.stream_reply(fa.stream_events("A long answer.")))
        completion = provider.complete(req(max_tokens=64000))
        assert completion.text == "A long answer."
        assert completion.finish_reason == "stop"
        assert body(fake_server)["stream"] is True
        assert len(fake_server.requests) == 1


class TestStream:
    def test_text_is_the_concatenated_deltas_and_usage_comes_last(
        self, provider: AnthropicProvider, fake_server: FakeServer
    ) -> None:
        fake_server.queue(
            fa.stream_reply(
                fa.stream_events(
                    "The quick brown fox.",
                    pieces=4,
                    start_usage=fa.usage(20, 1, cache_read_input_tokens=8),
                    final_usage={"output_tokens": 6},
                )
            )
        )
        chunks = list(provider.stream(req(system="Be brief.")))
        assert [c.text for c in chunks[:-1]] == ["The q", "uick ", "brown", " fox."]
        assert "".join(c.text for c in chunks) == "The quick brown fox."
        assert all(c.usage is None and c.finish_reason is None for c in chunks[:-1])
        assert chunks[-1].finish_reason == "stop"
        assert chunks[-1].usage == Usage(input_tokens=28, output_tokens=6, cached_input_tokens=8)
        assert chunks[-1].model == fa.MODEL
        sent = body(fake_server)
        assert sent["stream"] is True and sent["system"] == "Be brief."

    def test_streamed_tool_input_nested_deeper_than_the_stack_is_a_structured_output_error(
        self, client: Client, fake_server: FakeServer
    ) -> None:
        deep = "[" * 100_000 + "]" * 100_000
        events = [
            fa.message_start(),
            fa.content_block_start(0, {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}),
            fa.input_json_delta(0, deep),
            fa.content_block_stop(0),
            fa.message_delta("tool_use"),
            fa.message_stop(),
        ]
        fake_server.queue(fa.stream_reply(events))
        stream = client.stream("Weather?", model=f"anthropic/{MODEL}", tools=[WEATHER])
        with pytest.raises(StructuredOutputError):
            list(stream)

    def test_streamed_tool_call_through_the_client(self, client: Client, fake_server: FakeServer) -> None:
        fake_server.queue(
            fa.stream_reply(
                fa.stream_events(
                    [fa.tool_use_block("toolu_5", "get_weather", {"city": "Lima", "unit": "C"})],
                    stop_reason="tool_use",
                    pieces=5,
                )
            )
        )
        stream = client.stream("Weather in Lima?", model=f"anthropic/{MODEL}", tools=[WEATHER])
        deltas = [d for chunk in stream for d in chunk.tool_calls]
        assert len(deltas) > 2  # the arguments really arrived in pieces
        completion = stream.completion
        assert completion.finish_reason == "tool_calls"
        assert completion.tool_calls == [ToolCall("toolu_5", "get_weather", {"city": "Lima", "unit": "C"})]

    def test_streamed_thinking_keeps_signatures(self, client: Client, fake_server: FakeServer) -> None:
        fake_server.queue(fa.stream_reply(fa.stream_events(THINKING_CONTENT, stop_reason="tool_use")))
        stream = client.stream("Weather in Paris?", model=f"anthropic/{MODEL}", tools=[WEATHER])
        completion = stream.completion
        assert completion.text == "Let me check."
        fake_server.queue(fa.message_reply("Sunny."))
        client.complete(
            [Message.user("Weather in Paris?"), completion.message, Message.tool_result("toolu_01", "sunny")],
            model=f"anthropic/{MODEL}",
            tools=[WEATHER],
        )
        assert body(fake_server)["messages"][1] == {"role": "assistant", "content": THINKING_CONTENT}

    def test_stopping_early_closes_the_stream(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.stream_reply(fa.stream_events("one two three four", pieces=4)), fa.message_reply("next"))
        iterator = provider.stream(req())
        assert next(iterator).text == "one t"
        iterator.close()  # type: ignore[attr-defined]
        assert provider.complete(req()).text == "next"


# == errors ====================================================================================


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "message", "expected"),
        [
            (400, "messages: field required", BadRequestError),
            (400, "prompt is too long: 210000 tokens > 200000 maximum", ContextWindowExceededError),
            (
                400,
                "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000",
                ContextWindowExceededError,
            ),
            (400, "Output blocked by content filtering policy", ContentFilterError),
            (401, "invalid x-api-key", AuthenticationError),
            (402, "Your credit balance is too low", BadRequestError),
            (403, "not allowed", PermissionDeniedError),
            (404, "model: claude-nope", ModelNotFoundError),
            (413, "Request exceeds the maximum allowed number of bytes", ContextWindowExceededError),
            (429, "Number of request tokens has exceeded your rate limit", RateLimitError),
            (500, "Internal server error", ServiceUnavailableError),
            (503, "Service unavailable", ServiceUnavailableError),
            (504, "Gateway timeout", ServiceUnavailableError),
            (529, "Overloaded", ServiceUnavailableError),
        ],
    )
    def test_status_errors(
        self,
        provider: AnthropicProvider,
        fake_server: FakeServer,
        status: int,
        message: str,
        expected: type[FMClientError],
    ) -> None:
        fake_server.queue(fa.error_reply(status, message, headers={"retry-after": "7"}))
        with pytest.raises(expected) as info:
            provider.complete(req())
        error = info.value
        assert type(error) is expected
        assert error.status_code == status
        assert error.provider == "anthropic" and error.model == MODEL
        assert message in str(error)
        assert error.retry_after == 7.0
        assert error.retryable is (status in (429, 500, 503, 504, 529))
        assert error.__cause__ is not None and type(error.__cause__).__module__.startswith("anthropic")
        assert len(fake_server.requests) == 1

    def test_error_text_never_carries_the_key(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.error_reply(401, "invalid key test-key-anthropic"))
        with pytest.raises(AuthenticationError) as info:
            provider.complete(req())
        assert "test-key-anthropic" not in str(info.value)

    def test_connection_refused(self) -> None:
        adapter = AnthropicProvider(settings(base_url=f"http://127.0.0.1:{free_port()}"))
        with pytest.raises(APIConnectionError) as info:
            adapter.complete(req())
        assert info.value.retryable
        with pytest.raises(APIConnectionError):
            list(adapter.stream(req()))

    def test_connection_reset(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(Reply(reset=True))
        with pytest.raises(APIConnectionError):
            provider.complete(req())

    def test_timeout(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(Reply(body=fa.message(), delay=0.5))
        with pytest.raises(RequestTimeoutError) as info:
            provider.complete(req(timeout=0.1))
        assert info.value.retryable

    @pytest.mark.parametrize(
        "reply",
        [
            Reply(body="{not json", content_type="application/json"),
            Reply(body="<html>bad gateway</html>", content_type="text/html"),
            Reply(body={"unexpected": True}),
        ],
        ids=["invalid-json", "html", "wrong-shape"],
    )
    def test_malformed_body(self, provider: AnthropicProvider, fake_server: FakeServer, reply: Reply) -> None:
        fake_server.queue(reply)
        with pytest.raises(ServiceUnavailableError, match="malformed response"):
            provider.complete(req())

    @pytest.mark.parametrize(
        ("error_type", "expected", "status"),
        [
            ("overloaded_error", ServiceUnavailableError, 529),
            ("api_error", ServiceUnavailableError, 500),
            ("rate_limit_error", RateLimitError, 429),
            ("invalid_request_error", BadRequestError, 400),
        ],
    )
    def test_error_event_in_stream(
        self,
        provider: AnthropicProvider,
        fake_server: FakeServer,
        error_type: str,
        expected: type[FMClientError],
        status: int,
    ) -> None:
        fake_server.queue(
            fa.stream_reply(
                [
                    fa.message_start(),
                    fa.content_block_start(0, {"type": "text", "text": ""}),
                    fa.text_delta(0, "Hel"),
                    fa.error_event(error_type, "Overloaded" if status == 529 else "went wrong"),
                ]
            )
        )
        chunks: list[Chunk] = []
        with pytest.raises(expected) as info:
            for chunk in provider.stream(req()):
                chunks.append(chunk)
        assert type(info.value) is expected
        assert info.value.status_code == status
        assert [c.text for c in chunks] == ["Hel"]
        assert info.value.partial_text == "Hel"

    def test_stream_cut_mid_body(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        events = fa.stream_events("Hello there, friend", pieces=3)
        fake_server.queue(fa.stream_reply(events, cut_after=5))
        chunks: list[Chunk] = []
        with pytest.raises(APIConnectionError) as info:
            for chunk in provider.stream(req()):
                chunks.append(chunk)
        assert info.value.retryable
        assert chunks and all(c.finish_reason is None for c in chunks)

    def test_stream_ending_without_message_stop(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        events = fa.stream_events("Hello there", pieces=2)
        fake_server.queue(fa.stream_reply(events[:-1]))  # a clean end of body, no message_stop
        with pytest.raises(APIConnectionError, match="message_stop") as info:
            list(provider.stream(req()))
        assert info.value.partial_text == "Hello there"

    def test_undecodable_stream_event(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        chunks = [*sse([fa.message_start()]), b"event: content_block_start\ndata: {broken\n\n"]
        fake_server.queue(Reply(chunks=chunks))
        with pytest.raises(ServiceUnavailableError, match="malformed"):
            list(provider.stream(req()))


# == through fmclient.Client: retries counted at the server ====================================


class TestRetriesThroughClient:
    def test_retries_429_529_503_then_succeeds(
        self, client: Client, fake_server: FakeServer, retry_sleeps: list[float]
    ) -> None:
        fake_server.queue(
            fa.error_reply(429, "slow down", headers={"retry-after": "2"}),
            fa.error_reply(529, "Overloaded"),
            fa.error_reply(503, "unavailable"),
            fa.message_reply("finally"),
        )
        assert client.complete("hi", model=f"anthropic/{MODEL}").text == "finally"
        assert len(fake_server.requests) == 4
        assert len(retry_sleeps) == 3
        assert retry_sleeps[0] >= 2.0  # Retry-After honoured

    def test_client_max_retries_zero_means_one_request(
        self, fake_server: FakeServer, retry_sleeps: list[float]
    ) -> None:
        client = Client(
            providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}}, max_retries=0
        )
        fake_server.queue(fa.error_reply(500, "boom"), fa.message_reply("never"))
        with pytest.raises(ServiceUnavailableError):
            client.complete("hi", model=f"anthropic/{MODEL}")
        assert len(fake_server.requests) == 1  # neither fmclient nor the SDK retried
        client.close()

    def test_no_retry_on_400(self, client: Client, fake_server: FakeServer, retry_sleeps: list[float]) -> None:
        fake_server.queue(fa.error_reply(400, "bad"), fa.message_reply("never"))
        with pytest.raises(BadRequestError):
            client.complete("hi", model=f"anthropic/{MODEL}")
        assert len(fake_server.requests) == 1
        assert retry_sleeps == []

    def test_overloaded_stream_retried_before_first_chunk(
        self, client: Client, fake_server: FakeServer, retry_sleeps: list[float]
    ) -> None:
        fake_server.queue(
            fa.stream_reply([fa.message_start(), fa.ping(), fa.error_event("overloaded_error", "Overloaded")]),
            fa.stream_reply(fa.stream_events("second time lucky")),
        )
        stream = client.stream("hi", model=f"anthropic/{MODEL}")
        assert "".join(c.text for c in stream) == "second time lucky"
        assert len(fake_server.requests) == 2
        assert stream.completion.usage == Usage(10, 5, 0)

    def test_truncated_stream_retried(self, client: Client, fake_server: FakeServer, retry_sleeps: list[float]) -> None:
        fake_server.queue(
            fa.stream_reply(fa.stream_events("lost"), cut_after=2),
            fa.stream_reply(fa.stream_events("kept")),
        )
        assert client.stream("hi", model=f"anthropic/{MODEL}").completion.text == "kept"
        assert len(fake_server.requests) == 2

    async def test_async_retries(self, client: Client, fake_server: FakeServer, retry_sleeps: list[float]) -> None:
        fake_server.queue(fa.error_reply(529, "Overloaded"), fa.message_reply("async ok"))
        reply = await client.acomplete("hi", model=f"anthropic/{MODEL}")
        assert reply.text == "async ok"
        assert len(fake_server.requests) == 2


# == async =====================================================================================


class TestAsync:
    """Every async test runs over both transports: aiohttp (the default when installed) and httpx."""

    @pytest.fixture(params=["aiohttp", "httpx"])
    def transport(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def provider(self, fake_server: FakeServer, transport: str) -> Iterator[AnthropicProvider]:
        adapter = AnthropicProvider(settings(fake_server, options={"async_transport": transport}))
        yield adapter
        adapter.close()

    async def test_transport_is_the_one_configured(
        self, provider: AnthropicProvider, fake_server: FakeServer, transport: str
    ) -> None:
        import anthropic

        fake_server.queue(fa.message_reply("hi"))
        assert (await provider.acomplete(req())).text == "hi"
        on_aiohttp = isinstance(provider._aclient()._client, anthropic.DefaultAioHttpClient)
        assert on_aiohttp is (transport == "aiohttp")
        await provider.aclose()

    async def test_reset_connection(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(Reply(reset=True), Reply(reset=True))
        with pytest.raises(APIConnectionError):
            await provider.acomplete(req())
        with pytest.raises(APIConnectionError):
            [c async for c in provider.astream(req())]
        await provider.aclose()

    async def test_acomplete(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(
            fa.message_reply(
                [fa.tool_use_block("toolu_3", "get_weather", {"city": "Cairo"})],
                stop_reason="tool_use",
                usage_=fa.usage(4, 2, cache_read_input_tokens=6),
            )
        )
        completion = await provider.acomplete(req(tools=(WEATHER,), tool_choice="get_weather", system="S"))
        assert completion.tool_calls == [ToolCall("toolu_3", "get_weather", {"city": "Cairo"})]
        assert completion.usage == Usage(10, 2, 6)
        sent = body(fake_server)
        assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
        assert sent["system"] == "S"
        assert fake_server.requests[0].headers["x-stainless-async"] != "false"
        await provider.aclose()

    async def test_astream(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.stream_reply(fa.stream_events(THINKING_CONTENT, stop_reason="tool_use")))
        chunks = [c async for c in provider.astream(req(tools=(WEATHER,)))]
        assert "".join(c.text for c in chunks) == "Let me check."
        assert chunks[-1].finish_reason == "tool_calls"
        assert chunks[-1].provider_state == {"anthropic": {"content": THINKING_CONTENT}}
        assert body(fake_server)["stream"] is True
        await provider.aclose()

    async def test_async_status_error(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.error_reply(400, "prompt is too long: 300000 tokens > 200000 maximum"))
        with pytest.raises(ContextWindowExceededError):
            await provider.acomplete(req())
        await provider.aclose()

    async def test_async_stream_errors(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(
            fa.stream_reply([fa.message_start(), fa.error_event("overloaded_error", "Overloaded")]),
            fa.stream_reply(fa.stream_events("cut"), cut_after=3),
            fa.stream_reply(fa.stream_events("no stop")[:-1]),
        )
        with pytest.raises(ServiceUnavailableError) as info:
            [c async for c in provider.astream(req())]
        assert info.value.status_code == 529
        with pytest.raises(APIConnectionError):
            [c async for c in provider.astream(req())]
        with pytest.raises(APIConnectionError, match="message_stop"):
            [c async for c in provider.astream(req())]
        await provider.aclose()

    async def test_async_malformed_and_timeout(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(Reply(body="{oops", content_type="application/json"), Reply(body=fa.message(), delay=0.5))
        with pytest.raises(ServiceUnavailableError, match="malformed"):
            await provider.acomplete(req())
        with pytest.raises(RequestTimeoutError):
            await provider.acomplete(req(timeout=0.1))
        await provider.aclose()

    async def test_async_connection_refused(self, transport: str) -> None:
        adapter = AnthropicProvider(
            settings(base_url=f"http://127.0.0.1:{free_port()}", options={"async_transport": transport})
        )
        with pytest.raises(APIConnectionError):
            await adapter.acomplete(req())
        await adapter.aclose()

    async def test_async_long_request_is_streamed(self, provider: AnthropicProvider, fake_server: FakeServer) -> None:
        fake_server.queue(fa.stream_reply(fa.stream_events("long async")))
        assert (await provider.acomplete(req(max_tokens=64000))).text == "long async"
        assert body(fake_server)["stream"] is True
        await provider.aclose()
