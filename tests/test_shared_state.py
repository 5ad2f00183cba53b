"""State shared by many processes over Redis (fmclient.shared): rate limits, budget, circuit
breaker, and what happens when Redis goes away. A real ``redis-server`` on 127.0.0.1 (the cache
tests' fixture) and the loopback OpenAI fake; the "many processes" are real subprocesses."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fmclient import BudgetExceededError, Client, FMClientError, RateLimitError
from fmclient.circuit import CircuitOpenError
from fmclient.errors import ConfigurationError, SharedStateUnavailableError
from tests.fakes.openai import FakeOpenAI, error_reply
from tests.fakes.server import FakeServer, RecordedRequest, Reply
from tests.test_budget import reserved_for
from tests.test_response_cache import RedisServer

KEY = "sk-shared-test-key-0000"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def arrivals(fake_server: FakeServer) -> list[float]:
    """The wall-clock time each chat request reached the fake provider."""
    fake = FakeOpenAI(fake_server)
    times: list[float] = []
    lock = threading.Lock()

    def handle(request: RecordedRequest) -> Reply:
        if request.path.endswith("/chat/completions"):
            with lock:
                times.append(time.time())
        return fake._handle(request)

    fake_server.handler = handle
    return times


def provider(server: FakeServer) -> dict[str, Any]:
    return {"openai": {"base_url": server.url + "/v1", "api_key": KEY}}


def run_workers(code: str, count: int, **values: Any) -> list[Any]:
    """Run ``code`` in ``count`` processes at once; each prints one JSON line, returned in order."""
    script = "import json, sys, threading, time\nARGS = json.loads(sys.argv[1])\n" + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": SRC}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, json.dumps({**values, "index": i})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i in range(count)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, stamp in enumerate(times):
        while stamp - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


# -- rate limits -----------------------------------------------------------------------------------
LIMITED_WORKER = """
from concurrent.futures import ThreadPoolExecutor
import fmclient
from fmclient import Client, limits
limits.WINDOW = ARGS["window"]  # a short window keeps the test quick
client = Client(
    providers=ARGS["providers"],
    # A generous Redis timeout: 8 processes start at once on a small machine (a timeout would
    # fall back to per-process limits, which is not what this test is about).
    shared={"url": ARGS["redis"], "namespace": ARGS["namespace"], "timeout": 5, "on_unavailable": "refuse"},
    rate_limits={"openai": {"rpm": ARGS["limit"]}}, max_retries=0, timeout=60,
)
# Warm up first (the SDK's import and connection; it takes a slot, only chats are counted): a
# request the limiter admitted must not sit in a slow first import while the window moves on.
client.embed(["warm"], model="openai/text-embedding-3-small")
import redis
store = redis.Redis.from_url(ARGS["redis"])
store.incr("test:ready")
while int(store.get("test:ready")) < ARGS["processes"]:
    time.sleep(0.01)
def one(_):
    return client.complete("hi", model="openai/gpt-4o").text
with ThreadPoolExecutor(ARGS["threads"]) as pool:
    answers = list(pool.map(one, range(ARGS["threads"] * ARGS["calls"])))
print(json.dumps({"answers": len(answers), "ok": all(a == "ok" for a in answers)}))
"""


def test_eight_processes_share_one_rate_limit(
    fake_server: FakeServer, arrivals: list[float], redis_server: RedisServer
) -> None:
    limit, window = 12, 0.5
    results = run_workers(
        LIMITED_WORKER,
        8,
        providers=provider(fake_server),
        redis=redis_server.url,
        namespace="rl-test",
        limit=limit,
        window=window,
        threads=16,
        calls=1,
        processes=8,
    )
    assert all(r["ok"] and r["answers"] == 16 for r in results)  # no call lost
    assert len(arrivals) == 8 * 16
    # Each process alone would let 12 through at once: 96 in the first window. Shared, the fake
    # never sees more than the limit in any window (shortened by a margin for the loopback hop:
    # admission is stamped in Redis, arrival at the fake a moment later).
    assert most_in_any_window(arrivals, window * 0.8) <= limit


def test_a_429_seen_by_one_process_pauses_the_others(fake_server: FakeServer, redis_server: RedisServer) -> None:
    fake_server.handler = None
    fake_server.queue(error_reply(429, "slow down", headers={"retry-after": "30"}))
    shared = {"url": redis_server.url, "namespace": "pause-test"}
    limits = {"openai": {"rpm": 1000}}
    one = Client(providers=provider(fake_server), shared=shared, rate_limits=limits, max_retries=0)
    two = Client(providers=provider(fake_server), shared=shared, rate_limits=limits, max_retries=0)
    with pytest.raises(RateLimitError):
        one.complete("hi", model="openai/gpt-4o")
    sent = len(fake_server.requests)
    with pytest.raises(RateLimitError, match="could not start within its deadline"):
        two.complete("hi", model="openai/gpt-4o", timeout=2)
    assert len(fake_server.requests) == sent  # the other client sent nothing


def test_without_shared_nothing_touches_redis(fake_server: FakeServer, redis_server: RedisServer) -> None:
    FakeOpenAI(fake_server)
    client = Client(providers=provider(fake_server), rate_limits={"openai": {"rpm": 5}}, max_retries=0)
    assert client.complete("hi", model="openai/gpt-4o").text == "ok"
    import redis

    assert redis.Redis.from_url(redis_server.url).keys("*") == []
    assert type(client._engine.limiter).__name__ == "RateLimiter"


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"url": "http://x"}, "redis://"),
        ({"url": "redis://x", "on_unavailable": "maybe"}, "on_unavailable"),
        ({"url": "redis://x", "timeout": 0}, "timeout"),
        ({"url": "redis://x", "colour": 1}, "unknown shared setting"),
    ],
)
def test_bad_shared_settings_fail_before_any_call(table: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Client(shared=table)


# -- budget ------------------------------------------------------------------------------------------
BUDGET_WORKER = """
from concurrent.futures import ThreadPoolExecutor
import redis
from fmclient import BudgetExceededError, Client
client = Client(
    providers=ARGS["providers"],
    shared={"url": ARGS["redis"], "namespace": ARGS["namespace"], "timeout": 5, "on_unavailable": "refuse"},
    max_cost=ARGS["max_cost"], max_retries=0, timeout=60,
)
costs = []
lock = threading.Lock()
def spend(_):
    while True:
        try:
            completion = client.complete("hi", model="openai/gpt-4o", max_tokens=5)
        except BudgetExceededError:
            return
        with lock:
            costs.append(str(completion.cost.total))
with ThreadPoolExecutor(4) as pool:
    list(pool.map(spend, range(4)))
store = redis.Redis.from_url(ARGS["redis"])
store.incr("test:done")
while int(store.get("test:done")) < ARGS["processes"]:  # every process finished spending
    time.sleep(0.02)
print(json.dumps({"costs": costs, "spent": str(client.spent)}))
"""


def test_eight_processes_spend_one_budget(
    fake_server: FakeServer, arrivals: list[float], redis_server: RedisServer, tmp_path: Path
) -> None:
    from decimal import Decimal

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')  # the fake's host: OpenAI's prices
    probe = Client(providers=provider(fake_server), max_retries=0)
    cost = probe.complete("hi", model="openai/gpt-4o").cost
    assert cost is not None
    each = cost.total
    max_cost = each * 10
    results = run_workers(
        BUDGET_WORKER.replace("client = Client(", "import os; os.chdir(ARGS['cwd'])\nclient = Client(", 1),
        8,
        providers=provider(fake_server),
        redis=redis_server.url,
        namespace="budget-test",
        max_cost=str(max_cost),
        processes=8,
        cwd=str(tmp_path),
    )
    total = sum(Decimal(c) for r in results for c in r["costs"])
    calls = sum(len(r["costs"]) for r in results)
    estimate = reserved_for("hi", 5)  # what each call reserved before it was sent
    assert total + estimate > max_cost  # the budget was spent: no further call fitted...
    # ...and every call in flight had reserved room first, so the spend passes the budget only by
    # what those calls cost beyond their estimates (the fake's 12 prompt tokens against "hi").
    in_flight = 8 * 4
    assert total <= max_cost + in_flight * (each - estimate)
    assert calls < 8 * 10  # eight separate budgets would have let 80 through
    assert {Decimal(r["spent"]) for r in results} == {total}  # client.spent is the fleet's total, exact
    import redis

    store = redis.Redis.from_url(redis_server.url)
    assert int(store.get("budget-test:budget:default")) == pico(total)  # exact, in Redis
    assert store.exists("budget-test:budget:default:held", "budget-test:budget:default:leases") == 0  # none left


def pico(amount: Any, up: bool = False) -> int:
    from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

    return int((Decimal(amount) * 10**12).to_integral_value(ROUND_CEILING if up else ROUND_HALF_EVEN))


HELD, COUNTER = "fmclient:budget:default:held", "fmclient:budget:default"


def test_a_shared_reservation_holds_the_estimate_and_a_failure_releases_it(
    fake_server: FakeServer, redis_server: RedisServer
) -> None:
    import redis

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    store = redis.Redis.from_url(redis_server.url)
    inner = FakeOpenAI(fake_server)._handle
    held_when_sent: list[list[bytes]] = []

    def handler(request: RecordedRequest) -> Reply:
        held_when_sent.append(store.hvals(HELD))
        return error_reply(503, "overloaded") if len(held_when_sent) == 1 else inner(request)

    fake_server.handler = handler
    client = Client(providers=provider(fake_server), shared=redis_server.url, max_cost=1, max_retries=0)
    with pytest.raises(FMClientError):
        client.complete("hi", model="openai/gpt-4o", max_tokens=5)
    estimate = pico(reserved_for("hi", 5), up=True)
    assert held_when_sent == [[str(estimate).encode()]]  # reserved in Redis before it was sent
    assert store.exists(HELD) == 0 and store.get(COUNTER) is None  # failed: released, nothing spent
    answer = client.complete("hi", model="openai/gpt-4o", max_tokens=5)
    assert held_when_sent[1] == [str(estimate).encode()]
    assert answer.cost is not None and int(store.get(COUNTER)) == pico(answer.cost.total)  # settled exactly
    assert store.exists(HELD) == 0


async def test_a_cancelled_call_releases_its_shared_reservation(
    fake_server: FakeServer, redis_server: RedisServer
) -> None:
    import asyncio

    import redis

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    store = redis.Redis.from_url(redis_server.url)
    arrived, leave = threading.Event(), threading.Event()
    inner = FakeOpenAI(fake_server)._handle

    def handler(request: RecordedRequest) -> Reply:
        arrived.set()
        leave.wait(10)
        return inner(request)

    fake_server.handler = handler
    client = Client(providers=provider(fake_server), shared=redis_server.url, max_cost=1, max_retries=0)
    task = asyncio.create_task(client.acomplete("hi", model="openai/gpt-4o", max_tokens=5))
    await asyncio.to_thread(arrived.wait, 10)
    assert store.hlen(HELD) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    leave.set()
    for _ in range(200):  # released without holding up the event loop: a moment later
        if not store.exists(HELD):
            break
        await asyncio.sleep(0.02)
    assert store.exists(HELD) == 0 and store.get(COUNTER) is None
    await client.aclose()


def test_rate_limits_and_budget_take_one_round_trip_before_and_one_after(
    fake_server: FakeServer, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    FakeOpenAI(fake_server)
    store = redis.Redis.from_url(redis_server.url)
    client = Client(
        providers=provider(fake_server),
        shared=redis_server.url,
        rate_limits={"openai": {"rpm": 1000, "tpm": 1_000_000}},
        max_cost=1,
        max_retries=0,
    )
    client.complete("hi", model="openai/gpt-4o", max_tokens=5)  # the scripts are loaded
    sent: list[bytes] = []
    send = redis.connection.Connection.send_packed_command

    def counted(connection: Any, command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else command)
        send(connection, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    answer = client.complete("hi", model="openai/gpt-4o", max_tokens=5)
    monkeypatch.undo()
    # One round trip before (admission and budget reservation, one script) and one after (the
    # budget's settle with the correction of the token charge, one script).
    assert len(sent) == 2 and all(b"EVALSHA" in s for s in sent)
    assert store.exists(HELD) == 0
    assert int(store.get("fmclient:rl:openai:t:used")) == 2 * answer.usage.total_tokens  # corrected
    assert answer.cost is not None and int(store.get(COUNTER)) == 2 * pico(answer.cost.total)


def test_a_budget_refusal_with_the_admission_sends_nothing_and_takes_no_slot(
    fake_server: FakeServer, redis_server: RedisServer
) -> None:
    import redis

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    FakeOpenAI(fake_server)
    store = redis.Redis.from_url(redis_server.url)
    limits = {"openai": {"rpm": 1000}}
    one = Client(providers=provider(fake_server), shared=redis_server.url, rate_limits=limits, max_cost=1)
    one.complete("hi", model="openai/gpt-4o", max_tokens=5)
    tight = Client(
        providers=provider(fake_server),
        shared=redis_server.url,
        rate_limits=limits,
        max_cost=str(reserved_for("hi", 5)),  # spent already by the first call
    )
    with pytest.raises(BudgetExceededError, match=r"budget 'default' \(shared\) spent") as caught:
        tight.complete("hi", model="openai/gpt-4o", max_tokens=5)
    assert caught.value.attempts == [] and len(fake_server.requests) == 1
    assert store.zcard("fmclient:rl:openai:r:log") == 1  # the refused call took no slot
    assert store.exists(HELD) == 0


KILLED_WORKER = """
from fmclient import Client, shared
shared.RESERVATION_GRACE = 0.0  # the reservation lives as long as the call's deadline, no longer
client = Client(providers=ARGS["providers"], shared=ARGS["redis"], max_cost=ARGS["max_cost"], max_retries=0)
client.complete("hi", model="openai/gpt-4o", max_tokens=5, timeout=ARGS["timeout"])
"""


def test_a_reservation_of_a_killed_process_expires(
    fake_server: FakeServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    import redis

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    store = redis.Redis.from_url(redis_server.url)
    arrived, leave = threading.Event(), threading.Event()
    inner = FakeOpenAI(fake_server)._handle

    def handler(request: RecordedRequest) -> Reply:
        if not arrived.is_set():  # the doomed process's request: held until it is dead
            arrived.set()
            leave.wait(20)
        return inner(request)

    fake_server.handler = handler
    estimate = reserved_for("hi", 5)
    max_cost = str(estimate * 3 / 2)  # room for one reservation, not two
    script = "import json, sys\nARGS = json.loads(sys.argv[1])\n" + textwrap.dedent(KILLED_WORKER)
    values = {"providers": provider(fake_server), "redis": redis_server.url, "max_cost": max_cost, "timeout": 3}
    doomed = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(values)], env={**os.environ, "PYTHONPATH": SRC}, cwd=tmp_path
    )
    try:
        assert arrived.wait(60)
        doomed.kill()  # in flight: it never settles nor releases
        doomed.wait(10)
    finally:
        leave.set()
    assert store.hvals(HELD) == [str(pico(estimate, up=True)).encode()]
    client = Client(providers=provider(fake_server), shared=redis_server.url, max_cost=max_cost, max_retries=0)
    with pytest.raises(BudgetExceededError, match="reserved by calls in flight"):
        client.complete("hi", model="openai/gpt-4o", max_tokens=5)  # the dead call still holds its room
    deadline = time.monotonic() + 10
    leases = "fmclient:budget:default:leases"
    while any(until > time.time() * 1000 for _, until in store.zrange(leases, 0, -1, withscores=True)):
        assert time.monotonic() < deadline
        time.sleep(0.1)  # its lease (the call's 3 s deadline) runs out
    answer = client.complete("hi", model="openai/gpt-4o", max_tokens=5)  # reaped: the room is back
    assert answer.cost is not None and int(store.get(COUNTER)) == pico(answer.cost.total)
    assert store.exists(HELD) == 0


def test_a_shared_budget_resets_by_period_and_keys_by_name(fake_server: FakeServer, redis_server: RedisServer) -> None:
    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n[budget]\nname = "team-a"\nperiod = "day"\n')
    FakeOpenAI(fake_server)
    client = Client(providers=provider(fake_server), shared=redis_server.url, max_cost=1, max_retries=0)
    client.complete("hi", model="openai/gpt-4o")
    import redis

    keys = [k.decode() for k in redis.Redis.from_url(redis_server.url).keys("*budget*")]
    assert keys == [f"fmclient:budget:team-a:{time.strftime('%Y-%m-%d', time.gmtime())}"]
    assert redis.Redis.from_url(redis_server.url).ttl(keys[0]) > 0  # a past day's counter goes away
    other = Client(providers=provider(fake_server), shared=redis_server.url, max_cost=1)
    assert other.spent == client.spent > 0


# -- circuit breaker -----------------------------------------------------------------------------------
BREAKER_WORKER = """
from fmclient import Client, FMClientError
client = Client(
    providers=ARGS["providers"], shared=ARGS["redis"], max_retries=0, timeout=30,
)
client._engine._breaker_config = (1, 30.0)
try:
    client.complete("hi", model="openai/gpt-4o")
except FMClientError as error:
    print(json.dumps({"error": type(error).__name__}))
"""


def test_a_breaker_opened_by_one_process_refuses_in_another(fake_server: FakeServer, redis_server: RedisServer) -> None:
    fake_server.handler = None
    fake_server.default = error_reply(503, "overloaded")
    Path("fmclient.toml").write_text("[circuit_breaker]\nfailure_threshold = 1\ncooldown = 30\n")
    (result,) = run_workers(BREAKER_WORKER, 1, providers=provider(fake_server), redis=redis_server.url)
    assert result["error"] == "ServiceUnavailableError"
    assert len(fake_server.requests) == 1
    here = Client(providers=provider(fake_server), shared=redis_server.url, max_retries=0)
    with pytest.raises(CircuitOpenError):
        here.complete("hi", model="openai/gpt-4o")
    assert len(fake_server.requests) == 1  # refused without sending


def test_one_half_open_trial_at_a_time_across_clients(redis_server: RedisServer) -> None:
    Path("fmclient.toml").write_text("[circuit_breaker]\nfailure_threshold = 1\ncooldown = 0.2\n")
    clients = [Client(shared=redis_server.url) for _ in range(4)]
    breakers = [c._engine.breaker("openai") for c in clients]
    assert all(b is not None for b in breakers)
    breakers[0].record_failure()  # type: ignore[union-attr]
    assert [b.admit() for b in breakers] == [None] * 4  # type: ignore[union-attr]
    time.sleep(0.3)
    assert breakers[3].state == "half-open"  # type: ignore[union-attr]
    with ThreadPoolExecutor(4) as pool:
        admitted = list(pool.map(lambda b: b.admit(), breakers))  # type: ignore[union-attr]
    assert sorted(map(str, admitted)) == ["None", "None", "None", "trial"]
    breakers[admitted.index("trial")].record_success()  # type: ignore[union-attr]
    assert [b.admit() for b in breakers] == ["closed"] * 4  # type: ignore[union-attr]


# -- Redis going away ------------------------------------------------------------------------------------
def test_redis_killed_mid_run_goes_on_locally_without_losing_a_call(
    fake_server: FakeServer, arrivals: list[float], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    Path("fmclient.toml").write_text(
        '[prices]\nopenai = "openai"\n[circuit_breaker]\nfailure_threshold = 3\ncooldown = 30\n'
    )
    client = Client(
        providers=provider(fake_server),
        shared={"url": redis_server.url, "timeout": 0.2},
        rate_limits={"openai": {"rpm": 10_000}},
        max_cost=100,
        max_retries=0,
        timeout=30,
    )
    done: list[str] = []

    def call(i: int) -> None:
        if i == 20:
            redis_server.stop()
        done.append(client.complete("hi", model="openai/gpt-4o").text)

    with caplog.at_level(logging.WARNING, logger="fmclient"), ThreadPoolExecutor(4) as pool:
        list(pool.map(call, range(60)))
    assert done == ["ok"] * 60 and len(arrivals) == 60  # every call answered, each sent once
    warnings = [r for r in caplog.records if "shared state unavailable" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not per call
    assert "redis://" not in warnings[0].getMessage()
    assert client.spent is not None and client.spent > 0  # counted locally meanwhile


def test_redis_down_with_refuse_fails_typed_before_sending(
    fake_server: FakeServer, arrivals: list[float], redis_server: RedisServer
) -> None:
    client = Client(
        providers=provider(fake_server),
        shared={"url": redis_server.url, "on_unavailable": "refuse", "timeout": 0.2},
        rate_limits={"openai": {"rpm": 100}},
        max_retries=0,
    )
    assert client.complete("hi", model="openai/gpt-4o").text == "ok"
    redis_server.stop()
    with pytest.raises(SharedStateUnavailableError, match="no request was sent"):
        client.complete("hi", model="openai/gpt-4o")
    assert len(arrivals) == 1


async def test_async_calls_share_the_limit_too(
    fake_server: FakeServer, arrivals: list[float], redis_server: RedisServer
) -> None:
    import asyncio

    from fmclient import limits

    shared = {"url": redis_server.url, "namespace": "async-test"}
    one = Client(providers=provider(fake_server), shared=shared, rate_limits={"openai": {"rpm": 3}}, max_retries=0)
    two = Client(providers=provider(fake_server), shared=shared, rate_limits={"openai": {"rpm": 3}}, max_retries=0)
    answers = await asyncio.gather(*(c.acomplete("hi", model="openai/gpt-4o") for c in (one, two, one)))
    assert [a.text for a in answers] == ["ok"] * 3
    with pytest.raises(RateLimitError, match="could not start within its deadline"):
        await two.acomplete("hi", model="openai/gpt-4o", timeout=limits.WINDOW / 2)
    assert len(arrivals) == 3


# -- Ray ---------------------------------------------------------------------------------------------
def test_ray_actors_share_the_limits_instead_of_splitting_them(
    fake_server: FakeServer, arrivals: list[float], redis_server: RedisServer
) -> None:
    from fmclient.limits import RateLimit
    from fmclient.ray import FMClientPredictor, predictor_kwargs
    from fmclient.shared import SharedRateLimiter

    config = {"providers": provider(fake_server), "shared": redis_server.url, "max_cost": 4}
    kwargs = predictor_kwargs(model="openai/gpt-4o", actors=4, client_config=config, rate_limits={"openai": {"rpm": 8}})
    predictor = FMClientPredictor(**kwargs)
    assert predictor.client.settings.rate_limits["openai"] == RateLimit(rpm=8)  # the whole limit, not 2
    assert predictor.client.max_cost == 4  # the whole budget, not 1
    assert isinstance(predictor.client._engine.limiter, SharedRateLimiter)
    out = predictor({"prompt": ["a", "b"]})
    assert list(out["text"]) == ["ok", "ok"] and len(arrivals) == 2


def test_the_token_charge_is_corrected_to_actual_usage_for_every_process(
    fake_server: FakeServer, arrivals: list[float], redis_server: RedisServer
) -> None:
    import redis

    shared = {"url": redis_server.url, "namespace": "tokens-test"}
    client = Client(providers=provider(fake_server), shared=shared, rate_limits={"openai": {"tpm": 100_000}})
    completion = client.complete("hi", model="openai/gpt-4o", max_tokens=5000)  # estimated at 5000+
    used = int(redis.Redis.from_url(redis_server.url).get("tokens-test:rl:openai:t:used") or 0)
    assert completion.usage.total_tokens < 5000
    assert used == completion.usage.total_tokens  # what the call used, not the estimate
    client.close()


def test_an_in_process_budget_with_a_period_starts_from_zero_in_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    from decimal import Decimal

    from fmclient import budget

    spend = budget.Budget(Decimal(1), period="day")
    spend.add(Decimal("0.75"))
    assert spend.spent == Decimal("0.75")
    monkeypatch.setattr(budget, "budget_period_id", lambda period: "the next day")
    assert spend.spent == 0  # a new day
    spend.check("openai", "gpt-4o")  # and room again


# -- hooks and OpenTelemetry ---------------------------------------------------------------------------
def observed_refusal(why: str, shared: dict[str, Any] | None, server: FakeServer) -> tuple[Any, ...]:
    """What a recording hook and the OTel hook (in-memory exporter) see of a refused call."""
    from tests.test_hooks import Recorder
    from tests.test_telemetry import make_otel

    recorder, otel = Recorder(), make_otel()
    options: dict[str, Any] = {
        # With rate limits too: a shared budget then refuses in the admission script.
        "budget": {"max_cost": 0, "rate_limits": {"openai": {"rpm": 1000}}},
        "rate_limit": {"rate_limits": {"openai": {"rpm": 1}}},
    }[why]
    client = Client(providers=provider(server), hooks=[recorder, otel.hook], max_retries=0, **options, shared=shared)
    if why == "rate_limit":
        client.complete("first", model="openai/gpt-4o")  # takes the one slot of the next 60 s
        recorder.events.clear()
        recorder.ended.clear()
        otel.exporter.clear()
    sent = len(server.requests)
    with pytest.raises(FMClientError) as raised:
        client.complete("hi", model="openai/gpt-4o", timeout=30)
    assert len(server.requests) == sent  # refused before sending
    call, attempts = otel.spans()
    ((info, _, error),) = recorder.ended
    assert error is raised.value
    attributes = dict(call.attributes or {})
    return (
        type(raised.value).__name__,
        [(a.provider, a.model, type(a.error).__name__, a.skipped) for a in raised.value.attempts],
        recorder.events,
        info.attempts,
        call.name,
        call.status.status_code,
        attributes.get("error.type"),
        sorted(attributes),
        attempts,
    )


@pytest.mark.parametrize("why", ["budget", "rate_limit"])
def test_hooks_and_spans_see_a_shared_refusal_as_a_local_one(
    why: str, fake_server: FakeServer, redis_server: RedisServer
) -> None:
    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    FakeOpenAI(fake_server)
    local = observed_refusal(why, None, fake_server)
    shared = observed_refusal(why, {"url": redis_server.url, "namespace": f"refusal-{why}"}, fake_server)
    assert local[0] == {"budget": "BudgetExceededError", "rate_limit": "RateLimitError"}[why]
    assert shared == local
    assert local[2] == [("call_start", "chat", False), ("call_end", False, local[0])]
    assert local[3] == local[8] == []  # hooks and spans: no attempt, nothing was sent


@pytest.mark.parametrize("shared", [False, True])
def test_hooks_and_spans_see_the_wait_for_the_rate_limits(
    shared: bool, fake_server: FakeServer, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmclient import limits
    from fmclient.hooks import AttemptInfo, Hook
    from tests.test_telemetry import make_otel

    monkeypatch.setattr(limits, "WINDOW", 1.0)  # one request per second
    FakeOpenAI(fake_server)
    waits: list[float | None] = []

    class Waits(Hook):
        def on_attempt_start(self, attempt: AttemptInfo) -> None:
            waits.append(attempt.rate_limit_wait)

    otel = make_otel()
    client = Client(
        providers=provider(fake_server),
        hooks=[Waits(), otel.hook],
        rate_limits={"openai": {"rpm": 1}},
        shared={"url": redis_server.url, "namespace": "wait-test"} if shared else None,
        max_retries=0,
    )
    client.complete("first", model="openai/gpt-4o")
    otel.exporter.clear()
    client.complete("second", model="openai/gpt-4o", timeout=30)  # waits for the first to leave the window
    assert len(waits) == 2 and waits[0] is not None and waits[1] is not None
    assert waits[1] > 0
    _, (attempt,) = otel.spans()
    assert (attempt.attributes or {})["fmclient.rate_limit.wait"] == waits[1]
    unlimited = Client(providers=provider(fake_server), hooks=[Waits()], max_retries=0)
    unlimited.complete("third", model="openai/gpt-4o")
    assert waits[2] is None  # no limits: no wait to tell


# -- async calls -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["acomplete", "acomplete with rate limits", "aembed"])
async def test_a_redis_that_does_not_answer_never_stops_the_event_loop(
    how: str, fake_server: FakeServer, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import signal

    Path("fmclient.toml").write_text(
        '[prices]\nopenai = "openai"\n[circuit_breaker]\nfailure_threshold = 3\ncooldown = 30\n'
    )
    FakeOpenAI(fake_server)
    client = Client(
        providers=provider(fake_server),
        shared={"url": redis_server.url, "timeout": 0.5},
        rate_limits={"openai": {"rpm": 1000}} if "limits" in how else None,
        max_cost=1,
        max_retries=0,
    )

    async def call(text: str) -> Any:
        if how == "aembed":
            return await client.aembed([text], model="openai/text-embedding-3-small")
        return await client.acomplete(text, model="openai/gpt-4o", max_tokens=5)

    await call("warm")  # connected while Redis answers
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    os.kill(redis_server.process.pid, signal.SIGSTOP)  # Redis hangs: connections open, no answer
    ticking = asyncio.create_task(ticker())
    try:
        with caplog.at_level(logging.WARNING, logger="fmclient"):
            answer = await asyncio.wait_for(call("hi"), 10)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
        ticking.cancel()
    assert answer.vectors if how == "aembed" else answer.text == "ok"
    # The call waited the short timeout (0.5 s) for Redis on redis.asyncio, then went on with
    # this process's own state; meanwhile the loop ran the other task (a blocked loop: ~0 ticks).
    assert ticks >= 20
    assert [r for r in caplog.records if "shared state unavailable" in r.getMessage()]
    assert answer.cost is not None and client.spent == answer.cost.total  # counted here meanwhile
    await client.aclose()


def test_a_first_look_is_admitted_without_a_place_in_line_and_waits_behind_the_line(
    redis_server: RedisServer,
) -> None:
    import redis

    from fmclient.limits import RateLimit
    from fmclient.shared import SharedState

    store = redis.Redis.from_url(redis_server.url)
    limiter = SharedState(redis_server.url, namespace="line-test").limiter({"openai": RateLimit(rpm=1)})
    buckets = limiter.buckets_for("openai", "gpt-4o")
    assert limiter._look(buckets, "first", "", 1, None) == (0.0, "0")  # the one slot: admitted at once
    assert store.get("line-test:rl-order") is None  # no place in line was taken for it
    delay_a, order_a = limiter._look(buckets, "a", "", 1, None)
    delay_b, order_b = limiter._look(buckets, "b", "", 1, None)
    assert delay_a > 0 and delay_b > 0 and 0 < int(order_a) < int(order_b)  # b is behind a
    assert store.zrange("line-test:rl:openai:line", 0, -1) == [b"a", b"b"]


async def test_an_async_call_sees_a_breaker_opened_by_another_process(
    fake_server: FakeServer, redis_server: RedisServer
) -> None:
    import asyncio

    FakeOpenAI(fake_server)
    Path("fmclient.toml").write_text("[circuit_breaker]\nfailure_threshold = 1\ncooldown = 30\n")
    here = Client(providers=provider(fake_server), shared=redis_server.url, max_retries=0)
    assert (await here.acomplete("hi", model="openai/gpt-4o")).text == "ok"  # closed: read off the loop
    assert here._engine.shared is not None
    while here._engine.shared._background:  # its success, recorded without holding up the call
        await asyncio.sleep(0.01)
    other = Client(providers=provider(fake_server), shared=redis_server.url)
    breaker = other._engine.breaker("openai")
    assert breaker is not None
    await asyncio.to_thread(breaker.record_failure)  # another process's failure opens the fleet's circuit
    with pytest.raises(CircuitOpenError):
        await here.acomplete("hi", model="openai/gpt-4o")
    assert len(fake_server.requests) == 1  # refused without sending
    await here.aclose()


# -- what a call costs ---------------------------------------------------------------------------------------
def test_each_thread_keeps_one_redis_connection_and_gives_it_back_when_it_ends(
    fake_server: FakeServer, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    import redis

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    FakeOpenAI(fake_server)
    client = Client(
        providers=provider(fake_server),
        shared=redis_server.url,
        rate_limits={"openai": {"rpm": 1000, "tpm": 1_000_000}},
        max_cost=1,
        max_retries=0,
    )

    def calls() -> None:
        for _ in range(3):
            assert client.complete("hi", model="openai/gpt-4o", max_tokens=5).text == "ok"

    calls()  # this thread takes its connection
    assert client._engine.shared is not None
    pool = client._engine.shared.redis.connection_pool
    taken: list[int] = []
    take = redis.ConnectionPool.get_connection

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        taken.append(1)
        return take(self, *args, **kwargs)

    monkeypatch.setattr(redis.ConnectionPool, "get_connection", counted)
    calls()
    assert taken == []  # six round trips, none of them took (and probed) a connection of the pool
    thread = threading.Thread(target=calls)
    thread.start()
    thread.join()
    assert len(taken) == 1  # a new thread takes one, once
    gc.collect()
    assert len(pool._in_use_connections) == 1  # the ended thread's went back; this thread keeps its own
    client.close()


def test_the_limit_keys_keep_their_expiry_when_their_window_empties_and_fills_again(
    fake_server: FakeServer, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    from fmclient import limits

    monkeypatch.setattr(limits, "WINDOW", 1.0)
    FakeOpenAI(fake_server)
    store = redis.Redis.from_url(redis_server.url)
    client = Client(
        providers=provider(fake_server),
        shared={"url": redis_server.url, "namespace": "ttl-test"},
        rate_limits={"openai": {"rpm": 1000, "tpm": 1_000_000}},
        max_retries=0,
    )
    client.complete("first", model="openai/gpt-4o", max_tokens=5)
    time.sleep(1.1)  # the first call's charge leaves the window: the next look empties the logs
    answer = client.complete("second", model="openai/gpt-4o", max_tokens=5)
    prefix = "ttl-test:rl:openai"
    assert store.zcard(f"{prefix}:r:log") == 1 and store.hlen(f"{prefix}:t:w") == 1  # only the second
    assert int(store.get(f"{prefix}:t:used")) == answer.usage.total_tokens
    # Made again by the second charge, every key of the window has an expiry (two windows at most):
    # a log or weights left without one while the counter expires would be counted again forever.
    for key in (f"{prefix}:r:log", f"{prefix}:t:log", f"{prefix}:t:w", f"{prefix}:t:used"):
        assert 0 < store.pttl(key) <= 2000, key
    client.close()


def test_scripts_that_redis_lost_are_loaded_again_without_failing_a_call(
    fake_server: FakeServer, redis_server: RedisServer
) -> None:
    import redis

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    FakeOpenAI(fake_server)
    store = redis.Redis.from_url(redis_server.url)
    client = Client(
        providers=provider(fake_server),
        shared=redis_server.url,
        rate_limits={"openai": {"rpm": 1000, "tpm": 1_000_000}},
        max_cost=1,
        max_retries=0,
    )
    first = client.complete("hi", model="openai/gpt-4o", max_tokens=5)
    store.script_flush()  # what a restarted Redis has forgotten: the next EVALSHA answers NOSCRIPT
    second = client.complete("hi", model="openai/gpt-4o", max_tokens=5)
    assert first.cost is not None and second.cost is not None
    # Both admitted and settled in Redis (not in this process's fallback state)
    assert store.zcard("fmclient:rl:openai:r:log") == 2
    assert int(store.get(COUNTER)) == pico(first.cost.total + second.cost.total)
    assert store.exists(HELD) == 0
    client.close()


async def test_an_event_loop_reuses_its_redis_connections_between_round_trips(
    fake_server: FakeServer, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio

    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    FakeOpenAI(fake_server)
    client = Client(
        providers=provider(fake_server),
        shared=redis_server.url,
        rate_limits={"openai": {"rpm": 1000, "tpm": 1_000_000}},
        max_cost=1,
        max_retries=0,
    )
    await client.acomplete("hi", model="openai/gpt-4o", max_tokens=5)  # the loop's first connection
    taken: list[int] = []
    take = redis.asyncio.ConnectionPool.get_connection

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        taken.append(1)
        return await take(self, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.ConnectionPool, "get_connection", counted)
    spent = client.spent
    for _ in range(3):
        answer = await client.acomplete("hi", model="openai/gpt-4o", max_tokens=5)
        assert answer.cost is not None
        spent += answer.cost.total
    assert taken == []  # six round trips on the connection the loop already had, none from the pool
    assert client.spent == spent  # every settle reached Redis
    await client.aclose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_takes_its_own_redis_connection(redis_server: RedisServer) -> None:
    from fmclient.limits import RateLimit
    from fmclient.shared import SharedState

    state = SharedState(redis_server.url, namespace="fork-test")
    limiter = state.limiter({"openai": RateLimit(rpm=100)})
    buckets = limiter.buckets_for("openai", "gpt-4o")
    assert limiter._look(buckets, "parent", "", 1, None) == (0.0, "0")
    parents = state.connection()
    pid = os.fork()
    if pid == 0:  # the child: a socket shared with the parent would mix their replies
        try:
            admitted = limiter._look(buckets, "child", "", 1, None) == (0.0, "0")
            os._exit(0 if admitted and state.connection() is not parents else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert limiter._look(buckets, "parent-again", "", 1, None) == (0.0, "0")  # the parent's is in step
    assert state.connection() is parents
    state.close()
