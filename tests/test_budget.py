"""Client(max_cost=...) / [budget]: spend counted from actual usage; once it reaches max_cost the
next call raises BudgetExceededError before any request leaves. Requests are counted at the fake
server, so "no request" means none reached the wire."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fmclient import BudgetExceededError, Client, ConfigurationError, FMClientError
from fmclient import pricing as pricing_module
from fmclient.errors import ServiceUnavailableError
from fmclient.testing import MockProvider
from fmclient.types import Usage
from tests.fakes.openai import Answer, FakeOpenAI, error_reply
from tests.fakes.server import FakeServer, RecordedRequest, Reply

MILLION = Decimal(1_000_000)


def call_cost(prompt_tokens: int = 12, completion_tokens: int = 5) -> Decimal:
    """What one gpt-4o call of these counts costs, from the price table itself."""
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model("gpt-4o", None, "openai", None)
    p = info.get_prices(datetime.now(tz=timezone.utc))
    return (prompt_tokens * p.input_mtok + completion_tokens * p.output_mtok) / MILLION  # type: ignore[no-any-return]


def reserved_for(prompt: str, max_tokens: int) -> Decimal:
    """What a gpt-4o call reserves before it is sent: fmclient's offline estimate of the prompt's
    tokens plus ``max_tokens``, priced (the fake then answers 12 prompt tokens: more than that)."""
    from fmclient import _validation, tokens

    request = _validation.build_request(prompt, model="gpt-4o", provider_options={}, max_tokens=max_tokens)
    return call_cost(tokens.estimate(request, "test").input_tokens, max_tokens)


@pytest.fixture
def fake(fake_server: FakeServer) -> FakeOpenAI:
    return FakeOpenAI(fake_server)


def make_client(server: FakeServer, max_cost: Any, **kwargs: Any) -> Client:
    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')  # the fake's host: OpenAI's prices
    return Client(
        providers={"openai": {"base_url": server.url + "/v1", "api_key": "sk-test"}},
        max_cost=max_cost,
        max_retries=0,
        **kwargs,
    )


def chat_requests(server: FakeServer) -> int:
    return sum(r.path.endswith("/chat/completions") for r in server.requests)


# -- the exact boundary ---------------------------------------------------------------------------
def test_spend_equal_to_the_budget_refuses_the_next_call(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    cost = call_cost(1000, 100)
    fake.answer(*[Answer("ok", prompt_tokens=1000, completion_tokens=100)] * 3)
    client = make_client(fake_server, max_cost=2 * cost)
    assert client.spent == 0 and client.max_cost == 2 * cost
    client.complete("one", model="openai/gpt-4o", max_tokens=100)
    assert client.spent == cost
    client.complete("two", model="openai/gpt-4o", max_tokens=100)
    assert client.spent == 2 * cost == client.max_cost  # exact: Decimal, no float drift
    with pytest.raises(BudgetExceededError) as caught:
        client.complete("three", model="openai/gpt-4o", max_tokens=100)
    assert chat_requests(fake_server) == 2  # the third call sent nothing
    error = caught.value
    assert (error.spent, error.max_cost, error.retryable) == (2 * cost, 2 * cost, False)
    assert (error.provider, error.model) == ("openai", "gpt-4o")
    assert "no request was sent" in str(error)
    # Every kind of call is refused alike, before sending.
    with pytest.raises(BudgetExceededError):
        client.stream("four", model="openai/gpt-4o", max_tokens=100)
    with pytest.raises(BudgetExceededError):
        client.embed("five", model="openai/text-embedding-3-small")
    assert len(fake_server.requests) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_spend_is_counted_with_telemetry_on(
    fake: FakeOpenAI, fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """OpenTelemetryHook reads each attempt's cost for its spans; that early read (before the
    answer is priced) must not leave the budget counting nothing."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from fmclient.telemetry import OpenTelemetryHook

    cost = call_cost(1000, 100)
    fake.answer(*[Answer("ok", prompt_tokens=1000, completion_tokens=100)] * 2)
    hook = OpenTelemetryHook(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    client = make_client(fake_server, max_cost=cost, hooks=[hook])
    if stream:
        assert "".join(chunk.text for chunk in client.stream("one", model="openai/gpt-4o", max_tokens=100)) == "ok"
    else:
        assert client.complete("one", model="openai/gpt-4o", max_tokens=100).cost is not None
    assert client.spent == cost
    with pytest.raises(BudgetExceededError):
        client.complete("two", model="openai/gpt-4o", max_tokens=100)
    assert chat_requests(fake_server) == 1


def test_a_call_is_sent_while_its_estimate_fits_beside_the_spend(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    cost, each = call_cost(1000, 100), reserved_for("three", 100)
    fake.answer(*[Answer("ok", prompt_tokens=1000, completion_tokens=100)] * 4)
    client = make_client(fake_server, max_cost=2 * cost + each)
    client.complete("one", model="openai/gpt-4o", max_tokens=100)
    client.complete("two", model="openai/gpt-4o", max_tokens=100)
    client.complete("three", model="openai/gpt-4o", max_tokens=100)  # its estimate fits exactly
    # It cost more than its estimate (1000 prompt tokens, estimated at a few): that is the most
    # a spend can end above the budget.
    assert client.spent == 3 * cost > client.max_cost
    with pytest.raises(BudgetExceededError):
        client.complete("four", model="openai/gpt-4o", max_tokens=100)
    assert chat_requests(fake_server) == 3


def test_a_call_whose_estimate_does_not_fit_is_refused_before_the_budget_is_spent(
    fake: FakeOpenAI, fake_server: FakeServer
) -> None:
    cost, each = call_cost(1000, 100), reserved_for("two", 100)
    fake.answer(Answer("ok", prompt_tokens=1000, completion_tokens=100))
    client = make_client(fake_server, max_cost=cost + each - Decimal("0.000001"))
    client.complete("one", model="openai/gpt-4o", max_tokens=100)
    with pytest.raises(BudgetExceededError, match="may cost up to") as caught:
        client.complete("two", model="openai/gpt-4o", max_tokens=100)  # could pass the budget
    assert caught.value.spent == cost < client.max_cost
    # A smaller max_tokens reserves less, and fits.
    client.complete("two", model="openai/gpt-4o", max_tokens=50)
    assert chat_requests(fake_server) == 2
    assert client._engine.budget is not None and client._engine.budget.reserved == 0


def test_without_max_tokens_a_call_reserves_the_documented_default(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    from fmclient import budget

    each = reserved_for("hi", budget.UNKNOWN_MAX_TOKENS)
    client = make_client(fake_server, max_cost=each - Decimal("0.000001"))
    with pytest.raises(BudgetExceededError, match="may cost up to"):
        client.complete("hi", model="openai/gpt-4o")
    client = make_client(fake_server, max_cost=each)
    client.complete("hi", model="openai/gpt-4o")
    assert chat_requests(fake_server) == 1


async def test_async_calls_and_streams_count_and_are_refused(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    cost = call_cost(1000, 100)
    fake.answer(*[Answer("ok then", prompt_tokens=1000, completion_tokens=100)] * 2)
    client = make_client(fake_server, max_cost=2 * cost)
    await client.acomplete("one", model="openai/gpt-4o", max_tokens=100)
    async with client.astream("two", model="openai/gpt-4o", max_tokens=100) as stream:
        async for _ in stream:
            pass
    assert client.spent == 2 * cost  # the stream counted when it finished
    with pytest.raises(BudgetExceededError):
        client.astream("three", model="openai/gpt-4o", max_tokens=100)
    with pytest.raises(BudgetExceededError):
        await client.aembed("four", model="openai/text-embedding-3-small")
    assert chat_requests(fake_server) == 2


def test_embeddings_count(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    client = make_client(fake_server, max_cost="1")
    result = client.embed(["one two three"], model="openai/text-embedding-3-small")
    assert result.cost is not None and client.spent == result.cost.total > 0


def test_zero_budget_sends_nothing(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    client = make_client(fake_server, max_cost=0)
    with pytest.raises(BudgetExceededError):
        client.complete("hi", model="openai/gpt-4o")
    assert fake_server.requests == []


def test_budget_is_no_fallback_trigger(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    fake.answer(Answer("ok", prompt_tokens=1000, completion_tokens=100))
    client = make_client(
        fake_server,
        max_cost=call_cost(1000, 100),
        fallbacks={"openai/gpt-4o": ["openai/gpt-4o-mini"]},
    )
    client.complete("one", model="openai/gpt-4o", max_tokens=100)
    with pytest.raises(BudgetExceededError) as caught:
        client.complete("two", model="openai/gpt-4o", max_tokens=100)
    assert chat_requests(fake_server) == 1  # neither the model nor its fallback was asked
    assert not client._engine.may_fall_back(caught.value)


def test_a_fallback_is_checked_again(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    # The primary fails while another call spends the rest of the budget: the fallback target
    # is a new request, so it is refused.
    cost = call_cost(1000, 100)
    client = make_client(fake_server, max_cost=cost, fallbacks={"openai/gpt-4o": ["openai/gpt-4o-mini"]})
    inner = fake_server.handler
    assert inner is not None
    spender = threading.Event()

    def handler(request: RecordedRequest) -> Reply:
        if request.json()["model"] == "gpt-4o" and not spender.is_set():
            spender.set()
            # Another call of the same client finishes meanwhile and spends the budget.
            other = Answer("ok", prompt_tokens=1000, completion_tokens=100)
            fake.answers.appendleft(other)
            thread = threading.Thread(
                target=client.complete, args=("other",), kwargs={"model": "openai/gpt-4o", "max_tokens": 100}
            )
            thread.start()
            thread.join(10)
            return error_reply(503, "overloaded", type="server_error")
        return inner(request)

    fake_server.handler = handler
    with pytest.raises(BudgetExceededError) as caught:
        client.complete("mine", model="openai/gpt-4o", max_tokens=100)
    models = [r.json()["model"] for r in fake_server.requests]
    assert models == ["gpt-4o", "gpt-4o"]  # mine, then the other call's; the fallback was never asked
    assert client.spent == cost
    assert [type(a.error) for a in caught.value.attempts] == [ServiceUnavailableError]


# -- unknown costs -------------------------------------------------------------------------------
def test_unknown_cost_counts_nothing_and_warns_once(
    fake: FakeOpenAI, fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer(Answer("a", model="gpt-from-the-future-9"), Answer("b", model="gpt-from-the-future-9"))
    client = make_client(fake_server, max_cost="0.01")
    with caplog.at_level(logging.WARNING, logger="fmclient"):
        first = client.complete("one", model="openai/gpt-from-the-future-9")
        client.complete("two", model="openai/gpt-from-the-future-9")
    assert first.cost is None and client.spent == 0
    warnings = [r for r in caplog.records if "budget" in r.getMessage()]
    assert len(warnings) == 1
    assert "openai/gpt-from-the-future-9" in warnings[0].getMessage() and "gpt-from-the-future-9" in str(
        first.cost_reason
    )


# -- configuration -------------------------------------------------------------------------------
def test_budget_from_the_config_file() -> None:
    Path("fmclient.toml").write_text("[budget]\nmax_cost = 0.25\n")
    client = Client()
    assert client.max_cost == Decimal("0.25") and client.spent == 0  # a float's text, not its binary value
    assert client.settings.sources["budget"].startswith("config file")
    # The argument wins over the file.
    assert Client(max_cost="3").max_cost == Decimal(3)


def test_without_a_budget_spend_is_not_tracked() -> None:
    with MockProvider() as mock:
        mock.add_reply("ok", usage=Usage(10, 10))
        client = Client()
        client.complete("hi", model="openai/gpt-4o")
    assert client.spent is None and client.max_cost is None


@pytest.mark.parametrize(
    ("value", "message"),
    [(-1, "zero or more"), ("lots", "number of USD"), (True, "number of USD"), ([1], "number of USD")],
)
def test_bad_max_cost_is_refused(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Client(max_cost=value)


def test_bad_budget_table_is_refused() -> None:
    Path("fmclient.toml").write_text("[budget]\nmax_spend = 1\n")
    with pytest.raises(ConfigurationError, match="unknown budget setting 'max_spend'"):
        Client()
    Path("fmclient.toml").write_text('budget = "ten dollars"\n')
    with pytest.raises(ConfigurationError, match=r"\[budget\] must be a table"):
        Client()


def test_a_budget_without_prices_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every cost would be unknown, so the budget would never stop anything: refuse it up front.
    monkeypatch.setattr(pricing_module, "_loaded", None)
    monkeypatch.setitem(sys.modules, "genai_prices", None)
    with pytest.raises(ConfigurationError, match=r'pip install "fmclient\[cost\]"'):
        Client(max_cost=1)


def test_budget_error_is_in_the_hierarchy() -> None:
    assert issubclass(BudgetExceededError, FMClientError)
    assert BudgetExceededError("x").retryable is False


# -- concurrency ---------------------------------------------------------------------------------
THREADS = 6


def hold_first_requests(server: FakeServer, count: int, while_held: Callable[[], None] | None = None) -> list[int]:
    """The first ``count`` requests wait for each other inside the server, so that many calls are
    in flight at once (``while_held`` runs then); any later request is answered at once."""
    inner = server.handler
    assert inner is not None
    barrier = threading.Barrier(count)
    seen = [0]
    lock = threading.Lock()

    def handler(request: RecordedRequest) -> Reply:
        with lock:
            seen[0] += 1
            held = seen[0] <= count
            if seen[0] == count and while_held is not None:  # the last held one: all are in flight
                while_held()
        if held:
            barrier.wait(timeout=20)
        return inner(request)

    server.handler = handler
    return seen


IN_FLIGHT = 3  # the calls whose estimates the budget holds at once


def test_threads_in_flight_never_promise_more_than_the_budget(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    cost, each = call_cost(), reserved_for("hi", 5)
    client = make_client(fake_server, max_cost=IN_FLIGHT * each)
    budget = client._engine.budget
    assert budget is not None
    reserved: list[Decimal] = []
    seen = hold_first_requests(fake_server, IN_FLIGHT, lambda: reserved.append(budget.reserved))
    outcomes: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            client.complete("hi", model="openai/gpt-4o", max_tokens=5)
        except BudgetExceededError:
            outcome = "refused"
        else:
            outcome = "answered"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Three calls reserved the whole budget and were in flight together (the server held each
    # until all three had arrived): the other three were refused meanwhile, sending nothing.
    assert sorted(outcomes) == ["answered"] * IN_FLIGHT + ["refused"] * (THREADS - IN_FLIGHT)
    assert reserved == [IN_FLIGHT * each]
    assert seen[0] == chat_requests(fake_server) == IN_FLIGHT
    # Each settled to its real cost, reservations gone: above the budget only by what the calls
    # cost beyond their estimates (the fake's 12 prompt tokens against the estimate of "hi").
    assert client.spent == IN_FLIGHT * cost and budget.reserved == 0
    assert client.spent - client.max_cost == IN_FLIGHT * (cost - each)  # type: ignore[operator]


async def test_asyncio_tasks_in_flight_never_promise_more_than_the_budget(
    fake: FakeOpenAI, fake_server: FakeServer
) -> None:
    cost, each = call_cost(), reserved_for("hi", 5)
    client = make_client(fake_server, max_cost=IN_FLIGHT * each)
    budget = client._engine.budget
    assert budget is not None
    reserved: list[Decimal] = []
    seen = hold_first_requests(fake_server, IN_FLIGHT, lambda: reserved.append(budget.reserved))

    async def call() -> str:
        try:
            await client.acomplete("hi", model="openai/gpt-4o", max_tokens=5)
        except BudgetExceededError:
            return "refused"
        return "answered"

    outcomes = await asyncio.wait_for(asyncio.gather(*(call() for _ in range(THREADS))), 30)
    assert sorted(outcomes) == ["answered"] * IN_FLIGHT + ["refused"] * (THREADS - IN_FLIGHT)
    assert reserved == [IN_FLIGHT * each]
    assert client.spent == IN_FLIGHT * cost and budget.reserved == 0
    assert seen[0] == chat_requests(fake_server) == IN_FLIGHT
    await client.aclose()


async def test_asyncio_tasks_lose_no_spend(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    cost, each = call_cost(), reserved_for("hi", 5)
    budget = 10 * cost
    client = make_client(fake_server, max_cost=budget)

    async def worker() -> int:
        answered = 0
        while True:
            try:
                await client.acomplete("hi", model="openai/gpt-4o", max_tokens=5)
            except BudgetExceededError:
                return answered
            answered += 1

    answered = sum(await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(5))), 60))
    assert chat_requests(fake_server) == answered
    assert client.spent == answered * cost
    # Refused only once no further estimate fitted; above the budget by no more than the 5 calls
    # that could be in flight cost beyond their estimates.
    assert client.spent + each > budget
    assert client.spent <= budget + 5 * (cost - each)
    await client.aclose()


def test_many_threads_lose_no_spend(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    cost, each = call_cost(), reserved_for("hi", 5)
    budget = 20 * cost
    client = make_client(fake_server, max_cost=budget)
    answered = [0]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                client.complete("hi", model="openai/gpt-4o", max_tokens=5)
            except BudgetExceededError:
                return
            with lock:
                answered[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Every answered call counted exactly once (no lost update between threads); refused once
    # no estimate fitted, and above the budget by no more than 8 calls' cost beyond estimate.
    assert chat_requests(fake_server) == answered[0]
    assert client.spent == answered[0] * cost
    assert client.spent + each > budget
    assert client.spent <= budget + 8 * (cost - each)
    before = len(fake_server.requests)
    with pytest.raises(BudgetExceededError):
        client.complete("hi", model="openai/gpt-4o", max_tokens=5)
    assert len(fake_server.requests) == before


def test_an_error_is_not_charged(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    fake_server.queue(error_reply(400, "bad request"))
    client = make_client(fake_server, max_cost="1")
    with pytest.raises(FMClientError):
        client.complete("hi", model="openai/gpt-4o")
    assert client.spent == 0
    assert client._engine.budget is not None and client._engine.budget.reserved == 0  # released


def reserved(client: Client) -> Decimal:
    assert client._engine.budget is not None
    return client._engine.budget.reserved


def test_a_failed_target_releases_its_reservation_and_the_fallback_settles_its_own(
    fake: FakeOpenAI, fake_server: FakeServer
) -> None:
    fake_server.queue(error_reply(503, "overloaded", type="server_error"))
    client = make_client(fake_server, max_cost="1", fallbacks={"openai/gpt-4o": ["openai/gpt-4o-mini"]})
    answer = client.complete("hi", model="openai/gpt-4o", max_tokens=5)
    assert answer.cost is not None and client.spent == answer.cost.total and reserved(client) == 0


def test_a_stream_closed_early_and_one_never_started_hold_nothing(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    fake.answer(Answer("one two three four", completion_tokens=4))
    client = make_client(fake_server, max_cost="1")
    unstarted = client.stream("hi", model="openai/gpt-4o", max_tokens=5)  # noqa: F841 (never iterated)
    assert reserved(client) == 0  # a stream reserves when iterated, not when made
    with client.stream("hi", model="openai/gpt-4o", max_tokens=5) as stream:
        next(iter(stream))
        assert reserved(client) == reserved_for("hi", 5)  # held while it runs
    assert reserved(client) == 0 and client.spent == 0  # closed early: released, nothing counted


def test_a_hook_that_refuses_the_request_releases_the_reservation(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    from fmclient.hooks import Hook

    class Refuse(Hook):
        def before_request(self, call: Any, request: Any) -> Any:
            raise FMClientError("not today")

    client = make_client(fake_server, max_cost="1", hooks=[Refuse()])
    with pytest.raises(FMClientError, match="not today"):
        client.complete("hi", model="openai/gpt-4o", max_tokens=5)
    assert reserved(client) == 0 and fake_server.requests == []


async def test_a_cancelled_call_releases_its_reservation(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    arrived, leave = threading.Event(), threading.Event()
    inner = fake_server.handler
    assert inner is not None

    def handler(request: RecordedRequest) -> Reply:
        arrived.set()
        leave.wait(10)
        return inner(request)

    fake_server.handler = handler
    client = make_client(fake_server, max_cost="1")
    task = asyncio.create_task(client.acomplete("hi", model="openai/gpt-4o", max_tokens=5))
    await asyncio.to_thread(arrived.wait, 10)
    assert reserved(client) == reserved_for("hi", 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    leave.set()
    assert reserved(client) == 0 and client.spent == 0
    await client.aclose()


def test_an_infinite_budget_tracks_spend_without_a_limit() -> None:
    with MockProvider() as mock:
        mock.add_reply("ok", usage=Usage(1000, 100))
        mock.add_reply("ok", usage=Usage(1000, 100))
        client = Client(max_cost=float("inf"))
        client.complete("one", model="openai/gpt-4o", max_tokens=100)
        client.complete("two", model="openai/gpt-4o", max_tokens=100)
    assert client.spent == 2 * call_cost(1000, 100)
