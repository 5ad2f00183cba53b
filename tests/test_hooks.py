"""Hooks: the order of events for every kind of call, request changes, and the rule for a hook that raises."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client, FMClientError
from fmclient.circuit import CircuitOpenError
from fmclient.errors import BudgetExceededError, RateLimitError
from fmclient.hooks import AttemptInfo, CallInfo, Hook
from fmclient.testing import MockProvider
from fmclient.types import Chunk, Completion, Embeddings, EmbedRequest, Request
from tests.fakes.profiles import PROFILES
from tests.fakes.server import FakeServer


class Recorder(Hook):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.ended: list[tuple[CallInfo, Any, BaseException | None]] = []

    def on_call_start(self, call: CallInfo) -> None:
        self.events.append(("call_start", call.operation, call.streaming))

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        self.events.append(("attempt_start", attempt.provider, attempt.number, attempt.target_index))

    def on_first_chunk(self, attempt: AttemptInfo, chunk: Chunk) -> None:
        self.events.append(("first_chunk", chunk.text))

    def on_response(self, attempt: AttemptInfo, result: Completion | Embeddings) -> None:
        self.events.append(("response", getattr(result, "text", None)))

    def on_error(self, attempt: AttemptInfo, error: FMClientError) -> None:
        self.events.append(("error", type(error).__name__))

    def on_retry(self, attempt: AttemptInfo, wait: float) -> None:
        self.events.append(("retry", wait))

    def on_fallback(self, attempt: AttemptInfo | None, error: FMClientError) -> None:
        self.events.append(("fallback", attempt.provider if attempt else None, type(error).__name__))

    def on_call_end(self, call: CallInfo, result: Completion | Embeddings | None, error: BaseException | None) -> None:
        self.events.append(("call_end", result is not None, type(error).__name__ if error else None))
        self.ended.append((call, result, error))


@pytest.fixture
def mock() -> Any:
    with MockProvider() as provider:
        yield provider


def test_complete_with_a_retry_sees_each_attempt_and_the_wait(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder], max_retries=2)
    mock.add_error(429, retry_after=1.5).add_reply("hello")
    assert client.complete("hi", model="openai/gpt-4o").text == "hello"
    assert recorder.events == [
        ("call_start", "chat", False),
        ("attempt_start", "openai", 1, 0),
        ("error", "RateLimitError"),
        ("retry", 1.5),
        ("attempt_start", "openai", 2, 0),
        ("response", "hello"),
        ("call_end", True, None),
    ]
    assert mock.sleeps == [1.5]


def test_fallback_is_seen_and_the_next_target_is_a_new_attempt(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder], max_retries=0)
    mock.add_error(503).add_reply("from anthropic")
    completion = client.complete("hi", model="openai/gpt-4o", fallbacks=["anthropic/claude-haiku-4-5"])
    assert completion.text == "from anthropic"
    assert recorder.events == [
        ("call_start", "chat", False),
        ("attempt_start", "openai", 1, 0),
        ("error", "ServiceUnavailableError"),
        ("fallback", "openai", "ServiceUnavailableError"),
        ("attempt_start", "anthropic", 1, 1),
        ("response", "from anthropic"),
        ("call_end", True, None),
    ]


def test_streams_sync_and_async_go_through_the_same_hooks(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder])
    expected = [
        ("call_start", "chat", True),
        ("attempt_start", "openai", 1, 0),
        ("first_chunk", "a"),
        ("response", "ab"),
        ("call_end", True, None),
    ]
    mock.add_stream(["a", "b"])
    assert "".join(c.text for c in client.stream("hi", model="openai/gpt-4o")) == "ab"
    assert recorder.events == expected

    async def consume() -> str:
        return "".join([c.text async for c in client.astream("hi", model="openai/gpt-4o")])

    recorder.events.clear()
    mock.add_stream(["a", "b"])
    assert asyncio.run(consume()) == "ab"
    assert recorder.events == expected


def test_async_complete_and_embeddings(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder])
    mock.add_reply("x")
    asyncio.run(client.acomplete("hi", model="openai/gpt-4o"))
    mock.add_embeddings([[1.0, 0.0]])
    client.embed(["one"], model="openai/text-embedding-3-small")
    mock.add_embeddings([[1.0, 0.0]])
    asyncio.run(client.aembed(["one"], model="openai/text-embedding-3-small"))
    starts = [e for e in recorder.events if e[0] == "call_start"]
    assert starts == [
        ("call_start", "chat", False),
        ("call_start", "embeddings", False),
        ("call_start", "embeddings", False),
    ]
    assert [e for e in recorder.events if e[0] == "call_end"] == [("call_end", True, None)] * 3


def test_a_stream_failing_mid_way_ends_the_call_with_its_error(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder])
    mock.add_stream(["a", "b", "c"], error_after=1)
    with pytest.raises(FMClientError):
        list(client.stream("hi", model="openai/gpt-4o"))
    assert recorder.events[-3:] == [
        ("first_chunk", "a"),
        ("error", "FMClientError"),
        ("call_end", False, "FMClientError"),
    ]


def test_a_stream_closed_early_still_ends_the_call(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder])
    mock.add_stream(["a", "b", "c"])
    with client.stream("hi", model="openai/gpt-4o") as stream:
        next(stream)
    assert recorder.events[-1] == ("call_end", False, "GeneratorExit")


class Redact(Hook):
    def before_request(self, call: CallInfo, request: Any) -> Any:
        if isinstance(request, Request):
            return replace(request, system="redacted system", model="someone/else")
        if isinstance(request, EmbedRequest):
            return replace(request, texts=tuple(t.replace("secret", "[x]") for t in request.texts))
        return None


def test_before_request_changes_what_is_sent_but_not_the_target(mock: MockProvider) -> None:
    client = Client(hooks=[Redact()])
    mock.add_reply("ok")
    client.complete("hi", model="openai/gpt-4o", system="original")
    assert mock.last_request.system == "redacted system"
    assert mock.last_request.model == "openai/gpt-4o"
    mock.add_embeddings([[1.0]])
    client.embed(["a secret"], model="openai/text-embedding-3-small")
    assert mock.embed_requests[-1].texts == ("a [x]",)


class Guardrail(Hook):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def before_request(self, call: CallInfo, request: Any) -> Any:
        raise self.error


def test_before_request_raising_refuses_the_call_and_nothing_is_sent(mock: MockProvider) -> None:
    recorder = Recorder()
    refusal = FMClientError("blocked by policy")
    client = Client(hooks=[recorder, Guardrail(refusal)])
    mock.add_reply("never")
    with pytest.raises(FMClientError) as raised:
        client.complete("hi", model="openai/gpt-4o", fallbacks=["anthropic/claude-haiku-4-5"])
    assert raised.value is refusal
    assert mock.requests == [] and mock.pending == 1
    assert recorder.events == [("call_start", "chat", False), ("call_end", False, "FMClientError")]


def test_before_request_raising_anything_else_fails_closed_with_the_cause_chained(mock: MockProvider) -> None:
    client = Client(hooks=[Guardrail(ValueError("classifier down"))])
    with pytest.raises(FMClientError, match=r"Guardrail\.before_request refused the call: classifier down") as raised:
        client.complete("hi", model="openai/gpt-4o")
    assert isinstance(raised.value.__cause__, ValueError)
    assert mock.requests == []


class Broken(Hook):
    def on_call_start(self, call: CallInfo) -> None:
        raise RuntimeError("broken start")

    def on_response(self, attempt: AttemptInfo, result: Any) -> None:
        raise KeyError("broken response")

    def on_call_end(self, call: CallInfo, result: Any, error: BaseException | None) -> None:
        raise RuntimeError("broken end")


def test_an_observing_hook_that_raises_is_logged_and_the_call_goes_on(
    mock: MockProvider, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    client = Client(hooks=[Broken(), recorder])
    mock.add_reply("fine")
    with caplog.at_level(logging.WARNING, logger="fmclient"):
        assert client.complete("hi", model="openai/gpt-4o").text == "fine"
    raised = [r for r in caplog.records if "raised in" in r.getMessage()]
    assert [r.getMessage().split(" raised in ")[1] for r in raised] == [
        "on_call_start; ignored",
        "on_response; ignored",
        "on_call_end; ignored",
    ]
    assert all(r.exc_info for r in raised)
    assert recorder.events[-1] == ("call_end", True, None)  # later hooks still ran


def test_add_hook_registers_for_later_calls(mock: MockProvider) -> None:
    client = Client()
    recorder = Recorder()
    client.add_hook(recorder)
    mock.add_reply("x")
    client.complete("hi", model="openai/gpt-4o")
    assert recorder.events[0] == ("call_start", "chat", False)


def test_no_hook_and_quiet_logger_builds_no_observer() -> None:
    client = Client()
    assert client._engine.observer_for("chat", Request(model="m", messages=()), False) is None


def test_one_log_record_per_attempt_with_status_latency_and_wait(
    mock: MockProvider, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client(max_retries=1)
    mock.add_error(RateLimitError("slow down", status_code=429), retry_after=2.0).add_reply("ok")
    with caplog.at_level(logging.INFO, logger="fmclient"):
        client.complete("hi", model="openai/gpt-4o")
    attempts = [r for r in caplog.records if r.getMessage().startswith("attempt ")]
    assert [r.levelname for r in attempts] == ["WARNING", "INFO"]
    first, second = attempts
    assert first.getMessage().startswith("attempt 1 openai/gpt-4o: 429 after ")
    assert first.getMessage().endswith(", retrying in 2.00s")
    assert (first.fmclient_status, first.fmclient_retry_wait) == (429, 2.0)  # type: ignore[attr-defined]
    assert second.getMessage().startswith("attempt 2 openai/gpt-4o: ok in ")
    assert second.fmclient_latency >= 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "header"), [("openai", "x-request-id"), ("anthropic", "request-id")])
def test_request_id_from_the_response_headers_on_the_completion_and_in_the_log(
    name: str, header: str, fake_server: FakeServer, caplog: pytest.LogCaptureFixture, retry_sleeps: list[float]
) -> None:
    profile = PROFILES[name]
    failed = profile.status("429", retry_after="1")
    fake_server.replies.extend(
        [
            replace(failed, headers={**failed.headers, header: "req_failed_1"}),
            replace(profile.reply("hi"), headers={header: "req_answered_2"}),
        ]
    )
    client = Client(providers={name: profile.table(fake_server.url)}, max_retries=1)
    with caplog.at_level(logging.INFO, logger="fmclient"):
        completion = client.complete("hi", model=f"{name}/{profile.model_id}")
    assert completion.request_id == "req_answered_2"
    assert len(fake_server.requests) == 2
    attempts = [r for r in caplog.records if r.getMessage().startswith("attempt ")]
    assert [r.fmclient_request_id for r in attempts] == ["req_failed_1", "req_answered_2"]  # type: ignore[attr-defined]
    assert attempts[0].getMessage().endswith(", retrying in 1.00s (request id req_failed_1)")
    assert attempts[1].getMessage().endswith(" (request id req_answered_2)")


class Interrupt(Hook):
    def on_retry(self, attempt: AttemptInfo, wait: float) -> None:
        raise KeyboardInterrupt  # not an Exception: passes through the observer, as a real ^C would


def test_an_interrupt_between_attempts_still_ends_the_call(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder, Interrupt()], max_retries=2)
    mock.add_error(429, retry_after=1.0).add_reply("never")
    with pytest.raises(KeyboardInterrupt):
        client.complete("hi", model="openai/gpt-4o")
    assert recorder.events[-2:] == [("retry", 1.0), ("call_end", False, "KeyboardInterrupt")]


def test_before_request_refuses_embeddings_too(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder, Guardrail(FMClientError("no embeddings today"))])
    mock.add_embeddings([[1.0]])
    with pytest.raises(FMClientError, match="no embeddings today"):
        client.embed(["text"], model="openai/text-embedding-3-small")
    assert mock.embed_requests == []
    assert recorder.events == [("call_start", "embeddings", False), ("call_end", False, "FMClientError")]


# -- calls that send nothing: cache hits and refusals ---------------------------------------------
async def _acollect(client: Client, prompt: str) -> Completion:
    stream = client.astream(prompt, model="openai/gpt-4o")
    assert [chunk.text async for chunk in stream] == ["cached answer", ""]
    return await stream.get_completion()


def _stream_hit(client: Client, prompt: str) -> Completion:
    stream = client.stream(prompt, model="openai/gpt-4o")
    assert [chunk.text for chunk in stream] == ["cached answer", ""]
    return stream.completion


HITS = {
    "complete": lambda client, prompt: client.complete(prompt, model="openai/gpt-4o"),
    "acomplete": lambda client, prompt: asyncio.run(client.acomplete(prompt, model="openai/gpt-4o")),
    "stream": _stream_hit,
    "astream": lambda client, prompt: asyncio.run(_acollect(client, prompt)),
}


@pytest.mark.parametrize("how", list(HITS))
def test_a_cache_hit_is_a_call_with_no_attempt(how: str, mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder], cache=True)
    mock.add_reply("cached answer")
    assert not client.complete("hi", model="openai/gpt-4o").cached  # the miss, sent and stored
    recorder.events.clear()
    recorder.ended.clear()
    hit = HITS[how](client, "hi")
    streaming = how in ("stream", "astream")
    assert recorder.events == [("call_start", "chat", streaming), ("call_end", True, None)]
    ((call, result, error),) = recorder.ended
    assert result is hit and result.cached and error is None
    assert call.cache_hit and call.attempts == [] and call.result is hit
    assert (call.provider, call.model, call.settings.name if call.settings else None) == ("openai", "gpt-4o", "openai")
    assert len(mock.requests) == 1  # across the miss and the hit


def test_a_replayed_stream_closed_early_still_ends_the_call(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder], cache=True)
    mock.add_reply("cached answer")
    client.complete("hi", model="openai/gpt-4o")
    recorder.events.clear()
    stream = client.stream("hi", model="openai/gpt-4o")
    for _chunk in stream:
        break
    stream.close()
    assert recorder.events == [("call_start", "chat", True), ("call_end", False, "GeneratorExit")]


def test_a_cache_hit_with_no_hook_and_a_quiet_logger_builds_no_observer(
    mock: MockProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fmclient._engine as engine_module

    def no_observer(*args: Any) -> Any:
        raise AssertionError("an observer was built")

    assert not logging.getLogger("fmclient").isEnabledFor(logging.INFO)
    client = Client(cache=True)
    mock.add_reply("cached answer")
    client.complete("hi", model="openai/gpt-4o")
    monkeypatch.setattr(engine_module, "CallObserver", no_observer)
    assert client.complete("hi", model="openai/gpt-4o").cached
    assert [c.text for c in client.stream("hi", model="openai/gpt-4o")] == ["cached answer", ""]
    assert len(mock.requests) == 1
    refusing = Client(max_cost=0)
    with pytest.raises(BudgetExceededError):  # refused, and still no observer
        refusing.complete("hi", model="openai/gpt-4o")


def test_a_cache_hit_logs_one_info_record(mock: MockProvider, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(cache=True)
    mock.add_reply("cached answer")
    client.complete("hi", model="openai/gpt-4o")
    with caplog.at_level(logging.INFO, logger="fmclient"):
        caplog.clear()
        client.complete("hi", model="openai/gpt-4o")
    (record,) = [r for r in caplog.records if r.name == "fmclient"]
    assert record.levelname == "INFO"
    assert record.getMessage().startswith("cache hit openai/gpt-4o: ok in ")
    assert (record.fmclient_status, record.fmclient_attempt) == ("cache hit", 0)  # type: ignore[attr-defined]


async def _astream_all(client: Client, **kwargs: Any) -> None:
    async for _chunk in client.astream("hi", model="openai/gpt-4o", **kwargs):
        pass


def _stream_all(client: Client, **kwargs: Any) -> None:
    list(client.stream("hi", model="openai/gpt-4o", **kwargs))


EMBEDDER = "openai/text-embedding-3-small"
REFUSED: dict[str, tuple[str, bool, Any]] = {
    "complete": ("chat", False, lambda c, **kw: c.complete("hi", model="openai/gpt-4o", **kw)),
    "acomplete": ("chat", False, lambda c, **kw: asyncio.run(c.acomplete("hi", model="openai/gpt-4o", **kw))),
    "stream": ("chat", True, _stream_all),
    "astream": ("chat", True, lambda c, **kw: asyncio.run(_astream_all(c, **kw))),
    "embed": ("embeddings", False, lambda c, **kw: c.embed(["text"], model=EMBEDDER, **kw)),
    "aembed": ("embeddings", False, lambda c, **kw: asyncio.run(c.aembed(["text"], model=EMBEDDER, **kw))),
    "generate_image": ("generate_content", False, lambda c, **kw: c.generate_image("a kite", model="gpt-image", **kw)),
    "agenerate_image": (
        "generate_content",
        False,
        lambda c, **kw: asyncio.run(c.agenerate_image("a kite", model="gpt-image", **kw)),
    ),
}


def _sent(mock: MockProvider) -> int:
    return len(mock.requests) + len(mock.embed_requests) + len(mock.image_requests)


@pytest.mark.parametrize("how", list(REFUSED))
def test_a_call_refused_by_the_budget_starts_and_ends_with_its_error(how: str, mock: MockProvider) -> None:
    operation, streaming, run = REFUSED[how]
    recorder = Recorder()
    client = Client(hooks=[recorder], max_cost=0, cache=how in ("astream", "acomplete"))
    with pytest.raises(BudgetExceededError) as raised:
        run(client)
    assert recorder.events == [("call_start", operation, streaming), ("call_end", False, "BudgetExceededError")]
    ((call, _result, error),) = recorder.ended
    assert error is raised.value and call.attempts == [] and not call.cache_hit
    assert _sent(mock) == 0


@pytest.mark.parametrize("how", list(REFUSED))
def test_a_call_the_rate_limits_cannot_admit_before_its_deadline_ends_with_no_attempt(
    how: str, mock: MockProvider
) -> None:
    operation, streaming, run = REFUSED[how]
    recorder = Recorder()
    client = Client(hooks=[recorder], rate_limits={"openai": {"rpm": 1}}, max_retries=0)
    mock.add_reply("first").add_embeddings([[1.0]]).add_image(b"\xff\xd8\xff")
    first = {"chat": REFUSED["complete"], "embeddings": REFUSED["embed"], "generate_content": REFUSED["generate_image"]}
    first[operation][2](client)  # takes the one slot of the next 60 s
    recorder.events.clear()
    recorder.ended.clear()
    with pytest.raises(RateLimitError, match="could not start within its deadline") as raised:
        run(client, timeout=30)  # the next slot is ~60 s away: refused at once, no wait
    assert recorder.events == [("call_start", operation, streaming), ("call_end", False, "RateLimitError")]
    ((call, _result, error),) = recorder.ended
    assert error is raised.value and call.attempts == []
    assert _sent(mock) == 1  # the first call only


def test_before_request_refuses_images_too(mock: MockProvider) -> None:
    recorder = Recorder()
    client = Client(hooks=[recorder, Guardrail(FMClientError("no images today"))])
    mock.add_image(b"\xff\xd8\xff")
    with pytest.raises(FMClientError, match="no images today"):
        client.generate_image("a kite", model="gpt-image")
    assert mock.image_requests == []
    assert recorder.events == [("call_start", "generate_content", False), ("call_end", False, "FMClientError")]


@pytest.mark.parametrize("how", ["complete", "astream", "generate_image"])
def test_a_call_whose_circuit_is_open_ends_with_no_attempt(how: str, mock: MockProvider) -> None:
    Path("fmclient.toml").write_text("[circuit_breaker]\nfailure_threshold = 1\ncooldown = 600\n")
    operation, streaming, run = REFUSED[how]
    recorder = Recorder()
    client = Client(hooks=[recorder], max_retries=0)
    mock.add_error(503).add_image_error(503)
    with pytest.raises(FMClientError):
        run(client)  # the provider's failure opens the circuit
    sent = _sent(mock)
    recorder.events.clear()
    recorder.ended.clear()
    with pytest.raises(CircuitOpenError) as raised:
        run(client)
    assert recorder.events == [("call_start", operation, streaming), ("call_end", False, "CircuitOpenError")]
    ((call, _result, error),) = recorder.ended
    assert error is raised.value and call.attempts == []
    assert _sent(mock) == sent  # nothing more went out
