"""Tools on the command line: ``--tool module:function`` with a module of tools written here,
``--mcp`` with the real ``mcp-server-time``, ``--approve`` and ``--max-steps``. In-process with the
mock provider for what was sent and logged; as the console script over the OpenAI wire fake where
the process matters (the module found in the current directory, stdout kept for the answer)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_server_time  # noqa: F401  (a dev dependency: missing fails, never skips)
import pytest

from fmclient.cli import main
from fmclient.logstore import LogStore, default_log_path
from fmclient.testing import MockProvider
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer
from tests.test_cli import FMCLIENT

TOOLS = '''
from pathlib import Path

CONSTANT = 3


def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    Path("add-ran").write_text(f"{a}+{b}")
    return a + b


def fail(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"no luck: {reason}")
'''


@pytest.fixture
def mock() -> Iterator[MockProvider]:
    with MockProvider() as provider:
        yield provider


@pytest.fixture
def tools_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of tools in the current directory, under a name no other test imported."""
    name = f"cli_tools_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def rows() -> list[dict[str, Any]]:
    with LogStore() as store:
        return store.responses(limit=None)


def test_a_tool_from_a_module_runs_and_the_answer_stays_on_stdout(
    mock: MockProvider, tools_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock.add_reply("Let me add.", tool_calls=[{"id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}}])
    mock.add_reply("The sum is 5.")
    assert main(["complete", "What is 2+3?", "-m", "mock/x", "--tool", f"{tools_module}:add"]) == 0
    out = capsys.readouterr()
    assert out.out == "Let me add.\nThe sum is 5.\n"
    assert out.err.splitlines() == ['fmclient: tool add({"a": 2, "b": 3})', "fmclient: tool add -> 5"]
    assert (tmp_path / "add-ran").read_text() == "2+3"
    first, second = (call.request for call in mock.calls)
    assert [t.name for t in first.tools] == ["add"]  # type: ignore[union-attr]
    assert [(m.role, m.text) for m in second.messages] == [  # type: ignore[union-attr]
        ("user", "What is 2+3?"),
        ("assistant", "Let me add."),
        ("tool", "5"),
    ]
    [row] = rows()
    assert row["answer"] == "The sum is 5."
    assert row["tool_calls"] == [{"step": 1, "id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}, "result": "5"}]
    # usage summed over both steps (the mock counts words)
    steps_usage = [c.request for c in mock.calls]
    assert row["usage"]["input_tokens"] > 0 and len(steps_usage) == 2


def test_a_failing_tool_is_shown_logged_and_sent_back(
    mock: MockProvider, tools_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mock.add_reply("", tool_calls=[{"id": "c1", "name": "fail", "arguments": {"reason": "testing"}}])
    mock.add_reply("It failed.")
    assert main(["complete", "try", "-m", "mock/x", "--tool", f"{tools_module}:fail", "--json"]) == 0
    out = capsys.readouterr()
    assert "fmclient: tool fail failed (RuntimeError) Error: RuntimeError: no luck: testing" in out.err
    data = json.loads(out.out)
    assert data["text"] == "It failed." and data["run"]["steps"] == 2 and data["run"]["stopped"] == "answer"
    assert data["run"]["tool_calls"][0]["is_error"] is True
    assert rows()[0]["tool_calls"][0]["error"] == "RuntimeError"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nocolon", "--tool takes MODULE:FUNCTION"),
        ("no_such_module_xyz:f", "no module named 'no_such_module_xyz' in the current directory or sys.path"),
        ("{module}:missing", "has no 'missing'"),
        ("{module}:CONSTANT", "'CONSTANT' is a int, not a function"),
        ("broken_tools_mod:f", "importing 'broken_tools_mod' failed: ZeroDivisionError"),
    ],
)
def test_a_bad_tool_spec_is_one_clear_line_and_nothing_is_sent(
    mock: MockProvider, tools_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, needle: str
) -> None:
    (tmp_path / "broken_tools_mod.py").write_text("1 / 0\n")
    assert main(["complete", "hi", "-m", "mock/x", "--tool", spec.format(module=tools_module)]) == 1
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert mock.calls == [] and not default_log_path().exists()


def test_approve_without_a_terminal_denies_and_the_tool_never_runs(
    mock: MockProvider, tools_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock.add_reply("", tool_calls=[{"id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}}])
    mock.add_reply("Not allowed, then.")
    assert main(["complete", "2+3?", "-m", "mock/x", "--tool", f"{tools_module}:add", "--approve"]) == 0
    err = capsys.readouterr().err
    assert "run tool add" in err and "no terminal to ask: denied" in err
    assert not (tmp_path / "add-ran").exists()
    tool_message = mock.calls[1].request.messages[-1]  # type: ignore[union-attr]
    assert tool_message.role == "tool" and "denied" in tool_message.text
    assert rows()[0]["tool_calls"][0]["error"] == "denied"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("typed", "ran"), [("y\n", True), ("\n", False), ("no\n", False)])
def test_approve_asks_on_the_terminal(
    mock: MockProvider,
    tools_module: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    typed: str,
    ran: bool,
) -> None:
    monkeypatch.setattr("sys.stdin", FakeTerminal(typed))
    mock.add_reply("", tool_calls=[{"id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}}]).add_reply("ok")
    assert main(["complete", "2+3?", "-m", "mock/x", "--tool", f"{tools_module}:add", "--approve"]) == 0
    assert 'run tool add({"a": 2, "b": 3})? [y/N]' in capsys.readouterr().err
    assert (tmp_path / "add-ran").exists() is ran


def test_max_steps_stops_the_loop_says_so_and_exits_1(
    mock: MockProvider, tools_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(3):
        mock.add_reply("", tool_calls=[{"id": f"c{n}", "name": "add", "arguments": {"a": n, "b": n}}])
    assert main(["complete", "loop", "-m", "mock/x", "--tool", f"{tools_module}:add", "--max-steps", "2"]) == 1
    assert "stopped after 2 steps" in capsys.readouterr().err
    assert len(mock.calls) == 2
    assert [c["step"] for c in rows()[0]["tool_calls"]] == [1, 2]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--approve"], "--approve applies to tool calls: give --tool or --mcp too"),
        (["--max-steps", "3"], "--max-steps applies to tool calls"),
        (["--mcp", ""], "--mcp takes a command to start"),
        (["--mcp", "/no/such/server-binary"], "could not connect to MCP server stdio /no/such/server-binary"),
    ],
)
def test_bad_tool_flags_are_refused_before_anything(
    mock: MockProvider, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    assert main(["complete", "hi", "-m", "mock/x", *args]) == 1
    assert needle in capsys.readouterr().err
    assert mock.calls == []


def time_server() -> str:
    return f"{sys.executable} -m mcp_server_time --local-timezone UTC"


def test_the_real_mcp_time_server_answers_a_tool_call(mock: MockProvider, capsys: pytest.CaptureFixture[str]) -> None:
    mock.add_reply("", tool_calls=[{"id": "t1", "name": "get_current_time", "arguments": {"timezone": "UTC"}}])
    mock.add_reply("It is now.")
    assert main(["complete", "What time is it in UTC?", "-m", "mock/x", "--mcp", time_server()]) == 0
    out = capsys.readouterr()
    assert out.out == "It is now.\n"
    assert 'fmclient: tool get_current_time({"timezone": "UTC"})' in out.err
    assert '"timezone": "UTC"' in out.err.splitlines()[-1]  # the server's own result
    names = {t.name for t in mock.calls[0].request.tools}  # type: ignore[union-attr]
    assert {"get_current_time", "convert_time"} <= names
    result = rows()[0]["tool_calls"][0]["result"]
    assert json.loads(result)["timezone"] == "UTC" and "datetime" in json.loads(result)


def test_the_console_script_finds_the_tool_module_in_its_directory(fake_server: FakeServer, tmp_path: Path) -> None:
    # A process, as a person runs it: the module comes from the current directory (a console
    # script's sys.path does not hold it), tool lines go to stderr and stdout is the answer only.
    (tmp_path / "weather_tools.py").write_text(
        textwrap.dedent(
            '''
            def weather(city: str) -> str:
                """Today's weather in a city."""
                return f"sunny in {city}"
            '''
        )
    )
    tool = "weather_tools:weather"
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("", tool_calls=[("call_1", "weather", '{"city": "Oslo"}')]), Answer("Sunny in Oslo."))
    (tmp_path / "wire.toml").write_text(
        f'[providers.openai]\nbase_url = "{fake_server.url}/v1"\napi_key = "sk-test-wirefake-000000000000"\n'
    )
    out = subprocess.run(
        [FMCLIENT, "--config", "wire.toml", "complete", "Weather?", "-m", "openai/gpt-6-luna", "--tool", tool],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Sunny in Oslo.\n"
    assert out.stderr.splitlines() == [
        'fmclient: tool weather({"city": "Oslo"})',
        "fmclient: tool weather -> sunny in Oslo",
    ]
    second = fake.bodies("/responses")[1]["input"]  # gpt-6-luna is served by the Responses API
    assert second[-1] == {"type": "function_call_output", "call_id": "call_1", "output": "sunny in Oslo"}


def test_a_closed_stdin_with_approve_denies(tmp_path: Path) -> None:
    (tmp_path / "t_mod.py").write_text("def ping() -> str:\n    '''Ping.'''\n    return 'pong'\n")
    out = subprocess.run(
        ["bash", "-c", f"'{FMCLIENT}' complete hi -m mock/x --tool t_mod:ping --approve <&-"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # the mock answers without calling the tool: the point is that a closed stdin is no error here
    assert out.returncode == 0, out.stderr
    assert out.stdout == "mock response\n"


def test_continuing_a_conversation_sends_the_tool_steps_again(mock: MockProvider, tools_module: str) -> None:
    mock.add_reply("", tool_calls=[{"id": "c1", "name": "add", "arguments": {"a": 1, "b": 1}}])
    mock.add_reply("Two.").add_reply("Yes.")
    assert main(["complete", "1+1?", "-m", "mock/x", "--tool", f"{tools_module}:add"]) == 0
    assert main(["complete", "-c", "Sure?"]) == 0
    sent = mock.calls[2].request.messages  # type: ignore[union-attr]
    assert [(m.role, m.text, [c.name for c in m.tool_calls], m.tool_call_id) for m in sent] == [
        ("user", "1+1?", [], None),
        ("assistant", "", ["add"], None),
        ("tool", "2", [], "c1"),
        ("assistant", "Two.", [], None),
        ("user", "Sure?", [], None),
    ]


def test_logs_shows_each_tool_call_with_its_result(
    mock: MockProvider, tools_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mock.add_reply("", tool_calls=[{"id": "c1", "name": "add", "arguments": {"a": 4, "b": 5}}]).add_reply("Nine.")
    assert main(["complete", "4+5?", "-m", "mock/x", "--tool", f"{tools_module}:add"]) == 0
    capsys.readouterr()
    assert main(["logs", "-n", "1"]) == 0
    assert "- tool call add({'a': 4, 'b': 5}) -> 9" in capsys.readouterr().out
