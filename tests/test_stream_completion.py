"""``Stream.completion`` and ``AsyncStream.completion`` mean the same in every state of a stream:
consumed, partly read, failed, closed early. The one difference a property forces: the async one
cannot read the unread chunks itself, so it says to ``await get_completion()``, which does."""

from __future__ import annotations

from typing import Any

import pytest

from fmclient import Client, Completion, ServiceUnavailableError
from fmclient.testing import MockProvider
from tests.fakes.server import FakeServer


def test_sync_completion_reads_the_rest_of_a_partly_read_stream() -> None:
    with MockProvider() as mock:
        mock.add_stream(["one ", "two ", "three"])
        stream = Client().stream("hi", model="openai/gpt-4o")
        assert next(stream).text == "one "
        assert stream.completion.text == "one two three"
        assert stream.completion is stream.completion


async def test_async_completion_of_a_partly_read_stream_points_to_get_completion() -> None:
    with MockProvider() as mock:
        mock.add_stream(["one ", "two ", "three"])
        stream = Client().astream("hi", model="openai/gpt-4o")
        with pytest.raises(RuntimeError, match="get_completion"):
            stream.completion  # noqa: B018 - the property access is the test
        assert (await stream.__anext__()).text == "one "
        with pytest.raises(RuntimeError, match="get_completion"):
            stream.completion  # noqa: B018
        assert (await stream.get_completion()).text == "one two three"
        assert stream.completion.text == "one two three"  # now read, as in the sync stream


def test_sync_completion_of_a_failed_stream_raises_its_error_again() -> None:
    with MockProvider() as mock:
        mock.add_stream(["half ", "way"], error_after=1, error=ServiceUnavailableError)
        stream = Client(max_retries=0).stream("hi", model="openai/gpt-4o")
        with pytest.raises(ServiceUnavailableError) as during:
            list(stream)
        with pytest.raises(ServiceUnavailableError) as after:
            stream.completion  # noqa: B018
    assert after.value is during.value and after.value.partial_text == "half "


async def test_async_completion_of_a_failed_stream_raises_its_error_again() -> None:
    with MockProvider() as mock:
        mock.add_stream(["half ", "way"], error_after=1, error=ServiceUnavailableError)
        stream = Client(max_retries=0).astream("hi", model="openai/gpt-4o")
        with pytest.raises(ServiceUnavailableError) as during:
            async for _ in stream:
                pass
        with pytest.raises(ServiceUnavailableError) as after:
            stream.completion  # noqa: B018
        with pytest.raises(ServiceUnavailableError):
            await stream.get_completion()
    assert after.value is during.value and after.value.partial_text == "half "


def test_sync_completion_of_a_stream_closed_early_says_so() -> None:
    with MockProvider() as mock:
        mock.add_stream(["one ", "two ", "three"])
        with Client().stream("hi", model="openai/gpt-4o") as stream:
            next(stream)
        with pytest.raises(RuntimeError, match="closed before it ended"):
            stream.completion  # noqa: B018
    assert stream.text == "one "


async def test_async_completion_of_a_stream_closed_early_says_so() -> None:
    with MockProvider() as mock:
        mock.add_stream(["one ", "two ", "three"])
        async with Client().astream("hi", model="openai/gpt-4o") as stream:
            await stream.__anext__()
        with pytest.raises(RuntimeError, match="closed before it ended"):
            stream.completion  # noqa: B018
        with pytest.raises(RuntimeError, match="closed before it ended"):
            await stream.get_completion()
    assert stream.text == "one "


def test_completion_of_a_consumed_stream_is_the_same_sync_and_async() -> None:
    import asyncio

    async def read_async() -> str:
        stream = Client().astream("hi", model="openai/gpt-4o")
        async for _ in stream:
            pass
        return stream.completion.text

    with MockProvider() as mock:
        mock.add_stream(["a ", "b"]).add_stream(["a ", "b"])
        stream = Client().stream("hi", model="openai/gpt-4o")
        for _ in stream:
            pass
        assert stream.completion.text == asyncio.run(read_async()) == "a b"


# == reasoning: a stream's completion reads as complete() does, on every provider ===================
# Each provider's fake answers the same reply twice, whole and streamed; the reasoning text (and the
# answer) of stream(...).completion must equal complete(...)'s, however the thinking was split.
FIRST, SECOND, THIRD = "Two cities to look up.", "Call the tool twice.", "Then compare."


def _both(client: Client, model: str, **kwargs: Any) -> tuple[Completion, Completion]:
    done = client.complete("hi", model=model, **kwargs)
    stream = client.stream("hi", model=model, **kwargs)
    list(stream)
    return done, stream.completion


def test_openai_responses_reasoning_summaries_join_alike(fake_server: FakeServer) -> None:
    from tests.fakes.openai import Answer, FakeOpenAI

    fake = FakeOpenAI(fake_server)
    answer = Answer("Paris.", model="o3", reasoning_items=[[FIRST, SECOND], [THIRD]])
    fake.answer(answer, answer)
    openai = {"base_url": fake_server.url + "/v1", "api_key": "sk-test-0123456789"}
    with Client(providers={"openai": openai}, max_retries=0) as client:
        done, streamed = _both(client, "openai/o3", reasoning="low")
    assert done.reasoning == f"{FIRST}\n\n{SECOND}\n\n{THIRD}"
    assert (streamed.text, streamed.reasoning) == (done.text, done.reasoning)


def test_anthropic_thinking_blocks_join_alike(fake_server: FakeServer) -> None:
    from tests.fakes import anthropic as fa

    blocks = [fa.thinking_block(FIRST, "sig-1"), fa.thinking_block(SECOND, "sig-2"), fa.text_block("Paris.")]
    fake_server.queue(fa.message_reply(blocks), fa.stream_reply(fa.stream_events(blocks)))
    anthropic = {"base_url": fake_server.url, "api_key": "test-key-anthropic"}
    with Client(providers={"anthropic": anthropic}, max_retries=0) as client:
        done, streamed = _both(client, "anthropic/claude-sonnet-4-5", reasoning="low")
    assert done.reasoning == FIRST + SECOND
    assert (streamed.text, streamed.reasoning) == (done.text, done.reasoning)


def test_gemini_thoughts_join_alike(fake_server: FakeServer) -> None:
    from tests.fakes import gemini as fg

    thoughts = [fg.text_part(FIRST, thought=True), fg.text_part(SECOND, thought=True)]
    whole = fg.generate_reply(parts=[*thoughts, fg.text_part("Paris.")])
    events = [fg.response_body(parts=[part], finish_reason=None) for part in thoughts]
    events.append(fg.response_body("Paris.", usage=fg.usage_metadata()))
    fake_server.queue(whole, fg.stream_reply(events))
    gemini = {"base_url": fake_server.url, "api_key": "test-key-gemini"}
    with Client(providers={"gemini": gemini}, max_retries=0) as client:
        done, streamed = _both(client, "gemini/gemini-2.5-flash", reasoning="low")
    assert done.reasoning == FIRST + SECOND
    assert (streamed.text, streamed.reasoning) == (done.text, done.reasoning)


def test_bedrock_reasoning_joins_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes import bedrock as fb

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    with fb.FakeBedrock() as bedrock:
        bedrock.queue(
            fb.converse_reply(text="Paris.", reasoning={"text": FIRST + SECOND, "signature": "sig"}),
            fb.converse_stream_reply(text_pieces=["Par", "is."], reasoning_pieces=[FIRST, SECOND]),
        )
        with Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0) as client:
            done, streamed = _both(client, "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", reasoning="low")
    assert done.reasoning == FIRST + SECOND
    assert (streamed.text, streamed.reasoning) == (done.text, done.reasoning)


def test_ollama_thinking_joins_alike() -> None:
    from tests.fakes import ollama as fo

    with fo.FakeOllama(models=["qwen3"]) as server:
        server.queue(
            fo.chat_reply("Paris.", model="qwen3", thinking=FIRST + SECOND),
            fo.stream_reply(fo.chat_stream_events(["Par", "is."], model="qwen3", thinking=[FIRST, SECOND])),
        )
        with Client(providers={"ollama": {"base_url": server.url}}, max_retries=0) as client:
            done, streamed = _both(client, "ollama/qwen3", reasoning="low")
    assert done.reasoning == FIRST + SECOND
    assert (streamed.text, streamed.reasoning) == (done.text, done.reasoning)
