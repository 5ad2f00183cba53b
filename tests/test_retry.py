"""The one retry layer: what is retried, how often, how long it waits, and the deadline."""

from __future__ import annotations

import asyncio

import pytest

from fmclient import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    Client,
    FMClientError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
)
from fmclient import retry as retry_module
from fmclient.retry import Deadline, RetryPolicy
from fmclient.testing import MockProvider


@pytest.mark.parametrize("status", [429, 408, 500, 502, 503, 529])
def test_retryable_statuses_are_retried_then_succeed(status: int) -> None:
    with MockProvider() as mock:
        mock.add_error(status).add_error(status).add_reply("finally")
        reply = Client(max_retries=2).complete("hi", model="gpt-sol")
    assert reply.text == "finally"
    assert len(mock.calls) == 3
    assert len(mock.sleeps) == 2


@pytest.mark.parametrize("error", [APIConnectionError, RequestTimeoutError])
def test_connection_failures_and_timeouts_are_retried(error: type[FMClientError]) -> None:
    with MockProvider() as mock:
        mock.add_error(error).add_reply("ok")
        assert Client().complete("hi", model="gpt-sol").text == "ok"
    assert len(mock.calls) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError), (404, ModelNotFoundError)],
)
def test_what_cannot_succeed_is_never_retried(status: int, error: type[FMClientError]) -> None:
    with MockProvider() as mock:
        mock.add_error(status).add_reply("never reached")
        with pytest.raises(error) as caught:
            Client(max_retries=5).complete("hi", model="gpt-sol")
    assert len(mock.calls) == 1
    assert mock.sleeps == []
    assert caught.value.retryable is False
    assert caught.value.status_code == status


def test_attempts_are_exactly_one_plus_max_retries() -> None:
    with MockProvider() as mock:
        for _ in range(10):
            mock.add_error(503)
        with pytest.raises(ServiceUnavailableError):
            Client(max_retries=3).complete("hi", model="gpt-sol")
    assert len(mock.calls) == 4


def test_max_retries_per_call_beats_provider_beats_global() -> None:
    client = Client(max_retries=4, providers={"openai": {"max_retries": 1}})
    with MockProvider() as mock:
        for _ in range(10):
            mock.add_error(503)
        with pytest.raises(ServiceUnavailableError):
            client.complete("hi", model="gpt-sol")
        assert len(mock.calls) == 2  # the provider's 1 retry
        with pytest.raises(ServiceUnavailableError):
            client.complete("hi", model="claude-haiku")
        assert len(mock.calls) == 2 + 5  # the global 4 retries
        with pytest.raises(ServiceUnavailableError):
            client.complete("hi", model="gpt-sol", max_retries=0)
        assert len(mock.calls) == 8


def test_retry_after_is_honoured_exactly() -> None:
    with MockProvider() as mock:
        mock.add_error(RateLimitError, retry_after=7.5).add_error(529, retry_after=0.25).add_reply("ok")
        Client().complete("hi", model="claude-haiku")
    assert mock.sleeps == [7.5, 0.25]


def test_retry_after_longer_than_the_cap_raises_at_once() -> None:
    with MockProvider() as mock:
        mock.add_error(RateLimitError, retry_after=3600).add_reply("never")
        with pytest.raises(RateLimitError) as caught:
            Client(max_retry_wait=30).complete("hi", model="claude-haiku")
    assert caught.value.retry_after == 3600
    assert mock.sleeps == []
    assert len(mock.calls) == 1


def test_backoff_grows_exponentially_with_jitter() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 8.0)]:
        waits = {policy.backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered


def test_retry_wait_that_overruns_the_deadline_raises_instead_of_sleeping() -> None:
    with MockProvider() as mock:
        mock.add_error(RateLimitError, retry_after=20).add_reply("never")
        with pytest.raises(RateLimitError):
            Client().complete("hi", model="gpt-sol", timeout=5)
    assert mock.sleeps == []


def test_deadline_bounds_the_whole_call(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(retry_module, "monotonic", lambda: now[0])

    def slow_attempt(left: float | None) -> str:
        assert left is not None
        now[0] += left  # the attempt used all the time it was given
        raise RequestTimeoutError("slow", provider="p")

    with pytest.raises(RequestTimeoutError):
        retry_module.call_with_retries(slow_attempt, RetryPolicy(max_retries=5), Deadline(3.0))
    deadline = Deadline(2.0)
    now[0] += 2.5
    with pytest.raises(RequestTimeoutError, match="deadline of 2s"):
        deadline.check()


def test_each_attempt_receives_the_time_left() -> None:
    seen: list[float | None] = []
    with MockProvider() as mock:
        mock.respond_with(lambda request: (seen.append(request.timeout), "ok")[1])
        Client().complete("hi", model="gpt-sol", timeout=9)
        Client().complete("hi", model="gpt-sol")
    assert seen[0] is not None and 8 < seen[0] <= 9
    assert seen[1] is None


async def test_async_retries_count_the_same_way() -> None:
    with MockProvider() as mock:
        mock.add_error(429, retry_after=2).add_error(503).add_reply("async ok")
        reply = await Client().acomplete("hi", model="gpt-sol")
    assert reply.text == "async ok"
    assert len(mock.calls) == 3
    assert mock.sleeps[0] == 2


def test_a_stream_is_retried_only_before_its_first_chunk() -> None:
    with MockProvider() as mock:
        mock.add_error(503).add_stream(["Hel", "lo"])
        stream = Client().stream("hi", model="gpt-sol")
        assert [c.text for c in stream if c.text] == ["Hel", "lo"]
        assert len(mock.calls) == 2

        mock.add_stream(["Par", "tial", "never"], error_after=2, error=APIConnectionError).add_reply("not used")
        stream = Client().stream("hi", model="gpt-sol")
        received = []
        with pytest.raises(APIConnectionError) as caught:
            for chunk in stream:
                received.append(chunk.text)
    assert received == ["Par", "tial"]
    assert caught.value.partial_text == "Partial"
    assert len(mock.calls) == 3  # not retried once text reached the caller
    assert mock.pending == 1


async def test_async_stream_retries_before_first_chunk() -> None:
    with MockProvider() as mock:
        mock.add_error(429).add_stream(["a", "b"])
        stream = Client().astream("hi", model="gpt-sol")
        texts = [c.text async for c in stream]
    assert "".join(texts) == "ab"
    assert stream.completion.text == "ab"
    assert len(mock.calls) == 2


def test_a_real_sleep_happens_without_the_fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(retry_module, "sleep", slept.append)
    with MockProvider(real_sleep=True) as mock:
        mock.add_error(503, retry_after=0.01).add_reply("ok")
        Client().complete("hi", model="gpt-sol")
    assert slept == [0.01]


def test_retry_logs_say_what_happened_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="fmclient")
    with MockProvider() as mock:
        mock.add_error(RateLimitError, retry_after=1, message="slow down").add_reply("ok")
        Client().complete("hi", model="gpt-sol")
    assert "retrying after RateLimitError (attempt 2 of 3)" in caplog.text


def test_asyncio_sleep_default_is_awaitable() -> None:
    asyncio.run(retry_module.asleep(0))
