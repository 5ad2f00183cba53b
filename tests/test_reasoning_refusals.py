"""Requests Claude refuses under thinking are refused before sending, on every host of the family.

Each refusal is checked over the wire fakes (the Anthropic fake, the Bedrock fake that real boto3
talks to) and on the mock: zero requests reach the server. The same requests without
``reasoning=``, or in the form the API takes, are sent, so the refusal is the rule and not a
blanket "no".
"""

from __future__ import annotations

from typing import Any

import pytest

from fmclient import Client
from fmclient.errors import UnsupportedFeatureError
from fmclient.testing import MockProvider
from tests.fakes import anthropic as fa
from tests.fakes import bedrock as fb
from tests.fakes.server import FakeServer

#: what Anthropic asks for at xhigh and max effort when the caller sets no max_tokens
CLAUDE_LARGE_OUTPUT_MAX_TOKENS = 64000
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

# Claude families whose structured output on Bedrock is a forced tool (no native output format there).
FORCED_TOOL_ON_BEDROCK = [
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "us.anthropic.claude-opus-4-1-20250805-v1:0",
]
NATIVE_ON_BEDROCK = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.fakes.bedrock import FakeBedrock

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with FakeBedrock() as server:
        yield server


def bedrock_client(server: Any) -> Client:
    return Client(providers={"bedrock": {"base_url": server.url, "region": "us-east-1"}}, max_retries=0)


def anthropic_client(server: FakeServer) -> Client:
    return Client(providers={"anthropic": {"base_url": server.url, "api_key": "test-key-anthropic"}}, max_retries=0)


# == structured output through a forced tool, with thinking ========================================
@pytest.mark.parametrize("model", FORCED_TOOL_ON_BEDROCK)
def test_bedrock_refuses_forced_tool_structured_output_with_reasoning(bedrock: Any, model: str) -> None:
    with bedrock_client(bedrock) as client:
        with pytest.raises(UnsupportedFeatureError, match="structured output together with reasoning="):
            client.complete("n?", model=f"bedrock/{model}", response_format=SCHEMA, reasoning="low")
        with pytest.raises(UnsupportedFeatureError, match="structured output together with reasoning="):
            list(client.stream("n?", model=f"bedrock/{model}", response_format=SCHEMA, reasoning=2048))
    assert bedrock.requests == []


def test_bedrock_forced_tool_structured_output_without_reasoning_is_sent(bedrock: Any) -> None:
    model = FORCED_TOOL_ON_BEDROCK[1]
    bedrock.queue(fb.converse_reply(tool_uses=[{"toolUseId": "t1", "name": "response", "input": {"n": 3}}]))
    with bedrock_client(bedrock) as client:
        done = client.complete("n?", model=f"bedrock/{model}", response_format=SCHEMA)
    [sent] = bedrock.bodies()
    assert sent["toolConfig"]["toolChoice"] == {"tool": {"name": "response"}}
    assert done.parsed == {"n": 3}


def test_bedrock_native_structured_output_with_reasoning_is_sent_and_a_forced_override_refused(bedrock: Any) -> None:
    """Claude 4.5 on Bedrock has outputConfig.textFormat: no forced tool, so thinking may join it.
    Asking for the forced-tool form explicitly brings the refusal back."""
    bedrock.queue(fb.converse_reply(text='{"n": 3}'))
    with bedrock_client(bedrock) as client:
        done = client.complete("n?", model=f"bedrock/{NATIVE_ON_BEDROCK}", response_format=SCHEMA, reasoning="low")
        with pytest.raises(UnsupportedFeatureError, match="structured output together with reasoning="):
            client.complete(
                "n?",
                model=f"bedrock/{NATIVE_ON_BEDROCK}",
                response_format=SCHEMA,
                reasoning="low",
                structured_output="tool",
            )
    [sent] = bedrock.bodies()
    assert "toolConfig" not in sent and sent["outputConfig"]["textFormat"]["type"] == "json_schema"
    assert sent["additionalModelRequestFields"]["thinking"]["type"] == "enabled"
    assert done.parsed == {"n": 3}


def test_anthropic_takes_structured_output_with_reasoning_natively(fake_server: FakeServer) -> None:
    """On the Anthropic API structured output is output_config.format (never a forced tool), and
    the families without it refuse structured output altogether: nothing forced meets thinking."""
    fake_server.queue(fa.message_reply([fa.thinking_block("think", "sig"), fa.text_block('{"n": 3}')]))
    with anthropic_client(fake_server) as client:
        done = client.complete("n?", model="anthropic/claude-sonnet-4-5", response_format=SCHEMA, reasoning="low")
        with pytest.raises(UnsupportedFeatureError, match="structured output"):
            client.complete("n?", model="anthropic/claude-sonnet-4-20250514", response_format=SCHEMA, reasoning="low")
    [sent] = (r.json() for r in fake_server.requests)
    assert sent["output_config"]["format"]["type"] == "json_schema" and "tool_choice" not in sent
    assert done.parsed == {"n": 3}


@pytest.mark.parametrize(
    "model", ["bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic/claude-3-7-sonnet-20250219"]
)
def test_mock_refuses_what_the_host_would(model: str) -> None:
    with MockProvider() as mock, pytest.raises(UnsupportedFeatureError, match="structured output"):
        Client().complete("n?", model=model, response_format=SCHEMA, reasoning="low")
    assert mock.calls == []


# == sampling under thinking =======================================================================
def test_bedrock_claude_top_p_under_thinking_is_095_to_1(bedrock: Any) -> None:
    bedrock.queue(fb.converse_reply(text="ok"), fb.converse_reply(text="ok"))
    with bedrock_client(bedrock) as client:
        with pytest.raises(UnsupportedFeatureError, match=r"top_p=0.9 together with reasoning= \(.*0.95 to 1\)"):
            client.complete("hi", model=f"bedrock/{NATIVE_ON_BEDROCK}", reasoning="low", top_p=0.9)
        assert bedrock.requests == []
        client.complete("hi", model=f"bedrock/{NATIVE_ON_BEDROCK}", reasoning="low", top_p=0.95)
        client.complete("hi", model=f"bedrock/{NATIVE_ON_BEDROCK}", top_p=0.5)  # no thinking: any top_p
    assert [body["inferenceConfig"]["topP"] for body in bedrock.bodies()] == [0.95, 0.5]


def test_claude_top_k_under_thinking_is_refused_on_every_host(bedrock: Any, fake_server: FakeServer) -> None:
    refused = pytest.raises(UnsupportedFeatureError, match="top_k together with reasoning=")
    with bedrock_client(bedrock) as client, refused:
        client.complete(
            "hi", model=f"bedrock/{NATIVE_ON_BEDROCK}", reasoning="low", additionalModelRequestFields={"top_k": 40}
        )
    refused = pytest.raises(UnsupportedFeatureError, match="top_k together with reasoning=")
    with anthropic_client(fake_server) as client, refused:
        client.complete("hi", model="anthropic/claude-sonnet-4-5", reasoning="low", top_k=40)
    assert bedrock.requests == [] and fake_server.requests == []


def test_claude_opus_4_7_takes_no_sampling_parameters_or_prefill(bedrock: Any) -> None:
    model = "bedrock/us.anthropic.claude-opus-4-7"
    with bedrock_client(bedrock) as client:
        with pytest.raises(UnsupportedFeatureError, match="temperature"):
            client.complete("hi", model=model, temperature=0.2)
        with pytest.raises(UnsupportedFeatureError, match="top_p"):
            client.complete("hi", model=model, top_p=0.99)
        with pytest.raises(UnsupportedFeatureError, match="prefilled assistant turn"):
            client.complete([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{"}], model=model)
    assert bedrock.requests == []


# == adaptive thinking's output limit at high efforts ==============================================
def test_adaptive_thinking_at_xhigh_and_max_gets_a_large_output_limit_unless_set(
    fake_server: FakeServer, bedrock: Any
) -> None:
    # 64k is more than the SDK sends unstreamed (it expects over ten minutes): complete() streams it.
    ok = [fa.text_block("ok")]
    fake_server.queue(fa.stream_reply(fa.stream_events(ok)), fa.message_reply(ok), fa.message_reply(ok))
    with anthropic_client(fake_server) as client:
        assert client.complete("hi", model="anthropic/claude-opus-5-5", reasoning="xhigh").text == "ok"
        client.complete("hi", model="anthropic/claude-opus-5-5", reasoning="max", max_tokens=2000)
        client.complete("hi", model="anthropic/claude-opus-5-5", reasoning="high")
    assert [r.json()["max_tokens"] for r in fake_server.requests] == [CLAUDE_LARGE_OUTPUT_MAX_TOKENS, 2000, 4096]
    bedrock.queue(fb.converse_reply(text="ok"), fb.converse_reply(text="ok"))
    with bedrock_client(bedrock) as client:
        client.complete("hi", model="bedrock/us.anthropic.claude-opus-5-5-v1:0", reasoning="max")
        client.complete("hi", model="bedrock/us.anthropic.claude-opus-5-5-v1:0", reasoning="medium")
    first, second = bedrock.bodies()
    assert first["inferenceConfig"] == {"maxTokens": CLAUDE_LARGE_OUTPUT_MAX_TOKENS}
    assert "inferenceConfig" not in second


async def test_adaptive_thinking_at_max_streams_on_the_async_path_too(fake_server: FakeServer) -> None:
    fake_server.queue(fa.stream_reply(fa.stream_events([fa.text_block("ok")])))
    async with anthropic_client(fake_server) as client:
        done = await client.acomplete("hi", model="anthropic/claude-opus-5-5", reasoning="max")
    [sent] = (r.json() for r in fake_server.requests)
    assert (sent["max_tokens"], sent["stream"], done.text) == (CLAUDE_LARGE_OUTPUT_MAX_TOKENS, True, "ok")


def test_thinking_switched_on_by_provider_option_keeps_its_rules(bedrock: Any, fake_server: FakeServer) -> None:
    """reasoning= is not the only switch: Claude's own thinking object as a provider option turns
    thinking on too, and the same requests are refused."""
    thinking = {"type": "enabled", "budget_tokens": 2048}
    with bedrock_client(bedrock) as client:
        with pytest.raises(UnsupportedFeatureError, match="temperature together with thinking"):
            client.complete(
                "hi",
                model=f"bedrock/{NATIVE_ON_BEDROCK}",
                temperature=0.5,
                additionalModelRequestFields={"thinking": thinking},
            )
        with pytest.raises(UnsupportedFeatureError, match="structured output together with thinking"):
            client.complete(
                "n?",
                model=f"bedrock/{FORCED_TOOL_ON_BEDROCK[1]}",
                response_format=SCHEMA,
                additionalModelRequestFields={"thinking": thinking},
            )
    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    refused = pytest.raises(UnsupportedFeatureError, match=r"tool_choice='required'\) with thinking")
    with anthropic_client(fake_server) as client, refused:
        client.complete(
            "hi",
            model="anthropic/claude-sonnet-4-5",
            max_tokens=4096,
            tools=[weather],
            tool_choice="required",
            thinking=thinking,
        )
    assert bedrock.requests == [] and fake_server.requests == []
