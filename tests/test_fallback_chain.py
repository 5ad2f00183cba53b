"""The fallback walk: a fallback that cannot take the request (a feature it lacks, a missing key or
extra) is skipped, recorded in ``attempts``, and the walk goes on; such a skip never hides the
failure of a target that was tried (the primary's 429)."""

from __future__ import annotations

from typing import Any

import pytest

from fmclient import (
    Client,
    ConfigurationError,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedFeatureError,
)
from fmclient.providers.base import Capabilities
from fmclient.testing import MockProvider
from tests.fakes.openai import FakeOpenAI, error_reply
from tests.fakes.server import FakeServer

KEY = "sk-fallback-test-0123456789"


class PickyMock(MockProvider):
    """The mock, except that model ``keyless`` has no key and model ``plain`` takes no tools."""

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(tools=not model.endswith("plain"), embeddings=True)

    def check_ready(self, model: str) -> None:
        if model.endswith("keyless"):
            raise ConfigurationError("no API key for 'nokey': set NOKEY_API_KEY", provider="nokey")


def picky_client() -> Client:
    return Client(
        providers={"nokey": {"type": "openai"}, "notools": {"type": "openai"}, "backup": {"type": "openai"}},
        max_retries=0,
    )


TOOLS = [{"name": "lookup", "description": "look it up", "parameters": {"type": "object", "properties": {}}}]


def test_skipped_fallbacks_do_not_hide_the_primarys_429() -> None:
    with PickyMock() as mock:
        mock.add_error(429)
        with pytest.raises(RateLimitError) as caught:
            picky_client().complete("hi", model="openai/gpt-4o", tools=TOOLS, fallbacks=["nokey/keyless", "notools/plain"])
    assert len(mock.calls) == 1  # only the primary was sent to
    attempts = caught.value.attempts
    assert [(a.provider, a.model) for a in attempts] == [
        ("openai", "gpt-4o"),
        ("nokey", "keyless"),
        ("notools", "plain"),
    ]
    assert [type(a.error) for a in attempts] == [RateLimitError, ConfigurationError, UnsupportedFeatureError]
    assert [a.skipped for a in attempts] == [False, True, True]


def test_a_later_fallback_answers_after_skipped_ones() -> None:
    with PickyMock() as mock:
        mock.add_error(429)
        reply = picky_client().complete(
            "hi", model="openai/gpt-4o", tools=TOOLS, fallbacks=["nokey/keyless", "notools/plain", "backup/m"]
        )
    assert reply.text == "mock response"
    assert [c.request.model for c in mock.calls] == ["openai/gpt-4o", "backup/m"]
    assert [a.provider for a in reply.attempts] == ["openai", "nokey", "notools", "backup"]
    assert reply.attempts[-1].error is None


def test_skipped_fallbacks_in_a_stream_do_not_hide_the_primarys_error() -> None:
    with PickyMock() as mock:
        mock.add_error(503)
        stream = picky_client().stream("hi", model="openai/gpt-4o", tools=TOOLS, fallbacks=["nokey/keyless", "notools/plain"])
        with pytest.raises(ServiceUnavailableError) as caught:
            list(stream)
    assert len(caught.value.attempts) == 3


async def test_async_skipped_fallbacks_and_the_last_target_tried() -> None:
    with PickyMock() as mock:
        mock.add_error(429)
        with pytest.raises(RateLimitError) as caught:
            await picky_client().acomplete(
                "hi", model="openai/gpt-4o", tools=TOOLS, fallbacks=["nokey/keyless", "notools/plain"]
            )
        assert len(caught.value.attempts) == 3
        # The last target tried decides the error: here the backup's 503, not a skip after it.
        mock.add_error(429).add_error(503)
        with pytest.raises(ServiceUnavailableError) as caught_again:
            await picky_client().acomplete(
                "hi", model="openai/gpt-4o", tools=TOOLS, fallbacks=["backup/m", "nokey/keyless", "notools/plain"]
            )
    assert [a.skipped for a in caught_again.value.attempts] == [False, False, True, True]


# -- over the wire: real SDKs against the OpenAI fake -------------------------------------------
def wire_client(server: FakeServer, **extra: Any) -> Client:
    openai_table = {"type": "openai", "base_url": server.url + "/v1", "api_key": KEY}
    return Client(
        providers={"openai": openai_table, "backup": openai_table},
        # No ANTHROPIC_API_KEY in the test environment: the anthropic fallback has no key.
        max_retries=0,
        **extra,
    )


def test_over_the_wire_primary_429_keyless_and_unsupported_fallbacks(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    fake_server.queue(error_reply(429, "Rate limit reached", code="rate_limit_exceeded"))
    client = wire_client(fake_server)
    with pytest.raises(RateLimitError) as caught:
        # text-embedding-3-small is an embedding model: it takes no chat request.
        client.complete("hi", model="openai/gpt-4o", fallbacks=["claude-haiku", "openai/text-embedding-3-small"])
    assert caught.value.status_code == 429
    assert len(fake_server.requests) == 1
    attempts = caught.value.attempts
    assert [a.provider for a in attempts] == ["openai", "anthropic", "openai"]
    assert [type(a.error) for a in attempts] == [RateLimitError, ConfigurationError, UnsupportedFeatureError]
    assert "ANTHROPIC_API_KEY" in str(attempts[1].error)


def test_over_the_wire_a_later_fallback_answers(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake_server.queue(error_reply(429, "Rate limit reached", code="rate_limit_exceeded"))
    client = wire_client(fake_server)
    reply = client.complete(
        "hi", model="openai/gpt-4o", fallbacks=["claude-haiku", "openai/text-embedding-3-small", "backup/gpt-4o-mini"]
    )
    assert reply.text == "ok"
    assert [body["model"] for body in fake.bodies()] == ["gpt-4o", "gpt-4o-mini"]
    assert [(a.provider, a.skipped) for a in reply.attempts] == [
        ("openai", False),
        ("anthropic", True),
        ("openai", True),
        ("backup", False),
    ]
