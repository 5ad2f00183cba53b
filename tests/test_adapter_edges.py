"""Edges every adapter meets, over the real SDKs against the loopback fakes (issue 10, §4a/b/i/n).

* A reply cut off by ``max_tokens`` inside a tool call's JSON arguments comes back
  (``finish_reason="length"``, its text, usage and the raw argument text): never raised, never
  re-sent. Each adapter that produces tool calls, whole and streamed, one request each.
* ``message.content`` (or a delta's) as a list of parts, as Mistral's reasoning models send it:
  ``.text`` is the text, the thinking rides on the message and goes back on the next turn.
* Images in tool results are sent where the API takes them and refused before sending where not.
* The ``x-should-retry`` response header decides whether a failure is retried.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client
from fmclient.errors import BadRequestError, ServiceUnavailableError, UnsupportedFeatureError
from fmclient.types import Completion, ImagePart, Message, TextPart, Tool, ToolCall
from tests.fakes import anthropic as fa
from tests.fakes import bedrock as fb
from tests.fakes import ollama as fo
from tests.fakes import openai as foa
from tests.fakes.server import FakeServer, Reply, sse

WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CUT = '{"city": "Par'  # the arguments as far as max_tokens let the model write them
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
MAX_RETRIES = 3

MODELS = {
    "openai": "openai/gpt-4o",
    "anthropic": "anthropic/claude-sonnet-4-5-20250929",
    "bedrock": "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
    "ollama": "ollama/llama3.2",
}


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def client_for(provider: str, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Client:
    config = tmp_path / "fmclient.toml"
    config.write_text("")
    table: dict[str, Any] = {"base_url": server.url, "api_key": "test-key-edges"}
    if provider == "openai":
        table["base_url"] = server.url + "/v1"
    elif provider == "bedrock":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEDGES")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "edges-secret")
        table = {"base_url": server.url, "region": "us-east-1"}
    elif provider == "ollama":
        table = {"base_url": server.url}
    return Client(config_path=str(config), env={}, providers={provider: table}, max_retries=MAX_RETRIES)


def run(client: Client, mode: str, prompt: Any, **kwargs: Any) -> Completion:
    if mode == "complete":
        return client.complete(prompt, **kwargs)
    stream = client.stream(prompt, **kwargs)
    for _ in stream:
        pass
    return stream.completion


# -- §4b: a tool call cut off by max_tokens --------------------------------------------------------
def truncated_reply(provider: str, mode: str) -> Reply:
    """The provider's own answer for a reply that max_tokens cut inside a tool call's arguments."""
    streamed = mode == "stream"
    if provider == "openai":
        answer = foa.Answer("Checking.", tool_calls=[("call_1", "get_weather", CUT)], finish_reason="length")
        if streamed:
            return Reply(chunks=foa.chunk_events(answer, include_usage=True), content_type="text/event-stream")
        return Reply(body=foa.completion_body(answer))
    if provider == "anthropic":
        if streamed:
            events = [
                fa.message_start(),
                fa.content_block_start(0, {"type": "text", "text": ""}),
                fa.text_delta(0, "Checking."),
                fa.content_block_stop(0),
                fa.content_block_start(1, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
                fa.input_json_delta(1, CUT[:6]),
                fa.input_json_delta(1, CUT[6:]),
                fa.content_block_stop(1),
                fa.message_delta("max_tokens"),
                fa.message_stop(),
            ]
            return fa.stream_reply(events)
        # A whole reply carries the input as the API parsed it: as far as it got.
        content = [fa.text_block("Checking."), fa.tool_use_block("toolu_1", "get_weather", {})]
        return fa.message_reply(content, stop_reason="max_tokens")
    if provider == "bedrock":
        if streamed:
            use = {"toolUseId": "tooluse_1", "name": "get_weather", "fragments": [CUT[:6], CUT[6:]]}
            return fb.converse_stream_reply(text_pieces=["Checking."], tool_uses=[use], stop_reason="max_tokens")
        use = {"toolUseId": "tooluse_1", "name": "get_weather", "input": {}}
        return fb.converse_reply(text="Checking.", tool_uses=[use], stop_reason="max_tokens")
    assert provider == "ollama"
    call = [{"name": "get_weather", "arguments": CUT, "id": "call_1"}]
    if streamed:
        return fo.stream_reply(fo.chat_stream_events(["Checking."], tool_calls=call, done_reason="length"))
    return fo.chat_reply("Checking.", tool_calls=call, done_reason="length")


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
def test_a_tool_call_cut_off_by_max_tokens_comes_back_once(
    provider: str, mode: str, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.replies.append(truncated_reply(provider, mode))
    with client_for(provider, server, tmp_path, monkeypatch) as client:
        completion = run(client, mode, "Weather in Paris?", model=MODELS[provider], tools=[WEATHER], max_tokens=12)
    assert len(server.requests) == 1  # never raised, so never re-sent and billed again
    assert completion.finish_reason == "length"
    assert completion.text == "Checking."
    assert completion.usage.output_tokens > 0
    [call] = completion.tool_calls
    assert call.name == "get_weather"
    assert call.arguments == {}
    # The raw text is there wherever the wire carried it as text (Anthropic's and Bedrock's whole
    # replies carry an already parsed object).
    wire_text = mode == "stream" or provider in ("openai", "ollama")
    assert call.raw_arguments == (CUT if wire_text else None)
    assert completion.message.tool_calls == (call,)


def test_tool_arguments_that_are_not_json_without_a_cut_are_not_retried(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmclient.errors import StructuredOutputError

    answer = foa.Answer("", tool_calls=[("call_1", "get_weather", CUT)])  # finish_reason tool_calls
    server.replies.append(Reply(chunks=foa.chunk_events(answer, include_usage=True), content_type="text/event-stream"))
    with (
        client_for("openai", server, tmp_path, monkeypatch) as client,
        pytest.raises(StructuredOutputError, match="not valid JSON"),
    ):
        run(client, "stream", "Weather?", model=MODELS["openai"], tools=[WEATHER])
    assert len(server.requests) == 1


# -- §4a: content as a list of parts (Mistral thinking) --------------------------------------------
THINKING = {"type": "thinking", "thinking": [{"type": "text", "text": "The user greets me."}]}


def list_content_body(model: str) -> dict[str, Any]:
    body = foa.completion_body(foa.Answer("x", model=model))
    body["choices"][0]["message"]["content"] = [THINKING, {"type": "text", "text": "Hello there!"}]
    return body


def list_content_stream(model: str) -> Reply:
    def chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": "cmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            event["usage"] = {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
        return event

    thinking_piece = {"type": "thinking", "thinking": [{"type": "text", "text": "The user "}]}
    thinking_rest = {"type": "thinking", "thinking": [{"type": "text", "text": "greets me."}]}
    events = [
        chunk({"role": "assistant", "content": [thinking_piece]}),
        chunk({"content": [thinking_rest]}),
        chunk({"content": [{"type": "text", "text": "Hello "}]}),
        chunk({"content": "there!"}),
        chunk({"content": ""}, finish="stop", usage=True),
    ]
    return Reply(chunks=sse([*((None, e) for e in events), (None, "[DONE]")]), content_type="text/event-stream")


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("provider", ["mistral", "local"])
def test_list_content_gives_the_text_and_keeps_the_thinking(
    provider: str, mode: str, server: FakeServer, tmp_path: Path
) -> None:
    model_id = "magistral-medium-latest"
    if mode == "complete":
        server.replies.append(Reply(body=list_content_body(model_id)))
    else:
        server.replies.append(list_content_stream(model_id))
    server.replies.append(Reply(body=foa.completion_body(foa.Answer("Fine, thanks.", model=model_id))))
    config = tmp_path / "fmclient.toml"
    config.write_text("")
    table: dict[str, Any] = {"base_url": server.url + "/v1", "api_key": "test-key-edges"}
    if provider == "local":
        table["type"] = "openai"
    with Client(config_path=str(config), env={}, providers={provider: table}) as client:
        model = f"{provider}/{model_id}"
        completion = run(client, mode, "Hi", model=model)
        assert completion.text == "Hello there!"
        assert isinstance(completion.message.text, str)
        state = (completion.message.provider_state or {})[provider]
        assert state["content"] == [THINKING, {"type": "text", "text": "Hello there!"}]
        follow_up = client.complete([Message.user("Hi"), completion.message, Message.user("How are you?")], model=model)
    assert follow_up.text == "Fine, thanks."
    sent = server.requests[-1].json()["messages"]
    assert sent[1] == {"role": "assistant", "content": [THINKING, {"type": "text", "text": "Hello there!"}]}


# -- §4i: images in tool results -----------------------------------------------------------------
def tool_history() -> list[Message]:
    call = ToolCall(id="call_1", name="screenshot", arguments={})
    return [
        Message.user("Take a screenshot"),
        Message(role="assistant", content="", tool_calls=(call,)),
        Message(
            role="tool",
            tool_call_id="call_1",
            name="screenshot",
            content=(TextPart("here"), ImagePart.from_source(PNG)),
        ),
    ]


def test_openai_refuses_an_image_in_a_tool_result_before_sending(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chat Completions tool messages take text parts only.
    with (
        client_for("openai", server, tmp_path, monkeypatch) as client,
        pytest.raises(UnsupportedFeatureError, match="images in tool results"),
    ):
        client.complete(tool_history(), model=MODELS["openai"])
    assert server.requests == []


def test_ollama_sends_an_image_in_a_tool_result(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.replies.append(fo.chat_reply("A login page."))
    with client_for("ollama", server, tmp_path, monkeypatch) as client:
        # A vision model: the profile refuses images for text-only llama3.2 before sending.
        assert client.complete(tool_history(), model="ollama/llama3.2-vision").text == "A login page."
    [request] = server.requests
    assert request.json()["messages"][2] == {
        "role": "tool",
        "content": "here",
        "images": [base64.b64encode(PNG).decode()],
        "tool_name": "screenshot",
        "tool_call_id": "call_1",
    }


def test_anthropic_sends_an_image_in_a_tool_result(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.replies.append(fa.message_reply("A login page."))
    with client_for("anthropic", server, tmp_path, monkeypatch) as client:
        client.complete(tool_history(), model=MODELS["anthropic"])
    [request] = server.requests
    assert request.json()["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "call_1",
                "content": [
                    {"type": "text", "text": "here"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()},
                    },
                ],
            }
        ],
    }


def test_bedrock_sends_an_image_in_a_tool_result(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.replies.append(fb.converse_reply(text="A login page."))
    with client_for("bedrock", server, tmp_path, monkeypatch) as client:
        client.complete(tool_history(), model=MODELS["bedrock"])
    [request] = server.requests
    result = request.json()["messages"][2]["content"][0]["toolResult"]
    assert result == {
        "toolUseId": "call_1",
        "content": [
            {"text": "here"},
            {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}},
        ],
    }


# -- §4n: x-should-retry ---------------------------------------------------------------------------
def error_with_header(provider: str, status: int, should_retry: str) -> Reply:
    headers = {"x-should-retry": should_retry}
    if provider == "openai":
        return foa.error_reply(status, "conflict" if status == 409 else "server error", headers=headers)
    kind = "conflict_error" if status == 409 else "api_error"
    return fa.error_reply(status, kind, error_type=kind, headers=headers)


def success(provider: str) -> Reply:
    return Reply(body=foa.completion_body(foa.Answer("ok"))) if provider == "openai" else fa.message_reply("ok")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_x_should_retry_true_retries_a_409(
    provider: str, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retry_sleeps: list[float]
) -> None:
    server.replies.extend([error_with_header(provider, 409, "true"), success(provider)])
    with client_for(provider, server, tmp_path, monkeypatch) as client:
        assert client.complete("Hi", model=MODELS[provider]).text == "ok"
    assert len(server.requests) == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_x_should_retry_false_stops_a_500(
    provider: str, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retry_sleeps: list[float]
) -> None:
    server.replies.extend([error_with_header(provider, 500, "false"), success(provider)])
    with (
        client_for(provider, server, tmp_path, monkeypatch) as client,
        pytest.raises(ServiceUnavailableError) as caught,
    ):
        client.complete("Hi", model=MODELS[provider])
    assert caught.value.retryable is False
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_without_x_should_retry_a_409_is_not_retried(
    provider: str, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retry_sleeps: list[float]
) -> None:
    reply = error_with_header(provider, 409, "true")
    reply.headers.pop("x-should-retry")
    server.replies.extend([reply, success(provider)])
    with client_for(provider, server, tmp_path, monkeypatch) as client, pytest.raises(BadRequestError):
        client.complete("Hi", model=MODELS[provider])
    assert len(server.requests) == 1
