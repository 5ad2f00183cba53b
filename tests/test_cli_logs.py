"""The prompt log and conversations of the ``fmclient`` command: what is stored, how it is read
back (``fmclient logs``), continued (-c, --cid), and what happens when the log cannot be written.

Most tests run :func:`fmclient.cli.main` in-process with the mock provider (which records what
was sent); the ones about processes (concurrency, a closed stdin, start-up imports) run the
console script. ``conftest.isolated_env`` points XDG_DATA_HOME at a fresh directory per test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client
from fmclient.cli import main
from fmclient.logstore import (
    MIGRATIONS,
    LogHook,
    LogRecord,
    LogStore,
    default_log_path,
    pending_path,
)
from fmclient.testing import MockProvider
from fmclient.types import ImagePart, Message, TextPart
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer
from tests.test_cli import FMCLIENT, assert_one_clean_error_line

# The smallest valid PNG: 1x1, one transparent pixel.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100ffff03000006000557bfabd40000000049454e44ae426082"
)


@pytest.fixture
def mock() -> Iterator[MockProvider]:
    with MockProvider() as provider:
        yield provider


def rows(**filters: Any) -> list[dict[str, Any]]:
    with LogStore() as store:
        return store.responses(limit=None, **filters)


# -- what is logged ----------------------------------------------------------------------------


def test_complete_logs_the_whole_exchange(mock: MockProvider, capsys: pytest.CaptureFixture[str]) -> None:
    mock.add_reply("Paris is the capital.")
    code = main(["complete", "Capital of France?", "-m", "mock/tiny", "-s", "Be brief.", "-o", "top_k=40", "-t", "0.5"])
    assert code == 0
    assert capsys.readouterr().out == "Paris is the capital.\n"
    [row] = rows()
    assert (row["provider"], row["model"], row["source"]) == ("mock", "tiny", "cli")
    assert (row["prompt"], row["system"], row["answer"]) == ("Capital of France?", "Be brief.", "Paris is the capital.")
    assert row["finish_reason"] == "stop"
    assert row["usage"]["input_tokens"] == 5 and row["usage"]["output_tokens"] == 4
    assert row["cost"] is None and "no price table for provider type 'mock'" in row["cost_reason"]
    assert row["options"] == {"top_k": 40, "temperature": 0.5}
    assert row["duration_ms"] is not None and row["duration_ms"] >= 0
    assert row["conversation_id"] and row["error"] is None
    # What the log says was sent is what was sent.
    request = mock.calls[0].request
    assert request.provider_options == {"top_k": 40} and request.temperature == 0.5  # type: ignore[union-attr]


def test_tool_calls_and_reasoning_effort_reach_the_call_and_the_log(mock: MockProvider) -> None:
    mock.add_reply("", tool_calls=[{"id": "c1", "name": "weather", "arguments": {"city": "Oslo"}}])
    assert main(["complete", "weather in Oslo?", "-m", "mock/x", "--reasoning", "high", "--no-stream"]) == 0
    assert mock.calls[0].request.reasoning == "high"  # type: ignore[union-attr]
    [row] = rows()
    assert row["tool_calls"] == [{"id": "c1", "name": "weather", "arguments": {"city": "Oslo"}}]
    assert row["options"] == {"reasoning": "high"}


def test_a_token_budget_for_reasoning_is_an_int(mock: MockProvider) -> None:
    assert main(["complete", "think", "-m", "mock/x", "--reasoning", "2048"]) == 0
    assert mock.calls[0].request.reasoning == 2048  # type: ignore[union-attr]


def test_json_output_names_the_conversation(mock: MockProvider, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["complete", "hi", "-m", "mock/x", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["text"] == "mock response"
    assert data["conversation_id"] == rows()[0]["conversation_id"]


def test_no_credential_reaches_the_log(mock: MockProvider) -> None:
    key = "sk-live-" + "9" * 40
    assert main(["complete", "hi", "-m", "mock/x", "-o", f"api_key={key}", "-o", "auth_token=abc", "-o", "seed=3"]) == 0
    assert rows()[0]["options"] == {"seed": 3}
    assert key.encode() not in default_log_path().read_bytes()


def test_a_known_key_in_a_prompt_is_redacted_in_the_log(tmp_path: Path) -> None:
    from fmclient.secret import Secret

    key = "sk-ant-" + "7" * 40
    Secret(key)  # the key is known to fmclient, as it is once a provider's settings hold it
    with LogStore(tmp_path / "l.db") as store:
        store.log(LogRecord(model="m", provider="p", prompt=f"my key is {key}", answer="ok"))
        assert key not in store.responses()[0]["prompt"]
    assert key.encode() not in (tmp_path / "l.db").read_bytes()


# -- conversations -----------------------------------------------------------------------------


def test_continue_sends_the_earlier_turns(mock: MockProvider) -> None:
    mock.add_reply("Hello Ada.").add_reply("Your name is Ada.")
    assert main(["complete", "My name is Ada.", "-m", "mock/x", "-s", "Be kind."]) == 0
    assert main(["complete", "-c", "What is my name?"]) == 0
    second = mock.calls[1].request
    assert [(m.role, m.text) for m in second.messages] == [  # type: ignore[union-attr]
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "What is my name?"),
    ]
    assert second.system == "Be kind." and second.model == "mock/x"  # type: ignore[union-attr]
    first, then = rows()
    assert first["conversation_id"] == then["conversation_id"]


def test_cid_continues_a_given_conversation_not_the_last(mock: MockProvider) -> None:
    mock.add_reply("one").add_reply("two").add_reply("three")
    assert main(["complete", "first topic", "-m", "mock/x"]) == 0
    first_cid = rows()[0]["conversation_id"]
    assert main(["complete", "second topic", "-m", "mock/x"]) == 0
    assert main(["complete", "--cid", first_cid, "and more"]) == 0
    texts = [m.text for m in mock.calls[2].request.messages]  # type: ignore[union-attr]
    assert texts == ["first topic", "one", "and more"]
    assert len(rows(conversation_id=first_cid)) == 2


def test_continue_with_nothing_logged_or_an_unknown_id_is_a_clear_error(
    mock: MockProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["complete", "-c", "hi"]) == 1
    assert "no earlier conversation" in capsys.readouterr().err
    assert main(["complete", "--cid", "nope", "hi"]) == 1
    assert "no conversation 'nope'" in capsys.readouterr().err
    assert mock.calls == []


def test_attachments_are_sent_logged_by_hash_and_sent_again_when_continuing(
    mock: MockProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    assert main(["complete", "What is this?", "-a", str(image), "-m", "mock/x"]) == 0
    sent = mock.calls[0].request.messages[0].content  # type: ignore[union-attr]
    assert sent == (TextPart("What is this?"), ImagePart(data=PNG, media_type="image/png"))
    [row] = rows()
    import hashlib

    assert row["attachments"] == [
        {"sha256": hashlib.sha256(PNG).hexdigest(), "media_type": "image/png", "size": len(PNG), "path": str(image)}
    ]
    assert PNG not in default_log_path().read_bytes()  # by hash, never the bytes
    assert main(["complete", "-c", "And its colour?"]) == 0
    assert mock.calls[1].request.messages[0].content == sent  # type: ignore[union-attr]
    # The file changed since: continuing would send something else, so it is refused.
    image.write_bytes(PNG + b"x")
    assert main(["complete", "-c", "again"]) == 1
    assert "has changed since it was sent" in capsys.readouterr().err
    assert len(mock.calls) == 2


def test_a_missing_attachment_is_refused_before_any_call(
    mock: MockProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["complete", "hi", "-a", "no-such.png", "-m", "mock/x"]) == 1
    err = capsys.readouterr().err
    assert "attachment file not found" in err and "no-such.png" in err
    assert mock.calls == [] and not default_log_path().exists()


def test_an_unknown_model_is_refused_and_nothing_logged(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["complete", "hi", "-m", "no-such-alias"]) == 1
    assert "no-such-alias" in capsys.readouterr().err
    assert rows() == []


def test_continue_over_the_openai_wire_fake_sends_the_history(
    fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("Hi Ada."), Answer("You are Ada."))
    config = tmp_path / "wire.toml"
    config.write_text(
        f'[providers.openai]\nbase_url = "{fake_server.url}/v1"\napi_key = "sk-test-wirefake-000000000000"\n'
    )
    assert main(["--config", str(config), "complete", "I am Ada", "-m", "openai/gpt-4o-mini"]) == 0
    assert main(["--config", str(config), "complete", "-c", "Who am I?", "--no-stream"]) == 0
    assert capsys.readouterr().out == "Hi Ada.\nYou are Ada.\n"
    second = fake.bodies()[1]
    assert [(m["role"], m["content"]) for m in second["messages"]] == [
        ("user", "I am Ada"),
        ("assistant", "Hi Ada."),
        ("user", "Who am I?"),
    ]
    first, then = rows()
    assert (then["usage"]["input_tokens"], then["usage"]["output_tokens"]) == (12, 5)
    assert then["provider"] == "openai" and then["conversation_id"] == first["conversation_id"]
    assert "sk-test-wirefake" not in default_log_path().read_bytes().decode("latin-1")


# -- fmclient logs -----------------------------------------------------------------------------


def seed_log() -> None:
    with LogStore() as store:
        store.log(
            LogRecord(
                model="m1",
                provider="p",
                prompt="tell me about penguins",
                answer="They swim.",
                conversation_id="c1",
                cost="0.0010",
                currency="USD",
                usage={"input_tokens": 10, "output_tokens": 3},
            )
        )
        store.log(
            LogRecord(
                model="m1",
                provider="p",
                prompt="and puffins?",
                answer="They fly.",
                conversation_id="c1",
                cost="0.0020",
                currency="USD",
                usage={"input_tokens": 20, "output_tokens": 4},
            )
        )
        store.log(
            LogRecord(
                model="m2",
                provider="q",
                prompt="what is TCP?",
                answer="A protocol.",
                conversation_id="c2",
                cost_reason="no price",
                usage={"input_tokens": 5, "output_tokens": 2},
            )
        )


def test_logs_lists_filters_and_searches(capsys: pytest.CaptureFixture[str]) -> None:
    seed_log()
    assert main(["logs", "-n", "1", "--json"]) == 0
    assert [r["prompt"] for r in json.loads(capsys.readouterr().out)] == ["what is TCP?"]
    assert main(["logs", "-n", "0", "-m", "m1", "--json"]) == 0
    assert [r["prompt"] for r in json.loads(capsys.readouterr().out)] == ["tell me about penguins", "and puffins?"]
    assert main(["logs", "--cid", "c2", "--json"]) == 0
    assert [r["answer"] for r in json.loads(capsys.readouterr().out)] == ["A protocol."]
    assert main(["logs", "-c", "--json"]) == 0
    assert [r["conversation_id"] for r in json.loads(capsys.readouterr().out)] == ["c2"]
    # FTS5: words of prompts and answers, punctuation is not syntax
    assert main(["logs", "-q", "fly", "--json"]) == 0
    assert [r["prompt"] for r in json.loads(capsys.readouterr().out)] == ["and puffins?"]
    assert main(["logs", "-q", "TCP?", "--json"]) == 0
    assert [r["prompt"] for r in json.loads(capsys.readouterr().out)] == ["what is TCP?"]
    assert main(["logs", "-n", "1"]) == 0
    text = capsys.readouterr().out
    assert "## Prompt\n\nwhat is TCP?" in text and "cost: unknown (no price)" in text


def test_logs_usage_sums_tokens_and_cost_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    seed_log()
    assert main(["logs", "--usage", "--json"]) == 0
    totals = {t["model"]: t for t in json.loads(capsys.readouterr().out)}
    assert totals["m1"]["cost"] == "0.0030" and totals["m1"]["input_tokens"] == 30
    assert totals["m1"]["responses"] == 2 and totals["m1"]["unpriced"] == 0
    assert totals["m2"]["unpriced"] == 1
    assert main(["logs", "--usage"]) == 0
    table = capsys.readouterr().out
    assert "p/m1" in table and "$0.0030" in table and "q/m2" in table and "unknown" in table
    assert "$0.0030 (+1 unpriced)" in table.splitlines()[-1]


def test_logs_off_on_status_path(mock: MockProvider, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(default_log_path())
    assert main(["logs", "off"]) == 0
    assert main(["complete", "unlogged", "-m", "mock/x"]) == 0
    assert main(["logs", "status", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["logging"] is False
    assert main(["logs", "on"]) == 0
    assert main(["complete", "logged", "-m", "mock/x"]) == 0
    assert [r["prompt"] for r in rows()] == ["logged"]
    capsys.readouterr()
    assert main(["logs", "status", "--json"]) == 0
    out = capsys.readouterr().out
    status = json.loads(out[out.index("{") :])
    assert status["logging"] is True and status["responses"] == 1 and status["schema_version"] == len(MIGRATIONS)


def test_the_log_is_private_to_its_owner(mock: MockProvider) -> None:
    assert main(["complete", "hi", "-m", "mock/x"]) == 0
    path = default_log_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with LogStore() as store:  # while it is open, WAL keeps its -wal and -shm files: private too
        store.log(LogRecord(model="m", provider="p", prompt="x", answer="y"))
        for sidecar in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600


def test_a_log_readable_by_others_is_made_private_again() -> None:
    LogStore().close()
    path = default_log_path()
    os.chmod(path, 0o644)
    LogStore().close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_search_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "-q", "  "]) == 1
    assert "the search text is empty" in capsys.readouterr().err


def test_a_data_dir_that_cannot_be_made_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))
    assert main(["logs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fmclient: LogStoreError: cannot open the log database") and len(err.splitlines()) == 1


# -- a log that cannot be written: a clear message, exit 1, nothing lost -------------------------


def test_a_corrupt_log_keeps_the_answer_and_the_exchange(
    mock: MockProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_log_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    mock.add_reply("the answer")
    assert main(["complete", "precious question", "-m", "mock/x"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "the answer\n"
    assert "not a valid SQLite database" in captured.err and str(path) in captured.err
    assert "kept in" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert stat.S_IMODE(pending_path(path).stat().st_mode) == 0o600
    assert main(["logs"]) == 1
    assert "not a valid SQLite database" in capsys.readouterr().err
    # Continuing needs the log: refused before anything is sent.
    assert main(["complete", "-c", "more"]) == 1
    assert len(mock.calls) == 1
    # Moved away, the next exchange brings the kept one into the new log.
    path.rename(path.with_suffix(".broken"))
    assert main(["complete", "next", "-m", "mock/x"]) == 0
    assert [r["prompt"] for r in rows()] == ["precious question", "next"]
    assert not pending_path(path).exists()


def test_a_locked_log_keeps_the_exchange(
    mock: MockProvider, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmclient import logstore

    LogStore().close()  # created
    monkeypatch.setattr(logstore, "BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(default_log_path(), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["complete", "while locked", "-m", "mock/x"]) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    captured = capsys.readouterr()
    assert captured.out == "mock response\n"
    assert "locked by another process" in captured.err
    assert main(["complete", "after", "-m", "mock/x"]) == 0
    assert [r["prompt"] for r in rows()] == ["while locked", "after"]


# -- processes ---------------------------------------------------------------------------------


def test_two_cli_processes_logging_at_once_both_get_in() -> None:
    env = {**os.environ}
    procs = [
        subprocess.Popen([FMCLIENT, "complete", f"process {n}", "-m", "mock/x"], stdout=subprocess.PIPE, env=env)
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    for p in procs:
        assert p.stdout is not None
        p.stdout.close()
    assert sorted(r["prompt"] for r in rows()) == [f"process {n}" for n in range(4)]


WRITER = """
import sys
from fmclient.logstore import LogRecord, LogStore
with LogStore() as store:
    for i in range(100):
        store.log(LogRecord(model="m", provider="p", prompt=f"{sys.argv[1]} {i}", answer="a", conversation_id=sys.argv[1]))
"""


def test_concurrent_writers_lose_nothing() -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, name]) for name in ("left", "right")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(rows(conversation_id="left")) == 100 and len(rows(conversation_id="right")) == 100


FLUSHER = """
import sys
from fmclient.logstore import LogRecord, LogStore
with LogStore() as store:
    store.log(LogRecord(model="m", provider="p", prompt=sys.argv[1], answer="a"))
"""


def test_kept_records_go_in_once_when_several_processes_write_at_once() -> None:
    from fmclient.logstore import keep_pending

    LogStore().close()
    for n in range(5):
        keep_pending(LogRecord(model="m", provider="p", prompt=f"kept {n}", answer="a"))
    procs = [subprocess.Popen([sys.executable, "-c", FLUSHER, f"new {n}"]) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    prompts = sorted(r["prompt"] for r in rows())
    assert prompts == sorted([f"kept {n}" for n in range(5)] + [f"new {n}" for n in range(4)])
    assert not pending_path(default_log_path()).exists()
    assert list(default_log_path().parent.glob("logs-pending*")) == []


def test_a_closed_stdin_is_a_clear_error() -> None:
    out = subprocess.run(
        ["bash", "-c", f"'{FMCLIENT}' complete -m mock/x <&-"], capture_output=True, text=True, timeout=60
    )
    assert_one_clean_error_line(out, "no prompt given")
    assert not default_log_path().exists()


def test_logs_and_help_import_no_provider_sdk() -> None:
    probe = (
        "import sys\nfrom fmclient.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = ('anthropic', 'openai', 'google.genai', 'boto3', 'botocore', 'ollama', 'llama_cpp', 'httpx', 'mcp')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    for argv in (["--help"], ["logs"], ["logs", "status"], ["complete", "--help"], ["transcribe", "--help"]):
        out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "[]", (argv, out.stdout)


# -- schema and the Python hook -----------------------------------------------------------------


def test_migrations_bring_an_old_log_up_to_date_and_keep_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](db)
    db.execute(
        "INSERT INTO responses (datetime_utc, model, provider, prompt, answer, source) "
        "VALUES ('2026-01-01', 'm', 'p', 'old prompt about otters', 'old answer', 'cli')"
    )
    db.execute("PRAGMA user_version = 1")
    db.close()
    with LogStore(path) as store:
        assert store.schema_version() == len(MIGRATIONS)
        assert [(r["prompt"], r["operation"]) for r in store.responses()] == [("old prompt about otters", "chat")]
        store.log(LogRecord(model="m", provider="p", prompt="new prompt about otters", answer="a"))
        # the search index covers the rows written before it existed, and the new ones
        assert [r["prompt"] for r in store.responses(query="old otters")] == ["old prompt about otters"]
        assert [r["prompt"] for r in store.responses(query="otters")] == [
            "old prompt about otters",
            "new prompt about otters",
        ]


def test_log_hook_logs_the_python_clients_calls(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with MockProvider() as mock:
        mock.add_reply("hello back").add_reply("streamed back")
        client = Client(hooks=[LogHook(path, conversation_id="app-1")])
        client.complete(
            [Message.user(["look", ImagePart(data=PNG, media_type="image/png")])], model="mock/x", system="sys"
        )
        with client.stream("stream it", model="mock/x") as stream:
            stream.completion  # noqa: B018 - consumes the stream
        client.embed(["not logged"], model="mock/e")
    with LogStore(path) as store:
        first, second = store.responses()
    assert (first["prompt"], first["system"], first["answer"], first["source"]) == (
        "look",
        "sys",
        "hello back",
        "python",
    )
    assert first["attachments"][0]["size"] == len(PNG) and first["conversation_id"] == "app-1"
    assert (second["prompt"], second["answer"]) == ("stream it", "streamed back")


def test_a_failed_turn_is_logged_with_why_and_left_out_of_the_conversation(
    mock: MockProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    mock.add_reply("first answer").add_error(400).add_reply("third answer")
    assert main(["complete", "first", "-m", "mock/x"]) == 0
    assert main(["complete", "-c", "second", "--no-stream"]) == 1
    assert "BadRequestError" in capsys.readouterr().err
    assert main(["complete", "-c", "third"]) == 0
    assert [m.text for m in mock.calls[2].request.messages] == ["first", "first answer", "third"]  # type: ignore[union-attr]
    failed = rows()[1]
    assert failed["prompt"] == "second" and failed["error"].startswith("BadRequestError") and failed["answer"] == ""


def test_logs_model_filter_takes_an_alias(mock: MockProvider, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["complete", "via alias", "-m", "gpt-luna"]) == 0
    assert main(["complete", "other", "-m", "mock/x"]) == 0
    capsys.readouterr()
    assert main(["logs", "-m", "gpt-luna", "--json"]) == 0
    assert [r["prompt"] for r in json.loads(capsys.readouterr().out)] == ["via alias"]


def test_log_hook_on_many_threads_logs_every_call(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "threads.db"
    with MockProvider():
        client = Client(hooks=[LogHook(path)])
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: client.complete(f"call {n}", model="mock/x"), range(40)))
    with LogStore(path) as store:
        assert store.count() == 40


def test_batch_takes_reasoning_and_provider_options_like_complete(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('"one"\n"two"\n')
    with MockProvider() as mock:
        code = main(
            [
                "batch",
                str(prompts),
                "-m",
                "mock/x",
                "-o",
                str(tmp_path / "out.jsonl"),
                "--reasoning",
                "low",
                "--option",
                "seed=5",
            ]
        )
    assert code == 0
    assert {(c.request.reasoning, c.request.provider_options["seed"]) for c in mock.calls} == {("low", 5)}  # type: ignore[union-attr]


def test_ctrl_c_before_any_text_leaves_the_turn_out_of_the_conversation(mock: MockProvider) -> None:
    def stopped(request: Any) -> str:
        raise KeyboardInterrupt

    mock.add_reply("first answer")
    assert main(["complete", "first", "-m", "mock/x"]) == 0
    mock.respond_with(stopped)
    assert main(["complete", "-c", "stopped at once"]) == 130
    mock.respond_with(None)
    assert main(["complete", "-c", "third"]) == 0
    # no empty assistant turn (providers refuse one), no user turn without its answer
    assert [m.text for m in mock.calls[-1].request.messages] == ["first", "first answer", "third"]  # type: ignore[union-attr]
    assert rows()[1]["error"] == "interrupted" and rows()[1]["answer"] == ""


# -- resumed conversations carry the provider's opaque state ----------------------------------------


def test_continuing_sends_the_thinking_block_with_its_signature_again(
    fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.fakes import anthropic as fa

    blocks = [fa.thinking_block("Ada said her name.", "sig-ada-1"), fa.text_block("Hello Ada.")]
    fake_server.queue(fa.stream_reply(fa.stream_events(blocks)), fa.stream_reply(fa.stream_events("You are Ada.")))
    config = tmp_path / "wire.toml"
    config.write_text(f'[providers.anthropic]\nbase_url = "{fake_server.url}"\napi_key = "sk-ant-test-000000000000"\n')
    model = ["-m", "anthropic/claude-sonnet-4-5", "--reasoning", "2000", "--max-tokens", "3000"]
    assert main(["--config", str(config), "complete", "I am Ada", *model]) == 0
    assert (
        main(["--config", str(config), "complete", "-c", "Who am I?", "--reasoning", "2000", "--max-tokens", "3000"])
        == 0
    )
    assert capsys.readouterr().out == "Hello Ada.\nYou are Ada.\n"
    second = fake_server.requests[1].json()["messages"]
    assert second[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Ada said her name.", "signature": "sig-ada-1"},
            {"type": "text", "text": "Hello Ada."},
        ],
    }
    first = rows()[0]
    assert first["messages"][0]["provider_state"]["anthropic"]["content"][0]["signature"] == "sig-ada-1"


def test_a_row_logged_before_replies_were_kept_is_continued_from_its_text(mock: MockProvider) -> None:
    with LogStore() as store:
        store.log(
            LogRecord(model="x", provider="mock", prompt="old question", answer="old answer", conversation_id="c0")
        )
    assert main(["complete", "--cid", "c0", "and now?"]) == 0
    assert [(m.role, m.text) for m in mock.calls[0].request.messages] == [  # type: ignore[union-attr]
        ("user", "old question"),
        ("assistant", "old answer"),
        ("user", "and now?"),
    ]


def test_message_json_round_trips_every_media_kind() -> None:
    # A defect: to_json wrote every media part as an image, so audio, video and documents came
    # back as ImageParts (a tool result or a stored turn changed kind).
    from fmclient.types import AudioPart, DocumentPart, VideoPart

    parts = (
        TextPart("look"),
        AudioPart(data=b"RIFF\x00\x00\x00\x00WAVEfmt ", media_type="audio/wav"),
        VideoPart(url="gs://bucket/clip.mp4", media_type="video/mp4"),
        DocumentPart(data=b"%PDF-1.4 x", media_type="application/pdf", name="r.pdf", citations=True),
        ImagePart(data=PNG, media_type="image/png"),
    )
    message = Message(role="user", content=parts)
    assert Message.from_json(json.loads(json.dumps(message.to_json()))) == message


# -- embed, image and batch calls are logged too ---------------------------------------------------


def test_embed_image_and_batch_calls_are_logged_without_their_vectors_or_bytes(
    mock: MockProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    assert main(["embed", "first text", "second text", "-m", "mock/emb"]) == 0
    vectors = [json.loads(line)["embedding"] for line in capsys.readouterr().out.splitlines()]
    picture = tmp_path / "bike.png"
    assert main(["image", "a red bicycle", "-m", "mock/img", "-o", str(picture)]) == 0
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('"one"\n"two"\n')
    assert main(["batch", str(prompts), "-m", "mock/x", "-o", str(tmp_path / "out.jsonl"), "--option", "seed=1"]) == 0
    embed, image, batch = rows()
    assert (embed["operation"], embed["model"], embed["provider"]) == ("embed", "emb", "mock")
    assert embed["prompt"] == "first text\nsecond text" and embed["answer"] == ""
    assert embed["usage"]["input_tokens"] > 0 and embed["cost_reason"]
    stored = default_log_path().read_bytes()
    assert str(vectors[0][0]).encode() not in stored  # the vectors are not kept
    assert (image["operation"], image["prompt"]) == ("image", "a red bicycle")
    data = picture.read_bytes()
    assert image["attachments"] == [
        {"sha256": hashlib.sha256(data).hexdigest(), "media_type": "image/png", "size": len(data), "path": str(picture)}
    ]
    assert data not in stored
    assert (batch["operation"], batch["model"]) == ("batch", "x")
    assert batch["usage"]["input_tokens"] > 0 and batch["answer"].startswith("2 ok, 0 failed")
    assert batch["cost"] is None and "cost unknown for 2" in batch["cost_reason"]
    assert batch["options"] == {"seed": 1}
    capsys.readouterr()
    assert main(["logs", "--usage", "--json"]) == 0
    assert {t["model"] for t in json.loads(capsys.readouterr().out)} == {"emb", "img", "x"}


def test_a_failed_embedding_is_logged_with_why(mock: MockProvider, capsys: pytest.CaptureFixture[str]) -> None:
    mock.add_embedding_error(400)
    assert main(["embed", "text", "-m", "mock/emb"]) == 1
    assert "BadRequestError" in capsys.readouterr().err
    [row] = rows()
    assert row["operation"] == "embed" and row["error"].startswith("BadRequestError")


def test_opening_waits_for_a_writer_that_holds_a_new_log_instead_of_failing_at_once(tmp_path: Path) -> None:
    # Two processes logging their first record at once: one is still writing the new file (not
    # yet in WAL mode) when the other opens it. SQLite answers "locked" to the WAL switch at once,
    # without its busy handler; the store waits for the writer within its timeout instead.
    import threading

    from fmclient.logstore import LogStore

    path = tmp_path / "logs.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE held(x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO held VALUES (1)")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        with LogStore(path) as store:  # raised "locked" at once before
            assert store.schema_version() >= 1
    finally:
        release.join()
        holder.close()
