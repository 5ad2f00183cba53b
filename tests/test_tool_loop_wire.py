"""The tool loop over every provider's real SDK, against the loopback wire fakes.

One scenario everywhere: two tools, three steps (the first with two calls the loop runs in
parallel, the second with one, the third the answer). Each test asserts the exact messages the
SDK sent on each step (the tool results, and the provider state of the earlier turns carried
untouched: Anthropic thinking blocks, Gemini thought signatures, OpenAI Responses reasoning
items), the request count, and that the run's usage is the sum of its steps'.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fmclient import Client, Message, Run, Usage, tool_arguments
from fmclient.tool_loop import StepEnd, TextDelta, ToolCallEvent, ToolResultEvent
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes import ollama as fo
from tests.fakes.bedrock import FakeBedrock, converse_reply, converse_stream_reply, converse_usage
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer, Reply

QUESTION = "Weather in Oslo, and what is 2 + 3?"
ANSWER = "Oslo: 3C and sunny; 2 + 3 = 5 (and 15)."


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"3C and sunny in {city}"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _client(table: dict[str, Any]) -> Client:
    return Client(providers=table, max_retries=0)


# -- per provider: the three answers (whole or streamed), and the history each step must send ------
def anthropic_answers(server: FakeServer, streaming: bool) -> None:
    answers = [
        (
            [
                fa.thinking_block("Two tools at once.", "sig-1"),
                fa.tool_use_block("toolu_1", "get_weather", {"city": "Oslo"}),
                fa.tool_use_block("toolu_2", "add", {"a": 2, "b": 3}),
            ],
            "tool_use",
            (20, 8),
        ),
        ([fa.tool_use_block("toolu_3", "add", {"a": 5, "b": 10})], "tool_use", (40, 6)),
        ([fa.text_block(ANSWER)], "end_turn", (60, 12)),
    ]
    for blocks, stop, (tokens_in, tokens_out) in answers:
        if streaming:
            events = fa.stream_events(
                blocks,
                stop_reason=stop,
                start_usage=fa.usage(tokens_in, 1),
                final_usage={"output_tokens": tokens_out},
            )
            server.queue(fa.stream_reply(events))
        else:
            server.queue(fa.message_reply(blocks, stop_reason=stop, usage_=fa.usage(tokens_in, tokens_out)))


ANTHROPIC_STEP_3 = [
    {"role": "user", "content": QUESTION},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Two tools at once.", "signature": "sig-1"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "add", "input": {"a": 2, "b": 3}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3C and sunny in Oslo"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "5"},
        ],
    },
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_3", "name": "add", "input": {"a": 5, "b": 10}}],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3", "content": "15"}]},
]


def openai_answers(fake: FakeOpenAI, streaming: bool) -> None:  # the fake streams when asked
    fake.answer(
        Answer(
            tool_calls=[("call_1", "get_weather", '{"city": "Oslo"}'), ("call_2", "add", '{"a": 2, "b": 3}')],
            prompt_tokens=20,
            completion_tokens=8,
        ),
        Answer(tool_calls=[("call_3", "add", '{"a": 5, "b": 10}')], prompt_tokens=40, completion_tokens=6),
        Answer(ANSWER, prompt_tokens=60, completion_tokens=12),
    )


OPENAI_STEP_3 = [
    {"role": "user", "content": QUESTION},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "3C and sunny in Oslo"},
    {"role": "tool", "tool_call_id": "call_2", "content": "5"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "add", "arguments": '{"a": 5, "b": 10}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_3", "content": "15"},
]


def responses_answers(fake: FakeOpenAI, streaming: bool) -> None:
    fake.answer(
        Answer(
            tool_calls=[("call_1", "get_weather", '{"city": "Oslo"}'), ("call_2", "add", '{"a": 2, "b": 3}')],
            model="o3",
            reasoning="Two tools at once.",
            encrypted_content="enc-1",
            prompt_tokens=20,
            completion_tokens=8,
        ),
        Answer(tool_calls=[("call_3", "add", '{"a": 5, "b": 10}')], model="o3", prompt_tokens=40, completion_tokens=6),
        Answer(ANSWER, model="o3", prompt_tokens=60, completion_tokens=12),
    )


def gemini_answers(server: FakeServer, streaming: bool) -> None:
    bodies = [
        fg.response_body(
            parts=[
                fg.function_call_part("get_weather", {"city": "Oslo"}, thought_signature=b"sig-1"),
                fg.function_call_part("add", {"a": 2, "b": 3}),
            ],
            usage=fg.usage_metadata(20, 8),
        ),
        fg.response_body(parts=[fg.function_call_part("add", {"a": 5, "b": 10})], usage=fg.usage_metadata(40, 6)),
        fg.response_body(ANSWER, usage=fg.usage_metadata(60, 12)),
    ]
    for body in bodies:
        server.queue(fg.stream_reply([body]) if streaming else Reply(body=body))


GEMINI_STEP_3_CONTENTS = [
    {"role": "user", "parts": [{"text": QUESTION}]},
    {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                "thoughtSignature": base64.b64encode(b"sig-1").decode(),
            },
            {"functionCall": {"name": "add", "args": {"a": 2, "b": 3}}},
        ],
    },
    {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "3C and sunny in Oslo"}}},
            {"functionResponse": {"name": "add", "response": {"output": 5}}},
        ],
    },
    {"role": "model", "parts": [{"functionCall": {"name": "add", "args": {"a": 5, "b": 10}}}]},
    {"role": "user", "parts": [{"functionResponse": {"name": "add", "response": {"output": 15}}}]},
]


def bedrock_answers(fake: FakeBedrock, streaming: bool) -> None:
    answers: list[tuple[list[dict[str, Any]], str | None, tuple[int, int]]] = [
        (
            [
                {"toolUseId": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                {"toolUseId": "tu_2", "name": "add", "input": {"a": 2, "b": 3}},
            ],
            None,
            (20, 8),
        ),
        ([{"toolUseId": "tu_3", "name": "add", "input": {"a": 5, "b": 10}}], None, (40, 6)),
        ([], ANSWER, (60, 12)),
    ]
    for uses, text, tokens in answers:
        stop = "tool_use" if uses else "end_turn"
        usage = converse_usage(*tokens)
        if streaming:
            pieces = [dict(use, fragments=[json.dumps(use["input"])]) for use in uses]
            fake.queue(
                converse_stream_reply(
                    text_pieces=[text] if text else [], tool_uses=pieces, stop_reason=stop, usage=usage
                )
            )
        else:
            fake.queue(converse_reply(text=text, tool_uses=uses, stop_reason=stop, usage=usage))


BEDROCK_STEP_3 = [
    {"role": "user", "content": [{"text": QUESTION}]},
    {
        "role": "assistant",
        "content": [
            {"toolUse": {"toolUseId": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}}},
            {"toolUse": {"toolUseId": "tu_2", "name": "add", "input": {"a": 2, "b": 3}}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "3C and sunny in Oslo"}]}},
            {"toolResult": {"toolUseId": "tu_2", "content": [{"text": "5"}]}},
        ],
    },
    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tu_3", "name": "add", "input": {"a": 5, "b": 10}}}]},
    {"role": "user", "content": [{"toolResult": {"toolUseId": "tu_3", "content": [{"text": "15"}]}}]},
]


def ollama_answers(server: fo.FakeOllama, streaming: bool) -> None:
    answers: list[tuple[list[dict[str, Any]], str, tuple[int, int]]] = [
        (
            [
                {"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "call_1"},
                {"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_2"},
            ],
            "",
            (20, 8),
        ),
        ([{"name": "add", "arguments": {"a": 5, "b": 10}, "id": "call_3"}], "", (40, 6)),
        ([], ANSWER, (60, 12)),
    ]
    for calls, text, (tokens_in, tokens_out) in answers:
        if streaming:
            events = fo.chat_stream_events(
                [text] if text else [], tool_calls=calls or None, prompt_eval_count=tokens_in, eval_count=tokens_out
            )
            server.queue(fo.stream_reply(events))
        else:
            server.queue(
                fo.chat_reply(text, tool_calls=calls or None, prompt_eval_count=tokens_in, eval_count=tokens_out)
            )


STEP_USAGE = (Usage(20, 8), Usage(40, 6), Usage(60, 12))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@dataclass
class Wired:
    """A provider's fake, a client pointed at it, the model name, and what each step sent."""

    client: Client
    model: str
    serve: Callable[[bool], None]  # queue the three answers (streamed or not)
    bodies: Callable[[], list[dict[str, Any]]]
    history: Callable[[dict[str, Any]], Any]  # the conversation part of one request body
    step_3_history: Any


PROVIDERS = ["anthropic", "openai", "openai-responses", "gemini", "bedrock", "ollama"]


@pytest.fixture(params=PROVIDERS)
def wired(request: pytest.FixtureRequest, aws_env: None) -> Iterator[Wired]:
    name = request.param
    if name == "bedrock":
        with FakeBedrock() as bedrock:
            client = _client({"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}})
            yield Wired(
                client,
                "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
                lambda streaming: bedrock_answers(bedrock, streaming),
                lambda: [r.json() for r in bedrock.requests],
                lambda body: body["messages"],
                BEDROCK_STEP_3,
            )
            client.close()
        return
    if name == "ollama":
        with fo.FakeOllama() as ollama:
            client = _client({"ollama": {"base_url": ollama.url}})
            yield Wired(
                client,
                "ollama/llama3.2",
                lambda streaming: ollama_answers(ollama, streaming),
                lambda: [r.json() for r in ollama.requests if r.path == "/api/chat"],
                lambda body: body["messages"],
                None,  # checked in its own test below (Ollama sends tool names and ids too)
            )
            client.close()
        return
    with FakeServer() as server:
        bodies = lambda: [r.json() for r in server.requests]  # noqa: E731
        if name == "anthropic":
            client = _client({"anthropic": {"base_url": server.url, "api_key": "test-key-anthropic"}})
            wire = Wired(
                client,
                "anthropic/claude-sonnet-4-6",
                lambda streaming: anthropic_answers(server, streaming),
                bodies,
                lambda body: body["messages"],
                ANTHROPIC_STEP_3,
            )
        elif name in ("openai", "openai-responses"):
            fake = FakeOpenAI(server)
            responses = name == "openai-responses"
            client = _client({"openai": {"base_url": server.url + "/v1", "api_key": "sk-test-0123456789"}})
            wire = Wired(
                client,
                "openai/o3" if responses else "openai/gpt-4o",
                lambda streaming: (responses_answers if responses else openai_answers)(fake, streaming),
                bodies,
                (lambda body: body["input"]) if responses else (lambda body: body["messages"]),
                None if responses else OPENAI_STEP_3,
            )
        else:
            client = _client({"gemini": {"base_url": server.url, "api_key": "test-key-not-real"}})
            wire = Wired(
                client,
                "gemini/gemini-2.5-flash",
                lambda streaming: gemini_answers(server, streaming),
                bodies,
                lambda body: body["contents"],
                GEMINI_STEP_3_CONTENTS,
            )
        yield wire
        client.close()


def check_run(run: Run, wire: Wired, first: int = 0) -> None:
    assert run.stopped == "answer"
    assert run.text == ANSWER
    assert [len(s.tool_calls) for s in run.steps] == [2, 1, 0]
    assert [[r.text for r in s.tool_results] for s in run.steps] == [["3C and sunny in Oslo", "5"], ["15"], []]
    assert [s.completion.usage for s in run.steps] == list(STEP_USAGE)
    assert run.usage == STEP_USAGE[0] + STEP_USAGE[1] + STEP_USAGE[2]
    bodies = wire.bodies()[first:]
    assert len(bodies) == 3  # one request per step: nothing retried, nothing lost
    histories = [wire.history(b) for b in bodies]
    assert len(histories[0]) == 1  # the prompt alone
    if wire.step_3_history is not None:
        assert histories[2] == wire.step_3_history
        assert histories[1] == wire.step_3_history[: len(histories[1])]
    # The run's history is what a fourth step would send: continue from it.
    assert [m.role for m in run.messages] == ["user", "assistant", "tool", "tool", "assistant", "tool", "assistant"]


def test_two_tools_three_steps(wired: Wired) -> None:
    wired.serve(False)
    run = wired.client.run(QUESTION, tools=[get_weather, add], model=wired.model)
    check_run(run, wired)


def test_two_tools_three_steps_async(wired: Wired) -> None:
    wired.serve(False)

    async def go() -> Run:
        run = await wired.client.arun(QUESTION, tools=[get_weather, add], model=wired.model)
        await wired.client.aclose()
        return run

    check_run(asyncio.run(go()), wired)


def test_two_tools_three_steps_streamed(wired: Wired) -> None:
    wired.serve(True)
    stream = wired.client.run_stream(QUESTION, tools=[get_weather, add], model=wired.model)
    events = list(stream)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("ToolCallEvent") == 3 and kinds.count("ToolResultEvent") == 3
    assert kinds.count("StepEnd") == 3
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == stream.run.text
    first_results = [e.result.text for e in events if isinstance(e, ToolResultEvent) and e.step == 1]
    assert first_results == ["3C and sunny in Oslo", "5"]
    assert [e.call.name for e in events if isinstance(e, ToolCallEvent)] == ["get_weather", "add", "add"]
    assert isinstance(events[-1], StepEnd)
    check_run(stream.run, wired)


def test_the_same_requests_as_a_hand_written_loop(wired: Wired) -> None:
    """Provider state round-trips across steps exactly as in the loop the docs show by hand."""
    wired.serve(False)
    wired.client.run(QUESTION, tools=[get_weather, add], model=wired.model)
    wired.serve(False)
    functions = {"get_weather": get_weather, "add": add}
    history: list[Any] = [{"role": "user", "content": QUESTION}]
    reply = wired.client.complete(history, model=wired.model, tools=[get_weather, add])
    while reply.tool_calls:
        history.append(reply.message)
        for call in reply.tool_calls:
            result = functions[call.name](**tool_arguments(functions[call.name], call))
            history.append(Message.tool_result(call.id, result))
        reply = wired.client.complete(history, model=wired.model, tools=[get_weather, add])
    bodies = wired.bodies()
    assert len(bodies) == 6
    assert bodies[:3] == bodies[3:]


def test_responses_reasoning_items_are_carried_between_steps(aws_env: None) -> None:
    with FakeServer() as server:
        fake = FakeOpenAI(server)
        responses_answers(fake, False)
        with _client({"openai": {"base_url": server.url + "/v1", "api_key": "sk-test-0123456789"}}) as client:
            run = client.run(QUESTION, tools=[get_weather, add], model="openai/o3")
        bodies = [r.json() for r in server.requests]
    assert run.text.startswith("Oslo")
    second = bodies[1]["input"]
    reasoning = [item for item in second if item.get("type") == "reasoning"]
    assert len(reasoning) == 1 and reasoning[0]["encrypted_content"] == "enc-1"
    outputs = [(item["call_id"], item["output"]) for item in second if item.get("type") == "function_call_output"]
    assert outputs == [("call_1", "3C and sunny in Oslo"), ("call_2", "5")]
    assert bodies[2]["input"][: len(second)] == second


def test_ollama_sends_every_tool_result(aws_env: None) -> None:
    with fo.FakeOllama() as ollama:
        ollama_answers(ollama, False)
        with _client({"ollama": {"base_url": ollama.url}}) as client:
            client.run(QUESTION, tools=[get_weather, add], model="ollama/llama3.2")
        bodies = [r.json() for r in ollama.requests if r.path == "/api/chat"]
    tool_turns = [(m.get("tool_name"), m["content"]) for m in bodies[2]["messages"] if m["role"] == "tool"]
    assert tool_turns == [("get_weather", "3C and sunny in Oslo"), ("add", "5"), ("add", "15")]


def test_llamacpp_run_is_refused_before_any_request() -> None:
    # The embedded model's profile takes no tools: a run over it fails before anything runs, as
    # complete(tools=...) does (the mock enforces the real adapter's capabilities).
    from fmclient import UnsupportedFeatureError
    from fmclient.testing import MockProvider

    with MockProvider() as mock, Client() as client, pytest.raises(UnsupportedFeatureError):
        client.run(QUESTION, tools=[get_weather, add], model="llama-local")
    assert mock.requests == []


def test_a_tool_error_goes_back_flagged_as_an_error(wired: Wired) -> None:
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        raise RuntimeError("no weather today")

    wired.serve(False)
    run = wired.client.run(QUESTION, tools=[get_weather, add], model=wired.model)
    assert run.steps[0].tool_results[0].is_error and run.text == ANSWER
    sent = json.dumps(wired.bodies()[1])
    assert "Error: RuntimeError: no weather today" in sent
    provider = wired.model.split("/")[0]
    history = wired.history(wired.bodies()[1])
    if provider == "anthropic":  # tool_result.is_error
        assert history[2]["content"][0]["is_error"] is True and "is_error" not in history[2]["content"][1]
    elif provider == "bedrock":  # toolResult.status
        assert history[2]["content"][0]["toolResult"]["status"] == "error"
        assert "status" not in history[2]["content"][1]["toolResult"]
    elif provider == "gemini":  # the documented "error" key of a function response
        responses = [p["functionResponse"]["response"] for p in history[2]["parts"]]
        assert responses == [{"error": "Error: RuntimeError: no weather today"}, {"output": 5}]
