"""Batch runs (fmclient.batch) over the OpenAI wire fake: order, errors, resume, SIGKILL, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client
from fmclient.batch import BatchResult
from tests.fakes.openai import FakeOpenAI, error_reply
from tests.fakes.server import FakeServer, RecordedRequest, Reply

KEY = "sk-batch-test-key-0000"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def prompt_of(request: RecordedRequest) -> str | None:
    """The request's last user text; None for a body cut short (its sender was killed mid-send)."""
    try:
        body = request.json()
    except ValueError:
        return None
    return prompt_of_body(body) if isinstance(body, dict) else None


class Wire:
    """The OpenAI fake, slowed down, counting requests in flight; prompts containing "FAIL" get a 400."""

    def __init__(self, server: FakeServer, delay: float = 0.0) -> None:
        self.server = server
        self.fake = FakeOpenAI(server)
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        answer = server.handler
        assert answer is not None

        def handle(request: RecordedRequest) -> Reply:
            with self._lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                if self.delay:
                    time.sleep(self.delay)
                prompt = prompt_of(request)
                if prompt is None or "FAIL" in prompt:
                    return error_reply(400, "this prompt is not allowed")
                return answer(request)
            finally:
                with self._lock:
                    self.in_flight -= 1

        server.handler = handle

    def prompts(self) -> list[str | None]:
        return [prompt_of(r) for r in self.server.requests]


def make_client(server: FakeServer, **kwargs: Any) -> Client:
    return Client(providers={"fake": {"type": "openai", "base_url": server.url + "/v1", "api_key": KEY}}, **kwargs)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The item lines of an output file (after its header line, which is checked)."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the output file must end with a whole line"
    header, *lines = (json.loads(line) for line in data.splitlines())
    assert header["fmclient_batch"] == 1
    return lines


# -- one run ---------------------------------------------------------------------------------------
def test_batch_returns_results_in_input_order_and_records_failures(fake_server: FakeServer, tmp_path: Path) -> None:
    wire = Wire(fake_server)
    client = make_client(fake_server, max_retries=0)
    out = tmp_path / "results.jsonl"
    inputs: list[Any] = [
        "plain prompt",
        [{"role": "user", "content": "message list"}],
        {"id": "c", "prompt": "with id", "system": "be brief"},
        {"messages": [{"role": "user", "content": "please FAIL"}], "id": "bad"},
        "last",
    ]
    result = client.batch(inputs, model="fake/gpt-4o", concurrency=3, output=out, max_tokens=20)
    assert isinstance(result, BatchResult)
    assert [item.index for item in result.items] == [0, 1, 2, 3, 4]
    assert [item.id for item in result.items] == [0, 1, "c", "bad", 4]
    assert [item.ok for item in result.items] == [True, True, True, False, True]
    failure = result.items[3].error
    assert failure is not None
    assert (failure.type, failure.status_code, failure.retryable) == ("BadRequestError", 400, False)
    assert "not allowed" in failure.message
    assert (result.succeeded, result.failed, result.skipped) == (4, 1, 0)
    # The fake reports 12 prompt + 5 completion tokens per answer.
    assert (result.input_tokens, result.output_tokens) == (48, 20)
    assert result.cost_unknown == 4 and result.cost == 0.0  # no cost known yet: counted, not guessed
    assert result.errors == {"BadRequestError": 1}
    assert sorted(wire.prompts()) == sorted(["plain prompt", "message list", "with id", "please FAIL", "last"])
    bodies = {prompt_of_body(b): b for b in wire.fake.bodies()}
    assert bodies["with id"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert all(b["max_tokens"] == 20 for b in bodies.values())
    lines = read_lines(out)
    assert sorted(line["index"] for line in lines) == [0, 1, 2, 3, 4]
    assert "4 ok, 1 failed, 0 skipped" in result.summary()


def prompt_of_body(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else content[0]["text"]


async def test_abatch_keeps_to_its_concurrency(fake_server: FakeServer, tmp_path: Path) -> None:
    wire = Wire(fake_server, delay=0.02)
    client = make_client(fake_server)
    result = await client.abatch(
        [f"p{i}" for i in range(30)], model="fake/gpt-4o", concurrency=4, output=tmp_path / "o.jsonl"
    )
    assert result.succeeded == 30
    assert [item.text for item in result.items] == ["ok"] * 30
    assert len(fake_server.requests) == 30
    assert 1 <= wire.most_in_flight <= 4
    await client.aclose()


def test_batch_without_output_file_keeps_results_in_memory(fake_server: FakeServer, tmp_path: Path) -> None:
    Wire(fake_server)
    result = make_client(fake_server).batch(["a", "b"], model="fake/gpt-4o")
    assert [item.text for item in result.items] == ["ok", "ok"]
    assert result.output is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["ok", {"prompt": "x", "temperature": 2}], "unknown key 'temperature'"),
        (["ok", {"prompt": "x", "messages": []}], "exactly one of"),
        ([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], "duplicate id 'a'"),
        (["ok", 42], "expected a str"),
        ("one string", "sequence of prompts"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_sent(
    fake_server: FakeServer, tmp_path: Path, inputs: Any, message: str
) -> None:
    Wire(fake_server)
    with pytest.raises((TypeError, ValueError), match=message):
        make_client(fake_server).batch(inputs, model="fake/gpt-4o", output=tmp_path / "o.jsonl")
    assert fake_server.requests == []


# -- resume ----------------------------------------------------------------------------------------
def test_a_finished_run_restarted_sends_nothing(fake_server: FakeServer, tmp_path: Path) -> None:
    wire = Wire(fake_server)
    client = make_client(fake_server, max_retries=0)
    out = tmp_path / "o.jsonl"
    inputs = ["a", "b FAIL", "c"]
    client.batch(inputs, model="fake/gpt-4o", output=out)
    again = client.batch(inputs, model="fake/gpt-4o", output=out)
    assert len(fake_server.requests) == 3
    assert (again.succeeded, again.failed, again.skipped) == (0, 0, 3)
    assert [item.resumed for item in again.items] == [True, True, True]
    assert [item.ok for item in again.items] == [True, False, True]
    # redo_failed sends the failed item again, and only it.
    wire.server.requests.clear()
    redo = client.batch(inputs, model="fake/gpt-4o", output=out, redo_failed=True)
    assert wire.prompts() == ["b FAIL"]
    assert (redo.failed, redo.skipped) == (1, 2)


def test_a_torn_last_line_is_cut_off_and_its_item_redone(fake_server: FakeServer, tmp_path: Path) -> None:
    wire = Wire(fake_server)
    client = make_client(fake_server)
    out = tmp_path / "o.jsonl"
    client.batch(["a", "b", "c"], model="fake/gpt-4o", output=out)
    lines = out.read_bytes().splitlines(keepends=True)
    torn = next(line for line in lines if json.loads(line).get("index") == 1)
    out.write_bytes(b"".join(line for line in lines if line is not torn) + torn[: len(torn) // 2])
    fake_server.requests.clear()
    result = client.batch(["a", "b", "c"], model="fake/gpt-4o", output=out)
    assert wire.prompts() == ["b"]
    assert (result.succeeded, result.skipped) == (1, 2)
    assert sorted(line["index"] for line in read_lines(out)) == [0, 1, 2]


def test_an_output_file_of_other_inputs_is_refused(fake_server: FakeServer, tmp_path: Path) -> None:
    Wire(fake_server)
    client = make_client(fake_server)
    out = tmp_path / "o.jsonl"
    client.batch(["a", "b"], model="fake/gpt-4o", output=out)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="different input"):
        client.batch(["a", "changed"], model="fake/gpt-4o", output=out)
    with pytest.raises(ValueError, match="no item 1"):
        client.batch(["a"], model="fake/gpt-4o", output=out)
    header, items = before.split(b"\n", 1)
    out.write_bytes(header + b"\nnot json\n" + items)
    with pytest.raises(ValueError, match="not a JSON line"):
        client.batch(["a", "b"], model="fake/gpt-4o", output=out)
    assert len(fake_server.requests) == 2


# -- progress bar ------------------------------------------------------------------------------------
def test_progress_bar_only_when_asked_or_on_a_terminal(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    Wire(fake_server)
    client = make_client(fake_server)
    client.batch(["a", "b"], model="fake/gpt-4o")  # stderr is captured here: not a terminal
    assert capsys.readouterr().err == ""
    client.batch(["a", "b"], model="fake/gpt-4o", progress=True)
    assert "2/2" in capsys.readouterr().err


def test_progress_bar_shows_on_a_terminal_but_not_in_ci(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Wire(fake_server)
    client = make_client(fake_server)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.delenv("CI", raising=False)
    client.batch(["a", "b", "c"], model="fake/gpt-4o")
    assert "3/3" in capsys.readouterr().err
    monkeypatch.setenv("CI", "true")
    client.batch(["a", "b", "c"], model="fake/gpt-4o")
    assert capsys.readouterr().err == ""


# -- SIGKILL mid-run, on a subprocess -------------------------------------------------------------------
RUNNER = """
import json, sys
from fmclient import Client
url, out, n, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = Client(providers={"fake": {"type": "openai", "base_url": url, "api_key": "sk-runner-0000"}}, max_retries=0)
result = client.batch([f"prompt {i}" for i in range(n)], model="fake/gpt-4o", concurrency=concurrency, output=out)
print(json.dumps(result.to_dict()))
"""


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FMCLIENT_", "OPENAI_"))}
    env["PYTHONPATH"] = SRC
    return env


def test_a_run_killed_with_sigkill_resumes_without_loss_or_duplicates(fake_server: FakeServer, tmp_path: Path) -> None:
    items, concurrency = 60, 4
    wire = Wire(fake_server, delay=0.1)
    out = tmp_path / "results.jsonl"
    args = [sys.executable, "-c", RUNNER, fake_server.url + "/v1", str(out), str(items), str(concurrency)]
    run = subprocess.Popen(args, env=subprocess_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # 13 lines: the header and 12 items.
    while (not out.exists() or out.read_bytes().count(b"\n") < 13) and time.monotonic() < deadline:
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        time.sleep(0.005)
    run.send_signal(signal.SIGKILL)
    run.wait()
    run.stdout.close()  # type: ignore[union-attr]
    run.stderr.close()  # type: ignore[union-attr]
    assert run.returncode == -signal.SIGKILL
    time.sleep(0.3)  # let the fake record anything already on the wire

    finished_before = {line["index"] for line in read_lines(out)}
    sent_before = wire.prompts()
    in_flight_at_kill = len(sent_before) - len(finished_before)
    assert 12 <= len(finished_before) < items
    assert 0 <= in_flight_at_kill <= concurrency
    # A write cut short by the kill leaves a torn line; make sure one is there to recover from.
    with out.open("ab") as handle:
        handle.write(b'{"index": 59, "id": 59, "inp')

    done = subprocess.run(args, env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["skipped"] == len(finished_before)
    assert summary["succeeded"] == items - len(finished_before)
    assert summary["failed"] == 0

    lines = read_lines(out)  # every line whole JSON: the torn one was cut off
    assert sorted(line["index"] for line in lines) == list(range(items))  # none lost, none twice
    assert all(line["ok"] and line["text"] == "ok" for line in lines)
    sent_after = wire.prompts()[len(sent_before) :]
    # Only unfinished items went out again: nothing already in the file was re-sent ...
    assert not {f"prompt {i}" for i in finished_before} & set(sent_after)
    assert sorted(sent_after) == sorted(f"prompt {i}" for i in range(items) if i not in finished_before)
    # ... so the only duplicates are the requests in flight when the process died.
    assert len(fake_server.requests) == items + in_flight_at_kill


# -- CLI -------------------------------------------------------------------------------------------------
def test_cli_batch_runs_and_resumes(fake_server: FakeServer, tmp_path: Path) -> None:
    wire = Wire(fake_server)
    config = tmp_path / "fmclient.toml"
    config.write_text(
        f'[providers.fake]\ntype = "openai"\nbase_url = "{fake_server.url}/v1"\napi_key = "sk-cli-batch-secret-123"\n'
    )
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '"first"\n\n{"id": "two", "prompt": "second"}\n{"messages": [{"role": "user", "content": "third"}]}\n'
    )
    command = [sys.executable, "-m", "fmclient.cli", "--config", str(config), "batch", str(prompts)]
    command += ["-m", "fake/gpt-4o", "-o", "results.jsonl", "-c", "2", "--max-tokens", "9", "-s", "terse"]
    first = subprocess.run(command, env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["succeeded"] == 3
    assert "3 ok, 0 failed, 0 skipped" in first.stderr
    assert "sk-cli-batch-secret-123" not in first.stdout + first.stderr
    lines = read_lines(tmp_path / "results.jsonl")
    assert sorted(str(line["id"]) for line in lines) == ["0", "2", "two"]
    assert sorted(wire.prompts()) == ["first", "second", "third"]
    assert all(
        b["max_tokens"] == 9 and b["messages"][0] == {"role": "system", "content": "terse"} for b in wire.fake.bodies()
    )

    again = subprocess.run(command, env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 3
    assert len(fake_server.requests) == 3


def test_cli_batch_reports_a_bad_prompts_file_in_one_line(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('"ok"\nnot json\n')
    command = [sys.executable, "-m", "fmclient.cli", "batch", str(prompts), "-m", "openai/gpt-4o", "-o", "r.jsonl"]
    done = subprocess.run(command, env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"fmclient: ValueError: {prompts}:2: not a JSON line (Expecting value)"]
    assert not (tmp_path / "r.jsonl").exists()


# -- an unexpected error stops the run, and the file stays whole ----------------------------------------
class BuggyClient(Client):
    """A client whose call raises a non-fmclient error (a bug) on one prompt."""

    def complete(self, prompt: Any, **kwargs: Any) -> Any:
        if prompt == "bug":
            raise RuntimeError("a bug, not an item failure")
        return super().complete(prompt, **kwargs)

    async def acomplete(self, prompt: Any, **kwargs: Any) -> Any:
        if prompt == "bug":
            raise RuntimeError("a bug, not an item failure")
        return await super().acomplete(prompt, **kwargs)


def buggy_client(server: FakeServer) -> BuggyClient:
    return BuggyClient(providers={"fake": {"type": "openai", "base_url": server.url + "/v1", "api_key": KEY}})


def test_a_bug_stops_a_sync_run_and_keeps_what_finished(fake_server: FakeServer, tmp_path: Path) -> None:
    wire = Wire(fake_server)
    out = tmp_path / "o.jsonl"
    with pytest.raises(RuntimeError, match="a bug"):
        buggy_client(fake_server).batch(["a", "b", "bug", "c", "d"], model="fake/gpt-4o", concurrency=1, output=out)
    assert wire.prompts() == ["a", "b"]
    assert [line["index"] for line in read_lines(out)] == [0, 1]


async def test_a_bug_stops_an_async_run_and_keeps_what_finished(fake_server: FakeServer, tmp_path: Path) -> None:
    wire = Wire(fake_server)
    out = tmp_path / "o.jsonl"
    buggy = buggy_client(fake_server)
    with pytest.raises(RuntimeError, match="a bug"):
        await buggy.abatch(["a", "bug", "c", "d"], model="fake/gpt-4o", concurrency=1, output=out)
    await buggy.aclose()
    assert wire.prompts() == ["a"]
    assert [line["index"] for line in read_lines(out)] == [0]
    # A fixed client resumes where it stopped.
    fixed = make_client(fake_server)
    result = await fixed.abatch(["a", "bug", "c", "d"], model="fake/gpt-4o", output=out)
    await fixed.aclose()
    assert (result.succeeded, result.skipped) == (3, 1)


def test_cost_is_summed_where_known_and_unknown_ones_are_counted(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace
    from decimal import Decimal

    from fmclient import batch
    from fmclient.pricing import Cost
    from fmclient.types import Completion

    Wire(fake_server)
    costs = iter([Decimal("0.25"), None, Decimal("0.5")])
    original = batch._ok_record

    def with_cost(item: Any, completion: Completion) -> dict[str, Any]:
        # The fake model is not in the price table: give each answer a known price, or a reason.
        cost = next(costs)
        priced = (None, "not in the price table") if cost is None else (Cost(cost, cost, Decimal(0)), None)
        return original(item, replace(completion, _priced=priced))

    monkeypatch.setattr(batch, "_ok_record", with_cost)
    result = make_client(fake_server).batch(["a", "b", "c"], model="fake/gpt-4o", concurrency=1)
    assert result.cost == 0.75
    assert result.cost_unknown == 1
    assert [item.cost for item in result.items] == [0.25, None, 0.5]
    assert [item.cost_reason for item in result.items] == [None, "not in the price table", None]


def test_a_second_run_on_the_same_output_file_is_refused(fake_server: FakeServer, tmp_path: Path) -> None:
    import fcntl

    Wire(fake_server)
    out = tmp_path / "o.jsonl"
    with out.open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running batch holds it
        with pytest.raises(ValueError, match="in use by another batch run"):
            make_client(fake_server).batch(["a"], model="fake/gpt-4o", output=out)
    assert fake_server.requests == []
    assert make_client(fake_server).batch(["a"], model="fake/gpt-4o", output=out).succeeded == 1


# -- what a line records, and what a resume rebuilds (issue 19, item 11) ----------------------------------
def fresh_and_resumed(client: Client, inputs: list[Any], out: Path, **call_args: Any) -> tuple[Any, Any]:
    fresh = client.batch(inputs, output=out, concurrency=2, **call_args)
    resumed = client.batch(inputs, output=out, **call_args)
    return fresh, resumed


def assert_alike(fresh: BatchResult, resumed: BatchResult) -> None:
    """Every field of every resumed item equals the fresh item's (but ``resumed`` itself)."""
    from dataclasses import fields as dataclass_fields

    assert (resumed.skipped, resumed.succeeded) == (len(fresh.items), 0)
    for new, old in zip(fresh.items, resumed.items, strict=True):
        assert (new.resumed, old.resumed) == (False, True)
        for name in (f.name for f in dataclass_fields(new) if f.name != "resumed"):
            assert getattr(old, name) == getattr(new, name), name


def test_a_tool_calling_reasoning_batch_is_recorded_whole_and_resumed_alike(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    """OpenAI Responses (o3): tool calls, reasoning summary, encrypted reasoning (provider state),
    reasoning and cached tokens, response id all survive the file."""
    from tests.fakes.openai import Answer

    fake = FakeOpenAI(fake_server)
    calls = [("call_1", "get_weather", '{"city": "Paris"}'), ("call_2", "get_weather", '{"city": "Rome"}')]
    fake.answer(
        *[
            Answer(
                "",
                model="o3",
                tool_calls=calls,
                reasoning="Two cities.",
                encrypted_content="gAAAA-opaque",
                reasoning_tokens=3,
                cached_tokens=4,
            )
            for _ in range(2)
        ]
    )
    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    # Named "openai": the Responses API is OpenAI's own (another OpenAI-compatible host gets Chat Completions).
    client = Client(providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY}}, max_retries=0)
    out = tmp_path / "o.jsonl"
    fresh, resumed = fresh_and_resumed(
        client, ["Weather in Paris and Rome?", "And now?"], out, model="openai/o3", tools=[weather], reasoning="high"
    )
    assert len(fake_server.requests) == 2  # the resume sent nothing
    item = fresh.items[0]
    assert item.ok and item.text == "" and item.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in item.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"}),
        ("call_2", "get_weather", {"city": "Rome"}),
    ]
    assert item.reasoning == "Two cities."
    assert item.usage is not None and (item.usage.reasoning_tokens, item.usage.cached_input_tokens) == (3, 4)
    assert item.message is not None and item.message.tool_calls == item.tool_calls
    assert "gAAAA-opaque" in json.dumps(item.message.provider_state)  # what the next turn must send back
    assert item.response_id and item.provider == "openai"
    assert_alike(fresh, resumed)
    # The resumed message is usable: it goes back to the model with its reasoning state.
    fake.answer(Answer("Paris 20C, Rome 25C.", model="o3"))
    conversation = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        resumed.items[0].message,
        {"role": "tool", "content": "20C", "tool_call_id": "call_1"},
        {"role": "tool", "content": "25C", "tool_call_id": "call_2"},
    ]
    client.complete(conversation, model="openai/o3", tools=[weather], reasoning="high")
    sent = fake_server.requests[-1].json()["input"]
    assert any(part.get("encrypted_content") == "gAAAA-opaque" for part in sent if isinstance(part, dict))


def test_a_structured_output_batch_rebuilds_parsed_and_cache_writes_on_resume(tmp_path: Path) -> None:
    """Anthropic with thinking and a Pydantic response_format: ``parsed`` is the model again on resume,
    the thinking block (provider state) and the cache-write tokens are kept."""
    from pydantic import BaseModel

    from tests.fakes import anthropic as fa

    class Count(BaseModel):
        n: int

    blocks = [fa.thinking_block("Counting primes.", "sig-1"), fa.text_block('{"n": 25}')]
    with FakeServer() as server:
        server.default = fa.message_reply(
            blocks, usage_=fa.usage(20, 30, cache_creation_input_tokens=7, cache_read_input_tokens=3)
        )
        client = Client(providers={"anthropic": {"base_url": server.url, "api_key": "test-key-anthropic"}})
        fresh, resumed = fresh_and_resumed(
            client,
            ["primes below 100?", "primes below 100, again?"],
            tmp_path / "o.jsonl",
            model="anthropic/claude-opus-4-6",
            reasoning="high",
            response_format=Count,
        )
        assert len(server.requests) == 2
    item = fresh.items[0]
    assert item.parsed == Count(n=25) and isinstance(resumed.items[0].parsed, Count)
    assert item.reasoning == "Counting primes."
    assert item.usage is not None and (item.usage.cache_write_tokens, item.usage.cached_input_tokens) == (7, 3)
    assert item.message is not None and "sig-1" in json.dumps(item.message.provider_state)
    assert item.request_id == "req_fake" and item.response_id == "msg_01fake"
    assert_alike(fresh, resumed)


def test_every_usage_field_is_recorded_and_read_back() -> None:
    """Generic over Usage's fields, so a count added to Usage is recorded without touching batch.py."""
    from dataclasses import fields as dataclass_fields

    from fmclient.batch import _usage_from, _usage_record
    from fmclient.types import Usage

    # Every field off its default: counts as distinct numbers, the rest (a service tier...) as text.
    usage = Usage(
        **{
            f.name: number if isinstance(f.default, int) else f"{f.name}-{number}"
            for number, f in enumerate(dataclass_fields(Usage), 1)
        }
    )
    assert _usage_from(json.loads(json.dumps(_usage_record(usage)))) == usage


def test_provider_state_bytes_and_odd_text_survive_the_file() -> None:
    """Bedrock's redacted reasoning is bytes; a provider may send a lone surrogate in text."""
    from fmclient.batch import _item_from_record, _line, _message_from, _message_record
    from fmclient.types import Message, ToolCall

    calls = (ToolCall("t1", "f", {}, raw_arguments='{"cut'),)
    message = Message(
        role="assistant",
        content="x",
        tool_calls=calls,
        provider_state={"bedrock": {"reasoning": [{"reasoningContent": {"redactedContent": b"\x00\xffopaque"}}]}},
    )
    record = json.loads(_line({"message": _message_record(message, "x", calls)}))
    assert _message_from(record["message"], "x", calls) == message
    line = _line({"index": 0, "id": 0, "ok": True, "text": "half \ud800 a pair", "usage": None})
    assert _item_from_record(json.loads(line), False, None).text == "half \ud800 a pair"


def test_a_lone_surrogate_in_an_answer_is_recorded_not_a_crash(fake_server: FakeServer, tmp_path: Path) -> None:
    from tests.fakes.openai import Answer

    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("half \ud800 a pair"), Answer("fine"))
    out = tmp_path / "o.jsonl"
    fresh = make_client(fake_server).batch(["a", "b"], model="fake/gpt-4o", output=out, concurrency=1)
    resumed = make_client(fake_server).batch(["a", "b"], model="fake/gpt-4o", output=out)
    assert (
        [item.text for item in resumed.items] == [item.text for item in fresh.items] == ["half \ud800 a pair", "fine"]
    )
    assert len(fake_server.requests) == 2


# -- a resume is this run's, or refused (item 12) ----------------------------------------------------------
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def image(data: bytes) -> Any:
    from fmclient.types import ImagePart

    return ImagePart.from_source(data)


def image_prompt(data: Any) -> list[dict[str, Any]]:
    """A prompt with an image: an ImagePart as it is, bytes or a pathlib.Path as an image part."""
    from fmclient.types import ImagePart

    part = data if isinstance(data, ImagePart) else {"type": "image", "image": data}
    return [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]}]


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        # An ImagePart's repr shows its size only: same size, other bytes.
        (
            {"inputs": [image_prompt(image(PNG))]},
            {"inputs": [image_prompt(image(PNG[:-1] + b"\x01"))]},
            "different input",
        ),
        ({"model": "fake/gpt-4o"}, {"model": "fake/gpt-4.1"}, "written for model 'fake/gpt-4o'"),
        ({"temperature": 0.2}, {"temperature": 0.7}, r"other call arguments \(temperature changed\)"),
        ({}, {"max_tokens": 50}, r"\(max_tokens changed\)"),
        ({"system": "Be brief."}, {"system": "Be thorough."}, r"\(system changed\)"),
        ({"tools": [{"name": "f"}]}, {"tools": [{"name": "f", "description": "now documented"}]}, r"\(tools changed\)"),
        ({"response_format": {"type": "object"}}, {"response_format": {"type": "array"}}, r"response_format"),
        ({"reasoning": "low"}, {"reasoning": "high"}, r"\(reasoning changed\)"),
        ({"seed": 1}, {"seed": 2}, r"\(seed changed\)"),  # a provider option
        ({"fallbacks": ["fake/gpt-4.1"]}, {"fallbacks": []}, "fallbacks"),
    ],
    ids=[
        "image bytes",
        "model",
        "temperature",
        "max_tokens",
        "system",
        "tools",
        "response_format",
        "reasoning",
        "provider option",
        "fallbacks",
    ],
)
def test_a_resume_with_another_request_is_refused_and_changes_nothing(
    fake_server: FakeServer, tmp_path: Path, first: dict[str, Any], second: dict[str, Any], message: str
) -> None:
    Wire(fake_server)
    client = make_client(fake_server, max_retries=0)
    out = tmp_path / "o.jsonl"

    def run(args: dict[str, Any]) -> BatchResult:
        args = {"inputs": ["a", "b"], "model": "fake/gpt-4o", **args}
        return client.batch(args.pop("inputs"), output=out, **args)

    done = run(first)
    before, sent = out.read_bytes(), len(fake_server.requests)
    with pytest.raises(ValueError, match=message):
        run(second)
    assert out.read_bytes() == before and len(fake_server.requests) == sent
    assert run(first).skipped == len(done.items)  # the same run still resumes


def test_an_image_file_changed_under_the_same_path_is_a_different_input(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    Wire(fake_server)
    picture = tmp_path / "cat.png"
    picture.write_bytes(PNG)
    client, out = make_client(fake_server), tmp_path / "o.jsonl"
    client.batch([image_prompt(picture)], model="fake/gpt-4o", output=out)
    picture.write_bytes(PNG[:-1] + b"\x01")  # same size, same path, another image
    with pytest.raises(ValueError, match=r"item 0 .* different input"):
        client.batch([image_prompt(picture)], model="fake/gpt-4o", output=out)
    assert len(fake_server.requests) == 1


def test_how_a_call_is_made_is_not_part_of_the_run(fake_server: FakeServer, tmp_path: Path) -> None:
    """timeout and max_retries change how an answer is fetched, not which: a run resumed with a
    longer timeout is the same run. An alias naming the same model is the same model."""
    Wire(fake_server)
    client = make_client(fake_server, aliases={"fast": "fake/gpt-4o"})
    out = tmp_path / "o.jsonl"
    client.batch(["a"], model="fake/gpt-4o", output=out, timeout=5)
    again = client.batch(["a"], model="fast", output=out, timeout=60, max_retries=5)
    assert again.skipped == 1 and len(fake_server.requests) == 1


def test_an_alias_pointed_at_another_model_is_another_model(fake_server: FakeServer, tmp_path: Path) -> None:
    Wire(fake_server)
    out = tmp_path / "o.jsonl"
    make_client(fake_server, aliases={"fast": "fake/gpt-4o"}).batch(["a"], model="fast", output=out)
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"written for model 'fake/gpt-4o'.*asks for 'fake/gpt-4\.1'"):
        make_client(fake_server, aliases={"fast": "fake/gpt-4.1"}).batch(["a"], model="fast", output=out)
    assert out.read_bytes() == before and len(fake_server.requests) == 1


def test_bad_call_arguments_and_prompts_are_refused_once_before_anything_is_sent(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    Wire(fake_server)
    client = make_client(fake_server)
    with pytest.raises(ValueError, match="temperature"):
        client.batch(["a", "b"], model="fake/gpt-4o", output=tmp_path / "o.jsonl", temperature=9)
    with pytest.raises(ValueError, match=r"input 1: .*not found"):
        client.batch(["a", image_prompt(tmp_path / "missing.png")], model="fake/gpt-4o")
    assert fake_server.requests == [] and not (tmp_path / "o.jsonl").exists()


# -- a file that is not this run's output is never changed (item 27) ---------------------------------------
@pytest.mark.parametrize(
    "content",
    [
        b'"first prompt"\n{"prompt": "second"}\n"third, no newline"',  # the prompts file itself
        b"# notes\n\nsome text\nlast line without newline",
        b"no newline at all",
        b"{",  # could start a header, but is not one: a file is ours only once it says so
        b'{"index": 0, "id": 0, "input": "93d8b47cf3253cd8", "ok": true, "text": "ok"}\n{"index": 1, "id"',
    ],
    ids=["prompts file", "notes.md", "one line", "a brace", "an older fmclient's output"],
)
def test_a_file_that_is_not_a_batch_output_is_refused_untouched(
    fake_server: FakeServer, tmp_path: Path, content: bytes
) -> None:
    Wire(fake_server)
    out = tmp_path / "notes.md"
    out.write_bytes(content)
    with pytest.raises(ValueError, match=r"not a batch output|earlier fmclient"):
        make_client(fake_server).batch(["a", "b"], model="fake/gpt-4o", output=out)
    assert out.read_bytes() == content
    assert fake_server.requests == []


def test_a_corrupt_output_is_refused_before_its_torn_line_is_cut(fake_server: FakeServer, tmp_path: Path) -> None:
    Wire(fake_server)
    client, out = make_client(fake_server), tmp_path / "o.jsonl"
    client.batch(["a", "b"], model="fake/gpt-4o", output=out)
    corrupt = out.read_bytes() + b"not json\n" + b'{"index": 1, "id": 1, "inp'
    out.write_bytes(corrupt)
    with pytest.raises(ValueError, match="not a JSON line"):
        client.batch(["a", "b"], model="fake/gpt-4o", output=out)
    assert out.read_bytes() == corrupt


def test_a_header_torn_as_the_run_began_is_started_over(fake_server: FakeServer, tmp_path: Path) -> None:
    Wire(fake_server)
    out = tmp_path / "o.jsonl"
    out.write_bytes(b'{"fmclient_batch": 1, "mod')
    result = make_client(fake_server).batch(["a"], model="fake/gpt-4o", output=out)
    assert result.succeeded == 1 and [line["index"] for line in read_lines(out)] == [0]


# -- an interrupt writes what was paid for (item 13) -------------------------------------------------------
INTERRUPTED_RUNNER = """
import asyncio, json, sys
from fmclient import Client
url, out, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = Client(providers={"fake": {"type": "openai", "base_url": url, "api_key": "sk-runner-0000"}}, max_retries=0)
prompts = [f"prompt {i}" for i in range(n)]
if mode == "sync":
    result = client.batch(prompts, model="fake/gpt-4o", concurrency=4, output=out)
else:
    result = asyncio.run(client.abatch(prompts, model="fake/gpt-4o", concurrency=4, output=out))
print(json.dumps(result.to_dict()))
"""


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ctrl_c_writes_the_answers_in_flight_and_a_resume_sends_nothing_twice(
    fake_server: FakeServer, tmp_path: Path, mode: str
) -> None:
    items = 24
    wire = Wire(fake_server, delay=0.4)
    out = tmp_path / "results.jsonl"
    args = [sys.executable, "-c", INTERRUPTED_RUNNER, fake_server.url + "/v1", str(out), str(items), mode]
    run = subprocess.Popen(args, env=subprocess_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # Interrupt while four calls are on the wire, after some items are written.
    while not (out.exists() and out.read_bytes().count(b"\n") >= 5 and wire.in_flight == 4):
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.stderr else ""
        time.sleep(0.005)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert b"KeyboardInterrupt" in stderr, stderr
    first_run = wire.prompts()
    written = {line["index"] for line in read_lines(out)}
    assert len(written) < items
    # Every call the interrupted run sent was answered and written: nothing paid for is lost ...
    assert sorted(f"prompt {i}" for i in written) == sorted(first_run)

    done = subprocess.run(args, env=subprocess_env(), cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["skipped"] == len(written)
    # ... so the resume sends only the rest, and no prompt went out twice.
    assert sorted(wire.prompts()) == sorted(f"prompt {i}" for i in range(items))
    assert sorted(line["index"] for line in read_lines(out)) == list(range(items))


async def test_a_cancelled_abatch_waits_for_its_calls_in_flight_and_writes_them(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    import asyncio

    wire = Wire(fake_server, delay=0.3)
    client, out = make_client(fake_server), tmp_path / "o.jsonl"
    task = asyncio.ensure_future(
        client.abatch([f"p{i}" for i in range(20)], model="fake/gpt-4o", concurrency=4, output=out)
    )
    while wire.in_flight < 4:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(f"p{line['index']}" for line in read_lines(out)) == sorted(wire.prompts())
    assert len(wire.prompts()) >= 4
    await client.aclose()


def test_a_reply_that_fails_its_response_format_keeps_its_text(fake_server: FakeServer, tmp_path: Path) -> None:
    """The reply was paid for: a StructuredOutputError's raw text is recorded with the error."""
    from tests.fakes.openai import Answer

    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("sorry, no JSON today"))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    client, out = make_client(fake_server, max_retries=0), tmp_path / "o.jsonl"
    fresh = client.batch(["count"], model="fake/gpt-4o", output=out, response_format=schema)
    resumed = client.batch(["count"], model="fake/gpt-4o", output=out, response_format=schema)
    item = fresh.items[0]
    assert item.error is not None and item.error.type == "StructuredOutputError"
    assert (item.error.provider, item.text) == ("fake", "sorry, no JSON today")
    assert resumed.items[0] == replace(item, resumed=True)
