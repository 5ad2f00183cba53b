"""The one retry layer (tenacity): what is retried, how long to wait, and the whole-call deadline.

SDK clients are built with their own retries off, so the attempts counted here are the requests
the provider sees. Only errors marked ``retryable`` are retried (429, 408, 5xx, 529, connection
failures, timeouts); never 400/401/403/404. A provider's ``Retry-After`` is honoured exactly; when
it asks for longer than ``max_retry_wait`` (or longer than the deadline leaves), the error is
raised at once instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fmclient.errors import FMClientError, RequestTimeoutError

if TYPE_CHECKING:
    import logging

    from tenacity import RetryCallState

__all__ = ["Deadline", "RetryPolicy", "acall_with_retries", "call_with_retries"]

T = TypeVar("T")


def _log() -> logging.Logger:
    # logging (and random, below) load on the first retry: `import fmclient` stays light.
    import logging

    return logging.getLogger("fmclient")


# Looked up at call time so tests (and fmclient.testing) can replace them with a fake clock.
sleep: Callable[[float], None] = time.sleep


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


asleep: Callable[[float], Awaitable[None]] = _asyncio_sleep
monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_wait: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        import random

        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Deadline:
    """The time left for a whole call, retries and fallbacks included."""

    __slots__ = ("_end", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else monotonic() + timeout

    def remaining(self) -> float | None:
        if self._end is None:
            return None
        return self._end - monotonic()

    def check(self, provider: str | None = None, model: str | None = None) -> float | None:
        """Seconds left for the next attempt; raise if none are."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise RequestTimeoutError(
                f"the call's deadline of {self.timeout:g}s was exceeded",
                provider=provider,
                model=model,
                retryable=False,
            )
        return left


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, FMClientError) and exc.retryable


class _Policy:
    """tenacity hooks bound to one call: wait, stop and logging."""

    __slots__ = ("deadline", "on_retry", "policy")

    def __init__(
        self, policy: RetryPolicy, deadline: Deadline, on_retry: Callable[[FMClientError, float], None] | None
    ) -> None:
        self.policy = policy
        self.deadline = deadline
        self.on_retry = on_retry

    def wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        return self.policy.backoff(state.attempt_number)

    def stop(self, state: RetryCallState) -> bool:
        if state.attempt_number > self.policy.max_retries:
            return True
        upcoming = state.upcoming_sleep
        if upcoming > self.policy.max_retry_wait:
            _log().info("not retrying: provider asked to wait %.1fs, over max_retry_wait", upcoming)
            return True
        left = self.deadline.remaining()
        return left is not None and upcoming >= left

    def before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        _log().info(
            "retrying after %s (attempt %d of %d) in %.2fs: %s",
            type(error).__name__,
            state.attempt_number + 1,
            self.policy.max_retries + 1,
            state.upcoming_sleep,
            error,
        )
        if self.on_retry is not None and isinstance(error, FMClientError):
            self.on_retry(error, state.upcoming_sleep)


def _sync_sleep(seconds: float) -> None:
    sleep(seconds)


async def _async_sleep(seconds: float) -> None:
    await asleep(seconds)


def call_with_retries(
    attempt: Callable[[float | None], T],
    policy: RetryPolicy,
    deadline: Deadline,
    *,
    provider: str | None = None,
    model: str | None = None,
    on_retry: Callable[[FMClientError, float], None] | None = None,
) -> T:
    """Run ``attempt(time_left)`` until it succeeds, fails for good, or time runs out.

    ``on_retry(error, wait)`` is told of each retry before its wait (the call's hooks use it).
    """
    # The first attempt runs without tenacity: on the hot path (success, or an error that is not
    # retried) building a Retrying and its call state costs more than everything else fmclient
    # does per call. A retryable failure hands over to tenacity, which replays that failure as its
    # own first attempt, so stop/wait/log decisions and attempt counts are exactly tenacity's.
    try:
        return attempt(deadline.check(provider, model))
    except FMClientError as error:
        if not error.retryable:
            raise
        first = error
    # tenacity (and the asyncio it pulls in) loads on the first retry, not on `import fmclient`.
    from tenacity import Retrying, retry_if_exception

    hooks = _Policy(policy, deadline, on_retry)
    retrying = Retrying(
        stop=hooks.stop,
        wait=hooks.wait,
        retry=retry_if_exception(_is_retryable),
        before_sleep=hooks.before_sleep,
        sleep=_sync_sleep,
        reraise=True,
    )
    replay: list[FMClientError] = [first]

    def once() -> T:
        if replay:
            raise replay.pop()
        return attempt(deadline.check(provider, model))

    return retrying(once)


async def acall_with_retries(
    attempt: Callable[[float | None], Awaitable[T]],
    policy: RetryPolicy,
    deadline: Deadline,
    *,
    provider: str | None = None,
    model: str | None = None,
    on_retry: Callable[[FMClientError, float], None] | None = None,
) -> T:
    """The async twin of :func:`call_with_retries`."""
    try:
        return await attempt(deadline.check(provider, model))
    except FMClientError as error:
        if not error.retryable:
            raise
        first = error
    from tenacity import AsyncRetrying, retry_if_exception

    hooks = _Policy(policy, deadline, on_retry)
    retrying = AsyncRetrying(
        stop=hooks.stop,
        wait=hooks.wait,
        retry=retry_if_exception(_is_retryable),
        before_sleep=hooks.before_sleep,
        sleep=_async_sleep,
        reraise=True,
    )
    replay: list[FMClientError] = [first]

    async def once() -> T:
        if replay:
            raise replay.pop()
        return await attempt(deadline.check(provider, model))

    return await retrying(once)
