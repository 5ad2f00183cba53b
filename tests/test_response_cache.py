"""The opt-in response cache: stable keys, hits marked and free, streams replayed, TTL, LRU, and
the memory, disk (SQLite) and Redis backends. Requests are counted at the loopback OpenAI fake, so
"no request" means none reached the wire. Redis runs as a real ``redis-server`` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client, ConfigurationError
from fmclient import cache as cache_module
from fmclient.cache import DiskCache, MemoryCache, RedisCache, ResponseCache, request_key
from fmclient.secret import Secret
from fmclient.testing import MockProvider
from fmclient.types import Message, Request, ResponseFormat, TextPart, Tool
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer

MODEL = "openai/gpt-4o"

FIXED_REQUEST = Request(
    model="gpt-4o",
    messages=(
        Message("user", (TextPart("Name a colour."),)),
        Message("assistant", "Blue."),
        Message("user", "Another"),
    ),
    system="Answer in one word.",
    max_tokens=20,
    temperature=0.1,
    stop=("\n",),
    tools=(Tool("lookup", "Look a word up", {"type": "object", "properties": {"word": {"type": "string"}}}),),
    tool_choice="auto",
    response_format=ResponseFormat("colour", {"type": "object", "properties": {"name": {"type": "string"}}}),
    provider_options={"seed": 7, "logit_bias": {"50256": -100}},
)
# The key of FIXED_REQUEST: pinned, so a change to the key's form (which would orphan every stored
# entry) is a visible, deliberate change (bump cache.FORMAT_VERSION with it).
FIXED_KEY = "c44e25704d9c1e5a3ffa81b8c056b59c3e8b631c09af964ce172ff84810912a8"


@pytest.fixture
def fake(fake_server: FakeServer) -> FakeOpenAI:
    return FakeOpenAI(fake_server)


def make_client(server: FakeServer, cache: Any, **kwargs: Any) -> Client:
    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')  # the fake's host: OpenAI's prices
    return Client(
        providers={"openai": {"base_url": server.url + "/v1", "api_key": "sk-test-secret-0123"}},
        cache=cache,
        max_retries=0,
        **kwargs,
    )


def chat_requests(server: FakeServer) -> int:
    return sum(r.path.endswith("/chat/completions") for r in server.requests)


# -- the key ---------------------------------------------------------------------------------------
def test_a_fixed_request_hashes_to_a_pinned_digest_in_any_process() -> None:
    key = request_key("openai", FIXED_REQUEST)
    assert key == FIXED_KEY
    code = (
        "from tests.test_response_cache import FIXED_REQUEST\n"
        "from fmclient.cache import request_key\n"
        "print(request_key('openai', FIXED_REQUEST))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == FIXED_KEY


def test_the_key_covers_what_changes_the_answer_and_nothing_else() -> None:
    from dataclasses import replace

    base = request_key("openai", FIXED_REQUEST)
    changed = [
        request_key("azure", FIXED_REQUEST),
        request_key("openai", replace(FIXED_REQUEST, model="gpt-4o-mini")),
        request_key("openai", replace(FIXED_REQUEST, temperature=0.2)),
        request_key("openai", replace(FIXED_REQUEST, system="Answer in two words.")),
        request_key("openai", replace(FIXED_REQUEST, tools=())),
        request_key("openai", replace(FIXED_REQUEST, response_format=None)),
        request_key("openai", replace(FIXED_REQUEST, provider_options={"seed": 8})),
        request_key("openai", replace(FIXED_REQUEST, messages=FIXED_REQUEST.messages[:1])),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    # The time an attempt may take does not change the answer.
    assert request_key("openai", replace(FIXED_REQUEST, timeout=3.0)) == base
    # Option order does not matter.
    reordered = replace(FIXED_REQUEST, provider_options={"logit_bias": {"50256": -100}, "seed": 7})
    assert request_key("openai", reordered) == base


def test_a_secret_is_never_part_of_a_key() -> None:
    from dataclasses import replace

    with_secret = replace(FIXED_REQUEST, provider_options={"extra_headers": {"x-key": Secret("sk-live-abc")}})
    assert request_key("openai", with_secret) is None  # the call bypasses the cache
    with_object = replace(FIXED_REQUEST, provider_options={"client": object()})
    assert request_key("openai", with_object) is None  # no stable form: bypassed, not guessed


def test_entries_are_keyed_by_who_was_asked(fake: FakeOpenAI, fake_server: FakeServer, tmp_path: Path) -> None:
    """Two tenants (other API keys) or two environments (other base URLs) never share an entry;
    the same account and endpoint do, from another client; no key is ever stored in clear."""
    memory = MemoryCache()
    make_client(fake_server, memory).complete("hi", model=MODEL)

    def client(api_key: str, base_url: str = fake_server.url + "/v1") -> Client:
        return Client(providers={"openai": {"base_url": base_url, "api_key": api_key}}, cache=memory, max_retries=0)

    assert client("sk-test-secret-0123").complete("hi", model=MODEL).cached  # same account: shared
    assert not client("sk-another-key-9").complete("hi", model=MODEL).cached  # another tenant
    assert chat_requests(fake_server) == 2
    # The same key at another address (staging vs production: here the same server by another name)
    staging = client("sk-test-secret-0123", fake_server.url.replace("127.0.0.1", "localhost") + "/v1")
    assert not staging.complete("hi", model=MODEL).cached
    assert chat_requests(fake_server) == 3
    stored = json.dumps(list(memory._entries.items()))
    assert "sk-test-secret-0123" not in stored and "sk-another-key-9" not in stored


def test_a_key_from_the_environment_is_part_of_who_was_asked(
    fake: FakeOpenAI, fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key the SDK would read itself (OPENAI_API_KEY) tells tenants apart like an explicit one."""
    memory = MemoryCache()

    def ask() -> bool:
        client = Client(providers={"openai": {"base_url": fake_server.url + "/v1"}}, cache=memory, max_retries=0)
        return client.complete("hi", model=MODEL).cached

    monkeypatch.setenv("OPENAI_API_KEY", "sk-tenant-a-000")
    assert not ask()
    assert ask()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-tenant-b-111")
    assert not ask()
    assert chat_requests(fake_server) == 2


def test_the_key_is_that_of_the_request_a_hook_rewrote(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    """A before_request hook that sets a per-tenant system prompt: each tenant gets the answer to
    its own request, and a tenant's repeat is a hit."""
    from dataclasses import replace as replaced

    from fmclient.hooks import Hook

    class Tenant(Hook):
        def __init__(self, name: str) -> None:
            self.name = name

        def before_request(self, call: Any, request: Any) -> Any:
            return replaced(request, system=f"You serve tenant {self.name}.")

    memory = MemoryCache()
    fake.answers.extend([Answer(text="for A"), Answer(text="for B")])
    tenant_a = make_client(fake_server, memory, hooks=[Tenant("A")])
    tenant_b = make_client(fake_server, memory, hooks=[Tenant("B")])
    assert tenant_a.complete("hi", model=MODEL).text == "for A"
    answer_b = tenant_b.complete("hi", model=MODEL)
    assert (answer_b.text, answer_b.cached) == ("for B", False)
    again_a = tenant_a.complete("hi", model=MODEL)
    assert (again_a.text, again_a.cached) == ("for A", True)
    streamed = tenant_b.stream("hi", model=MODEL)
    assert "".join(c.text for c in streamed) == "for B" and streamed.completion.cached
    systems = [r.json()["messages"][0]["content"] for r in fake_server.requests if r.path.endswith("/chat/completions")]
    assert systems == ["You serve tenant A.", "You serve tenant B."]


# -- hits -------------------------------------------------------------------------------------------
def test_a_hit_is_marked_free_and_keeps_the_original_usage(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    fake.answer(Answer("Blue sky", prompt_tokens=100, completion_tokens=7))
    client = make_client(fake_server, True, max_cost=1)
    first = client.complete("colour?", model=MODEL)
    spent = client.spent
    assert not first.cached and first.cost is not None and first.cost.total > 0
    second = client.complete("colour?", model=MODEL)
    assert chat_requests(fake_server) == 1
    assert second.cached and second.text == "Blue sky"
    assert second.cost is not None and second.cost.total == Decimal(0) and isinstance(second.cost.total, Decimal)
    assert second.usage == first.usage and second.usage.input_tokens == 100
    assert second.attempts == [] and second.to_dict()["cached"] is True
    assert client.spent == spent  # a hit is not charged
    # A different request is a miss.
    client.complete("colour??", model=MODEL)
    assert chat_requests(fake_server) == 2


def test_the_cache_is_off_by_default(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    client = make_client(fake_server, None)
    assert client.cache is None
    client.complete("hi", model=MODEL)
    assert not client.complete("hi", model=MODEL).cached
    assert chat_requests(fake_server) == 2


def test_tool_calls_and_structured_output_survive_the_cache(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    fake.answer(Answer(tool_calls=[("call_1", "lookup", '{"word": "blue"}')]))
    client = make_client(fake_server, True)
    tool = {"name": "lookup", "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}
    first = client.complete("look up blue", model=MODEL, tools=[tool])
    hit = client.complete("look up blue", model=MODEL, tools=[tool])
    assert hit.cached and hit.tool_calls == first.tool_calls and hit.finish_reason == "tool_calls"
    assert hit.message.tool_calls == first.message.tool_calls
    fake.answer(Answer('{"name": "Ada"}'))
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    client.complete("who?", model=MODEL, response_format=schema)
    parsed = client.complete("who?", model=MODEL, response_format=schema)
    assert parsed.cached and parsed.parsed == {"name": "Ada"}
    assert chat_requests(fake_server) == 2


def test_a_stream_is_replayed_from_the_cache(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    fake.answer(Answer("red and green", prompt_tokens=30, completion_tokens=3))
    client = make_client(fake_server, True)
    streamed = client.stream("colours?", model=MODEL)
    assert "".join(c.text for c in streamed) == "red and green"
    assert not streamed.completion.cached
    replay = client.stream("colours?", model=MODEL)
    chunks = list(replay)
    assert [c.text for c in chunks] == ["red and green", ""]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == streamed.completion.usage
    assert replay.completion.cached and replay.completion.cost is not None and replay.completion.cost.total == 0
    assert replay.text == "red and green"
    # The stream and the plain call share the key.
    assert client.complete("colours?", model=MODEL).cached
    assert chat_requests(fake_server) == 1


async def test_async_calls_use_the_cache(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    fake.answer(Answer("one two"))
    client = make_client(fake_server, True)
    first = await client.acomplete("count", model=MODEL)
    hit = await client.acomplete("count", model=MODEL)
    assert not first.cached and hit.cached and hit.text == "one two"
    stream = client.astream("count", model=MODEL)
    assert [c.text async for c in stream] == ["one two", ""]
    assert (await stream.get_completion()).cached
    assert chat_requests(fake_server) == 1


def test_an_answer_from_a_fallback_is_not_stored_under_the_primary_key() -> None:
    with MockProvider() as mock:
        mock.add_error(503).add_reply("from fallback").add_reply("from primary").add_reply("again")
        client = Client(
            aliases={"a": "openai/gpt-4o", "b": "anthropic/claude-3-5-haiku-latest"}, cache=True, max_retries=0
        )
        assert client.complete("hi", model="a", fallbacks=["b"]).text == "from fallback"
        assert client.complete("hi", model="a", fallbacks=["b"]).text == "from primary"
        hit = client.complete("hi", model="a", fallbacks=["b"])
        assert hit.cached and hit.text == "from primary" and mock.pending == 1


# -- TTL and size ----------------------------------------------------------------------------------
def test_an_entry_expires_after_its_ttl(
    fake: FakeOpenAI, fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(cache_module.time, "time", lambda: now[0])
    client = make_client(fake_server, {"backend": "memory", "ttl": 60})
    client.complete("hi", model=MODEL)
    now[0] += 59.9
    assert client.complete("hi", model=MODEL).cached
    now[0] += 0.2
    assert not client.complete("hi", model=MODEL).cached  # expired: asked again, stored again
    assert client.complete("hi", model=MODEL).cached
    assert chat_requests(fake_server) == 2


def test_memory_cache_evicts_the_least_recently_used(fake: FakeOpenAI, fake_server: FakeServer) -> None:
    client = make_client(fake_server, {"max_entries": 2})
    for prompt in ("a", "b"):
        client.complete(prompt, model=MODEL)
    assert client.complete("a", model=MODEL).cached  # "a" is now the most recent
    client.complete("c", model=MODEL)  # evicts "b"
    assert client.complete("a", model=MODEL).cached
    assert not client.complete("b", model=MODEL).cached
    assert chat_requests(fake_server) == 4


# -- disk ----------------------------------------------------------------------------------------
def test_disk_cache_is_shared_between_clients_and_honours_max_entries(
    fake: FakeOpenAI, fake_server: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "sub" / "responses.sqlite3"
    Path("fmclient.toml").write_text(f'[cache]\nbackend = "disk"\npath = "{path}"\nmax_entries = 2\n')
    first = Client(providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": "sk-x"}}, max_retries=0)
    assert isinstance(first.cache, DiskCache)
    first.complete("a", model=MODEL)
    second = Client(providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": "sk-x"}}, max_retries=0)
    assert second.complete("a", model=MODEL).cached
    second.complete("b", model=MODEL)
    second.complete("c", model=MODEL)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM responses").fetchone() == (2,)
    assert chat_requests(fake_server) == 3
    for client in (first, second):
        client.close()  # a cache the client built is the client's to close
        assert isinstance(client.cache, DiskCache) and client.cache._connections == {}


def test_a_corrupt_disk_entry_goes_to_the_provider_with_a_warning(
    fake: FakeOpenAI, fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = DiskCache(tmp_path / "c.sqlite3")
    client = make_client(fake_server, disk)
    client.complete("hi", model=MODEL)
    db = sqlite3.connect(tmp_path / "c.sqlite3")
    db.execute("UPDATE responses SET value = '{not json'")
    db.commit()
    with caplog.at_level(logging.WARNING, logger="fmclient"):
        reply = client.complete("hi", model=MODEL)
    assert not reply.cached and reply.text == "ok"
    assert chat_requests(fake_server) == 2
    assert any("corrupt cache entry" in r.getMessage() for r in caplog.records)
    assert client.complete("hi", model=MODEL).cached  # the fresh answer replaced the corrupt one
    disk.close()


def test_an_unusable_disk_path_never_fails_the_call(
    fake: FakeOpenAI, fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    client = make_client(fake_server, DiskCache(blocker / "c.sqlite3"))
    with caplog.at_level(logging.WARNING, logger="fmclient"):
        assert client.complete("hi", model=MODEL).text == "ok"
        assert client.complete("hi", model=MODEL).text == "ok"
    assert chat_requests(fake_server) == 2
    assert any("unavailable" in r.getMessage() for r in caplog.records)


# -- config ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"backend": "memcached"}, "cache backend must be one of"),
        ({"ttl": 0}, "cache ttl"),
        ({"ttl": "1h"}, "cache ttl"),
        ({"max_entries": 0}, "max_entries"),
        ({"backend": "memory", "path": "x"}, "path is for the disk backend"),
        ({"backend": "disk", "url": "redis://x"}, "url is for the redis backend"),
        ({"size": 3}, "unknown cache setting 'size'"),
    ],
)
def test_a_bad_cache_table_is_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Client(cache=table)


def test_cache_false_turns_off_a_configured_cache() -> None:
    Path("fmclient.toml").write_text('[cache]\nbackend = "memory"\nttl = 5\n')
    configured = Client()
    assert isinstance(configured.cache, MemoryCache) and configured.cache.ttl == 5
    assert Client(cache=False).cache is None


# -- redis ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed (apt-get install -y redis-server): the Redis cache tests need it"
            )
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                    pytest.fail(f"redis-server could not start on 127.0.0.1:{self.port}: {output[-500:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_redis_cache_hits_across_clients_and_expires(
    fake: FakeOpenAI, fake_server: FakeServer, redis_server: RedisServer
) -> None:
    one = make_client(fake_server, {"backend": "redis", "url": redis_server.url, "ttl": 0.3})
    assert isinstance(one.cache, RedisCache)
    one.complete("hi", model=MODEL)
    two = make_client(fake_server, {"backend": "redis", "url": redis_server.url, "ttl": 0.3})
    hit = two.complete("hi", model=MODEL)
    assert hit.cached and hit.cost is not None and hit.cost.total == 0
    stream = two.stream("hi", model=MODEL)
    assert [c.text for c in stream] == ["ok", ""] and stream.completion.cached
    assert chat_requests(fake_server) == 1
    import redis

    keys = redis.Redis.from_url(redis_server.url).keys("fmclient:*")
    assert len(keys) == 1 and len(keys[0]) == len("fmclient:") + 64
    time.sleep(0.5)  # Redis expires the entry itself (a TTL is set on the key)
    assert not two.complete("hi", model=MODEL).cached
    assert chat_requests(fake_server) == 2
    for client in (one, two):
        assert client.cache is not None
        client.cache.close()


def test_a_stopped_redis_never_fails_the_call(
    fake: FakeOpenAI, fake_server: FakeServer, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(fake_server, {"backend": "redis", "url": redis_server.url})
    client.complete("hi", model=MODEL)
    assert client.complete("hi", model=MODEL).cached
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="fmclient"):
        reply = client.complete("hi", model=MODEL)
        streamed = client.stream("hi", model=MODEL)
        assert "".join(c.text for c in streamed) == "ok"
    assert not reply.cached and reply.text == "ok" and not streamed.completion.cached
    assert chat_requests(fake_server) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("unavailable" in m for m in messages) and any("could not store" in m for m in messages)
    assert not any("redis://" in m for m in messages)  # the URL (maybe with a password) is never logged


# -- async calls and a cache that does I/O -----------------------------------------------------------
class Ticker:
    """Counts event-loop turns: it only advances while the loop is free to run other tasks."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.01)
            self.count += 1

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


class SlowCache(ResponseCache):
    """A cache whose calls block like a slow network store; it records, for each call, the thread
    it ran on and how many times the event loop ticked meanwhile."""

    def __init__(self, ticker: Ticker) -> None:
        self.ticker = ticker
        self.entries: dict[str, str] = {}
        self.calls: list[tuple[str, int, int]] = []  # (method, thread id, ticks during the call)

    def _blocked(self, method: str) -> None:
        before = self.ticker.count
        time.sleep(0.2)
        self.calls.append((method, threading.get_ident(), self.ticker.count - before))

    def get_raw(self, key: str) -> str | None:
        self._blocked("get")
        return self.entries.get(key)

    def set_raw(self, key: str, value: str) -> None:
        self._blocked("set")
        self.entries[key] = value


def assert_off_the_loop(cache: SlowCache, methods: list[str]) -> None:
    loop_thread = threading.get_ident()
    assert [method for method, _, _ in cache.calls] == methods
    for method, thread, ticks in cache.calls:
        assert thread != loop_thread, f"{method} ran on the event loop's thread"
        # 0.2 s blocked: about 20 ticks when the loop is free, none at all when the call blocks it
        # (the margin is for a loaded machine, where a 10 ms sleep may take longer).
        assert ticks >= 5, f"the event loop ticked {ticks} times during {method}"


async def test_acomplete_reads_and_writes_a_blocking_cache_in_a_worker_thread() -> None:
    async with Ticker() as ticker:
        slow = SlowCache(ticker)
        with MockProvider() as mock:
            mock.add_reply("slow store, fast loop")
            client = Client(cache=slow, max_retries=0)
            first = await client.acomplete("hi", model=MODEL)
            hit = await client.acomplete("hi", model=MODEL)
    assert not first.cached and hit.cached and hit.text == "slow store, fast loop"
    assert len(mock.requests) == 1
    assert_off_the_loop(slow, ["get", "set", "get"])


async def test_astream_reads_and_writes_a_blocking_cache_in_a_worker_thread() -> None:
    async with Ticker() as ticker:
        slow = SlowCache(ticker)
        with MockProvider() as mock:
            mock.add_stream(["slow ", "store"])
            client = Client(cache=slow, max_retries=0)
            missed = client.astream("hi", model=MODEL)
            assert slow.calls == []  # the lookup waits for the iteration: astream() itself never blocks
            assert [c.text async for c in missed if c.text] == ["slow ", "store"]
            replayed = client.astream("hi", model=MODEL)
            assert [c.text async for c in replayed if c.text] == ["slow store"]
    assert not (await missed.get_completion()).cached and (await replayed.get_completion()).cached
    assert len(mock.requests) == 1
    assert_off_the_loop(slow, ["get", "set", "get"])


class ThreadRecordingMemoryCache(MemoryCache):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def get_raw(self, key: str) -> str | None:
        self.threads.append(threading.get_ident())
        return super().get_raw(key)

    def set_raw(self, key: str, value: str) -> None:
        self.threads.append(threading.get_ident())
        super().set_raw(key, value)


async def test_the_memory_cache_is_used_inline_on_the_loop_thread() -> None:
    assert not MemoryCache.blocking and ResponseCache.blocking and DiskCache.blocking and RedisCache.blocking
    memory = ThreadRecordingMemoryCache()
    with MockProvider() as mock:
        client = Client(cache=memory, max_retries=0)
        await client.acomplete("hi", model=MODEL)
        assert (await client.acomplete("hi", model=MODEL)).cached
        stream = client.astream("hi", model=MODEL)
        assert len(memory.threads) == 4  # get, set, get, then get: no I/O, looked up in astream() as before
        assert [c.text async for c in stream] == ["mock response", ""]
    assert memory.threads == [threading.get_ident()] * 4  # all inline, on the loop's thread
    assert len(mock.requests) == 1


@pytest.fixture(params=["disk", "redis"])
def io_cache_table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "disk":
        yield {"backend": "disk", "path": str(tmp_path / "async.sqlite3")}
        return
    server = RedisServer(tmp_path)
    try:
        yield {"backend": "redis", "url": server.url}
    finally:
        server.stop()


async def test_disk_and_redis_caches_hit_through_acomplete_and_astream(
    fake: FakeOpenAI, fake_server: FakeServer, io_cache_table: dict[str, Any]
) -> None:
    fake.answer(Answer("first answer"))
    client = make_client(fake_server, io_cache_table)
    assert client.cache is not None and client.cache.blocking
    # A miss through acomplete, then hits through both.
    assert not (await client.acomplete("one", model=MODEL)).cached
    hit = await client.acomplete("one", model=MODEL)
    assert hit.cached and hit.text == "first answer"
    stream = client.astream("one", model=MODEL)
    assert [c.text async for c in stream] == ["first answer", ""] and (await stream.get_completion()).cached
    assert chat_requests(fake_server) == 1
    # A miss through astream, then hits through both.
    fake.answer(Answer("second answer"))
    missed = client.astream("two", model=MODEL)
    assert "".join([c.text async for c in missed]) == "second answer"
    assert not (await missed.get_completion()).cached
    assert (await client.acomplete("two", model=MODEL)).text == "second answer"
    again = client.astream("two", model=MODEL)
    assert [c.text async for c in again] == ["second answer", ""] and (await again.get_completion()).cached
    assert chat_requests(fake_server) == 2
    await client.aclose()


async def test_disk_cache_connections_opened_by_worker_threads_are_closed(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "c.sqlite3")
    with MockProvider() as mock:
        client = Client(cache=disk, max_retries=0)
        await client.acomplete("hi", model=MODEL)
        assert (await client.acomplete("hi", model=MODEL)).cached
    assert len(mock.requests) == 1
    opened = dict(disk._connections)
    assert opened and threading.current_thread() not in opened  # the loop's thread never touched the file
    disk.close()  # from the loop's thread: closes the worker threads' connections too
    assert disk._connections == {}
    for connection in opened.values():
        with pytest.raises(sqlite3.ProgrammingError):
            connection.execute("SELECT 1")
    assert disk.get_raw("missing") is None  # usable again: a new connection for this thread


class FailingCache(ResponseCache):
    def __init__(self) -> None:
        self.threads: list[int] = []

    def get_raw(self, key: str) -> str | None:
        self.threads.append(threading.get_ident())
        raise ConnectionError("store unreachable")

    def set_raw(self, key: str, value: str) -> None:
        self.threads.append(threading.get_ident())
        raise ConnectionError("store unreachable")


async def test_a_cache_failing_in_a_worker_thread_never_fails_an_async_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = FailingCache()
    with MockProvider() as mock, caplog.at_level(logging.WARNING, logger="fmclient"):
        mock.add_reply("from the provider").add_stream(["streamed ", "anyway"])
        client = Client(cache=failing, max_retries=0)
        reply = await client.acomplete("hi", model=MODEL)
        stream = client.astream("hi", model=MODEL)
        assert "".join([c.text async for c in stream]) == "streamed anyway"
    assert reply.text == "from the provider" and not reply.cached
    assert not (await stream.get_completion()).cached
    assert len(mock.requests) == 2
    assert len(failing.threads) == 4 and threading.get_ident() not in failing.threads
    messages = [r.getMessage() for r in caplog.records]
    assert sum("FailingCache unavailable" in m for m in messages) == 2
    assert sum("FailingCache could not store" in m for m in messages) == 2


async def test_an_async_hit_from_a_blocking_cache_skips_the_budget_check(
    fake: FakeOpenAI, fake_server: FakeServer, tmp_path: Path
) -> None:
    from fmclient import BudgetExceededError

    fake.answer(Answer("paid once", prompt_tokens=1000, completion_tokens=100))
    # Room for the first call's reservation (its input and max_tokens), and it then costs more.
    client = make_client(fake_server, DiskCache(tmp_path / "c.sqlite3"), max_cost="0.002")
    await client.acomplete("hi", model=MODEL, max_tokens=100)  # spends the whole budget
    assert (await client.acomplete("hi", model=MODEL, max_tokens=100)).cached  # a hit is free: no budget check
    stream = client.astream("hi", model=MODEL, max_tokens=100)
    assert [c.text async for c in stream] == ["paid once", ""]
    with pytest.raises(BudgetExceededError):
        await client.acomplete("another", model=MODEL)
    refused = client.astream("another", model=MODEL)  # the check follows the lookup: at iteration
    with pytest.raises(BudgetExceededError):
        [c async for c in refused]
    assert chat_requests(fake_server) == 1


# -- a corrupt entry is a miss, whatever is in it (issue 19, item 16) -------------------------------
def _corrupt(stored: str, kind: str) -> str:
    if kind == "not-json":
        return "{not json"
    if kind == "deep-json":  # json.loads itself runs out of stack: RecursionError
        return "[" * 100_000 + "]" * 100_000
    document = json.loads(stored)
    if kind == "deep-state":  # loads, then decoding its provider state runs out of stack
        document["provider_state"] = "@STATE@"
        return json.dumps(document).replace('"@STATE@"', "[" * 980 + "]" * 980)
    if kind == "huge-count":  # 1e400 loads as inf: no token count
        document["usage"]["input_tokens"] = "@COUNT@"
        return json.dumps(document).replace('"@COUNT@"', "1e400")
    raise AssertionError(kind)


@pytest.fixture(params=["memory", "disk", "redis"])
def any_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResponseCache]:
    if request.param == "memory":
        yield MemoryCache()
    elif request.param == "disk":
        disk = DiskCache(tmp_path / "corrupt.sqlite3")
        yield disk
        disk.close()
    else:
        server = RedisServer(tmp_path)
        try:
            redis_cache = RedisCache(server.url)
            yield redis_cache
            redis_cache.close()
        finally:
            server.stop()


def _stored_keys(cache: ResponseCache) -> list[str]:
    if isinstance(cache, MemoryCache):
        return list(cache._entries)
    if isinstance(cache, DiskCache):
        return [row[0] for row in sqlite3.connect(cache.path).execute("SELECT key FROM responses")]
    assert isinstance(cache, RedisCache)
    return [k.decode().removeprefix(cache.prefix) for k in cache._redis.keys(cache.prefix + "*")]


@pytest.mark.parametrize("kind", ["not-json", "deep-json", "deep-state", "huge-count"])
@pytest.mark.parametrize("entry", ["complete", "stream", "acomplete"])
def test_a_corrupt_entry_is_a_miss_on_every_backend(
    fake: FakeOpenAI,
    fake_server: FakeServer,
    any_cache: ResponseCache,
    kind: str,
    entry: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(fake_server, any_cache)
    client.complete("hi", model=MODEL)
    (key,) = _stored_keys(any_cache)
    stored = any_cache.get_raw(key)
    assert stored is not None
    any_cache.set_raw(key, _corrupt(stored, kind))
    with caplog.at_level(logging.WARNING, logger="fmclient"):
        if entry == "complete":
            reply = client.complete("hi", model=MODEL)
        elif entry == "stream":
            with client.stream("hi", model=MODEL) as stream:
                assert "".join(c.text for c in stream) == "ok"
            reply = stream.completion
        else:
            reply = asyncio.run(client.acomplete("hi", model=MODEL))
    assert not reply.cached and reply.text == "ok"
    assert chat_requests(fake_server) == 2
    assert any("corrupt cache entry" in r.getMessage() for r in caplog.records)
    # The corrupt entry was dropped and the fresh answer stored in its place.
    assert client.complete("hi", model=MODEL).cached
    assert chat_requests(fake_server) == 2


def test_an_answer_whose_state_is_too_deep_to_store_has_no_stored_form() -> None:
    from fmclient.cache import completion_to_json
    from fmclient.types import Completion, Usage

    state: Any = []
    for _ in range(100_000):
        state = [state]
    completion = Completion(text="ok", finish_reason="stop", usage=Usage(1, 1), model="m", provider="p")
    completion.message = Message(role="assistant", content="ok", provider_state={"p": state})
    assert completion_to_json(completion) is None


# -- files the disk cache creates are its owner's only -----------------------------------------------
def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_the_disk_cache_creates_its_files_and_directories_for_its_owner_only(
    fake: FakeOpenAI, fake_server: FakeServer, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    database = shared / "new" / "deeper" / "responses.sqlite3"
    previous = os.umask(0)  # the loosest umask: nothing taken away from what the cache asks for
    try:
        shared.mkdir(mode=0o755)
        disk = DiskCache(database)
        client = make_client(fake_server, disk)
        client.complete("hi", model=MODEL)
        db = sqlite3.connect(database)
        assert db.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)  # persists in the file
        client.complete("another", model=MODEL)  # written through the cache's own connection, in WAL
        wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
        modes = {p.name: _mode(p) for p in (database, wal, shm)}
        modes.update({p.name: _mode(p) for p in (database.parent, database.parent.parent)})
        db.close()
        disk.close()
    finally:
        os.umask(previous)
    assert modes == {
        "responses.sqlite3": 0o600,
        "responses.sqlite3-wal": 0o600,
        "responses.sqlite3-shm": 0o600,
        "deeper": 0o700,
        "new": 0o700,
    }
    assert _mode(shared) == 0o755  # a directory that already existed is left as it was
