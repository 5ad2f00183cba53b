"""The Bedrock adapter: pure translation functions, then real boto3 against a fake Bedrock Runtime.

The loopback tests point boto3 at :class:`tests.fakes.bedrock.FakeBedrock` through the endpoint
override, with dummy credentials: boto3 signs real SigV4 requests, serialises them, and parses
real JSON / event-stream responses (including frames split across HTTP chunks).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fmclient.client import Client
from fmclient.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFilterError,
    ContextWindowExceededError,
    FMClientError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedFeatureError,
)
from fmclient.providers.base import ProviderSettings
from fmclient.providers.bedrock import (
    BedrockProvider,
    ConverseStreamParser,
    TitanStreamParser,
    build_converse_params,
    build_titan_embedding_body,
    build_titan_text_body,
    closed_schema,
    converse_finish_reason,
    map_error,
    model_family,
    parse_converse_response,
    render_titan_prompt,
    titan_finish_reason,
    uses_native_structured_output,
)
from fmclient.types import (
    EmbedRequest,
    ImagePart,
    Message,
    Request,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)
from tests.fakes.bedrock import (
    FakeBedrock,
    converse_reply,
    converse_stream_frames,
    converse_stream_reply,
    converse_usage,
    embedding_for,
    encode_message,
    error_reply,
    event_frame,
    exception_frame,
    stream_reply,
    titan_stream_frames,
    titan_text_reply,
)
from tests.fakes.server import Reply

TITAN = "amazon.titan-text-express-v1"
EMBED_V2 = "amazon.titan-embed-text-v2:0"
EMBED_V1 = "amazon.titan-embed-text-v1"
CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
NOVA = "us.amazon.nova-pro-v1:0"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def req(model: str = CLAUDE, *messages: Message, **kwargs: Any) -> Request:
    return Request(model=model, messages=messages or (Message("user", "hi"),), **kwargs)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture(scope="module")
def bedrock_server() -> Iterator[FakeBedrock]:
    # One server for the module (stopping one costs its 0.5 s poll interval); reset per test.
    with FakeBedrock() as server:
        yield server


@pytest.fixture
def own_fake(aws_env: None) -> Iterator[FakeBedrock]:
    """A server of the test's own, for counts that a previous test's stragglers must not touch
    (an embed that fails fast leaves its in-flight siblings to finish in the background)."""
    with FakeBedrock() as server:
        yield server


@pytest.fixture
def fake(bedrock_server: FakeBedrock, aws_env: None) -> FakeBedrock:
    bedrock_server.reset()
    return bedrock_server


@pytest.fixture(scope="module")
def shared_provider(bedrock_server: FakeBedrock) -> Iterator[BedrockProvider]:
    # Building a boto3 client takes ~0.1 s; tests that need no settings of their own share one,
    # built with the dummy credentials below (boto3 keeps them in the client).
    adapter = BedrockProvider(ProviderSettings(name="bedrock", type="bedrock", base_url=bedrock_server.url))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
        patch.setenv("AWS_REGION", "us-east-1")
        adapter.check_ready(CLAUDE)
    yield adapter
    adapter.close()


@pytest.fixture
def provider(shared_provider: BedrockProvider, fake: FakeBedrock) -> BedrockProvider:
    return shared_provider


def make_client(fake: FakeBedrock, **provider_table: Any) -> Client:
    table = {"base_url": fake.url, "region": "us-east-1", **provider_table}
    return Client(providers={"bedrock": table}, max_retries=2)


# == pure translation ===========================================================================
def test_model_families_and_native_structured_output() -> None:
    assert model_family(TITAN) == "titan-text"
    assert model_family("amazon.titan-tg1-large") == "titan-text"
    assert model_family(EMBED_V2) == "titan-embed"
    assert model_family("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v1") == "titan-embed"
    assert model_family("cohere.embed-english-v3") == "embed"
    assert model_family(CLAUDE) == "converse"
    assert model_family("us.meta.llama3-2-90b-instruct-v1:0") == "converse"
    assert uses_native_structured_output(CLAUDE)
    assert uses_native_structured_output("us.anthropic.claude-haiku-4-5-20251001-v1:0")
    assert uses_native_structured_output("global.anthropic.claude-opus-4-6-v1")
    assert not uses_native_structured_output("anthropic.claude-sonnet-4-20250514-v1:0")
    assert not uses_native_structured_output("anthropic.claude-opus-4-1-20250805-v1:0")
    assert not uses_native_structured_output("anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert not uses_native_structured_output(LLAMA)


def test_titan_prompt_renders_system_and_history() -> None:
    messages = (
        Message("user", "What is 2+2?"),
        Message("assistant", "4."),
        Message("user", "And times 3?"),
    )
    assert render_titan_prompt("You are terse.", messages) == (
        "You are terse.\n\nUser: What is 2+2?\nBot: 4.\nUser: And times 3?\nBot:"
    )
    # A trailing assistant turn is a prefix for the model to continue.
    assert render_titan_prompt(None, (Message("user", "Hi"), Message("assistant", "Sure,"))) == "User: Hi\nBot: Sure,"


def test_titan_body_maps_parameters_and_splits_provider_options() -> None:
    request = req(
        TITAN,
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=("User:",),
        provider_options={"textGenerationConfig": {"maxTokenCount": 50}, "guardrailIdentifier": "gr1"},
    )
    body, arguments = build_titan_text_body(request)
    assert body == {
        "inputText": "User: hi\nBot:",
        "textGenerationConfig": {"maxTokenCount": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["User:"]},
    }
    assert arguments == {"guardrailIdentifier": "gr1"}
    # an option may repeat what max_tokens= set, not change it: one of the two would be dropped
    changed = dataclasses.replace(request, provider_options={"textGenerationConfig": {"maxTokenCount": 60}})
    with pytest.raises(BadRequestError, match=r"textGenerationConfig\.maxTokenCount=60 conflicts with 50"):
        build_titan_text_body(changed)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"stop": ("STOP",)}, "stop sequence"),
        ({"stop": ("|", "User:")}, "at most one"),
        ({"tools": (WEATHER,)}, "tools"),
        ({"response_format": ResponseFormat(name="r", schema={"type": "object"})}, "structured output"),
    ],
)
def test_titan_body_refuses_what_titan_cannot_do(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=fragment):
        build_titan_text_body(req(TITAN, **kwargs))
    build_titan_text_body(req(TITAN, stop=("|||",)))  # a run of pipes is accepted


def test_titan_finish_reasons() -> None:
    assert titan_finish_reason("FINISH") == "stop"
    assert titan_finish_reason("FINISHED") == "stop"
    assert titan_finish_reason("STOP_CRITERIA_MET") == "stop"
    assert titan_finish_reason("LENGTH") == "length"
    assert titan_finish_reason("CONTENT_FILTERED") == "content_filter"
    assert titan_finish_reason("RAG_QUERY_WHEN_RAG_DISABLED") == "other"
    assert titan_finish_reason(None) == "other"


def test_converse_finish_reasons() -> None:
    table = {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "tool_use": "tool_calls",
        "guardrail_intervened": "content_filter",
        "content_filtered": "content_filter",
        "malformed_tool_use": "other",
    }
    for wire, expected in table.items():
        assert converse_finish_reason(wire) == expected
    assert converse_finish_reason("tool_use", structured_tool=True) == "stop"


def test_converse_params_tools_history_and_images() -> None:
    request = Request(
        model=CLAUDE,
        system="Be brief.",
        messages=(
            Message(
                "user",
                (TextPart("What is in this picture, and the weather?"), ImagePart(data=PNG, media_type="image/png")),
            ),
            Message("assistant", "Let me check.", tool_calls=(ToolCall("tu_1", "get_weather", {"city": "Paris"}),)),
            Message("tool", '{"temp": 21}', tool_call_id="tu_1", name="get_weather"),
            Message("user", "Thanks, and tomorrow?"),
        ),
        max_tokens=100,
        temperature=0.5,
        top_p=0.8,
        stop=("END",),
        tools=(WEATHER,),
        tool_choice="required",
        provider_options={"additionalModelRequestFields": {"top_k": 40}, "inferenceConfig": {"maxTokens": 100}},
    )
    with pytest.raises(BadRequestError, match=r"inferenceConfig\.maxTokens=200 conflicts with 100"):
        build_converse_params(dataclasses.replace(request, provider_options={"inferenceConfig": {"maxTokens": 200}}))
    params = build_converse_params(request)
    assert params["modelId"] == CLAUDE
    assert params["system"] == [{"text": "Be brief."}]
    assert params["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.5, "topP": 0.8, "stopSequences": ["END"]}
    assert params["additionalModelRequestFields"] == {"top_k": 40}
    assert params["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "inputSchema": {"json": dict(WEATHER.parameters)},
                }
            }
        ],
        "toolChoice": {"any": {}},
    }
    assert params["messages"] == [
        {
            "role": "user",
            "content": [
                {"text": "What is in this picture, and the weather?"},
                {"image": {"format": "png", "source": {"bytes": PNG}}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tu_1", "name": "get_weather", "input": {"city": "Paris"}}},
            ],
        },
        # The tool result and the next user text share one user turn (roles must alternate).
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "tu_1", "content": [{"text": '{"temp": 21}'}]}},
                {"text": "Thanks, and tomorrow?"},
            ],
        },
    ]


def test_converse_tool_choice_variants() -> None:
    assert build_converse_params(req(tools=(WEATHER,), tool_choice="auto"))["toolConfig"]["toolChoice"] == {"auto": {}}
    named = build_converse_params(req(tools=(WEATHER,), tool_choice="get_weather"))
    assert named["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert "toolChoice" not in build_converse_params(req(tools=(WEATHER,)))["toolConfig"]
    # "none": the tools are left out, so the model cannot call one...
    assert "toolConfig" not in build_converse_params(req(tools=(WEATHER,), tool_choice="none"))
    # ...which Bedrock refuses once the history holds tool blocks: refused up front instead.
    history = (
        Message("user", "weather?"),
        Message("assistant", "", tool_calls=(ToolCall("tu_1", "get_weather", {"city": "Oslo"}),)),
        Message("tool", "cold", tool_call_id="tu_1"),
    )
    with pytest.raises(UnsupportedFeatureError, match="tool_choice='none'"):
        build_converse_params(req(CLAUDE, *history, tools=(WEATHER,), tool_choice="none"))


def test_converse_images_s3_accepted_http_refused() -> None:
    s3 = build_converse_params(req(CLAUDE, Message("user", (ImagePart(url="s3://bucket/cat.jpg"),))))
    assert s3["messages"][0]["content"] == [
        {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.jpg"}}}}
    ]
    with pytest.raises(UnsupportedFeatureError, match="cannot fetch image URLs"):
        build_converse_params(
            req(CLAUDE, Message("user", (ImagePart(url="https://x.test/cat.png", media_type="image/png"),)))
        )
    with pytest.raises(UnsupportedFeatureError, match="PNG, JPEG"):
        build_converse_params(req(CLAUDE, Message("user", (ImagePart(data=b"BM..", media_type="image/bmp"),))))


def test_converse_structured_output_native_and_forced_tool() -> None:
    fmt = ResponseFormat(name="Person", schema={"type": "object", "properties": {"name": {"type": "string"}}})
    native = build_converse_params(req(CLAUDE, response_format=fmt))
    assert native["outputConfig"]["textFormat"]["type"] == "json_schema"
    # Sent as a JSON string, every object closed (constrained decoding requires it).
    sent = json.loads(native["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"])
    assert sent == {**fmt.schema, "additionalProperties": False}
    assert "toolConfig" not in native

    forced = build_converse_params(req(LLAMA, response_format=fmt))
    assert "outputConfig" not in forced
    assert forced["toolConfig"]["toolChoice"] == {"tool": {"name": "Person"}}
    assert forced["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": fmt.schema}
    # The override picks the form; "structured_output" never reaches Bedrock.
    overridden = build_converse_params(
        req(LLAMA, response_format=fmt, provider_options={"structured_output": "native"})
    )
    assert "outputConfig" in overridden and "structured_output" not in overridden
    with pytest.raises(UnsupportedFeatureError, match="forced tool"):
        build_converse_params(req(LLAMA, response_format=fmt, tools=(WEATHER,)))


def test_closed_schema_closes_every_object_it_does_not_leave_open() -> None:
    schema = {
        "type": "object",
        "properties": {
            "properties": {"type": "string"},  # a field named like the keyword stays a field
            "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "extra": {"type": "object", "additionalProperties": True},
            "either": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}]},
        },
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "default": {"type": "object"},  # a value, not a schema: untouched
    }
    closed = closed_schema(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["properties"] == {"type": "string"}
    assert closed["properties"]["tags"]["items"]["additionalProperties"] is False
    assert closed["properties"]["extra"]["additionalProperties"] is True
    assert closed["$defs"]["Point"]["additionalProperties"] is False
    assert closed["default"] == {"type": "object"}
    assert "additionalProperties" not in schema  # the caller's schema is not modified


def test_converse_temperature_range_checked_before_sending() -> None:
    with pytest.raises(BadRequestError, match=r"0\.\.1"):
        build_converse_params(req(temperature=1.5))


def test_parse_converse_usage_and_reasoning_round_trip() -> None:
    response = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                    {"text": "Calling."},
                    {"toolUse": {"toolUseId": "tu_9", "name": "get_weather", "input": {"city": "Rome"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": converse_usage(input_tokens=10, output_tokens=4, cache_read=100, cache_write=20),
    }
    completion = parse_converse_response(response, provider="bedrock", model=CLAUDE)
    assert completion.text == "Calling."
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == [ToolCall("tu_9", "get_weather", {"city": "Rome"})]
    assert (completion.usage.input_tokens, completion.usage.cached_input_tokens) == (130, 100)
    assert completion.usage.output_tokens == 4
    # The reasoning block (with its signature) goes back on the next turn, before the text.
    params = build_converse_params(
        req(
            CLAUDE,
            Message("user", "hi"),
            completion.message,
            Message("tool", "hot", tool_call_id="tu_9"),
            tools=(WEATHER,),
        )
    )
    assert params["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}
    }


def test_stream_parsers_require_their_final_events() -> None:
    parser = ConverseStreamParser(provider="bedrock", model=CLAUDE)
    parser.feed({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "hi"}}})
    parser.feed({"messageStop": {"stopReason": "end_turn"}})
    with pytest.raises(APIConnectionError, match="metadata"):
        parser.finish()
    titan = TitanStreamParser(provider="bedrock", model=TITAN)
    encoded = json.dumps({"outputText": "  Hello", "completionReason": None}).encode()
    assert [c.text for c in titan.feed({"chunk": {"bytes": encoded}})] == ["Hello"]
    with pytest.raises(APIConnectionError, match="completionReason"):
        titan.finish()


def test_stream_parser_keeps_reasoning_for_the_next_turn() -> None:
    parser = ConverseStreamParser(provider="bedrock", model=CLAUDE)
    for delta in ({"text": "Let me "}, {"text": "think."}, {"signature": "sig-1"}):
        parser.feed({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": delta}}})
    assert parser.feed({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "Answer"}}})[0].text == "Answer"
    parser.feed({"messageStop": {"stopReason": "end_turn"}})
    parser.feed({"metadata": {"usage": converse_usage(3, 2)}})
    final = parser.finish()
    assert final.provider_state == {
        "bedrock": {
            "reasoning": [{"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": "sig-1"}}}]
        }
    }


def test_stream_parser_keeps_reasoning_beside_a_structured_tool_as_the_whole_answer_does() -> None:
    """Thinking beside the forced structured-output tool (thinking from additionalModelRequestFields):
    parse_converse_response keeps it as Completion.reasoning, so a stream must deliver it too."""
    whole = parse_converse_response(
        {
            "output": {
                "message": {
                    "content": [
                        {"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": "s"}}},
                        {"toolUse": {"toolUseId": "t1", "name": "answer", "input": {"n": 3}}},
                    ]
                }
            },
            "stopReason": "tool_use",
        },
        provider="bedrock",
        model=CLAUDE,
        structured_tool="answer",
    )
    parser = ConverseStreamParser(provider="bedrock", model=CLAUDE, structured_tool="answer")
    chunks = []
    for delta in ({"text": "Let me "}, {"text": "think."}):
        chunks += parser.feed({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": delta}}})
    assert "".join(chunk.reasoning for chunk in chunks) == whole.reasoning == "Let me think."


def test_embedding_body_options() -> None:
    assert build_titan_embedding_body("x", EMBED_V2, {"dimensions": 256, "normalize": False}) == {
        "inputText": "x",
        "dimensions": 256,
        "normalize": False,
    }
    with pytest.raises(UnsupportedFeatureError, match="v1 takes no options"):
        build_titan_embedding_body("x", EMBED_V1, {"dimensions": 256})


def test_fake_event_stream_frames_decode_with_botocore() -> None:
    from botocore.eventstream import EventStreamBuffer

    frame = event_frame("messageStart", {"role": "assistant"})
    buffer = EventStreamBuffer()
    buffer.add_data(frame[:5])
    assert list(buffer) == []  # a partial frame waits for the rest
    buffer.add_data(frame[5:] + exception_frame("throttlingException", "slow"))
    first, second = list(buffer)
    assert first.headers[":event-type"] == "messageStart"
    assert json.loads(first.payload) == {"role": "assistant"}
    assert second.headers[":message-type"] == "exception"
    corrupt = bytearray(encode_message({":event-type": "x"}, b"{}"))
    corrupt[-1] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupt))
    with pytest.raises(Exception, match=r"[Cc]hecksum"):
        list(buffer)


def test_map_error_of_botocore_and_urllib3_exceptions() -> None:
    from botocore import exceptions as bex
    from urllib3 import exceptions as u3

    assert isinstance(map_error(bex.EndpointConnectionError(endpoint_url="http://x")), APIConnectionError)
    assert isinstance(map_error(bex.ConnectionClosedError(endpoint_url="http://x")), APIConnectionError)
    assert isinstance(map_error(bex.ReadTimeoutError(endpoint_url="http://x")), RequestTimeoutError)
    assert isinstance(map_error(u3.ProtocolError("Response ended prematurely")), APIConnectionError)
    assert isinstance(map_error(u3.ReadTimeoutError(None, "/", "read timed out")), RequestTimeoutError)
    assert isinstance(map_error(bex.NoCredentialsError()), ConfigurationError)
    assert isinstance(map_error(json.JSONDecodeError("x", "doc", 0)), ServiceUnavailableError)
    stream_error = bex.EventStreamError(
        {"Error": {"Code": "modelTimeoutException", "Message": "slow"}}, "ConverseStream"
    )
    mapped = map_error(stream_error, "bedrock", CLAUDE)
    assert isinstance(mapped, RequestTimeoutError) and mapped.status_code == 408


# == over loopback: real boto3, fake Bedrock ==================================================
def test_titan_text_complete_via_client(fake: FakeBedrock) -> None:
    fake.queue(titan_text_reply("\nParis is the capital.", reason="FINISH", input_tokens=12, output_tokens=6))
    with make_client(fake) as client:
        reply = client.complete(
            "Capital of France?", model=f"bedrock/{TITAN}", system="Answer briefly.", max_tokens=64, temperature=0.1
        )
    assert reply.text == "Paris is the capital."
    assert reply.finish_reason == "stop"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (12, 6)
    assert (reply.provider, reply.model) == ("bedrock", TITAN)
    [request] = fake.requests
    assert fake.route(request) == (TITAN, "InvokeModel")
    # Real SigV4 from boto3, scoped to the region and Bedrock's signing name.
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDFAKEFAKEFAKE/")
    assert "/us-east-1/bedrock/aws4_request" in request.headers["authorization"]
    assert request.json() == {
        "inputText": "Answer briefly.\n\nUser: Capital of France?\nBot:",
        "textGenerationConfig": {"maxTokenCount": 64, "temperature": 0.1},
    }


def test_titan_multi_turn_rendered_in_body(fake: FakeBedrock) -> None:
    with make_client(fake) as client:
        reply = client.complete(
            [
                {"role": "system", "content": "You are a calculator."},
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "times 3?"},
            ],
            model=f"bedrock/{TITAN}",
            stop="User:",
        )
    assert reply.text == "You said: times 3?"  # the fake echoes the last "User:" line
    assert fake.bodies() == [
        {
            "inputText": "You are a calculator.\n\nUser: 2+2?\nBot: 4\nUser: times 3?\nBot:",
            "textGenerationConfig": {"stopSequences": ["User:"]},
        }
    ]


def test_titan_length_limited_and_filtered(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.queue(titan_text_reply(" It was a dark and", reason="LENGTH", output_tokens=5))
    fake.queue(titan_text_reply("", reason="CONTENT_FILTERED", output_tokens=0))
    fake.queue(stream_reply(titan_stream_frames([" It", " was"], reason="LENGTH")))
    cut = provider.complete(req(TITAN, max_tokens=5))
    assert (cut.text, cut.finish_reason, cut.usage.output_tokens) == ("It was a dark and", "length", 5)
    assert provider.complete(req(TITAN)).finish_reason == "content_filter"
    streamed = list(provider.stream(req(TITAN, max_tokens=2)))
    assert streamed[-1].finish_reason == "length"
    assert fake.bodies()[0]["textGenerationConfig"] == {"maxTokenCount": 5}


def test_titan_stream_via_client_with_frames_split_across_chunks(fake: FakeBedrock) -> None:
    frames = titan_stream_frames(["\n", "Hello", " there", "!"], input_tokens=9, output_tokens=4)
    fake.queue(stream_reply(frames, piece_size=7))
    with make_client(fake) as client:
        stream = client.stream("Say hello", model=f"bedrock/{TITAN}")
        chunks = list(stream)
        completion = stream.completion
    assert [c.text for c in chunks if c.text] == ["Hello", " there", "!"]
    assert chunks[-1].finish_reason == "stop"
    assert completion.text == "Hello there!"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (9, 4)
    [request] = fake.requests
    assert fake.route(request) == (TITAN, "InvokeModelWithResponseStream")
    assert request.json() == {"inputText": "User: Say hello\nBot:"}


def test_titan_refusals_send_nothing(fake: FakeBedrock, provider: BedrockProvider) -> None:
    with make_client(fake) as client:
        with pytest.raises(UnsupportedFeatureError, match="tools"):
            client.complete("weather?", model=f"bedrock/{TITAN}", tools=[WEATHER])
        image = [{"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image", "image": PNG}]}]
        with pytest.raises(UnsupportedFeatureError, match="image"):
            client.complete(image, model=f"bedrock/{TITAN}")
        with pytest.raises(UnsupportedFeatureError, match="structured output"):
            client.complete("json", model=f"bedrock/{TITAN}", response_format={"type": "object"})
        with pytest.raises(UnsupportedFeatureError, match="stop sequence"):
            client.complete("hi", model=f"bedrock/{TITAN}", stop="Human:")
        with pytest.raises(UnsupportedFeatureError, match="more than 1 stop"):
            client.complete("hi", model=f"bedrock/{TITAN}", stop=["|", "User:"])
        with pytest.raises(UnsupportedFeatureError, match="chat"):
            client.complete("hi", model=f"bedrock/{EMBED_V2}")
    # The adapter refuses too when called directly, without the client's capability check.
    with pytest.raises(UnsupportedFeatureError):
        provider.complete(req(TITAN, tools=(WEATHER,)))
    with pytest.raises(UnsupportedFeatureError):
        provider.stream(req(TITAN, Message("user", (ImagePart(data=PNG, media_type="image/png"),))))
    assert fake.requests == []


def test_titan_through_converse_when_asked(fake: FakeBedrock, provider: BedrockProvider) -> None:
    reply = provider.complete(req(TITAN, provider_options={"api": "converse"}))
    assert reply.text == "You said: hi"
    [request] = fake.requests
    assert fake.route(request) == (TITAN, "Converse")
    assert "api" not in request.json()


def test_embeddings_fan_out_concurrently_in_order(own_fake: FakeBedrock) -> None:
    fake = own_fake
    texts = [f"text number {i}" for i in range(16)]
    fake.delay = 0.05
    with make_client(fake, max_workers=8) as client:
        client.provider("bedrock").check_ready(EMBED_V2)  # builds the boto3 client outside the timing
        started = time.monotonic()
        result = client.embed(texts, model=f"bedrock/{EMBED_V2}", dimensions=256, normalize=True)
        elapsed = time.monotonic() - started
    assert result.vectors == [embedding_for(t, 256, True) for t in texts]
    assert result.usage.input_tokens == 3 * 16  # the fake counts words; usage is summed
    assert (result.provider, result.model) == ("bedrock", EMBED_V2)
    assert len(fake.requests) == 16
    assert 1 < fake.max_in_flight <= 8
    assert elapsed < 16 * 0.05 * 0.75, elapsed  # under the sequential sum (0.8 s); margin for a loaded CI box
    assert all(body == {"inputText": body["inputText"], "dimensions": 256, "normalize": True} for body in fake.bodies())
    assert sorted(b["inputText"] for b in fake.bodies()) == sorted(texts)


def test_embeddings_v1_and_errors(fake: FakeBedrock, provider: BedrockProvider) -> None:
    result = provider.embed(EmbedRequest(model=EMBED_V1, texts=("hello world",)))
    assert len(result.vectors[0]) == 1536
    assert fake.bodies() == [{"inputText": "hello world"}]
    with pytest.raises(UnsupportedFeatureError, match="v1 takes no options"):
        provider.embed(EmbedRequest(model=EMBED_V1, texts=("x",), provider_options={"dimensions": 256}))
    with pytest.raises(UnsupportedFeatureError, match="Titan text embedding"):
        provider.embed(EmbedRequest(model="cohere.embed-english-v3", texts=("x",)))
    assert len(fake.requests) == 1
    # One failed text fails the batch with the mapped error.
    fake.queue(error_reply("ThrottlingException", "Too many requests"))
    with pytest.raises(RateLimitError):
        provider.embed(EmbedRequest(model=EMBED_V2, texts=("a", "b", "c")))


async def test_aembed_runs_concurrently_without_blocking_the_loop(own_fake: FakeBedrock) -> None:
    fake = own_fake
    texts = [f"t{i}" for i in range(8)]
    fake.delay = 0.1  # long enough that load on a 2-core CI box cannot serialise the calls
    client = make_client(fake, max_workers=4)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    result = await client.aembed(texts, model=f"bedrock/{EMBED_V2}")
    stop.set()
    await task
    await client.aclose()
    assert result.vectors == [embedding_for(t, 1024, True) for t in texts]
    assert 1 < fake.max_in_flight <= 4
    assert ticks >= 5  # the loop kept running while the requests were in flight


def test_converse_tool_round_trip(fake: FakeBedrock) -> None:
    fake.queue(
        converse_reply(
            text="Checking.",
            tool_uses=[{"toolUseId": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}}],
            stop_reason="tool_use",
            usage=converse_usage(input_tokens=30, output_tokens=12),
        ),
        converse_reply(text="It is 21 degrees in Paris.", usage=converse_usage(input_tokens=60, output_tokens=9)),
    )
    with make_client(fake) as client:
        first = client.complete("Weather in Paris?", model=f"bedrock/{CLAUDE}", tools=[WEATHER], tool_choice="auto")
        assert first.finish_reason == "tool_calls"
        assert first.tool_calls == [ToolCall("tooluse_abc", "get_weather", {"city": "Paris"})]
        history = [
            Message("user", "Weather in Paris?"),
            first.message,
            Message.tool_result("tooluse_abc", {"temp_c": 21}),
        ]
        second = client.complete(history, model=f"bedrock/{CLAUDE}", tools=[WEATHER])
    assert second.text == "It is 21 degrees in Paris."
    assert second.finish_reason == "stop"
    first_body, second_body = fake.bodies("Converse")
    assert first_body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "inputSchema": {"json": dict(WEATHER.parameters)},
                }
            }
        ],
        "toolChoice": {"auto": {}},
    }
    assert second_body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"text": "Checking."},
                {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}}},
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "tooluse_abc", "content": [{"text": '{"temp_c": 21}'}]}}],
        },
    ]


def test_converse_image_bytes_sent_base64(fake: FakeBedrock, provider: BedrockProvider) -> None:
    provider.complete(
        req(CLAUDE, Message("user", (TextPart("What is this?"), ImagePart(data=PNG, media_type="image/png"))))
    )
    [body] = fake.bodies()
    image = body["messages"][0]["content"][1]["image"]
    assert image["format"] == "png"
    assert base64.b64decode(image["source"]["bytes"]) == PNG


def test_converse_stream_text_tool_use_and_usage(fake: FakeBedrock) -> None:
    fake.queue(
        converse_stream_reply(
            text_pieces=["Let me ", "look."],
            tool_uses=[
                {"toolUseId": "tooluse_1", "name": "get_weather", "fragments": ['{"ci', 'ty": "Os', 'lo"}']},
                {"toolUseId": "tooluse_2", "name": "get_weather", "fragments": ['{"city": "Rome"}']},
            ],
            stop_reason="tool_use",
            usage=converse_usage(input_tokens=20, output_tokens=15, cache_read=300, cache_write=40),
            piece_size=11,
        )
    )
    with make_client(fake) as client:
        stream = client.stream("Weather in Oslo and Rome?", model=f"bedrock/{CLAUDE}", tools=[WEATHER])
        chunks = list(stream)
        completion = stream.completion
    assert "".join(c.text for c in chunks) == "Let me look."
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].id == "tooluse_1" and deltas[0].name == "get_weather" and deltas[0].index == 0
    assert [d.arguments for d in deltas if d.index == 0 and d.arguments] == ['{"ci', 'ty": "Os', 'lo"}']
    assert completion.tool_calls == [
        ToolCall("tooluse_1", "get_weather", {"city": "Oslo"}),
        ToolCall("tooluse_2", "get_weather", {"city": "Rome"}),
    ]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.input_tokens == 20 + 300 + 40
    assert completion.usage.cached_input_tokens == 300
    assert completion.usage.output_tokens == 15
    [request] = fake.requests
    assert fake.route(request) == (CLAUDE, "ConverseStream")


def test_structured_output_native_and_forced_tool_over_the_wire(fake: FakeBedrock) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    fake.queue(converse_reply(text='{"name": "Ada"}'))
    fake.queue(
        converse_reply(
            tool_uses=[{"toolUseId": "t1", "name": "Person", "input": {"name": "Grace"}}], stop_reason="tool_use"
        )
    )
    fake.queue(
        converse_stream_reply(
            text_pieces=["Sure: "],
            tool_uses=[{"toolUseId": "t2", "name": "Person", "fragments": ['{"name"', ': "Linus"}']}],
            stop_reason="tool_use",
        )
    )
    fmt = ResponseFormat(name="Person", schema=schema)
    with make_client(fake) as client:
        native = client.complete("Who?", model=f"bedrock/{CLAUDE}", response_format=fmt)
        # Nova takes a forced named tool on Bedrock; Llama does not (its profile refuses that).
        forced = client.complete("Who?", model=f"bedrock/{NOVA}", response_format=fmt)
        streamed = client.stream("Who?", model=f"bedrock/{NOVA}", response_format=fmt).completion
    assert (native.text, native.parsed) == ('{"name": "Ada"}', {"name": "Ada"})
    assert (forced.text, forced.finish_reason, forced.tool_calls) == ('{"name": "Grace"}', "stop", [])
    assert forced.parsed == {"name": "Grace"}
    assert (streamed.text, streamed.finish_reason, streamed.tool_calls) == ('{"name": "Linus"}', "stop", [])
    native_body, forced_body, stream_body = fake.bodies()
    assert native_body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["name"] == "Person"
    assert forced_body["toolConfig"]["toolChoice"] == {"tool": {"name": "Person"}}
    assert stream_body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": schema}


ERRORS = [
    ("ThrottlingException", "Too many requests, please wait", RateLimitError, 429),
    ("ServiceQuotaExceededException", "quota exceeded", RateLimitError, 400),
    ("ServiceUnavailableException", "unavailable", ServiceUnavailableError, 503),
    ("InternalServerException", "internal", ServiceUnavailableError, 500),
    ("ModelNotReadyException", "model is not ready", ServiceUnavailableError, 429),
    ("ModelTimeoutException", "model timed out", RequestTimeoutError, 408),
    ("AccessDeniedException", "You don't have access to the model", PermissionDeniedError, 403),
    ("ResourceNotFoundException", "Model not found", ModelNotFoundError, 404),
    ("ValidationException", "Input is too long for requested model.", ContextWindowExceededError, 400),
    (
        "ValidationException",
        "The model returned the following errors: prompt is too long: 210000 tokens > 200000 maximum",
        ContextWindowExceededError,
        400,
    ),
    ("ValidationException", "This model's maximum context length is 8192 tokens.", ContextWindowExceededError, 400),
    ("ValidationException", "Too many input tokens. Max input tokens: 8192", ContextWindowExceededError, 400),
    ("ValidationException", "The provided model identifier is invalid.", ModelNotFoundError, 400),
    ("ValidationException", "This request has been blocked by our content filters.", ContentFilterError, 400),
    ("ValidationException", "Malformed input request: extraneous key [foo]", BadRequestError, 400),
    ("ValidationException", "max_tokens: 90000 > 64000, the maximum allowed for this model", BadRequestError, 400),
    ("UnrecognizedClientException", "The security token included in the request is invalid.", AuthenticationError, 403),
    ("InvalidSignatureException", "The request signature we calculated does not match", AuthenticationError, 403),
]


@pytest.mark.parametrize(("code", "message", "error_class", "status"), ERRORS)
def test_each_error_is_mapped(
    fake: FakeBedrock,
    provider: BedrockProvider,
    code: str,
    message: str,
    error_class: type[FMClientError],
    status: int,
) -> None:
    fake.queue(error_reply(code, message))
    with pytest.raises(error_class) as caught:
        provider.complete(req())
    error = caught.value
    assert type(error) is error_class
    assert error.status_code == status
    assert message in str(error) and code in str(error)
    assert (error.provider, error.model) == ("bedrock", CLAUDE)
    assert error.retryable == error_class.default_retryable
    from botocore.exceptions import ClientError

    assert isinstance(error.__cause__, ClientError)  # the boto3 exception stays chained
    assert len(fake.requests) == 1


def test_model_error_uses_its_original_status(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.queue(error_reply("ModelErrorException", "bad input to model", originalStatusCode=400))
    fake.queue(error_reply("ModelErrorException", "model crashed", originalStatusCode=500))
    with pytest.raises(BadRequestError):
        provider.complete(req())
    with pytest.raises(ServiceUnavailableError):
        provider.complete(req())


@pytest.mark.parametrize(
    ("exception_type", "error_class"),
    [
        ("modelStreamErrorException", ServiceUnavailableError),
        ("throttlingException", RateLimitError),
        ("internalServerException", ServiceUnavailableError),
        ("validationException", BadRequestError),
        ("serviceUnavailableException", ServiceUnavailableError),
    ],
)
def test_in_stream_exception_frames(
    fake: FakeBedrock, provider: BedrockProvider, exception_type: str, error_class: type[FMClientError]
) -> None:
    good = converse_stream_frames(text_pieces=["Hello ", "wor"])
    fake.queue(stream_reply([*good[:3], exception_frame(exception_type, "broke mid-way", originalStatusCode=500)]))
    chunks = []
    with pytest.raises(error_class, match="broke mid-way") as caught:
        for chunk in provider.stream(req()):
            chunks.append(chunk)
    assert "".join(c.text for c in chunks) == "Hello wor"
    assert type(caught.value) is error_class


def test_in_stream_exception_on_titan_stream_via_client(fake: FakeBedrock) -> None:
    frames = titan_stream_frames([" Once", " upon"])
    fake.queue(stream_reply([frames[0], exception_frame("modelStreamErrorException", "model stream broke")]))
    with make_client(fake) as client, pytest.raises(ServiceUnavailableError) as caught:
        for _ in client.stream("story", model=f"bedrock/{TITAN}"):
            pass
    assert caught.value.partial_text == "Once"
    assert len(fake.requests) == 1  # text had reached the caller: no retry


def test_stream_exception_before_any_text_is_retried(fake: FakeBedrock, retry_sleeps: list[float]) -> None:
    fake.queue(stream_reply([exception_frame("throttlingException", "slow down")]))
    fake.queue(converse_stream_reply(text_pieces=["ok"]))
    with make_client(fake) as client:
        assert client.stream("hi", model=f"bedrock/{CLAUDE}").completion.text == "ok"
    assert len(fake.requests) == 2
    assert len(retry_sleeps) == 1


def test_stream_cut_off_or_missing_final_event(fake: FakeBedrock, provider: BedrockProvider) -> None:
    frames = converse_stream_frames(text_pieces=["a", "b", "c"])
    fake.queue(stream_reply(frames, piece_size=20, cut_after=3))
    with pytest.raises(APIConnectionError) as caught:
        list(provider.stream(req()))
    assert caught.value.retryable
    fake.queue(stream_reply(converse_stream_frames(text_pieces=["a"], metadata=False)))
    with pytest.raises(APIConnectionError, match="metadata"):
        list(provider.stream(req()))
    fake.queue(stream_reply(titan_stream_frames([" a", " b"])[:1]))
    with pytest.raises(APIConnectionError, match="final chunk"):
        list(provider.stream(req(TITAN)))


def test_closing_a_stream_releases_its_connection(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.queue(converse_stream_reply(text_pieces=["one ", "two ", "three"]))
    responses: list[Any] = []
    invoke = provider._invoke

    def recording_invoke(fn: Any, timeout: float | None, **params: Any) -> Any:
        responses.append(invoke(fn, timeout, **params))
        return responses[-1]

    provider._invoke = recording_invoke  # type: ignore[method-assign]
    started = provider.stream(req())
    assert next(started).text == "one "
    started.close()  # type: ignore[attr-defined]
    assert responses[0]["stream"]._raw_stream.closed
    # A stream closed before its first chunk never sent its request.
    unstarted = provider.stream(req())
    unstarted.close()  # type: ignore[attr-defined]
    assert len(fake.requests) == 1 and len(responses) == 1
    fake.queue(converse_reply(text="still fine"))
    assert provider.complete(req()).text == "still fine"


def test_corrupt_frame_is_a_connection_error(fake: FakeBedrock, provider: BedrockProvider) -> None:
    frame = bytearray(event_frame("messageStart", {"role": "assistant"}))
    frame[-2] ^= 0xFF
    fake.queue(stream_reply([bytes(frame)]))
    with pytest.raises(APIConnectionError, match="corrupt"):
        list(provider.stream(req()))


def test_malformed_json_body(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.queue(Reply(body=b"<html>gateway</html>", content_type="application/json"))
    with pytest.raises(ServiceUnavailableError, match="malformed"):
        provider.complete(req(TITAN))


def test_throttling_then_success_exact_attempts_and_retry_after(fake: FakeBedrock, retry_sleeps: list[float]) -> None:
    fake.queue(
        error_reply("ThrottlingException", "Too many requests", headers={"Retry-After": "2"}),
        error_reply("ThrottlingException", "Too many requests", headers={"Retry-After": "1"}),
        converse_reply(text="finally"),
    )
    with make_client(fake) as client:
        reply = client.complete("hi", model=f"bedrock/{CLAUDE}", max_retries=3)
    assert reply.text == "finally"
    assert len(fake.requests) == 3  # botocore retried nothing itself
    assert retry_sleeps == [2.0, 1.0]  # Retry-After honoured exactly


def test_throttling_exhausts_retries(fake: FakeBedrock, retry_sleeps: list[float]) -> None:
    fake.queue(*[error_reply("ThrottlingException", "Too many requests", headers={"Retry-After": "0"})] * 3)
    with make_client(fake) as client, pytest.raises(RateLimitError):
        client.complete("hi", model=f"bedrock/{CLAUDE}")
    assert len(fake.requests) == 3  # 1 + max_retries=2


def test_connection_refused_is_api_connection_error(aws_env: None) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    adapter = BedrockProvider(ProviderSettings(name="bedrock", type="bedrock", base_url=url))
    with pytest.raises(APIConnectionError) as caught:
        adapter.complete(req())
    assert caught.value.retryable


def test_connection_reset_is_api_connection_error(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.queue(Reply(reset=True))
    with pytest.raises(APIConnectionError) as caught:
        provider.complete(req())
    assert caught.value.retryable and caught.value.__cause__ is not None


def test_read_timeout_per_request(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.queue(Reply(body={"late": True}, delay=1.0))
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        provider.complete(req(timeout=0.2))
    assert time.monotonic() - started < 0.9
    # The override was for that call only: the next one has the client default again.
    fake.queue(converse_reply(text="on time"))
    assert provider.complete(req()).text == "on time"


def test_settings_timeout_is_the_default_read_timeout(fake: FakeBedrock) -> None:
    adapter = BedrockProvider(ProviderSettings(name="bedrock", type="bedrock", base_url=fake.url, timeout=0.2))
    adapter.check_ready(CLAUDE)  # builds the boto3 client outside the timing
    fake.queue(Reply(body={"late": True}, delay=1.0))
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        adapter.complete(req())
    assert time.monotonic() - started < 0.9
    adapter.close()


def test_capabilities_per_family() -> None:
    adapter = BedrockProvider(ProviderSettings(name="bedrock", type="bedrock"))
    titan = adapter.capabilities(TITAN)
    assert (titan.tools, titan.images, titan.structured_output, titan.max_stop_sequences) == (False, False, False, 1)
    assert titan.system and titan.streaming
    embed = adapter.capabilities(EMBED_V2)
    assert (embed.chat, embed.embeddings) == (False, True)
    claude = adapter.capabilities(CLAUDE)
    assert claude.tools and claude.images and claude.structured_output


def test_missing_boto3_names_the_extra(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes "import boto3" fail
    adapter = BedrockProvider(ProviderSettings(name="bedrock", type="bedrock"))
    with pytest.raises(ConfigurationError, match=re.escape('pip install "fmclient[bedrock]"')):
        adapter.check_ready(CLAUDE)


def test_unknown_api_option(fake: FakeBedrock, provider: BedrockProvider) -> None:
    with pytest.raises(BadRequestError, match="api must be"):
        provider.complete(req(TITAN, provider_options={"api": "chat"}))
    assert fake.requests == []


def test_endpoint_from_aws_env_var_when_no_base_url(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
    with Client(providers={"bedrock": {"region": "us-west-2"}}) as client:
        reply = client.complete("hi", model=f"bedrock/{CLAUDE}")
    assert reply.text == "You said: hi"
    [request] = fake.requests
    assert "/us-west-2/bedrock/aws4_request" in request.headers["authorization"]


def test_endpoint_url_option(fake: FakeBedrock) -> None:
    with Client(providers={"bedrock": {"endpoint_url": fake.url, "max_workers": 2}}) as client:
        assert client.complete("hi", model=f"bedrock/{CLAUDE}").text == "You said: hi"
    assert len(fake.requests) == 1


def test_missing_region_or_credentials_is_configuration_error(
    bedrock_server: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = bedrock_server
    fake.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    client = Client(providers={"bedrock": {"base_url": fake.url}})
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        client.complete("hi", model=f"bedrock/{CLAUDE}")

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    client = Client(providers={"bedrock": {"base_url": fake.url}})
    with pytest.raises(ConfigurationError) as caught:
        client.complete("hi", model=f"bedrock/{CLAUDE}")
    assert "credential chain" in str(caught.value) and "AWS_ACCESS_KEY_ID" in str(caught.value)

    client = Client(providers={"bedrock": {"base_url": fake.url, "profile": "nope"}})
    with pytest.raises(ConfigurationError, match="nope"):
        client.complete("hi", model=f"bedrock/{CLAUDE}")
    assert fake.requests == []


def test_bedrock_api_key_counts_as_credentials(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Bedrock API key (bearer token) stands in for AWS credentials; boto3 sends it only over
    # HTTPS, so against the plain-HTTP fake the call stops with a configuration error, unsent.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-123456")
    with make_client(fake) as client, pytest.raises(ConfigurationError, match="HTTPS") as caught:
        client.complete("hi", model=f"bedrock/{CLAUDE}")
    assert "bedrock-api-key-123456" not in str(caught.value)
    assert fake.requests == []


def test_bad_settings_refused(fake: FakeBedrock) -> None:
    with pytest.raises(ConfigurationError, match="max_workers"):
        BedrockProvider(ProviderSettings(name="bedrock", type="bedrock", options={"max_workers": 0}))
    with pytest.raises(ConfigurationError, match="unknown setting"):
        BedrockProvider(ProviderSettings(name="bedrock", type="bedrock", options={"workers": 3}))
    client = Client(providers={"bedrock": {"base_url": fake.url, "api_key": "some-key-value"}})
    with pytest.raises(ConfigurationError, match="AWS_BEARER_TOKEN_BEDROCK"):
        client.complete("hi", model=f"bedrock/{CLAUDE}")
    assert fake.requests == []


def test_one_boto3_client_per_provider(fake: FakeBedrock, provider: BedrockProvider) -> None:
    clients = []
    barrier = threading.Barrier(8)

    def build() -> None:
        barrier.wait()
        clients.append(provider._get_client())

    threads = [threading.Thread(target=build) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(c) for c in clients}) == 1
    provider.complete(req())
    assert provider._get_client() is clients[0]
    assert clients[0].meta.config.retries["total_max_attempts"] == 1


async def test_async_complete_and_stream(fake: FakeBedrock) -> None:
    fake.queue(converse_reply(text="async hello"))
    fake.queue(stream_reply(titan_stream_frames([" as", "ync"])))
    client = make_client(fake)
    try:
        reply = await client.acomplete("hi", model=f"bedrock/{CLAUDE}")
        stream = client.astream("hi", model=f"bedrock/{TITAN}")
        texts = [chunk.text async for chunk in stream]
        completion = await stream.get_completion()
    finally:
        await client.aclose()
    assert reply.text == "async hello"
    assert "".join(texts) == "async" and completion.finish_reason == "stop"
    assert [fake.route(r)[1] for r in fake.requests] == ["Converse", "InvokeModelWithResponseStream"]


def test_claude_sonnet_alias_repointed_to_bedrock(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(
        providers={"bedrock": {"base_url": fake.url}}, aliases={"claude-sonnet": f"bedrock/{CLAUDE}"}
    ) as client:
        reply = client.complete("hi", model="claude-sonnet")
    assert (reply.provider, reply.model, reply.text) == ("bedrock", CLAUDE, "You said: hi")
    monkeypatch.setenv("FMCLIENT_ALIAS_CLAUDE_SONNET", "bedrock/anthropic.claude-haiku-4-5-20251001-v1:0")
    with Client(providers={"bedrock": {"base_url": fake.url}}) as client:
        assert client.complete("hi", model="claude-sonnet").model == "anthropic.claude-haiku-4-5-20251001-v1:0"
    assert [fake.route(r) for r in fake.requests] == [
        (CLAUDE, "Converse"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "Converse"),
    ]
