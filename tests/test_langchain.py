"""fmclient.integrations.langchain beyond the standard suite: what goes on the wire for each LangChain
input shape (tools, tool_choice, image blocks), usage details, and opaque provider state (thinking
blocks and their signatures) surviving a round trip through LangChain messages. Real SDKs over HTTP
against the loopback fakes; the embedded model where marked slow.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from fmclient import UnsupportedFeatureError, Usage
from fmclient.integrations.langchain import (
    PROVIDER_STATE_KEY,
    ChatFMClient,
    FMClientEmbeddings,
    to_fmclient_messages,
    usage_metadata,
)
from tests.fakes import anthropic as fa
from tests.fakes.images import small_png
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer

SIGNATURE = "EqQBCkgIARABGAIiQL1fake+signature/with==padding"


def openai_chat(server: FakeServer, **kwargs: Any) -> ChatFMClient:
    return ChatFMClient(model="openai/gpt-4o", api_key="sk-fake", base_url=server.url, max_retries=0, **kwargs)


def anthropic_chat(server: FakeServer, **kwargs: Any) -> ChatFMClient:
    return ChatFMClient(
        model=f"anthropic/{fa.MODEL}", api_key="sk-ant-fake", base_url=server.url, max_retries=0, **kwargs
    )


def bodies(server: FakeServer) -> list[dict[str, Any]]:
    return [r.json() for r in server.requests]


# -- the core stays free of LangChain ---------------------------------------------------------------
def test_importing_fmclient_does_not_import_langchain() -> None:
    code = (
        "import sys, fmclient, fmclient.integrations\n"
        "print(sorted(m for m in sys.modules if m.startswith(('langchain', 'pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- tools ---------------------------------------------------------------------------------------------
class Multiply(BaseModel):
    """Multiply two integers."""

    a: int = Field(description="first factor")
    b: int = Field(description="second factor")


class Lookup(TypedDict):
    """Look a word up in the dictionary."""

    word: str


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def shout(text: str, times: int = 1) -> str:
    """Repeat text in capitals."""
    return text.upper() * times


OPENAI_DICT = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_DICT = {
    "name": "get_weather",
    "description": "Weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_every_tool_shape_reaches_the_wire_as_a_json_schema_function(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    llm = openai_chat(fake_server).bind_tools([add, Multiply, Lookup, shout, OPENAI_DICT, ANTHROPIC_DICT])
    llm.invoke("hi")
    (body,) = bodies(fake_server)
    functions = {t["function"]["name"]: t["function"] for t in body["tools"]}
    assert list(functions) == ["add", "Multiply", "Lookup", "shout", "get_time", "get_weather"]
    assert functions["add"]["parameters"]["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert functions["Multiply"]["description"] == "Multiply two integers."
    assert functions["Multiply"]["parameters"]["properties"]["a"]["description"] == "first factor"
    assert functions["Lookup"]["parameters"]["properties"] == {"word": {"type": "string"}}
    assert functions["shout"]["parameters"]["required"] == ["text"]
    assert functions["get_time"]["parameters"]["required"] == ["city"]
    assert functions["get_weather"]["parameters"]["properties"] == {"city": {"type": "string"}}


@pytest.mark.parametrize(
    ("tool_choice", "on_the_wire"),
    [
        ("auto", "auto"),
        ("any", "required"),
        ("required", "required"),
        ("none", "none"),
        ("add", {"type": "function", "function": {"name": "add"}}),
        (True, {"type": "function", "function": {"name": "add"}}),
        ({"type": "function", "function": {"name": "add"}}, {"type": "function", "function": {"name": "add"}}),
        ({"type": "tool", "name": "add"}, {"type": "function", "function": {"name": "add"}}),
    ],
)
def test_tool_choice_values(fake_server: FakeServer, tool_choice: Any, on_the_wire: Any) -> None:
    FakeOpenAI(fake_server)
    openai_chat(fake_server).bind_tools([add], tool_choice=tool_choice).invoke("add 1 and 2")
    assert bodies(fake_server)[0]["tool_choice"] == on_the_wire


def test_tool_calls_come_back_and_results_go_out(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer(tool_calls=[("call_7", "add", '{"a": 1, "b": 2}')]), Answer("3"))
    llm = openai_chat(fake_server).bind_tools([add])
    question = HumanMessage("What is 1 + 2?")
    reply = llm.invoke([question])
    assert reply.tool_calls == [{"name": "add", "args": {"a": 1, "b": 2}, "id": "call_7", "type": "tool_call"}]
    result = add.invoke(reply.tool_calls[0])
    final = llm.invoke([question, reply, result])
    assert final.content == "3"
    sent = bodies(fake_server)[1]["messages"]
    assert sent[1]["tool_calls"] == [
        {"id": "call_7", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    ]
    assert sent[2] == {"role": "tool", "tool_call_id": "call_7", "content": "3"}


def test_streamed_tool_call_assembles_from_chunks(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer(tool_calls=[("call_1", "add", '{"a": 10, "b": 32}')], args_piece=3))
    full: Any = None
    for chunk in openai_chat(fake_server).bind_tools([add]).stream("add"):
        full = chunk if full is None else full + chunk
    assert full.tool_calls == [{"name": "add", "args": {"a": 10, "b": 32}, "id": "call_1", "type": "tool_call"}]
    assert full.response_metadata["finish_reason"] == "tool_calls"


# -- structured output -------------------------------------------------------------------------------
class Person(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_methods_send_what_they_say(fake_server: FakeServer, method: str) -> None:
    fake = FakeOpenAI(fake_server)
    if method == "json_schema":
        fake.answer(Answer('{"name": "Ada", "age": 36}'))
    else:
        fake.answer(Answer(tool_calls=[("call_1", "Person", '{"name": "Ada", "age": 36}')]))
    result = openai_chat(fake_server).with_structured_output(Person, method=method).invoke("Who?")  # type: ignore[arg-type]
    assert result == Person(name="Ada", age=36)
    (body,) = bodies(fake_server)
    if method == "json_schema":
        assert body["response_format"]["type"] == "json_schema"
        assert set(body["response_format"]["json_schema"]["schema"]["properties"]) == {"name", "age"}
        assert "tools" not in body
    else:
        assert body["tool_choice"] == {"type": "function", "function": {"name": "Person"}}
        assert "response_format" not in body


def test_structured_output_include_raw_keeps_the_message(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server).answer(Answer('{"name": "Ada", "age": 36}'))
    out = openai_chat(fake_server).with_structured_output(Person, include_raw=True).invoke("Who?")
    assert isinstance(out, dict)
    assert out["parsed"] == Person(name="Ada", age=36)
    assert isinstance(out["raw"], AIMessage)
    assert out["parsing_error"] is None


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
@pytest.mark.parametrize("streaming", [False, True])
def test_structured_output_include_raw_returns_an_unparsable_reply_with_its_error(
    fake_server: FakeServer, method: str, streaming: bool
) -> None:
    # LangChain's contract: {"raw", "parsed": None, "parsing_error"}; fmclient's own check of the
    # reply used to raise StructuredOutputError out of invoke instead.
    FakeOpenAI(fake_server).answer(Answer("Sorry, I cannot answer in JSON."))
    llm = openai_chat(fake_server, streaming=streaming)
    out = llm.with_structured_output(Person, method=method, include_raw=True).invoke("Who?")  # type: ignore[arg-type]
    assert isinstance(out, dict)
    assert out["parsed"] is None
    assert isinstance(out["parsing_error"], Exception)
    assert isinstance(out["raw"], AIMessage)
    assert out["raw"].content == "Sorry, I cannot answer in JSON."
    assert out["raw"].usage_metadata is not None and out["raw"].usage_metadata["input_tokens"] == 12
    (body,) = bodies(fake_server)
    assert "fmclient_keep_unparsed" not in body  # the marker is not a provider option


async def test_structured_output_include_raw_async_unparsable_reply(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server).answer(Answer('{"name": "Ada"}'))  # valid JSON, missing a required field
    out = await openai_chat(fake_server).with_structured_output(Person, include_raw=True).ainvoke("Who?")
    assert isinstance(out, dict)
    assert out["parsed"] is None and isinstance(out["parsing_error"], Exception)
    assert out["raw"].content == '{"name": "Ada"}'


@pytest.mark.parametrize("streaming", [False, True])
def test_structured_output_include_raw_tool_arguments_that_are_not_json(
    fake_server: FakeServer, streaming: bool
) -> None:
    FakeOpenAI(fake_server).answer(Answer(tool_calls=[("call_1", "Person", "name: Ada")]))
    llm = openai_chat(fake_server, streaming=streaming)
    chain = llm.with_structured_output(Person, method="function_calling", include_raw=True)
    out = chain.invoke("Who?")
    assert isinstance(out, dict)
    assert out["parsed"] is None
    assert isinstance(out["parsing_error"], Exception)
    (invalid,) = out["raw"].invalid_tool_calls
    assert invalid["args"] == "name: Ada"


def test_structured_output_without_include_raw_still_raises(fake_server: FakeServer) -> None:
    from fmclient import StructuredOutputError

    FakeOpenAI(fake_server).answer(Answer("not JSON"))
    with pytest.raises(StructuredOutputError) as caught:
        openai_chat(fake_server).with_structured_output(Person).invoke("Who?")
    assert caught.value.completion is not None and caught.value.completion.text == "not JSON"


# -- images ---------------------------------------------------------------------------------------------
def test_image_blocks_of_every_shape_become_image_parts(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    png = small_png()
    data = base64.b64encode(png).decode()
    url = "https://example.com/cat.png"
    message = HumanMessage(
        content=[
            {"type": "text", "text": "Describe these."},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
            {"type": "image", "base64": data, "mime_type": "image/png"},
            {"type": "image", "url": url},
            {"type": "image", "source_type": "base64", "data": data, "mime_type": "image/png"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        ]
    )
    openai_chat(fake_server).invoke([message])
    content = bodies(fake_server)[0]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "Describe these."}
    data_uri = f"data:image/png;base64,{data}"
    assert [p["image_url"]["url"] for p in content[1:]] == [data_uri, data_uri, url, data_uri, data_uri]


@pytest.mark.parametrize(
    "block",
    [
        lambda v: {"type": "image_url", "image_url": {"url": v}},
        lambda v: {"type": "image_url", "image_url": v},
        lambda v: {"type": "image", "url": v},
        lambda v: {"type": "image", "source_type": "url", "url": v},
        lambda v: {"type": "image", "source": {"type": "url", "url": v}},
    ],
    ids=["image_url", "image_url-str", "image-url", "source_type-url", "anthropic-source-url"],
)
@pytest.mark.parametrize("spelling", ["{}", "file://{}"])
def test_a_local_path_in_an_image_url_is_refused_without_reading_it(
    fake_server: FakeServer, tmp_path: Any, block: Any, spelling: str
) -> None:
    # A chain that forwards user messages must not read (and upload) the server's files, nor tell
    # which exist: the refusal is the same for an existing and a missing file, and nothing is sent.
    FakeOpenAI(fake_server)
    existing = tmp_path / "secret.png"
    existing.write_bytes(small_png())
    llm = openai_chat(fake_server)
    messages = []
    for path in (existing, tmp_path / "missing.png"):
        with pytest.raises(ValueError, match="an image URL must be") as caught:
            llm.invoke([HumanMessage(content=[{"type": "text", "text": "Describe."}, block(spelling.format(path))])])
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert fake_server.requests == []


def test_unsupported_blocks_are_refused_before_any_request(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    llm = openai_chat(fake_server)
    audio = HumanMessage(content=[{"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}])
    with pytest.raises(UnsupportedFeatureError, match="'audio'"):
        llm.invoke([audio])
    image_result = ToolMessage(
        content=[{"type": "image", "base64": base64.b64encode(small_png()).decode(), "mime_type": "image/png"}],
        tool_call_id="1",
    )
    with pytest.raises(UnsupportedFeatureError, match="only text in a tool message"):
        llm.invoke([HumanMessage("hi"), AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "1"}]), image_result])
    assert fake_server.requests == []


# -- usage ----------------------------------------------------------------------------------------------
def test_usage_metadata_on_invoke_and_on_the_final_stream_chunk_only(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(
        Answer("one two three", prompt_tokens=40, completion_tokens=9, cached_tokens=32),
        Answer("one two three", prompt_tokens=40, completion_tokens=9, cached_tokens=32),
    )
    llm = openai_chat(fake_server)
    reply = llm.invoke("count")
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == 40
    assert reply.usage_metadata["output_tokens"] == 9
    assert reply.usage_metadata["total_tokens"] == 49
    assert reply.usage_metadata["input_token_details"]["cache_read"] == 32
    assert reply.response_metadata["model_name"] == "gpt-4o-2024-08-06"
    chunks = list(llm.stream("count"))
    with_usage = [c for c in chunks if c.usage_metadata]
    assert with_usage == [chunks[-1]]
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata["input_token_details"]["cache_read"] == 32  # type: ignore[index]
    assert "".join(str(c.content) for c in chunks) == "one two three"


def test_usage_details_read_the_newer_usage_fields_when_present() -> None:
    newer = SimpleNamespace(
        input_tokens=100, output_tokens=30, cached_input_tokens=20, cache_write_tokens=50, reasoning_tokens=12
    )
    meta = usage_metadata(newer)  # type: ignore[arg-type]
    assert meta["input_token_details"] == {"cache_read": 20, "cache_creation": 50}
    assert meta["output_token_details"] == {"reasoning": 12}
    assert meta["total_tokens"] == 130
    older = SimpleNamespace(input_tokens=100, output_tokens=30, cached_input_tokens=20)
    meta = usage_metadata(older)  # type: ignore[arg-type]
    assert meta["input_token_details"] == {"cache_read": 20}
    assert "output_token_details" not in meta
    # The real Usage of this fmclient, whichever fields it has.
    assert usage_metadata(Usage(5, 6, 1))["total_tokens"] == 11


# -- opaque provider state round-trips ---------------------------------------------------------------
@pytest.mark.parametrize("output_version", ["v0", "v1"])
def test_thinking_and_signature_round_trip_through_langchain_messages(
    fake_server: FakeServer, output_version: str
) -> None:
    thinking = fa.thinking_block("The user greets me; answer warmly.", SIGNATURE)
    fake_server.queue(
        fa.message_reply([thinking, fa.text_block("Hello!")]),
        fa.message_reply("Glad to hear it."),
    )
    llm = anthropic_chat(fake_server, max_tokens=64, output_version=output_version)
    first = llm.invoke([HumanMessage("Hi")])
    assert first.text == "Hello!"
    state = first.additional_kwargs[PROVIDER_STATE_KEY]
    assert json.loads(json.dumps(state)) == state  # plain JSON: checkpointers and caches can store it
    # The message survives LangChain's own serialisation before being sent back.
    restored = AIMessage.model_validate_json(first.model_dump_json())
    llm.invoke([HumanMessage("Hi"), restored, HumanMessage("Well, thanks.")])
    replayed = bodies(fake_server)[1]["messages"][1]
    assert replayed["role"] == "assistant"
    assert replayed["content"][0] == thinking
    assert replayed["content"][1]["text"] == "Hello!"


def test_streamed_thinking_state_round_trips_too(fake_server: FakeServer) -> None:
    thinking = fa.thinking_block("Short greeting.", SIGNATURE)
    fake_server.queue(
        fa.stream_reply(fa.stream_events([thinking, fa.text_block("Hello there!")])),
        fa.message_reply("Fine."),
    )
    llm = anthropic_chat(fake_server, max_tokens=64)
    full: Any = None
    for chunk in llm.stream([HumanMessage("Hi")]):
        full = chunk if full is None else full + chunk
    assert full.content == "Hello there!"
    assert PROVIDER_STATE_KEY in full.additional_kwargs
    llm.invoke([HumanMessage("Hi"), full, HumanMessage("And you?")])
    replayed = bodies(fake_server)[1]["messages"][1]["content"]
    assert replayed[0] == thinking


def test_binary_provider_state_is_carried_as_json_and_restored() -> None:
    state = {"bedrock": {"reasoning": [{"reasoningContent": {"redactedContent": b"\x00\x01opaque"}}]}}
    from fmclient import Completion, Message

    completion = Completion(
        text="ok",
        finish_reason="stop",
        usage=Usage(),
        model="m",
        provider="bedrock",
        message=Message(role="assistant", content="ok", provider_state=state),
    )
    from fmclient.integrations.langchain import to_ai_message

    message = to_ai_message(completion)
    carried = message.additional_kwargs[PROVIDER_STATE_KEY]
    json.dumps(carried)
    (back,) = to_fmclient_messages([message])
    assert back.provider_state == state


# -- conversion details --------------------------------------------------------------------------
def test_messages_translate_role_by_role() -> None:
    messages = to_fmclient_messages(
        [
            SystemMessage("Be brief."),
            HumanMessage("hello", name="ada"),
            AIMessage(
                [{"type": "text", "text": "some text"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                tool_calls=[{"name": "f", "args": {"x": 1}, "id": "t1", "type": "tool_call"}],
            ),
            ToolMessage("42", tool_call_id="t1", name="f"),
        ]
    )
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[1].name == "ada"
    assert messages[2].text == "some text"
    assert [(c.id, c.name, c.arguments) for c in messages[2].tool_calls] == [("t1", "f", {"x": 1})]
    assert (messages[3].tool_call_id, messages[3].content) == ("t1", "42")


def test_call_settings_and_provider_options_reach_the_wire(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    llm = openai_chat(fake_server, temperature=0.2, max_tokens=33, top_p=0.9, model_kwargs={"seed": 7})
    llm.invoke("hi", stop=["END"], user="u-1")
    (body,) = bodies(fake_server)
    assert (body["temperature"], body["top_p"], body["seed"], body["stop"], body["user"]) == (
        0.2,
        0.9,
        7,
        ["END"],
        "u-1",
    )
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 33


def test_ls_params_name_the_resolved_provider() -> None:
    llm = ChatFMClient(model="claude-haiku", temperature=0.5, max_tokens=10, stop=["x"])
    assert llm._get_ls_params() == {
        "ls_provider": "anthropic",
        "ls_model_name": "claude-haiku",
        "ls_model_type": "chat",
        "ls_temperature": 0.5,
        "ls_max_tokens": 10,
        "ls_stop": ["x"],
    }
    assert llm._get_ls_params(model="openai/gpt-4o")["ls_provider"] == "openai"


def test_an_explicit_client_is_used_as_is(fake_server: FakeServer) -> None:
    from fmclient import Client

    FakeOpenAI(fake_server)
    client = Client(providers={"openai": {"base_url": fake_server.url, "api_key": "k"}}, model="openai/gpt-4o-mini")
    assert ChatFMClient(client=client).invoke("hi").content == "ok"
    assert bodies(fake_server)[0]["model"] == "gpt-4o-mini"
    vectors = FMClientEmbeddings(client=client, model="text-embedding-3-small").embed_documents(["ab", "c"])
    assert vectors == [[2.0, 195.0, 0.5], [1.0, 99.0, 0.5]]


def test_a_client_and_its_own_settings_are_not_mixed() -> None:
    from fmclient import Client

    with pytest.raises(ValueError, match="api_key cannot be combined with client="):
        ChatFMClient(client=Client(), api_key="k")
    with pytest.raises(TypeError, match=r"fmclient\.Client"):
        FMClientEmbeddings(client=object())


async def test_async_embeddings_keep_input_order(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    embeddings = FMClientEmbeddings(model="text-embedding-3-small", api_key="k", base_url=fake_server.url)
    assert await embeddings.aembed_documents(["ab", "c"]) == [[2.0, 195.0, 0.5], [1.0, 99.0, 0.5]]
    assert await embeddings.aembed_documents([]) == []
    assert len(fake_server.requests) == 1


# -- the embedded model: structured output with a schema a 135M model can finish ---------------------
class Verdict(BaseModel):
    answer: str = Field(json_schema_extra={"enum": ["yes", "no"]})


@pytest.mark.slow
def test_structured_output_on_the_embedded_model() -> None:
    llm = ChatFMClient(model="llama-local", max_tokens=24, temperature=0)
    result = llm.with_structured_output(Verdict).invoke("Is Paris in France? Answer yes or no.")
    assert isinstance(result, Verdict)
    assert result.answer in ("yes", "no")


def test_streaming_flag_makes_invoke_stream(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server).answer(Answer("streamed all the way", completion_tokens=4))
    tokens: list[str] = []

    from langchain_core.callbacks import BaseCallbackHandler

    class Collect(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            tokens.append(token)

    reply = openai_chat(fake_server, streaming=True).invoke("go", config={"callbacks": [Collect()]})
    assert reply.content == "streamed all the way"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 4
    assert bodies(fake_server)[0]["stream"] is True
    assert [t for t in tokens if t] == ["streamed ", "all ", "the ", "way"]  # as the fake split them


def test_the_readme_example_runs_on_the_mock(fmclient_mock: Any) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## LangChain") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    fmclient_mock.add_tool_call("get_weather", {"city": "Oslo"})
    fmclient_mock.add_reply('{"name": "Eiffel Tower", "country": "France"}')
    fmclient_mock.add_embeddings([[0.1, 0.2], [0.3, 0.4]])
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["reply"].tool_calls[0]["args"] == {"city": "Oslo"}
    assert scope["city"].country == "France"
    assert scope["vectors"] == [[0.1, 0.2], [0.3, 0.4]]
    first, second = fmclient_mock.requests[:2]
    assert first.tool_choice == "required" and first.tools[0].name == "get_weather"
    assert second.response_format is not None and second.response_format.name == "City"
