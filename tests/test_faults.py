"""Fault injection across every adapter: one table of faults, each provider's own wire format.

Every cell drives ``fmclient.Client`` -> adapter -> the real SDK -> a loopback fake speaking the
provider's protocol (see ``tests/fakes/profiles.py``), and asserts the typed error or the success
after retries, the exact number of requests the server received, and the waits between them
(recorded, not slept). The rows: Anthropic, OpenAI, Gemini, Bedrock (Converse), Bedrock's second
path (InvokeModel with a Titan text model), Ollama, and the mock provider, which runs the same
table through ``MockProvider`` scripts.

Faults and where each applies:

* ``429``, ``429-retry-after``, ``500``, ``502``, ``503``, ``overloaded``, ``reset``: every
  provider, whole and streamed calls. "overloaded" is each provider's own overload answer:
  Anthropic's 529 ``overloaded_error``; OpenAI's, Gemini's and Ollama's 503 (none has a 529);
  Bedrock's ``ModelNotReadyException``. ``502`` is a gateway's HTML page, as a proxy sends it.
* ``truncated-body`` / ``malformed-body``: whole calls (a non-streamed JSON body cut off / not
  JSON). ``truncated-stream``, ``unfinished-stream`` (ends cleanly without its final event),
  ``error-event`` (inside a 200 stream), ``malformed-event``: streamed calls only, since a whole
  reply has no events. In-stream errors are each provider's own: an SSE ``error`` event
  (Anthropic, OpenAI, Gemini), an event-stream exception frame (Bedrock), an ``{"error": ...}``
  NDJSON line (Ollama, which has no SSE).
* A stream fault before the first chunk is retried; after text has reached the caller it is not
  (the ``*-mid`` rows): the error carries ``partial_text`` and the server saw one request.
* ``bad-request``, ``bad-key``, ``unknown-model``, ``error-event-fatal``: never retried.
  Each provider's own answer: Gemini's bad key is a 400 ``API_KEY_INVALID``, Bedrock's a 403
  ``UnrecognizedClientException`` and its unknown model a 400 ``ValidationException``.
* ``slow``: a reply that comes after the call's ``timeout=`` (the whole-call deadline), so even
  with ``max_retries=2`` there is no time for a second attempt: one request, RequestTimeoutError.

No cell is skipped: a fault that cannot happen on a call kind (a stream event on a whole reply)
is simply not in that kind's list above.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fmclient import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    Client,
    FMClientError,
    ModelNotFoundError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
)
from fmclient import retry as retry_module
from fmclient.retry import RetryPolicy
from fmclient.testing import MockProvider
from tests.fakes.profiles import EXTRA_PROFILES, PROFILES, Profile
from tests.fakes.server import FakeServer, Reply

PIECES = ("alpha ", "beta ", "gamma")
TEXT = "".join(PIECES)
WHOLE_TEXT = "the whole answer"
RETRY_AFTER = 1.5
MAX_RETRIES = 2
SLOW_TIMEOUT = 0.3  # the call's deadline in the slow-server cells
SLOW_DELAY = 1.0  # how late the slow server answers

WHOLE = ("complete", "acomplete")
STREAMED = ("stream", "astream")
ALL_MODES = WHOLE + STREAMED

# fault -> (expected error, the call kinds it applies to). None: the profile says (malformed).
RETRYABLE: dict[str, tuple[type[FMClientError] | None, tuple[str, ...]]] = {
    "429": (RateLimitError, ALL_MODES),
    "429-retry-after": (RateLimitError, ALL_MODES),
    "500": (ServiceUnavailableError, ALL_MODES),
    "502": (ServiceUnavailableError, ALL_MODES),
    "503": (ServiceUnavailableError, ALL_MODES),
    "overloaded": (ServiceUnavailableError, ALL_MODES),
    "reset": (APIConnectionError, ALL_MODES),
    "truncated-body": (APIConnectionError, WHOLE),
    "truncated-stream": (APIConnectionError, STREAMED),
    "unfinished-stream": (APIConnectionError, STREAMED),
    "error-event": (ServiceUnavailableError, STREAMED),
}
FATAL: dict[str, tuple[type[FMClientError] | None, tuple[str, ...]]] = {
    "bad-request": (BadRequestError, ALL_MODES),
    "bad-key": (AuthenticationError, ALL_MODES),
    "unknown-model": (ModelNotFoundError, ALL_MODES),
    "error-event-fatal": (None, STREAMED),
}
# Retryable or not depending on the class the adapter maps them to (see the profiles).
MALFORMED: dict[str, tuple[str, ...]] = {"malformed-body": WHOLE, "malformed-event": STREAMED}
# Faults after the first piece of text reached the caller: never retried, partial text kept.
BROKEN_OFF: dict[str, type[FMClientError]] = {
    "truncated-stream-mid": APIConnectionError,
    "unfinished-stream-mid": APIConnectionError,
    "error-event-mid": ServiceUnavailableError,
}


# == harnesses: one per provider, shared by the module ===========================================


# Every wire profile: one per provider, plus Bedrock's InvokeModel path for Titan text models.
WIRE_PROFILES: dict[str, Profile] = {**PROFILES, **EXTRA_PROFILES}


class MockProfile:
    """The mock provider's row: the same faults, expressed as MockProvider scripts."""

    name = "mock"
    model = "mock/any-model"
    malformed_error: type[FMClientError] = ServiceUnavailableError
    malformed_event_error: type[FMClientError] = ServiceUnavailableError
    fatal_event_error: type[FMClientError] = BadRequestError


ProfileLike = Profile | MockProfile


def expected_error(profile: ProfileLike, fault: str) -> type[FMClientError]:
    if fault == "malformed-body":
        return profile.malformed_error
    if fault == "malformed-event":
        return profile.malformed_event_error
    if fault == "error-event-fatal":
        return profile.fatal_event_error
    found = RETRYABLE.get(fault) or FATAL.get(fault)
    assert found is not None and found[0] is not None
    return found[0]


class Harness:
    """A client pointed at one fake, plus how to script it and count what it received."""

    profile: ProfileLike
    client: Client

    def begin(self, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
        raise NotImplementedError

    def end(self) -> None:
        pass

    def queue_fault(self, fault: str, streaming: bool) -> None:
        raise NotImplementedError

    def queue_success(self, streaming: bool) -> None:
        raise NotImplementedError

    @property
    def requests(self) -> int:
        raise NotImplementedError

    @property
    def sleeps(self) -> list[float]:
        raise NotImplementedError

    @property
    def model(self) -> str:
        return self.profile.model


class WireHarness(Harness):
    def __init__(self, profile: Profile, server: FakeServer, client: Client) -> None:
        self.profile: Profile = profile
        self.server = server
        self.client = client
        self._sleeps: list[float] = []

    def begin(self, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
        self.server.reset()
        self._sleeps = sleeps

    def reply_for(self, fault: str, streaming: bool) -> Reply:
        profile = self.profile
        if fault == "429-retry-after":
            return profile.status("429", retry_after=f"{RETRY_AFTER:g}")
        if fault in ("429", "500", "502", "503", "overloaded", "bad-request", "bad-key", "unknown-model"):
            return profile.status(fault)
        if fault == "reset":
            return Reply(reset=True)
        if fault == "slow":
            on_time = profile.stream(PIECES) if streaming else profile.reply(WHOLE_TEXT)
            return dataclasses.replace(on_time, delay=SLOW_DELAY)
        if fault == "truncated-body":
            return profile.truncated_body(WHOLE_TEXT)
        if fault == "malformed-body":
            return profile.malformed_body()
        if fault == "malformed-event":
            return profile.stream_malformed(PIECES)
        after = 1 if fault.endswith("-mid") else 0
        base = fault.removesuffix("-mid")
        if base == "truncated-stream":
            return profile.truncated_stream(PIECES, after)
        if base == "unfinished-stream":
            return profile.unfinished_stream(PIECES, after)
        if base in ("error-event", "error-event-fatal"):
            return profile.stream_with_error(PIECES, after, fatal=base == "error-event-fatal")
        raise AssertionError(f"no such fault {fault!r}")

    def queue_fault(self, fault: str, streaming: bool) -> None:
        self.server.queue(self.reply_for(fault, streaming))

    def queue_success(self, streaming: bool) -> None:
        self.server.queue(self.profile.stream(PIECES) if streaming else self.profile.reply(WHOLE_TEXT))

    @property
    def requests(self) -> int:
        return len(self.server.requests)

    @property
    def sleeps(self) -> list[float]:
        return self._sleeps


class MockHarness(Harness):
    def __init__(self, client: Client) -> None:
        self.profile = MockProfile()
        self.client = client
        self.mock = MockProvider()
        self._monkeypatch: pytest.MonkeyPatch | None = None
        self._slow = False

    def begin(self, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
        self.mock = MockProvider()
        self.mock.__enter__()  # records retry waits in mock.sleeps while active
        self._monkeypatch = monkeypatch
        self._slow = False

    def end(self) -> None:
        self.mock.__exit__(None, None, None)

    def queue_fault(self, fault: str, streaming: bool) -> None:
        mock = self.mock
        statuses = {"429": 429, "500": 500, "502": 502, "503": 503, "overloaded": 529}
        statuses |= {"bad-request": 400, "bad-key": 401, "unknown-model": 404}
        after = 1 if fault.endswith("-mid") else 0
        base = fault.removesuffix("-mid")
        if fault in statuses:
            mock.add_error(statuses[fault])
        elif fault == "429-retry-after":
            mock.add_error(429, retry_after=RETRY_AFTER)
        elif fault in ("reset", "truncated-body"):
            # What the adapters raise for a reset connection or a body cut off.
            mock.add_error(APIConnectionError(f"mock {fault}"))
        elif fault == "malformed-body":
            mock.add_error(ServiceUnavailableError("mock malformed response"))
        elif base in ("truncated-stream", "unfinished-stream"):
            mock.add_stream(PIECES, error_after=after, error=APIConnectionError)
        elif base == "error-event":
            mock.add_stream(PIECES, error_after=after, error=529)
        elif fault == "error-event-fatal":
            mock.add_stream(PIECES, error_after=0, error=400)
        elif fault == "malformed-event":
            mock.add_stream(PIECES, error_after=0, error=ServiceUnavailableError)
        elif fault == "slow":
            # No wire to be slow on: the attempt uses up the call's deadline (a fake clock) and
            # times out, as an adapter whose SDK timed out does.
            assert self._monkeypatch is not None
            now = [0.0]
            self._monkeypatch.setattr(retry_module, "monotonic", lambda: now[0])

            def slow(request: Any) -> str:
                now[0] += SLOW_TIMEOUT
                raise RequestTimeoutError("mock: no answer in time")

            mock.respond_with(slow)
            self._slow = True
        else:
            raise AssertionError(f"no such fault {fault!r}")

    def queue_success(self, streaming: bool) -> None:
        if self._slow:
            return  # the slow responder answers every attempt: a retry would be counted anyway
        if streaming:
            self.mock.add_stream(PIECES)
        else:
            self.mock.add_reply(WHOLE_TEXT)

    @property
    def requests(self) -> int:
        return len(self.mock.calls)

    @property
    def sleeps(self) -> list[float]:
        return self.mock.sleeps


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Harness]]:
    """One fake server and one client per provider, for the whole module.

    Starting a server, and building boto3's client, costs more than most cells take: they are
    built once and reset before each test. The clients read an empty config file, so nothing
    from the developer's environment applies.
    """
    config = tmp_path_factory.mktemp("faults") / "fmclient.toml"
    config.write_text("")
    built: dict[str, Harness] = {}
    servers: list[FakeServer] = []
    with pytest.MonkeyPatch.context() as patch:
        # Bedrock's credentials come from the AWS chain; boto3 keeps them in the client it builds.
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK"):
            patch.delenv(var, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAULTSUITE")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "fault-suite-secret")
        patch.setenv("AWS_CONFIG_FILE", str(config.parent / "no-aws-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(config.parent / "no-aws-credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for key, profile in WIRE_PROFILES.items():
            server = FakeServer().start()
            servers.append(server)
            name = profile.name
            client = Client(
                config_path=str(config), env={}, providers={name: profile.table(server.url)}, max_retries=MAX_RETRIES
            )
            client.provider(name).check_ready(profile.model_id)  # builds the SDK client now
            built[key] = WireHarness(profile, server, client)
    built["mock"] = MockHarness(Client(config_path=str(config), env={}, max_retries=MAX_RETRIES))
    yield built
    for harness in built.values():
        harness.client.close()
    for server in servers:
        server.stop()


@pytest.fixture
def harness(
    request: pytest.FixtureRequest,
    harnesses: dict[str, Harness],
    retry_sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Harness]:
    chosen = harnesses[request.param]
    chosen.begin(retry_sleeps, monkeypatch)
    yield chosen
    chosen.end()


# == running one call in any mode ===================================================================


@dataclasses.dataclass
class Outcome:
    text: str | None = None
    chunks: list[str] = dataclasses.field(default_factory=list)
    error: FMClientError | None = None


def call(harness: Harness, mode: str, **kwargs: Any) -> Outcome:
    """One call through the client; an fmclient error is captured, anything else propagates."""
    outcome = Outcome()
    client, model = harness.client, harness.model

    async def consume_async() -> str:
        stream = client.astream("hi", model=model, **kwargs)
        async for chunk in stream:
            outcome.chunks.append(chunk.text)
        return stream.completion.text

    try:
        if mode == "complete":
            outcome.text = client.complete("hi", model=model, **kwargs).text
        elif mode == "acomplete":
            outcome.text = asyncio.run(client.acomplete("hi", model=model, **kwargs)).text
        elif mode == "stream":
            stream = client.stream("hi", model=model, **kwargs)
            for chunk in stream:
                outcome.chunks.append(chunk.text)
            outcome.text = stream.completion.text
        else:
            outcome.text = asyncio.run(consume_async())
    except FMClientError as error:
        outcome.error = error
    return outcome


def assert_backoff(harness: Harness, fault: str, waits: int) -> None:
    """Retry-After is honoured exactly; without one, each wait is within the backoff policy."""
    sleeps = harness.sleeps
    assert len(sleeps) == waits, sleeps
    if fault == "429-retry-after":
        assert sleeps == [RETRY_AFTER] * waits
        return
    policy = RetryPolicy()
    for attempt, wait in enumerate(sleeps, start=1):
        ceiling = min(policy.max_backoff, policy.initial_backoff * 2 ** (attempt - 1))
        assert 0 < wait <= ceiling, (attempt, wait)


# == the table =======================================================================================

PROVIDERS = [*WIRE_PROFILES, "mock"]


def cells(faults: dict[str, tuple[str, ...]], profile_filter: Any = None) -> list[Any]:
    params = []
    for provider in PROVIDERS:
        for fault, modes in faults.items():
            if profile_filter is not None and not profile_filter(provider, fault):
                continue
            for mode in modes:
                params.append(pytest.param(provider, fault, mode, id=f"{provider}-{fault}-{mode}"))
    return params


def profile_of(provider: str) -> ProfileLike:
    return WIRE_PROFILES[provider] if provider in WIRE_PROFILES else MockProfile()


def malformed_retryable(provider: str, fault: str) -> bool:
    return expected_error(profile_of(provider), fault).default_retryable


RETRYABLE_CELLS = cells({f: modes for f, (_, modes) in RETRYABLE.items()}) + cells(
    MALFORMED, lambda p, f: malformed_retryable(p, f)
)
FATAL_CELLS = cells({f: modes for f, (_, modes) in FATAL.items()}) + cells(
    MALFORMED, lambda p, f: not malformed_retryable(p, f)
)
BROKEN_OFF_CELLS = cells(dict.fromkeys(BROKEN_OFF, STREAMED))


@pytest.mark.parametrize(("harness", "fault", "mode"), RETRYABLE_CELLS, indirect=["harness"])
def test_retryable_fault_twice_then_success(harness: Harness, fault: str, mode: str) -> None:
    streaming = mode in STREAMED
    harness.queue_fault(fault, streaming)
    harness.queue_fault(fault, streaming)
    harness.queue_success(streaming)

    outcome = call(harness, mode)

    assert outcome.error is None, repr(outcome.error)
    if streaming:
        # Failed attempts delivered nothing: the caller sees each piece exactly once.
        assert [c for c in outcome.chunks if c] == list(PIECES)
        assert outcome.text == TEXT
    else:
        assert outcome.text == WHOLE_TEXT
    assert harness.requests == 3
    assert_backoff(harness, fault, waits=2)


@pytest.mark.parametrize(("harness", "fault", "mode"), RETRYABLE_CELLS, indirect=["harness"])
def test_retryable_fault_every_time_raises_the_typed_error(harness: Harness, fault: str, mode: str) -> None:
    streaming = mode in STREAMED
    for _ in range(MAX_RETRIES + 1):
        harness.queue_fault(fault, streaming)
    harness.queue_success(streaming)  # never reached: 1 + max_retries attempts only

    outcome = call(harness, mode)

    error = outcome.error
    expected = expected_error(harness.profile, fault)
    assert type(error) is expected, repr(error)
    assert error.retryable and error.provider == harness.profile.name
    assert error.partial_text is None and outcome.chunks == []
    if fault == "429-retry-after":
        assert error.retry_after == RETRY_AFTER
    assert harness.requests == MAX_RETRIES + 1
    assert_backoff(harness, fault, waits=MAX_RETRIES)


@pytest.mark.parametrize(("harness", "fault", "mode"), FATAL_CELLS, indirect=["harness"])
def test_non_retryable_fault_fails_after_one_request(harness: Harness, fault: str, mode: str) -> None:
    streaming = mode in STREAMED
    harness.queue_fault(fault, streaming)
    harness.queue_success(streaming)  # a retry would reach it

    outcome = call(harness, mode)

    error = outcome.error
    assert type(error) is expected_error(harness.profile, fault), repr(error)
    assert not error.retryable and error.provider == harness.profile.name
    assert outcome.chunks == []
    assert harness.requests == 1
    assert harness.sleeps == []


@pytest.mark.parametrize(("harness", "fault", "mode"), BROKEN_OFF_CELLS, indirect=["harness"])
def test_stream_breaking_after_text_is_not_retried_and_keeps_the_partial_text(
    harness: Harness, fault: str, mode: str
) -> None:
    harness.queue_fault(fault, streaming=True)
    harness.queue_success(streaming=True)  # a retry would reach it, and repeat text

    outcome = call(harness, mode)

    error = outcome.error
    assert type(error) is BROKEN_OFF[fault], repr(error)
    # Retryable in itself, but text had reached the caller: resending would repeat it.
    assert error.retryable
    assert [c for c in outcome.chunks if c] == [PIECES[0]]
    assert error.partial_text == PIECES[0]
    assert harness.requests == 1
    assert harness.sleeps == []


@pytest.mark.parametrize(
    ("harness", "mode"),
    [pytest.param(p, m, id=f"{p}-slow-{m}") for p in PROVIDERS for m in ("complete", "astream")],
    indirect=["harness"],
)
def test_server_slower_than_the_deadline_times_out_after_one_request(harness: Harness, mode: str) -> None:
    harness.queue_fault("slow", streaming=mode in STREAMED)
    harness.queue_success(streaming=mode in STREAMED)  # a retry would reach it in time
    started = time.monotonic()

    outcome = call(harness, mode, timeout=SLOW_TIMEOUT)

    assert type(outcome.error) is RequestTimeoutError, repr(outcome.error)
    # The deadline covers retries: with max_retries=2 there is still no time for a second try.
    assert harness.requests == 1
    assert time.monotonic() - started < SLOW_DELAY  # it did not wait for the late reply
    assert outcome.chunks == []


def test_the_table_covers_every_adapter_and_every_fault() -> None:
    """The issue's list, cell by cell: a fault missing from a provider's row fails here."""
    listed = {c.values[:2] for c in RETRYABLE_CELLS + FATAL_CELLS + BROKEN_OFF_CELLS}
    faults = {*RETRYABLE, *FATAL, *MALFORMED, *BROKEN_OFF}
    for provider in PROVIDERS:
        assert {f for p, f in listed if p == provider} == faults, provider
    assert set(PROVIDERS) == {"anthropic", "openai", "gemini", "bedrock", "bedrock-titan", "ollama", "mock"}


def test_profiles_build_streams_of_the_declared_shape() -> None:
    """preamble + one chunk per piece + finale: the generic faults cut at the right places."""
    for profile in WIRE_PROFILES.values():
        chunks = profile.stream_chunks(PIECES)
        assert len(chunks) == profile.preamble + len(PIECES) + profile.finale, profile.name
