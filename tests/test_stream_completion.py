"""``Stream.completion`` and ``AsyncStream.completion`` mean the same in every state of a stream:
consumed, partly read, failed, closed early. The one difference a property forces: the async one
cannot read the unread chunks itself, so it says to ``await get_completion()``, which does."""

from __future__ import annotations

import pytest

from fmclient import Client, ServiceUnavailableError
from fmclient.testing import MockProvider


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
