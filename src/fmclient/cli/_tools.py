"""Tools on the command line: ``--tool module:function``, ``--mcp "command args"``, ``--approve``
and ``--max-steps`` (``complete`` and ``chat`` share them).

With tools, a turn is a tool loop (``client.run_stream``): each tool call and its result are shown
as they happen, one line each on stderr, so stdout stays the answer.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from fmclient.secret import redact

if TYPE_CHECKING:
    from fmclient.tool_loop import ToolResult
    from fmclient.types import ToolCall

# This module is imported with every command (its flags are in ``--help``): the rest of what it
# needs (contextlib, threading, json, shlex, mcp) is imported when tools are given.

#: how much of a tool's arguments or result one line shows
SHOWN = 160


def add_tool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tool",
        action="append",
        metavar="MODULE:FUNCTION",
        help="a Python function the model may call (repeatable); the module is imported from the "
        "current directory or sys.path",
    )
    parser.add_argument(
        "--mcp",
        action="append",
        metavar='"COMMAND ARGS"',
        help="an MCP server started over stdio whose tools the model may call (repeatable)",
    )
    parser.add_argument(
        "--approve", action="store_true", help="ask y/N on the terminal before each tool call (no terminal: denied)"
    )
    parser.add_argument(
        "--max-steps", type=int, metavar="N", help="most model calls in one turn with tools (default 10)"
    )


class Toolset:
    """The tools of one command, open (MCP servers started) until :meth:`close`."""

    def __init__(
        self, tools: list[Any], approve: bool = False, max_steps: int | None = None, servers: list[str] | None = None
    ) -> None:
        import contextlib
        import threading

        self.tools = tools
        self.approve = approve
        self.max_steps = max_steps
        #: the --mcp commands, started by :meth:`start`
        self.servers = list(servers or ())
        self._servers = contextlib.ExitStack()
        self._asking = threading.Lock()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Toolset | None:
        """The tools the arguments name, or None without ``--tool``/``--mcp``: each ``--tool``
        imported and every flag checked now (ValueError with the reason); MCP servers start with
        :meth:`start`, once every other check has passed."""
        specs, servers = list(args.tool or ()), list(args.mcp or ())
        if not specs and not servers:
            for flag, given in (("--approve", args.approve), ("--max-steps", args.max_steps is not None)):
                if given:
                    raise ValueError(f"{flag} applies to tool calls: give --tool or --mcp too")
            return None
        if args.max_steps is not None and args.max_steps < 1:
            raise ValueError(f"--max-steps must be 1 or more, got {args.max_steps}")
        return cls([import_tool(spec) for spec in specs], bool(args.approve), args.max_steps, servers=servers)

    def start(self) -> None:
        """Start the ``--mcp`` servers (each listed its tools); on a failure, those started stop."""
        try:
            for command in self.servers:
                self.tools.append(self._start_server(command))
        except BaseException:
            self.close()
            raise

    def _start_server(self, command: str) -> Any:
        import shlex

        try:
            argv = shlex.split(command)
        except ValueError as error:
            raise ValueError(f"--mcp {command!r}: {error}") from None
        if not argv:
            raise ValueError("--mcp takes a command to start, e.g. --mcp mcp-server-time")
        try:
            from fmclient.mcp import MCPTools

            return self._servers.enter_context(MCPTools.stdio(argv, stderr=_server_log()))
        except (ImportError, OSError) as error:
            raise ValueError(f"--mcp {command!r}: the server could not be started: {error}") from None
        except Exception as error:  # the SDK's own errors (a server that exits, a bad handshake)
            from fmclient.errors import FMClientError

            if isinstance(error, FMClientError):
                raise
            raise ValueError(f"--mcp {command!r}: the server could not be started: {error}") from None

    def close(self) -> None:
        self._servers.close()

    def run_options(self) -> dict[str, Any]:
        """``run_stream``'s tool arguments."""
        options: dict[str, Any] = {"tools": self.tools}
        if self.approve:
            options["approve"] = self.ask
        if self.max_steps is not None:
            options["max_steps"] = self.max_steps
        return options

    def ask(self, call: ToolCall) -> bool:
        """``--approve``: y/N on the terminal; with no terminal to ask, the call is denied."""
        stdin = sys.stdin
        with self._asking:
            question = f"fmclient: run tool {call.name}({_short(call.arguments)})? [y/N] "
            if stdin is None or stdin.closed or not stdin.isatty():
                print(f"{question}no terminal to ask: denied", file=sys.stderr, flush=True)
                return False
            sys.stderr.write(question)
            sys.stderr.flush()
            try:
                answer = stdin.readline()
            except (OSError, ValueError):
                answer = ""
            return answer.strip().lower() in ("y", "yes")


def _server_log() -> Any:
    """Where an MCP server's stderr goes: ours, or the process's own where ours is no real file."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.__stderr__
    return sys.stderr


def import_tool(spec: str) -> Any:
    """``module:function`` (``package.module:function``): the function, imported from the current
    directory or sys.path. ValueError naming the spec when it is not there."""
    import importlib
    import os

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise ValueError(f"--tool takes MODULE:FUNCTION (e.g. --tool mytools:get_weather), not {spec!r}")
    # A console script's sys.path starts with its own directory, not the one it runs in.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise ValueError(
                f"--tool {spec}: no module named {error.name!r} in the current directory or sys.path"
            ) from None
        raise ValueError(f"--tool {spec}: importing {module_name!r} failed: {error}") from None
    except Exception as error:  # the module's own code failed: say where, without a traceback
        raise ValueError(f"--tool {spec}: importing {module_name!r} failed: {type(error).__name__}: {error}") from None
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValueError(f"--tool {spec}: module {module_name!r} has no {attribute!r}")
        value = getattr(value, part)
    from fmclient.tool_loop import FunctionTool

    if not callable(value) and not isinstance(value, FunctionTool):
        raise ValueError(f"--tool {spec}: {attribute!r} is a {type(value).__name__}, not a function")
    return value


def show_call(call: ToolCall) -> None:
    print(f"fmclient: tool {call.name}({_short(call.arguments)})", file=sys.stderr, flush=True)


def show_result(result: ToolResult) -> None:
    how = f"failed ({result.error_type})" if result.is_error else "->"
    print(f"fmclient: tool {result.name} {how} {_short(result.text)}", file=sys.stderr, flush=True)


def _short(value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = redact(" ".join(text.split()))  # one line
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"
