"""``timeout`` is a deadline for the whole call, streams included: a reply that keeps trickling in
(each gap well inside the per-read timeout) is cut off once the deadline has passed, with the text
received so far in ``partial_text``. Real SDK over HTTP against the OpenAI fake.

A behaviour test, not a speed claim: the trickle lasts four times the deadline, and what is checked
is that the call raised before the reply ended and was not re-sent.
"""

from __future__ import annotations

import pytest

from fmclient import Client, RequestTimeoutError
from tests.fakes.openai import Answer, FakeOpenAI, chunk_events
from tests.fakes.server import FakeServer, Reply

KEY = "sk-stream-deadline-0123456789"
WORDS = [f"w{i}" for i in range(24)]
DEADLINE = 1.5
GAP = 0.25  # 24 gaps of 0.25 s: the whole reply takes 6 s, four times the deadline


def trickling_client(server: FakeServer) -> Client:
    FakeOpenAI(server)
    server.queue(Reply(chunks=chunk_events(Answer(" ".join(WORDS)), include_usage=True), chunk_delay=GAP))
    return Client(providers={"openai": {"base_url": server.url + "/v1", "api_key": KEY}}, max_retries=2)


def check_cut_off(error: RequestTimeoutError, received: list[str], server: FakeServer) -> None:
    full = " ".join(WORDS)
    assert "deadline of 1.5s was exceeded" in str(error)
    assert error.retryable is False
    assert error.partial_text and full.startswith(error.partial_text) and error.partial_text != full
    assert "".join(received) == error.partial_text[: len("".join(received))]
    assert len(server.requests) == 1  # cut off, never re-sent


def test_a_trickling_stream_raises_at_the_deadline(fake_server: FakeServer) -> None:
    client = trickling_client(fake_server)
    received: list[str] = []
    with pytest.raises(RequestTimeoutError) as caught:
        for chunk in client.stream("hi", model="openai/gpt-4o", timeout=DEADLINE):
            received.append(chunk.text)
    check_cut_off(caught.value, received, fake_server)


async def test_a_trickling_async_stream_raises_at_the_deadline(fake_server: FakeServer) -> None:
    client = trickling_client(fake_server)
    received: list[str] = []
    with pytest.raises(RequestTimeoutError) as caught:
        async for chunk in client.astream("hi", model="openai/gpt-4o", timeout=DEADLINE):
            received.append(chunk.text)
    check_cut_off(caught.value, received, fake_server)
    await client.aclose()
