"""The Ollama adapter: the real ``ollama`` client against a fake Ollama daemon on 127.0.0.1.

Pure translation functions get unit tests; everything else goes over loopback through the SDK,
asserting what fmclient returned and the JSON body the daemon received.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from fmclient import Client
from fmclient.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
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
from fmclient.providers.ollama import (
    OllamaProvider,
    StreamState,
    build_embed_params,
    build_params,
    map_error,
    map_finish_reason,
    parse_response,
    parse_stream_event,
)
from fmclient.secret import Secret
from fmclient.types import (
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
from tests.fakes.ollama import (
    FakeOllama,
    chat_body,
    chat_reply,
    chat_stream_events,
    embed_reply,
    error_reply,
    model_not_found,
    stream_reply,
)
from tests.fakes.server import Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a place",
    "parameters": {
        "type": "object",
        "properties": {
            # Nested schema keywords the SDK's own Tool model would silently drop.
            "place": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city"],
            },
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["place"],
        "additionalProperties": False,
    },
}


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def client(server: FakeOllama) -> Iterator[Client]:
    with Client(providers={"ollama": {"base_url": server.url}}, max_retries=2) as c:
        yield c


def provider_for(url: str, **settings: Any) -> OllamaProvider:
    return OllamaProvider(ProviderSettings(name="ollama", type="ollama", base_url=url, **settings))


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()  # nothing listens there now: connections are refused
    return port


# -- pure translation -----------------------------------------------------------------------------
def test_build_params_maps_sampling_options_and_merges_provider_options() -> None:
    request = Request(
        model="llama3.2",
        messages=(Message(role="user", content="hi"),),
        system="Be brief.",
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        provider_options={"keep_alive": "10m", "options": {"num_ctx": 8192, "seed": 7}, "think": False},
    )
    body = build_params(request, stream=False)
    assert body == {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "stream": False,
        "options": {"temperature": 0.2, "top_p": 0.9, "num_predict": 50, "stop": ["END"], "num_ctx": 8192, "seed": 7},
        "keep_alive": "10m",
        "think": False,
    }


def test_build_params_keeps_the_whole_tool_schema_and_honours_tool_choice() -> None:
    tool = Tool(**WEATHER)
    request = Request(model="m", messages=(Message(role="user", content="hi"),), tools=(tool,))
    body = build_params(request, stream=True)
    assert body["tools"] == [{"type": "function", "function": WEATHER}]
    none = build_params(Request(model="m", messages=request.messages, tools=(tool,), tool_choice="none"), stream=True)
    assert "tools" not in none
    for choice in ("required", "get_weather"):
        with pytest.raises(UnsupportedFeatureError, match="cannot force a tool call"):
            build_params(Request(model="m", messages=request.messages, tools=(tool,), tool_choice=choice), stream=True)


def test_build_params_tool_history_and_thinking_state() -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments={"place": {"city": "Oslo"}})
    request = Request(
        model="m",
        messages=(
            Message(role="user", content="weather?"),
            Message(role="assistant", content="", tool_calls=(call,), provider_state={"ollama": {"thinking": "hmm"}}),
            Message(role="tool", content='{"temp": 3}', tool_call_id="call_1"),  # name looked up by id
        ),
    )
    messages = build_params(request, stream=False)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"place": {"city": "Oslo"}}}}],
        "thinking": "hmm",
    }
    assert messages[2] == {
        "role": "tool",
        "content": '{"temp": 3}',
        "tool_name": "get_weather",
        "tool_call_id": "call_1",
    }


def test_image_urls_are_refused_because_ollama_takes_inline_bytes_only() -> None:
    message = Message(role="user", content=(TextPart("what?"), ImagePart(url="https://x/cat.png")))
    with pytest.raises(UnsupportedFeatureError, match="inline bytes"):
        build_params(Request(model="llava", messages=(message,)), stream=False)


def test_finish_reasons() -> None:
    assert map_finish_reason("stop") == "stop"
    assert map_finish_reason(None) == "stop"
    assert map_finish_reason("length") == "length"
    assert map_finish_reason("load") == "other"
    assert map_finish_reason("unload") == "other"
    assert map_finish_reason("stop", has_tool_calls=True) == "tool_calls"


def test_parse_response_synthesises_missing_tool_call_ids_and_keeps_given_ones() -> None:
    body = chat_body(
        "",
        tool_calls=[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}, "id": "call_b"}],
        thinking="let me think",
    )
    completion = parse_response(body, provider="ollama", model="llama3.2")
    first, second = completion.tool_calls
    assert first.name == "a" and first.arguments == {"x": 1} and first.id.startswith("call_0_")
    assert second.id == "call_b"
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == Usage(input_tokens=12, output_tokens=7)
    assert completion.message.provider_state == {"ollama": {"thinking": "let me think"}}
    assert completion.raw is body


def test_parse_response_rejects_a_body_without_message() -> None:
    with pytest.raises(FMClientError, match="malformed response"):
        parse_response({"model": "m", "done": False}, provider="ollama", model="m")
    # Argument text that is not JSON, in a reply that was not cut off: the model's fault, not
    # the server's, so not retryable (a reply cut off by max_tokens keeps it: test_adapter_edges).
    with pytest.raises(StructuredOutputError, match="not valid JSON") as caught:
        parse_response(chat_body(tool_calls=[{"name": "a", "arguments": "{not json"}]), provider="ollama", model="m")
    assert not caught.value.retryable


def test_parse_stream_event_indexes_tool_calls_and_skips_empty_lines() -> None:
    state = StreamState(provider="ollama", model="m")
    events = chat_stream_events(["Hi"], thinking=["t1", "t2"], tool_calls=[{"name": "a", "arguments": {"x": 1}}])
    chunks = [parse_stream_event(e, state) for e in events]
    # thinking-only lines stream as reasoning deltas, never as answer text
    assert [(c.reasoning, c.text) for c in chunks[:2] if c is not None] == [("t1", ""), ("t2", "")]
    assert chunks[2] is not None and chunks[2].text == "Hi"
    assert chunks[3] is not None and chunks[3].tool_calls[0].index == 0
    assert json.loads(chunks[3].tool_calls[0].arguments) == {"x": 1}
    last = chunks[4]
    assert last is not None and last.finish_reason == "tool_calls" and state.done
    assert last.provider_state == {"ollama": {"thinking": "t1t2"}}


def test_embed_params_batch_and_refuse_silent_truncation() -> None:
    body = build_embed_params(EmbedRequest(model="e", texts=("a", "b"), provider_options={"dimensions": 8}))
    assert body == {"model": "e", "input": ["a", "b"], "truncate": False, "dimensions": 8}


def test_map_error_table() -> None:
    import httpx
    import ollama

    def mapped(exc: BaseException) -> FMClientError:
        return map_error(exc, provider="ollama", model="m", host="http://h:1")

    assert isinstance(mapped(ollama.ResponseError('{"error": "bad"}', 400)), BadRequestError)
    assert isinstance(mapped(ollama.ResponseError("x", 401)), AuthenticationError)
    assert isinstance(mapped(ollama.ResponseError("x", 403)), PermissionDeniedError)
    assert isinstance(mapped(ollama.ResponseError("x", 429)), RateLimitError)
    assert isinstance(mapped(ollama.ResponseError("x", 500)), ServiceUnavailableError)
    context = mapped(ollama.ResponseError("input length exceeds the context length", 400))
    assert isinstance(context, ContextWindowExceededError)
    missing = mapped(ollama.ResponseError('model "m" not found, try pulling it first', 404))
    assert isinstance(missing, ModelNotFoundError) and "ollama pull m" in str(missing)
    mid_stream = mapped(ollama.ResponseError("model runner has unexpectedly stopped"))
    assert isinstance(mid_stream, ServiceUnavailableError) and mid_stream.retryable
    refused = mapped(ConnectionError("Failed to connect to Ollama"))
    assert isinstance(refused, APIConnectionError) and "http://h:1" in str(refused)
    assert isinstance(mapped(httpx.ReadTimeout("slow")), RequestTimeoutError)
    assert isinstance(mapped(httpx.RemoteProtocolError("cut")), APIConnectionError)
    assert isinstance(mapped(json.JSONDecodeError("x", "doc", 0)), FMClientError)


# -- over loopback through the SDK ----------------------------------------------------------------
def test_complete_plain(server: FakeOllama, client: Client) -> None:
    server.queue(chat_reply("Paris.", prompt_eval_count=20, eval_count=3))
    reply = client.complete(
        "Capital of France?", model="llama-3", system="Answer briefly.", max_tokens=20, temperature=0
    )
    assert reply.text == "Paris."
    assert reply.finish_reason == "stop"
    assert reply.usage == Usage(input_tokens=20, output_tokens=3)
    assert (reply.provider, reply.model) == ("ollama", "llama3.2")
    (sent,) = server.requests
    assert (sent.method, sent.path) == ("POST", "/api/chat")
    assert sent.json() == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "stream": False,
        "options": {"temperature": 0, "num_predict": 20},
    }


def test_length_finish_reason(server: FakeOllama, client: Client) -> None:
    server.queue(chat_reply("Once upon", done_reason="length"))
    assert client.complete("story", model="ollama/llama3.2", max_tokens=2).finish_reason == "length"


def test_ollama_host_env_is_honoured_when_no_base_url(server: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    with Client() as client:
        reply = client.complete("hi", model="ollama/llama3.2")
    assert reply.text == "Hello from Ollama."
    assert len(server.requests) == 1


def test_api_key_is_sent_as_bearer_token(server: FakeOllama) -> None:
    with Client(providers={"ollama": {"base_url": server.url, "api_key": "sk-ollama"}}) as client:
        client.complete("hi", model="ollama/llama3.2")
    assert server.requests[0].headers["authorization"] == "Bearer sk-ollama"


def test_stream(server: FakeOllama, client: Client) -> None:
    server.queue(stream_reply(chat_stream_events(["Hel", "lo", "!"], prompt_eval_count=9, eval_count=3)))
    stream = client.stream("hi", model="ollama/llama3.2", stop=["\n\n"])
    texts = [chunk.text for chunk in stream]
    assert "".join(texts) == "Hello!"
    assert texts[:3] == ["Hel", "lo", "!"]
    completion = stream.completion
    assert completion.text == "Hello!"
    assert completion.finish_reason == "stop"
    assert completion.usage == Usage(input_tokens=9, output_tokens=3)
    body = server.requests[0].json()
    assert body["stream"] is True and body["options"] == {"stop": ["\n\n"]}


def test_tools_and_tool_result_round_trip(server: FakeOllama, client: Client) -> None:
    server.queue(
        chat_reply("", tool_calls=[{"name": "get_weather", "arguments": {"place": {"city": "Oslo"}, "days": 2}}]),
        chat_reply("It is 3°C in Oslo."),
    )
    first = client.complete("Weather in Oslo?", model="ollama/llama3.2", tools=[WEATHER])
    assert first.finish_reason == "tool_calls"
    (call,) = first.tool_calls
    assert call.name == "get_weather" and call.arguments == {"place": {"city": "Oslo"}, "days": 2}
    assert call.id  # Ollama sent none: synthesised
    sent_tools = server.requests[0].json()["tools"]
    assert sent_tools == [{"type": "function", "function": WEATHER}]  # nested schema intact

    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        first.message,
        Message.tool_result(call.id, {"temp_c": 3}),
    ]
    second = client.complete(history, model="ollama/llama3.2", tools=[WEATHER])
    assert second.text == "It is 3°C in Oslo."
    messages = server.requests[1].json()["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": call.id, "function": {"name": "get_weather", "arguments": {"place": {"city": "Oslo"}, "days": 2}}}
        ],
    }
    assert messages[2] == {
        "role": "tool",
        "content": '{"temp_c": 3}',
        "tool_name": "get_weather",
        "tool_call_id": call.id,
    }


def test_streamed_tool_calls_keep_server_ids(server: FakeOllama, client: Client) -> None:
    events = chat_stream_events(
        [], tool_calls=[{"name": "get_weather", "arguments": {"place": {"city": "Rome"}}, "id": "call_xyz"}]
    )
    server.queue(stream_reply(events))
    stream = client.stream("Weather in Rome?", model="ollama/llama3.2", tools=[WEATHER])
    list(stream)
    completion = stream.completion
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == [ToolCall(id="call_xyz", name="get_weather", arguments={"place": {"city": "Rome"}})]


class City(BaseModel):
    name: str
    population: int


def test_structured_output_sends_the_schema_as_format(server: FakeOllama, client: Client) -> None:
    server.queue(chat_reply('{"name": "Oslo", "population": 700000}'))
    reply = client.complete("A city", model="ollama/llama3.2", response_format=City)
    assert reply.parsed == City(name="Oslo", population=700000)
    assert server.requests[0].json()["format"] == City.model_json_schema()


def test_images_are_sent_base64_in_the_message(server: FakeOllama, client: Client) -> None:
    server.queue(chat_reply("A black square."))
    prompt = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image", "data": PNG}]}]
    assert client.complete(prompt, model="ollama/llama3.2-vision").text == "A black square."
    (message,) = server.requests[0].json()["messages"]
    assert message == {"role": "user", "content": "What is this?", "images": [base64.b64encode(PNG).decode()]}


def test_embeddings_keep_order_and_report_usage(server: FakeOllama, client: Client) -> None:
    server.queue(embed_reply([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], prompt_eval_count=11))
    result = client.embed(["one", "two", "three"], model="ollama/nomic-embed-text")
    assert result.vectors == [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    assert result.usage == Usage(input_tokens=11)
    assert (result.provider, result.model) == ("ollama", "nomic-embed-text")
    sent = server.requests[0]
    assert sent.path == "/api/embed"
    assert sent.json() == {"model": "nomic-embed-text", "input": ["one", "two", "three"], "truncate": False}


def test_embeddings_from_the_default_daemon_behaviour(server: FakeOllama, client: Client) -> None:
    result = client.embed(["a", "bbb"], model="ollama/nomic-embed-text")
    assert [v[0] for v in result.vectors] == [1.0, 3.0]  # the fake encodes each text's length


def test_embedding_count_mismatch_is_malformed(server: FakeOllama, client: Client, retry_sleeps: list[float]) -> None:
    # A malformed reply is the daemon's (or a proxy's) fault: retried like a 503, then raised.
    server.queue(*[embed_reply([[0.1]])] * 3)
    with pytest.raises(ServiceUnavailableError, match="1 embeddings for 2 inputs"):
        client.embed(["a", "b"], model="ollama/nomic-embed-text")
    assert len(server.requests) == 3


def test_model_not_pulled(server: FakeOllama, client: Client) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        client.complete("hi", model="ollama/mistral")
    assert "ollama pull mistral" in str(info.value)
    assert info.value.status_code == 404
    assert len(server.requests) == 1  # not retried


def test_model_not_pulled_when_streaming(server: FakeOllama, client: Client) -> None:
    with pytest.raises(ModelNotFoundError, match="ollama pull mistral"):
        list(client.stream("hi", model="ollama/mistral"))


def test_daemon_not_running_names_the_host(retry_sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with Client(providers={"ollama": {"base_url": url}}, max_retries=1) as client:
        with pytest.raises(APIConnectionError) as info:
            client.complete("hi", model="ollama/llama3.2")
        assert url in str(info.value) and "ollama serve" in str(info.value)
        assert len(retry_sleeps) == 1  # retryable: one retry, then the error
        with pytest.raises(APIConnectionError, match=re.escape(url)):
            list(client.stream("hi", model="ollama/llama3.2"))
        with pytest.raises(APIConnectionError, match=re.escape(url)):
            client.embed("hi", model="ollama/nomic-embed-text")


def test_daemon_not_running_via_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    with (
        Client(max_retries=0) as client,
        pytest.raises(APIConnectionError, match=re.escape(f"http://127.0.0.1:{port}")),
    ):
        client.complete("hi", model="ollama/llama3.2")


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (400, "invalid options", BadRequestError),
        (400, "input length exceeds the context length", ContextWindowExceededError),
        (401, "unauthorized", AuthenticationError),
        (403, "forbidden", PermissionDeniedError),
        (404, "404 page not found", ModelNotFoundError),
        (429, "too many requests", RateLimitError),
        (500, "llama runner process has terminated", ServiceUnavailableError),
        (503, "server busy, please try again", ServiceUnavailableError),
    ],
)
def test_http_errors_are_mapped(server: FakeOllama, status: int, message: str, error: type[FMClientError]) -> None:
    provider = provider_for(server.url)
    server.queue(error_reply(status, message), error_reply(status, message))
    request = Request(model="llama3.2", messages=(Message(role="user", content="hi"),))
    with pytest.raises(error) as info:
        provider.complete(request)
    assert type(info.value) is error
    assert info.value.status_code == status and message in str(info.value)
    with pytest.raises(error):
        list(provider.stream(request))


def test_retry_on_503_then_success_with_exact_attempt_count(
    server: FakeOllama, client: Client, retry_sleeps: list[float]
) -> None:
    server.queue(error_reply(503, "server busy"), error_reply(503, "server busy"), chat_reply("finally"))
    assert client.complete("hi", model="ollama/llama3.2").text == "finally"
    assert len(server.requests) == 3  # 2 failures + 1 success: the SDK itself never retried
    assert len(retry_sleeps) == 2


def test_stream_without_done_line_is_a_connection_error(server: FakeOllama, client: Client) -> None:
    server.queue(stream_reply(chat_stream_events(["Hel", "lo"], done=False)))
    stream = client.stream("hi", model="ollama/llama3.2", max_retries=0)
    with pytest.raises(APIConnectionError, match="without its final 'done' line") as info:
        list(stream)
    assert info.value.retryable and info.value.partial_text == "Hello"


def test_stream_cut_off_mid_body_is_a_connection_error(server: FakeOllama, client: Client) -> None:
    server.queue(stream_reply(chat_stream_events(["Hel", "lo", "more"]), cut_after=2))
    with pytest.raises(APIConnectionError, match="broke off"):
        list(client.stream("hi", model="ollama/llama3.2", max_retries=0))


def test_error_line_inside_the_stream(server: FakeOllama, client: Client) -> None:
    events: list[Any] = [*chat_stream_events(["Hel"], done=False), {"error": "model runner has unexpectedly stopped"}]
    server.queue(stream_reply(events))
    with pytest.raises(ServiceUnavailableError, match="unexpectedly stopped") as info:
        list(client.stream("hi", model="ollama/llama3.2", max_retries=0))
    assert info.value.partial_text == "Hel"
    server.queue(stream_reply([{"error": 'model "llama3.2" not found, try pulling it first'}]))
    with pytest.raises(ModelNotFoundError, match=r"ollama pull llama3\.2"):
        list(client.stream("hi", model="ollama/llama3.2", max_retries=0))


def test_malformed_bodies_raise_fmclient_errors(server: FakeOllama) -> None:
    provider = provider_for(server.url)
    request = Request(model="llama3.2", messages=(Message(role="user", content="hi"),))
    server.queue(Reply(body="<html>not ollama</html>", content_type="text/html"))
    with pytest.raises(FMClientError, match="malformed response"):
        provider.complete(request)
    server.queue(stream_reply(["{not json\n"]))
    with pytest.raises(FMClientError, match="malformed response"):
        list(provider.stream(request))


def test_timeout_per_request(server: FakeOllama) -> None:
    provider = provider_for(server.url)
    server.queue(Reply(body=chat_body("late"), delay=0.5))
    request = Request(model="llama3.2", messages=(Message(role="user", content="hi"),), timeout=0.1)
    with pytest.raises(RequestTimeoutError):
        provider.complete(request)


def test_settings_timeout_applies_when_the_request_has_none(server: FakeOllama) -> None:
    provider = provider_for(server.url, timeout=0.1)
    server.queue(Reply(body=chat_body("late"), delay=0.5))
    with pytest.raises(RequestTimeoutError):
        provider.complete(Request(model="llama3.2", messages=(Message(role="user", content="hi"),)))


def test_provider_reuses_one_sync_client(server: FakeOllama) -> None:
    provider = provider_for(server.url)
    request = Request(model="llama3.2", messages=(Message(role="user", content="hi"),))
    provider.complete(request)
    first = provider._client
    provider.complete(request)
    assert provider._client is first is not None
    provider.close()
    assert provider._client is None


async def test_async_complete_stream_and_embed(server: FakeOllama) -> None:
    server.queue(
        chat_reply("async hi"),
        stream_reply(chat_stream_events(["a", "b"])),
        embed_reply([[1.0], [2.0]]),
    )
    async with Client(providers={"ollama": {"base_url": server.url}}) as client:
        reply = await client.acomplete("hi", model="ollama/llama3.2")
        assert reply.text == "async hi"
        stream = client.astream("hi", model="ollama/llama3.2")
        texts = [chunk.text async for chunk in stream]
        assert "".join(texts) == "ab"
        assert stream.completion.usage == Usage(input_tokens=12, output_tokens=7)
        vectors = await client.aembed(["x", "y"], model="ollama/nomic-embed-text")
        assert vectors.vectors == [[1.0], [2.0]]
    assert [r.json()["stream"] for r in server.requests[:2]] == [False, True]


async def test_async_errors_are_mapped(server: FakeOllama) -> None:
    provider = provider_for(server.url)
    request = Request(model="mistral", messages=(Message(role="user", content="hi"),))
    with pytest.raises(ModelNotFoundError, match="ollama pull mistral"):
        await provider.acomplete(request)
    with pytest.raises(ModelNotFoundError):
        async for _ in provider.astream(request):
            pass
    server.queue(stream_reply(chat_stream_events(["x"], done=False)))
    with pytest.raises(APIConnectionError, match="done"):
        async for _ in provider.astream(Request(model="llama3.2", messages=request.messages)):
            pass
    dead = provider_for(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(APIConnectionError, match="ollama serve"):
        await dead.acomplete(request)
    await provider.aclose()


def test_async_client_is_cached_per_event_loop(server: FakeOllama) -> None:
    provider = provider_for(server.url)
    request = Request(model="llama3.2", messages=(Message(role="user", content="hi"),))

    async def call() -> tuple[str, Any]:
        reply = await provider.acomplete(request)
        return reply.text, provider._async_client()

    text_a, client_a = asyncio.run(call())
    text_b, client_b = asyncio.run(call())  # a second loop gets a client of its own
    assert text_a == text_b == "Hello from Ollama."
    assert client_a is not client_b


def test_check_ready_names_the_extra_when_the_sdk_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ollama", None)  # makes "import ollama" fail
    provider = OllamaProvider(ProviderSettings(name="ollama", type="ollama"))
    with pytest.raises(ConfigurationError, match=r'pip install "fmclient\[ollama\]"'):
        provider.check_ready("llama3.2")


def test_secret_key_never_shows_in_repr(server: FakeOllama) -> None:
    provider = OllamaProvider(
        ProviderSettings(name="ollama", type="ollama", base_url=server.url, api_key=Secret("sk-hidden"))
    )
    assert "sk-hidden" not in repr(provider)
    request = Request(model="nope", messages=(Message(role="user", content="hi"),))
    with pytest.raises(ModelNotFoundError) as info:
        provider.complete(request)
    assert "sk-hidden" not in str(info.value) and "sk-hidden" not in repr(info.value)


def test_unknown_daemon_model_in_fake_is_a_404_body(server: FakeOllama) -> None:
    # The fake itself: the shape the adapter's error mapping relies on.
    reply = model_not_found("x")
    assert reply.status == 404 and reply.body == {"error": 'model "x" not found, try pulling it first'}


def test_options_other_than_the_sampling_ones_pass_through(server: FakeOllama, client: Client) -> None:
    client.complete("hi", model="ollama/llama3.2", temperature=0.5, keep_alive=-1, options={"num_ctx": 4096})
    body = server.requests[0].json()
    assert body["keep_alive"] == -1
    assert body["options"] == {"temperature": 0.5, "num_ctx": 4096}


def test_structured_output_body_for_a_plain_schema(server: FakeOllama, client: Client) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    server.queue(chat_reply('{"ok": true}'))
    reply = client.complete("ok?", model="ollama/llama3.2", response_format=ResponseFormat(name="r", schema=schema))
    assert reply.parsed == {"ok": True}
    assert server.requests[0].json()["format"] == schema


def test_a_second_named_ollama_provider_keeps_its_own_thinking_state(server: FakeOllama) -> None:
    server.queue(chat_reply("42", thinking="6 times 7"), chat_reply("ok"))
    providers = {"gpu-box": {"type": "ollama", "base_url": server.url}}
    with Client(providers=providers) as client:
        first = client.complete("6*7?", model="gpu-box/llama3.2", think=True)
        assert first.provider == "gpu-box"
        assert first.message.provider_state == {"gpu-box": {"thinking": "6 times 7"}}
        client.complete(
            [{"role": "user", "content": "6*7?"}, first.message, {"role": "user", "content": "sure?"}],
            model="gpu-box/llama3.2",
        )
    assert server.requests[0].json()["think"] is True
    assert server.requests[1].json()["messages"][1] == {"role": "assistant", "content": "42", "thinking": "6 times 7"}


def test_async_clients_of_finished_loops_are_released(server: FakeOllama) -> None:
    """An app that runs asyncio.run per request must not keep a pool per finished loop."""
    import asyncio

    adapter = provider_for(server.url)
    request = Request(model="llama3.2", messages=(Message(role="user", content="hi"),))
    for _ in range(4):
        server.queue(chat_reply("ok"))
        assert asyncio.run(adapter.acomplete(request)).text == "ok"
    assert len(adapter._async_clients._clients) == 1  # only the last loop's client is left
    adapter.close()
    assert adapter._async_clients._clients == {}
