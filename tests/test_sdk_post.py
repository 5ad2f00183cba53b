"""The fast paths (providers/_sdk_post.py) send exactly what the SDKs' create() sends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fmclient.providers._sdk_post import (
    anthropic_post_suits,
    chat_completion_post,
    message_post,
    post_chat_completion_raw,
    post_message_raw,
    response_post,
)
from tests.fakes import anthropic as fake_anthropic
from tests.fakes.openai import FakeOpenAI, error_reply
from tests.fakes.server import FakeServer

# Headers that differ per request whatever the path.
_PER_REQUEST = {"x-stainless-retry-count", "x-stainless-read-timeout", "content-length", "x-stainless-async"}

KWARGS: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}],
    "max_completion_tokens": 7,
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
    "extra_body": {"top_k": 3},
    "extra_headers": {"x-trace": "1"},
    "extra_query": {"q": "1"},
    "timeout": 5.0,
}


def sdk_client(server: FakeServer) -> Any:
    import openai

    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0)


def test_same_request_on_the_wire_and_same_raw_response(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)

    async def both() -> tuple[Any, Any]:
        client = sdk_client(fake_server)
        try:
            via_create = await client.chat.completions.with_raw_response.create(**KWARGS)
            direct = await post_chat_completion_raw(client, KWARGS)
            return via_create, direct
        finally:
            await client.close()

    via_create, direct = asyncio.run(both())
    first, second = fake_server.requests
    assert (first.method, first.path) == (second.method, second.path) == ("POST", "/v1/chat/completions?q=1")
    assert first.json() == second.json() and second.json()["top_k"] == 3
    same = {k.lower(): v for k, v in first.headers.items() if k.lower() not in _PER_REQUEST}
    assert same == {k.lower(): v for k, v in second.headers.items() if k.lower() not in _PER_REQUEST}
    assert same["authorization"] == "Bearer sk-test" and same["x-trace"] == "1"
    assert type(direct) is type(via_create)
    assert direct.parse(to=object) == via_create.parse(to=object)
    assert "timeout" not in KWARGS["extra_body"] and len(KWARGS) == 9  # the caller's dict is not consumed


def _same_headers(first: Any, second: Any, per_request: set[str] = _PER_REQUEST) -> dict[str, str]:
    same = {k.lower(): v for k, v in first.headers.items() if k.lower() not in per_request}
    assert same == {k.lower(): v for k, v in second.headers.items() if k.lower() not in per_request}
    return same


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_sync_and_streamed_calls_send_what_create_sends(fake_server: FakeServer, stream: bool) -> None:
    """The sync client's post, streamed or not: same request, same raw response, same events."""
    import openai

    FakeOpenAI(fake_server)
    kwargs = {**KWARGS, "stream": True, "stream_options": {"include_usage": True}} if stream else KWARGS
    stream_type = openai.Stream[object] if stream else None
    client = openai.OpenAI(base_url=fake_server.url + "/v1", api_key="sk-test", max_retries=0)
    try:
        via_create = client.chat.completions.with_raw_response.create(**kwargs)
        direct = client.post(**chat_completion_post(kwargs, stream_type))
        assert type(direct) is type(via_create)
        if stream:
            events = list(direct.parse(to=stream_type))
            assert events == list(via_create.parse(to=stream_type)) and events[-1]["usage"]
        else:
            assert direct.parse(to=object) == via_create.parse(to=object)
    finally:
        client.close()
    first, second = fake_server.requests
    assert (first.method, first.path) == (second.method, second.path) == ("POST", "/v1/chat/completions?q=1")
    assert first.json() == second.json() and second.json().get("stream", False) is stream
    assert _same_headers(first, second)["authorization"] == "Bearer sk-test"


RESPONSES_KWARGS: dict[str, Any] = {
    "model": "gpt-5",
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    "instructions": "terse",
    "max_output_tokens": 7,
    "reasoning": {"effort": "low", "summary": "auto"},
    "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}},
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}, "strict": True}],
    "extra_body": {"top_k": 3},
    "extra_headers": {"x-trace": "1"},
    "timeout": 5.0,
}


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_responses_api_calls_send_what_create_sends(fake_server: FakeServer, stream: bool) -> None:
    import openai

    FakeOpenAI(fake_server)
    kwargs = {**RESPONSES_KWARGS, "stream": True} if stream else RESPONSES_KWARGS
    stream_type = openai.Stream[object] if stream else None
    client = openai.OpenAI(base_url=fake_server.url + "/v1", api_key="sk-test", max_retries=0)
    try:
        via_create = client.responses.with_raw_response.create(**kwargs)
        direct = client.post(**response_post(kwargs, stream_type))
        assert type(direct) is type(via_create)
        if stream:
            events = list(direct.parse(to=stream_type))
            assert events == list(via_create.parse(to=stream_type)) and events[-1]["type"] == "response.completed"
        else:
            assert direct.parse(to=object) == via_create.parse(to=object)
    finally:
        client.close()
    first, second = fake_server.requests
    assert (first.method, first.path) == (second.method, second.path) == ("POST", "/v1/responses")
    assert first.json() == second.json() and second.json().get("stream", False) is stream
    assert _same_headers(first, second)["authorization"] == "Bearer sk-test"


def test_errors_are_the_sdks_own(fake_server: FakeServer) -> None:
    import openai

    fake_server.queue(error_reply(429, "slow down"), error_reply(429, "slow down"))

    async def both() -> list[BaseException]:
        client = sdk_client(fake_server)
        found = []
        try:
            for call in (
                lambda: client.chat.completions.with_raw_response.create(**KWARGS),
                lambda: post_chat_completion_raw(client, KWARGS),
            ):
                with pytest.raises(openai.RateLimitError) as info:
                    await call()
                found.append(info.value)
            return found
        finally:
            await client.close()

    via_create, direct = asyncio.run(both())
    assert (direct.status_code, direct.body) == (via_create.status_code, via_create.body)
    assert len(fake_server.requests) == 2


def test_a_pydantic_response_format_is_refused_as_create_refuses_it(fake_server: FakeServer) -> None:
    import pydantic

    class City(pydantic.BaseModel):
        name: str

    async def go() -> None:
        client = sdk_client(fake_server)
        try:
            with pytest.raises(TypeError):
                await post_chat_completion_raw(client, {**KWARGS, "response_format": City})
        finally:
            await client.close()

    asyncio.run(go())
    assert fake_server.requests == []


# -- Anthropic -----------------------------------------------------------------------------------
PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    "system": "terse",
    "stop_sequences": ["END"],
    "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}],
    "tool_choice": {"type": "auto"},
    "extra_body": {"top_k": 3},
    "extra_headers": {"x-trace": "1"},
    "extra_query": {"q": "1"},
}


def anthropic_client(server: FakeServer) -> Any:
    import anthropic

    return anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0)


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["sdk-timeout", "given-timeout"])
def test_anthropic_same_request_on_the_wire_and_same_raw_response(
    fake_server: FakeServer, timeout: float | None
) -> None:
    """Also without a timeout: the read timeout the SDK computes from max_tokens is the same. (The
    body is the same JSON; create() orders its keys by its own signature.)"""
    params = PARAMS if timeout is None else {**PARAMS, "timeout": timeout}
    fake_server.queue(fake_anthropic.message_reply("hello"), fake_anthropic.message_reply("hello"))
    assert anthropic_post_suits(params)

    async def both() -> tuple[Any, Any]:
        client = anthropic_client(fake_server)
        try:
            via_create = await client.messages.with_raw_response.create(**params)
            direct = await post_message_raw(client, params)
            return via_create, direct
        finally:
            await client.close()

    via_create, direct = asyncio.run(both())
    first, second = fake_server.requests
    assert (first.method, first.path) == (second.method, second.path) == ("POST", "/v1/messages?q=1")
    assert first.json() == second.json() and second.json()["top_k"] == 3
    per_request = _PER_REQUEST - {"x-stainless-read-timeout"}  # the timeout must match too
    same = {k.lower(): v for k, v in first.headers.items() if k.lower() not in per_request}
    assert same == {k.lower(): v for k, v in second.headers.items() if k.lower() not in per_request}
    assert "sk-ant-test" in same.get("x-api-key", same.get("authorization", "")) and same["x-trace"] == "1"
    assert same["x-stainless-read-timeout"] == ("600" if timeout is None else "5.0")
    assert type(direct) is type(via_create)
    assert asyncio.run(_parse(direct)) == asyncio.run(_parse(via_create))
    assert "timeout" not in params["extra_body"] and len(params) == len(PARAMS) + (timeout is not None)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_anthropic_sync_and_streamed_calls_send_what_create_sends(fake_server: FakeServer, stream: bool) -> None:
    """The sync client's post, streamed or not: same request (read timeout included), same raw
    response, same events."""
    import anthropic

    reply = (
        fake_anthropic.stream_reply(fake_anthropic.stream_events("hello"))
        if stream
        else fake_anthropic.message_reply("hello")
    )
    fake_server.queue(reply, reply)
    stream_type = anthropic.Stream[object] if stream else None
    client = anthropic.Anthropic(base_url=fake_server.url, api_key="sk-ant-test", max_retries=0)
    try:
        if stream:
            via_create = client.messages.with_raw_response.create(**PARAMS, stream=True)
        else:
            via_create = client.messages.with_raw_response.create(**PARAMS)
        direct = client.post(**message_post(client, PARAMS, stream_type))
        assert type(direct) is type(via_create)
        if stream:
            events = list(direct.parse(to=stream_type))
            assert events == list(via_create.parse(to=stream_type)) and events[-1] == {"type": "message_stop"}
        else:
            assert direct.parse(to=object) == via_create.parse(to=object)
    finally:
        client.close()
    first, second = fake_server.requests
    assert (first.method, first.path) == (second.method, second.path) == ("POST", "/v1/messages?q=1")
    assert first.json() == second.json() and second.json().get("stream", False) is stream
    same = _same_headers(first, second, _PER_REQUEST - {"x-stainless-read-timeout"})
    assert same["x-trace"] == "1" and "stream" not in PARAMS


async def _parse(raw: Any) -> Any:
    return await raw.parse(to=object)


def test_anthropic_errors_are_the_sdks_own(fake_server: FakeServer) -> None:
    import anthropic

    reply = fake_anthropic.error_reply(529, "busy", error_type="overloaded_error")
    fake_server.queue(reply, reply)

    async def both() -> list[BaseException]:
        client = anthropic_client(fake_server)
        found = []
        try:
            for call in (
                lambda: client.messages.with_raw_response.create(**PARAMS),
                lambda: post_message_raw(client, PARAMS),
            ):
                with pytest.raises(anthropic.APIStatusError) as info:
                    await call()
                found.append(info.value)
            return found
        finally:
            await client.close()

    via_create, direct = asyncio.run(both())
    assert type(direct) is type(via_create)
    assert (direct.status_code, direct.body) == (via_create.status_code, via_create.body) and direct.status_code == 529
    assert len(fake_server.requests) == 2


def test_anthropic_a_call_that_could_outlast_ten_minutes_is_refused_as_create_refuses_it(
    fake_server: FakeServer,
) -> None:
    """Without a timeout, create() refuses a large max_tokens (the adapter then streams); so does post."""
    params = {**PARAMS, "max_tokens": 64_000}

    async def both() -> list[str]:
        client = anthropic_client(fake_server)
        messages = []
        try:
            for call in (
                lambda: client.messages.with_raw_response.create(**params),
                lambda: post_message_raw(client, params),
            ):
                with pytest.raises(ValueError, match="Streaming is required") as info:
                    await call()
                messages.append(str(info.value))
            return messages
        finally:
            await client.close()

    via_create, direct = asyncio.run(both())
    assert direct == via_create
    assert fake_server.requests == []


def test_anthropic_calls_the_post_path_cannot_send_as_create_would_go_through_create() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import NonRecordingSpan, SpanContext

    assert anthropic_post_suits(PARAMS)
    # create() may warn about thinking per model, and turns these options into headers.
    assert not anthropic_post_suits({**PARAMS, "thinking": {"type": "enabled", "budget_tokens": 1024}})
    assert not anthropic_post_suits({**PARAMS, "workspace_id": "w1"})
    # Inside a valid span context, create() propagates it (traceparent): the post path would not.
    remote = NonRecordingSpan(SpanContext(trace_id=1, span_id=2, is_remote=True))
    with trace.use_span(remote):
        assert not anthropic_post_suits(PARAMS)
    assert anthropic_post_suits(PARAMS)
    # Under a configured tracer provider create() records its span.
    original = trace.get_tracer_provider
    trace.get_tracer_provider = lambda: TracerProvider()  # type: ignore[assignment]
    try:
        assert not anthropic_post_suits(PARAMS)
    finally:
        trace.get_tracer_provider = original  # type: ignore[assignment]


@pytest.mark.parametrize("path", ["acomplete", "complete", "stream", "astream"])
def test_anthropic_adapter_keeps_the_sdks_trace_propagation(fake_server: FakeServer, path: str) -> None:
    """Through fmclient, on every path: inside a span context the request carries its traceparent
    (create's propagation); outside it none is sent."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from fmclient import Client

    if "stream" in path:
        replies = [fake_anthropic.stream_reply(fake_anthropic.stream_events(text)) for text in ("one", "two")]
    else:
        replies = [fake_anthropic.message_reply(text) for text in ("one", "two")]
    fake_server.queue(*replies)
    client = Client(providers={"anthropic": {"base_url": fake_server.url, "api_key": "sk-ant-test"}})
    remote = NonRecordingSpan(
        SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    )
    model = "anthropic/claude-sonnet-4-5"

    async def call(prompt: str) -> str:
        if path == "acomplete":
            return (await client.acomplete(prompt, model=model, max_tokens=20)).text
        if path == "astream":
            return "".join([chunk.text async for chunk in client.astream(prompt, model=model, max_tokens=20)])
        if path == "complete":
            return client.complete(prompt, model=model, max_tokens=20).text
        return "".join(chunk.text for chunk in client.stream(prompt, model=model, max_tokens=20))

    async def go() -> list[str]:
        texts = [await call("a")]
        with trace.use_span(remote):
            texts.append(await call("b"))
        await client.aclose()
        return texts

    assert asyncio.run(go()) == ["one", "two"]
    plain, traced = ({k.lower(): v for k, v in r.headers.items()} for r in fake_server.requests)
    assert "traceparent" not in plain
    assert traced["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-01"
