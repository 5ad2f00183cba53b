"""Fallbacks, deadlines, the circuit breaker and a seeded soak, through the mock provider."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from fmclient import (
    APIConnectionError,
    BadRequestError,
    Client,
    ConfigurationError,
    FMClientError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedFeatureError,
)
from fmclient import retry as retry_module
from fmclient.circuit import CircuitOpenError
from fmclient.testing import MockProvider


def breaker_client(tmp_path: Path, threshold: int = 2, cooldown: float = 10) -> Client:
    config = tmp_path / "cb.toml"
    config.write_text(f"[circuit_breaker]\nfailure_threshold = {threshold}\ncooldown = {cooldown}\n")
    return Client(config_path=str(config), max_retries=0)


def test_circuit_opens_after_repeated_failures_and_recovers_after_cooldown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    monkeypatch.setattr(retry_module, "monotonic", lambda: now[0])
    client = breaker_client(tmp_path)
    with MockProvider() as mock:
        mock.add_error(503).add_error(503)
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                client.complete("hi", model="gpt-sol")
        assert client.breaker("openai").state == "open"  # type: ignore[union-attr]
        with pytest.raises(CircuitOpenError):
            client.complete("hi", model="gpt-sol")
        assert len(mock.calls) == 2  # the open circuit sent nothing

        # Other providers are unaffected, and an open circuit moves straight to a fallback.
        assert client.complete("hi", model="gpt-sol", fallbacks=["claude-haiku"]).text == "mock response"
        assert mock.requests[-1].model == "anthropic/claude-haiku-5-5"

        now[0] += 11  # cool-down over: one trial goes through; its failure re-opens the circuit
        mock.add_error(503)
        with pytest.raises(ServiceUnavailableError):
            client.complete("hi", model="gpt-sol")
        with pytest.raises(CircuitOpenError):
            client.complete("hi", model="gpt-sol")

        now[0] += 11  # a successful trial closes it
        assert client.complete("hi", model="gpt-sol").text == "mock response"
        assert client.breaker("openai").state == "closed"  # type: ignore[union-attr]


def test_caller_errors_do_not_open_the_circuit(tmp_path: Path) -> None:
    client = breaker_client(tmp_path, threshold=1)
    with MockProvider() as mock:
        mock.add_error(400).add_error(400)
        for _ in range(2):
            with pytest.raises(BadRequestError):
                client.complete("hi", model="gpt-sol")
        assert client.complete("hi", model="gpt-sol").text == "mock response"


def test_bad_circuit_breaker_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[circuit_breaker]\nfailure_threshold = 0\n")
    with pytest.raises(ConfigurationError, match="failure_threshold"):
        Client(config_path=str(config))
    config.write_text("[circuit_breaker]\ncooldwn = 3\n")
    with pytest.raises(ConfigurationError, match="cooldwn"):
        Client(config_path=str(config))


def test_stream_falls_back_before_the_first_chunk_only() -> None:
    with MockProvider() as mock:
        mock.add_error(503).add_stream(["from ", "fallback"])
        stream = Client(max_retries=0).stream("hi", model="claude-sonnet", fallbacks=["gpt-sol"])
        assert "".join(c.text for c in stream) == "from fallback"
        assert [a.provider for a in stream.completion.attempts] == ["anthropic", "openai"]

        mock.add_stream(["half ", "way"], error_after=1, error=ServiceUnavailableError).add_reply("unused")
        stream = Client(max_retries=0).stream("hi", model="claude-sonnet", fallbacks=["gpt-sol"])
        with pytest.raises(ServiceUnavailableError) as caught:
            list(stream)
    assert caught.value.partial_text == "half "
    assert mock.pending == 1  # no fallback once text had reached the caller


def test_deadline_covers_retries_and_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(retry_module, "monotonic", lambda: now[0])

    def slow(request):  # type: ignore[no-untyped-def]
        now[0] += 4  # each attempt burns 4 s of a 10 s deadline
        raise RequestTimeoutError("slow")

    with MockProvider() as mock:
        mock.respond_with(slow)
        with pytest.raises(RequestTimeoutError) as caught:
            Client(max_retries=5).complete("hi", model="gpt-sol", fallbacks=["gemini-flash", "claude-haiku"], timeout=10)
    assert len(mock.calls) == 3  # 4 s + 4 s + 4 s: the third attempt overran, nothing else was sent
    assert "deadline of 10s was exceeded" in str(caught.value)  # the fallbacks found no time left
    assert [a.model for a in caught.value.attempts] == ["gpt-6.2-sol", "gemini-3.8-flash"]
    assert sum(mock.sleeps) < 10


def test_unsupported_feature_on_a_fallback_is_skipped_not_sent() -> None:
    client = Client(providers={"lite": {"type": "mock"}}, aliases={"lite-model": "lite/x"})

    class NoTools(MockProvider):
        def capabilities(self, model):  # type: ignore[no-untyped-def]
            from fmclient.providers.base import Capabilities

            return Capabilities(tools=False)

    with NoTools() as mock, pytest.raises(UnsupportedFeatureError):
        client.complete("hi", model="lite-model", tools=[{"name": "f"}])
    assert mock.calls == []


FAULTS = [RateLimitError, ServiceUnavailableError, APIConnectionError, RequestTimeoutError, BadRequestError]


def _oracle(faults: list[type[FMClientError]], max_retries: int) -> tuple[type[FMClientError] | None, int]:
    """What the retry layer must do with these queued faults: (error raised or None, requests made)."""
    for attempt, fault in enumerate(faults[: max_retries + 1], start=1):
        if not fault.default_retryable or attempt == max_retries + 1:
            return fault, attempt
    return None, min(len(faults), max_retries + 1) + 1


def test_soak_random_faults_every_call_accounted_for() -> None:
    """Thousands of calls with seeded random faults: each succeeds with its own text or raises a
    typed error; nothing hangs, nothing untyped escapes, no reply is lost or duplicated."""
    rng = random.Random(20261128)
    client = Client(max_retries=2)
    outcomes = {"ok": 0, "error": 0}
    with MockProvider() as mock:
        mock.respond_with(lambda request: f"reply to {request.messages[0].text}")
        for i in range(3000):
            faults = [rng.choice(FAULTS) for _ in range(rng.choice([0, 0, 0, 1, 2, 3]))]
            for fault in faults:
                mock.add_error(fault)
            streaming = i % 3 == 0
            expected_error, expected_calls = _oracle(faults, max_retries=2)
            before = len(mock.calls)
            try:
                if streaming:
                    text = "".join(c.text for c in client.stream(f"call {i}", model="gpt-sol"))
                else:
                    text = client.complete(f"call {i}", model="gpt-sol").text
            except FMClientError as error:
                outcomes["error"] += 1
                assert type(error) is expected_error
            else:
                outcomes["ok"] += 1
                assert expected_error is None
                assert text == f"reply to call {i}"  # its own reply: none lost, none swapped
            assert len(mock.calls) - before == expected_calls
            mock._script.clear()  # faults left after a non-retryable one must not leak into the next call
    assert outcomes["ok"] > 1500 and outcomes["error"] > 100
    assert len(mock.calls) >= 3000


async def test_async_soak_concurrent_calls_get_their_own_replies() -> None:
    client = Client(max_retries=3)
    rng = random.Random(7)
    with MockProvider() as mock:
        mock.respond_with(lambda request: request.messages[0].text.upper())
        for _ in range(300):
            mock.add_error(rng.choice([RateLimitError, ServiceUnavailableError]))
        results = await asyncio.gather(
            *(client.acomplete(f"msg {i}", model="claude-haiku") for i in range(500)), return_exceptions=True
        )
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            assert isinstance(result, FMClientError)
        else:
            assert result.text == f"MSG {i}"
    assert sum(not isinstance(r, BaseException) for r in results) >= 450
