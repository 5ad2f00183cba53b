"""A streamed call and the same call made without streaming report the same Usage (and so the
same cost), for every provider, with and without prompt-cache hits and reasoning tokens.

Each test runs the real SDK against its wire fake, scripting the same usage numbers into the JSON
reply and into the stream's usage events, the way each provider sends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client, Completion
from fmclient.types import Usage
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes import ollama as fo
from tests.fakes.bedrock import FakeBedrock, converse_reply, converse_stream_reply, converse_usage
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer

CACHE = pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache-hit"])


def both_ways(client: Client, model: str, **kwargs: Any) -> tuple[Completion, Completion]:
    plain = client.complete("What is the capital of France?", model=model, **kwargs)
    with client.stream("What is the capital of France?", model=model, **kwargs) as stream:
        text = "".join(chunk.text for chunk in stream)
    streamed = stream.completion
    assert text == streamed.text == plain.text
    return plain, streamed


def assert_same(plain: Completion, streamed: Completion, expected: Usage) -> None:
    assert plain.usage == expected
    assert streamed.usage == expected
    # The same usage prices the same: a stream never costs more than the plain call.
    assert plain.cost is not None and plain.cost == streamed.cost, (plain.cost_reason, streamed.cost_reason)


# -- Anthropic: message usage vs message_start + message_delta ---------------------------------
@pytest.mark.parametrize("delta_repeats_input", [False, True], ids=["delta-output-only", "delta-cumulative"])
@CACHE
def test_anthropic(fake_server: FakeServer, cache: bool, delta_repeats_input: bool) -> None:
    cache_fields = {"cache_creation_input_tokens": 300, "cache_read_input_tokens": 600} if cache else {}
    usage = fa.usage(100, 42, **cache_fields)
    # message_start carries the input counts and a first output count; message_delta the final,
    # cumulative output count (newer API versions repeat the input counts there too).
    start = fa.usage(100, 1, **cache_fields)
    final = dict(usage) if delta_repeats_input else {"output_tokens": 42}
    fake_server.queue(
        fa.message_reply("Paris.", usage_=usage),
        fa.stream_reply(fa.stream_events("Paris.", start_usage=start, final_usage=final)),
    )
    client = Client(providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}})
    plain, streamed = both_ways(client, "anthropic/claude-sonnet-4-6")
    expected = (
        Usage(input_tokens=1000, output_tokens=42, cached_input_tokens=600, cache_write_tokens=300)
        if cache
        else Usage(input_tokens=100, output_tokens=42)
    )
    assert_same(plain, streamed, expected)
    assert len(fake_server.requests) == 2
    assert [r.json().get("stream", False) for r in fake_server.requests] == [False, True]


# -- OpenAI: usage object vs the include_usage chunk --------------------------------------------
@CACHE
def test_openai(fake_server: FakeServer, cache: bool) -> None:
    fake = FakeOpenAI(fake_server)
    answer = Answer(
        "Paris.",
        prompt_tokens=1000,
        completion_tokens=42,
        cached_tokens=600 if cache else 0,
        reasoning_tokens=30,
    )
    fake.answer(answer, answer)
    # The fake's host (127.0.0.1) is no priced provider's: the config says whose prices apply.
    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    client = Client(providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": "sk-test"}})
    plain, streamed = both_ways(client, "openai/gpt-4o")
    expected = Usage(input_tokens=1000, output_tokens=42, cached_input_tokens=600 if cache else 0, reasoning_tokens=30)
    assert_same(plain, streamed, expected)
    bodies = fake.bodies()
    assert len(bodies) == 2
    assert bodies[1]["stream_options"] == {"include_usage": True}  # the stream asked for its usage


# -- Gemini: usageMetadata on the reply vs on the stream's events -------------------------------
@CACHE
def test_gemini(fake_server: FakeServer, cache: bool) -> None:
    metadata = fg.usage_metadata(1000, 22, thoughts=20, cached=600 if cache else None)
    # The stream sends running counts on every event; the last one is the call's.
    events = fg.stream_events(["Par", "is."], usage=metadata)
    events[0]["usageMetadata"] = fg.usage_metadata(1000, 1)
    fake_server.queue(fg.generate_reply("Paris.", usage=metadata), fg.stream_reply(events))
    client = Client(providers={"gemini": {"base_url": fake_server.url, "api_key": "gemini-test-key"}})
    plain, streamed = both_ways(client, "gemini/gemini-2.5-flash")
    # candidatesTokenCount leaves the thoughts out: output = candidates + thoughts.
    expected = Usage(input_tokens=1000, output_tokens=42, cached_input_tokens=600 if cache else 0, reasoning_tokens=20)
    assert_same(plain, streamed, expected)
    assert len(fake_server.requests) == 2
    assert ":streamGenerateContent" in fake_server.requests[1].path


# -- Bedrock Converse: usage vs the stream's metadata event -------------------------------------
@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with FakeBedrock() as server:
        yield server


@CACHE
def test_bedrock_converse(bedrock: FakeBedrock, cache: bool) -> None:
    usage = converse_usage(100, 42, cache_read=600 if cache else 0, cache_write=300 if cache else 0)
    bedrock.queue(
        converse_reply(text="Paris.", usage=usage),
        converse_stream_reply(text_pieces=["Par", "is."], usage=usage),
    )
    client = Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}})
    plain, streamed = both_ways(client, "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0")
    expected = (
        Usage(input_tokens=1000, output_tokens=42, cached_input_tokens=600, cache_write_tokens=300)
        if cache
        else Usage(input_tokens=100, output_tokens=42)
    )
    assert_same(plain, streamed, expected)
    assert [bedrock.route(r)[1] for r in bedrock.requests] == ["Converse", "ConverseStream"]


# -- Ollama: the reply's counts vs the stream's done line ---------------------------------------
def test_ollama(fake_server: FakeServer) -> None:
    fake_server.queue(
        fo.chat_reply("Paris.", prompt_eval_count=1000, eval_count=42),
        fo.stream_reply(fo.chat_stream_events(["Par", "is."], prompt_eval_count=1000, eval_count=42)),
    )
    client = Client(providers={"ollama": {"base_url": fake_server.url}})
    plain, streamed = both_ways(client, "ollama/llama3.2")
    # Ollama reports no cache or reasoning counts; a local model has no per-token price.
    assert plain.usage == streamed.usage == Usage(input_tokens=1000, output_tokens=42)
    assert plain.cost is not None and plain.cost.total == 0 == streamed.cost.total  # type: ignore[union-attr]
    assert [r.json().get("stream") for r in fake_server.requests] == [False, True]


# -- llama.cpp: the real embedded model --------------------------------------------------------
@pytest.mark.slow
def test_llamacpp() -> None:
    with Client() as client:
        plain, streamed = both_ways(client, "llama-local", max_tokens=16, temperature=0.0, seed=1)
    assert plain.usage == streamed.usage
    assert plain.usage.input_tokens > 10 and plain.usage.output_tokens > 0
