"""State shared by many processes: rate limits, budgets and circuit breakers over Redis.

A provider's limits and a team's budget belong to the account, not to one Python process. With
the ``[shared]`` table (or ``Client(shared="redis://...")``) every process that uses the same
Redis and namespace shares them::

    [shared]
    url = "redis://127.0.0.1:6379/0"
    namespace = "team-a"            # key prefix: clients with the same one share state
    on_unavailable = "local"        # Redis down or slow: "local" (default) or "refuse"
    timeout = 0.25                  # seconds a Redis round trip may take

Without it nothing changes: limits, budget and breakers live in the process, as before. The
engine asks :func:`state_from_settings` for its limiter, budget and breakers and calls them
through the same methods whichever they are; only this module knows Redis is there.

Why redis-py Lua scripts and not the ``limits`` library with its Redis storage: an admission here
is one atomic decision over several limits at once (the provider's RPM and TPM and the model's),
with a first-come-first-served line across processes, a token charge corrected to actual usage
after the answer, and pauses from 429s and rate-limit headers. ``limits`` answers "is one key
under its limit now?" per key, cannot correct a charge, has no line and no "how long to wait", and
its moving window keeps one list entry per unit of cost (a 200,000-TPM limit is 200,000 entries).
A script runs on the server with Redis's clock (``TIME``), so machines with skewed clocks agree.

When Redis does not answer within ``timeout`` (down, unreachable, overloaded), ``on_unavailable``
decides: ``"local"`` goes on with this process's own limits, budget and breakers (today's state,
a warning logged once on the ``fmclient`` logger; Redis is tried again a few seconds later) and
``"refuse"`` fails the call with :class:`~fmclient.errors.SharedStateUnavailableError` before it
sends anything. A call never waits longer than ``timeout`` per round trip for Redis.

Round trips: a call under shared limits and a shared budget makes one before it is sent (the
admission script also takes the budget reservation) and one after (the budget's settle script
also corrects the limits' token charge). Async calls use redis.asyncio (one client per event
loop, the same scripts), so they never block their loop on Redis; what is recorded after an
answer (a release, a breaker outcome, a correction) runs as a task the call does not wait for,
except the budget's settle, which the call awaits so ``client.spent`` reads it on return. A
shared breaker is read on redis.asyncio before an async call's admission; only an open or
half-open circuit takes the blocking path of its admission (its trial lease).

Cluster mode is not supported: the scripts touch keys they build from the namespace.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from fmclient import limits as limits_module
from fmclient.budget import Budget, Reservation, budget_period_id
from fmclient.circuit import CircuitBreaker
from fmclient.errors import ConfigurationError, SharedStateUnavailableError
from fmclient.limits import RateLimit, RateLimiter, _Bucket, _pause_from_headers, _Ticket

__all__ = [
    "SHARED_KEYS",
    "SharedBudget",
    "SharedCircuitBreaker",
    "SharedRateLimiter",
    "SharedState",
    "check_shared_table",
    "state_from_settings",
]

T = TypeVar("T")
SHARED_KEYS = frozenset({"url", "namespace", "on_unavailable", "timeout"})
ON_UNAVAILABLE = ("local", "refuse")
#: after Redis failed, calls use local state this long before Redis is tried again
RETRY_REDIS_AFTER = 5.0
#: a waiter that stopped looking (its process died) leaves the line after this long
LINE_LEASE_MS = 3000
#: a waiter looks again at least this often (well inside its lease)
MAX_POLL = 0.5
#: budget amounts are kept in Redis as integer pico-USD (exact, 9 million USD per counter)
PICO = Decimal(10) ** 12
#: a budget reservation outlives its call's deadline by this long, then expires on its own (its
#: process died: the budget it held comes back)
RESERVATION_GRACE = 30.0
#: an async call's read of a closed circuit (SharedCircuitBreaker.aprepare) admits for this long
BREAKER_READ_FRESH = 0.5
#: how long a reservation of a call with no deadline is held at most
RESERVATION_NO_DEADLINE = 900.0

_log = logging.getLogger("fmclient")


def check_shared_table(table: Any, where: str) -> dict[str, Any]:
    """Validate a ``[shared]`` table (or the string of ``Client(shared=...)``: its url)."""
    if isinstance(table, str):
        table = {"url": table}
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{where}: [shared] must be a table (or shared= a redis:// url)")
    unknown = sorted(set(table) - SHARED_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown shared setting {', '.join(map(repr, unknown))}; known: {', '.join(sorted(SHARED_KEYS))}"
        )
    url = table.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://"))):
        raise ConfigurationError(f"{where}: shared.url must be a redis://, rediss:// or unix:// url")
    namespace = table.get("namespace", "fmclient")
    if not isinstance(namespace, str) or not namespace:
        raise ConfigurationError(f"{where}: shared.namespace must be a non-empty string")
    mode = table.get("on_unavailable", "local")
    if mode not in ON_UNAVAILABLE:
        raise ConfigurationError(f'{where}: shared.on_unavailable must be "local" or "refuse", got {mode!r}')
    timeout = table.get("timeout", 0.25)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 10:
        raise ConfigurationError(f"{where}: shared.timeout must be a number of seconds in (0, 10]")
    return dict(table)


def state_from_settings(table: Mapping[str, Any]) -> SharedState | None:
    """The shared state of a client, or None when ``[shared]`` has no url (everything stays local)."""
    if not table or not table.get("url"):
        return None
    return SharedState(
        str(table["url"]),
        namespace=str(table.get("namespace", "fmclient")),
        on_unavailable=str(table.get("on_unavailable", "local")),
        timeout=float(table.get("timeout", 0.25)),
    )


# -- the scripts ---------------------------------------------------------------------------------
# Times are milliseconds of the Redis server's clock. A requests limit (<p>:r) is one zset
# <p>:r:log (ticket->time): its size is the requests in the window. A tokens limit (<p>:t):
# <p>:t:log (zset ticket->time), <p>:t:w (hash ticket->weight), <p>:t:used (sum of weights in the
# window). <p>:pause (until when); the line: <p>:line (zset waiter->order), <p>:est (hash
# waiter->token estimate), <p>:lease (zset waiter->expiry).
# Every redis.call costs the server a few microseconds, and each call of fmclient runs this script:
# the common path (nothing waits, nothing in line) makes as few as it can.
_LUA_WINDOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- ms until one more request fits beside `held` (0: now); what left the window is evicted first
local function requests_wait(p, limit, held, now, window)
  local log = p .. ':log'
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  local excess = redis.call('ZCARD', log) + held + 1 - limit
  if excess <= 0 then return 0 end
  -- the excess-th oldest request leaving the window makes room
  local leaving = redis.call('ZRANGE', log, excess - 1, excess - 1, 'WITHSCORES')
  if #leaving == 0 then return window end
  return tonumber(leaving[2]) + window - now
end
local function charge_request(p, id, now, window)
  redis.call('ZADD', p .. ':log', now, id)
  redis.call('PEXPIRE', p .. ':log', window * 2)
end
-- evict the tokens that left the window; return the weight still in it
local function tokens_in(p, now, window)
  local old = redis.call('ZRANGEBYSCORE', p .. ':log', '-inf', now - window)
  if #old > 0 then
    local weights = redis.call('HMGET', p .. ':w', unpack(old))
    local gone = 0
    for _, w in ipairs(weights) do gone = gone + (tonumber(w) or 0) end
    redis.call('ZREMRANGEBYSCORE', p .. ':log', '-inf', now - window)
    redis.call('HDEL', p .. ':w', unpack(old))
    redis.call('INCRBY', p .. ':used', -gone)
  end
  return tonumber(redis.call('GET', p .. ':used') or '0')
end
-- ms until `weight` tokens fit beside `held` (0: now)
local function tokens_wait(p, limit, weight, held, now, window)
  local used = tokens_in(p, now, window)
  local excess = used + held + math.min(weight, limit) - limit
  if excess <= 0 then return 0 end
  local entries = redis.call('ZRANGE', p .. ':log', 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    excess = excess - (tonumber(redis.call('HGET', p .. ':w', entries[i])) or 0)
    if excess <= 0 then return tonumber(entries[i + 1]) + window - now end
  end
  return window
end
local function charge_tokens(p, id, weight, now, window)
  redis.call('ZADD', p .. ':log', now, id)
  redis.call('HSET', p .. ':w', id, weight)
  redis.call('INCRBY', p .. ':used', weight)
  -- The three keys get their expiry together, so they expire together, and only when it runs
  -- low (not on every call): the log and the weights hold the same tickets, so they are emptied
  -- (and made again, without an expiry) together, and the counter outlives neither. A log whose
  -- expiry is a window away or more expires after its newest ticket left the window.
  if redis.call('PTTL', p .. ':log') < window then
    redis.call('PEXPIRE', p .. ':log', window * 2)
    redis.call('PEXPIRE', p .. ':w', window * 2)
    redis.call('PEXPIRE', p .. ':used', window * 2)
  end
end
"""

# The budget (see SharedBudget): keys <c> the spend counter (integer pico-USD), <c>:held (hash
# reservation id -> pico-USD held), <c>:leases (zset reservation id -> expiry ms).
_LUA_BUDGET = """
-- is there room for `estimate` beside what is spent and reserved? {yes, spent, reserved}
local function budget_room(counter, held, leases, estimate, max, now)
  -- reservations whose process died (or outlived their call) give their room back
  local dead = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  if #dead > 0 then
    redis.call('HDEL', held, unpack(dead))
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  end
  local spent_text = redis.call('GET', counter) or '0'
  local spent, reserved = tonumber(spent_text), 0
  for _, amount in ipairs(redis.call('HVALS', held)) do reserved = reserved + tonumber(amount) end
  local room = max < 0 or (spent + reserved < max and spent + reserved + estimate <= max)
  return room, spent_text, tostring(reserved)
end
local function budget_hold(held, leases, id, estimate_text, lease, now)
  redis.call('HSET', held, id, estimate_text)
  redis.call('ZADD', leases, now + lease, id)
  -- Both hold the same reservations (emptied together), so one's expiry tells the other's; it
  -- is set to twice the lease when less than this lease is left, not on every call.
  if redis.call('PTTL', leases) < lease then
    redis.call('PEXPIRE', held, lease * 2)
    redis.call('PEXPIRE', leases, lease * 2)
  end
end
"""

# KEYS: the budget's three keys when ARGV[7] is '1', then each limit's prefix. ARGV: waiter id,
# order ('' the first time), token estimate, window ms, lease ms, the key of the fleet's order
# counter, '1' when a budget reservation is taken with the admission ('0' else), its id, its
# estimate (pico-USD), the budget's max (-1: none), its lease ms, then per limit: rpm, tpm (0: none).
# Returns {ms to wait (0: admitted), order}, or {-1, order, spent, reserved}: the budget refuses.
_ACQUIRE = (
    _LUA_WINDOW
    + _LUA_BUDGET
    + """
local id, est, window, lease = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
-- A first look has no place in line yet: everyone in line is ahead of it, and it takes a place
-- (the fleet's next order) only when it has to wait.
local order = tonumber(ARGV[2])
local ahead_of = order and ('(' .. order) or '+inf'
local budget = ARGV[7] == '1'
local first = budget and 4 or 1
if budget then
  -- a budget that cannot take the call refuses it at once, waiting or not
  local room, spent, reserved = budget_room(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[9]), tonumber(ARGV[10]), now)
  if not room then
    if ARGV[2] ~= '' then
      for i = first, #KEYS do
        redis.call('ZREM', KEYS[i] .. ':line', id)
        redis.call('ZREM', KEYS[i] .. ':lease', id)
        redis.call('HDEL', KEYS[i] .. ':est', id)
      end
    end
    return {-1, order or 0, spent, reserved}
  end
end
local delay = 0
for i = first, #KEYS do
  local p, n = KEYS[i], i - first + 1
  local rpm, tpm = tonumber(ARGV[10 + 2 * n]), tonumber(ARGV[11 + 2 * n])
  -- room is held for every earlier waiter: a later call only gets what is left after them
  local ahead = {}
  if order or redis.call('EXISTS', p .. ':line') == 1 then  -- nobody in line: the usual case
    -- waiters whose process stopped looking (killed) leave the line
    local dead = redis.call('ZRANGEBYSCORE', p .. ':lease', '-inf', now)
    if #dead > 0 then
      redis.call('ZREM', p .. ':line', unpack(dead))
      redis.call('HDEL', p .. ':est', unpack(dead))
      redis.call('ZREMRANGEBYSCORE', p .. ':lease', '-inf', now)
    end
    ahead = redis.call('ZRANGEBYSCORE', p .. ':line', '-inf', ahead_of)
  end
  local held_tokens = 0
  if #ahead > 0 and tpm > 0 then
    for _, e in ipairs(redis.call('HMGET', p .. ':est', unpack(ahead))) do
      held_tokens = held_tokens + (tonumber(e) or 0)
    end
  end
  local pause = tonumber(redis.call('GET', p .. ':pause') or '0')
  delay = math.max(delay, pause - now)
  if rpm > 0 then delay = math.max(delay, requests_wait(p .. ':r', rpm, #ahead, now, window)) end
  if tpm > 0 then delay = math.max(delay, tokens_wait(p .. ':t', tpm, est, held_tokens, now, window)) end
end
if delay <= 0 then
  for i = first, #KEYS do
    local p, n = KEYS[i], i - first + 1
    local rpm, tpm = tonumber(ARGV[10 + 2 * n]), tonumber(ARGV[11 + 2 * n])
    if rpm > 0 then charge_request(p .. ':r', id, now, window) end
    if tpm > 0 then charge_tokens(p .. ':t', id, est, now, window) end
    if order then  -- it waited in line: it leaves it
      redis.call('ZREM', p .. ':line', id)
      redis.call('ZREM', p .. ':lease', id)
      redis.call('HDEL', p .. ':est', id)
    end
  end
  if budget then budget_hold(KEYS[2], KEYS[3], ARGV[8], ARGV[9], tonumber(ARGV[11]), now) end
  return {0, order or 0}
end
if not order then order = redis.call('INCR', ARGV[6]) end
for i = first, #KEYS do
  local p = KEYS[i]
  redis.call('ZADD', p .. ':line', order, id)
  redis.call('HSET', p .. ':est', id, est)
  redis.call('ZADD', p .. ':lease', now + lease, id)
  for _, k in ipairs({':line', ':est', ':lease'}) do redis.call('PEXPIRE', p .. k, lease * 2) end
end
return {math.max(1, delay), order}
"""
)

# KEYS: limit prefixes. ARGV: waiter id. A waiter gives up its place.
_LEAVE = """
for _, p in ipairs(KEYS) do
  redis.call('ZREM', p .. ':line', ARGV[1])
  redis.call('ZREM', p .. ':lease', ARGV[1])
  redis.call('HDEL', p .. ':est', ARGV[1])
end
return 0
"""

# KEYS: limit prefixes. ARGV: ticket id, actual tokens (-1: unknown), pause ms (0: none).
_LUA_SETTLE = """
-- correct a ticket's token charge to `actual` (-1: unknown) and pause its limits `pause` ms
local function settle_limits(prefixes, id, actual, pause, now)
  for _, p in ipairs(prefixes) do
    if actual >= 0 then
      local old = redis.call('HGET', p .. ':t:w', id)
      if old then
        redis.call('HSET', p .. ':t:w', id, actual)
        redis.call('INCRBY', p .. ':t:used', actual - tonumber(old))
      end
    end
    if pause > 0 then
      local until_ms = now + pause
      if until_ms > tonumber(redis.call('GET', p .. ':pause') or '0') then
        redis.call('SET', p .. ':pause', until_ms, 'PX', pause + 1000)
      end
    end
  end
end
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: limit prefixes. ARGV: ticket id, actual tokens (-1: unknown), pause ms (0: none).
_SETTLE = (
    _LUA_SETTLE
    + """
settle_limits(KEYS, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), clock_ms())
return 0
"""
)

# KEYS[1]: breaker hash, KEYS[2]: trial lease. ARGV: cooldown ms, trial lease ms.
_BREAKER_ADMIT = """
local opened = redis.call('HGET', KEYS[1], 'opened')
if not opened then return 'closed' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(opened) < tonumber(ARGV[1]) then return 'no' end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return 'trial' end
return 'no'
"""

# KEYS[1]: breaker hash, KEYS[2]: trial lease. ARGV: failure threshold.
_BREAKER_FAILURE = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local trial = redis.call('DEL', KEYS[2])
if trial == 1 or failures >= tonumber(ARGV[1]) then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'opened', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
return failures
"""

# KEYS: the budget's three keys. ARGV: reservation id ('' only checks), estimate (pico-USD), max
# (-1: no limit), lease ms. Returns {1 reserved | 0 refused, spent, reserved}.
_BUDGET_RESERVE = (
    _LUA_BUDGET
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local room, spent, reserved = budget_room(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[2]), tonumber(ARGV[3]), now)
if not room then return {0, spent, reserved} end
if ARGV[1] ~= '' then budget_hold(KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[4]), now) end
return {1, spent, reserved}
"""
)

# KEYS: as _BUDGET_RESERVE, then the limit prefixes of the rate-limit corrections that go with it.
# ARGV: reservation id ('' none), the real cost in pico-USD (-1: unknown
# or failed: only release), the counter's time to live in seconds (0: none). Returns the spend.
# or failed: only release), the counter's time to live in seconds (0: none), the number of
# rate-limit corrections, then per correction: its number of prefixes, ticket id, actual tokens.
_BUDGET_SETTLE = (
    _LUA_SETTLE
    + """
local next_key, next_arg = 4, 5
for _ = 1, tonumber(ARGV[4]) do
  local count = tonumber(ARGV[next_arg])
  local prefixes = {}
  for i = 0, count - 1 do prefixes[#prefixes + 1] = KEYS[next_key + i] end
  settle_limits(prefixes, ARGV[next_arg + 1], tonumber(ARGV[next_arg + 2]), 0, 0)
  next_key, next_arg = next_key + count, next_arg + 3
end
if ARGV[1] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if tonumber(ARGV[2]) >= 0 then
  local spent = redis.call('INCRBY', KEYS[1], ARGV[2])
  if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
  return spent
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
"""
)

_BREAKER_STATE = """
local opened = redis.call('HGET', KEYS[1], 'opened')
if not opened then return 'closed' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(opened) < tonumber(ARGV[1]) then return 'open' end
return 'half-open'
"""

_SCRIPTS = {
    "acquire": _ACQUIRE,
    "leave": _LEAVE,
    "settle": _SETTLE,
    "breaker_admit": _BREAKER_ADMIT,
    "breaker_failure": _BREAKER_FAILURE,
    "breaker_state": _BREAKER_STATE,
    "budget_reserve": _BUDGET_RESERVE,
    "budget_settle": _BUDGET_SETTLE,
}


class SharedState:
    """One Redis connection pool and the fallback policy, for a client's limiter, budget and breakers.

    Each thread keeps one connection of the pool for its round trips (:meth:`connection`): taking
    one from the pool and giving it back for every command costs about as much as a small
    script's run on the server (a lock, a probe of the socket, bookkeeping), twice per call.
    """

    def __init__(self, url: str, *, namespace: str = "fmclient", on_unavailable: str = "local", timeout: float = 0.25):
        try:
            import redis
        except ImportError:
            raise ConfigurationError("[shared] needs redis-py: pip install 'fmclient[redis]'") from None
        self.namespace = namespace
        self.on_unavailable = on_unavailable
        self.timeout = timeout
        # Short socket timeouts: a Redis round trip never adds more than `timeout` to a call.
        self.redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._url = url  # for the async clients; never logged (it may hold a password)
        # Async calls use redis.asyncio (the event loop never blocks on Redis): one client per
        # event loop, since its connections belong to the loop that made them.
        self._async: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Any]]] = weakref.WeakKeyDictionary()
        self._background: set[Any] = set()  # outcomes recorded without holding up an async call
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        self._down_until = 0.0
        self._warned = False
        self._lock = threading.Lock()
        self._held = threading.local()  # this thread's client and the process that made it
        self._acquire = self._script(_ACQUIRE)
        self._leave = self._script(_LEAVE)
        self._settle = self._script(_SETTLE)
        self._breaker_admit = self._script(_BREAKER_ADMIT)
        self._breaker_failure = self._script(_BREAKER_FAILURE)
        self._breaker_state = self._script(_BREAKER_STATE)
        self._budget_reserve = self._script(_BUDGET_RESERVE)
        self._budget_settle = self._script(_BUDGET_SETTLE)

    def _script(self, source: str) -> Callable[..., Any]:
        """A script run on this thread's connection: EVALSHA sent and its reply read on the
        connection itself (redis-py's command layer around it, a lock, a retry wrapper and its
        metrics hooks, measured ~6 µs a round trip); loaded once when Redis lacks it (NOSCRIPT).
        A failed send or read disconnects the connection (redis-py does), so the next round trip
        reconnects and never reads a stale reply."""
        import redis

        script = self.redis.register_script(source)
        connection = self.connection
        missing = redis.exceptions.NoScriptError

        def run(keys: list[str], args: list[Any]) -> Any:
            client = connection()
            try:
                client.connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return client.connection.read_response()
            except missing:  # Redis restarted or flushed its scripts: redis-py loads it again
                return script(keys=keys, args=args, client=client)

        return run

    def connection(self) -> Any:
        """This thread's Redis client: one connection of the pool, kept by the thread.

        It goes back to the pool when the thread ends (redis-py's client releases it when it is
        collected with the thread's locals). A child process (fork) takes its own: a socket
        shared with the parent would mix their answers. A round trip that failed closed the
        connection (redis-py disconnects it), so the next one reconnects and reads no stale answer.
        """
        held = self._held
        client = getattr(held, "client", None)
        if client is None or held.pid != os.getpid():
            import redis

            held.client = None
            # Taking the connection connects: inside the caller's run(), whose fallback catches it.
            client = redis.Redis(connection_pool=self.redis.connection_pool, single_connection_client=True)
            held.client, held.pid = client, os.getpid()
        return client

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    @property
    def available(self) -> bool:
        """False while Redis is known to be down (then calls use local state or are refused)."""
        return time.monotonic() >= self._down_until

    def run(self, operation: Callable[[], T], what: str) -> T | None:
        """One Redis round trip; None when Redis did not answer and the fallback is local state.

        With ``on_unavailable = "refuse"`` a failed round trip raises SharedStateUnavailableError.
        """
        if not self.available and self.on_unavailable == "local":
            return None
        try:
            result = operation()
        except self._errors as error:
            self._unavailable(error, what)
            return None
        return result

    async def arun(self, operation: Callable[[dict[str, Any]], Awaitable[T]], what: str) -> T | None:
        """The async twin of :meth:`run` on redis.asyncio: ``operation`` gets this loop's scripts
        (by name: "acquire", "budget_reserve", ...) and awaits its round trip."""
        if not self.available and self.on_unavailable == "local":
            return None
        try:
            result = await operation(self._async_scripts())
        except self._errors as error:
            self._unavailable(error, what)
            return None
        return result

    def _async_scripts(self) -> dict[str, Any]:
        import asyncio

        loop = asyncio.get_running_loop()
        found = self._async.get(loop)
        if found is None:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
            idle = _IdleConnections(client)
            scripts: dict[str, Any] = {
                name: idle.script(client.register_script(source)) for name, source in _SCRIPTS.items()
            }
            scripts["client"] = client  # for plain commands
            found = self._async[loop] = (client, scripts)
        return found[1]

    def in_background(self, operation: Callable[[dict[str, Any]], Awaitable[Any]], what: str) -> Any:
        """Start an async round trip without waiting for it (an outcome recorded after an async
        call's answer); returns its task, which never raises."""

        async def quietly() -> Any:
            try:
                return await self.arun(operation, what)
            except SharedStateUnavailableError:
                return None  # recorded after the answer: Redis failing then must not fail anything

        return self.background(quietly())

    def background(self, work: Awaitable[Any]) -> Any:
        """Run ``work`` as a task of the running loop, kept until it is done; returns the task."""
        import asyncio

        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _unavailable(self, error: BaseException, what: str) -> None:
        """Redis did not answer: go on locally (None), or refuse with on_unavailable = "refuse"."""
        self._down_until = time.monotonic() + RETRY_REDIS_AFTER
        if self.on_unavailable == "refuse":
            raise SharedStateUnavailableError(
                f"shared state unavailable ({what}): Redis did not answer ({type(error).__name__}); "
                "no request was sent (on_unavailable = 'refuse')",
                retryable=False,
            ) from error
        with self._lock:
            warn, self._warned = not self._warned, True
        if warn:  # once per client: every call would repeat it
            _log.warning(
                "shared state unavailable (%s: %s): this process goes on with its own rate limits, "
                "budget and circuit breakers (on_unavailable = 'local'); Redis is tried again every %ss",
                what,
                type(error).__name__,
                RETRY_REDIS_AFTER,
            )

    def limiter(self, limits: Mapping[str, RateLimit]) -> SharedRateLimiter:
        return SharedRateLimiter(self, limits)

    def budget(self, max_cost: Decimal, name: str, period: str | None) -> SharedBudget:
        return SharedBudget(self, max_cost, name, period)

    def breaker(self, provider: str, failure_threshold: int, cooldown: float) -> SharedCircuitBreaker:
        return SharedCircuitBreaker(self, provider, failure_threshold, cooldown)

    def close(self) -> None:
        self.redis.close()

    async def aclose(self) -> None:
        """Close this event loop's async client too (the others' loops are closed or not ours)."""
        import asyncio

        found = self._async.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()
        self.close()


class _IdleConnections:
    """An event loop's connections between its scripts' round trips, reused as they are.

    redis.asyncio's pool probes a connection's socket each time it hands it out (measured ~24 µs
    a round trip); a connection that just read its reply in full needs no probe. One that failed
    or was cancelled mid-round-trip (its reply may still come) goes back to the pool instead,
    which probes it (and redis-py disconnects it on such a failure)."""

    __slots__ = ("_client", "_idle")

    def __init__(self, client: Any) -> None:
        self._client = client
        self._idle: list[Any] = []

    def script(self, script: Any) -> Callable[..., Awaitable[Any]]:
        import redis

        missing, refused = redis.exceptions.NoScriptError, redis.exceptions.ResponseError

        async def run(keys: list[str], args: list[Any]) -> Any:
            pool = self._client.connection_pool
            connection = self._idle.pop() if self._idle else await pool.get_connection()
            try:
                await connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                reply = await connection.read_response()
            except missing:  # Redis restarted or flushed its scripts: loaded again, on the pool
                self._idle.append(connection)
                return await script(keys=keys, args=args)
            except refused:  # the script's own error: the connection read its reply in full
                self._idle.append(connection)
                raise
            except BaseException:
                await pool.release(connection)
                raise
            self._idle.append(connection)
            return reply

        return run


def _loop_running() -> bool:
    """Is this code running on an event loop (an async call), where a round trip must not block?"""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- rate limits ---------------------------------------------------------------------------------
class _SharedBucket:
    """One limit: its key prefix in Redis, and its local twin for when Redis is down."""

    __slots__ = ("limit", "local", "prefix")

    def __init__(self, prefix: str, limit: RateLimit, local: _Bucket) -> None:
        self.prefix = prefix
        self.limit = limit
        self.local = local


class _SharedTicket:
    __slots__ = ("buckets", "estimate", "id", "reservation")

    def __init__(
        self, ticket_id: str, buckets: list[_SharedBucket], estimate: int, reservation: _SharedReservation | None
    ) -> None:
        self.id = ticket_id
        self.buckets = buckets
        self.estimate = estimate
        # The call's budget reservation: the correction of the token charge rides with its settle.
        self.reservation = reservation


class SharedRateLimiter(RateLimiter):
    """:class:`fmclient.limits.RateLimiter`'s interface over Redis: one limit for every process.

    Admission, the line and the window are one Lua script (see the module docstring): the
    oldest waiter of the whole fleet goes first; the window is the same sliding log as in
    process. Each look at the limits is one round trip; a waiter sleeps until the next slot the
    script names (at most :data:`MAX_POLL`, so its place in line stays leased).
    """

    def __init__(self, state: SharedState, limits: Mapping[str, RateLimit]) -> None:
        # The in-process limiter it is, too: used while Redis does not answer (on_unavailable="local").
        super().__init__(limits)
        self._state = state

    def buckets_for(self, provider: str, model: str, requested: str | None = None) -> list[Any]:
        local = super().buckets_for(provider, model, requested)
        keys = [k for k in dict.fromkeys((provider, f"{provider}/{model}", requested)) if k and k in self._limits]
        return [
            _SharedBucket(self._state.key("rl", key), self._limits[key], b) for key, b in zip(keys, local, strict=True)
        ]

    def _look(
        self,
        buckets: list[_SharedBucket],
        waiter: str,
        order: str,
        estimate: int,
        reservation: _SharedReservation | None,
    ) -> tuple[float, str] | None:
        """One look at the limits (and the budget, when its reservation is taken with the admission)."""
        keys, args = self._look_call(buckets, waiter, order, estimate, reservation)
        answer = self._state.run(lambda: self._state._acquire(keys=keys, args=args), "rate limit")
        return None if answer is None else self._looked(answer, reservation)

    async def _alook(
        self,
        buckets: list[_SharedBucket],
        waiter: str,
        order: str,
        estimate: int,
        reservation: _SharedReservation | None,
    ) -> tuple[float, str] | None:
        keys, args = self._look_call(buckets, waiter, order, estimate, reservation)
        answer = await self._state.arun(lambda scripts: scripts["acquire"](keys=keys, args=args), "rate limit")
        return None if answer is None else self._looked(answer, reservation)

    def _look_call(
        self,
        buckets: list[_SharedBucket],
        waiter: str,
        order: str,
        estimate: int,
        reservation: _SharedReservation | None,
    ) -> tuple[list[str], list[Any]]:
        window_ms = int(limits_module.WINDOW * 1000)
        args: list[Any] = [waiter, order, estimate, window_ms, LINE_LEASE_MS, self._state.key("rl-order")]
        keys = [b.prefix for b in buckets]
        if reservation is None:
            args += ["0", "", 0, -1, 0]
        else:
            keys = reservation.budget._keys() + keys
            args += ["1", *reservation.budget._reserve_args(reservation.id, reservation.amount, reservation.lease)]
        for bucket in buckets:
            args += [bucket.limit.rpm or 0, bucket.limit.tpm or 0]
        return keys, args

    @staticmethod
    def _looked(answer: Any, reservation: _SharedReservation | None) -> tuple[float, str]:
        if int(answer[0]) < 0:  # the budget refuses: nothing is sent
            assert reservation is not None
            reservation.budget._refuse_from(answer[2], answer[3], reservation)
        return int(answer[0]) / 1000.0, str(int(answer[1]))

    def _leave_line(self, buckets: list[_SharedBucket], waiter: str) -> None:
        keys = [b.prefix for b in buckets]
        try:
            self._state.run(lambda: self._state._leave(keys=keys, args=[waiter]), "rate limit")
        except SharedStateUnavailableError:
            pass  # leaving the line: its lease runs out on its own

    @staticmethod
    def _carried(reservation: Any) -> _SharedReservation | None:
        """The call's shared budget reservation, when it is still to be taken (with the admission)."""
        if isinstance(reservation, _SharedReservation) and reservation.pending and not reservation.done:
            return reservation
        return None

    @staticmethod
    def _admitted(waiter: str, buckets: list[Any], estimate: int, reservation: Any) -> _SharedTicket:
        if isinstance(reservation, _SharedReservation):
            reservation.pending = False  # taken in Redis with the admission
            return _SharedTicket(waiter, buckets, estimate, reservation if reservation.shared else None)
        return _SharedTicket(waiter, buckets, estimate, None)

    def acquire(
        self,
        buckets: list[Any],
        estimate: int,
        remaining: Callable[[], float | None],
        where: Any,
        reservation: Any = None,
    ) -> Any:
        waiter, order = uuid.uuid4().hex, ""
        carried = self._carried(reservation)
        try:
            while True:
                looked = self._look(buckets, waiter, order, estimate, carried)
                if looked is None:  # Redis down: this process's own limits (and budget)
                    if carried is not None:
                        carried.budget._hold_here(carried)
                    return super().acquire([b.local for b in buckets], estimate, remaining, where)
                delay, order = looked
                if delay <= 0:
                    return self._admitted(waiter, buckets, estimate, reservation)
                RateLimiter._refuse(delay, remaining(), where)
                limits_module.sleep(min(delay, MAX_POLL))
        except BaseException:
            if order:
                self._leave_line(buckets, waiter)
            raise

    async def aacquire(
        self,
        buckets: list[Any],
        estimate: int,
        remaining: Callable[[], float | None],
        where: Any,
        reservation: Any = None,
    ) -> Any:
        waiter, order = uuid.uuid4().hex, ""
        carried = self._carried(reservation)
        if isinstance(reservation, _SharedReservation):
            reservation.asynchronous = True  # its settle must not block the event loop either
        try:
            while True:
                # On redis.asyncio: the event loop never blocks on Redis.
                looked = await self._alook(buckets, waiter, order, estimate, carried)
                if looked is None:
                    if carried is not None:
                        carried.budget._hold_here(carried)
                    return await super().aacquire([b.local for b in buckets], estimate, remaining, where)
                delay, order = looked
                if delay <= 0:
                    return self._admitted(waiter, buckets, estimate, reservation)
                RateLimiter._refuse(delay, remaining(), where)
                await limits_module.asleep(min(delay, MAX_POLL))
        except BaseException:
            if order:  # without waiting (a cancelled task must not block): its lease runs out anyway
                keys = [b.prefix for b in buckets]
                self._state.in_background(lambda scripts: scripts["leave"](keys=keys, args=[waiter]), "rate limit")
            raise

    def settle(self, ticket: Any, actual_tokens: int | None, headers: Mapping[str, str] | None) -> None:
        if isinstance(ticket, _Ticket):  # admitted by the local twin while Redis was down
            super().settle(ticket, actual_tokens, headers)
            return
        pause = 0.0
        if headers:
            pause = _pause_from_headers(headers, ticket.estimate if actual_tokens is None else actual_tokens)
        # In the call's path: a background thread for it measured slower (GIL contention with
        # the call's own I/O) on a loaded 2-core machine.
        if pause > 0 or (actual_tokens is not None and any(b.limit.tpm for b in ticket.buckets)):
            actual = -1 if actual_tokens is None else actual_tokens
            reservation = ticket.reservation
            if pause == 0 and reservation is not None and not reservation.done:
                # A token correction only: it goes with the budget's settle, in one round trip.
                reservation.deferred.append(([b.prefix for b in ticket.buckets], ticket.id, actual))
                return
            self._send_settle(ticket, actual, pause)

    def throttled(self, ticket: Any, retry_after: float | None) -> None:
        """A 429 seen by this process pauses the limit for every process."""
        if isinstance(ticket, _Ticket):
            super().throttled(ticket, retry_after)
            return
        self._send_settle(ticket, -1, retry_after if retry_after is not None else 1.0)

    def _send_settle(self, ticket: _SharedTicket, actual: int, pause: float) -> None:
        keys = [b.prefix for b in ticket.buckets]
        args: list[str | int] = [ticket.id, actual, int(pause * 1000)]
        if _loop_running():  # an async call: the event loop does not wait for a correction
            self._state.in_background(lambda scripts: scripts["settle"](keys=keys, args=args), "rate limit")
            return
        try:
            self._state.run(lambda: self._state._settle(keys=keys, args=args), "rate limit")
        except SharedStateUnavailableError:
            pass  # the answer is already here: a lost correction must not fail the call


# -- budget --------------------------------------------------------------------------------------
def _pico(amount: Decimal, up: bool = False) -> int:
    """USD as integer pico-USD; an estimate rounds up (a reservation never holds too little)."""
    return int((amount * PICO).to_integral_value(rounding="ROUND_CEILING" if up else None))


class _SharedReservation(Reservation):
    """A reservation of the shared budget; ``pending`` until taken in Redis (it may be taken with
    the rate-limit admission); ``deferred``: rate-limit corrections that go with its settle."""

    __slots__ = ("asynchronous", "budget", "deferred", "lease", "model", "pending", "provider")

    def __init__(
        self, budget: SharedBudget, estimate: Decimal, provider: str, model: str, lease: float | None, pending: bool
    ) -> None:
        super().__init__(estimate, uuid.uuid4().hex, shared=True)
        self.budget = budget
        self.provider = provider
        self.model = model
        self.lease = lease
        self.pending = pending
        self.asynchronous = False  # taken by an async call: settled without blocking its loop
        #: token corrections of the rate limits: (limit prefixes, ticket id, actual tokens)
        self.deferred: list[tuple[list[str], str, int]] = []


class SharedBudget(Budget):
    """:class:`fmclient.budget.Budget` over one Redis counter shared by every process.

    ``spent`` reads the shared total. The counter is named by the budget's ``name`` (and its
    period, when it resets daily or monthly) and counts integer pico-USD, so sums are exact.
    Reservations (see :mod:`fmclient.budget`) are a hash beside it, each with a lease in a
    sorted set: one script checks and reserves atomically, reaping the reservations of processes
    that died (the rate limiter's admission script does the same when the call is rate-limited
    too: one round trip for both); another settles a reservation to the real cost or releases
    it, in one pipeline with the rate limiter's token correction.
    """

    __slots__ = ("_key", "_state", "name")

    def __init__(self, state: SharedState, max_cost: Decimal, name: str, period: str | None) -> None:
        super().__init__(max_cost, period=period)
        self._state = state
        self.name = name

    def _label(self) -> str:
        return f" {self.name!r} (shared)"

    def _keys(self) -> list[str]:
        period = budget_period_id(self.period)
        counter = self._state.key("budget", self.name, *((period,) if period else ()))
        return [counter, counter + ":held", counter + ":leases"]

    def _ttl(self) -> int:
        """Seconds a period's counter outlives it (0: the budget has no period)."""
        return {"day": 2 * 86400, "month": 62 * 86400}.get(self.period or "", 0)

    def _reserve_args(self, reservation_id: str, estimate: Decimal, lease: float | None) -> list[str | int]:
        limit = -1 if self.max_cost.is_infinite() else _pico(self.max_cost)
        lease_ms = int(((RESERVATION_NO_DEADLINE if lease is None else lease) + RESERVATION_GRACE) * 1000)
        return [reservation_id, _pico(estimate, up=True), limit, lease_ms]

    def _refuse_from(self, spent: Any, reserved: Any, reservation: _SharedReservation) -> None:
        """Raise the refusal a reserve script answered (spent and reserved as Redis sent them)."""
        reservation.done = True
        self._refusal(
            Decimal(int(spent)) / PICO,
            Decimal(reserved.decode() if isinstance(reserved, bytes) else str(reserved)) / PICO,
            reservation.amount,
            reservation.provider,
            reservation.model,
        )

    def _hold_here(self, reservation: _SharedReservation) -> None:
        """Redis is down: take the reservation from this process's own budget instead."""
        reservation.shared = reservation.pending = False
        Budget._hold(self, reservation, reservation.provider, reservation.model)

    def _shared_spent(self) -> Decimal | None:
        key = self._keys()[0]
        raw = self._state.run(lambda: self._state.connection().get(key) or b"0", "budget")
        return None if raw is None else Decimal(int(raw)) / PICO

    @property
    def spent(self) -> Decimal:
        """The fleet's total (in the current period); what this process counted while Redis is down."""
        try:
            found = self._shared_spent()
        except SharedStateUnavailableError:  # reading a figure never fails, even with "refuse"
            found = None
        return super().spent if found is None else found

    def _reserve_now(self, reservation: _SharedReservation) -> bool:
        """Take (or, with id '', only check) a reservation in Redis; False when Redis is down."""
        keys = self._keys()
        args = self._reserve_args(reservation.id, reservation.amount, reservation.lease)
        answer = self._state.run(lambda: self._state._budget_reserve(keys=keys, args=args), "budget")
        return self._answered_reserve(answer, reservation)

    async def _areserve_now(self, reservation: _SharedReservation) -> bool:
        keys = self._keys()
        args = self._reserve_args(reservation.id, reservation.amount, reservation.lease)
        answer = await self._state.arun(lambda scripts: scripts["budget_reserve"](keys=keys, args=args), "budget")
        return self._answered_reserve(answer, reservation)

    def _answered_reserve(self, answer: Any, reservation: _SharedReservation) -> bool:
        if answer is None:
            return False
        if not int(answer[0]):
            self._refuse_from(answer[1], answer[2], reservation)
        reservation.pending = False
        return True

    def taken(self, attempt: Callable[[float | None], T], reservation: Reservation) -> Callable[[float | None], T]:
        def run(left: float | None) -> T:
            pending = isinstance(reservation, _SharedReservation) and reservation.pending and not reservation.done
            if pending and not self._reserve_now(reservation):  # type: ignore[arg-type]
                self._hold_here(reservation)  # type: ignore[arg-type]  # Redis down: this process's own budget
            return attempt(left)

        return run

    def ataken(
        self, attempt: Callable[[float | None], Awaitable[T]], reservation: Reservation
    ) -> Callable[[float | None], Awaitable[T]]:
        async def run(left: float | None) -> T:
            await self.atake(reservation)
            return await attempt(left)

        return run

    async def atake(self, reservation: Reservation) -> None:
        if isinstance(reservation, _SharedReservation):
            reservation.asynchronous = True  # its settle must not block the event loop either
            if reservation.pending and not reservation.done and not await self._areserve_now(reservation):
                self._hold_here(reservation)  # Redis down: this process's own budget

    def check(self, provider: str, model: str) -> None:
        probe = _SharedReservation(self, Decimal(0), provider, model, None, pending=True)
        probe.id = ""  # only checks
        if not self._reserve_now(probe):  # with on_unavailable="refuse", Redis down refuses
            super().check(provider, model)

    def reserve(
        self, estimate: Decimal, provider: str, model: str, lease: float | None = None, defer: bool = False
    ) -> Reservation:
        reservation = _SharedReservation(self, estimate, provider, model, lease, pending=True)
        if defer:  # the rate limiter's admission takes it (SharedRateLimiter.acquire)
            return reservation
        if not self._reserve_now(reservation):  # Redis down: this process's own budget
            self._hold_here(reservation)
        return reservation

    def settle(self, reservation: Reservation | None, amount: Decimal | None) -> None:
        deferred: list[tuple[list[str], str, int]] = []
        reservation_id = ""
        if reservation is not None:
            if reservation.done:
                return
            if not reservation.shared:  # reserved in this process while Redis was down
                super().settle(reservation, amount)
                return
            reservation.done = True
            if isinstance(reservation, _SharedReservation):
                deferred = reservation.deferred
                if not reservation.pending:  # a pending one never reached Redis
                    reservation_id = reservation.id
        if not reservation_id and amount is None and not deferred:
            return
        keys = self._keys()
        args: list[str | int] = [reservation_id, -1 if amount is None else _pico(amount), self._ttl(), len(deferred)]
        for prefixes, ticket_id, actual in deferred:  # the rate limits' corrections: the same round trip
            keys += prefixes
            args += [len(prefixes), ticket_id, actual]
        if isinstance(reservation, _SharedReservation) and reservation.asynchronous and _loop_running():
            # An async call: its event loop does not wait here; the call awaits the task before
            # it returns (Call.aend), so ``spent`` reads it then.
            async def send(scripts: dict[str, Any]) -> Any:
                return await scripts["budget_settle"](keys=keys, args=args)

            async def settle() -> None:
                try:
                    done = await self._state.arun(send, "budget")
                except SharedStateUnavailableError:
                    done = None  # the call was paid for: count it here rather than fail it
                if done is None and amount is not None:
                    Budget.add(self, amount)  # Redis down: counted here; the reservation expires

            reservation.settling = self._state.background(settle())
            return
        try:
            done = self._state.run(lambda: self._state._budget_settle(keys=keys, args=args), "budget")
        except SharedStateUnavailableError:
            done = None  # the call was paid for: count it here rather than fail an answered call
        if done is None and amount is not None:
            super().add(amount)  # the reservation in Redis expires on its own

    def release(self, reservation: Reservation | None) -> None:
        self.settle(reservation, None)

    def add(self, amount: Decimal) -> None:
        self.settle(None, amount)


# -- circuit breaker -----------------------------------------------------------------------------
class SharedCircuitBreaker(CircuitBreaker):
    """:class:`fmclient.circuit.CircuitBreaker` whose state is in Redis: open for one, open for all;
    one half-open trial at a time across the fleet (a lease, so a trial whose process died ends)."""

    __slots__ = ("_closed_at", "_hash", "_shared", "_trial_key")

    def __init__(self, state: SharedState, provider: str, failure_threshold: int, cooldown: float) -> None:
        super().__init__(failure_threshold, cooldown)
        self._shared = state
        self._hash = state.key("cb", provider)
        self._trial_key = state.key("cb", provider, "trial")
        self._closed_at = float("-inf")  # when an async call last read the fleet's circuit closed

    async def aprepare(self) -> None:
        """Read the fleet's state on redis.asyncio just before an async call's admission: a
        closed circuit (the common case) then admits without a blocking round trip."""
        answer = await self._shared.arun(
            lambda scripts: scripts["breaker_state"](keys=[self._hash], args=[int(self.cooldown * 1000)]),
            "circuit breaker",
        )
        closed = answer is not None and (answer.decode() if isinstance(answer, bytes) else str(answer)) == "closed"
        self._closed_at = time.monotonic() if closed else float("-inf")

    def _keys(self) -> list[str]:
        return [self._hash, self._trial_key]

    @property
    def state(self) -> str:
        answer = self._shared.run(
            lambda: self._shared._breaker_state(keys=[self._hash], args=[int(self.cooldown * 1000)]), "circuit breaker"
        )
        return super().state if answer is None else (answer.decode() if isinstance(answer, bytes) else str(answer))

    def admit(self) -> str | None:
        if time.monotonic() - self._closed_at < BREAKER_READ_FRESH and _loop_running():
            return "closed"  # read on redis.asyncio by aprepare a moment ago
        lease = int(max(self.cooldown, 60.0) * 1000)
        answer = self._shared.run(
            lambda: self._shared._breaker_admit(keys=self._keys(), args=[int(self.cooldown * 1000), lease]),
            "circuit breaker",
        )
        if answer is None:  # Redis down: this process's own breaker
            return super().admit()
        admitted = answer.decode() if isinstance(answer, bytes) else str(answer)
        return None if admitted == "no" else admitted

    def record_success(self) -> None:
        keys = self._keys()
        self._record(
            lambda: self._shared.connection().delete(*keys),
            lambda scripts: scripts["client"].delete(*keys),
            super().record_success,
        )

    def record_failure(self) -> None:
        keys, args = self._keys(), [self.failure_threshold]
        self._record(
            lambda: self._shared._breaker_failure(keys=keys, args=args),
            lambda scripts: scripts["breaker_failure"](keys=keys, args=args),
            super().record_failure,
        )

    def release(self) -> None:
        key = self._trial_key
        self._record(
            lambda: self._shared.connection().delete(key),
            lambda scripts: scripts["client"].delete(key),
            super().release,
        )

    def _record(
        self,
        operation: Callable[[], Any],
        aoperation: Callable[[dict[str, Any]], Awaitable[Any]],
        locally: Callable[[], None],
    ) -> None:
        """Record an outcome in Redis (``locally`` when Redis does not answer). After the answer:
        Redis failing then must not fail the call, and an async call does not wait for it."""
        if _loop_running():

            async def record() -> None:
                try:
                    done = await self._shared.arun(aoperation, "circuit breaker")
                except SharedStateUnavailableError:
                    done = None
                if done is None:
                    locally()

            self._shared.background(record())
            return
        try:
            done = self._shared.run(operation, "circuit breaker")
        except SharedStateUnavailableError:
            done = None
        if done is None:
            locally()
