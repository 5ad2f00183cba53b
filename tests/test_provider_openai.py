"""The OpenAI adapter: the real ``openai`` SDK against a fake OpenAI API on 127.0.0.1.

Pure translation functions get unit tests; everything else goes over loopback through the SDK,
asserting both what fmclient returned and the JSON body the SDK sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

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
from fmclient.providers.base import ProviderSettings
from fmclient.providers.openai import (
    LOCAL_PLACEHOLDER_KEY,
    OpenAIProvider,
    StreamParser,
    build_params,
    capabilities_for,
    map_error,
    parse_response,
    response_format_param,
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
    ToolCallDelta,
    Usage,
)
from tests.fakes.openai import (
    Answer,
    FakeOpenAI,
    chunk_events,
    completion_body,
    error_body,
    error_reply,
    fake_vector,
)
from tests.fakes.server import FakeServer, Reply, sse

KEY = "sk-test-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def server(fake_server: FakeServer) -> FakeServer:
    return fake_server


@pytest.fixture
def fake(server: FakeServer) -> FakeOpenAI:
    return FakeOpenAI(server)


def make_client(server: FakeServer, **settings: Any) -> Client:
    table = {"base_url": server.url + "/v1", "api_key": KEY, **settings}
    return Client(providers={"openai": table}, max_retries=2)


def make_provider(server: FakeServer, name: str = "openai", **settings: Any) -> OpenAIProvider:
    options = settings.pop("options", {})
    return OpenAIProvider(
        ProviderSettings(
            name=name,
            type="openai",
            api_key=Secret(KEY),
            base_url=server.url + "/v1",
            options=options,
            **settings,
        )
    )


def slow_reply() -> Reply:
    # Headers at once, the body only after the client's timeout: the server then writes into a
    # closed connection, which FakeServer tolerates for chunked bodies.
    body = json.dumps(completion_body(Answer("late"))).encode()
    return Reply(chunks=[body], chunk_delay=0.5, content_type="application/json")


def request(text: str = "hi", **fields: Any) -> Request:
    return Request(model="gpt-4o", messages=(Message(role="user", content=text),), **fields)


# The SDK builds response objects without validation (a server may send values its types do
# not list, like an unknown finish_reason): build them the same way.
def sdk_completion(body: dict[str, Any]) -> Any:
    from openai._models import construct_type
    from openai.types.chat import ChatCompletion

    return construct_type(type_=ChatCompletion, value=body)


def sdk_chunk(body: dict[str, Any]) -> Any:
    from openai._models import construct_type
    from openai.types.chat import ChatCompletionChunk

    return construct_type(type_=ChatCompletionChunk, value=body)


# -- pure translation ---------------------------------------------------------------------------
def test_build_params_conversation_with_tool_round_trip() -> None:
    req = Request(
        model="gpt-4o",
        system="Be brief.",
        messages=(
            Message(role="user", content="Weather in Paris?"),
            Message(role="assistant", tool_calls=(ToolCall("call_1", "get_weather", {"city": "Paris"}),)),
            Message(role="tool", content='{"temp": 21}', tool_call_id="call_1", name="get_weather"),
        ),
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        tools=(WEATHER,),
        tool_choice="get_weather",
    )
    params = build_params(req, max_tokens_param="max_completion_tokens")
    assert params["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    assert params["max_completion_tokens"] == 50 and "max_tokens" not in params
    assert (params["temperature"], params["top_p"], params["stop"]) == (0.2, 0.9, ["END"])
    assert params["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]
    assert params["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "stream" not in params


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_build_params_tool_choice_keywords(choice: str) -> None:
    assert build_params(request(tools=(WEATHER,), tool_choice=choice))["tool_choice"] == choice


def test_build_params_provider_options_known_as_kwargs_unknown_in_extra_body() -> None:
    req = request(
        provider_options={
            "seed": 7,
            "top_k": 40,
            "extra_body": {"min_p": 0.1},
            "stream_options": {"x": 1},
        }
    )
    params = build_params(req, stream=True, sdk_params=frozenset({"seed", "stream_options"}))
    assert params["seed"] == 7
    assert params["extra_body"] == {"top_k": 40, "min_p": 0.1}
    assert params["stream_options"] == {"include_usage": True, "x": 1}


def test_build_params_images_as_image_url_parts() -> None:
    req = Request(
        model="gpt-4o",
        messages=(
            Message(
                role="user",
                content=(
                    TextPart("What is this?"),
                    ImagePart(url="https://example.com/cat.jpg"),
                    ImagePart(data=PNG, media_type="image/png"),
                ),
            ),
        ),
    )
    content = build_params(req)["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
    ]


def test_tool_message_without_id_is_refused() -> None:
    req = Request(model="m", messages=(Message(role="tool", content="x"),))
    with pytest.raises(BadRequestError, match="tool_call_id"):
        build_params(req)


def test_response_format_strict_when_schema_allows_it() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"k": {"type": "string"}},
                    "required": ["k"],
                },
            },
        },
        "required": ["name", "tags"],
    }
    param = response_format_param(ResponseFormat(name="Person card!", schema=schema))
    spec = param["json_schema"]
    assert param["type"] == "json_schema"
    assert spec["name"] == "Person_card_" and spec["strict"] is True
    assert spec["schema"]["additionalProperties"] is False
    assert spec["schema"]["properties"]["tags"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the caller's schema is not modified


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "object"}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": True},
        {
            "type": "object",
            "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
            "required": ["a"],
        },
        {"type": "array", "items": {"type": "string"}},
    ],
)
def test_response_format_not_strict_when_schema_cannot_be(schema: dict[str, Any]) -> None:
    spec = response_format_param(ResponseFormat(name="r", schema=schema))["json_schema"]
    assert spec["strict"] is False
    assert spec["schema"] == schema


def test_parse_response_usage_finish_and_tool_calls() -> None:
    answer = Answer(
        "",
        tool_calls=[("call_9", "get_weather", '{"city": "Oslo"}')],
        prompt_tokens=100,
        completion_tokens=40,
        cached_tokens=64,
        reasoning_tokens=30,
    )
    completion = parse_response(sdk_completion(completion_body(answer)), provider="openai", model="gpt-4o")
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == [ToolCall("call_9", "get_weather", {"city": "Oslo"})]
    assert completion.message.tool_calls == (ToolCall("call_9", "get_weather", {"city": "Oslo"}),)
    assert completion.usage == Usage(input_tokens=100, output_tokens=40, cached_input_tokens=64, reasoning_tokens=30)
    assert completion.model == "gpt-4o-2024-08-06" and completion.provider == "openai"


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        ("eos", "other"),
    ],
)
def test_finish_reasons(wire: str, expected: str) -> None:
    body = completion_body(Answer("x", finish_reason=wire))
    assert parse_response(sdk_completion(body), provider="p", model="m").finish_reason == expected


def test_invalid_tool_arguments_are_a_clear_error() -> None:
    body = completion_body(Answer(tool_calls=[("call_1", "get_weather", '{"city": "Par')]))
    with pytest.raises(StructuredOutputError, match=r"get_weather.*not valid JSON") as info:
        parse_response(sdk_completion(body), provider="openai", model="gpt-4o")
    assert info.value.text == '{"city": "Par'


def test_refusal_is_the_text_with_content_filter() -> None:
    body = completion_body(Answer(refusal="I can't help with that."))
    completion = parse_response(sdk_completion(body), provider="openai", model="gpt-4o")
    assert (completion.text, completion.finish_reason) == ("I can't help with that.", "content_filter")


def test_stream_parser_holds_finish_until_usage() -> None:
    parser = StreamParser("openai", "gpt-4o", require_usage=True)
    events = [json.loads(e[len(b"data: ") :]) for e in chunk_events(Answer("a b"), include_usage=True)[:-1]]
    chunks = [c for c in (parser.feed(sdk_chunk(e)) for e in events) if c is not None]
    assert [c.text for c in chunks] == ["a ", "b"]
    final = parser.end()
    assert (final.finish_reason, final.model) == ("stop", "gpt-4o-2024-08-06")
    assert final.usage == Usage(12, 5, 0)


def test_stream_parser_without_finish_is_a_broken_stream() -> None:
    parser = StreamParser("local", "m")
    first = json.loads(chunk_events(Answer("a"), include_usage=False)[1][len(b"data: ") :])
    assert parser.feed(sdk_chunk(first)) == Chunk(text="a")
    with pytest.raises(APIConnectionError, match="finish_reason"):
        parser.end()


def test_capabilities() -> None:
    assert capabilities_for("o3", native=True).temperature is False
    assert capabilities_for("gpt-5-mini", native=True).stop is False
    assert capabilities_for("gpt-4o", native=True).max_stop_sequences == 4
    assert capabilities_for("gpt-4o", native=True).embeddings is False
    embed = capabilities_for("text-embedding-3-small", native=True)
    assert (embed.chat, embed.embeddings) == (False, True)
    assert capabilities_for("gpt-3.5-turbo", native=True).structured_output is False
    # A compatible server's model names mean nothing to us: the server decides.
    anything = capabilities_for("o3-lookalike", native=False)
    assert anything.temperature and anything.embeddings


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        ({"message": "too long", "type": "BadRequestError", "code": 400}, BadRequestError),
        ({"message": "This model's maximum context length is 4096 tokens", "code": 400}, ContextWindowExceededError),
        (
            {"message": "x", "type": "invalid_request_error", "code": "context_length_exceeded"},
            ContextWindowExceededError,
        ),
        ({"message": "x", "type": "invalid_request_error", "code": "content_filter"}, ContentFilterError),
        ({"message": "x", "type": "tokens", "code": "rate_limit_exceeded"}, RateLimitError),
        ({"message": "x", "type": "server_error", "code": None}, ServiceUnavailableError),
        ({"message": "x", "code": "503"}, ServiceUnavailableError),
    ],
)
def test_map_error_for_errors_inside_a_stream(body: dict[str, Any], cls: type[FMClientError]) -> None:
    import openai

    try:
        import httpx2 as http  # what SDK 3.x is built on
    except ImportError:  # older SDKs (the lowest-versions CI job) are built on httpx
        import httpx as http

    exc = openai.APIError(body["message"], http.Request("POST", "http://x"), body=body)
    error = map_error(exc, provider="p", model="m")
    assert type(error) is cls and error.provider == "p"


# -- over loopback, through the Client -----------------------------------------------------------
def test_complete(server: FakeServer, fake: FakeOpenAI) -> None:
    fake.answer(Answer("Hello there!", prompt_tokens=21, completion_tokens=3, cached_tokens=16))
    client = make_client(server)
    reply = client.complete(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello?"},
            {"role": "user", "content": "Greet me"},
        ],
        model="openai/gpt-4o",
        system="You are kind.",
        max_tokens=64,
        temperature=0.5,
        top_p=0.8,
        stop=["\n\n"],
        seed=42,
        top_k=5,
    )
    assert reply.text == "Hello there!" and reply.finish_reason == "stop"
    assert reply.provider == "openai" and reply.model == "gpt-4o-2024-08-06"
    assert reply.usage == Usage(input_tokens=21, output_tokens=3, cached_input_tokens=16)
    assert reply.message == Message(role="assistant", content="Hello there!")
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are kind."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello?"},
            {"role": "user", "content": "Greet me"},
        ],
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["\n\n"],
        "seed": 42,
        "top_k": 5,
    }
    # raw is the JSON body as a dict, every field as the server sent it
    assert reply.raw == completion_body(Answer("Hello there!", prompt_tokens=21, completion_tokens=3, cached_tokens=16))


def test_stream(server: FakeServer, fake: FakeOpenAI) -> None:
    fake.answer(Answer("one two three four", prompt_tokens=9, completion_tokens=4))
    client = make_client(server)
    stream = client.stream("count", model="openai/gpt-4o", max_tokens=10)
    chunks = list(stream)
    deltas = [c.text for c in chunks if c.text]
    assert deltas == ["one ", "two ", "three ", "four"]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == Usage(9, 4, 0)
    completion = stream.completion
    assert completion.text == "".join(deltas) == "one two three four"
    assert completion.usage == Usage(9, 4, 0) and completion.model == "gpt-4o-2024-08-06"
    body = server.requests[0].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 10


def test_tool_call_and_tool_result_round_trip(server: FakeServer, fake: FakeOpenAI) -> None:
    fake.answer(
        Answer(tool_calls=[("call_abc", "get_weather", '{"city": "Paris"}')]),
        Answer("It is 21C in Paris."),
    )
    client = make_client(server)
    first = client.complete("Weather in Paris?", model="openai/gpt-4o", tools=[WEATHER], tool_choice="required")
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls == [ToolCall("call_abc", "get_weather", {"city": "Paris"})]
    history = [
        Message(role="user", content="Weather in Paris?"),
        first.message,
        Message.tool_result("call_abc", {"temp_c": 21}),
    ]
    second = client.complete(history, model="openai/gpt-4o", tools=[WEATHER])
    assert second.text == "It is 21C in Paris."
    bodies = fake.bodies()
    assert bodies[0]["tool_choice"] == "required"
    assert bodies[0]["tools"][0]["function"]["name"] == "get_weather"
    assert bodies[1]["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp_c": 21}'},
    ]


def test_streamed_tool_call_deltas(server: FakeServer, fake: FakeOpenAI) -> None:
    fake.answer(
        Answer(
            tool_calls=[
                ("call_1", "get_weather", '{"city": "Rome"}'),
                ("call_2", "get_weather", '{"city": "Oslo"}'),
            ]
        )
    )
    client = make_client(server)
    stream = client.stream("weather?", model="openai/gpt-4o", tools=[WEATHER], tool_choice="get_weather")
    deltas = [d for chunk in stream for d in chunk.tool_calls]
    assert deltas[0] == ToolCallDelta(index=0, id="call_1", name="get_weather", arguments="")
    assert "".join(d.arguments for d in deltas if d.index == 1) == '{"city": "Oslo"}'
    assert len([d for d in deltas if d.index == 0]) > 2  # arguments arrived in fragments
    completion = stream.completion
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == [
        ToolCall("call_1", "get_weather", {"city": "Rome"}),
        ToolCall("call_2", "get_weather", {"city": "Oslo"}),
    ]
    assert server.requests[0].json()["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


class City(BaseModel):
    name: str
    population: int


def test_structured_output(server: FakeServer, fake: FakeOpenAI) -> None:
    fake.answer(Answer('{"name": "Lyon", "population": 522000}'))
    reply = make_client(server).complete("Biggest city near Alps?", model="openai/gpt-4o", response_format=City)
    assert reply.parsed == City(name="Lyon", population=522000)
    sent = server.requests[0].json()["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "City" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["additionalProperties"] is False
    assert sent["json_schema"]["schema"]["required"] == ["name", "population"]


def test_image_input(server: FakeServer, fake: FakeOpenAI) -> None:
    make_client(server).complete(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image", "image": "https://example.com/a.png"},
                    {"type": "image", "image": PNG},
                ],
            }
        ],
        model="openai/gpt-4o",
    )
    parts = server.requests[0].json()["messages"][0]["content"]
    assert parts == [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
    ]


def test_embeddings_in_batches(server: FakeServer, fake: FakeOpenAI) -> None:
    texts = ["alpha", "beta gamma", "delta", "epsilon zeta eta", "theta"]
    client = make_client(server, embed_batch_size=2)
    result = client.embed(texts, model="openai/text-embedding-3-small", dimensions=6)
    # The fake answers each batch in reverse order: vectors are placed by index.
    assert result.vectors == [fake_vector(t, 6) for t in texts]
    assert result.usage == Usage(input_tokens=8)  # 3 + 4 + 1 words across three requests
    assert result.provider == "openai" and result.model == "text-embedding-3-small"
    bodies = fake.bodies("/embeddings")
    assert [b["input"] for b in bodies] == [texts[0:2], texts[2:4], texts[4:]]
    assert all(b["dimensions"] == 6 and b["model"] == "text-embedding-3-small" for b in bodies)


def test_embedding_batch_size_defaults_to_openai_limit(server: FakeServer) -> None:
    assert make_provider(server)._batch_size == 2048
    with pytest.raises(ConfigurationError, match="embed_batch_size"):
        make_provider(server, options={"embed_batch_size": 0})


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (error_reply(400, "bad value for temperature"), BadRequestError),
        (
            error_reply(
                400,
                "This model's maximum context length is 128000 tokens. However, your messages "
                "resulted in 200000 tokens.",
                code="context_length_exceeded",
            ),
            ContextWindowExceededError,
        ),
        (
            error_reply(
                400,
                "The response was filtered due to the prompt triggering content management policy.",
                code="content_filter",
            ),
            ContentFilterError,
        ),
        (error_reply(400, "Invalid prompt: flagged", code="invalid_prompt"), ContentFilterError),
        (
            error_reply(401, "Incorrect API key provided", type="invalid_request_error", code="invalid_api_key"),
            AuthenticationError,
        ),
        (error_reply(403, "Project does not have access"), PermissionDeniedError),
        (error_reply(404, "The model `gpt-9` does not exist", code="model_not_found"), ModelNotFoundError),
        (error_reply(408, "request timeout"), RequestTimeoutError),
        (error_reply(413, "request too large"), ContextWindowExceededError),
        (error_reply(422, "unprocessable"), BadRequestError),
        (error_reply(429, "Rate limit reached", type="requests", code="rate_limit_exceeded"), RateLimitError),
        (error_reply(500, "The server had an error", type="server_error"), ServiceUnavailableError),
        (error_reply(503, "overloaded", type="server_error"), ServiceUnavailableError),
        (Reply(status=502, body="<html>Bad gateway</html>", content_type="text/html"), ServiceUnavailableError),
        (Reply(body="{not json", content_type="application/json"), ServiceUnavailableError),
        (Reply(body="<html>login page</html>", content_type="text/html"), ServiceUnavailableError),
        (Reply(body={"object": "list", "data": []}), ServiceUnavailableError),
        (Reply(reset=True), APIConnectionError),
    ],
)
def test_error_mapping(server: FakeServer, reply: Reply, cls: type[FMClientError]) -> None:
    server.queue(reply)
    with pytest.raises(FMClientError) as info:
        make_provider(server).complete(request())
    assert type(info.value) is cls
    assert info.value.provider == "openai" and info.value.model == "gpt-4o"
    # The SDK's exception stays chained (a body the SDK accepted but fmclient could not read
    # has none: the adapter found the fault itself).
    assert info.value.__cause__ is not None or "malformed" in info.value.message
    assert len(server.requests) == 1  # the SDK's own retries are off


def test_error_message_and_retry_after(server: FakeServer) -> None:
    server.queue(error_reply(429, "Slow down", code="rate_limit_exceeded", headers={"retry-after-ms": "1500"}))
    with pytest.raises(RateLimitError) as info:
        make_provider(server).complete(request())
    assert info.value.retry_after == 1.5 and info.value.retryable
    assert info.value.status_code == 429 and info.value.message == "Slow down"


def test_insufficient_quota_is_not_retried(server: FakeServer, retry_sleeps: list[float]) -> None:
    server.queue(
        error_reply(429, "You exceeded your current quota", type="insufficient_quota", code="insufficient_quota")
    )
    with pytest.raises(RateLimitError) as info:
        make_client(server).complete("hi", model="openai/gpt-4o")
    assert info.value.retryable is False and len(server.requests) == 1


def test_key_never_appears_in_errors(server: FakeServer) -> None:
    server.queue(error_reply(401, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(AuthenticationError) as info:
        make_provider(server).complete(request())
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in repr(make_provider(server))


def test_connection_refused() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider(
        ProviderSettings(name="openai", type="openai", api_key=Secret(KEY), base_url=f"http://127.0.0.1:{port}/v1")
    )
    with pytest.raises(APIConnectionError, match="connection failed"):
        provider.complete(request())


def test_request_timeout_per_attempt(server: FakeServer) -> None:
    server.queue(slow_reply())
    with pytest.raises(RequestTimeoutError):
        make_provider(server).complete(request(timeout=0.1))


def test_configured_timeout(server: FakeServer) -> None:
    server.queue(slow_reply())
    with pytest.raises(RequestTimeoutError):
        make_provider(server, timeout=0.1).complete(request())


def test_retry_on_429_and_503_then_success(server: FakeServer, fake: FakeOpenAI, retry_sleeps: list[float]) -> None:
    server.queue(
        error_reply(429, "slow down", code="rate_limit_exceeded", headers={"retry-after": "0"}),
        error_reply(503, "overloaded", type="server_error"),
    )
    fake.answer(Answer("finally"))
    reply = make_client(server).complete("hi", model="openai/gpt-4o")
    assert reply.text == "finally"
    assert len(server.requests) == 3  # 2 failures + 1 success: nobody else retried
    assert retry_sleeps[0] == 0.0 and len(retry_sleeps) == 2


def test_no_retry_on_400(server: FakeServer, retry_sleeps: list[float]) -> None:
    server.queue(error_reply(400, "bad request"))
    with pytest.raises(BadRequestError):
        make_client(server).complete("hi", model="openai/gpt-4o")
    assert len(server.requests) == 1 and retry_sleeps == []


def test_stream_cut_off_mid_way(server: FakeServer) -> None:
    server.queue(Reply(chunks=chunk_events(Answer("a b c d"), include_usage=True), cut_after=3))
    seen: list[Chunk] = []
    with pytest.raises(APIConnectionError) as info:
        for chunk in make_provider(server).stream(request()):
            seen.append(chunk)
    assert [c.text for c in seen] == ["a ", "b "] and info.value.retryable


def test_stream_cut_before_first_chunk_is_retried(
    server: FakeServer, fake: FakeOpenAI, retry_sleeps: list[float]
) -> None:
    server.queue(Reply(chunks=chunk_events(Answer("x"), include_usage=True), cut_after=1))
    fake.answer(Answer("whole answer"))
    stream = make_client(server).stream("hi", model="openai/gpt-4o")
    assert stream.completion.text == "whole answer"
    assert len(server.requests) == 2


def test_stream_ending_without_finish_is_a_connection_error(server: FakeServer) -> None:
    events = chunk_events(Answer("a b c"), include_usage=True, done=False)[:3]  # no finish, no [DONE]
    server.queue(Reply(chunks=events))
    with pytest.raises(APIConnectionError, match="finish_reason"):
        list(make_provider(server).stream(request()))


def test_openai_stream_without_usage_chunk_is_cut(server: FakeServer) -> None:
    events = chunk_events(Answer("a"), include_usage=False, done=False)
    server.queue(Reply(chunks=events))
    with pytest.raises(APIConnectionError, match="usage"):
        list(make_provider(server).stream(request()))


def test_compatible_server_may_omit_usage(server: FakeServer) -> None:
    server.queue(Reply(chunks=chunk_events(Answer("a"), include_usage=False)))
    chunks = list(make_provider(server, name="local").stream(request()))
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage is None


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ({"message": "The server had an error", "type": "server_error", "code": None}, ServiceUnavailableError),
        (
            {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"},
            ContextWindowExceededError,
        ),
    ],
)
def test_error_event_inside_stream(server: FakeServer, error: dict[str, Any], cls: type[FMClientError]) -> None:
    events = chunk_events(Answer("partial"), include_usage=True)[:2] + sse([(None, {"error": error})])
    server.queue(Reply(chunks=events))
    with pytest.raises(cls, match=error["message"]):
        list(make_provider(server).stream(request()))


def test_malformed_stream_event(server: FakeServer) -> None:
    server.queue(Reply(chunks=[b"data: {oops\n\n", b"data: [DONE]\n\n"]))
    with pytest.raises(ServiceUnavailableError, match="malformed"):
        list(make_provider(server).stream(request()))


# -- async -----------------------------------------------------------------------------------------
async def test_acomplete_and_astream(server: FakeServer, fake: FakeOpenAI) -> None:
    fake.answer(Answer("async hello"), Answer("streamed async reply", completion_tokens=3))
    client = make_client(server)
    reply = await client.acomplete("hi", model="openai/gpt-4o", max_tokens=5)
    assert reply.text == "async hello" and reply.usage.output_tokens == 5
    stream = client.astream("hi", model="openai/gpt-4o")
    texts = [chunk.text async for chunk in stream if chunk.text]
    assert texts == ["streamed ", "async ", "reply"]
    assert stream.completion.text == "streamed async reply" and stream.completion.usage.output_tokens == 3
    bodies = fake.bodies()
    assert "stream" not in bodies[0] and bodies[1]["stream_options"] == {"include_usage": True}
    await client.aclose()


async def test_aembed_in_batches(server: FakeServer, fake: FakeOpenAI) -> None:
    texts = ["one", "two words", "three"]
    result = await make_client(server, embed_batch_size=2).aembed(texts, model="openai/text-embedding-3-small")
    assert result.vectors == [fake_vector(t) for t in texts]
    assert result.usage.input_tokens == 4 and len(fake.bodies("/embeddings")) == 2


async def test_async_errors_and_retries(server: FakeServer, fake: FakeOpenAI, retry_sleeps: list[float]) -> None:
    server.queue(error_reply(503, "busy", type="server_error"), Reply(reset=True))
    fake.answer(Answer("recovered"))
    reply = await make_client(server).acomplete("hi", model="openai/gpt-4o")
    assert reply.text == "recovered" and len(server.requests) == 3
    server.queue(error_reply(400, "This model's maximum context length is 8192 tokens"))
    with pytest.raises(ContextWindowExceededError):
        await make_provider(server).acomplete(request())


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (error_reply(500, "boom", type="server_error"), ServiceUnavailableError),
        (error_reply(400, "'input' is too long"), BadRequestError),
        (
            Reply(
                body={
                    "object": "list",
                    "data": [{"object": "embedding", "index": 7, "embedding": [0.1]}],
                    "model": "m",
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                }
            ),
            ServiceUnavailableError,
        ),
    ],
)
async def test_aembed_errors(server: FakeServer, reply: Reply, cls: type[FMClientError]) -> None:
    server.queue(reply)
    with pytest.raises(FMClientError) as info:
        await make_provider(server).aembed(EmbedRequest(model="text-embedding-3-small", texts=("a",)))
    assert type(info.value) is cls and info.value.provider == "openai"


async def test_astream_cut_off(server: FakeServer) -> None:
    server.queue(Reply(chunks=chunk_events(Answer("a b c d"), include_usage=True), cut_after=3))
    with pytest.raises(APIConnectionError):
        async for _ in make_provider(server).astream(request()):
            pass


async def test_async_timeout(server: FakeServer) -> None:
    server.queue(slow_reply())
    with pytest.raises(RequestTimeoutError):
        await make_provider(server).acomplete(request(timeout=0.1))


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_async_transports_behave_alike(
    server: FakeServer, fake: FakeOpenAI, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp (the default when installed) and httpx: same answers, same errors, same streams."""
    import openai

    provider = make_provider(server, options={"async_transport": transport})
    fake.answer(Answer("hello there"), Answer("streamed reply", completion_tokens=2))
    reply = await provider.acomplete(request())
    assert reply.text == "hello there" and reply.raw["object"] == "chat.completion"
    on_aiohttp = isinstance(provider._async_client()._client, openai.DefaultAioHttpClient)
    assert on_aiohttp is (transport == "aiohttp")
    chunks = [c async for c in provider.astream(request())]
    assert "".join(c.text for c in chunks) == "streamed reply"
    assert (chunks[-1].finish_reason, chunks[-1].usage) == ("stop", Usage(12, 2, 0))
    assert chunks[0].raw["object"] == "chat.completion.chunk"

    server.queue(error_reply(429, "slow down", type="rate_limit_error", headers={"retry-after": "2"}))
    with pytest.raises(RateLimitError) as limited:
        await provider.acomplete(request())
    assert limited.value.retry_after == 2.0 and limited.value.status_code == 429
    server.queue(slow_reply())
    with pytest.raises(RequestTimeoutError):
        await provider.acomplete(request(timeout=0.1))
    server.queue(Reply(reset=True))
    with pytest.raises(APIConnectionError):
        await provider.acomplete(request())
    server.queue(Reply(chunks=chunk_events(Answer("a b c d"), include_usage=True), cut_after=3))
    with pytest.raises(APIConnectionError):
        [c async for c in provider.astream(request())]
    error = {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}
    server.queue(
        Reply(chunks=chunk_events(Answer("partial"), include_usage=True)[:2] + sse([(None, {"error": error})]))
    )
    with pytest.raises(ContextWindowExceededError, match="too long"):
        [c async for c in provider.astream(request())]
    server.queue(Reply(body="<html>bad gateway</html>", content_type="text/html"))
    with pytest.raises(ServiceUnavailableError, match="malformed"):
        await provider.acomplete(request())
    await provider.aclose()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = OpenAIProvider(
        ProviderSettings(
            name="openai",
            type="openai",
            api_key=Secret(KEY),
            base_url=f"http://127.0.0.1:{port}/v1",
            options={"async_transport": transport},
        )
    )
    with pytest.raises(APIConnectionError):
        await refused.acomplete(request())
    await refused.aclose()
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


def test_async_clients_of_closed_loops_are_released(
    server: FakeServer, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    # asyncio.run per call: each finished loop's client is released, not kept (with its sockets)
    # forever, and aiohttp is left nothing to report as unclosed.
    import gc

    # Sessions that earlier tests dropped may be collected during this one and reported here:
    # collect them first, so what is counted below is this test's own.
    gc.collect()
    caplog.clear()
    provider = make_provider(server)
    for text in ("a", "b", "c"):
        fake.answer(Answer(text))
        assert asyncio.run(provider.acomplete(request())).text == text
        assert len(provider._async_clients._clients) == 1
    provider.close()
    assert provider._async_clients._clients == {}
    gc.collect()
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


def test_unknown_async_transport_refused(server: FakeServer) -> None:
    with pytest.raises(ConfigurationError, match="async_transport"):
        make_provider(server, options={"async_transport": "curl"})


# -- configuration: keys, base URLs, named compatible providers ---------------------------------
def test_named_compatible_provider_without_key(
    server: FakeServer, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    client = Client(providers={"local-vllm": {"type": "openai", "base_url": server.url}}, max_retries=0)
    fake.answer(Answer("from vllm", model="meta-llama/Llama-3.1-8B-Instruct"))
    reply = client.complete("hi", model="local-vllm/meta-llama/Llama-3.1-8B-Instruct", max_tokens=7)
    assert reply.provider == "local-vllm" and reply.model == "meta-llama/Llama-3.1-8B-Instruct"
    sent = server.requests[0]
    assert sent.path == "/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {LOCAL_PLACEHOLDER_KEY}"
    body = sent.json()
    assert body["max_tokens"] == 7 and "max_completion_tokens" not in body
    assert body["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    server.queue(error_reply(401, "key required"))
    with pytest.raises(AuthenticationError, match="no API key is configured") as info:
        client.complete("hi", model="local-vllm/m")
    assert info.value.provider == "local-vllm"


def test_named_provider_max_tokens_param_override(server: FakeServer, fake: FakeOpenAI) -> None:
    client = Client(
        providers={"gw": {"type": "openai", "base_url": server.url, "max_tokens_param": "max_completion_tokens"}}
    )
    client.complete("hi", model="gw/o3", max_tokens=3)
    assert server.requests[0].json()["max_completion_tokens"] == 3
    with pytest.raises(ConfigurationError, match="max_tokens_param"):
        Client(providers={"gw": {"type": "openai", "max_tokens_param": "tokens"}}).complete("hi", model="gw/x")


def test_named_provider_with_missing_key_env(server: FakeServer) -> None:
    client = Client(providers={"corp": {"type": "openai", "base_url": server.url, "api_key_env": "CORP_KEY"}})
    with pytest.raises(ConfigurationError, match="CORP_KEY"):
        client.complete("hi", model="corp/m")
    assert server.requests == []


def test_mistral_reads_its_own_key(server: FakeServer, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    fake.answer(Answer("Bonjour", model="mistral-large-2411"))
    client = Client(providers={"mistral": {"base_url": server.url + "/v1"}})
    reply = client.complete("Salut", model="mistral-large", max_tokens=20)  # built-in alias
    assert reply.text == "Bonjour" and reply.provider == "mistral"
    sent = server.requests[0]
    assert sent.headers["authorization"] == "Bearer mistral-secret"
    assert sent.json()["model"] == "mistral-large-latest" and sent.json()["max_tokens"] == 20


def test_mistral_stream_without_stream_options(
    server: FakeServer, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-secret")
    fake.mistral = True  # 422 if stream_options is sent; usage arrives on the finish chunk
    fake.answer(Answer("Bonjour à tous", prompt_tokens=7, completion_tokens=4))
    client = Client(providers={"mistral": {"base_url": server.url, "stream_usage": False}})
    stream = client.stream("Salut", model="mistral/mistral-small-latest")
    assert [c.text for c in stream if c.text] == ["Bonjour ", "à ", "tous"]
    assert stream.completion.usage == Usage(7, 4, 0)
    assert "stream_options" not in server.requests[0].json()


def test_stream_options_not_sent_to_mistral_api() -> None:
    provider = OpenAIProvider(
        ProviderSettings(
            name="mistral",
            type="openai",
            base_url="https://api.mistral.ai/v1",
            api_key_env="MISTRAL_API_KEY",
        )
    )
    assert "stream_options" not in provider._chat_kwargs(request(), stream=True)
    local = OpenAIProvider(ProviderSettings(name="local", type="openai", base_url="http://127.0.0.1:8000/v1"))
    assert local._chat_kwargs(request(), stream=True)["stream_options"] == {"include_usage": True}
    with pytest.raises(ConfigurationError, match="stream_usage"):
        OpenAIProvider(ProviderSettings(name="x", type="openai", options={"stream_usage": "no"}))


def test_mistral_without_key_is_a_configuration_error(server: FakeServer) -> None:
    client = Client(providers={"mistral": {"base_url": server.url}})
    with pytest.raises(ConfigurationError, match="MISTRAL_API_KEY"):
        client.complete("hi", model="mistral/mistral-small-latest")
    assert server.requests == []


def test_openai_without_key_is_a_configuration_error(server: FakeServer) -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        Client(providers={"openai": {"base_url": server.url}}).complete("hi", model="openai/gpt-4o")
    assert server.requests == []


def test_openai_reads_standard_env_vars(server: FakeServer, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")  # no base_url configured
    reply = Client().complete("hi", model="openai/gpt-4o-mini")
    assert reply.text == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_named_provider_without_base_url_is_openai(
    server: FakeServer, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("TEAM_KEY", "sk-team")
    client = Client(providers={"openai-team": {"type": "openai", "api_key_env": "TEAM_KEY"}})
    reply = client.complete("hi", model="openai-team/o3", max_tokens=9)
    assert reply.provider == "openai-team"
    sent = server.requests[0]
    assert sent.headers["authorization"] == "Bearer sk-team"
    # OpenAI itself: its reasoning models go to the Responses API (a compatible server stays on chat)
    assert sent.path.endswith("/responses")
    assert sent.json()["max_output_tokens"] == 9
    with pytest.raises(UnsupportedFeatureError, match="temperature"):
        client.complete("hi", model="openai-team/o3", temperature=0.3)  # OpenAI's capabilities apply


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` fail
    provider = OpenAIProvider(ProviderSettings(name="openai", type="openai", api_key=Secret(KEY)))
    with pytest.raises(ConfigurationError, match=r'pip install "fmclient\[openai\]"'):
        provider.check_ready("gpt-4o")


def test_organization_and_project_headers(server: FakeServer, fake: FakeOpenAI) -> None:
    make_client(server, organization="org-1", project="proj-2").complete("hi", model="openai/gpt-4o")
    headers = server.requests[0].headers
    assert (headers["openai-organization"], headers["openai-project"]) == ("org-1", "proj-2")


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting 'region_x'"):
        Client(providers={"openai": {"region_x": "eu"}}).complete("hi", model="openai/gpt-4o")


def test_sdk_client_built_once(server: FakeServer, fake: FakeOpenAI) -> None:
    client = make_client(server)
    client.complete("a", model="openai/gpt-4o")
    provider = client.provider("openai")
    assert isinstance(provider, OpenAIProvider)
    sdk_client = provider._client
    assert sdk_client is not None and sdk_client.max_retries == 0
    client.complete("b", model="openai/gpt-4o")
    list(client.stream("c", model="openai/gpt-4o"))
    client.embed(["d"], model="openai/text-embedding-3-small")
    assert provider._client is sdk_client and len(server.requests) == 4

    async def twice() -> tuple[Any, Any]:
        await client.acomplete("e", model="openai/gpt-4o")
        first = provider._async_client()
        await client.acomplete("f", model="openai/gpt-4o")
        return first, provider._async_client()

    a1, a2 = asyncio.run(twice())
    assert a1 is a2 and a1.max_retries == 0
    b1, _ = asyncio.run(twice())
    assert b1 is not a1  # a new event loop gets its own async client
    client.close()
    assert provider._client is None


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    code = "import sys, fmclient, fmclient.providers.openai; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pure_helpers_reject_non_completion_bodies() -> None:
    with pytest.raises(ServiceUnavailableError, match="malformed"):
        parse_response("<html>", provider="openai", model="m")
    with pytest.raises(ServiceUnavailableError, match="no choices"):
        parse_response(sdk_completion({**completion_body(Answer("x")), "choices": []}), provider="openai", model="m")


def test_error_body_shape() -> None:
    assert error_body("m", code="c") == {
        "error": {"message": "m", "type": "invalid_request_error", "param": None, "code": "c"}
    }


def test_embed_via_provider_directly(server: FakeServer, fake: FakeOpenAI) -> None:
    result = make_provider(server).embed(EmbedRequest(model="text-embedding-3-large", texts=("x y",)))
    assert result.vectors == [fake_vector("x y")] and result.usage.input_tokens == 2
    assert type(result.raw).__name__ == "CreateEmbeddingResponse"
