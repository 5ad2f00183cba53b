"""The one exception hierarchy every provider failure is translated into.

Every error carries who failed (``provider``, ``model``), the HTTP-like ``status_code`` when there
was one, whether fmclient's retry layer may try again (``retryable``) and how long the provider
asked us to wait (``retry_after``, seconds). The provider SDK's exception is chained as
``__cause__`` so nothing is lost for debugging.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fmclient.secret import redact, scrub_exception

if TYPE_CHECKING:
    from fmclient.types import Completion

__all__ = [
    "APIConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "BatchItemCancelledError",
    "BatchItemExpiredError",
    "BatchItemMissingError",
    "BatchJobFailedError",
    "BudgetExceededError",
    "ConfigurationError",
    "ContentFilterError",
    "ContextWindowExceededError",
    "FMClientError",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServiceUnavailableError",
    "SharedStateUnavailableError",
    "StructuredOutputError",
    "ToolError",
    "UnsupportedFeatureError",
    "error_for_status",
    "parse_retry_after",
]


class FMClientError(Exception):
    """Base class of every error fmclient raises about a model call."""

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        partial_text: str | None = None,
    ) -> None:
        message = redact(message)
        # An error built while handling a provider SDK's exception is raised "from" it: the SDK's
        # exception becomes this one's cause, and a traceback prints its text (which may echo a
        # key) as well as ours.
        scrub_exception(sys.exc_info()[1])
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        # Text a stream had already delivered to the caller when it failed.
        self.partial_text = partial_text
        # Filled by the client when fallbacks were tried: one entry per model attempted.
        self.attempts: list[Any] = []

    #: Set when a tool loop (fmclient.tool_loop) stopped with this error: the run so far, nothing
    #: done is lost (its steps, messages, usage and cost).
    run: Any = None

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        status = f" (status {self.status_code})" if self.status_code is not None else ""
        return f"[{where}] {self.message}{status}" if where else f"{self.message}{status}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"model={self.model!r}, status_code={self.status_code!r}, "
            f"retryable={self.retryable!r})"
        )


class ConfigurationError(FMClientError):
    """Unknown model or alias, missing key, missing extra, bad config file."""


class BudgetExceededError(FMClientError):
    """The client's ``max_cost`` is spent; raised before a request leaves. Never retried, never a
    reason to fall back (another model would spend the same budget).

    ``spent`` and ``max_cost`` are the client's figures (Decimal, USD) when it was raised.
    """

    def __init__(self, message: str, *, spent: Any = None, max_cost: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.spent = spent
        self.max_cost = max_cost


class ToolError(FMClientError):
    """Raised by a tool (in a tool loop) to word the error the model sees: its message goes back
    to the model as the tool's error result, as written, and the run goes on."""


class SharedStateUnavailableError(FMClientError):
    """The shared state store (``[shared]``, Redis) did not answer and ``on_unavailable = "refuse"``:
    the call was not sent. Not the provider's fault: never counts against its circuit breaker."""


class UnsupportedFeatureError(FMClientError):
    """The request asks for something the model cannot do; raised before sending."""


class StructuredOutputError(FMClientError):
    """The reply did not validate against the requested response format.

    ``text`` holds the raw reply so the caller can inspect or repair it; ``completion`` the whole
    answer (usage, cost, message) when the model's reply came back whole and only its parse failed.
    """

    def __init__(self, message: str, *, text: str, completion: Completion | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.text = text
        self.completion = completion
        #: with ``output_retries``: every attempt's Completion (each one's ``.text``), in order,
        #: and their usage and cost summed (cost None when any attempt's is unknown)
        self.completions: list[Any] = []
        self.usage: Any = None
        self.cost: Any = None


class AuthenticationError(FMClientError):
    """401: the key is missing, wrong or expired."""


class PermissionDeniedError(FMClientError):
    """403: the key is valid but not allowed to do this."""


class BadRequestError(FMClientError):
    """400/422: the provider rejected the request as malformed."""


class ContextWindowExceededError(BadRequestError):
    """The prompt (plus requested output) does not fit in the model's context window."""


class ContentFilterError(BadRequestError):
    """The provider refused the input or output on safety grounds."""


class ModelNotFoundError(FMClientError):
    """404: the model id does not exist for this provider or account."""


class RateLimitError(FMClientError):
    """429: slow down; ``retry_after`` says for how long when the provider said."""

    default_retryable = True


class ServiceUnavailableError(FMClientError):
    """5xx or overloaded (Anthropic 529): the provider failed, try again later."""

    default_retryable = True


class RequestTimeoutError(FMClientError):
    """The request, or the whole call's deadline, ran out of time."""

    default_retryable = True


class APIConnectionError(FMClientError):
    """No usable connection: refused, reset, DNS, or a stream cut off mid-way."""

    default_retryable = True


class BatchItemExpiredError(FMClientError):
    """A provider batch job expired (its completion window ran out) before this item ran."""


class BatchItemCancelledError(FMClientError):
    """A provider batch job was cancelled before this item ran."""


class BatchJobFailedError(FMClientError):
    """A provider batch job failed as a whole (its input refused at validation, say), so this item
    never ran; the message holds the provider's reason (for this item's line, where it named one)."""


class BatchItemMissingError(FMClientError):
    """A provider batch job finished, but its results hold no answer and no error for this item."""


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str | None = None,
    model: str | None = None,
    retry_after: float | None = None,
) -> FMClientError:
    """The fmclient error for an HTTP status, shared by every adapter's error table.

    Adapters refine the result where the body says more (context window, content filter).
    """
    cls: type[FMClientError]
    if status == 401:
        cls = AuthenticationError
    elif status == 403:
        cls = PermissionDeniedError
    elif status == 404:
        cls = ModelNotFoundError
    elif status == 408:
        cls = RequestTimeoutError
    elif status == 413:
        cls = ContextWindowExceededError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:  # includes Anthropic's 529 "overloaded"
        cls = ServiceUnavailableError
    elif 400 <= status < 500:
        cls = BadRequestError
    else:
        cls = FMClientError
    return cls(message, provider=provider, model=model, status_code=status, retry_after=retry_after)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # only for the rare HTTP-date form; keeps `import fmclient` light

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
