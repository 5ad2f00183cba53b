"""Response cache (opt-in, off by default): identical requests answered without calling the model.

Turn it on with ``Client(cache=...)`` or the config file's ``[cache]`` table::

    [cache]
    backend = "disk"            # "memory" (default), "disk" (SQLite file) or "redis" (fmclient[redis])
    ttl = 3600                  # seconds an answer stays valid; omit for no expiry
    path = "~/.cache/fmclient/responses.sqlite3"   # disk only
    url = "redis://127.0.0.1:6379/0"               # redis only
    max_entries = 1000          # memory and disk: least recently used entries go first

``Client(cache=True)`` is an in-memory cache; ``Client(cache={...})`` takes the table's keys; any
:class:`ResponseCache` instance may be passed as is.

What is cached and how it is found:

* The key is the SHA-256 of the canonical JSON of the request actually sent (after the
  ``before_request`` hooks, so a hook that sets a per-tenant prompt keys by what it set): the model
  id, the messages (images by the SHA-256 of their bytes), system prompt, parameters, tools, tool
  choice, the response schema and provider options; and of who was asked
  (:func:`provider_identity`: adapter type, base URL, region, profile, options, and a one-way hash
  of every credential in play, whoever reads it). Two tenants or environments never share an entry.
  The per-attempt timeout is not part of it; no key or secret is ever in it in clear; a
  :class:`~fmclient.secret.Secret` among the provider options makes the call bypass the cache.
  The same request to the same account has the same key in every process and Python version.
* Only the primary target's answer is stored (under the primary's key); an answer from a fallback
  is not, so a later identical call still asks the primary.
* A streamed call and a plain call share the key: a cached answer is replayed to a stream as a
  text chunk followed by a final chunk (finish reason, tool calls, usage).

A hit is a :class:`~fmclient.types.Completion` with ``cached=True``. Its ``cost`` is zero (nothing
was billed, and nothing is charged to a budget); its ``usage`` is the usage of the original call,
kept for information. ``attempts`` is empty: no model was tried.

A cache that is down (Redis unreachable) or holds a corrupt entry never fails a call: the call
goes to the provider and a warning is logged on the ``fmclient`` logger. Any failure to decode an
entry makes it a miss, and the entry is dropped.

The disk cache creates its SQLite file with mode ``0600`` and the directories it makes with
``0700``, whatever the umask (SQLite gives its journal, -wal and -shm files the database's mode).

The async calls (``acomplete``, ``astream``, ``abatch``) never block the event loop on the cache: a
backend that does I/O (:attr:`ResponseCache.blocking`: disk, Redis, and any subclass unless it says
otherwise) is read and written in a worker thread (:func:`asyncio.to_thread`); the in-memory cache
is used inline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fmclient.errors import ConfigurationError

if TYPE_CHECKING:
    from fmclient.providers.base import ProviderSettings
    from fmclient.types import Chunk, Completion, Request, Usage

__all__ = [
    "DiskCache",
    "MemoryCache",
    "RedisCache",
    "ResponseCache",
    "cache_from_settings",
    "completion_from_json",
    "completion_to_json",
    "request_key",
]

logger = logging.getLogger("fmclient")

CACHE_KEYS = frozenset({"backend", "ttl", "url", "path", "max_entries"})
BACKENDS = ("memory", "disk", "redis")
# Bumped when the key's content or the stored format changes, so old entries are never misread.
FORMAT_VERSION = 2  # 2: keyed by the provider's identity, not its name


# -- the key ----------------------------------------------------------------------------------------
class _Uncacheable(Exception):
    """The request holds something that has no stable, secret-free form: bypass the cache."""


def request_key(identity: str, request: Request) -> str | None:
    """The cache key of a request sent to the provider ``identity`` stands for
    (:func:`provider_identity`), or None when it cannot be cached."""
    try:
        document = {
            "v": FORMAT_VERSION,
            "provider": identity,
            "model": request.model,
            "system": request.system,
            "system_cache": None if request.system_cache is None else {"ttl": request.system_cache.ttl},
            "messages": [_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop),
            "tools": [
                {"name": t.name, "description": t.description, "parameters": _plain(t.parameters)}
                for t in request.tools
            ],
            "tool_choice": request.tool_choice,
            "response_format": None
            if request.response_format is None
            else {"name": request.response_format.name, "schema": _plain(request.response_format.schema)},
            "provider_options": _plain(request.provider_options),
        }
        if request.reasoning is not None:  # absent otherwise: keys made before it existed stay valid
            document["reasoning"] = request.reasoning
        if request.audio is not None:  # a spoken answer is not stored (its id expires): no key
            raise _Uncacheable
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (_Uncacheable, ValueError, TypeError):
        return None
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def provider_identity(settings: ProviderSettings) -> str | None:
    """Who is asked: the adapter type, where it sends (base URL, region, profile, the SDK's own
    endpoint variables), its options and a one-way hash of every credential in play (explicit,
    from ``api_key_env``, or from the variables the SDK reads itself). Two clients with different
    keys, accounts or endpoints never share an entry; no secret is ever in clear. None when an
    option has no stable form (the call then bypasses the cache).
    """
    import os

    from fmclient.providers.readiness import READINESS
    from fmclient.secret import Secret

    spec = READINESS.get(settings.type)
    names = () if spec is None else (*spec.key_env, *spec.other_credential_env, *spec.identity_env)
    if settings.api_key_env:
        names = (*names, settings.api_key_env)

    def plain(value: Any) -> Any:
        if isinstance(value, Secret):
            return {"$secret": _fingerprint(value.get_secret_value())}
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return _plain(value)

    try:
        document = {
            "type": settings.type,
            "base_url": settings.base_url,
            "region": settings.region,
            "profile": settings.profile,
            "options": plain(settings.options),
            "api_key": None if settings.api_key is None else _fingerprint(settings.api_key.get_secret_value()),
            "ambient_credentials": settings.ambient_credentials,
            "env": {name: _fingerprint(os.environ[name]) for name in sorted(set(names)) if os.environ.get(name)},
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (_Uncacheable, ValueError, TypeError):
        return None
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _fingerprint(value: str) -> str:
    """A one-way, salted hash of a credential or setting: equal values match, nothing is revealed."""
    return hashlib.sha256(b"fmclient-identity\0" + value.encode("utf-8", "surrogatepass")).hexdigest()


def _message(message: Any) -> dict[str, Any]:
    from fmclient.types import TextPart

    content: Any = message.content
    if not isinstance(content, str):
        content = [
            {"type": "text", "text": p.text}
            if isinstance(p, TextPart)
            else {
                "type": p.type,
                **({"name": p.name, "citations": p.citations} if p.type == "document" else {}),
                "url": p.url,
                "media_type": p.media_type,
                "sha256": None if p.data is None else hashlib.sha256(p.data).hexdigest(),
            }
            for p in content
        ]
    return {
        "role": message.role,
        "content": content,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": _plain(c.arguments)} for c in message.tool_calls],
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "provider_state": _plain(message.provider_state),
        "cache": None if message.cache is None else {"ttl": message.cache.ttl},
        # Only when set, so the keys of every other message stay what they were.
        **({"is_error": True} if message.is_error else {}),
    }


def _plain(value: Any) -> Any:
    """JSON-ready, with a form that does not depend on the process (no reprs, no ids)."""
    from fmclient.secret import Secret

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Secret):
        raise _Uncacheable("a secret is never part of a cache key")
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise _Uncacheable("mapping keys must be strings")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return {"$sha256": hashlib.sha256(value).hexdigest()}
    raise _Uncacheable(f"{type(value).__name__} has no stable form")


# -- stored form ------------------------------------------------------------------------------------
def completion_to_json(completion: Completion) -> str | None:
    """The stored form of a Completion, or None when a part of it cannot be stored faithfully."""
    if completion.audio is not None:
        return None  # a spoken answer's id expires with the provider's copy: not replayable
    message = completion.message
    document = {
        "v": FORMAT_VERSION,
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "usage": {
            "input_tokens": completion.usage.input_tokens,
            "output_tokens": completion.usage.output_tokens,
            "cached_input_tokens": completion.usage.cached_input_tokens,
            "cache_write_tokens": completion.usage.cache_write_tokens,
            "cache_write_1h_tokens": completion.usage.cache_write_1h_tokens,
            "reasoning_tokens": completion.usage.reasoning_tokens,
            "service_tier": completion.usage.service_tier,
            "speed": completion.usage.speed,
            "input_audio_tokens": completion.usage.input_audio_tokens,
            "output_audio_tokens": completion.usage.output_audio_tokens,
            "output_image_tokens": completion.usage.output_image_tokens,
        },
        "model": completion.model,
        "provider": completion.provider,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments, "raw_arguments": c.raw_arguments}
            for c in completion.tool_calls
        ],
        "content": message.text,
        "reasoning": completion.reasoning,
    }
    if completion.citations:
        document["citations"] = [c.to_dict() for c in completion.citations]
    try:
        document["provider_state"] = _tagged(message.provider_state)
        return json.dumps(document, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError):  # RecursionError: state nested deeper than the stack
        return None


def _tagged(value: Any) -> Any:
    # Provider state may hold bytes (Gemini thought signatures): kept exactly, tagged.
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): _tagged(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tagged(v) for v in value]
    return value


def _untagged(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {k: _untagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


# Usage fields that are labels (str or None), not counts.
_USAGE_LABELS = frozenset({"service_tier", "speed"})


def _usage(stored: Mapping[str, Any]) -> Usage:
    from fmclient.types import Usage

    values: dict[str, Any] = {k: _optional_text(v) if k in _USAGE_LABELS else _count(v) for k, v in stored.items()}
    return Usage(**values)


def completion_from_json(text: str | bytes) -> Completion:
    """The Completion a stored entry holds; raises ValueError when the entry is corrupt.

    Whatever the stored bytes, decoding fails only with ValueError: JSON nested deeper than the
    stack (RecursionError), a number too large for an int (OverflowError) or a document of the
    wrong shape are all a corrupt entry, which the client treats as a miss.
    """
    from fmclient.types import FINISH_REASONS, Citation, Completion, Message, ToolCall

    try:
        document = json.loads(text)
        if document.get("v") != FORMAT_VERSION or document["finish_reason"] not in FINISH_REASONS:
            raise ValueError("unknown format")
        calls = [
            ToolCall(_text(c["id"]), _text(c["name"]), dict(c["arguments"]), _optional_text(c.get("raw_arguments")))
            for c in document["tool_calls"]
        ]
        state = _untagged(document["provider_state"])
        return Completion(
            text=_text(document["text"]),
            finish_reason=document["finish_reason"],
            usage=_usage(document["usage"]),
            model=_text(document["model"]),
            provider=_text(document["provider"]),
            tool_calls=calls,
            message=Message(
                role="assistant", content=_text(document["content"]), tool_calls=tuple(calls), provider_state=state
            ),
            reasoning=_optional_text(document.get("reasoning")),
            citations=[Citation(**dict(c)) for c in document.get("citations", ())],
        )
    except Exception as exc:  # any failure to decode is a corrupt entry, never the caller's error
        raise ValueError(f"corrupt cache entry: {type(exc).__name__}: {exc}") from None


# What the stored form holds where a str or a count belongs: anything else is a corrupt entry.
def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a token count, got {value!r}"[:80])
    return value


def replay_chunks(completion: Completion) -> list[Chunk]:
    """A cached answer as a stream: its text, then a final chunk with the rest."""
    from fmclient.types import Chunk, ToolCallDelta

    deltas = tuple(
        ToolCallDelta(
            index,
            call.id,
            call.name,
            call.raw_arguments if call.raw_arguments is not None else json.dumps(call.arguments),
        )
        for index, call in enumerate(completion.tool_calls)
    )
    final = Chunk(
        tool_calls=deltas,
        finish_reason=completion.finish_reason,
        usage=completion.usage,
        model=completion.model,
        provider_state=completion.message.provider_state,
    )
    thinking = [Chunk(reasoning=completion.reasoning)] if completion.reasoning else []
    return thinking + ([Chunk(text=completion.text), final] if completion.text else [final])


# -- backends ---------------------------------------------------------------------------------------
class ResponseCache:
    """A store of answers by key. Subclasses implement :meth:`get_raw` and :meth:`set_raw`;
    errors they raise are caught by the client (a warning, then the provider is called).

    ``blocking`` says whether these methods wait on I/O (a file, the network). When true (the
    default), the async calls run them in a worker thread so the event loop keeps going; the
    methods must then be safe to call from several threads at once. A cache whose methods only
    touch memory sets it to false and is called inline.
    """

    ttl: float | None = None
    blocking: bool = True

    def get_raw(self, key: str) -> str | None:
        raise NotImplementedError

    def set_raw(self, key: str, value: str) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Drop an entry (a corrupt one, say). Optional."""

    def close(self) -> None:
        """Release connections or files. Optional."""


class MemoryCache(ResponseCache):
    """In-process LRU: at most ``max_entries`` answers, each valid for ``ttl`` seconds."""

    blocking = False  # no I/O: async calls use it inline, without a thread hop

    def __init__(self, *, max_entries: int = 1000, ttl: float | None = None) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: OrderedDict[str, tuple[float | None, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get_raw(self, key: str) -> str | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            expires, value = found
            if expires is not None and time.time() >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set_raw(self, key: str, value: str) -> None:
        expires = None if self.ttl is None else time.time() + self.ttl
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryCache(max_entries={self.max_entries}, ttl={self.ttl})"


class DiskCache(ResponseCache):
    """A SQLite file (stdlib ``sqlite3``), shared by the processes that open it.

    Each thread that uses it (the async calls' worker threads included) has its own connection;
    :meth:`close` closes them all, from any thread.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_entries: int = 10_000, ttl: float | None = None) -> None:
        self.path = os.path.expanduser(os.fspath(path))
        self.max_entries = max_entries
        self.ttl = ttl
        self._connections: dict[threading.Thread, Any] = {}
        self._lock = threading.Lock()

    def _db(self) -> Any:
        thread = threading.current_thread()
        db = self._connections.get(thread)
        if db is None:
            import sqlite3

            _create_private(self.path)
            # Used by this thread only; check_same_thread is off so that close() (or the pruning
            # below) may close it from another thread.
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            try:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS responses "
                    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL, used REAL NOT NULL)"
                )
            except BaseException:
                db.close()
                raise
            with self._lock:
                # Worker threads come and go (each event loop has its own pool): the connection of
                # a thread that has ended is closed now rather than kept open until close().
                ended = [t for t in self._connections if not t.is_alive()]
                stale = [self._connections.pop(t) for t in ended]
                self._connections[thread] = db
            for old in stale:
                old.close()
        return db

    def get_raw(self, key: str) -> str | None:
        db = self._db()
        row = db.execute("SELECT value, expires FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value, expires = row
        now = time.time()
        if expires is not None and now >= expires:
            db.execute("DELETE FROM responses WHERE key = ?", (key,))
            return None
        db.execute("UPDATE responses SET used = ? WHERE key = ?", (now, key))
        return value if isinstance(value, str) else str(value)

    def set_raw(self, key: str, value: str) -> None:
        now = time.time()
        expires = None if self.ttl is None else now + self.ttl
        db = self._db()
        db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", (key, value, expires, now))
        db.execute(
            "DELETE FROM responses WHERE key IN (SELECT key FROM responses ORDER BY used DESC LIMIT -1 OFFSET ?)",
            (self.max_entries,),
        )

    def delete(self, key: str) -> None:
        self._db().execute("DELETE FROM responses WHERE key = ?", (key,))

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for db in connections:
            db.close()

    def __repr__(self) -> str:
        return f"DiskCache(path={self.path!r}, max_entries={self.max_entries}, ttl={self.ttl})"


def _create_private(path: str) -> None:
    """Create the database file (and the directories missing above it) readable by their owner only,
    whatever the umask: cached answers are other people's data. SQLite gives its journal, -wal and
    -shm files the database file's permissions. A file or directory that already exists is left as
    it is."""
    directory = os.path.dirname(os.path.abspath(path))
    missing: list[str] = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for created in reversed(missing):
        try:
            os.mkdir(created, 0o700)
        except FileExistsError:  # made by another process meanwhile: theirs, as it is
            continue
        os.chmod(created, 0o700)  # the umask may have taken bits away from mkdir's mode
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        if hasattr(os, "fchmod"):  # POSIX (Windows has no such modes to set)
            os.fchmod(fd, 0o600)  # the umask may have taken the owner's bits away
    finally:
        os.close(fd)


class RedisCache(ResponseCache):
    """Redis (``fmclient[redis]``, redis-py). Entries expire in Redis itself after ``ttl``.

    One ``redis.Redis`` client for all threads: it takes a connection from its pool for each
    command and gives it back after, which redis-py documents as safe to share between threads.

    Short socket timeouts: a Redis that does not answer costs a call at most about a second
    before it goes to the provider. Its URL (which may hold a password) is never shown.
    """

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", *, ttl: float | None = None, prefix: str = "fmclient:"
    ) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigurationError("the redis cache needs redis-py: pip install 'fmclient[redis]'") from None
        self.ttl = ttl
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def get_raw(self, key: str) -> str | None:
        value = self._redis.get(self.prefix + key)
        if value is None:
            return None
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    def set_raw(self, key: str, value: str) -> None:
        ttl_ms = None if self.ttl is None else max(1, int(self.ttl * 1000))
        self._redis.set(self.prefix + key, value, px=ttl_ms)

    def delete(self, key: str) -> None:
        self._redis.delete(self.prefix + key)

    def close(self) -> None:
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self.prefix!r}, ttl={self.ttl})"


# -- settings ---------------------------------------------------------------------------------------
def check_cache_table(table: Any, where: str) -> dict[str, Any]:
    """Validate a ``[cache]`` table (or ``Client(cache={...})``) without building anything."""
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{where}: [cache] must be a table")
    unknown = sorted(set(table) - CACHE_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown cache setting {', '.join(map(repr, unknown))}; known: {', '.join(sorted(CACHE_KEYS))}"
        )
    backend = table.get("backend", "memory")
    if backend not in BACKENDS:
        raise ConfigurationError(f"{where}: cache backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    ttl = table.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0):
        raise ConfigurationError(f"{where}: cache ttl must be a number of seconds above zero, got {ttl!r}")
    entries = table.get("max_entries")
    if entries is not None and (isinstance(entries, bool) or not isinstance(entries, int) or entries < 1):
        raise ConfigurationError(f"{where}: cache max_entries must be a whole number of at least 1, got {entries!r}")
    for name in ("url", "path"):
        if name in table and not isinstance(table[name], (str, os.PathLike)):
            raise ConfigurationError(f"{where}: cache {name} must be a string")
    if "path" in table and backend != "disk":
        raise ConfigurationError(f"{where}: cache path is for the disk backend, not {backend!r}")
    if "url" in table and backend != "redis":
        raise ConfigurationError(f"{where}: cache url is for the redis backend, not {backend!r}")
    return dict(table)


def default_disk_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fmclient", "responses.sqlite3")


def cache_from_settings(table: Mapping[str, Any]) -> ResponseCache | None:
    """The cache a checked ``[cache]`` table describes; None for an empty table (no cache)."""
    if not table:
        return None
    backend = table.get("backend", "memory")
    ttl = table.get("ttl")
    if backend == "memory":
        return MemoryCache(max_entries=table.get("max_entries", 1000), ttl=ttl)
    if backend == "disk":
        return DiskCache(
            table.get("path") or default_disk_path(), max_entries=table.get("max_entries", 10_000), ttl=ttl
        )
    return RedisCache(str(table.get("url", "redis://127.0.0.1:6379/0")), ttl=ttl)


# -- used by the client: never raise --------------------------------------------------------------
async def alookup(cache: ResponseCache, key: str) -> Completion | None:
    """:func:`lookup` for async calls: a blocking cache is read in a worker thread."""
    if not cache.blocking:
        return lookup(cache, key)
    try:
        import asyncio  # loaded already: the caller runs on its loop

        return await asyncio.to_thread(lookup, cache, key)
    except Exception as exc:  # no thread to run it in (the loop is shutting down, say)
        _unavailable(cache, exc)
        return None


async def astore(cache: ResponseCache, key: str, completion: Completion) -> None:
    """:func:`store` for async calls: a blocking cache is written in a worker thread."""
    if not cache.blocking:
        store(cache, key, completion)
        return
    try:
        import asyncio  # loaded already: the caller runs on its loop

        await asyncio.to_thread(store, cache, key, completion)
    except Exception as exc:
        _not_stored(cache, exc)


def _unavailable(cache: ResponseCache, exc: Exception) -> None:
    logger.warning(
        "response cache %s unavailable, calling the provider: %s: %s", type(cache).__name__, type(exc).__name__, exc
    )


def _not_stored(cache: ResponseCache, exc: Exception) -> None:
    logger.warning("response cache %s could not store an answer: %s: %s", type(cache).__name__, type(exc).__name__, exc)


def lookup(cache: ResponseCache, key: str) -> Completion | None:
    """The cached answer for ``key`` marked as a hit, or None (a miss, or a cache that failed)."""
    try:
        raw = cache.get_raw(key)
    except Exception as exc:
        _unavailable(cache, exc)
        return None
    if raw is None:
        return None
    try:
        completion = completion_from_json(raw)
    except Exception as exc:  # ValueError from a corrupt entry; anything else is treated the same
        logger.warning("response cache %s: %s; calling the provider", type(cache).__name__, exc)
        try:
            cache.delete(key)
        except Exception:  # the entry is ignored either way
            pass
        return None
    from fmclient.pricing import zero_cost

    completion.cached = True
    completion._priced = (zero_cost(), None)
    return completion


def store(cache: ResponseCache, key: str, completion: Completion) -> None:
    value = completion_to_json(completion)
    if value is None:
        logger.debug("response cache: this answer has no faithful stored form; not cached")
        return
    try:
        cache.set_raw(key, value)
    except Exception as exc:
        _not_stored(cache, exc)
