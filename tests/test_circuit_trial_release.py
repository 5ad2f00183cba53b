"""A half-open circuit's one trial call must be handed back when that call ends without an outcome:
cancelled, interrupted (KeyboardInterrupt), or a stream the consumer closed early. Otherwise the
breaker would refuse every later call until the process restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fmclient import Client, ServiceUnavailableError
from fmclient import retry as retry_module
from fmclient.circuit import CircuitBreaker, CircuitOpenError
from fmclient.testing import MockProvider
from fmclient.types import Chunk, Completion, Request


class Misbehaving(MockProvider):
    """A mock whose next call hangs (async) or is interrupted, after one chunk when streamed."""

    mode: str | None = None  # None: answer normally; "interrupt": KeyboardInterrupt; "hang": wait forever

    def __init__(self) -> None:
        super().__init__()
        self.entered: asyncio.Event | None = None  # made per test, on the running loop

    def complete(self, request: Request) -> Completion:
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        return super().complete(request)

    def stream(self, request: Request) -> Iterator[Chunk]:
        if self.mode != "interrupt":
            yield from super().stream(request)
            return
        yield Chunk(text="partial ")
        raise KeyboardInterrupt

    async def acomplete(self, request: Request) -> Completion:
        if self.mode == "hang":
            assert self.entered is not None
            self.entered.set()
            await asyncio.Event().wait()
        return self.complete(request)

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        if self.mode != "hang":
            for chunk in super().stream(request):
                yield chunk
            return
        yield Chunk(text="partial ")
        assert self.entered is not None
        self.entered.set()
        await asyncio.Event().wait()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(retry_module, "monotonic", lambda: now[0])
    return now


def half_open(tmp_path: Path, clock: list[float], mock: MockProvider) -> tuple[Client, CircuitBreaker]:
    """A client whose openai circuit has just gone half-open: the next call is its one trial."""
    config = tmp_path / "cb.toml"
    config.write_text("[circuit_breaker]\nfailure_threshold = 1\ncooldown = 10\n")
    client = Client(config_path=str(config), max_retries=0)
    mock.add_error(503)
    with pytest.raises(ServiceUnavailableError):
        client.complete("hi", model="openai/gpt-4o")
    breaker = client.breaker("openai")
    assert breaker is not None
    with pytest.raises(CircuitOpenError):
        client.complete("hi", model="openai/gpt-4o")
    clock[0] += 11
    assert breaker.state == "half-open"
    return client, breaker


def assert_next_call_is_the_trial(client: Client, breaker: CircuitBreaker, mock: MockProvider) -> None:
    mock.mode = None  # type: ignore[attr-defined]
    assert breaker.state == "half-open"
    sent = len(mock.calls)
    assert client.complete("hi", model="openai/gpt-4o").text == "mock response"  # an unreleased trial: CircuitOpenError
    assert len(mock.calls) == sent + 1
    assert breaker.state == "closed"


def test_keyboard_interrupt_during_the_trial_releases_it(tmp_path: Path, clock: list[float]) -> None:
    with Misbehaving() as mock:
        client, breaker = half_open(tmp_path, clock, mock)
        mock.mode = "interrupt"
        with pytest.raises(KeyboardInterrupt):
            client.complete("hi", model="openai/gpt-4o")
        assert_next_call_is_the_trial(client, breaker, mock)


def test_keyboard_interrupt_during_a_trial_stream_releases_it(tmp_path: Path, clock: list[float]) -> None:
    with Misbehaving() as mock:
        client, breaker = half_open(tmp_path, clock, mock)
        mock.mode = "interrupt"
        stream = client.stream("hi", model="openai/gpt-4o")
        with pytest.raises(KeyboardInterrupt):
            for _ in stream:
                pass
        assert stream.text == "partial "
        assert_next_call_is_the_trial(client, breaker, mock)


def test_a_trial_stream_closed_early_releases_it(tmp_path: Path, clock: list[float]) -> None:
    with Misbehaving() as mock:
        client, breaker = half_open(tmp_path, clock, mock)
        mock.add_stream(["one ", "two ", "three"])
        with client.stream("hi", model="openai/gpt-4o") as stream:
            assert next(stream).text == "one "
        assert mock.pending == 0
        assert_next_call_is_the_trial(client, breaker, mock)


async def test_a_cancelled_async_trial_releases_it(tmp_path: Path, clock: list[float]) -> None:
    with Misbehaving() as mock:
        client, breaker = half_open(tmp_path, clock, mock)
        mock.mode, mock.entered = "hang", asyncio.Event()
        task = asyncio.create_task(client.acomplete("hi", model="openai/gpt-4o"))
        await asyncio.wait_for(mock.entered.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_next_call_is_the_trial(client, breaker, mock)


async def test_a_cancelled_async_trial_stream_releases_it(tmp_path: Path, clock: list[float]) -> None:
    with Misbehaving() as mock:
        client, breaker = half_open(tmp_path, clock, mock)
        mock.mode, mock.entered = "hang", asyncio.Event()
        received: list[str] = []

        async def consume() -> None:
            async with client.astream("hi", model="openai/gpt-4o") as stream:
                async for chunk in stream:
                    received.append(chunk.text)

        task = asyncio.create_task(consume())
        await asyncio.wait_for(mock.entered.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert received == ["partial "]
        assert_next_call_is_the_trial(client, breaker, mock)


async def test_an_async_trial_stream_closed_early_releases_it(tmp_path: Path, clock: list[float]) -> None:
    with Misbehaving() as mock:
        client, breaker = half_open(tmp_path, clock, mock)
        mock.add_stream(["one ", "two ", "three"])
        stream = client.astream("hi", model="openai/gpt-4o")
        assert (await stream.__anext__()).text == "one "
        await stream.aclose()
        assert_next_call_is_the_trial(client, breaker, mock)


def test_admit_tells_the_trial_apart_and_release_hands_it_back(clock: list[float]) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10)
    assert breaker.admit() == "closed"
    breaker.record_failure()
    assert breaker.admit() is None  # open
    clock[0] += 11
    assert breaker.admit() == "trial"
    assert breaker.admit() is None  # one trial at a time
    breaker.release()
    assert breaker.admit() == "trial"
