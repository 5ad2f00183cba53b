"""An MCP server written with the SDK's own server class (MCPServer), served over Streamable HTTP
on 127.0.0.1, for fmclient's MCP tests. Run: ``python http_server.py PORT TOKEN``.

Every request must carry ``Authorization: Bearer TOKEN`` (401 otherwise). Tools: ``add``,
``slow`` (sleeps; for timeouts), ``fail`` (the server's own error result), ``pixel`` (an image),
``grow`` (adds the tool ``extra`` and tells the client its tool list changed).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

server = MCPServer("fmclient-test", log_level="ERROR")


@server.tool(annotations={"readOnlyHint": True})
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "woke up"


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ToolError(f"cannot do that: {reason}")


@server.tool()
def pixel() -> Image:
    """A 1x1 PNG."""
    return Image(data=PNG, format="png")


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool named extra."""

    def extra() -> str:
        """Appeared later."""
        return "extra!"

    server.add_tool(extra)
    await ctx.session.send_tool_list_changed()
    return "grown"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


def main() -> None:
    port, token = int(sys.argv[1]), sys.argv[2]
    app = server.streamable_http_app()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or ())
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
