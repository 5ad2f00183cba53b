"""Every usage field a provider reports reaches :class:`fmclient.types.Usage`, on every path.

One table: per provider, a reply that sets every usage field the provider's wire format has to a
non-zero (or non-standard) value, and the Usage it must become. Each row runs the real SDK
against its wire fake four ways (``complete``, ``stream``, ``acomplete``, ``astream``); the
provider-batch result parsers are checked with the same wire data. A field an adapter drops
shows as a zero here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
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
from tests.test_usage_parity import bedrock  # noqa: F401  (the fixture, shared)

PATHS = ("complete", "stream", "acomplete", "astream")
PROMPT = "What is the capital of France?"

# -- the wire data: every field set ------------------------------------------------------------
ANTHROPIC_USAGE: dict[str, Any] = {
    "input_tokens": 100,
    "output_tokens": 42,
    "cache_creation_input_tokens": 300,
    "cache_read_input_tokens": 600,
    "cache_creation": {"ephemeral_1h_input_tokens": 200, "ephemeral_5m_input_tokens": 100},
    "output_tokens_details": {"thinking_tokens": 30},
    "service_tier": "priority",
    "speed": "fast",
}
ANTHROPIC_EXPECTED = Usage(
    input_tokens=1000,
    output_tokens=42,
    cached_input_tokens=600,
    cache_write_tokens=300,
    reasoning_tokens=30,
    cache_write_1h_tokens=200,
    service_tier="priority",
    speed="fast",
)

OPENAI_ANSWER = dict(
    prompt_tokens=1000,
    completion_tokens=42,
    cached_tokens=600,
    cache_write_tokens=300,
    reasoning_tokens=30,
    service_tier="flex",
)
OPENAI_EXPECTED = Usage(1000, 42, 600, 300, 30, service_tier="flex")

BEDROCK_USAGE = converse_usage(100, 42, cache_read=600, cache_write=300, cache_write_1h=200)
BEDROCK_EXTRA = {"serviceTier": {"type": "flex"}, "performanceConfig": {"latency": "optimized"}}
BEDROCK_EXPECTED = Usage(1000, 42, 600, 300, cache_write_1h_tokens=200, service_tier="flex", speed="optimized")

GEMINI_METADATA = fg.usage_metadata(1000, 12, thoughts=30, cached=600, tool_use=50) | {
    # per-modality output counts: the image tokens an image model reports are priced apart
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 8}, {"modality": "IMAGE", "tokenCount": 4}]
}
# Tool-use prompt tokens are input; thoughts are output; the tier is the one asked for.
GEMINI_EXPECTED = Usage(1050, 42, 600, reasoning_tokens=30, service_tier="flex", output_image_tokens=4)


@dataclass
class Row:
    """One provider: how to script its fake for a plain or a streamed reply, and the call."""

    model: str
    script: Callable[[bool], None]  # streamed? -> queue the reply
    expected: Usage
    kwargs: dict[str, Any]
    client: Client


def _anthropic(server: FakeServer) -> Row:
    def script(streamed: bool) -> None:
        if streamed:
            start = {k: v for k, v in ANTHROPIC_USAGE.items() if k != "output_tokens_details"} | {"output_tokens": 1}
            final = {"output_tokens": 42, "output_tokens_details": {"thinking_tokens": 30}}
            server.queue(fa.stream_reply(fa.stream_events("Paris.", start_usage=start, final_usage=final)))
        else:
            server.queue(fa.message_reply("Paris.", usage_=dict(ANTHROPIC_USAGE)))

    client = Client(providers={"anthropic": {"base_url": server.url, "api_key": "test-key-anthropic"}})
    return Row("anthropic/claude-opus-4-6", script, ANTHROPIC_EXPECTED, {}, client)


def _openai(server: FakeServer, model: str) -> Row:
    fake = FakeOpenAI(server)

    def script(streamed: bool) -> None:
        fake.answer(Answer("Paris.", **OPENAI_ANSWER))  # type: ignore[arg-type]

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    client = Client(providers={"openai": {"base_url": server.url + "/v1", "api_key": "sk-test"}})
    return Row(model, script, OPENAI_EXPECTED, {}, client)


def _gemini(server: FakeServer) -> Row:
    def script(streamed: bool) -> None:
        if streamed:
            events = fg.stream_events(["Par", "is."], usage=GEMINI_METADATA)
            events[0]["usageMetadata"] = fg.usage_metadata(1000, 1)  # running counts; the last one is the call's
            server.queue(fg.stream_reply(events))
        else:
            server.queue(fg.generate_reply("Paris.", usage=GEMINI_METADATA))

    client = Client(providers={"gemini": {"base_url": server.url, "api_key": "gemini-test-key"}})
    return Row("gemini/gemini-2.5-flash", script, GEMINI_EXPECTED, {"service_tier": "flex"}, client)


def _bedrock(server: FakeBedrock) -> Row:
    def script(streamed: bool) -> None:
        if streamed:
            server.queue(converse_stream_reply(text_pieces=["Par", "is."], usage=BEDROCK_USAGE, extra=BEDROCK_EXTRA))
        else:
            server.queue(converse_reply(text="Paris.", usage=BEDROCK_USAGE, extra=BEDROCK_EXTRA))

    client = Client(providers={"bedrock": {"base_url": server.url, "region": "us-east-1"}})
    return Row("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", script, BEDROCK_EXPECTED, {}, client)


def _ollama(server: FakeServer) -> Row:
    # Ollama reports two counts (no cache, reasoning or tier): both must arrive.
    def script(streamed: bool) -> None:
        if streamed:
            server.queue(fo.stream_reply(fo.chat_stream_events(["Par", "is."], prompt_eval_count=1000, eval_count=42)))
        else:
            server.queue(fo.chat_reply("Paris.", prompt_eval_count=1000, eval_count=42))

    client = Client(providers={"ollama": {"base_url": server.url}})
    return Row("ollama/llama3.2", script, Usage(1000, 42), {}, client)


def call(row: Row, path: str) -> Completion:
    client, model, kwargs = row.client, row.model, row.kwargs
    if path == "complete":
        return client.complete(PROMPT, model=model, **kwargs)
    if path == "stream":
        with client.stream(PROMPT, model=model, **kwargs) as stream:
            for _ in stream:
                pass
        return stream.completion

    async def run() -> Completion:
        if path == "acomplete":
            return await client.acomplete(PROMPT, model=model, **kwargs)
        async with client.astream(PROMPT, model=model, **kwargs) as stream:
            async for _ in stream:
                pass
        return stream.completion

    return asyncio.run(run())


PROVIDERS = ("anthropic", "openai-chat", "openai-responses", "gemini", "bedrock", "ollama")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_reported_usage_field_reaches_usage(
    provider: str, path: str, fake_server: FakeServer, request: pytest.FixtureRequest
) -> None:
    if provider == "anthropic":
        row = _anthropic(fake_server)
    elif provider == "openai-chat":
        row = _openai(fake_server, "openai/gpt-4o")
    elif provider == "openai-responses":
        row = _openai(fake_server, "openai/gpt-5")  # the profile sends gpt-5 to the Responses API
    elif provider == "gemini":
        row = _gemini(fake_server)
    elif provider == "bedrock":
        row = _bedrock(request.getfixturevalue("bedrock"))
    else:
        row = _ollama(fake_server)
    row.script(path in ("stream", "astream"))
    reply = call(row, path)
    assert reply.usage == row.expected
    if provider.startswith("openai"):
        endpoint = "/v1/responses" if provider == "openai-responses" else "/v1/chat/completions"
        assert [r.path for r in fake_server.requests] == [endpoint]
    if provider == "gemini":
        # The tier is what the request asked for: it must have been sent.
        assert fake_server.requests[0].json()["serviceTier"] == "flex"


# -- provider batch results: the same wire data through each batch parser ------------------------
def test_anthropic_batch_result_carries_every_usage_field() -> None:
    from fmclient.provider_batch import custom_id
    from fmclient.providers.batch_anthropic import parse_result

    message = fa.message("Paris.", usage_=dict(ANTHROPIC_USAGE))
    index, result = parse_result(
        {"custom_id": custom_id(3), "result": {"type": "succeeded", "message": message}},
        provider="anthropic",
        model="claude-opus-4-6",
    )
    assert index == 3 and isinstance(result, Completion)
    assert result.usage == ANTHROPIC_EXPECTED


def test_openai_batch_result_carries_every_usage_field() -> None:
    from fmclient.provider_batch import custom_id
    from fmclient.providers.batch_openai import parse_output_line
    from tests.fakes.openai import completion_body

    body = completion_body(Answer("Paris.", **OPENAI_ANSWER))  # type: ignore[arg-type]
    index, result = parse_output_line(
        {"custom_id": custom_id(0), "response": {"status_code": 200, "body": body}}, provider="openai", model="gpt-4o"
    )
    assert index == 0 and isinstance(result, Completion)
    assert result.usage == OPENAI_EXPECTED


def test_bedrock_batch_record_carries_every_usage_field() -> None:
    from fmclient.provider_batch import custom_id
    from fmclient.providers.batch_bedrock import parse_record

    output = converse_reply(text="Paris.", usage=BEDROCK_USAGE, extra=BEDROCK_EXTRA).body
    index, result = parse_record(
        {"recordId": custom_id(1), "modelOutput": output},
        provider="bedrock",
        model="anthropic.claude-sonnet-4-5-20250929-v1:0",
    )
    assert index == 1 and isinstance(result, Completion)
    assert result.usage == BEDROCK_EXPECTED


def test_usage_adds_and_serialises_every_field() -> None:
    a = Usage(10, 5, 1, 4, 2, cache_write_1h_tokens=3, service_tier="flex", speed="fast", input_audio_tokens=6)
    b = Usage(
        20, 7, 2, 6, 1, cache_write_1h_tokens=1, service_tier="flex", output_audio_tokens=4, output_image_tokens=5
    )
    total = a + b
    assert total == Usage(
        30,
        12,
        3,
        10,
        3,
        cache_write_1h_tokens=4,
        service_tier="flex",
        speed=None,
        input_audio_tokens=6,
        output_audio_tokens=4,
        output_image_tokens=5,
    )
    assert a.to_dict() == {
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "cached_input_tokens": 1,
        "cache_write_tokens": 4,
        "cache_write_1h_tokens": 3,
        "reasoning_tokens": 2,
        "service_tier": "flex",
        "speed": "fast",
        "input_audio_tokens": 6,
        "output_audio_tokens": 0,
        "output_image_tokens": 0,
    }


def test_a_cached_answer_keeps_every_usage_field() -> None:
    from fmclient.cache import completion_from_json, completion_to_json

    reply = Completion("Paris.", "stop", ANTHROPIC_EXPECTED, "claude-opus-4-6", "anthropic")
    stored = completion_to_json(reply)
    assert stored is not None
    assert completion_from_json(stored).usage == ANTHROPIC_EXPECTED


def test_a_cached_answer_keeps_its_audio_tokens() -> None:
    from fmclient.cache import completion_from_json, completion_to_json

    usage = Usage(100, 10, input_audio_tokens=64, output_audio_tokens=3)
    stored = completion_to_json(Completion("heard you", "stop", usage, "gemini-3.8-flash", "gemini"))
    assert stored is not None
    assert completion_from_json(stored).usage == usage
