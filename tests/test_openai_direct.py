"""The OpenAI fast path (providers/_openai_direct.py) sends exactly what the SDK's create() sends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fmclient.providers._openai_direct import post_chat_completion_raw
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
