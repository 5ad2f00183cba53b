"""The OpenAI Responses API path: the real ``openai`` SDK against the fake's ``POST /v1/responses``.

Every test asserts what fmclient returned and the exact JSON body the SDK sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from fmclient import Client
from fmclient.errors import (
    APIConnectionError,
    ContentFilterError,
    ContextWindowExceededError,
    ServiceUnavailableError,
    UnsupportedFeatureError,
)
from fmclient.types import Message, Tool
from tests.fakes.openai import Answer, FakeOpenAI, response_events
from tests.fakes.server import FakeServer, Reply, sse

KEY = "sk-test-0123456789"
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
REASONING_ITEM = {
    "id": "rs_fake",
    "type": "reasoning",
    "summary": [{"type": "summary_text", "text": "Two cities: call the tool twice."}],
    "encrypted_content": "gAAAA-opaque-state",
}


@pytest.fixture
def fake(fake_server: FakeServer) -> FakeOpenAI:
    return FakeOpenAI(fake_server)


def make_client(server: FakeServer, **settings: Any) -> Client:
    return Client(providers={"openai": {"base_url": server.url + "/v1", "api_key": KEY, **settings}}, max_retries=0)


def bodies(fake: FakeOpenAI) -> list[Any]:
    return fake.bodies("/responses")


def test_reasoning_model_goes_to_responses_with_stateless_defaults(fake: FakeOpenAI) -> None:
    fake.answer(
        Answer(
            "Paris.", model="o3", reasoning="The capital.", encrypted_content="enc", reasoning_tokens=3, cached_tokens=4
        )
    )
    with make_client(fake.server) as client:
        done = client.complete("Capital of France?", model="openai/o3", system="Be brief.", max_tokens=50)
    assert bodies(fake) == [
        {
            "model": "o3",
            "input": [{"role": "user", "content": "Capital of France?"}],
            "store": False,
            "instructions": "Be brief.",
            "include": ["reasoning.encrypted_content"],
            "max_output_tokens": 50,
        }
    ]
    assert fake.bodies("/chat/completions") == []
    assert done.text == "Paris."
    assert done.reasoning == "The capital."
    assert done.finish_reason == "stop"
    usage = done.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens) == (12, 4, 5, 3)
    assert done.response_id == "resp_fake"
    assert done.message.provider_state == {
        "openai": {"output": done.raw["output"]},
    }


@pytest.mark.parametrize("alias", ["gpt-astra", "gpt-sol", "gpt-luna"])
def test_the_gpt6_aliases_follow_the_reasoning_rules(fake: FakeOpenAI, alias: str) -> None:
    """The default aliases name GPT-6 models: Responses API, max_output_tokens and the reasoning
    effort, on the chat path max_completion_tokens and the developer role (sending max_tokens or a
    reasoning model's system role would be a 400 from OpenAI)."""
    fake.answer(Answer("via responses"), Answer("via chat"))
    with make_client(fake.server) as client:
        done = client.complete("hi", model=alias, system="Be brief.", max_tokens=50, reasoning="high")
        chat = client.complete("hi", model=alias, system="Be brief.", max_tokens=50, api="chat")
    target = client.settings.aliases[alias].split("/", 1)[1]
    assert target.startswith("gpt-6")
    assert (done.text, chat.text) == ("via responses", "via chat")
    assert bodies(fake) == [
        {
            "model": target,
            "input": [{"role": "user", "content": "hi"}],
            "store": False,
            "instructions": "Be brief.",
            "include": ["reasoning.encrypted_content"],
            "max_output_tokens": 50,
            "reasoning": {"effort": "high", "summary": "auto"},
        }
    ]
    [sent] = fake.bodies("/chat/completions")
    assert sent["max_completion_tokens"] == 50 and "max_tokens" not in sent
    assert sent["messages"][0] == {"role": "developer", "content": "Be brief."}


def test_gpt4o_stays_on_chat_unless_asked(fake: FakeOpenAI) -> None:
    fake.answer(Answer("chat"), Answer("responses"))
    with make_client(fake.server) as client:
        assert client.complete("hi", model="openai/gpt-4o").text == "chat"
        assert client.complete("hi", model="openai/gpt-4o", api="responses").text == "responses"
    assert len(fake.bodies("/chat/completions")) == 1
    # the call option chooses the endpoint and is not sent; no reasoning include for gpt-4o
    assert bodies(fake) == [{"model": "gpt-4o", "input": [{"role": "user", "content": "hi"}], "store": False}]


def test_provider_setting_and_call_option_override_the_profile(fake: FakeOpenAI) -> None:
    fake.answer(Answer("a"), Answer("b"))
    with make_client(fake.server, api="chat") as client:
        client.complete("hi", model="openai/o3")
        client.complete("hi", model="openai/o3", api="responses")
    assert len(fake.bodies("/chat/completions")) == 1
    assert len(bodies(fake)) == 1


def test_compatible_server_stays_on_chat(fake: FakeOpenAI) -> None:
    fake.answer(Answer("x"))
    client = Client(providers={"vllm": {"type": "openai", "base_url": fake.server.url + "/v1"}}, max_retries=0)
    with client:
        assert client.complete("hi", model="vllm/o3").text == "x"
    assert bodies(fake) == [] and len(fake.bodies("/chat/completions")) == 1


def test_multi_turn_tool_conversation_replays_reasoning_verbatim(fake: FakeOpenAI) -> None:
    fake.answer(
        Answer(
            "",
            model="o3",
            tool_calls=[("call_1", "get_weather", '{"city": "Paris"}'), ("call_2", "get_weather", '{"city": "Rome"}')],
            reasoning=REASONING_ITEM["summary"][0]["text"],
            encrypted_content=REASONING_ITEM["encrypted_content"],
        ),
        Answer("Paris 20C, Rome 25C.", model="o3"),
    )
    with make_client(fake.server) as client:
        first = client.complete("Weather in Paris and Rome?", model="openai/o3", tools=[WEATHER], reasoning="high")
        assert first.finish_reason == "tool_calls"
        assert [(c.id, c.arguments) for c in first.tool_calls] == [
            ("call_1", {"city": "Paris"}),
            ("call_2", {"city": "Rome"}),
        ]
        assert first.reasoning == "Two cities: call the tool twice."
        conversation = [
            Message(role="user", content="Weather in Paris and Rome?"),
            first.message,
            Message(role="tool", content="20C", tool_call_id="call_1"),
            Message(role="tool", content="25C", tool_call_id="call_2"),
        ]
        second = client.complete(conversation, model="openai/o3", tools=[WEATHER], reasoning="high")
    assert second.text == "Paris 20C, Rome 25C."
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER.parameters,
        "strict": False,
    }
    assert bodies(fake)[1] == {
        "model": "o3",
        "input": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            REASONING_ITEM,
            {
                "id": "fc_fake0",
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
                "status": "completed",
            },
            {
                "id": "fc_fake1",
                "type": "function_call",
                "call_id": "call_2",
                "name": "get_weather",
                "arguments": '{"city": "Rome"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "20C"},
            {"type": "function_call_output", "call_id": "call_2", "output": "25C"},
        ],
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "tools": [tool],
        "reasoning": {"effort": "high", "summary": "auto"},
    }


def test_stream_splits_reasoning_text_and_parallel_tool_call_deltas(fake: FakeOpenAI) -> None:
    answer = Answer(
        "Two calls.",
        model="o3",
        tool_calls=[("call_1", "get_weather", '{"city": "Paris"}'), ("call_2", "get_weather", '{"city": "Rome"}')],
        reasoning="Think about it.",
        encrypted_content="enc",
        reasoning_tokens=7,
    )
    fake.answer(answer)
    with make_client(fake.server) as client:
        stream = client.stream("weather?", model="openai/o3", tools=[WEATHER], reasoning="low")
        chunks = list(stream)
        done = stream.completion
    assert "".join(c.text for c in chunks) == "Two calls."
    assert "".join(c.reasoning for c in chunks) == "Think about it."
    assert all(not (c.text and c.reasoning) for c in chunks)
    argument_pieces = [d.arguments for c in chunks for d in c.tool_calls if d.index == 1 and d.arguments]
    assert len(argument_pieces) > 1  # arrived as deltas
    assert done.reasoning == "Think about it."
    assert done.text == "Two calls."
    assert [(c.id, c.name, c.arguments) for c in done.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"}),
        ("call_2", "get_weather", {"city": "Rome"}),
    ]
    assert done.finish_reason == "tool_calls"
    assert done.usage.reasoning_tokens == 7
    assert done.message.provider_state is not None
    assert done.message.provider_state["openai"]["output"][0]["encrypted_content"] == "enc"
    body = bodies(fake)[0]
    assert body["stream"] is True and body["reasoning"] == {"effort": "low", "summary": "auto"}


def test_fake_stream_covers_the_sdk_event_union(fake: FakeOpenAI) -> None:
    """Every event the fake sends validates strictly as the SDK's ResponseStreamEvent union, and
    the SDK's own typed stream reads them."""
    import openai
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    union: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    answers = [
        Answer("Hi there", model="o3", tool_calls=[("c", "f", "{}")], reasoning="r", encrypted_content="e"),
        Answer(model="o3", refusal="no"),
        Answer("cut", model="o3", incomplete="max_output_tokens"),
        Answer(model="o3", failed={"code": "server_error", "message": "boom"}),
    ]
    seen: set[str] = set()
    for answer in answers:
        for frame in response_events(answer):
            event = json.loads(frame.decode().split("data: ", 1)[1])
            seen.add(union.validate_python(event).type)
    error_frame = response_events(Answer("x"), error={"code": "server_error", "message": "m", "param": None})[-1]
    seen.add(union.validate_python(json.loads(error_frame.decode().split("data: ", 1)[1])).type)
    assert seen == {
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_part.done",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.refusal.delta",
        "response.refusal.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    }
    fake.answer(answers[0])
    sdk = openai.OpenAI(api_key=KEY, base_url=fake.server.url + "/v1", max_retries=0)
    with sdk.responses.create(model="o3", input="hi", stream=True) as events:
        assert [event.type for event in events][-1] == "response.completed"
    sdk.close()


def test_structured_output_uses_text_format(fake: FakeOpenAI) -> None:
    class City(BaseModel):
        name: str

    fake.answer(Answer('{"name": "Paris"}', model="gpt-5"))
    with make_client(fake.server) as client:
        done = client.complete("a city", model="openai/gpt-5", response_format=City)
    assert done.parsed == City(name="Paris")
    text = bodies(fake)[0]["text"]
    assert text["format"]["type"] == "json_schema" and text["format"]["name"] == "City"
    assert text["format"]["strict"] is True
    assert text["format"]["schema"]["required"] == ["name"]


def test_refusal_is_content_filter_complete_and_stream(fake: FakeOpenAI) -> None:
    fake.answer(Answer(model="o3", refusal="I can't help."), Answer(model="o3", refusal="I can't help."))
    with make_client(fake.server) as client:
        done = client.complete("bad", model="openai/o3")
        stream = client.stream("bad", model="openai/o3")
        streamed = "".join(c.text for c in stream)
    assert (done.text, done.finish_reason) == ("I can't help.", "content_filter")
    assert streamed == "I can't help." and stream.completion.finish_reason == "content_filter"
    for event in [e for e in response_events(Answer(refusal="x")) if b"refusal." in e]:
        assert b"response.refusal.delta" in event or b"response.refusal.done" in event


@pytest.mark.parametrize(("reason", "finish"), [("max_output_tokens", "length"), ("content_filter", "content_filter")])
def test_incomplete_status_maps_to_finish_reason(fake: FakeOpenAI, reason: str, finish: str) -> None:
    fake.answer(Answer("cut", model="o3", incomplete=reason), Answer("cut", model="o3", incomplete=reason))
    with make_client(fake.server) as client:
        assert client.complete("x", model="openai/o3").finish_reason == finish
        stream = client.stream("x", model="openai/o3")
        list(stream)
        assert stream.completion.finish_reason == finish


def test_failed_response_raises_mapped_error(fake: FakeOpenAI) -> None:
    failure = {"code": "server_error", "message": "The model failed."}
    fake.answer(Answer(model="o3", failed=failure), Answer(model="o3", failed=failure))
    with make_client(fake.server) as client:
        with pytest.raises(ServiceUnavailableError, match="The model failed"):
            client.complete("x", model="openai/o3")
        with pytest.raises(ServiceUnavailableError, match="The model failed"):
            list(client.stream("x", model="openai/o3"))
    assert len(bodies(fake)) == 2


def test_in_stream_error_event_is_mapped(fake: FakeOpenAI) -> None:
    events = response_events(
        Answer("partial answer", model="o3"),
        error={"code": "context_length_exceeded", "message": "Too long.", "param": None},
    )
    fake.server.queue(Reply(chunks=events))
    with make_client(fake.server) as client, pytest.raises(ContextWindowExceededError, match="Too long") as caught:
        list(client.stream("x", model="openai/o3"))
    assert caught.value.partial_text == "partial answer"


def test_stream_cut_before_terminal_event(fake: FakeOpenAI) -> None:
    fake.stream_done = False
    fake.answer(Answer("half", model="o3"))
    with make_client(fake.server) as client, pytest.raises(APIConnectionError, match="final event"):
        list(client.stream("x", model="openai/o3"))


def test_http_content_filter_error(fake: FakeOpenAI) -> None:
    from tests.fakes.openai import error_reply

    fake.server.queue(error_reply(400, "Invalid prompt: flagged", code="invalid_prompt"))
    with make_client(fake.server) as client, pytest.raises(ContentFilterError):
        client.complete("x", model="openai/o3")


def test_refused_before_sending(fake: FakeOpenAI) -> None:
    with make_client(fake.server) as client:
        with pytest.raises(UnsupportedFeatureError, match="token budget"):
            client.complete("x", model="openai/o3", reasoning=2048)
        with pytest.raises(UnsupportedFeatureError, match="stop sequences"):
            client.complete("x", model="openai/gpt-4o", api="responses", stop=["END"])
        with pytest.raises(UnsupportedFeatureError, match="not a reasoning model"):
            client.complete("x", model="openai/gpt-4o", reasoning="low")
        with pytest.raises(ValueError, match="reasoning must be one of"):
            client.complete("x", model="openai/o3", reasoning="extreme")
    assert fake.server.requests == []


def test_every_effort_the_family_takes_goes_as_given(fake: FakeOpenAI) -> None:
    """GPT-6 takes "none" to "max", gpt-5 "minimal": sent as they are, on both APIs."""
    fake.answer(Answer("max"), Answer("minimal"), Answer("none"), Answer("none on chat"))
    with make_client(fake.server) as client:
        client.complete("hi", model="gpt-astra", reasoning="max")
        client.complete("hi", model="openai/gpt-5", reasoning="minimal")
        client.complete("hi", model="gpt-astra", reasoning="none")
        client.complete("hi", model="gpt-astra", reasoning="xhigh", api="chat")
    target = client.settings.aliases["gpt-astra"].split("/", 1)[1]
    assert [(body["model"], body["reasoning"]) for body in bodies(fake)] == [
        (target, {"effort": "max", "summary": "auto"}),
        ("gpt-5", {"effort": "minimal", "summary": "auto"}),
        (target, {"effort": "none", "summary": "auto"}),
    ]
    [chat] = fake.bodies("/chat/completions")
    assert (chat["model"], chat["reasoning_effort"]) == (target, "xhigh")


def test_an_effort_the_family_does_not_take_is_refused_before_sending(fake: FakeOpenAI) -> None:
    with make_client(fake.server) as client:
        with pytest.raises(UnsupportedFeatureError, match=r"reasoning='xhigh' \(it takes an effort: 'low', 'medium'"):
            client.complete("x", model="openai/o3", reasoning="xhigh")
        with pytest.raises(UnsupportedFeatureError, match="reasoning='none'"):
            client.complete("x", model="openai/gpt-5", reasoning="none", api="chat")
        with pytest.raises(UnsupportedFeatureError, match="reasoning='minimal'"):
            client.complete("x", model="gpt-luna", reasoning="minimal")
    assert fake.server.requests == []


def test_a_compatible_server_gets_any_effort_as_given(fake: FakeOpenAI) -> None:
    efforts = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
    fake.answer(*(Answer(effort) for effort in efforts))
    table = {"type": "openai", "base_url": fake.server.url + "/v1"}
    with Client(providers={"vllm": table}, max_retries=0) as client:
        for effort in efforts:
            client.complete("hi", model="vllm/my-reasoner", reasoning=effort)
    assert [body["reasoning_effort"] for body in fake.bodies("/chat/completions")] == list(efforts)


def test_chat_path_sends_reasoning_effort(fake: FakeOpenAI) -> None:
    fake.answer(Answer("ok", model="o3"))
    with make_client(fake.server, api="chat") as client:
        client.complete("x", model="openai/o3", reasoning="medium")
    assert fake.bodies("/chat/completions")[0]["reasoning_effort"] == "medium"


def test_async_complete_and_stream(fake: FakeOpenAI) -> None:
    fake.answer(Answer("one", model="o3", reasoning="r1"), Answer("two words", model="o3", reasoning="r2"))

    async def run() -> tuple[Any, Any, list[Any]]:
        async with make_client(fake.server) as client:
            done = await client.acomplete("x", model="openai/o3")
            stream = client.astream("x", model="openai/o3")
            chunks = [c async for c in stream]
            return done, stream.completion, chunks

    done, streamed, chunks = asyncio.run(run())
    assert (done.text, done.reasoning) == ("one", "r1")
    assert (streamed.text, streamed.reasoning) == ("two words", "r2")
    assert "".join(c.reasoning for c in chunks) == "r2"
    assert len(bodies(fake)) == 2
    assert json.dumps(bodies(fake)[1]["stream"]) == "true"


def test_stream_passes_over_hosted_tool_events_it_does_not_normalise(fake: FakeOpenAI) -> None:
    """Events fmclient has no field for (a hosted web search's progress) may arrive between the
    ones it reads: they are valid SDK events, and the stream's text and completion are unchanged."""
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    union: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    frames = response_events(Answer("Sunny in Oslo.", model="o3"))
    hosted = [
        {"type": f"response.web_search_call.{stage}", "item_id": "ws_1", "output_index": 0, "sequence_number": 0}
        for stage in ("in_progress", "searching", "completed")
    ]
    for event in hosted:
        assert union.validate_python(event).type == event["type"]
    extra = sse((event["type"], event) for event in hosted)
    fake.server.queue(Reply(chunks=frames[:2] + extra + frames[2:]))
    with make_client(fake.server) as client:
        stream = client.stream("weather?", model="openai/o3")
        text = "".join(chunk.text for chunk in stream)
        done = stream.completion
    assert text == "Sunny in Oslo." and done.text == "Sunny in Oslo."
    assert done.finish_reason == "stop"
    assert len(bodies(fake)) == 1
