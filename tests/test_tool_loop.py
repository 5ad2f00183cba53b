"""The tool loop's promises: error paths with exact request counts (over the real OpenAI SDK and
its wire fake), approval, limits, deadlines, cancellation, hooks and spans, JSON round trips, and
multi-step runs scripted on the mock."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fmclient
from fmclient import (
    BudgetExceededError,
    Client,
    Message,
    RequestTimeoutError,
    Run,
    ToolCall,
    ToolError,
    UnsupportedFeatureError,
    Usage,
)
from fmclient.hooks import Hook, RunInfo, ToolCallInfo
from fmclient.telemetry import OpenTelemetryHook
from fmclient.testing import MockProvider
from fmclient.types import ImagePart
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer

MODEL = "openai/gpt-4o"


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"3C and sunny in {city}"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def call(id: str, name: str, arguments: str) -> tuple[str, str, str]:
    return (id, name, arguments)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeServer() as server:
        yield FakeOpenAI(server)


def make_client(fake: FakeOpenAI, **options: Any) -> Client:
    with open("fmclient.toml", "w") as config:  # the fake's host is priced as OpenAI (for budgets)
        config.write('[prices]\nopenai = "openai"\n')
    table = {"base_url": fake.server.url + "/v1", "api_key": "sk-test-0123456789"}
    return Client(providers={"openai": table}, max_retries=0, **options)


def tool_messages(fake: FakeOpenAI, index: int) -> list[tuple[str, str]]:
    """(tool_call_id, content) of the tool messages the index-th request sent."""
    body = fake.bodies()[index]
    return [(m["tool_call_id"], m["content"]) for m in body["messages"] if m["role"] == "tool"]


# -- errors go back to the model, the run goes on ------------------------------------------------
def test_a_tool_that_raises_sends_its_error_back_and_the_run_goes_on(fake: FakeOpenAI) -> None:
    def lookup(key: str) -> str:
        """Look a key up."""
        raise KeyError(f"no entry {key}")

    def strict(key: str) -> str:
        """Refuse politely."""
        raise ToolError("that key is archived; ask for 'b' instead")

    fake.answer(
        Answer(tool_calls=[call("c1", "lookup", '{"key": "a"}'), call("c2", "strict", '{"key": "a"}')]),
        Answer("Sorry."),
    )
    with make_client(fake) as client:
        run = client.run("Find a", tools=[lookup, strict], model=MODEL)
    assert len(fake.bodies()) == 2
    assert tool_messages(fake, 1) == [
        ("c1", "Error: KeyError: 'no entry a'"),
        ("c2", "Error: that key is archived; ask for 'b' instead"),
    ]
    assert [(r.is_error, r.error_type) for r in run.steps[0].tool_results] == [
        (True, "KeyError"),
        (True, "ToolError"),
    ]
    assert run.stopped == "answer" and run.text == "Sorry."


def test_on_tool_error_raise_stops_the_run_with_the_tools_exception(fake: FakeOpenAI) -> None:
    def broken() -> str:
        """Always fails."""
        raise ZeroDivisionError("boom")

    fake.answer(Answer(tool_calls=[call("c1", "broken", "{}")]), Answer("never asked"))
    with make_client(fake) as client, pytest.raises(ZeroDivisionError):
        client.run("go", tools=[broken], model=MODEL, on_tool_error="raise")
    assert len(fake.bodies()) == 1


def test_an_unknown_tool_and_invalid_arguments_go_back_to_the_model(fake: FakeOpenAI) -> None:
    fake.answer(
        Answer(
            tool_calls=[
                call("c1", "get_wether", '{"city": "Oslo"}'),
                call("c2", "add", '{"a": "two", "b": 3}'),
                call("c3", "add", '{"a": 1}'),
            ]
        ),
        Answer(tool_calls=[call("c4", "add", '{"a": 2, "b": 3}')]),
        Answer("5"),
    )
    ran: list[tuple[int, int]] = []

    def add_recorded(a: int, b: int) -> int:
        """Add two integers."""
        ran.append((a, b))
        return a + b

    with make_client(fake) as client:
        run = client.run("2+3", tools=[get_weather, fmclient.tool(add_recorded, name="add")], model=MODEL)
    assert len(fake.bodies()) == 3
    results = tool_messages(fake, 1)
    assert results[0] == ("c1", "Error: unknown tool 'get_wether'; the tools are: add, get_weather")
    assert results[1][0] == "c2" and results[1][1].startswith("Error: arguments for tool 'add' do not fit: a:")
    assert results[2][0] == "c3" and "b: Field required" in results[2][1]
    assert ran == [(2, 3)]  # the function never saw arguments that did not fit
    assert [r.error_type for r in run.steps[0].tool_results] == ["unknown_tool", "invalid_arguments"] * 1 + [
        "invalid_arguments"
    ]
    assert run.text == "5"


def test_json_schema_tool_arguments_are_checked_before_the_handler(fake: FakeOpenAI) -> None:
    seen: list[dict[str, Any]] = []
    schema_tool = {
        "name": "book",
        "description": "Book a room.",
        "parameters": {
            "type": "object",
            "properties": {"nights": {"type": "integer", "minimum": 1}},
            "required": ["nights"],
        },
        "handler": lambda **kwargs: seen.append(kwargs) or "booked",
    }
    fake.answer(
        Answer(tool_calls=[call("c1", "book", '{"nights": 0}')]),
        Answer(tool_calls=[call("c2", "book", '{"nights": 2}')]),
        Answer("Booked."),
    )
    with make_client(fake) as client:
        run = client.run("Book", tools=[schema_tool], model=MODEL)
    assert tool_messages(fake, 1)[0][1].startswith("Error: arguments for tool 'book' do not fit: nights:")
    assert seen == [{"nights": 2}]
    assert run.steps[1].tool_results[0].text == "booked"


def test_a_denied_call_goes_back_as_denied(fake: FakeOpenAI) -> None:
    asked: list[str] = []

    def approve(tool_call: ToolCall) -> bool:
        asked.append(tool_call.name)
        return tool_call.name != "add"

    fake.answer(
        Answer(tool_calls=[call("c1", "get_weather", '{"city": "Oslo"}'), call("c2", "add", '{"a": 1, "b": 2}')]),
        Answer("ok"),
    )
    with make_client(fake) as client:
        run = client.run("go", tools=[get_weather, add], model=MODEL, approve=approve)
    assert asked == ["get_weather", "add"]
    assert tool_messages(fake, 1) == [("c1", "3C and sunny in Oslo"), ("c2", "Error: the call to 'add' was denied")]
    assert run.steps[0].tool_results[1].denied
    assert len(fake.bodies()) == 2


def test_requires_approval_asks_only_for_those_tools_and_needs_approve() -> None:
    guarded = fmclient.tool(add, requires_approval=True)
    free = fmclient.tool(get_weather, requires_approval=False)
    with MockProvider() as mock, Client() as client:
        with pytest.raises(ValueError, match="require approval"):
            client.run("go", tools=[guarded], model=MODEL)
        assert mock.requests == []
        mock.add_reply(
            tool_calls=[
                {"name": "add", "arguments": {"a": 1, "b": 1}},
                {"name": "get_weather", "arguments": {"city": "Rome"}},
            ]
        )
        mock.add_reply("done")
        asked: list[str] = []

        async def approve(tool_call: ToolCall) -> bool:  # async approvers work in run() too
            asked.append(tool_call.name)
            return True

        run = client.run("go", tools=[guarded, free], model=MODEL, approve=approve)
    assert asked == ["add"]
    assert [r.text for r in run.steps[0].tool_results] == ["2", "3C and sunny in Rome"]


# -- limits ----------------------------------------------------------------------------------------
def test_max_steps_returns_the_run_so_far_with_its_last_results(fake: FakeOpenAI) -> None:
    fake.answer(*(Answer(tool_calls=[call(f"c{i}", "add", '{"a": 1, "b": 1}')]) for i in range(5)))
    with make_client(fake) as client:
        run = client.run("loop", tools=[add], model=MODEL, max_steps=3)
    assert len(fake.bodies()) == 3
    assert run.stopped == "max_steps"
    assert len(run.steps) == 3 and all(s.tool_results[0].text == "2" for s in run.steps)
    assert run.messages[-1].role == "tool"  # ready to continue: the next step would answer these
    assert run.usage == Usage(36, 15)


def test_stop_when_and_final_tools(fake: FakeOpenAI) -> None:
    fake.answer(
        Answer(tool_calls=[call("c1", "add", '{"a": 1, "b": 1}')]),
        Answer(tool_calls=[call("c2", "submit", '{"value": 2}')]),
    )
    final = fmclient.tool(
        name="submit", parameters={"type": "object", "properties": {"value": {"type": "integer"}}}, final=True
    )
    with make_client(fake) as client:
        run = client.run("1+1", tools=[add, final], model=MODEL)
        assert run.stopped == "submit"
        assert run.final_call is not None and run.final_call.arguments == {"value": 2}
        assert run.messages[-1].role == "tool"  # the final call has its result: the history is whole
        fake.answer(Answer(tool_calls=[call("c3", "add", '{"a": 1, "b": 1}')]), Answer("never"))
        stopped = client.run("1+1", tools=[add], model=MODEL, stop_when=lambda r: len(r.steps) == 1)
    assert stopped.stopped == "stop_when" and len(stopped.steps) == 1
    assert len(fake.bodies()) == 3


def test_consecutive_failures_of_one_tool_stop_the_run(fake: FakeOpenAI) -> None:
    def flaky() -> str:
        """Never works."""
        raise OSError("disk gone")

    fake.answer(*(Answer(tool_calls=[call(f"c{i}", "flaky", "{}")]) for i in range(5)))
    with make_client(fake) as client:
        run = client.run("go", tools=[flaky], model=MODEL, max_tool_failures=2)
    assert run.stopped == "tool_failures"
    assert len(fake.bodies()) == 2


def test_the_budget_is_checked_before_every_step_and_the_error_carries_the_run(fake: FakeOpenAI) -> None:
    pytest.importorskip("genai_prices")
    fake.answer(
        Answer(tool_calls=[call("c1", "add", '{"a": 1, "b": 2}')], prompt_tokens=1000, completion_tokens=500),
        Answer("never sent"),
    )
    # Room for the first step's reservation (its input and 1024 output tokens by default, about
    # $0.0103 on gpt-4o), not for a second one beside what the first cost ($0.0075).
    with make_client(fake, max_cost="0.011") as client, pytest.raises(BudgetExceededError) as caught:
        client.run("go", tools=[add], model=MODEL)
    assert len(fake.bodies()) == 1  # the second step was refused before it left
    run = caught.value.run
    assert isinstance(run, Run) and len(run.steps) == 1
    assert run.steps[0].tool_results[0].text == "3"
    assert run.cost is not None and run.cost.total > 0


def test_the_deadline_covers_the_whole_run_even_mid_tool(fake: FakeOpenAI) -> None:
    release = threading.Event()

    def slow() -> str:
        """Waits."""
        release.wait(10)
        return "late"

    fake.answer(Answer(tool_calls=[call("c1", "slow", "{}")]), Answer("never"))
    try:
        with make_client(fake) as client, pytest.raises(RequestTimeoutError, match="while tool 'slow' ran") as caught:
            client.run("go", tools=[slow], model=MODEL, timeout=0.5)
    finally:
        release.set()
    assert len(fake.bodies()) == 1
    run = caught.value.run
    assert len(run.steps) == 1 and run.steps[0].tool_results == []


def test_tool_timeout_sends_a_timeout_back_and_goes_on(fake: FakeOpenAI) -> None:
    release = threading.Event()

    def slow() -> str:
        """Waits."""
        release.wait(10)
        return "late"

    fake.answer(Answer(tool_calls=[call("c1", "slow", "{}"), call("c2", "add", '{"a": 1, "b": 2}')]), Answer("ok"))
    try:
        with make_client(fake) as client:
            run = client.run("go", tools=[slow, add], model=MODEL, tool_timeout=0.2)
    finally:
        release.set()
    assert tool_messages(fake, 1) == [("c1", "Error: tool 'slow' did not finish within 0.2s"), ("c2", "3")]
    assert run.steps[0].tool_results[0].error_type == "timeout"


def test_parallel_tools_run_concurrently_and_results_keep_call_order(fake: FakeOpenAI) -> None:
    both_running = threading.Barrier(2, timeout=5)

    def first() -> str:
        """One."""
        both_running.wait()  # only returns when the second runs at the same time
        return "one"

    def second() -> str:
        """Two."""
        both_running.wait()
        return "two"

    fake.answer(Answer(tool_calls=[call("c1", "first", "{}"), call("c2", "second", "{}")]), Answer("ok"))
    with make_client(fake) as client:
        client.run("go", tools=[first, second], model=MODEL)
    assert tool_messages(fake, 1) == [("c1", "one"), ("c2", "two")]


def test_a_parallel_step_runs_its_last_call_in_the_callers_thread_and_the_rest_in_workers() -> None:
    both_running = threading.Barrier(2, timeout=5)  # the calls still run at the same time
    threads: dict[str, str] = {}

    def first() -> str:
        """One."""
        threads["first"] = threading.current_thread().name
        both_running.wait()
        return "one"

    def second() -> str:
        """Two."""
        threads["second"] = threading.current_thread().name
        both_running.wait()
        return "two"

    def both_at_once(request: Any) -> Any:
        if any(m.role == "tool" for m in request.messages):
            return "done"
        calls = [ToolCall("c1", "first", {}), ToolCall("c2", "second", {})]
        return fmclient.Completion("", "tool_calls", Usage(1, 1), "gpt-4o", "mock", tool_calls=calls)

    with MockProvider().respond_with(both_at_once), Client() as client:
        run = client.run("go", tools=[first, second], model=MODEL)
    assert [r.content for r in run.steps[0].tool_results] == ["one", "two"]
    assert threads["second"] == threading.current_thread().name
    assert threads["first"].startswith("fmclient-tool")


def test_a_runs_tools_are_checked_once_not_on_every_steps_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from fmclient import _validation

    checked: list[str] = []
    check = _validation.check_json_schema

    def counting(schema: Any, where: str) -> None:
        if where.endswith("].parameters"):  # a tool's whole schema (not its nested ones)
            checked.append(where)
        check(schema, where)

    monkeypatch.setattr(_validation, "check_json_schema", counting)

    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    with MockProvider() as mock, Client() as client:
        for _ in range(2):
            mock.add_tool_call("lookup", {"city": "Oslo"}).add_tool_call("lookup", {"city": "Bergen"}).add_reply("ok")
        first = client.run("go", tools=[lookup], model=MODEL)
        assert len(first.steps) == 3 and checked == ["tools[0].parameters"]  # once, not at each of 3 calls
        second = client.run("go", tools=[lookup], model=MODEL)
    assert len(second.steps) == 3 and checked == ["tools[0].parameters"]  # the same tool: not again
    assert [t.name for t in mock.requests[-1].tools] == ["lookup"]


def test_a_hand_made_function_tool_is_checked_by_its_first_run_before_any_request() -> None:
    from fmclient.tool_loop import FunctionTool

    bad = FunctionTool(fmclient.Tool("bad", "Not an object schema.", {"type": "string"}), print)
    with MockProvider() as mock, Client() as client:
        with pytest.raises(ValueError, match=r"tools\[0\]\.parameters must be a JSON Schema with type 'object'"):
            client.run("go", tools=[bad], model=MODEL)
        assert not bad.checked and mock.requests == []
        good = FunctionTool(fmclient.Tool("good", "An object.", {"type": "object", "properties": {}}), print)
        mock.add_reply("ok")
        assert client.run("go", tools=[good], model=MODEL).text == "ok" and good.checked


def test_parallel_tools_false_runs_one_at_a_time() -> None:
    order: list[str] = []

    def step(name: str) -> str:
        """Record."""
        order.append(f"start {name}")
        order.append(f"end {name}")
        return name

    with MockProvider() as mock, Client() as client:
        mock.add_reply(
            tool_calls=[{"name": "step", "arguments": {"name": "a"}}, {"name": "step", "arguments": {"name": "b"}}]
        )
        mock.add_reply("ok")
        client.run("go", tools=[step], model=MODEL, parallel_tools=False)
    assert order == ["start a", "end a", "start b", "end b"]


# -- async: awaited tools, threads for sync ones, cancellation -----------------------------------------
def test_arun_awaits_async_tools_and_threads_sync_ones(fake: FakeOpenAI) -> None:
    loop_thread: list[int] = []
    tool_threads: list[int] = []

    async def fetch(url: str) -> str:
        """Fetch."""
        loop_thread.append(threading.get_ident())
        await asyncio.sleep(0)
        return f"<html>{url}</html>"

    def compute(n: int) -> int:
        """Compute."""
        tool_threads.append(threading.get_ident())
        return n * 2

    fake.answer(
        Answer(tool_calls=[call("c1", "fetch", '{"url": "x"}'), call("c2", "compute", '{"n": 4}')]), Answer("ok")
    )

    async def go() -> Run:
        async with make_client(fake) as client:
            main = threading.get_ident()
            run = await client.arun("go", tools=[fetch, compute], model=MODEL)
            assert loop_thread == [main] and tool_threads and tool_threads[0] != main
            return run

    run = asyncio.run(go())
    assert [r.text for r in run.steps[0].tool_results] == ["<html>x</html>", "8"]


def test_cancelling_arun_cancels_and_awaits_every_tool_task(fake: FakeOpenAI) -> None:
    cancelled: list[str] = []

    async def wait_forever(name: str) -> str:
        """Waits."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return "never"

    fake.answer(
        Answer(tool_calls=[call("c1", "wait_forever", '{"name": "a"}'), call("c2", "wait_forever", '{"name": "b"}')])
    )

    async def go() -> None:
        async with make_client(fake) as client:
            task = asyncio.create_task(client.arun("go", tools=[wait_forever], model=MODEL))
            while len(fake.bodies()) < 1:
                await asyncio.sleep(0.01)
            for _ in range(50):  # until both tool tasks are waiting
                await asyncio.sleep(0.01)
                if len(asyncio.all_tasks()) >= 4:
                    break
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert sorted(cancelled) == ["a", "b"]
            assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left behind

    asyncio.run(go())
    assert len(fake.bodies()) == 1


def test_arun_deadline_mid_tool(fake: FakeOpenAI) -> None:
    async def slow() -> str:
        """Waits."""
        await asyncio.sleep(10)
        return "late"

    fake.answer(Answer(tool_calls=[call("c1", "slow", "{}")]), Answer("never"))

    async def go() -> None:
        async with make_client(fake) as client:
            with pytest.raises(RequestTimeoutError) as caught:
                await client.arun("go", tools=[slow], model=MODEL, timeout=0.3)
            assert len(caught.value.run.steps) == 1

    asyncio.run(go())
    assert len(fake.bodies()) == 1


def test_arun_stream_events(fake: FakeOpenAI) -> None:
    fake.answer(Answer(tool_calls=[call("c1", "add", '{"a": 1, "b": 2}')]), Answer("It is 3."))

    async def go() -> tuple[list[Any], Run]:
        async with make_client(fake) as client:
            stream = client.arun_stream("1+2", tools=[add], model=MODEL)
            events = [event async for event in stream]
            return events, stream.run

    events, run = asyncio.run(go())
    assert [e.type for e in events] == ["tool_call", "tool_result", "step_end", "text", "text", "text", "step_end"]
    assert run.text == "It is 3." and run.stopped == "answer"


# -- hooks and spans ------------------------------------------------------------------------------
class Recorder(Hook):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_run_start(self, run: RunInfo) -> None:
        self.events.append("run start")

    def on_call_start(self, call: Any) -> None:
        self.events.append("call")

    def on_tool_start(self, tool: ToolCallInfo) -> None:
        self.events.append(f"tool start {tool.call.name} step {tool.step}")

    def on_tool_end(self, tool: ToolCallInfo) -> None:
        self.events.append(f"tool end {tool.call.name} {tool.result.is_error}")

    def on_step_end(self, run: RunInfo, step: Any) -> None:
        self.events.append(f"step end {step.number}")

    def on_run_end(self, run: RunInfo, result: Any, error: BaseException | None) -> None:
        self.events.append(f"run end {result.stopped if result else type(error).__name__}")


def test_hooks_see_each_step_and_each_tool_call(fake: FakeOpenAI) -> None:
    recorder = Recorder()
    fake.answer(
        Answer(tool_calls=[call("c1", "add", '{"a": 1, "b": 2}'), call("c2", "nope", "{}")]),
        Answer("3"),
    )
    with make_client(fake, hooks=[recorder]) as client:
        client.run("go", tools=[add], model=MODEL, parallel_tools=False)
    assert recorder.events == [
        "run start",
        "call",
        "tool start add step 1",
        "tool end add False",
        "tool start nope step 1",
        "tool end nope True",
        "step end 1",
        "call",
        "run end answer",
    ]


def test_spans_execute_tool_under_invoke_agent(fake: FakeOpenAI) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def broken() -> str:
        """Fails."""
        raise ValueError("bad")

    fake.answer(
        Answer(tool_calls=[call("c1", "add", '{"a": 1, "b": 2}'), call("c2", "broken", "{}")]),
        Answer("3"),
    )
    with make_client(fake, hooks=[OpenTelemetryHook(tracer_provider=provider)]) as client:
        client.run("go", tools=[add, broken], model=MODEL)
    spans = {s.name: s for s in exporter.get_finished_spans() if not s.name.startswith("chat")}
    chats = [s for s in exporter.get_finished_spans() if s.name == "chat gpt-4o" and s.parent is not None]
    agent = spans["invoke_agent"]
    assert agent.attributes is not None and agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.usage.input_tokens"] == 24
    tool_span = spans["execute_tool add"]
    assert dict(tool_span.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.call.id": "c1",
        "gen_ai.tool.type": "function",
    }
    assert (spans["execute_tool broken"].attributes or {})["error.type"] == "ValueError"
    for span in (tool_span, spans["execute_tool broken"]):
        assert span.parent is not None and span.parent.span_id == agent.context.span_id
    call_spans = [s for s in chats if s.parent is not None and s.parent.span_id == agent.context.span_id]
    assert len(call_spans) == 2  # each step's call span sits under the run's


# -- the mock scripts multi-step runs; JSON round trips ---------------------------------------------
def test_the_mock_scripts_a_multi_step_run_and_checks_tools_like_production() -> None:
    with MockProvider() as mock, Client() as client:
        mock.add_tool_call("get_weather", {"city": "Oslo"}).add_tool_call("add", {"a": 1, "b": 2}).add_reply("done")
        run = client.run("go", tools=[get_weather, add], model="claude-sonnet")
        assert [len(r.messages) for r in mock.requests] == [1, 3, 5]
        assert [t.name for t in mock.requests[0].tools] == ["get_weather", "add"]
        # A bad schema fails before any request, as in production.
        with pytest.raises(ValueError):
            client.run("go", tools=[{"name": "x", "parameters": {"type": "string"}, "handler": print}], model=MODEL)
    assert run.text == "done" and len(mock.requests) == 3


def test_run_and_messages_round_trip_through_json() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
    state = {"gemini": {"parts": [{"thought_signature": b"\x01\x02sig", "text": "x"}]}}
    messages = [
        Message.user(["look", ImagePart(data=png, media_type="image/png")]),
        Message(
            "assistant",
            "",
            tool_calls=(ToolCall("c1", "add", {"a": 1}, raw_arguments=None),),
            provider_state=state,
        ),
        Message("tool", "2", tool_call_id="c1", name="add"),
        Message("tool", "Error: boom", tool_call_id="c2", name="add", is_error=True),
    ]
    for message in messages:
        assert Message.from_json(json.loads(json.dumps(message.to_json()))) == message
    with MockProvider() as mock, Client() as client:
        mock.add_tool_call("add", {"a": 1, "b": 2}, id="c1").add_reply("3")
        run = client.run("go", tools=[add], model=MODEL)
    again = Run.from_json(json.loads(json.dumps(run.to_json())))
    assert again.messages == run.messages
    assert again.stopped == run.stopped and again.usage == run.usage
    assert [s.tool_results for s in again.steps] == [s.tool_results for s in run.steps]
    assert again.text == run.text and again.cost == run.cost and again.cost_reason == run.cost_reason


def test_a_stored_run_is_continued_with_nothing_lost() -> None:
    with MockProvider() as mock, Client() as client:
        mock.add_tool_call("add", {"a": 1, "b": 2}, id="c1").add_reply("3")
        first = client.run("1+2?", tools=[add], model=MODEL)
        stored = json.dumps(first.to_json())
        mock.add_reply("6")
        history = Run.from_json(json.loads(stored)).messages
        second = client.run([*history, {"role": "user", "content": "times 2?"}], tools=[add], model=MODEL)
        assert mock.requests[-1].messages[: len(first.messages)] == tuple(first.messages)
    assert second.text == "6"


def test_bad_run_arguments_fail_before_any_request() -> None:
    with MockProvider() as mock, Client() as client:
        for kwargs in (
            {"max_steps": 0},
            {"on_tool_error": "ignore"},
            {"tool_timeout": -1},
            {"max_tool_failures": 0},
            {"approve": "yes"},
        ):
            with pytest.raises((ValueError, TypeError)):
                client.run("go", tools=[add], model=MODEL, **kwargs)
        with pytest.raises(ValueError, match="two tools are named"):
            client.run("go", tools=[add, add], model=MODEL)
    assert mock.requests == []


def test_spans_nest_for_async_and_streamed_runs_and_leave_no_context_behind() -> None:
    from opentelemetry import trace

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with MockProvider() as mock, Client(hooks=[OpenTelemetryHook(tracer_provider=provider)]) as client:
        mock.add_tool_call("add", {"a": 1, "b": 2}).add_reply("3")
        for _ in client.run_stream("x", tools=[add], model=MODEL):
            pass

        async def go() -> None:
            mock.add_tool_call("add", {"a": 1, "b": 2}).add_reply("3")
            await client.arun("x", tools=[add], model=MODEL)

        asyncio.run(go())
    spans = exporter.get_finished_spans()
    agents = [s for s in spans if s.name == "invoke_agent"]
    assert len(agents) == 2
    for agent in agents:
        under = [s for s in spans if s.parent is not None and s.parent.span_id == agent.context.span_id]
        assert sorted(s.name for s in under) == ["chat gpt-4o", "chat gpt-4o", "execute_tool add"]
    assert not trace.get_current_span().get_span_context().is_valid  # the run's span is not left current


def test_an_image_result_a_model_cannot_take_is_refused_before_sending_with_the_run() -> None:
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452")

    def snapshot() -> ImagePart:
        """A picture."""
        return ImagePart(data=png, media_type="image/png")

    with MockProvider() as mock, Client() as client:
        mock.add_tool_call("snapshot", {}).add_reply("never")
        with pytest.raises(UnsupportedFeatureError, match="image") as caught:
            client.run("look", tools=[snapshot], model="ollama/llama3.2")
        assert len(mock.requests) == 1
    assert caught.value.run.steps[0].tool_results[0].content[0].media_type == "image/png"


def test_run_usage_keeps_a_service_tier_every_step_shares() -> None:
    with MockProvider() as mock, Client() as client:
        mock.add_reply(
            tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}], usage=Usage(5, 2, service_tier="flex")
        )
        mock.add_reply("2", usage=Usage(9, 1, service_tier="flex"))
        run = client.run("1+1", tools=[add], model=MODEL)
    assert run.usage == Usage(14, 3, service_tier="flex")


class ToolEnds(Hook):
    def __init__(self) -> None:
        self.ended: list[tuple[str, str | None]] = []

    def on_tool_end(self, tool: ToolCallInfo) -> None:
        self.ended.append((tool.call.id, tool.result.error_type))


def test_every_tool_call_ends_for_hooks_when_the_deadline_or_a_cancel_stops_the_run(fake: FakeOpenAI) -> None:
    release = threading.Event()

    def slow(n: int) -> str:
        """Waits."""
        release.wait(10)
        return "late"

    hook = ToolEnds()
    fake.answer(Answer(tool_calls=[call("c1", "slow", '{"n": 1}'), call("c2", "slow", '{"n": 2}')]))
    try:
        with make_client(fake, hooks=[hook]) as client, pytest.raises(RequestTimeoutError):
            client.run("go", tools=[slow], model=MODEL, timeout=0.5)
    finally:
        release.set()
    assert hook.ended == [("c1", "timeout"), ("c2", "timeout")]

    async def wait_forever(n: int) -> str:
        """Waits."""
        await asyncio.Event().wait()
        return "never"

    cancelled = ToolEnds()
    fake.answer(Answer(tool_calls=[call("c3", "wait_forever", '{"n": 1}'), call("c4", "wait_forever", '{"n": 2}')]))

    async def go() -> None:
        async with make_client(fake, hooks=[cancelled]) as client:
            task = asyncio.create_task(client.arun("go", tools=[wait_forever], model=MODEL))
            while len(fake.bodies()) < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(go())
    assert sorted(cancelled.ended) == [("c3", "cancelled"), ("c4", "cancelled")]


def test_arguments_cut_off_by_max_tokens_go_back_to_the_model() -> None:
    with MockProvider() as mock, Client() as client:
        mock.add_reply(tool_calls=[ToolCall("c1", "add", {}, raw_arguments='{"a": 1, "b')], finish_reason="length")
        mock.add_reply("ok")
        run = client.run("1+1", tools=[add], model=MODEL)
    result = run.steps[0].tool_results[0]
    assert result.error_type == "invalid_arguments" and "cut off" in result.text
    assert run.stopped == "answer"  # a "length" finish with a call in it did not end the run


def test_a_tool_error_never_carries_a_known_key_back_to_the_model(fake: FakeOpenAI) -> None:
    def leaky() -> str:
        """Fails, quoting the key it used."""
        raise PermissionError("denied for key sk-test-0123456789 at https://example.test")

    fake.answer(Answer(tool_calls=[call("c1", "leaky", "{}")]), Answer("ok"))
    with make_client(fake) as client:
        run = client.run("go", tools=[leaky], model=MODEL)
    sent = json.dumps(fake.bodies()[1])
    assert "sk-test-0123456789" not in sent and "sk-test-0123456789" not in run.steps[0].tool_results[0].text
    assert "PermissionError: denied for key" in run.steps[0].tool_results[0].text
