"""Client-side rate limits: requests and tokens per minute, per provider or per model.

Configured in the ``[rate_limits]`` table of the config file or as ``Client(rate_limits=...)``::

    [rate_limits."openai"]          # every model of the provider named "openai"
    rpm = 500
    tpm = 200000

    [rate_limits."openai/gpt-4o"]   # one model (its resolved id, or the alias the caller used)
    rpm = 100

A call takes a slot in every limit that matches its target (provider and model) before each
attempt's request leaves, and waits until all of them have room. Waiters are admitted first come,
first served: a later call only gets room left over after the earlier waiters it shares a limit
with, so a big call is never starved by small ones that keep fitting into the room it waits for.
The limits hold over any 60 s window (a sliding log, not a token bucket that allows bursts).
They are shared by every thread and asyncio task that uses one :class:`~fmclient.Client`: the
state sits behind one ``threading.Lock`` that is held only for bookkeeping, never across a wait.

Tokens: a call is charged an estimate before it is sent (:func:`estimate_tokens`, replaceable) and
the charge is corrected to the call's actual usage when the answer arrives (for a stream: when
its last chunk, which carries the usage, has arrived). A 429 pauses the call's limits for the
provider's ``Retry-After`` (1 s when it gave none). Rate-limit headers that the OpenAI and
Anthropic adapters copy onto ``Completion.rate_limit_headers`` and onto the first chunk of a
stream (``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*``, ``anthropic-ratelimit-*``) pause
them until the reset when the provider says the requests are used up or fewer tokens remain than
the call just cost.

Waiting counts inside the call's deadline. When the limits cannot admit the call before its
deadline, it raises :class:`~fmclient.errors.RateLimitError` at once, without sending anything.

Why not a library: ``limits`` (moving window) records one entry per unit of cost, so a
200,000-token-per-minute limit keeps up to 200,000 list entries per key; a charge cannot be
corrected after the fact; it reads the wall clock (``time.time``) with no injectable clock; it
only answers "allowed now?" with no wait; and its sync and async storages are separate objects,
so threads and tasks could not share one budget. ``aiolimiter`` is asyncio-only and a leaky
bucket (it admits bursts beyond N in a 60 s window). The sliding log below is a few dozen lines.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from fmclient.errors import ConfigurationError, RateLimitError

__all__ = ["PendingUsage", "RateLimit", "RateLimiter", "estimate_tokens", "parse_rate_limits"]

T = TypeVar("T")
WINDOW = 60.0

# Looked up at call time so tests can drive the limiter with a fake clock.
monotonic: Callable[[], float] = time.monotonic
sleep: Callable[[float], None] = time.sleep


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


asleep: Callable[[float], Awaitable[None]] = _asyncio_sleep

#: the seconds the attempt being sent waited for its rate limits (None: no limits): set by the
#: limiter around the attempt, read by the hooks' observer into ``AttemptInfo.rate_limit_wait``
_waited: ContextVar[float | None] = ContextVar("fmclient_rate_limit_wait", default=None)


def current_wait() -> float | None:
    """The seconds the attempt about to be sent waited for client-side rate limits, if any."""
    return _waited.get()


def estimate_tokens(request: Any) -> int:
    """A cheap pre-send estimate of a call's tokens: prompt characters / 4 plus ``max_tokens``.

    One small function so a real token counter can replace it. Embedding requests count their
    texts only.
    """
    chars = 0
    system = getattr(request, "system", None)
    if isinstance(system, str):
        chars += len(system)
    for message in getattr(request, "messages", None) or ():
        content = getattr(message, "content", None)
        if isinstance(content, str):
            chars += len(content)
        else:
            for part in content or ():
                text = getattr(part, "text", None)
                chars += len(text) if isinstance(text, str) else 0
    for text in getattr(request, "texts", None) or ():
        chars += len(text)
    return chars // 4 + 1 + (getattr(request, "max_tokens", None) or 0)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests and/or tokens per minute for one provider or model (None: not limited)."""

    rpm: int | None = None
    tpm: int | None = None


def parse_rate_limits(table: Any, where: str) -> dict[str, RateLimit]:
    """Check a ``[rate_limits]`` table: ``{"provider" or "provider/model": {rpm, tpm}}``."""
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{where}: [rate_limits] must be a table of provider or model names")
    found: dict[str, RateLimit] = {}
    for key, limit in table.items():
        if isinstance(limit, RateLimit):
            found[key] = limit
            continue
        if not isinstance(limit, Mapping):
            raise ConfigurationError(f'{where}: [rate_limits."{key}"] must be a table with rpm and/or tpm')
        unknown = sorted(set(limit) - {"rpm", "tpm"})
        if unknown:
            raise ConfigurationError(f"{where}: rate_limits.{key}: unknown setting {', '.join(map(repr, unknown))}")
        values: dict[str, int | None] = {}
        for name in ("rpm", "tpm"):
            value = limit.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigurationError(f"{where}: rate_limits.{key}.{name} must be a positive integer, got {value!r}")
            values[name] = value
        found[key] = RateLimit(**values)
    return found


class _Window:
    """A sliding 60 s log of weighted charges against one limit."""

    __slots__ = ("charges", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.charges: deque[list[float]] = deque()  # [time, weight]; weight corrected in place
        self.used = 0.0

    def wait(self, now: float, weight: float, held: float = 0.0) -> float:
        """Seconds until ``weight`` fits (0: it fits now), with ``held`` more held for earlier waiters now."""
        charges = self.charges
        while charges and charges[0][0] <= now - WINDOW:
            self.used -= charges.popleft()[1]
        # A call bigger than the whole limit would never fit: it waits for an empty window.
        need = min(weight, self.limit)
        excess = self.used + held + need - self.limit
        if excess <= 0:
            return 0.0
        for stamp, charged in charges:
            excess -= charged
            if excess <= 0:
                return stamp + WINDOW - now
        return WINDOW  # what is held now leaves the window a minute from now

    def charge(self, now: float, weight: float) -> list[float]:
        entry = [now, float(weight)]
        self.charges.append(entry)
        self.used += weight
        return entry


class _Bucket:
    __slots__ = ("paused_until", "requests", "tokens")

    def __init__(self, limit: RateLimit) -> None:
        self.requests = _Window(limit.rpm) if limit.rpm else None
        self.tokens = _Window(limit.tpm) if limit.tpm else None
        self.paused_until = 0.0


class _Ticket:
    """One admitted call: its charges, so they can be corrected to actual usage (or given back)."""

    __slots__ = ("buckets", "estimate", "request_entries", "token_entries")

    def __init__(
        self,
        buckets: list[_Bucket],
        estimate: int,
        request_entries: list[tuple[_Window, list[float]]],
        token_entries: list[tuple[_Window, list[float]]],
    ) -> None:
        self.buckets = buckets
        self.estimate = estimate
        self.request_entries = request_entries
        self.token_entries = token_entries


class _Waiter:
    """A call waiting for room, in its place in the line."""

    __slots__ = ("buckets", "estimate", "queued")

    def __init__(self, buckets: list[_Bucket], estimate: int) -> None:
        self.buckets = buckets
        self.estimate = estimate
        self.queued = False


class RateLimiter:
    """The rate limits of one client, shared by its threads and tasks.

    Admission is first come, first served: a call that has to wait takes its place in one line
    (threads and tasks alike), and a later call is admitted only into room left over after every
    earlier waiter that shares a limit with it: a large call is not starved by a stream of small
    ones that would each fit into the room it is waiting for. Each waiter charges its own
    admission when it looks, so a charge is stamped when the request really leaves.
    """

    def __init__(self, limits: Mapping[str, RateLimit]) -> None:
        self._limits = dict(limits)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._line: deque[_Waiter] = deque()

    def __bool__(self) -> bool:
        return bool(self._limits)

    def buckets_for(self, provider: str, model: str, requested: str | None = None) -> list[_Bucket]:
        """The limits a target is under: its provider's, its model's, and its alias's."""
        found = []
        for key in dict.fromkeys((provider, f"{provider}/{model}", requested)):
            if key is None or key not in self._limits:
                continue
            with self._lock:
                bucket = self._buckets.get(key)
                if bucket is None:
                    bucket = self._buckets[key] = _Bucket(self._limits[key])
            found.append(bucket)
        return found

    # -- admission ----------------------------------------------------------------------------
    @staticmethod
    def _delay(buckets: list[_Bucket], estimate: int, now: float, held: Mapping[int, float] | None = None) -> float:
        delay = 0.0
        for bucket in buckets:
            delay = max(delay, bucket.paused_until - now)
            if bucket.requests is not None:
                delay = max(delay, bucket.requests.wait(now, 1, held.get(id(bucket.requests), 0.0) if held else 0.0))
            if bucket.tokens is not None:
                delay = max(delay, bucket.tokens.wait(now, estimate, held.get(id(bucket.tokens), 0.0) if held else 0.0))
        return delay

    @staticmethod
    def _charge(buckets: list[_Bucket], estimate: int, now: float) -> _Ticket:
        requests, tokens = [], []
        for bucket in buckets:
            if bucket.requests is not None:
                requests.append((bucket.requests, bucket.requests.charge(now, 1)))
            if bucket.tokens is not None:
                tokens.append((bucket.tokens, bucket.tokens.charge(now, estimate)))
        return _Ticket(buckets, estimate, requests, tokens)

    def _wait_in_line(self, waiter: _Waiter, now: float) -> float:
        """The wait of ``waiter`` given everyone ahead of it in line (0: it may go now).

        Earlier waiters that fit now have their room held for them, so a later call fits only
        into what is left; an earlier waiter that does not fit closes its limits to everyone
        behind it for at least its own wait.
        """
        held: dict[int, float] = {}  # id(window) -> room held in it for earlier waiters
        blocked: dict[int, float] = {}  # id(bucket) -> the wait of an earlier waiter held in it
        for earlier in self._line:
            if earlier is waiter:
                break
            ahead = [blocked[id(b)] for b in earlier.buckets if id(b) in blocked]
            delay = max([self._delay(earlier.buckets, earlier.estimate, now, held), *ahead])
            if delay > 0:
                for bucket in earlier.buckets:
                    blocked[id(bucket)] = max(blocked.get(id(bucket), 0.0), delay)
                if all(id(bucket) in blocked for bucket in waiter.buckets):
                    break  # held up in every limit it is under: those further ahead cannot change that
                continue
            for bucket in earlier.buckets:
                if bucket.requests is not None:
                    held[id(bucket.requests)] = held.get(id(bucket.requests), 0.0) + 1
                if bucket.tokens is not None:
                    held[id(bucket.tokens)] = held.get(id(bucket.tokens), 0.0) + earlier.estimate
        ahead = [blocked[id(b)] for b in waiter.buckets if id(b) in blocked]
        return max([self._delay(waiter.buckets, waiter.estimate, now, held), *ahead])

    def _step(self, waiter: _Waiter) -> tuple[float, _Ticket | None]:
        """One look at the limits: the seconds to wait, or the call's admission."""
        with self._lock:
            # Read the clock under the lock: a time read before waiting for it may be stale by the
            # time the window is checked, and an admission charged at a stale time over-admits.
            now = monotonic()
            if not waiter.queued and not self._line:  # nobody waiting: the common case
                delay = self._delay(waiter.buckets, waiter.estimate, now)
            else:
                if not waiter.queued:
                    waiter.queued = True
                    self._line.append(waiter)
                delay = self._wait_in_line(waiter, now)
            if delay > 0:
                if not waiter.queued:
                    waiter.queued = True
                    self._line.append(waiter)
                return delay, None
            if waiter.queued:
                waiter.queued = False
                self._line.remove(waiter)
            return 0.0, self._charge(waiter.buckets, waiter.estimate, now)

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up (deadline, cancellation, error): it no longer holds anyone up."""
        with self._lock:
            if waiter.queued:
                waiter.queued = False
                self._line.remove(waiter)

    @staticmethod
    def _refuse(delay: float, left: float | None, where: Mapping[str, str]) -> None:
        if left is not None and delay >= left:
            raise RateLimitError(
                f"client-side rate limit: the call could not start within its deadline "
                f"(next slot in {delay:.1f}s, {max(left, 0.0):.1f}s left); nothing was sent",
                provider=where.get("provider"),
                model=where.get("model"),
                retryable=False,
            )

    def acquire(
        self,
        buckets: list[_Bucket],
        estimate: int,
        remaining: Callable[[], float | None],
        where: Any,
        reservation: Any = None,
    ) -> _Ticket:
        """Wait (blocking) for this call's turn and room in every bucket; refuse when the deadline comes first.

        ``reservation`` (the call's budget reservation) is taken already: only a shared limiter
        takes one with its admission."""
        waiter = _Waiter(buckets, estimate)
        try:
            while True:
                delay, ticket = self._step(waiter)
                if ticket is not None:
                    return ticket
                self._refuse(delay, remaining(), where)
                sleep(delay)
        except BaseException:
            self._leave(waiter)
            raise

    async def aacquire(
        self,
        buckets: list[_Bucket],
        estimate: int,
        remaining: Callable[[], float | None],
        where: Any,
        reservation: Any = None,
    ) -> _Ticket:
        """The async twin of :meth:`acquire` (same line: threads and tasks wait in one order)."""
        waiter = _Waiter(buckets, estimate)
        try:
            while True:
                delay, ticket = self._step(waiter)
                if ticket is not None:
                    return ticket
                self._refuse(delay, remaining(), where)
                await asleep(delay)
        except BaseException:  # a cancelled task must not hold its place (or its room)
            self._leave(waiter)
            raise

    # -- feedback -------------------------------------------------------------------------------
    def settle(self, ticket: _Ticket, actual_tokens: int | None, headers: Mapping[str, str] | None) -> None:
        """Correct the token charge to what the call used; obey the provider's rate-limit headers."""
        with self._lock:
            if actual_tokens is not None:
                for window, entry in ticket.token_entries:
                    window.used += actual_tokens - entry[1]
                    entry[1] = float(actual_tokens)
            if headers:
                pause = _pause_from_headers(headers, ticket.estimate if actual_tokens is None else actual_tokens)
                if pause > 0:
                    until = monotonic() + pause
                    for bucket in ticket.buckets:
                        bucket.paused_until = max(bucket.paused_until, until)

    def throttled(self, ticket: _Ticket, retry_after: float | None) -> None:
        """The provider answered 429: pause these limits for its Retry-After (1 s if none)."""
        until = monotonic() + (retry_after if retry_after is not None else 1.0)
        with self._lock:
            for bucket in ticket.buckets:
                bucket.paused_until = max(bucket.paused_until, until)


def _duration(value: str) -> float | None:
    """OpenAI's reset durations: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``."""
    total, number = 0.0, ""
    text = value.strip()
    i = 0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in units or not number:
            return None
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:  # a bare number: seconds
        total += float(number)
    return total


def _until(value: str) -> float | None:
    """Anthropic's resets are RFC 3339 times."""
    from datetime import datetime

    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, when.timestamp() - time.time())


def _pause_from_headers(headers: Mapping[str, str], cost: int) -> float:
    lowered = {k.lower(): v for k, v in headers.items()}
    pause = 0.0
    # Anthropic also counts input and output tokens apart: those pause only when used up.
    for kind, floor in (("requests", 1), ("tokens", cost), ("input-tokens", 1), ("output-tokens", 1)):
        for remaining_key, reset_key, parse in (
            (f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}", _duration),
            (f"anthropic-ratelimit-{kind}-remaining", f"anthropic-ratelimit-{kind}-reset", _until),
        ):
            remaining, reset = lowered.get(remaining_key), lowered.get(reset_key)
            if remaining is None or reset is None:
                continue
            try:
                left = float(remaining)
            except ValueError:
                continue
            if left < floor:
                seconds = parse(reset)
                if seconds is not None:
                    pause = max(pause, seconds)
    return pause


class PendingUsage:
    """An attempt's result whose usage arrives later: an opened stream.

    The limiter settles its rate-limit headers as soon as the attempt returns, and hands it the
    means to correct the token charge once the stream's usage is known (:meth:`settle_usage`).
    """

    __slots__ = ("_settle", "rate_limit_headers")

    def __init__(self, rate_limit_headers: Mapping[str, str] | None = None) -> None:
        self.rate_limit_headers = rate_limit_headers
        self._settle: Callable[[int], None] | None = None

    def settle_usage(self, total_tokens: int | None) -> None:
        """Correct the token charge to what the stream used (once; a stream cut short keeps its estimate)."""
        settle, self._settle = self._settle, None
        if settle is not None and total_tokens:  # 0: the provider reported no usage
            settle(total_tokens)


def _settle(limiter: RateLimiter, ticket: _Ticket, result: Any) -> None:
    limiter.settle(ticket, _used_tokens(result), getattr(result, "rate_limit_headers", None))
    if isinstance(result, PendingUsage):
        result._settle = lambda tokens: limiter.settle(ticket, tokens, None)


def _used_tokens(result: Any) -> int | None:
    usage = getattr(result, "usage", None)
    total = getattr(usage, "total_tokens", None)
    # 0 means the provider reported no usage: the estimate stands.
    return total if isinstance(total, int) and total > 0 else None


def limit_attempt(
    attempt: Callable[[float | None], T],
    limiter: RateLimiter,
    buckets: list[_Bucket],
    request: Any,
    deadline: Any,
    where: Mapping[str, str],
    reservation: Any = None,
) -> Callable[[float | None], T]:
    """Wrap one retry-layer attempt: wait for the limits, send, then settle the charge.

    ``reservation``: the target's budget reservation (fmclient.budget), which a limiter may take
    with its admission (the shared one does: one round trip to Redis for both).
    """
    estimate = estimate_tokens(request)

    def run(left: float | None) -> T:
        began = monotonic()
        ticket = limiter.acquire(buckets, estimate, deadline.remaining, where, reservation)
        waited = _waited.set(monotonic() - began)
        try:
            # The wait came out of the deadline: the request gets only what is left.
            result = attempt(left if left is None else deadline.remaining())
        except RateLimitError as error:
            limiter.throttled(ticket, error.retry_after)
            raise
        finally:
            _waited.reset(waited)
        _settle(limiter, ticket, result)
        return result

    return run


def alimit_attempt(
    attempt: Callable[[float | None], Awaitable[T]],
    limiter: RateLimiter,
    buckets: list[_Bucket],
    request: Any,
    deadline: Any,
    where: Mapping[str, str],
    reservation: Any = None,
) -> Callable[[float | None], Awaitable[T]]:
    """The async twin of :func:`limit_attempt`."""
    estimate = estimate_tokens(request)

    async def run(left: float | None) -> T:
        began = monotonic()
        ticket = await limiter.aacquire(buckets, estimate, deadline.remaining, where, reservation)
        waited = _waited.set(monotonic() - began)
        try:
            result = await attempt(left if left is None else deadline.remaining())
        except RateLimitError as error:
            limiter.throttled(ticket, error.retry_after)
            raise
        finally:
            _waited.reset(waited)
        _settle(limiter, ticket, result)
        return result

    return run
