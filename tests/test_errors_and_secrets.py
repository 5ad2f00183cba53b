"""The error hierarchy, Retry-After parsing, and keys that never show."""

from __future__ import annotations

import email.utils
import pickle
import time

import pytest

import fmclient
from fmclient import Client
from fmclient.errors import error_for_status, parse_retry_after
from fmclient.secret import Secret
from fmclient.testing import MockProvider

ALL_ERRORS = [
    "ConfigurationError",
    "AuthenticationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "RequestTimeoutError",
    "APIConnectionError",
    "BadRequestError",
    "ContextWindowExceededError",
    "ContentFilterError",
    "ModelNotFoundError",
    "UnsupportedFeatureError",
    "StructuredOutputError",
]


@pytest.mark.parametrize("name", ALL_ERRORS)
def test_every_error_is_importable_from_fmclient_and_in_one_hierarchy(name: str) -> None:
    assert issubclass(getattr(fmclient, name), fmclient.FMClientError)


def test_context_window_and_content_filter_are_bad_requests() -> None:
    assert issubclass(fmclient.ContextWindowExceededError, fmclient.BadRequestError)
    assert issubclass(fmclient.ContentFilterError, fmclient.BadRequestError)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, fmclient.BadRequestError, False),
        (401, fmclient.AuthenticationError, False),
        (403, fmclient.PermissionDeniedError, False),
        (404, fmclient.ModelNotFoundError, False),
        (408, fmclient.RequestTimeoutError, True),
        (413, fmclient.ContextWindowExceededError, False),
        (422, fmclient.BadRequestError, False),
        (429, fmclient.RateLimitError, True),
        (500, fmclient.ServiceUnavailableError, True),
        (503, fmclient.ServiceUnavailableError, True),
        (529, fmclient.ServiceUnavailableError, True),
    ],
)
def test_error_for_status(status: int, cls: type[fmclient.FMClientError], retryable: bool) -> None:
    error = error_for_status(status, "boom", provider="anthropic", model="claude", retry_after=2.0)
    assert type(error) is cls
    assert (error.status_code, error.retryable, error.retry_after) == (status, retryable, 2.0)
    assert str(error) == f"[anthropic/claude] boom (status {status})"


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "-5"}) == 0.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after({"retry-after": future}) <= 30  # type: ignore[operator]
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_secret_never_shows_itself() -> None:
    secret = Secret("sk-distinctive-0123456789")
    for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert "distinctive" not in text
    assert secret.get_secret_value() == "sk-distinctive-0123456789"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_a_provider_echoing_the_key_is_scrubbed_from_errors() -> None:
    Secret("sk-ant-echoed-key-0123456789abcdef")
    with MockProvider() as mock:
        mock.add_error(401, message="Incorrect API key provided: sk-ant-echoed-key-0123456789abcdef")
        with pytest.raises(fmclient.AuthenticationError) as caught:
            Client().complete("hi", model="claude-haiku")
    assert "echoed-key" not in str(caught.value) and "echoed-key" not in repr(caught.value)
    masked = fmclient.AuthenticationError("key sk-ant-echoe...cdef is wrong")
    assert "sk-ant-echoe" not in str(masked)


def test_unexpected_adapter_exceptions_become_fmclient_errors() -> None:
    class Broken(MockProvider):
        def complete(self, request):  # type: ignore[no-untyped-def]
            raise KeyError("adapter bug")

    with Broken() as _, pytest.raises(fmclient.FMClientError, match="unexpected KeyError") as caught:
        Client().complete("hi", model="gpt-sol")
    assert isinstance(caught.value.__cause__, KeyError)
