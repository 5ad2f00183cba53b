"""MCP servers as tools for the tool loop, on the official ``mcp`` SDK (``pip install "fmclient[mcp]"``).

::

    from fmclient.mcp import MCPTools

    with MCPTools.stdio(["mcp-server-time"]) as time_tools:
        run = client.run("What time is it in Oslo?", tools=[time_tools], model="claude-sonnet")

    async with MCPTools.http("https://mcp.example.com/mcp", headers={"Authorization": f"Bearer {token}"}) as remote:
        run = await client.arun("...", tools=[remote, my_function])

* The server's tools are listed with their schemas when the context is entered, and listed again
  when the server says they changed (``notifications/tools/list_changed``): the next step of a
  run offers the new list. ``prefix=`` puts a prefix on every name (two servers, one run);
  ``allow=`` / ``deny=`` keep or drop tools by their server-side name.
* Each call has a time limit (``timeout=``, 30 s by default): a server that never answers fails
  the call with :class:`MCPTimeoutError`, and the model sees that as the tool's error.
* A result the server marks as an error goes back to the model as an error result. Text,
  structured content (as JSON) and images are carried; an image goes to providers that take
  images in tool results and is refused before sending where the model cannot.
* A server that crashed (stdio) or dropped the connection (HTTP) is started or connected again
  once, and the call sent again when that is safe: the call never reached the server, or the
  server marks the tool read-only or idempotent. Otherwise the call fails with
  :class:`MCPConnectionError` (the model sees it; the next call reconnects).
* The session runs on a background event loop (a thread) that :class:`MCPTools` owns, so sync
  apps work as well as async ones; leaving the context closes the session, the loop and (stdio)
  the server process.

Header values (an auth token) never appear in a repr, a log record or an error message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TextIO, TypeVar

from fmclient.errors import APIConnectionError, ConfigurationError, RequestTimeoutError, ToolError
from fmclient.secret import register_secret
from fmclient.tool_loop import FunctionTool, _checked
from fmclient.types import ImagePart, Part, TextPart

__all__ = ["MCPConnectionError", "MCPTimeoutError", "MCPTools"]

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0
MCP_EXTRA = 'pip install "fmclient[mcp]"'


class MCPTimeoutError(RequestTimeoutError):
    """An MCP server did not answer a call (or the connection) within its time limit."""


class MCPConnectionError(APIConnectionError):
    """The connection to an MCP server failed, or broke during a call that was not safe to send again."""


def _import_mcp() -> Any:
    try:
        import mcp
    except ImportError as exc:
        raise ConfigurationError(f"MCP servers need the mcp extra: {MCP_EXTRA}") from exc
    return mcp


class MCPTools:
    """The tools of one MCP server, for ``tools=[...]`` of a run. Use it as a context manager
    (``with`` or ``async with``), or call :meth:`start` / :meth:`close` yourself."""

    def __init__(
        self,
        transport: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
        where: str,
        *,
        prefix: str = "",
        allow: Sequence[str] | None = None,
        deny: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(prefix, str):
            raise TypeError("prefix must be a str")
        self._transport = transport
        self._where = where
        self.prefix = prefix
        self.allow = None if allow is None else frozenset(allow)
        self.deny = frozenset(deny or ())
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: Any = None
        self._connection: asyncio.Task[None] | None = None
        self._disconnect: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._tools: list[FunctionTool] = []
        self._hints: dict[str, bool] = {}  # server-side name -> safe to send again
        #: how many times the session was (re)opened: 1 after start, 2 after one reconnect...
        self.connections = 0

    # -- building ------------------------------------------------------------------------------------
    @classmethod
    def stdio(
        cls,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        prefix: str = "",
        allow: Sequence[str] | None = None,
        deny: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_TIMEOUT,
        stderr: TextIO | None = None,
    ) -> MCPTools:
        """A server started as a subprocess speaking MCP over its stdin/stdout (``["mcp-server-time"]``).

        Its stderr goes to ``stderr`` (a text file object), by default this process's.
        """
        if isinstance(command, str) or not command or not all(isinstance(c, str) for c in command):
            raise TypeError('command must be a non-empty list of str, e.g. ["mcp-server-time"]')
        mcp = _import_mcp()
        for value in (env or {}).values():
            register_secret(value)  # a token passed to the server never shows in our errors
        params = mcp.StdioServerParameters(command=command[0], args=list(command[1:]), env=dict(env or {}), cwd=cwd)

        def transport() -> contextlib.AbstractAsyncContextManager[Any]:
            import sys

            return mcp.stdio_client(params, errlog=stderr or sys.stderr)  # type: ignore[no-any-return]

        return cls(
            transport,
            f"stdio {command[0]}",
            prefix=prefix,
            allow=allow,
            deny=deny,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )

    @classmethod
    def http(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        prefix: str = "",
        allow: Sequence[str] | None = None,
        deny: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_TIMEOUT,
    ) -> MCPTools:
        """A server at a Streamable HTTP endpoint; ``headers`` go with every request (auth)."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http(s) URL")
        _import_mcp()
        sent = dict(headers or {})
        for value in sent.values():
            register_secret(value)
            if value.lower().startswith("bearer "):
                register_secret(value[7:])

        def transport() -> contextlib.AbstractAsyncContextManager[Any]:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            return _http_transport(streamable_http_client, create_mcp_http_client, url, sent)

        return cls(
            transport, url, prefix=prefix, allow=allow, deny=deny, timeout=timeout, connect_timeout=connect_timeout
        )

    def __repr__(self) -> str:
        return f"<MCPTools {self._where} prefix={self.prefix!r} tools={[t.name for t in self._tools]}>"

    # -- the tool loop's view ------------------------------------------------------------------------
    def loop_tools(self) -> list[FunctionTool]:
        """The server's tools as the loop runs them (the list it last sent)."""
        if self._loop is None:
            raise RuntimeError("MCPTools is not started: use it as a context manager (with / async with)")
        return self._tools

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> MCPTools:
        """Start the background loop, connect and list the tools."""
        if self._loop is not None:
            return self
        self._start_loop()
        try:
            self._submit(self._open()).result()
        except BaseException:
            self.close()
            raise
        return self

    async def astart(self) -> MCPTools:
        if self._loop is not None:
            return self
        self._start_loop()
        try:
            await asyncio.wrap_future(self._submit(self._open()))
        except BaseException:
            await asyncio.to_thread(self.close)
            raise
        return self

    def close(self) -> None:
        """Close the session (and stop a stdio server), then the background loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shut(), loop).result(self.connect_timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.connect_timeout)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> MCPTools:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> MCPTools:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"fmclient-mcp {self._where}", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

    def _submit(self, coroutine: Awaitable[T]) -> Future[T]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]

    # -- on the background loop ----------------------------------------------------------------------
    async def _open(self) -> None:
        """Open a session in a task that owns it (the SDK's context managers enter and leave in one
        task), and wait until it is initialised and the tools are listed."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._disconnect = asyncio.Event()
        self._connection = asyncio.create_task(self._own(ready, self._disconnect))
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
        except asyncio.TimeoutError:
            await self._drop()
            raise MCPTimeoutError(
                f"MCP server {self._where} did not answer within {self.connect_timeout:g}s", retryable=False
            ) from None
        except Exception as exc:
            await self._drop()
            raise MCPConnectionError(f"could not connect to MCP server {self._where}: {_describe(exc)}") from exc
        self.connections += 1

    async def _own(self, ready: asyncio.Future[None], disconnect: asyncio.Event) -> None:
        from mcp import ClientSession

        try:
            async with (
                self._transport() as streams,
                ClientSession(streams[0], streams[1], message_handler=self._on_message) as session,
            ):
                await session.initialize()
                await self._list(session)
                self._session = session
                ready.set_result(None)
                await disconnect.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(_describe(exc)))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._session = None

    async def _drop(self) -> None:
        """End the current connection (its task leaves the SDK's context managers)."""
        task, self._connection = self._connection, None
        if self._disconnect is not None:
            self._disconnect.set()
        if task is not None:
            try:
                await asyncio.wait_for(task, 5)
            except BaseException:  # a transport that will not close cleanly: cancelled
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _shut(self) -> None:
        await self._drop()

    async def _on_message(self, message: Any) -> None:
        import mcp_types

        if isinstance(message, mcp_types.ToolListChangedNotification):
            session = self._session
            if session is not None:
                # Listed in a task of its own: the session's reader must not wait for its own reply.
                asyncio.get_running_loop().create_task(self._relist(session))

    async def _relist(self, session: Any) -> None:
        try:
            await asyncio.wait_for(self._list(session), self.timeout)
        except Exception:  # the old list stays; the next change (or reconnect) lists again
            import logging

            logging.getLogger("fmclient").warning("MCP server %s: listing its changed tools failed", self._where)

    async def _list(self, session: Any) -> None:
        listed: list[Any] = []
        cursor = None
        while True:
            from mcp_types import PaginatedRequestParams

            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
            listed.extend(page.tools)
            cursor = getattr(page, "next_cursor", None)
            if not cursor:
                break
        tools: list[FunctionTool] = []
        hints: dict[str, bool] = {}
        for found in listed:
            if (self.allow is not None and found.name not in self.allow) or found.name in self.deny:
                continue
            annotations = getattr(found, "annotations", None)
            hints[found.name] = bool(
                annotations is not None and (annotations.read_only_hint or annotations.idempotent_hint)
            )
            tools.append(self._as_tool(found))
        self._tools, self._hints = tools, hints

    def _as_tool(self, found: Any) -> FunctionTool:
        from fmclient import _validation

        remote = found.name
        name = _safe_name(self.prefix + remote)
        schema = dict(found.input_schema or {"type": "object", "properties": {}})
        schema.setdefault("type", "object")
        spec = _validation.tool_from_input(
            {"name": name, "description": found.description or "", "parameters": schema}, f"MCP tool {remote!r}"
        )

        def call(**arguments: Any) -> Any:
            if self._loop is None:
                raise MCPConnectionError(f"MCP server {self._where} is closed")
            return self._submit(self._call(remote, arguments)).result()

        async def acall(**arguments: Any) -> Any:
            if self._loop is None:
                raise MCPConnectionError(f"MCP server {self._where} is closed")
            future = self._submit(self._call(remote, arguments))
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()  # the call on the background loop is cancelled too
                raise

        return _checked(FunctionTool(spec, call, kind="extension", ahandler=acall))

    async def _call(self, remote: str, arguments: dict[str, Any]) -> Any:
        assert self._lock is not None
        for attempt in (1, 2):
            session = self._session
            sent = session is not None
            try:
                if session is None:
                    raise MCPConnectionError(f"MCP server {self._where} is not connected")
                result = await asyncio.wait_for(session.call_tool(remote, arguments), self.timeout)
            except asyncio.TimeoutError:
                raise MCPTimeoutError(
                    f"MCP tool {remote!r} on {self._where} did not answer within {self.timeout:g}s", retryable=False
                ) from None
            except Exception as exc:
                if not _connection_lost(exc) and not isinstance(exc, MCPConnectionError):
                    raise
                # Started (stdio) or connected (HTTP) again, once; the call is sent again only
                # when it never reached the server or the server says doing it twice is harmless.
                async with self._lock:
                    if self._session is session or self._session is None:
                        await self._drop()
                        await self._open()
                if attempt == 2 or (sent and not self._hints.get(remote, False)):
                    raise MCPConnectionError(
                        f"the connection to MCP server {self._where} broke during {remote!r}: {_describe(exc)}"
                        + ("" if attempt == 2 else "; reconnected, but the call is not safe to send twice")
                    ) from exc
                continue
            return _result_value(result, remote)
        raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def _http_transport(
    client_factory: Any, http_factory: Any, url: str, headers: dict[str, str]
) -> AsyncIterator[Any]:
    async with http_factory(headers=headers) as http, client_factory(url, http_client=http) as streams:
        yield streams


def _connection_lost(exc: BaseException) -> bool:
    import anyio

    if isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, ConnectionError)):
        return True
    try:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, MCPError):
        # A Streamable HTTP server answers 404 for a session it no longer knows (it restarted):
        # the spec says to start a new session.
        return getattr(exc.error, "code", None) == CONNECTION_CLOSED or "session not found" in str(exc).lower()
    name = type(exc).__name__
    return name in ("ConnectError", "RemoteProtocolError", "ReadError", "WriteError") or "closed" in str(exc).lower()


def _describe(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)  # an exception group (anyio task groups raise them)
    if isinstance(inner, tuple) and inner:
        return "; ".join(_describe(e) for e in inner)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64]


def _result_value(result: Any, remote: str) -> Any:
    """An MCP CallToolResult as a tool's return value: text, JSON or parts; an error result raises
    :class:`~fmclient.errors.ToolError` with the server's text (the model sees it as written)."""
    parts: list[Part] = []
    for block in result.content or ():
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(TextPart(block.text))
        elif kind == "image":
            parts.append(ImagePart(data=base64.b64decode(block.data), media_type=block.mime_type))
        else:  # audio, resources, links: described as JSON text
            parts.append(TextPart(json.dumps(block.model_dump(mode="json", exclude_none=True))))
    if not parts and result.structured_content is not None:
        parts.append(TextPart(json.dumps(result.structured_content)))
    if result.is_error:
        text = "".join(p.text for p in parts if isinstance(p, TextPart)) or f"MCP tool {remote!r} failed"
        raise ToolError(text)
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return parts
