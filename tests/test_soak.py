"""A loopback soak: thousands of calls through every adapter, with seeded random faults.

One :class:`FakeServer` speaks all five providers' wire formats at once (their paths differ), and
every call goes through the real SDK. Each call's prompt carries its number; the server answers
with text derived from it, so a reply delivered to the wrong call, lost or repeated is caught.
Before each call the test draws the faults its attempts will meet; an oracle derived from the
retry policy says what must happen: which typed error (or success), and exactly how many
requests the server sees for that call. Nothing may hang (a per-call deadline and an overall
watchdog) and nothing but an ``FMClientError`` may escape.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fmclient import (
    APIConnectionError,
    BadRequestError,
    Client,
    FMClientError,
    RateLimitError,
    ServiceUnavailableError,
)
from fmclient.retry import RetryPolicy
from tests.fakes.profiles import PROFILES, Profile, is_streamed, profile_for
from tests.fakes.server import FakeServer, RecordedRequest, Reply

SEED = 20260115
SYNC_CALLS = 1400
ASYNC_CALLS = 600
CONCURRENCY = 8
MAX_RETRIES = 2
CALL_TIMEOUT = 20.0  # each call's deadline: a hang fails the call, not the suite
WATCHDOG = 120.0  # the whole soak; a hang anywhere fails the test instead of blocking CI
RETRY_AFTER = 0.25

# fault -> the error it means. "mid-break" cuts a stream after its first piece reached the
# caller: never retried. On a whole (non-streamed) call it is a body cut off instead.
RETRYABLE = {
    "429": RateLimitError,
    "429-retry-after": RateLimitError,
    "500": ServiceUnavailableError,
    "502": ServiceUnavailableError,
    "503": ServiceUnavailableError,
    "overloaded": ServiceUnavailableError,
    "reset": APIConnectionError,
    "truncated": APIConnectionError,
    "unfinished": APIConnectionError,
}
FATAL = {"bad-request": BadRequestError, "mid-break": APIConnectionError}
FAULTS = [*RETRYABLE, *FATAL]
PROMPT = re.compile(rb"soak-call-(\d+)")


def pieces_for(call: int) -> list[str]:
    return ["answer ", f"{call} ", "ok"]


def text_for(call: int) -> str:
    return "".join(pieces_for(call))


class SoakServer:
    """Answers each request from the fault plan of the call its prompt names."""

    def __init__(self) -> None:
        self.server = FakeServer(handler=self.handle)
        self.plans: dict[int, deque[str]] = {}
        self.seen: defaultdict[int, int] = defaultdict(int)
        self._lock = threading.Lock()

    def plan(self, call: int, faults: list[str]) -> None:
        with self._lock:
            self.plans[call] = deque(faults)

    def handle(self, request: RecordedRequest) -> Reply:
        found = PROMPT.search(request.body)
        assert found is not None, request.body[:200]
        call = int(found.group(1))
        profile = profile_for(request)
        streamed = is_streamed(request, profile)
        with self._lock:
            self.seen[call] += 1
            plan = self.plans.get(call)
            fault = plan.popleft() if plan else None
        if fault is None:
            return profile.stream(pieces_for(call)) if streamed else profile.reply(text_for(call))
        return self.fault(profile, fault, call, streamed)

    @staticmethod
    def fault(profile: Profile, fault: str, call: int, streamed: bool) -> Reply:
        if fault == "429-retry-after":
            return profile.status("429", retry_after=f"{RETRY_AFTER:g}")
        if fault in ("429", "500", "502", "503", "overloaded", "bad-request"):
            return profile.status(fault)
        if fault == "reset":
            return Reply(reset=True)
        if not streamed:  # truncated, unfinished, mid-break: the body is cut off
            return profile.truncated_body(text_for(call))
        if fault == "truncated":
            return profile.truncated_stream(pieces_for(call), 0)
        if fault == "unfinished":
            return profile.unfinished_stream(pieces_for(call), 0)
        return profile.truncated_stream(pieces_for(call), 1)  # mid-break


@dataclass
class Expectation:
    error: type[FMClientError] | None
    attempts: int
    partial: str | None = None
    waits: list[float | None] = field(default_factory=list)  # None: backoff, a float: Retry-After


def oracle(call: int, faults: list[str], streamed: bool) -> Expectation:
    """What the retry policy must do with these faults, attempt by attempt."""
    waits: list[float | None] = []
    for attempt, fault in enumerate(faults[: MAX_RETRIES + 1], start=1):
        if fault == "mid-break" and streamed:
            return Expectation(APIConnectionError, attempt, pieces_for(call)[0], waits)
        if fault == "mid-break":  # a whole reply cut off: an ordinary retryable fault
            fault = "truncated"
        if fault in FATAL:
            return Expectation(FATAL[fault], attempt, None, waits)
        if attempt == MAX_RETRIES + 1:
            return Expectation(RETRYABLE[fault], attempt, None, waits)
        waits.append(RETRY_AFTER if fault == "429-retry-after" else None)
    return Expectation(None, min(len(faults), MAX_RETRIES + 1) + 1, None, waits)


@dataclass
class Result:
    call: int
    mode: str
    provider: str
    text: str | None = None
    chunks: str = ""
    error: BaseException | None = None


def draw_faults(rng: random.Random) -> list[str]:
    count = rng.choices([0, 1, 2, 3], weights=[5, 3, 2, 1])[0]
    return [rng.choice(FAULTS) for _ in range(count)]


def make_client(server: FakeServer, tmp_path: Path) -> Client:
    config = tmp_path / "soak.toml"
    config.write_text("")
    return Client(
        config_path=str(config),
        env={},
        providers={name: profile.table(server.url) for name, profile in PROFILES.items()},
        max_retries=MAX_RETRIES,
    )


def run_sync(client: Client, call: int, provider: str, mode: str) -> Result:
    result = Result(call, mode, provider)
    prompt, model = f"soak-call-{call}", PROFILES[provider].model
    try:
        if mode == "complete":
            result.text = client.complete(prompt, model=model, timeout=CALL_TIMEOUT).text
        else:
            stream = client.stream(prompt, model=model, timeout=CALL_TIMEOUT)
            for chunk in stream:
                result.chunks += chunk.text
            result.text = stream.completion.text
    except Exception as error:  # the assertion below says which kinds are allowed
        result.error = error
    return result


async def run_async(client: Client, call: int, provider: str, mode: str) -> Result:
    result = Result(call, mode, provider)
    prompt, model = f"soak-call-{call}", PROFILES[provider].model
    try:
        if mode == "acomplete":
            result.text = (await client.acomplete(prompt, model=model, timeout=CALL_TIMEOUT)).text
        else:
            stream = client.astream(prompt, model=model, timeout=CALL_TIMEOUT)
            async for chunk in stream:
                result.chunks += chunk.text
            result.text = stream.completion.text
    except Exception as error:
        result.error = error
    return result


def check(result: Result, expected: Expectation, seen: int) -> str | None:
    """None when the call did exactly what the oracle says, else what went wrong."""
    where = f"call {result.call} ({result.provider} {result.mode})"
    error = result.error
    if error is not None and not isinstance(error, FMClientError):
        return f"{where}: untyped {type(error).__name__}: {error}"
    if seen != expected.attempts:
        return f"{where}: server saw {seen} requests, expected {expected.attempts}"
    if expected.error is None:
        if error is not None:
            return f"{where}: expected success, got {error!r}"
        if result.text != text_for(result.call):
            return f"{where}: got {result.text!r}, not its own reply"
        if result.mode in ("stream", "astream") and result.chunks != result.text:
            return f"{where}: chunks {result.chunks!r} do not add up to the reply"
        return None
    if type(error) is not expected.error:
        return f"{where}: expected {expected.error.__name__}, got {error!r}"
    assert isinstance(error, FMClientError)
    if error.partial_text != expected.partial or result.chunks != (expected.partial or ""):
        return f"{where}: partial text {error.partial_text!r} / chunks {result.chunks!r}, expected {expected.partial!r}"
    return None


@pytest.mark.slow
def test_soak_every_call_gets_its_own_reply_or_a_typed_error(
    tmp_path: Path, retry_sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSOAKTEST")  # Bedrock signs with the AWS chain
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "soak-secret")
    rng = random.Random(SEED)
    providers = list(PROFILES)
    soak = SoakServer()
    problems: list[str] = []
    expectations: dict[int, Expectation] = {}
    outcomes: defaultdict[str, int] = defaultdict(int)

    def plan(call: int, streamed: bool) -> None:
        faults = draw_faults(rng)
        soak.plan(call, faults)
        expectations[call] = oracle(call, faults, streamed)

    def record(result: Result) -> None:
        problem = check(result, expectations[result.call], soak.seen[result.call])
        if problem:
            problems.append(problem)
        outcomes["ok" if result.error is None else type(result.error).__name__] += 1

    def soak_loop() -> None:
        client = make_client(soak.server, tmp_path)
        # Sequential sync calls: each call's waits can be checked against the oracle exactly.
        for call in range(SYNC_CALLS):
            provider, mode = providers[call % len(providers)], rng.choice(["complete", "stream"])
            plan(call, mode == "stream")
            before = len(retry_sleeps)
            result = run_sync(client, call, provider, mode)
            record(result)
            for wait, want in zip(retry_sleeps[before:], expectations[call].waits, strict=False):
                if (want is not None and wait != want) or (want is None and not 0 < wait <= RetryPolicy().max_backoff):
                    problems.append(f"call {call}: waited {wait}, expected {want or 'a backoff'}")
            if len(retry_sleeps) - before != len(expectations[call].waits):
                problems.append(f"call {call}: {len(retry_sleeps) - before} waits, expected {expectations[call].waits}")

        # Concurrent async calls on one event loop: replies must still reach their own caller.
        async def batch(first: int) -> list[Result]:
            jobs = []
            for call in range(first, min(first + CONCURRENCY, SYNC_CALLS + ASYNC_CALLS)):
                provider, mode = providers[call % len(providers)], rng.choice(["acomplete", "astream"])
                plan(call, mode == "astream")
                jobs.append(run_async(client, call, provider, mode))
            return await asyncio.gather(*jobs)

        async def async_part() -> None:
            for first in range(SYNC_CALLS, SYNC_CALLS + ASYNC_CALLS, CONCURRENCY):
                for result in await batch(first):
                    record(result)

        asyncio.run(async_part())
        client.close()

    failure: list[BaseException] = []

    def guarded() -> None:
        try:
            soak_loop()
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)

    with soak.server:
        worker = threading.Thread(target=guarded, name="soak", daemon=True)
        worker.start()
        worker.join(WATCHDOG)
        assert not worker.is_alive(), f"the soak hung: {sum(outcomes.values())} calls finished in {WATCHDOG}s"
    if failure:
        raise failure[0]

    total = SYNC_CALLS + ASYNC_CALLS
    assert problems == [], f"{len(problems)} calls misbehaved, first: {problems[:5]}"
    assert sum(outcomes.values()) == total
    # Every request the server saw belongs to a call and was predicted by the retry policy.
    assert len(soak.server.requests) == sum(soak.seen.values()) == sum(e.attempts for e in expectations.values())
    # The draw exercised every path: successes after retries and each kind of failure.
    assert outcomes["ok"] > total // 2
    for cls in (RateLimitError, ServiceUnavailableError, APIConnectionError, BadRequestError):
        assert outcomes[cls.__name__] > 10, dict(outcomes)
    assert sum(1 for e in expectations.values() if e.error is None and e.attempts > 1) > total // 5
    assert sum(1 for e in expectations.values() if e.partial) > 10
