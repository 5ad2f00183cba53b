"""Async SDK clients: one per event loop, released when their loop is gone, on aiohttp when installed.

Shared by the adapters whose SDK has native async (Anthropic, OpenAI, Ollama). An HTTP
connection pool belongs to the loop it first ran on, so a client cannot be reused across
``asyncio.run`` calls; caching by loop without releasing would leak a pool and its sockets per
finished loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fmclient.errors import ConfigurationError
from fmclient.providers.base import ProviderSettings

__all__ = [
    "ASYNC_TRANSPORTS",
    "LoopClients",
    "aiohttp_client",
    "aiohttp_installed",
    "async_transport_setting",
    "parsed",
]

C = TypeVar("C")
# Close tasks in flight: the loop keeps only a weak reference to its tasks.
_background: set[asyncio.Future[Any]] = set()


class LoopClients(Generic[C]):
    """Async SDK clients, one per event loop: an HTTP connection pool cannot cross loops.

    A client whose loop has closed cannot be closed on it any more; it is released when a new
    loop makes its first call, and when this cache is garbage-collected or the interpreter exits
    (a ``weakref.finalize``). An app that runs ``asyncio.run`` per request therefore neither keeps
    a pool and its sockets per finished loop nor leaves aiohttp sessions to be reported as
    "Unclosed client session".
    """

    __slots__ = ("__weakref__", "_build", "_clients", "_lock")

    def __init__(self, build: Callable[[], C]) -> None:
        self._build = build
        self._clients: dict[asyncio.AbstractEventLoop, C] = {}
        self._lock = threading.Lock()
        weakref.finalize(self, _release_closed, self._clients)

    def get(self) -> C:
        """The client of the running loop, built on its first call."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            with self._lock:
                client = self._clients.get(loop)
                if client is None:
                    _release_closed(self._clients)
                    client = self._clients[loop] = self._build()
        return client

    async def aclose_current(self) -> None:
        """Close the running loop's client, awaiting its connections."""
        with self._lock:
            client: Any = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def close_all(self) -> None:
        """Close every client: on its own loop when that still runs, else as far as possible."""
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, client in clients:
            if loop.is_closed():
                _release(client)
            elif loop is running:
                task = loop.create_task(client.close())  # type: ignore[attr-defined]
                _background.add(task)  # the loop keeps only a weak reference to its tasks
                task.add_done_callback(_background.discard)
            elif loop.is_running():  # in another thread
                asyncio.run_coroutine_threadsafe(client.close(), loop)  # type: ignore[attr-defined]
            elif running is None:  # an idle loop, and none runs here: close on it now
                with contextlib.suppress(Exception):  # closing is best effort; the client is gone
                    loop.run_until_complete(client.close())  # type: ignore[attr-defined]


def _release_closed(clients: dict[asyncio.AbstractEventLoop, Any]) -> None:
    for loop in [loop for loop in clients if loop.is_closed()]:
        _release(clients.pop(loop))


def _release(client: Any) -> None:
    """Release an async client whose loop has closed.

    Nothing can be awaited on that loop any more, but closing an aiohttp session needs no I/O:
    drive ``close()`` by hand while it only yields to the scheduler, which marks the session and
    its connector closed. The sockets close when the garbage collector frees their transports.
    A transport that cannot close without its loop (httpx's) is simply dropped.
    """
    coroutine = client.close()
    try:
        for _ in range(100):
            if coroutine.send(None) is not None:
                break  # waiting on a real future: that needs the loop
    except StopIteration:
        return
    except Exception:  # e.g. "no running event loop": the coroutine is over, the client dropped
        return
    with contextlib.suppress(Exception):
        coroutine.close()


# -- which HTTP transport async clients use ------------------------------------------------
ASYNC_TRANSPORTS = ("auto", "aiohttp", "httpx")


def async_transport_setting(settings: ProviderSettings) -> str:
    """The ``async_transport`` setting: "auto" (aiohttp when installed), "aiohttp" or "httpx"."""
    value = settings.options.get("async_transport", "auto")
    if value not in ASYNC_TRANSPORTS:
        raise ConfigurationError(
            f"async_transport must be one of {', '.join(map(repr, ASYNC_TRANSPORTS))}, got {value!r}",
            provider=settings.name,
        )
    return str(value)


def aiohttp_installed() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


def aiohttp_client(sdk: Any) -> Any:
    """The SDK's aiohttp-backed HTTP client, or None when this SDK or environment has none.

    At concurrency it serves about twice the requests per second of the SDK's default httpx
    pool; its errors reach the SDK as the same httpx exceptions (see ``map_error``).
    """
    factory = getattr(sdk, "DefaultAioHttpClient", None)
    if factory is None or not aiohttp_installed():
        return None
    try:
        return factory()
    except RuntimeError:  # the SDK's stand-in when it cannot load aiohttp
        return None


async def parsed(value: Any) -> Any:
    """``parse()`` of an async raw response: a coroutine in newer SDKs, a value in older ones."""
    return await value if inspect.isawaitable(value) else value
