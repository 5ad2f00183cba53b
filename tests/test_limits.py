"""Client-side rate limits (fmclient.limits): fake clock, many tasks and threads, the wire fakes."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client, RateLimitError, limits, retry
from fmclient._validation import build_request
from fmclient.config import load_settings
from fmclient.errors import ConfigurationError, FMClientError
from fmclient.limits import RateLimit, RateLimiter, _duration, _pause_from_headers, estimate_tokens
from fmclient.testing import MockProvider
from fmclient.types import Request, Usage
from tests.fakes import anthropic as fake_anthropic
from tests.fakes.openai import Answer, FakeOpenAI, completion_body, error_reply
from tests.fakes.server import FakeServer, Reply

KEY = "sk-limits-test-key-0000"


class FakeClock:
    """Virtual time for the limiter and the deadline: a sleep jumps the clock to its wake time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def _advance(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now = max(self.now, self.now + seconds) if seconds > 0 else self.now

    def sleep(self, seconds: float) -> None:
        self._advance(seconds)

    async def asleep(self, seconds: float) -> None:
        # The tasks that can run now run first (as on a real loop, where they all come before a
        # timer), then this one wakes at its own wake time, not after everyone else's sleeps.
        wake = self.now + seconds
        await asyncio.sleep(0)
        with self._lock:
            self.slept.append(seconds)
            self.now = max(self.now, wake)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(limits, "monotonic", fake.monotonic)
    monkeypatch.setattr(limits, "sleep", fake.sleep)
    monkeypatch.setattr(limits, "asleep", fake.asleep)
    monkeypatch.setattr(retry, "monotonic", fake.monotonic)  # the call's deadline, on the same clock
    return fake


def most_in_any_window(stamps: list[float], window: float = 60.0) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class AsyncNativeMock(MockProvider):
    """The mock without its thread hop: the request is "sent" in the task that was admitted, at
    the instant it was admitted, as an async SDK call would be (the fake clock cannot move between)."""

    async def acomplete(self, request: Request) -> Any:
        return self.complete(request)


@pytest.fixture
def admissions(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When the limiter let each request through (its request-window charges).

    Threads on a fake clock: another thread's sleep can move the clock between a thread's
    admission and its send, so thread tests count admissions, which is what the limiter controls.
    """
    stamps: list[float] = []
    original = limits._Window.charge

    def charge(self: Any, now: float, weight: float) -> list[float]:
        if weight == 1:
            stamps.append(now)
        return original(self, now, weight)

    monkeypatch.setattr(limits._Window, "charge", charge)
    return stamps


def sent_at(clock: FakeClock, stamps: list[float]) -> Any:
    lock = threading.Lock()

    def respond(request: Request) -> str:
        with lock:
            stamps.append(clock.now)
        return "ok"

    return respond


# -- the window under load -------------------------------------------------------------------------
async def test_rpm_holds_in_every_60s_window_under_200_concurrent_tasks(clock: FakeClock) -> None:
    client = Client(rate_limits={"openai": {"rpm": 50}})
    stamps: list[float] = []
    with AsyncNativeMock() as mock:
        mock.respond_with(sent_at(clock, stamps))
        start = clock.now
        answers = await asyncio.gather(*(client.acomplete(f"q{i}", model="openai/gpt-4o") for i in range(200)))
    assert [a.text for a in answers] == ["ok"] * 200
    assert len(stamps) == 200
    assert most_in_any_window(stamps) == 50
    # 200 requests at 50 per minute need three more windows after the first: the limiter throttled,
    # and (virtual time) no window went unused.
    assert 180.0 <= clock.now - start < 240.0


def test_rpm_holds_across_threads(clock: FakeClock, admissions: list[float]) -> None:
    client = Client(rate_limits={"openai": {"rpm": 30}})
    with MockProvider() as mock, ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda i: client.complete(f"q{i}", model="openai/gpt-4o").text, range(120)))
        assert len(mock.requests) == 120
    assert answers == ["mock response"] * 120
    assert len(admissions) == 120
    assert most_in_any_window(admissions) == 30


async def test_threads_and_tasks_share_one_budget(clock: FakeClock, admissions: list[float]) -> None:
    client = Client(rate_limits={"openai": {"rpm": 20}})
    with AsyncNativeMock() as mock:

        def in_threads() -> None:
            with ThreadPoolExecutor(max_workers=10) as pool:
                list(pool.map(lambda i: client.complete(f"t{i}", model="openai/m"), range(40)))

        await asyncio.gather(
            asyncio.to_thread(in_threads), *(client.acomplete(f"a{i}", model="openai/m") for i in range(40))
        )
        assert len(mock.requests) == 80
    assert len(admissions) == 80
    assert most_in_any_window(admissions) == 20


async def test_tpm_is_token_weighted_under_concurrent_tasks(clock: FakeClock) -> None:
    # Each call is estimated at 400/4 + 1 + 99 = 200 tokens: 5 fit in a 1000-token minute. The mock
    # reports usage equal to the estimate, so the correction does not change the charge.
    client = Client(rate_limits={"openai/gpt-4o": {"tpm": 1000}})
    stamps: list[float] = []
    with AsyncNativeMock() as mock:
        respond = sent_at(clock, stamps)

        def answer(request: Request) -> Any:
            from fmclient.types import Completion

            respond(request)
            return Completion("ok", "stop", Usage(input_tokens=101, output_tokens=99), request.model, "mock")

        mock.respond_with(answer)
        await asyncio.gather(
            *(client.acomplete("x" * 400, model="openai/gpt-4o", max_tokens=99) for _ in range(25)),
            # Another model of the provider is not under this model's limit.
            *(client.acomplete("x" * 400, model="openai/other", max_tokens=99) for _ in range(25)),
        )
    assert len(stamps) == 50
    limited = sorted(stamps)[25:]  # the other model's 25 all went at the start, with 5 of these
    assert most_in_any_window(stamps) == 25 + 5
    assert max(limited) - min(stamps) >= 4 * 60.0


def test_actual_usage_corrects_the_estimate(clock: FakeClock) -> None:
    limiter = RateLimiter({"p": RateLimit(tpm=1000)})
    buckets = limiter.buckets_for("p", "m")
    ticket = limiter.acquire(buckets, 900, lambda: None, {})
    # Estimated 900, so 200 more would have to wait a minute ...
    with pytest.raises(RateLimitError):
        limiter.acquire(buckets, 200, lambda: 1.0, {})
    # ... but the call used 100: the correction frees the room at once.
    limiter.settle(ticket, 100, None)
    limiter.acquire(buckets, 200, lambda: 1.0, {})
    assert clock.slept == []


# -- fair order --------------------------------------------------------------------------------------
def _admitted_at(limiter: RateLimiter, ticket: Any) -> float:
    return float(ticket.token_entries[0][1][0])


def test_a_big_call_is_not_starved_by_small_ones_that_arrive_after_it(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RateLimiter({"p": RateLimit(tpm=1000)})
    buckets = limiter.buckets_for("p", "m")
    limiter.acquire(buckets, 600, lambda: None, {})  # t=1000: 400 left in this minute
    small_admissions: list[float] = []
    refused = 0

    def sleep_while_small_calls_arrive(seconds: float) -> None:
        # The big call is waiting: small calls that would each fit into the 400 left come in,
        # each willing to wait 10 s at most.
        nonlocal refused
        for _ in range(5):
            try:
                ticket = limiter.acquire(buckets, 100, lambda: 10.0, {})
            except RateLimitError:
                refused += 1
            else:
                small_admissions.append(_admitted_at(limiter, ticket))
        clock.sleep(seconds)

    monkeypatch.setattr(limits, "sleep", sleep_while_small_calls_arrive)
    big = limiter.acquire(buckets, 700, lambda: 120.0, {})
    # Admitted as soon as the first charge left the window, not after the small ones.
    assert _admitted_at(limiter, big) == 1060.0
    assert small_admissions == [] and refused == 5  # they would have had to wait behind it
    assert limiter._line == deque()


async def test_async_a_big_call_goes_first_once_capacity_allows(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RateLimiter({"p": RateLimit(tpm=1000)})
    buckets = limiter.buckets_for("p", "m")
    limiter.acquire(buckets, 600, lambda: None, {})  # t=1000: 400 left in this minute
    order: list[tuple[str, float]] = []
    smalls: list[asyncio.Future[None]] = []

    async def call(name: str, estimate: int) -> None:
        ticket = await limiter.aacquire(buckets, estimate, lambda: None, {})
        order.append((name, _admitted_at(limiter, ticket)))

    async def asleep_while_small_calls_arrive(seconds: float) -> None:
        if not smalls:  # the big call is waiting: eight small ones arrive (they run before it wakes)
            smalls.extend(asyncio.ensure_future(call(f"small{i}", 100)) for i in range(8))
        await clock.asleep(seconds)

    monkeypatch.setattr(limits, "asleep", asleep_while_small_calls_arrive)
    await call("big", 700)
    await asyncio.gather(*smalls)
    admitted = dict(order)
    # The big call goes as soon as the first charge leaves the window; the small ones that came
    # after it go after it, in the order they came, only into the room it leaves.
    assert admitted["big"] == 1060.0
    smalls_in_order = [admitted[f"small{i}"] for i in range(8)]
    assert min(smalls_in_order) >= admitted["big"]
    assert smalls_in_order == sorted(smalls_in_order)
    assert sum(100 for when in smalls_in_order if when == 1060.0) == 300
    assert limiter._line == deque()


async def test_a_cancelled_waiter_leaves_the_line(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = RateLimiter({"p": RateLimit(tpm=1000)})
    buckets = limiter.buckets_for("p", "m")
    limiter.acquire(buckets, 600, lambda: None, {})
    parked = asyncio.Event()

    async def park(seconds: float) -> None:
        parked.set()
        await asyncio.Event().wait()  # never wakes: only cancellation ends it

    monkeypatch.setattr(limits, "asleep", park)
    big = asyncio.ensure_future(limiter.aacquire(buckets, 700, lambda: None, {}))
    await parked.wait()
    assert len(limiter._line) == 1
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big
    assert limiter._line == deque()
    limiter.acquire(buckets, 300, lambda: 1.0, {})  # nobody ahead any more: fits now


def test_a_waiter_that_gives_up_leaves_the_line_and_gives_back_its_room(clock: FakeClock) -> None:
    limiter = RateLimiter({"p": RateLimit(tpm=1000)})
    buckets = limiter.buckets_for("p", "m")
    limiter.acquire(buckets, 600, lambda: None, {})
    with pytest.raises(RateLimitError):
        limiter.acquire(buckets, 700, lambda: 30.0, {})  # the big one cannot start in 30 s
    assert limiter._line == deque()
    # It no longer holds anyone up: a small call fits now.
    limiter.acquire(buckets, 300, lambda: 1.0, {})
    assert clock.slept == []


def test_a_call_larger_than_the_whole_limit_waits_for_an_empty_window(clock: FakeClock) -> None:
    limiter = RateLimiter({"p": RateLimit(tpm=100)})
    buckets = limiter.buckets_for("p", "m")
    limiter.acquire(buckets, 50, lambda: None, {})
    limiter.acquire(buckets, 5000, lambda: None, {})
    assert clock.slept == [60.0]


def test_estimate_counts_prompt_characters_and_max_tokens() -> None:
    from fmclient._validation import build_request

    request = build_request("y" * 41, model="m", provider_options={}, system="s" * 3, max_tokens=7)
    assert estimate_tokens(request) == 44 // 4 + 1 + 7


# -- deadline ----------------------------------------------------------------------------------------
def test_a_call_that_cannot_start_before_its_deadline_is_refused_without_sending(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    FakeOpenAI(fake_server)
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}}, rate_limits={"openai": {"rpm": 1}}
    )
    assert client.complete("first", model="openai/gpt-4o").text == "ok"
    with pytest.raises(RateLimitError, match="nothing was sent") as caught:
        client.complete("second", model="openai/gpt-4o", timeout=30)
    assert caught.value.retryable is False
    assert len(fake_server.requests) == 1  # the refused call sent nothing
    assert clock.slept == []  # and it did not wait for a slot it could never use


async def test_waiting_counts_inside_the_deadline(fake_server: FakeServer, clock: FakeClock) -> None:
    fake = FakeOpenAI(fake_server)
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}}, rate_limits={"openai": {"rpm": 1}}
    )
    await client.acomplete("first", model="openai/gpt-4o")
    # The next slot opens in 60 s; a 90 s deadline lets the call wait for it and then go.
    answer = await client.acomplete("second", model="openai/gpt-4o", timeout=90)
    assert answer.text == "ok"
    assert clock.slept == [60.0]
    assert [b["messages"][0]["content"] for b in fake.bodies()] == ["first", "second"]
    await client.aclose()


# -- feedback from the provider -------------------------------------------------------------------------
def test_a_429_pauses_the_limits_for_retry_after(
    fake_server: FakeServer, clock: FakeClock, retry_sleeps: list[float]
) -> None:
    FakeOpenAI(fake_server)
    fake_server.queue(error_reply(429, "Rate limit reached", headers={"retry-after": "7"}))
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}},
        rate_limits={"openai": {"rpm": 100}},
        max_retries=1,
    )
    assert client.complete("hi", model="openai/gpt-4o").text == "ok"
    assert len(fake_server.requests) == 2
    # The retry layer waited its 7 s (recorded, not slept) and the limiter held the retry too:
    # nothing else on this provider may go before the pause ends.
    assert retry_sleeps == [7.0]
    assert clock.slept == [7.0]


def test_openai_headers_saying_requests_are_used_up_pause_until_the_reset(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s", "x-request-id": "r1"}
    fake_server.queue(Reply(body=completion_body(Answer("first")), headers=headers))
    FakeOpenAI(fake_server)
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}},
        rate_limits={"openai": {"rpm": 500}},
    )
    first = client.complete("a", model="openai/gpt-4o")
    assert first.rate_limit_headers == {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    assert client.complete("b", model="openai/gpt-4o").text == "ok"
    assert clock.slept == [360.0]
    assert len(fake_server.requests) == 2


async def test_anthropic_rate_limit_headers_reach_the_completion_and_the_limiter(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    from datetime import datetime, timedelta, timezone

    reset = (datetime.now(timezone.utc) + timedelta(seconds=600)).isoformat().replace("+00:00", "Z")
    reply = fake_anthropic.message_reply("hello")
    reply.headers.update({"anthropic-ratelimit-tokens-remaining": "3", "anthropic-ratelimit-tokens-reset": reset})
    fake_server.queue(reply, fake_anthropic.message_reply("again"))
    client = Client(
        providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}},
        rate_limits={"anthropic": {"tpm": 100000}},
    )
    first = await client.acomplete("a", model="anthropic/claude-sonnet-4-5", max_tokens=50)
    assert first.rate_limit_headers is not None
    assert first.rate_limit_headers["anthropic-ratelimit-tokens-remaining"] == "3"
    second = await client.acomplete("b", model="anthropic/claude-sonnet-4-5", max_tokens=50)
    assert second.text == "again"
    await client.aclose()
    assert len(clock.slept) == 1 and 500.0 < clock.slept[0] <= 600.0


def test_a_streams_rate_limit_headers_reach_its_first_chunk_and_the_limiter(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    """The headers arrive with the response that opens the stream: the next call waits at once."""
    from tests.fakes.openai import chunk_events

    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    fake_server.queue(Reply(chunks=chunk_events(Answer("first"), include_usage=True), headers=headers))
    FakeOpenAI(fake_server)
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}},
        rate_limits={"openai": {"rpm": 500}},
    )
    chunks = list(client.stream("a", model="openai/gpt-4o"))
    assert chunks[0].rate_limit_headers == headers
    assert all(chunk.rate_limit_headers is None for chunk in chunks[1:])
    assert client.complete("b", model="openai/gpt-4o").text == "ok"
    assert clock.slept == [360.0]
    assert len(fake_server.requests) == 2


async def test_an_anthropic_streams_headers_pause_the_limits(fake_server: FakeServer, clock: FakeClock) -> None:
    from datetime import datetime, timedelta, timezone

    reset = (datetime.now(timezone.utc) + timedelta(seconds=600)).isoformat().replace("+00:00", "Z")
    reply = fake_anthropic.stream_reply(fake_anthropic.stream_events("hello"))
    reply.headers.update({"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": reset})
    fake_server.queue(reply, fake_anthropic.message_reply("again"))
    client = Client(
        providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}},
        rate_limits={"anthropic": {"rpm": 1000}},
    )
    stream = client.astream("a", model="anthropic/claude-sonnet-4-5", max_tokens=50)
    assert "".join([chunk.text async for chunk in stream]) == "hello"
    second = await client.acomplete("b", model="anthropic/claude-sonnet-4-5", max_tokens=50)
    assert second.text == "again"
    await client.aclose()
    assert len(clock.slept) == 1 and 500.0 < clock.slept[0] <= 600.0


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_streams_token_charge_is_corrected_from_its_usage_when_it_ends(
    fake_server: FakeServer, clock: FakeClock, mode: str
) -> None:
    """Estimated at max_tokens (1,000) plus the prompt; the stream used 17 tokens, so a second
    call of the same size fits in a 1,100-token minute without waiting once the first has ended."""
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("first", prompt_tokens=12, completion_tokens=5), Answer("second"))
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}},
        rate_limits={"openai": {"tpm": 1100}},
    )
    if mode == "sync":
        stream = client.stream("a", model="openai/gpt-4o", max_tokens=1000)
        assert "".join(chunk.text for chunk in stream) == "first"
    else:
        astream = client.astream("a", model="openai/gpt-4o", max_tokens=1000)
        assert "".join([chunk.text async for chunk in astream]) == "first"
    assert client._engine.limiter._buckets["openai"].tokens.used == 17  # type: ignore[union-attr]
    assert (await client.acomplete("b", model="openai/gpt-4o", max_tokens=1000)).text == "second"
    assert clock.slept == []
    await client.aclose()


def test_a_stream_cut_short_keeps_its_estimated_charge(fake_server: FakeServer, clock: FakeClock) -> None:
    """No usage arrived: the limiter cannot know what the call cost, so the estimate stands."""
    from tests.fakes.openai import chunk_events

    events = chunk_events(Answer("a long answer"), include_usage=True)
    fake_server.queue(Reply(chunks=events, cut_after=2))
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}},
        rate_limits={"openai": {"tpm": 5000}},
        max_retries=0,
    )
    with pytest.raises(FMClientError):
        list(client.stream("a", model="openai/gpt-4o", max_tokens=1000))
    used = client._engine.limiter._buckets["openai"].tokens.used  # type: ignore[union-attr]
    assert used == estimate_tokens(build_request("a", model="gpt-4o", provider_options={}, max_tokens=1000))


def test_header_parsing() -> None:
    assert _duration("6m0s") == 360.0
    assert _duration("20ms") == pytest.approx(0.02)
    assert _duration("1h2m3.5s") == pytest.approx(3723.5)
    assert _duration("bogus") is None
    assert _pause_from_headers({"x-ratelimit-remaining-tokens": "500", "x-ratelimit-reset-tokens": "2s"}, 400) == 0
    assert _pause_from_headers({"x-ratelimit-remaining-tokens": "300", "x-ratelimit-reset-tokens": "2s"}, 400) == 2.0
    later = "2999-01-01T00:00:00Z"
    assert (
        _pause_from_headers(
            {"anthropic-ratelimit-output-tokens-remaining": "0", "anthropic-ratelimit-output-tokens-reset": later}, 1
        )
        > 0
    )
    assert (
        _pause_from_headers(
            {"anthropic-ratelimit-input-tokens-remaining": "9", "anthropic-ratelimit-input-tokens-reset": later}, 50
        )
        == 0
    )


def test_no_limits_configured_means_no_limiter_on_the_route(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    client = Client(providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}})
    client.complete("hi", model="openai/gpt-4o")
    assert all(not route.buckets for route in client._engine._routes.values())


# -- configuration ---------------------------------------------------------------------------------------
def test_rate_limits_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "fmclient.toml"
    path.write_text('[rate_limits."openai"]\nrpm = 500\ntpm = 200000\n\n[rate_limits."openai/gpt-4o"]\nrpm = 100\n')
    settings = load_settings(env={}, config_path=str(path))
    assert settings.rate_limits == {"openai": RateLimit(500, 200000), "openai/gpt-4o": RateLimit(100, None)}
    assert settings.sources["rate_limits.openai/gpt-4o"].startswith("config file")
    client = Client(config_path=str(path), rate_limits={"openai": {"rpm": 10}})
    assert client.settings.rate_limits["openai"] == RateLimit(10, None)  # the argument wins
    assert len(client._engine.limiter.buckets_for("openai", "gpt-4o")) == 2


@pytest.mark.parametrize(
    "table",
    [
        {"openai": {"rpm": 0}},
        {"openai": {"rpm": "fast"}},
        {"openai": {"rqm": 5}},
        {"openai": 5},
        {"openai": {"tpm": True}},
    ],
)
def test_bad_rate_limits_are_refused_when_the_client_is_built(table: Any) -> None:
    with pytest.raises(ConfigurationError, match="rate_limits"):
        Client(rate_limits=table)


async def test_abatch_runs_under_the_rate_limits(
    fake_server: FakeServer, clock: FakeClock, admissions: list[float], tmp_path: Path
) -> None:
    FakeOpenAI(fake_server)
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}}, rate_limits={"openai": {"rpm": 5}}
    )
    result = await client.abatch(
        [f"p{i}" for i in range(20)], model="openai/gpt-4o", concurrency=10, output=tmp_path / "o.jsonl"
    )
    await client.aclose()
    assert result.succeeded == 20
    assert len(fake_server.requests) == 20
    assert most_in_any_window(admissions) == 5
    assert clock.now - 1000.0 >= 180.0  # four windows of five


def test_fmclient_config_shows_rate_limits_and_where_they_came_from(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = tmp_path / "fm.toml"
    config.write_text('[rate_limits."openai/gpt-4o"]\nrpm = 100\ntpm = 30000\n')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "fmclient.cli", "--config", str(config), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert f'[rate_limits."openai/gpt-4o"]    # config file {config}\nrpm = 100\ntpm = 30000\n' in out.stdout


async def test_async_streams_and_embeddings_are_limited_too(fake_server: FakeServer, clock: FakeClock) -> None:
    FakeOpenAI(fake_server)
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}}, rate_limits={"openai": {"rpm": 1}}
    )
    async with client.astream("first", model="openai/gpt-4o") as stream:
        assert "".join([chunk.text async for chunk in stream]) == "ok"
    with pytest.raises(RateLimitError, match="nothing was sent"):
        await client.acomplete("second", model="openai/gpt-4o", timeout=59)
    with pytest.raises(RateLimitError, match="nothing was sent"):
        await client.aembed(["text"], model="openai/text-embedding-3-small", timeout=59)
    with pytest.raises(RateLimitError, match="nothing was sent"):
        client.stream("third", model="openai/gpt-4o", timeout=59).completion  # noqa: B018
    assert len(fake_server.requests) == 1
    assert clock.slept == []
    # With time for the next slot, the embedding waits for it and goes.
    vectors = await client.aembed(["text"], model="openai/text-embedding-3-small", timeout=61)
    assert len(vectors.vectors) == 1
    assert clock.slept == [60.0]
    assert len(fake_server.requests) == 2
    await client.aclose()


async def test_image_generation_is_limited_too(fake_server: FakeServer, clock: FakeClock) -> None:
    # generate_image shares complete's fallback walk, so it waits for (or is refused by) the same
    # limits: one request per minute here, whichever kind of call takes it.
    FakeOpenAI(fake_server)
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}}, rate_limits={"openai": {"rpm": 1}}
    )
    await client.acomplete("first", model="openai/gpt-4o")
    with pytest.raises(RateLimitError, match="nothing was sent"):
        client.generate_image("a red bicycle", model="openai/gpt-image-2.6-sunburst", timeout=59)
    with pytest.raises(RateLimitError, match="nothing was sent"):
        await client.agenerate_image("a red bicycle", model="openai/gpt-image-2.6-sunburst", timeout=59)
    assert len(fake_server.requests) == 1
    images = await client.agenerate_image("a red bicycle", model="openai/gpt-image-2.6-sunburst", timeout=61)
    assert len(images.images) == 1 and images.images[0].data.startswith(b"\x89PNG")
    assert clock.slept == [60.0]
    assert [request.path for request in fake_server.requests] == ["/v1/chat/completions", "/v1/images/generations"]
    await client.aclose()
