"""The Gemini adapter: pure translation, and the real google-genai SDK against a fake server.

Every HTTP test points the real SDK at :class:`FakeServer` through its own ``base_url`` setting
and asserts on the JSON body the SDK sent as well as on what fmclient returned. Async tests run
over both of the SDK's async transports (aiohttp, installed with ``fmclient[fast]``, and httpx2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
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
    UnsupportedFeatureError,
)
from fmclient.providers.base import ProviderSettings
from fmclient.providers.gemini import (
    EMBED_BATCH_SIZE,
    GeminiProvider,
    StreamParser,
    build_contents,
    build_params,
    map_error,
    map_finish_reason,
    parse_response,
    parse_usage,
)
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
)
from tests.fakes import gemini as fake
from tests.fakes.server import FakeServer, Reply, sse

MODEL = "gemini-2.5-flash"
KEY = "test-key-not-real"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
# Signature bytes whose standard base64 contains "+" and "/": the URL-safe re-encoding the SDK
# uses must still decode to exactly these bytes.
SIGNATURE = b"\xfb\xff\xfe\x00sig-1"
TEXT_SIGNATURE = b"\xfa\xfb\xfcsig-2"
WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def settings(server: FakeServer | None = None, **overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {"name": "gemini", "type": "gemini", "api_key": Secret(KEY)}
    if server is not None:
        values["base_url"] = server.url
    values.update(overrides)
    return ProviderSettings(**values)


@pytest.fixture
def provider(fake_server: FakeServer) -> Iterator[GeminiProvider]:
    adapter = GeminiProvider(settings(fake_server))
    yield adapter
    adapter.close()


@pytest.fixture(params=["aiohttp", "httpx2"])
def async_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run an async test over each async transport the SDK can pick.

    The SDK uses aiohttp whenever it is importable, else httpx2; hiding aiohttp from it is the
    only way to exercise the httpx2 path in an environment that has both.
    """
    if request.param == "httpx2":
        from google.genai import _api_client

        monkeypatch.setattr(_api_client, "has_aiohttp", False)
    return str(request.param)


def ask(text: str = "Hi", **kwargs: Any) -> Request:
    return Request(model=MODEL, messages=(Message(role="user", content=text),), **kwargs)


def body(server: FakeServer, index: int = -1) -> dict[str, Any]:
    data = server.requests[index].json()
    assert isinstance(data, dict)
    return data


def signature_in(data: Any) -> list[bytes]:
    """Every thought signature found anywhere in a request body, decoded."""
    found: list[bytes] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("thoughtSignature", "thought_signature") and isinstance(value, str):
                found.append(fake.b64decode_any(value))
            else:
                found.extend(signature_in(value))
    elif isinstance(data, list):
        for item in data:
            found.extend(signature_in(item))
    return found


def gemini_client(server: FakeServer, **kwargs: Any) -> Client:
    return Client(providers={"gemini": {"base_url": server.url, "api_key": KEY}}, **kwargs)


# =============================================================================================
# Pure translation
# =============================================================================================


def test_build_params_maps_every_request_field() -> None:
    request = Request(
        model=MODEL,
        messages=(Message(role="user", content="Weather?"),),
        system="Be brief.",
        max_tokens=64,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        tools=(WEATHER,),
        tool_choice="auto",
        response_format=ResponseFormat("answer", {"type": "object", "properties": {"a": {"type": "string"}}}),
        timeout=2.5,
        provider_options={"top_k": 40, "temperature": 0.2, "thinking_config": {"include_thoughts": True}},
    )
    # an option may repeat an argument's value, not change it (one of the two would be dropped)
    changed = dataclasses.replace(request, provider_options={"temperature": 0.7})
    with pytest.raises(BadRequestError, match=r"provider option temperature=0\.7 conflicts with 0\.2"):
        build_params(changed)
    params = build_params(request)
    config = params["config"]
    assert params["model"] == MODEL
    assert params["contents"] == [{"role": "user", "parts": [{"text": "Weather?"}]}]
    assert config["system_instruction"] == "Be brief."
    assert config["max_output_tokens"] == 64
    assert config["top_p"] == 0.9
    assert config["stop_sequences"] == ["END"]
    assert config["tools"] == [
        {
            "function_declarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters_json_schema": dict(WEATHER.parameters),
                }
            ]
        }
    ]
    assert config["tool_config"] == {"function_calling_config": {"mode": "AUTO"}}
    assert config["response_mime_type"] == "application/json"
    assert config["response_json_schema"]["properties"] == {"a": {"type": "string"}}
    # seconds -> the SDK's milliseconds
    assert config["http_options"] == {"timeout": 2500}
    # provider_options pass through
    assert config["top_k"] == 40
    assert config["temperature"] == 0.2
    assert config["thinking_config"] == {"include_thoughts": True}
    # the SDK must never run its own tool loop
    assert config["automatic_function_calling"] == {"disable": True}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ("get_weather", {"mode": "ANY", "allowed_function_names": ["get_weather"]}),
    ],
)
def test_tool_choice_modes(choice: str, expected: dict[str, Any]) -> None:
    config = build_params(ask(tools=(WEATHER,), tool_choice=choice))["config"]
    assert config["tool_config"] == {"function_calling_config": expected}


def test_a_tool_result_nested_deeper_than_the_stack_is_sent_as_text() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    call = ToolCall("call-a", "get_weather", {"city": "Paris"})
    messages = (
        Message(role="user", content="Weather?"),
        Message(role="assistant", content="", tool_calls=(call,)),
        Message.tool_result("call-a", deep, name="get_weather"),
    )
    contents = build_contents(messages, "gemini")
    assert contents[2]["parts"] == [{"function_response": {"name": "get_weather", "response": {"output": deep}}}]


def test_build_contents_history_tool_results_and_images() -> None:
    call_a = ToolCall("call-a", "get_weather", {"city": "Paris"})
    call_b = ToolCall("call-b", "get_time", {"tz": "CET"})
    messages = (
        Message(role="user", content=(TextPart("Look"), ImagePart(data=PNG, media_type="image/png"))),
        Message(role="assistant", content="Checking.", tool_calls=(call_a, call_b)),
        Message.tool_result("call-a", {"temp": 21}, name="get_weather"),
        # no name: taken from the assistant's call with that id
        Message.tool_result("call-b", "12:00"),
        Message(role="user", content=(ImagePart(url="https://example.com/cat.jpg", media_type="image/jpeg"),)),
    )
    contents = build_contents(messages, "gemini")
    assert [c["role"] for c in contents] == ["user", "model", "user", "user"]
    assert contents[0]["parts"][1] == {"inline_data": {"mime_type": "image/png", "data": PNG}}
    assert contents[1]["parts"] == [
        {"text": "Checking."},
        {"function_call": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"function_call": {"name": "get_time", "args": {"tz": "CET"}}},
    ]
    # both results in one turn; synthesised ids are never sent to the API
    assert contents[2]["parts"] == [
        {"function_response": {"name": "get_weather", "response": {"temp": 21}}},
        {"function_response": {"name": "get_time", "response": {"output": "12:00"}}},
    ]
    assert contents[3]["parts"] == [
        {"file_data": {"file_uri": "https://example.com/cat.jpg", "mime_type": "image/jpeg"}}
    ]


def test_tool_result_without_a_name_is_refused_before_sending() -> None:
    messages = (Message(role="user", content="x"), Message.tool_result("unknown", "42"))
    with pytest.raises(BadRequestError, match="tool name"):
        build_contents(messages, "gemini")


def test_stored_parts_are_ignored_when_the_message_was_edited() -> None:
    state = {"gemini": {"parts": [{"text": "original", "thought_signature": "AAEC"}]}}
    edited = Message(role="assistant", content="edited", provider_state=state)
    contents = build_contents((Message(role="user", content="q"), edited), "gemini")
    assert contents[1]["parts"] == [{"text": "edited"}]
    kept = Message(role="assistant", content="original", provider_state=state)
    part = build_contents((Message(role="user", content="q"), kept), "gemini")[1]["parts"][0]
    assert part.text == "original" and part.thought_signature == b"\x00\x01\x02"
    # a tool call whose arguments were changed is rebuilt too
    call_state = {
        "gemini": {"parts": [{"function_call": {"name": "f", "args": {"x": 1}}, "thought_signature": "AAEC"}]}
    }
    changed = Message(role="assistant", tool_calls=(ToolCall("c1", "f", {"x": 2}),), provider_state=call_state)
    parts = build_contents((Message(role="user", content="q"), changed), "gemini")[1]["parts"]
    assert parts == [{"function_call": {"name": "f", "args": {"x": 2}}}]
    corrupt = {"gemini": {"parts": [{"text": "original", "thought_signature": 42}]}}
    with pytest.raises(BadRequestError, match="corrupt"):
        build_contents(
            (Message(role="user", content="q"), Message(role="assistant", content="original", provider_state=corrupt)),
            "gemini",
        )


@pytest.mark.parametrize(
    ("reason", "tools", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "other"),
        ("OTHER", False, "other"),
        (None, False, "other"),
    ],
)
def test_finish_reasons(reason: str | None, tools: bool, expected: str) -> None:
    assert map_finish_reason(reason, tools) == expected


def test_usage_follows_the_one_definition() -> None:
    completion = parse_response(
        fake.response_body("ok", usage=fake.usage_metadata(100, 20, thoughts=30, cached=60, tool_use=7)),
        provider="gemini",
        model=MODEL,
    )
    # prompt count already includes the cached part; tool-use prompt tokens are input too;
    # thinking tokens are output
    assert completion.usage.input_tokens == 107
    assert completion.usage.cached_input_tokens == 60
    assert completion.usage.output_tokens == 50
    assert completion.usage.total_tokens == 157
    assert parse_usage(None).total_tokens == 0


def test_parse_response_skips_thoughts_and_synthesises_stable_ids() -> None:
    parts = [
        fake.text_part("thinking...", thought=True),
        fake.text_part("Calling."),
        fake.function_call_part("get_weather", {"city": "Paris"}),
        fake.function_call_part("get_weather", {"city": "Rome"}),
    ]
    first = parse_response(fake.response_body(parts=parts), provider="gemini", model=MODEL)
    again = parse_response(fake.response_body(parts=parts), provider="gemini", model=MODEL)
    assert first.text == "Calling."
    assert first.finish_reason == "tool_calls"
    ids = [c.id for c in first.tool_calls]
    assert len(set(ids)) == 2 and all(ids)
    assert ids == [c.id for c in again.tool_calls]
    assert first.model == fake.DEFAULT_MODEL_VERSION
    # nothing to carry over: no signatures and no API-issued ids
    assert first.message.provider_state is None


def test_prompt_blocked_is_a_content_filter_error() -> None:
    blocked = fake.response_body(
        candidates=False, prompt_feedback={"blockReason": "SAFETY", "blockReasonMessage": "nope"}
    )
    with pytest.raises(ContentFilterError, match="SAFETY"):
        parse_response(blocked, provider="gemini", model=MODEL)
    with pytest.raises(ContentFilterError):
        StreamParser("gemini", MODEL).parse_stream_event(blocked)


def test_stream_parser_merges_text_until_the_signature() -> None:
    parser = StreamParser("gemini", MODEL)
    events = [
        fake.response_body("Hel", finish_reason=None),
        fake.response_body("lo", finish_reason=None),
        fake.response_body(parts=[fake.text_part("", thought_signature=TEXT_SIGNATURE)], usage=fake.usage_metadata()),
    ]
    chunks = [c for c in (parser.parse_stream_event(e) for e in events) if c is not None]
    assert [c.text for c in chunks] == ["Hel", "lo"]
    final = parser.final_chunk()
    assert final.finish_reason == "stop"
    assert final.provider_state is not None
    parts = final.provider_state["gemini"]["parts"]
    assert len(parts) == 1 and parts[0]["text"] == "Hello"
    assert fake.b64decode_any(parts[0]["thought_signature"]) == TEXT_SIGNATURE


def test_stream_parser_without_finish_reason_is_a_broken_stream() -> None:
    parser = StreamParser("gemini", MODEL)
    parser.parse_stream_event(fake.response_body("partial", finish_reason=None))
    with pytest.raises(APIConnectionError) as caught:
        parser.final_chunk()
    assert caught.value.retryable and caught.value.partial_text == "partial"


def test_map_error_reads_retry_info_and_refines() -> None:
    from google.genai import errors

    limited = errors.ClientError(429, fake.error_body(429, "quota", details=[fake.retry_info("37s")]))
    mapped = map_error(limited, "gemini", MODEL)
    assert isinstance(mapped, RateLimitError) and mapped.retry_after == 37.0 and mapped.retryable

    too_long = errors.ClientError(
        400,
        fake.error_body(400, "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576)."),
    )
    assert isinstance(map_error(too_long, "gemini", MODEL), ContextWindowExceededError)

    bad_key = errors.ClientError(
        400,
        fake.error_body(
            400,
            "API key not valid. Please pass a valid API key.",
            details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        ),
    )
    assert isinstance(map_error(bad_key, "gemini", MODEL), AuthenticationError)

    # an error event inside a stream may carry a status name but no code
    no_code = errors.APIError(0, {"error": {"message": "busy", "status": "UNAVAILABLE"}})
    mapped = map_error(no_code, "gemini", MODEL)
    assert isinstance(mapped, ServiceUnavailableError) and mapped.status_code == 503


def test_capabilities_per_family() -> None:
    adapter = GeminiProvider(settings())
    chat = adapter.capabilities("gemini-2.5-pro")
    assert chat.chat and chat.tools and chat.images and chat.structured_output
    assert chat.max_stop_sequences == 5 and not chat.embeddings
    embedding = adapter.capabilities("gemini-embedding-001")
    assert embedding.embeddings and not embedding.chat
    gemma = adapter.capabilities("gemma-3-27b-it")
    assert not gemma.system and not gemma.tools and not gemma.structured_output


# =============================================================================================
# Configuration
# =============================================================================================


def test_missing_key_is_a_configuration_error_naming_the_variables() -> None:
    adapter = GeminiProvider(ProviderSettings(name="gemini", type="gemini"))
    with pytest.raises(ConfigurationError) as caught:
        adapter.check_ready(MODEL)
    assert "GOOGLE_API_KEY" in str(caught.value) and "GEMINI_API_KEY" in str(caught.value)


def test_vertex_needs_no_api_key() -> None:
    adapter = GeminiProvider(ProviderSettings(name="gemini", type="gemini", options={"vertexai": True}))
    adapter.check_ready(MODEL)  # ADC is the SDK's business


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="accepted adapter settings"):
        GeminiProvider(ProviderSettings(name="gemini", type="gemini", options={"projet": "x"}))


def test_env_key_and_env_base_url_are_left_to_the_sdk(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "env-key")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_server.url)
    adapter = GeminiProvider(ProviderSettings(name="gemini", type="gemini"))
    adapter.check_ready(MODEL)
    fake_server.queue(fake.generate_reply("via env"))
    assert adapter.complete(ask()).text == "via env"
    assert fake_server.requests[0].headers["x-goog-api-key"] == "env-key"
    adapter.close()


def test_api_key_env_setting(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORK_GEMINI_KEY", "work-key")
    adapter = GeminiProvider(
        ProviderSettings(name="gemini", type="gemini", api_key_env="WORK_GEMINI_KEY", base_url=fake_server.url)
    )
    fake_server.queue(fake.generate_reply())
    adapter.complete(ask())
    assert fake_server.requests[0].headers["x-goog-api-key"] == "work-key"
    adapter.close()


def test_vertex_express_mode_options(fake_server: FakeServer) -> None:
    adapter = GeminiProvider(settings(fake_server, options={"vertexai": True, "api_version": "v1"}))
    fake_server.queue(fake.generate_reply("vertex"))
    assert adapter.complete(ask()).text == "vertex"
    assert fake_server.requests[0].path == f"/v1/publishers/google/models/{MODEL}:generateContent"
    adapter.close()


def test_key_never_shows(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(fake.error_reply(401, "Request had invalid authentication credentials."))
    with pytest.raises(AuthenticationError) as caught:
        provider.complete(ask())
    assert KEY not in repr(provider) and KEY not in str(caught.value) and KEY not in repr(caught.value)


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = "import sys, fmclient, fmclient.providers.gemini; assert 'google.genai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# =============================================================================================
# Over HTTP: sync
# =============================================================================================


def test_complete_plain(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(fake.generate_reply("Hello!", usage=fake.usage_metadata(12, 3, thoughts=4)))
    completion = provider.complete(
        ask("Hi", system="Be kind.", max_tokens=50, temperature=0.3, top_p=0.8, stop=("STOP",), timeout=5)
    )
    assert completion.text == "Hello!"
    assert completion.finish_reason == "stop"
    assert completion.provider == "gemini"
    assert completion.model == fake.DEFAULT_MODEL_VERSION
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (12, 7)
    assert completion.message.role == "assistant" and completion.message.content == "Hello!"
    assert completion.raw is not None

    sent = fake_server.requests[0]
    assert sent.path.endswith(f"/models/{MODEL}:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY
    # 5 s went to the SDK as 5000 ms; the SDK reports it back in whole seconds
    assert sent.headers["x-server-timeout"] == "5"
    data = sent.json()
    assert data["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert data["systemInstruction"]["parts"] == [{"text": "Be kind."}]
    assert data["generationConfig"] == {
        "maxOutputTokens": 50,
        "temperature": 0.3,
        "topP": 0.8,
        "stopSequences": ["STOP"],
    }


def test_provider_options_reach_the_wire(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(fake.generate_reply())
    provider.complete(ask(provider_options={"top_k": 5, "seed": 7, "thinking_config": {"thinking_budget": 128}}))
    generation = body(fake_server)["generationConfig"]
    assert generation["topK"] == 5 and generation["seed"] == 7
    # the SDK writes nested config in snake_case; the API's proto JSON accepts both spellings
    assert generation["thinkingConfig"] in ({"thinkingBudget": 128}, {"thinking_budget": 128})


def test_invalid_provider_option_is_refused_before_sending(fake_server: FakeServer, provider: GeminiProvider) -> None:
    with pytest.raises(BadRequestError, match="provider_options"):
        provider.complete(ask(provider_options={"no_such_field": 1}))
    assert fake_server.requests == []


def test_stream_plain(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(fake.stream_reply(fake.stream_events(["Hel", "lo", "!"], usage=fake.usage_metadata(9, 3))))
    chunks = list(provider.stream(ask(max_tokens=20)))
    assert [c.text for c in chunks[:-1]] == ["Hel", "lo", "!"]
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None and final.usage.input_tokens == 9 and final.usage.output_tokens == 3
    assert final.model == fake.DEFAULT_MODEL_VERSION
    sent = fake_server.requests[0]
    assert sent.path.endswith(f"/models/{MODEL}:streamGenerateContent?alt=sse")
    assert sent.json()["generationConfig"] == {"maxOutputTokens": 20}


def test_tool_call_round_trip_keeps_thought_signatures(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(
        fake.generate_reply(
            None,
            parts=[
                fake.text_part("Let me check.", thought_signature=TEXT_SIGNATURE),
                fake.function_call_part("get_weather", {"city": "Paris"}, thought_signature=SIGNATURE),
            ],
        ),
        fake.generate_reply("It is 21 °C in Paris."),
    )
    question = Message(role="user", content="Weather in Paris?")
    first = provider.complete(Request(model=MODEL, messages=(question,), tools=(WEATHER,), tool_choice="required"))
    assert first.finish_reason == "tool_calls"
    assert first.text == "Let me check."
    [call] = first.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
    assert call.id
    assert first.message.provider_state is not None
    json.dumps(first.message.provider_state)  # the state is JSON-able: a conversation can be saved

    sent = body(fake_server, 0)
    declaration = sent["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_weather"
    assert declaration.get("parametersJsonSchema", declaration.get("parameters_json_schema")) == dict(
        WEATHER.parameters
    )
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    second = provider.complete(
        Request(
            model=MODEL,
            messages=(question, first.message, Message.tool_result(call.id, {"temp_c": 21}, name="get_weather")),
            tools=(WEATHER,),
        )
    )
    assert second.text == "It is 21 °C in Paris."
    contents = body(fake_server, 1)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    # both signatures went back, byte for byte, on the parts they came with
    model_parts = contents[1]["parts"]
    assert model_parts[0]["text"] == "Let me check."
    assert signature_in(model_parts[0]) == [TEXT_SIGNATURE]
    assert model_parts[1]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert signature_in(model_parts[1]) == [SIGNATURE]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}]


def test_api_issued_call_ids_are_echoed(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(
        fake.generate_reply(None, parts=[fake.function_call_part("get_weather", {"city": "Oslo"}, id="fc-9")]),
        fake.generate_reply("Cold."),
    )
    question = Message(role="user", content="Oslo?")
    first = provider.complete(Request(model=MODEL, messages=(question,), tools=(WEATHER,)))
    assert first.tool_calls[0].id == "fc-9"
    provider.complete(
        Request(
            model=MODEL,
            messages=(question, first.message, Message.tool_result("fc-9", "-3 C")),
            tools=(WEATHER,),
        )
    )
    contents = body(fake_server, 1)["contents"]
    assert contents[1]["parts"][0]["functionCall"]["id"] == "fc-9"
    assert contents[2]["parts"][0]["functionResponse"] == {
        "id": "fc-9",
        "name": "get_weather",
        "response": {"output": "-3 C"},
    }


def test_streamed_tool_call_round_trip_keeps_signature(fake_server: FakeServer, provider: GeminiProvider) -> None:
    events = [
        fake.response_body("Checking", finish_reason=None),
        fake.response_body(
            parts=[fake.function_call_part("get_weather", {"city": "Lima"}, thought_signature=SIGNATURE)],
            usage=fake.usage_metadata(20, 8),
        ),
    ]
    fake_server.queue(fake.stream_reply(events), fake.generate_reply("Warm."))
    client = gemini_client(fake_server)
    stream = client.stream("Lima?", model=f"gemini/{MODEL}", tools=[WEATHER])
    chunks = list(stream)
    deltas = [d for c in chunks for d in c.tool_calls]
    assert len(deltas) == 1 and deltas[0].name == "get_weather"
    assert json.loads(deltas[0].arguments) == {"city": "Lima"}
    completion = stream.completion
    assert completion.finish_reason == "tool_calls"
    assert completion.text == "Checking"
    [call] = completion.tool_calls
    assert call.id == deltas[0].id

    client.complete(
        [
            {"role": "user", "content": "Lima?"},
            completion.message,
            Message.tool_result(call.id, {"temp_c": 27}, name="get_weather"),
        ],
        model=f"gemini/{MODEL}",
        tools=[WEATHER],
    )
    contents = body(fake_server, 1)["contents"]
    assert signature_in(contents[1]) == [SIGNATURE]
    assert contents[1]["parts"][0]["text"] == "Checking"
    client.close()


def test_structured_output_body(fake_server: FakeServer, provider: GeminiProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    fake_server.queue(fake.generate_reply('{"name": "Ada", "age": 36}'))
    completion = provider.complete(ask("Who?", response_format=ResponseFormat("person", schema)))
    assert json.loads(completion.text) == {"name": "Ada", "age": 36}
    generation = body(fake_server)["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    assert generation["responseJsonSchema"] == schema


def test_structured_output_through_the_client(fake_server: FakeServer) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Person(pydantic.BaseModel):
        name: str
        age: int

    fake_server.queue(fake.generate_reply('{"name": "Ada", "age": 36}'))
    with gemini_client(fake_server) as client:
        reply = client.complete("Who?", model=f"gemini/{MODEL}", response_format=Person)
    assert reply.parsed == Person(name="Ada", age=36)
    assert body(fake_server)["generationConfig"]["responseJsonSchema"]["required"] == ["name", "age"]


def test_image_input(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(fake.generate_reply("A cat."))
    message = Message(
        role="user",
        content=(
            TextPart("What is this?"),
            ImagePart(data=PNG, media_type="image/png"),
            ImagePart(url="https://example.com/cat.jpg", media_type="image/jpeg"),
        ),
    )
    provider.complete(Request(model=MODEL, messages=(message,)))
    parts = body(fake_server)["contents"][0]["parts"]
    assert parts[0] == {"text": "What is this?"}
    inline = parts[1]["inlineData"]
    assert fake.b64decode_any(inline["data"]) == PNG
    assert inline.get("mimeType", inline.get("mime_type")) == "image/png"
    file_data = parts[2]["fileData"]
    assert file_data.get("fileUri", file_data.get("file_uri")) == "https://example.com/cat.jpg"
    assert file_data.get("mimeType", file_data.get("mime_type")) == "image/jpeg"


def test_storage_uris_gemini_reads_go_and_others_are_refused_unsent(
    fake_server: FakeServer, provider: GeminiProvider
) -> None:
    fake_server.queue(fake.generate_reply("A cat."))
    cloud = Message(role="user", content=(TextPart("What is this?"), ImagePart.from_source("gs://bucket/cat.png")))
    provider.complete(Request(model=MODEL, messages=(cloud,)))
    file_data = body(fake_server)["contents"][0]["parts"][1]["fileData"]
    assert file_data.get("fileUri", file_data.get("file_uri")) == "gs://bucket/cat.png"
    fake_server.reset()
    s3 = Message(role="user", content=(TextPart("What is this?"), ImagePart.from_source("s3://bucket/cat.png")))
    with pytest.raises(UnsupportedFeatureError, match="s3://"):
        provider.complete(Request(model=MODEL, messages=(s3,)))
    assert fake_server.requests == []


def test_embeddings_batch_and_keep_order(fake_server: FakeServer) -> None:
    fake_server.handler = fake.embed_handler
    texts = [f"text number {i}" for i in range(2 * EMBED_BATCH_SIZE + 50)]
    with gemini_client(fake_server) as client:  # the client splits the input into batches
        result = client.embed(
            texts, model="gemini/gemini-embedding-001", task_type="RETRIEVAL_DOCUMENT", output_dimensionality=4
        )
    assert len(fake_server.requests) == 3
    sizes = [len(r.json()["requests"]) for r in fake_server.requests]
    assert sizes == [100, 100, 50]
    assert result.vectors == [(fake.fake_vector(t) * 4)[:4] for t in texts]
    assert result.provider == "gemini" and result.model == "gemini-embedding-001"
    first = fake_server.requests[0]
    assert first.path.endswith("/models/gemini-embedding-001:batchEmbedContents")
    item = first.json()["requests"][0]
    assert item["taskType"] == "RETRIEVAL_DOCUMENT" and item["outputDimensionality"] == 4
    assert item["content"]["parts"] == [{"text": "text number 0"}]


def test_embeddings_through_the_client(fake_server: FakeServer) -> None:
    fake_server.handler = fake.embed_handler
    with gemini_client(fake_server) as client:
        result = client.embed(["a", "bb"], model="gemini/gemini-embedding-001")
    assert result.vectors == [fake.fake_vector("a"), fake.fake_vector("bb")]


def test_sdk_side_refusal_sends_nothing(fake_server: FakeServer, provider: GeminiProvider) -> None:
    # mime_type exists on Vertex AI only: the SDK refuses it before any request
    with pytest.raises(UnsupportedFeatureError, match="only supported in"):
        provider.embed(
            EmbedRequest(model="gemini-embedding-001", texts=("a",), provider_options={"mime_type": "text/plain"})
        )
    assert fake_server.requests == []


def test_embedding_count_mismatch_is_malformed(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(Reply(body={"embeddings": [{"values": [1.0]}]}))
    with pytest.raises(APIConnectionError, match="expected 2 vectors"):
        provider.embed(EmbedRequest(model="gemini-embedding-001", texts=("a", "b")))


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "Invalid JSON payload received.", BadRequestError),
        (401, "Request had invalid authentication credentials.", AuthenticationError),
        (403, "The caller does not have permission", PermissionDeniedError),
        (404, "models/nope is not found for API version v1", ModelNotFoundError),
        (429, "Resource has been exhausted (e.g. check quota).", RateLimitError),
        (500, "An internal error has occurred.", ServiceUnavailableError),
        (503, "The model is overloaded. Please try again later.", ServiceUnavailableError),
        (
            400,
            "The input token count (1500000) exceeds the maximum number of tokens allowed (1048576).",
            ContextWindowExceededError,
        ),
    ],
)
def test_http_errors_are_mapped(
    fake_server: FakeServer, provider: GeminiProvider, status: int, message: str, expected: type[FMClientError]
) -> None:
    fake_server.queue(fake.error_reply(status, message))
    with pytest.raises(expected) as caught:
        provider.complete(ask())
    error = caught.value
    assert type(error) is expected
    assert error.status_code == status
    assert message in error.message
    assert error.provider == "gemini" and error.model == MODEL
    assert error.__cause__ is not None  # the SDK's exception is chained
    # the SDK's own retries are off: one attempt, whatever the status
    assert len(fake_server.requests) == 1


def test_rate_limit_honours_retry_after(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(fake.error_reply(429, "slow down", headers={"retry-after": "12"}))
    with pytest.raises(RateLimitError) as caught:
        provider.complete(ask())
    assert caught.value.retry_after == 12.0
    fake_server.queue(fake.error_reply(429, "quota", details=[fake.retry_info("3.5s")]))
    with pytest.raises(RateLimitError) as caught:
        provider.complete(ask())
    assert caught.value.retry_after == 3.5


def test_invalid_key_400_is_an_authentication_error(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(
        fake.error_reply(
            400,
            "API key not valid. Please pass a valid API key.",
            details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        )
    )
    with pytest.raises(AuthenticationError):
        provider.complete(ask())


def test_non_json_error_body(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(Reply(status=502, body="<html>Bad Gateway</html>", content_type="text/html"))
    with pytest.raises(ServiceUnavailableError) as caught:
        provider.complete(ask())
    assert caught.value.status_code == 502


def test_malformed_json_body(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(Reply(body='{"candidates": [', content_type="application/json"))
    with pytest.raises(APIConnectionError, match="malformed"):
        provider.complete(ask())


def test_connection_refused() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = GeminiProvider(settings(base_url=f"http://127.0.0.1:{port}"))
    with pytest.raises(APIConnectionError) as caught:
        adapter.complete(ask())
    assert caught.value.retryable
    adapter.close()


def test_connection_reset(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(Reply(reset=True))
    with pytest.raises(APIConnectionError):
        provider.complete(ask())
    assert len(fake_server.requests) == 1


def test_request_timeout(fake_server: FakeServer, provider: GeminiProvider) -> None:
    # The reply comes far later than the timeout, so the bound below has room on a loaded machine.
    fake_server.queue(Reply(body=fake.response_body(), delay=2.0))
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        provider.complete(ask(timeout=0.1))
    assert time.monotonic() - started < 1.5  # it did not wait for the late reply


def test_settings_timeout_applies_to_every_call(fake_server: FakeServer) -> None:
    adapter = GeminiProvider(settings(fake_server, timeout=0.2))
    fake_server.queue(Reply(body=fake.response_body(), delay=0.6))
    with pytest.raises(RequestTimeoutError):
        adapter.complete(ask())
    adapter.close()


def test_truncated_stream(fake_server: FakeServer, provider: GeminiProvider) -> None:
    events = fake.stream_events(["one ", "two ", "three"])
    fake_server.queue(fake.stream_reply(events, cut_after=2))
    received: list[Chunk] = []
    with pytest.raises(APIConnectionError) as caught:
        for chunk in provider.stream(ask()):
            received.append(chunk)
    assert [c.text for c in received] == ["one ", "two "]
    assert caught.value.retryable and caught.value.partial_text == "one two "
    assert len(fake_server.requests) == 1


def test_stream_ending_without_finish_reason(fake_server: FakeServer, provider: GeminiProvider) -> None:
    events = [fake.response_body("half", finish_reason=None)]
    fake_server.queue(fake.stream_reply(events))
    with pytest.raises(APIConnectionError, match="final event"):
        list(provider.stream(ask()))


def test_error_event_inside_a_stream(fake_server: FakeServer, provider: GeminiProvider) -> None:
    chunks = sse([(None, fake.response_body("so far", finish_reason=None)), (None, fake.error_body(503, "overloaded"))])
    fake_server.queue(Reply(chunks=chunks))
    with pytest.raises(ServiceUnavailableError) as caught:
        list(provider.stream(ask()))
    assert caught.value.partial_text == "so far"


def test_stream_http_error_and_blocked_prompt(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(fake.error_reply(429, "quota"))
    with pytest.raises(RateLimitError):
        list(provider.stream(ask()))
    blocked = fake.response_body(candidates=False, prompt_feedback={"blockReason": "PROHIBITED_CONTENT"})
    fake_server.queue(fake.stream_reply([blocked]))
    with pytest.raises(ContentFilterError):
        list(provider.stream(ask()))


def test_blocked_prompt(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(Reply(body=fake.response_body(candidates=False, prompt_feedback={"blockReason": "SAFETY"})))
    with pytest.raises(ContentFilterError):
        provider.complete(ask())


def test_safety_finish_reason(fake_server: FakeServer, provider: GeminiProvider) -> None:
    fake_server.queue(fake.generate_reply(None, finish_reason="SAFETY"))
    completion = provider.complete(ask())
    assert completion.finish_reason == "content_filter" and completion.text == ""


# -- the retry layer sees every attempt -------------------------------------------------------


def test_client_retries_429_and_503_then_succeeds(fake_server: FakeServer, retry_sleeps: list[float]) -> None:
    fake_server.queue(
        fake.error_reply(429, "quota", headers={"retry-after": "2"}),
        fake.error_reply(503, "overloaded"),
        fake.generate_reply("third time"),
    )
    with gemini_client(fake_server, max_retries=2) as client:
        reply = client.complete("hi", model=f"gemini/{MODEL}")
    assert reply.text == "third time"
    assert len(fake_server.requests) == 3
    assert retry_sleeps[0] == 2.0 and len(retry_sleeps) == 2


def test_client_does_not_retry_400(fake_server: FakeServer, retry_sleeps: list[float]) -> None:
    fake_server.queue(fake.error_reply(400, "bad"), fake.generate_reply("never"))
    with gemini_client(fake_server, max_retries=3) as client, pytest.raises(BadRequestError):
        client.complete("hi", model=f"gemini/{MODEL}")
    assert len(fake_server.requests) == 1 and retry_sleeps == []


def test_client_retries_stream_before_the_first_chunk(fake_server: FakeServer, retry_sleeps: list[float]) -> None:
    fake_server.queue(fake.error_reply(503, "busy"), fake.stream_reply(fake.stream_events(["ok"])))
    with gemini_client(fake_server, max_retries=1) as client:
        stream = client.stream("hi", model=f"gemini/{MODEL}")
        assert "".join(c.text for c in stream) == "ok"
    assert stream.completion.finish_reason == "stop"
    assert len(fake_server.requests) == 2


def test_client_retries_embeddings(fake_server: FakeServer, retry_sleeps: list[float]) -> None:
    fake_server.queue(fake.error_reply(500, "oops"))
    fake_server.handler = fake.embed_handler
    with gemini_client(fake_server, max_retries=1) as client:
        result = client.embed(["x"], model="gemini/gemini-embedding-001")
    assert result.vectors == [fake.fake_vector("x")]
    assert len(fake_server.requests) == 2


def test_sdk_client_is_built_once(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from google import genai

    built: list[object] = []

    class CountingClient(genai.Client):
        def __init__(self, **kwargs: Any) -> None:
            built.append(self)
            super().__init__(**kwargs)

    monkeypatch.setattr(genai, "Client", CountingClient)
    adapter = GeminiProvider(settings(fake_server))
    fake_server.handler = lambda r: (
        fake.embed_handler(r)
        if "Embed" in r.path
        else fake.stream_reply(fake.stream_events(["s"]))
        if "stream" in r.path
        else fake.generate_reply()
    )
    adapter.complete(ask())
    adapter.complete(ask(timeout=3))
    list(adapter.stream(ask()))
    adapter.embed(EmbedRequest(model="gemini-embedding-001", texts=("a",)))
    asyncio.run(adapter.acomplete(ask()))
    asyncio.run(adapter.acomplete(ask()))  # a second event loop: the SDK pools per loop
    assert len(built) == 1
    assert len(fake_server.requests) == 6
    adapter.close()


# =============================================================================================
# Over HTTP: async (both transports)
# =============================================================================================


async def test_acomplete(fake_server: FakeServer, provider: GeminiProvider, async_backend: str) -> None:
    fake_server.queue(fake.generate_reply("async hello", usage=fake.usage_metadata(4, 2, cached=1)))
    completion = await provider.acomplete(ask("Hi", system="s", timeout=5))
    assert completion.text == "async hello"
    assert completion.usage.cached_input_tokens == 1
    sent = fake_server.requests[0]
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.json()["systemInstruction"]["parts"] == [{"text": "s"}]
    await provider.aclose()


async def test_astream(fake_server: FakeServer, provider: GeminiProvider, async_backend: str) -> None:
    fake_server.queue(fake.stream_reply(fake.stream_events(["a", "b", "c"])))
    chunks = [c async for c in provider.astream(ask())]
    assert [c.text for c in chunks[:-1]] == ["a", "b", "c"]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage is not None
    assert fake_server.requests[0].path.endswith(":streamGenerateContent?alt=sse")
    await provider.aclose()


async def test_astream_tool_call_with_signature(
    fake_server: FakeServer, provider: GeminiProvider, async_backend: str
) -> None:
    events = [
        fake.response_body(
            parts=[fake.function_call_part("get_weather", {"city": "Kyiv"}, thought_signature=SIGNATURE)],
            usage=fake.usage_metadata(),
        )
    ]
    fake_server.queue(fake.stream_reply(events), fake.generate_reply("Mild."))
    chunks = [c async for c in provider.astream(ask("Kyiv?", tools=(WEATHER,)))]
    [delta] = [d for c in chunks for d in c.tool_calls]
    final = chunks[-1]
    assert final.finish_reason == "tool_calls" and final.provider_state is not None
    assistant = Message(
        role="assistant",
        tool_calls=(ToolCall(delta.id or "", delta.name or "", json.loads(delta.arguments)),),
        provider_state=final.provider_state,
    )
    await provider.acomplete(
        Request(
            model=MODEL,
            messages=(
                Message(role="user", content="Kyiv?"),
                assistant,
                Message.tool_result(delta.id or "", "12 C", name="get_weather"),
            ),
        )
    )
    assert signature_in(body(fake_server, 1)["contents"][1]) == [SIGNATURE]
    await provider.aclose()


async def test_aembed(fake_server: FakeServer, async_backend: str) -> None:
    fake_server.handler = fake.embed_handler
    texts = [f"t{i}" for i in range(EMBED_BATCH_SIZE + 1)]
    client = gemini_client(fake_server)
    result = await client.aembed(texts, model="gemini/gemini-embedding-001")
    assert result.vectors == [fake.fake_vector(t) for t in texts]
    assert [len(r.json()["requests"]) for r in fake_server.requests] == [100, 1]
    await client.aclose()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (fake.error_reply(429, "quota", headers={"retry-after": "7"}), RateLimitError),
        (fake.error_reply(503, "overloaded"), ServiceUnavailableError),
        (fake.error_reply(404, "no such model"), ModelNotFoundError),
        (Reply(reset=True), APIConnectionError),
        (Reply(body='{"candidates": [', content_type="application/json"), APIConnectionError),
    ],
)
async def test_async_errors_are_mapped_with_one_attempt(
    fake_server: FakeServer,
    provider: GeminiProvider,
    async_backend: str,
    reply: Reply,
    expected: type[FMClientError],
) -> None:
    fake_server.queue(reply)
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        await provider.acomplete(ask())
    assert type(caught.value) is expected
    if expected is RateLimitError:
        assert caught.value.retry_after == 7.0
    # one request and no hidden back-off sleep (the aiohttp path would otherwise retry a
    # failed connection once after 1-10 s)
    assert len(fake_server.requests) == 1
    assert time.monotonic() - started < 1.0
    await provider.aclose()


async def test_async_timeout(fake_server: FakeServer, provider: GeminiProvider, async_backend: str) -> None:
    fake_server.queue(Reply(body=fake.response_body(), delay=0.6))
    with pytest.raises(RequestTimeoutError):
        await provider.acomplete(ask(timeout=0.1))
    await provider.aclose()


async def test_async_truncated_stream(fake_server: FakeServer, provider: GeminiProvider, async_backend: str) -> None:
    fake_server.queue(fake.stream_reply(fake.stream_events(["one ", "two ", "three"]), cut_after=1))
    received: list[str] = []
    with pytest.raises(APIConnectionError) as caught:
        async for chunk in provider.astream(ask()):
            received.append(chunk.text)
    assert received == ["one "]
    assert caught.value.partial_text == "one "
    assert len(fake_server.requests) == 1
    await provider.aclose()


async def test_async_stream_error_event(fake_server: FakeServer, provider: GeminiProvider, async_backend: str) -> None:
    chunks = sse([(None, fake.response_body("x", finish_reason=None)), (None, fake.error_body(500, "boom"))])
    fake_server.queue(Reply(chunks=chunks))
    with pytest.raises(ServiceUnavailableError):
        async for _ in provider.astream(ask()):
            pass
    await provider.aclose()


async def test_async_client_retries_then_succeeds(
    fake_server: FakeServer, retry_sleeps: list[float], async_backend: str
) -> None:
    fake_server.queue(
        fake.error_reply(429, "quota"),
        fake.error_reply(503, "busy"),
        fake.generate_reply("made it"),
        fake.error_reply(503, "busy"),
        fake.stream_reply(fake.stream_events(["stream ", "ok"])),
    )
    async with gemini_client(fake_server, max_retries=2) as client:
        reply = await client.acomplete("hi", model=f"gemini/{MODEL}")
        assert reply.text == "made it"
        assert len(fake_server.requests) == 3
        stream = client.astream("hi", model=f"gemini/{MODEL}")
        text = "".join([c.text async for c in stream])
    assert text == "stream ok"
    assert len(fake_server.requests) == 5
    assert len(retry_sleeps) == 3


async def test_async_client_no_retry_on_400(
    fake_server: FakeServer, retry_sleeps: list[float], async_backend: str
) -> None:
    fake_server.queue(fake.error_reply(400, "bad request"))
    async with gemini_client(fake_server, max_retries=2) as client:
        with pytest.raises(BadRequestError):
            await client.acomplete("hi", model=f"gemini/{MODEL}")
    assert len(fake_server.requests) == 1 and retry_sleeps == []


# =============================================================================================
# Gemini 3 and function-call history it did not produce (thought signature placeholder)
# =============================================================================================

GEMINI_3 = "gemini-3-pro-preview"
PLACEHOLDER = b"skip_thought_signature_validator"


@pytest.fixture
def gemini_api(fake_server: FakeServer) -> fake.GeminiAPI:
    """The routing fake on the Developer API, enforcing credentials and Gemini 3's signature rule."""
    api = fake.GeminiAPI("gemini", api_key=KEY)
    fake_server.handler = api
    return api


def foreign_history() -> tuple[Message, ...]:
    """A conversation whose tool calls another provider made (e.g. before a fallback): two
    parallel calls in the current turn, one call in an earlier turn, no Gemini state at all."""
    return (
        Message(role="user", content="Weather in Oslo?"),
        Message(
            role="assistant",
            tool_calls=(ToolCall("toolu_01", "get_weather", {"city": "Oslo"}),),
            provider_state={"anthropic": {"content": [{"type": "text", "text": "x"}]}},
        ),
        Message.tool_result("toolu_01", "-3 C", name="get_weather"),
        Message(role="assistant", content="Cold."),
        Message(role="user", content="And Paris and Rome?"),
        Message(
            role="assistant",
            content="Checking both.",
            tool_calls=(
                ToolCall("toolu_02", "get_weather", {"city": "Paris"}),
                ToolCall("toolu_03", "get_weather", {"city": "Rome"}),
            ),
        ),
        Message.tool_result("toolu_02", "21 C", name="get_weather"),
        Message.tool_result("toolu_03", "25 C", name="get_weather"),
    )


def test_fake_rejects_unsigned_gemini_3_history_like_the_api(fake_server: FakeServer, gemini_api: Any) -> None:
    """The fake's rule, met by the bare SDK: without the placeholder, Gemini 3 says 400."""
    from google import genai
    from google.genai import errors as genai_errors

    sdk = genai.Client(api_key=KEY, http_options={"base_url": fake_server.url})
    unsigned = build_contents(foreign_history(), "gemini")  # no model: nothing added
    with pytest.raises(genai_errors.ClientError) as caught:
        sdk.models.generate_content(model=GEMINI_3, contents=unsigned)
    assert caught.value.code == 400 and "thought_signature" in str(caught.value)
    # an older generation does not check, so the same history is accepted there
    gemini_api.queue(fake.generate_reply("fine"))
    assert sdk.models.generate_content(model=MODEL, contents=unsigned).text == "fine"
    sdk.close()


def test_foreign_tool_calls_get_the_placeholder_on_gemini_3(
    fake_server: FakeServer, gemini_api: Any, provider: GeminiProvider
) -> None:
    gemini_api.queue(fake.generate_reply("Paris 21 C, Rome 25 C."))
    reply = provider.complete(Request(model=GEMINI_3, messages=foreign_history(), tools=(WEATHER,)))
    assert reply.text == "Paris 21 C, Rome 25 C."
    assert len(fake_server.requests) == 1
    contents = body(fake_server)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user", "model", "user"]
    # the current turn's step: only its first function call is signed, with the placeholder
    current = contents[5]["parts"]
    assert current[0] == {"text": "Checking both."}
    assert current[1]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert signature_in(current[1]) == [PLACEHOLDER]
    assert signature_in(current[2]) == []
    # an earlier turn is not validated by the API and is sent as it was
    assert signature_in(contents[1]) == []


def test_real_signatures_round_trip_untouched_on_gemini_3(
    fake_server: FakeServer, gemini_api: Any, provider: GeminiProvider
) -> None:
    gemini_api.queue(
        fake.generate_reply(
            None,
            parts=[
                fake.function_call_part("get_weather", {"city": "Paris"}, thought_signature=SIGNATURE),
                fake.function_call_part("get_weather", {"city": "Rome"}),
            ],
            model_version=GEMINI_3,
        ),
        fake.generate_reply("Both warm.", model_version=GEMINI_3),
    )
    question = Message(role="user", content="Paris and Rome?")
    first = provider.complete(Request(model=GEMINI_3, messages=(question,), tools=(WEATHER,)))
    paris, rome = first.tool_calls
    provider.complete(
        Request(
            model=GEMINI_3,
            messages=(
                question,
                first.message,
                Message.tool_result(paris.id, "21 C", name="get_weather"),
                Message.tool_result(rome.id, "25 C", name="get_weather"),
            ),
            tools=(WEATHER,),
        )
    )
    assert len(fake_server.requests) == 2
    model_parts = body(fake_server, 1)["contents"][1]["parts"]
    assert [signature_in(p) for p in model_parts] == [[SIGNATURE], []]


def test_edited_gemini_history_gets_the_placeholder(
    fake_server: FakeServer, gemini_api: Any, provider: GeminiProvider
) -> None:
    state = {
        "gemini": {
            "parts": [{"function_call": {"name": "get_weather", "args": {"city": "Oslo"}}, "thought_signature": "AAEC"}]
        }
    }
    edited = Message(
        role="assistant", tool_calls=(ToolCall("c1", "get_weather", {"city": "Bergen"}),), provider_state=state
    )
    gemini_api.queue(fake.stream_reply(fake.stream_events(["Rainy."])))
    messages = (Message(role="user", content="Bergen?"), edited, Message.tool_result("c1", "rain", name="get_weather"))
    chunks = list(provider.stream(Request(model=GEMINI_3, messages=messages, tools=(WEATHER,))))
    assert "".join(c.text for c in chunks) == "Rainy."
    # the stored signature belonged to the call before the edit: the placeholder replaces it
    assert signature_in(body(fake_server)["contents"][1]) == [PLACEHOLDER]


def test_older_gemini_gets_no_placeholder() -> None:
    def signed(model: str) -> list[Any]:
        contents = build_params(Request(model=model, messages=foreign_history()))["contents"]
        return [p["thought_signature"] for c in contents for p in c["parts"] if "thought_signature" in p]

    assert signed(MODEL) == [] and signed("gemma-3-27b-it") == []
    # an unversioned alias may be Gemini 3: it gets the placeholder, which older models accept too
    assert signed("gemini-flash-latest") == [PLACEHOLDER] and signed(GEMINI_3) == [PLACEHOLDER]


# =============================================================================================
# Images in tool results (multimodal function responses) and system messages
# =============================================================================================


def camel(value: Any) -> Any:
    """JSON keys in the API's camelCase. The SDK sends a function response's media parts with
    proto field names (``inline_data``), which the API's JSON parser accepts as well."""
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def screenshot_result(image: ImagePart) -> tuple[Message, ...]:
    return (
        Message(role="user", content="What does the page show?"),
        Message(role="assistant", tool_calls=(ToolCall("call-1", "screenshot", {}),)),
        Message(role="tool", content=(TextPart("captured"), image), tool_call_id="call-1", name="screenshot"),
    )


def test_image_in_a_tool_result_is_sent_to_gemini_3(
    fake_server: FakeServer, gemini_api: Any, provider: GeminiProvider
) -> None:
    gemini_api.queue(fake.generate_reply("A login form."))
    messages = screenshot_result(ImagePart(data=PNG, media_type="image/png"))
    assert provider.complete(Request(model=GEMINI_3, messages=messages)).text == "A login form."
    response = camel(body(fake_server)["contents"][2]["parts"][0]["functionResponse"])
    assert response["name"] == "screenshot" and response["response"] == {"output": "captured"}
    [part] = response["parts"]
    assert part["inlineData"]["mimeType"] == "image/png"
    assert fake.b64decode_any(part["inlineData"]["data"]) == PNG


@pytest.mark.parametrize(
    ("model", "image", "match"),
    [
        (MODEL, ImagePart(data=PNG, media_type="image/png"), "Gemini 3 or later"),
        (GEMINI_3, ImagePart(url="https://example.com/shot.png", media_type="image/png"), "only as inline data"),
    ],
)
def test_image_in_a_tool_result_is_refused_where_gemini_cannot_take_it(
    fake_server: FakeServer, provider: GeminiProvider, model: str, image: ImagePart, match: str
) -> None:
    with pytest.raises(UnsupportedFeatureError, match=match):
        provider.complete(Request(model=model, messages=screenshot_result(image)))
    assert fake_server.requests == []


def test_system_message_image_is_refused_before_sending(fake_server: FakeServer) -> None:
    system = {"role": "system", "content": [{"type": "text", "text": "Match this style:"}, ImagePart(data=PNG)]}
    with gemini_client(fake_server) as client, pytest.raises(UnsupportedFeatureError, match="system"):
        client.complete([system, {"role": "user", "content": "Hi"}], model=f"gemini/{GEMINI_3}")
    assert fake_server.requests == []


# =============================================================================================
# Vertex AI over the wire: explicit credentials, express mode, missing ADC
# =============================================================================================

PROJECT, LOCATION, TOKEN = "proj-fm", "europe-west4", "fake-oauth-token"
VERTEX_PREFIX = f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models"
EXPRESS_PREFIX = "/v1beta1/publishers/google/models"


def vertex_settings(server: FakeServer, token: str = TOKEN) -> ProviderSettings:
    from google.oauth2.credentials import Credentials

    options = {"vertexai": True, "project": PROJECT, "location": LOCATION, "credentials": Credentials(token=token)}
    return ProviderSettings(name="vertex", type="gemini", base_url=server.url, options=options)


def express_settings(server: FakeServer) -> ProviderSettings:
    return ProviderSettings(
        name="vertex", type="gemini", api_key=Secret(KEY), base_url=server.url, options={"vertexai": True}
    )


@pytest.fixture(params=["vertex", "express"])
def vertex_case(request: pytest.FixtureRequest, fake_server: FakeServer) -> Iterator[tuple[GeminiProvider, Any, str]]:
    """A Vertex AI adapter (OAuth credentials with project/location, or express mode's API key),
    the routing fake that checks its credential, and the path prefix it must use."""
    if request.param == "vertex":
        api = fake.GeminiAPI("vertex", token=TOKEN, project=PROJECT, location=LOCATION)
        adapter = GeminiProvider(vertex_settings(fake_server))
        prefix = VERTEX_PREFIX
    else:
        api = fake.GeminiAPI("express", api_key=KEY)
        adapter = GeminiProvider(express_settings(fake_server))
        prefix = EXPRESS_PREFIX
    fake_server.handler = api
    adapter.check_ready(MODEL)
    yield adapter, api, prefix
    adapter.close()


def assert_credential(sent: Any, prefix: str) -> None:
    if prefix == VERTEX_PREFIX:
        assert sent.headers["authorization"] == f"Bearer {TOKEN}" and "x-goog-api-key" not in sent.headers
    else:
        assert sent.headers["x-goog-api-key"] == KEY and "authorization" not in sent.headers


def test_vertex_complete_and_stream(fake_server: FakeServer, vertex_case: Any) -> None:
    adapter, api, prefix = vertex_case
    api.queue(fake.generate_reply("from vertex"), fake.stream_reply(fake.stream_events(["ver", "tex"])))
    assert adapter.complete(ask(system="Be brief.", max_tokens=8)).text == "from vertex"
    chunks = list(adapter.stream(ask()))
    assert "".join(c.text for c in chunks) == "vertex" and chunks[-1].finish_reason == "stop"
    first, second = fake_server.requests
    assert first.path == f"{prefix}/{MODEL}:generateContent"
    assert second.path == f"{prefix}/{MODEL}:streamGenerateContent?alt=sse"
    for sent in (first, second):
        assert_credential(sent, prefix)
    assert first.json()["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert first.json()["generationConfig"] == {"maxOutputTokens": 8}


def test_vertex_tool_round_trip(fake_server: FakeServer, vertex_case: Any) -> None:
    adapter, api, prefix = vertex_case
    api.queue(
        fake.generate_reply(
            None, parts=[fake.function_call_part("get_weather", {"city": "Lima"}, thought_signature=SIGNATURE)]
        ),
        fake.generate_reply("Warm."),
    )
    question = Message(role="user", content="Lima?")
    first = adapter.complete(Request(model=GEMINI_3, messages=(question,), tools=(WEATHER,), tool_choice="required"))
    [call] = first.tool_calls
    assert first.finish_reason == "tool_calls" and call.arguments == {"city": "Lima"}
    result = Message.tool_result(call.id, {"temp_c": 27}, name="get_weather")
    second = adapter.complete(Request(model=GEMINI_3, messages=(question, first.message, result), tools=(WEATHER,)))
    assert second.text == "Warm."
    assert [r.path for r in fake_server.requests] == [f"{prefix}/{GEMINI_3}:generateContent"] * 2
    sent = body(fake_server, 0)
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    contents = body(fake_server, 1)["contents"]
    assert signature_in(contents[1]) == [SIGNATURE]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 27}}}]


def test_vertex_takes_an_image_url_in_a_tool_result(fake_server: FakeServer, vertex_case: Any) -> None:
    adapter, api, _ = vertex_case
    api.queue(fake.generate_reply("A chart."))
    image = ImagePart(url="gs://bucket/chart.png", media_type="image/png")
    adapter.complete(Request(model=GEMINI_3, messages=screenshot_result(image)))
    response = camel(body(fake_server)["contents"][2]["parts"][0]["functionResponse"])
    assert response["parts"] == [{"fileData": {"fileUri": "gs://bucket/chart.png", "mimeType": "image/png"}}]


@pytest.mark.parametrize(
    ("model", "count", "method"),
    [
        ("gemini-embedding-001", 3, "batchEmbedContents"),
        ("gemini-embedding-001", 1, "embedContent"),
        ("text-embedding-005", 3, "predict"),
    ],
)
def test_vertex_embeddings(fake_server: FakeServer, vertex_case: Any, model: str, count: int, method: str) -> None:
    adapter, _, prefix = vertex_case
    texts = tuple(f"text number {i}" for i in range(count))
    result = adapter.embed(EmbedRequest(model=model, texts=texts, provider_options={"output_dimensionality": 3}))
    assert result.vectors == [(fake.fake_vector(t) * 3)[:3] for t in texts]
    assert result.usage.input_tokens == sum(fake.token_count(t) for t in texts)
    [sent] = fake_server.requests
    assert sent.path == f"{prefix}/{model}:{method}"
    assert_credential(sent, prefix)


async def test_vertex_async(fake_server: FakeServer, vertex_case: Any, async_backend: str) -> None:
    adapter, api, prefix = vertex_case
    api.queue(fake.generate_reply("async vertex"), fake.stream_reply(fake.stream_events(["a", "b"])))
    assert (await adapter.acomplete(ask())).text == "async vertex"
    assert "".join([c.text async for c in adapter.astream(ask())]) == "ab"
    result = await adapter.aembed(EmbedRequest(model="gemini-embedding-001", texts=("x y", "z")))
    assert result.vectors == [fake.fake_vector("x y"), fake.fake_vector("z")] and result.usage.input_tokens == 3
    assert [r.path.rsplit(":", 1)[-1] for r in fake_server.requests] == [
        "generateContent",
        "streamGenerateContent?alt=sse",
        "batchEmbedContents",
    ]
    for sent in fake_server.requests:
        assert sent.path.startswith(prefix)
        assert_credential(sent, prefix)
    await adapter.aclose()


def test_vertex_wrong_token_is_an_authentication_error(fake_server: FakeServer) -> None:
    fake_server.handler = fake.GeminiAPI("vertex", token=TOKEN, project=PROJECT, location=LOCATION)
    adapter = GeminiProvider(vertex_settings(fake_server, token="stale-token"))
    with pytest.raises(AuthenticationError):
        adapter.complete(ask())
    assert len(fake_server.requests) == 1
    adapter.close()


def test_vertex_through_the_client(fake_server: FakeServer) -> None:
    from google.oauth2.credentials import Credentials

    api = fake.GeminiAPI("vertex", token=TOKEN, project=PROJECT, location=LOCATION)
    fake_server.handler = api
    api.queue(fake.generate_reply("configured"))
    vertex = {
        "type": "gemini",
        "base_url": fake_server.url,
        "vertexai": True,
        "project": PROJECT,
        "location": LOCATION,
        "credentials": Credentials(token=TOKEN),
    }
    with Client(providers={"vertex": vertex}) as client:
        assert client.complete("Hi", model=f"vertex/{MODEL}").text == "configured"
        assert client.embed(["a b"], model="vertex/gemini-embedding-001").usage.input_tokens == 2
    assert [r.path for r in fake_server.requests] == [
        f"{VERTEX_PREFIX}/{MODEL}:generateContent",
        f"{VERTEX_PREFIX}/gemini-embedding-001:embedContent",
    ]


def test_vertex_credentials_setting_must_be_credentials() -> None:
    adapter = GeminiProvider(
        ProviderSettings(name="vertex", type="gemini", options={"vertexai": True, "credentials": "token"})
    )
    with pytest.raises(ConfigurationError, match=r"google\.auth\.credentials\.Credentials"):
        adapter.check_ready(MODEL)


def test_vertex_with_a_credentials_file_that_is_missing(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    adapter = GeminiProvider(
        ProviderSettings(
            name="vertex",
            type="gemini",
            base_url=fake_server.url,
            options={"vertexai": True, "project": PROJECT, "location": LOCATION},
        )
    )
    with pytest.raises(ConfigurationError) as caught:
        adapter.complete(ask())
    message = str(caught.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message and "gcloud auth application-default login" in message
    assert "missing.json" in message
    assert fake_server.requests == []


def test_vertex_without_application_default_credentials(fake_server: FakeServer, tmp_path: Any) -> None:
    """No ADC anywhere: no variable, an empty gcloud config, and a metadata server that is a
    closed loopback port (google.auth reads its address at import, hence the subprocess)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        metadata = f"127.0.0.1:{closed.getsockname()[1]}"
    code = f"""
import sys
from fmclient.errors import ConfigurationError
from fmclient.providers.base import ProviderSettings
from fmclient.providers.gemini import GeminiProvider
from fmclient.types import Message, Request
options = {{"vertexai": True, "project": "{PROJECT}", "location": "{LOCATION}"}}
adapter = GeminiProvider(ProviderSettings(name="vertex", type="gemini", base_url="{fake_server.url}", options=options))
try:
    adapter.complete(Request(model="{MODEL}", messages=(Message(role="user", content="Hi"),)))
except ConfigurationError as exc:
    print(exc)
    sys.exit(0)
sys.exit("no ConfigurationError")
"""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_", "GEMINI_"))
    }
    env.update(
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        GCE_METADATA_HOST=metadata,
        GCE_METADATA_IP=metadata,
        GCE_METADATA_DETECT_RETRIES="1",
        GCE_METADATA_TIMEOUT="1",
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "gcloud auth application-default login" in done.stdout
    assert "GOOGLE_APPLICATION_CREDENTIALS" in done.stdout and "api_key" in done.stdout
    assert fake_server.requests == []
