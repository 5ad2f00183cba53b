"""Prompt caching, one way for every provider: a CachePoint in the prompt list. Each provider's
mapping is asserted on the exact body its wire fake received, with the real SDK underneath."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from fmclient import CachePoint, Client, UnsupportedFeatureError
from fmclient._validation import build_request
from fmclient.cache import request_key
from fmclient.types import Usage
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes.bedrock import FakeBedrock, converse_reply, converse_usage
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeServer

MILLION = Decimal(1_000_000)
DOCUMENT = "A long reference document. " * 40

PROMPT: list[Any] = [
    {"role": "system", "content": "You answer from the document."},
    CachePoint("1h"),
    {"role": "user", "content": DOCUMENT},
    CachePoint(),
    {"role": "assistant", "content": "Read it."},
    {"role": "user", "content": "What is it about?"},
]


def table(provider_id: str, model: str) -> Any:
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    return info.get_prices(datetime.now(tz=timezone.utc))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")


# -- the prompt ------------------------------------------------------------------------------------
def test_a_cache_point_marks_the_message_before_it() -> None:
    request = build_request(PROMPT)
    assert request.system_cache == CachePoint("1h")
    assert [m.cache for m in request.messages] == [CachePoint(), None, None]
    assert request.cache_points and not build_request("hi").cache_points


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ([CachePoint(), {"role": "user", "content": "hi"}], "must follow a message"),
        ([{"role": "user", "content": "hi"}, CachePoint(), CachePoint()], "one per message"),
        ([{"role": "system", "content": " "}, CachePoint(), {"role": "user", "content": "hi"}], "nothing to cache"),
    ],
)
def test_a_misplaced_cache_point_is_refused(prompt: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_request(prompt)


def test_a_cache_point_ttl_is_5m_or_1h() -> None:
    with pytest.raises(ValueError, match="'5m' or '1h'"):
        CachePoint("2h")  # type: ignore[arg-type]


def test_the_response_cache_key_sees_cache_points() -> None:
    plain = [m for m in PROMPT if not isinstance(m, CachePoint)]
    assert request_key("anthropic", build_request(PROMPT)) != request_key("anthropic", build_request(plain))


# -- Anthropic -------------------------------------------------------------------------------------
def test_anthropic_gets_cache_control_and_prices_cache_tokens(fake_server: FakeServer) -> None:
    usage = fa.usage(10, 5, cache_creation_input_tokens=400, cache_read_input_tokens=800)
    fake_server.queue(fa.message_reply("A document.", usage_=usage))
    client = Client(providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}})
    reply = client.complete(PROMPT, model="anthropic/claude-sonnet-4-6")
    body = fake_server.requests[0].json()
    assert len(fake_server.requests) == 1
    assert body["system"] == [
        {"type": "text", "text": "You answer from the document.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": DOCUMENT, "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": "Read it."},
        {"role": "user", "content": "What is it about?"},
    ]
    assert reply.usage == Usage(1210, 5, cached_input_tokens=800, cache_write_tokens=400)
    p = table("anthropic", "claude-sonnet-4-6")
    assert reply.cost is not None
    assert reply.cost.input == (10 * p.input_mtok + 800 * p.cache_read_mtok + 400 * p.cache_write_mtok) / MILLION


def test_anthropic_marks_a_tool_result(fake_server: FakeServer) -> None:
    fake_server.queue(fa.message_reply("Sunny."))
    prompt = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "t1", "name": "weather", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        CachePoint("5m"),
    ]
    tool = {"name": "weather", "parameters": {"type": "object", "properties": {}}}
    client = Client(providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}})
    client.complete(prompt, model="anthropic/claude-sonnet-4-6", tools=[tool])
    last = fake_server.requests[0].json()["messages"][-1]
    assert last == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t1",
                "content": "sunny",
                "cache_control": {"type": "ephemeral", "ttl": "5m"},
            }
        ],
    }


# -- Bedrock ---------------------------------------------------------------------------------------
def test_bedrock_gets_cache_point_blocks_and_prices_cache_tokens(aws_env: None) -> None:
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    with FakeBedrock() as bedrock:
        bedrock.queue(converse_reply(text="A document.", usage=converse_usage(10, 5, cache_read=800, cache_write=400)))
        client = Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0)
        reply = client.complete(PROMPT, model=f"bedrock/{model}")
        (body,) = bedrock.bodies()
    assert body["system"] == [
        {"text": "You answer from the document."},
        {"cachePoint": {"type": "default", "ttl": "1h"}},
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": DOCUMENT}, {"cachePoint": {"type": "default"}}]},
        {"role": "assistant", "content": [{"text": "Read it."}]},
        {"role": "user", "content": [{"text": "What is it about?"}]},
    ]
    assert reply.usage == Usage(1210, 5, cached_input_tokens=800, cache_write_tokens=400)
    aws = table("aws", model)
    assert reply.cost is not None
    assert reply.cost.input == (10 * aws.input_mtok + 800 * aws.cache_read_mtok + 400 * aws.cache_write_mtok) / MILLION


def test_bedrock_refuses_a_cache_point_for_a_model_it_cannot_cache(aws_env: None) -> None:
    with FakeBedrock() as bedrock:
        client = Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0)
        with pytest.raises(UnsupportedFeatureError, match=r"prompt caching.*Claude 3\.5 Haiku, 3\.7 Sonnet and later"):
            client.complete(PROMPT, model="bedrock/anthropic.claude-3-haiku-20240307-v1:0")
        with pytest.raises(UnsupportedFeatureError, match="prompt caching"):
            client.complete(PROMPT, model="bedrock/meta.llama3-1-70b-instruct-v1:0")
        assert bedrock.requests == []


# -- refusals elsewhere --------------------------------------------------------------------------
def test_models_and_hosts_that_cannot_cache_refuse_before_sending(fake_server: FakeServer) -> None:
    client = Client(
        providers={
            "anthropic": {"base_url": fake_server.url, "api_key": "k"},
            "ollama": {"base_url": fake_server.url},
        }
    )
    with pytest.raises(UnsupportedFeatureError, match="prompt caching"):
        client.complete(PROMPT, model="anthropic/claude-2.1")
    with pytest.raises(UnsupportedFeatureError, match="Ollama's chat API has no prompt-cache breakpoints"):
        client.complete(PROMPT, model="ollama/qwen3:8b")  # a family that could cache elsewhere
    assert fake_server.requests == []


# -- OpenAI and Gemini: automatic caching ----------------------------------------------------------
def test_openai_takes_the_cache_point_as_a_hint_and_passes_prompt_cache_key(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    client = Client(providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": "sk-test"}}, max_retries=0)
    client.complete(PROMPT, model="openai/gpt-4o", prompt_cache_key="tenant-42")
    plain = [m for m in PROMPT if not isinstance(m, CachePoint)]
    client.complete(plain, model="openai/gpt-4o")
    with_point, without = fake.bodies()
    assert with_point.pop("prompt_cache_key") == "tenant-42"
    assert with_point == without  # OpenAI caches prefixes itself: the breakpoint changes nothing on the wire


def test_gemini_context_cache_is_used_only_when_asked(fake_server: FakeServer) -> None:
    fake_server.queue(fg.generate_reply("A document."), fg.generate_reply("A document."))
    client = Client(providers={"gemini": {"base_url": fake_server.url, "api_key": "gemini-test-key"}}, max_retries=0)
    client.complete(PROMPT, model="gemini/gemini-2.5-flash")
    client.complete("What is it about?", model="gemini/gemini-2.5-flash", cached_content="cachedContents/doc-1")
    implicit, explicit = (r.json() for r in fake_server.requests)
    assert "cachedContent" not in implicit
    assert explicit["cachedContent"] == "cachedContents/doc-1"
