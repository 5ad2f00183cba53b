"""An optional per-provider circuit breaker.

After ``failure_threshold`` consecutive calls to a provider fail on the provider's side
(retryable errors, after retries), the circuit opens: calls to that provider fail at once with
:class:`CircuitOpenError`, which moves a call on to its fallbacks without waiting. After
``cooldown`` seconds one trial call is let through (half-open): success closes the circuit,
failure opens it for another cool-down. Configure it in the config file::

    [circuit_breaker]
    failure_threshold = 5
    cooldown = 30
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from fmclient import retry
from fmclient.errors import ConfigurationError, ServiceUnavailableError

__all__ = ["CircuitBreaker", "CircuitOpenError", "breaker_from_settings"]


class CircuitOpenError(ServiceUnavailableError):
    """The provider failed repeatedly and is resting; the call was not sent."""

    default_retryable = False  # retrying at once is exactly what the breaker prevents


class CircuitBreaker:
    __slots__ = ("_failures", "_lock", "_opened_at", "_trial", "cooldown", "failure_threshold")

    def __init__(self, failure_threshold: int = 5, cooldown: float = 30.0) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if retry.monotonic() - self._opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        """May a call go to the provider now? In half-open state only one trial at a time."""
        return self.admit() is not None

    async def aprepare(self) -> None:
        """An async call is about to ask :meth:`admit`: a breaker whose state lives elsewhere (in
        Redis, fmclient.shared) reads it now, without blocking the event loop."""

    def admit(self) -> str | None:
        """Let a call through: ``"closed"`` for an ordinary call, ``"trial"`` for the one half-open
        trial (its caller must end it with record_success, record_failure or release), or None."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if retry.monotonic() - self._opened_at < self.cooldown or self._trial:
                return None
            self._trial = True
            return "trial"

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.failure_threshold:
                self._opened_at = retry.monotonic()
            self._trial = False

    def release(self) -> None:
        """A trial call ended for a reason that says nothing of the provider's health."""
        with self._lock:
            self._trial = False


def breaker_from_settings(table: Mapping[str, Any]) -> tuple[int, float] | None:
    """Validated (failure_threshold, cooldown) from the ``[circuit_breaker]`` table, or None."""
    if not table:
        return None
    unknown = sorted(set(table) - {"failure_threshold", "cooldown", "enabled"})
    if unknown:
        raise ConfigurationError(f"circuit_breaker: unknown setting {', '.join(map(repr, unknown))}")
    if table.get("enabled", True) is False:
        return None
    threshold = table.get("failure_threshold", 5)
    cooldown = table.get("cooldown", 30.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ConfigurationError("circuit_breaker.failure_threshold must be a positive integer")
    if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or not 0 <= cooldown < float("inf"):
        # "not 0 <= x < inf" also refuses NaN, which compares false with everything
        raise ConfigurationError(
            f"circuit_breaker.cooldown must be a finite, non-negative number of seconds, got {cooldown!r}"
        )
    return threshold, float(cooldown)
