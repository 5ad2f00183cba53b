"""MCP servers as tools: the real ``mcp-server-time`` over stdio, and a server written with the
SDK's own server class over Streamable HTTP (with an auth header) in a subprocess on 127.0.0.1.
Runs go through a client whose model is the mock (scripted tool calls); the tools are real."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp  # noqa: F401  (the [mcp] extra and mcp-server-time are dev dependencies: missing fails, never skips)
import mcp_server_time  # noqa: F401
import pytest

from fmclient import Client, ConfigurationError
from fmclient.mcp import MCPConnectionError, MCPTimeoutError, MCPTools
from fmclient.testing import MockProvider
from fmclient.types import ImagePart

SERVERS = Path(__file__).parent / "mcp_servers"
TOKEN = "mcp-token-0123456789"
MODEL = "openai/gpt-4o"


def time_server(pidfile: Path) -> list[str]:
    """mcp-server-time as installed from the registry, in a process whose id the test knows."""
    return [sys.executable, str(SERVERS / "run_module.py"), str(pidfile), "mcp_server_time", "--local-timezone", "UTC"]


def stdio(command: list[str], **options: Any) -> MCPTools:
    return MCPTools.stdio(command, stderr=DEVNULL, **options)


DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - the servers' log lines, for the whole module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> HttpServer:
        self.process = subprocess.Popen(
            [sys.executable, str(SERVERS / "http_server.py"), str(self.port), TOKEN],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the MCP test server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # this test's own subprocess, by its handle
            self.process.wait()
            self.process = None


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer().start()
    yield server
    server.kill()


def tools_of(server: HttpServer, **options: object) -> MCPTools:
    return MCPTools.http(server.url, headers={"Authorization": f"Bearer {TOKEN}"}, **options)  # type: ignore[arg-type]


# -- stdio: the real mcp-server-time ---------------------------------------------------------------
def test_time_server_over_stdio_in_a_run(tmp_path: Path) -> None:
    with stdio(time_server(tmp_path / "pid"), prefix="time_") as time_tools:
        assert sorted(t.name for t in time_tools.loop_tools()) == ["time_convert_time", "time_get_current_time"]
        spec = next(t.spec for t in time_tools.loop_tools() if t.name == "time_get_current_time")
        assert spec.parameters["required"] == ["timezone"]
        with MockProvider() as mock, Client() as client:
            mock.add_tool_call("time_get_current_time", {"timezone": "Europe/Oslo"}, id="c1")
            mock.add_tool_call("time_get_current_time", {"timezone": "Mars/Olympus"}, id="c2")
            mock.add_reply("It is late in Oslo.")
            run = client.run("Time in Oslo?", tools=[time_tools], model=MODEL)
            sent = [t.name for t in mock.requests[0].tools]
    assert sent == ["time_get_current_time", "time_convert_time"]
    first, second = run.steps[0].tool_results[0], run.steps[1].tool_results[0]
    assert not first.is_error and '"timezone": "Europe/Oslo"' in first.text
    # The server's own error result goes back to the model as an error.
    assert second.is_error and "Mars/Olympus" in second.text
    assert run.text == "It is late in Oslo."


def test_allow_deny_and_invalid_arguments_before_the_server(tmp_path: Path) -> None:
    with stdio(
        time_server(tmp_path / "pid"), allow=["get_current_time", "convert_time"], deny=["convert_time"]
    ) as tools:
        assert [t.name for t in tools.loop_tools()] == ["get_current_time"]
        with MockProvider() as mock, Client() as client:
            mock.add_tool_call("get_current_time", {"zone": "UTC"}).add_reply("ok")
            run = client.run("Time?", tools=[tools], model=MODEL)
    result = run.steps[0].tool_results[0]
    assert result.error_type == "invalid_arguments" and "'timezone' is a required property" in result.text


def test_a_server_killed_mid_run_is_restarted_once_and_the_call_retried(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with stdio(time_server(pidfile)) as tools:
        first_pid = int(pidfile.read_text())

        def crash() -> str:
            """Kill the time server."""
            os.kill(first_pid, signal.SIGKILL)  # the server this test started, by its id
            return "killed"

        with MockProvider() as mock, Client() as client:
            mock.add_tool_call("get_current_time", {"timezone": "UTC"}, id="c1")
            mock.add_tool_call("crash", {}, id="c2")
            mock.add_tool_call("get_current_time", {"timezone": "Asia/Tokyo"}, id="c3")
            mock.add_reply("ok")
            run = client.run("Time?", tools=[tools, crash], model=MODEL)
        assert tools.connections == 2
        assert int(pidfile.read_text()) != first_pid  # a new server process
    results = [step.tool_results[0] for step in run.steps[:3]]
    assert [r.is_error for r in results] == [False, False, False]
    # mcp-server-time marks its tools read-only: sending the call again after the restart is safe.
    assert '"timezone": "Asia/Tokyo"' in results[2].text


def test_mcp_extra_missing_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(ConfigurationError, match=r"fmclient\[mcp\]"):
        MCPTools.stdio(["mcp-server-time"])


# -- Streamable HTTP: a server written with the SDK's MCPServer ---------------------------------------
def test_http_server_with_auth_header_in_an_async_run(http_server: HttpServer) -> None:
    async def go() -> None:
        async with tools_of(http_server, prefix="calc_") as tools:
            assert "calc_add" in {t.name for t in tools.loop_tools()}
            assert repr(tools).count(TOKEN) == 0
            with MockProvider() as mock:
                async with Client() as client:
                    mock.add_reply(
                        tool_calls=[
                            {"id": "c1", "name": "calc_add", "arguments": {"a": 2, "b": 3}},
                            {"id": "c2", "name": "calc_fail", "arguments": {"reason": "no"}},
                            {"id": "c3", "name": "calc_pixel", "arguments": {}},
                        ]
                    )
                    mock.add_reply("5")
                    run = await client.arun("2+3", tools=[tools], model=MODEL)
        results = run.steps[0].tool_results
        assert results[0].text == "5" and not results[0].is_error
        assert (
            results[1].is_error and results[1].text == "Error: Error executing tool fail: cannot do that: no"
        )  # the server's own words
        image = results[2].content
        assert isinstance(image, tuple) and isinstance(image[0], ImagePart) and image[0].media_type == "image/png"
        # What went back to the model on the next step: the image, as a part of the tool message.
        assert mock.requests[1].messages[-1].content == image

    asyncio.run(go())


def test_a_wrong_token_is_refused_at_connect(http_server: HttpServer) -> None:
    wrong = MCPTools.http(http_server.url, headers={"Authorization": "Bearer not-the-token-0000"})
    with pytest.raises(MCPConnectionError) as caught:
        wrong.start()
    assert "not-the-token-0000" not in str(caught.value)


def test_a_server_that_hangs_hits_the_timeout(http_server: HttpServer) -> None:
    with tools_of(http_server, timeout=0.5) as tools:
        slow = next(t for t in tools.loop_tools() if t.name == "slow")
        with pytest.raises(MCPTimeoutError):
            slow.handler(seconds=30)
        with MockProvider() as mock, Client() as client:
            mock.add_tool_call("slow", {"seconds": 30}).add_reply("gave up")
            run = client.run("wait", tools=[tools], model=MODEL)
    assert run.steps[0].tool_results[0].error_type == "MCPTimeoutError"


def test_list_changed_is_picked_up_on_the_next_step(http_server: HttpServer) -> None:
    with tools_of(http_server) as tools, MockProvider() as mock, Client() as client:
        mock.add_tool_call("grow", {}).add_tool_call("extra", {}).add_reply("done")
        deadline = time.monotonic() + 5

        def grown(run: object) -> bool:
            while "extra" not in {t.name for t in tools.loop_tools()} and time.monotonic() < deadline:
                time.sleep(0.02)  # the notification arrives on the session's own loop
            return False

        run = client.run("grow", tools=[tools], model=MODEL, stop_when=grown)
        assert "extra" not in {t.name for t in mock.requests[0].tools}
        assert "extra" in {t.name for t in mock.requests[1].tools}
    assert run.steps[1].tool_results[0].text == "extra!"


def test_a_dropped_http_connection_is_reconnected_once(http_server: HttpServer) -> None:
    with tools_of(http_server, connect_timeout=10) as tools:
        by_name = {t.name: t for t in tools.loop_tools()}
        first_pid = by_name["pid"].handler()
        http_server.kill()
        http_server.start()  # the same address, a new process that knows no session
        # add is read-only: reconnected and sent again.
        assert by_name["add"].handler(a=1, b=1) == "2"
        assert tools.connections == 2
        http_server.kill()
        http_server.start()
        # pid is not marked safe to repeat: reconnected, but the call fails rather than run twice.
        with pytest.raises(MCPConnectionError, match="not safe to send twice"):
            by_name["pid"].handler()
        assert tools.connections == 3
        assert by_name["pid"].handler() != first_pid  # the next call goes to the new session
