"""One ``reasoning=`` parameter across providers: the exact request each provider's fake got, and
the model's thinking kept apart from its answer (``Completion.reasoning``, ``Chunk.reasoning``).

OpenAI's Responses and Chat paths are covered in tests/test_openai_responses.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from fmclient import Client
from fmclient.errors import BadRequestError, UnsupportedFeatureError
from fmclient.providers.shared_io import THINKING_BUDGETS
from tests.fakes import anthropic as fa
from tests.fakes.server import FakeServer

THOUGHT = "The user greets me; greet back."


def split(stream: Any) -> tuple[str, str]:
    chunks = list(stream)
    assert all(not (c.text and c.reasoning) for c in chunks)
    return "".join(c.text for c in chunks), "".join(c.reasoning for c in chunks)


# == Anthropic =====================================================================================
def anthropic_client(server: FakeServer) -> Client:
    return Client(providers={"anthropic": {"base_url": server.url, "api_key": "test-key-anthropic"}}, max_retries=0)


def test_anthropic_effort_maps_to_thinking_budget(fake_server: FakeServer) -> None:
    blocks = [fa.thinking_block(THOUGHT, "sig-1"), fa.text_block("Hello!")]
    fake_server.queue(fa.message_reply(blocks), fa.stream_reply(fa.stream_events(blocks)))
    with anthropic_client(fake_server) as client:
        done = client.complete("hi", model="anthropic/claude-sonnet-4-5", reasoning="medium")
        stream = client.stream("hi", model="anthropic/claude-sonnet-4-5", reasoning=2000, max_tokens=3000)
        text, thought = split(stream)
    first, second = (r.json() for r in fake_server.requests)
    assert first == {
        "model": "claude-sonnet-4-5",
        "max_tokens": THINKING_BUDGETS["medium"] + 4096,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": THINKING_BUDGETS["medium"]},
    }
    assert second["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert second["max_tokens"] == 3000 and second["stream"] is True
    assert (done.text, done.reasoning) == ("Hello!", THOUGHT)
    assert (text, thought) == ("Hello!", THOUGHT)
    assert stream.completion.reasoning == THOUGHT
    # the thinking block (with its signature) still rides on the message, for the next turn
    assert stream.completion.message.provider_state["anthropic"]["content"][0]["signature"] == "sig-1"


def test_anthropic_refuses_before_sending(fake_server: FakeServer) -> None:
    with anthropic_client(fake_server) as client:
        with pytest.raises(BadRequestError, match="must exceed the thinking budget"):
            client.complete("hi", model="anthropic/claude-sonnet-4-5", reasoning="high", max_tokens=1000)
        with pytest.raises(BadRequestError, match="at least 1024"):
            client.complete("hi", model="anthropic/claude-sonnet-4-5", reasoning=500)
        with pytest.raises(UnsupportedFeatureError, match="not a reasoning model"):
            client.complete("hi", model="anthropic/claude-3-haiku-20240307", reasoning="low")
    assert fake_server.requests == []


@pytest.mark.parametrize("model", ["claude-sonnet-5-5", "claude-opus-5-5", "claude-opus-4-7", "claude-opus-4-6"])
def test_anthropic_effort_is_adaptive_thinking_from_claude_4_6(fake_server: FakeServer, model: str) -> None:
    """Claude 4.7 and 5 answer a budget (thinking type "enabled") with 400: an effort goes as
    adaptive thinking and output_config.effort, next to a response format, max_tokens untouched."""
    blocks = [fa.thinking_block(THOUGHT, "sig-1"), fa.text_block('{"n": 25}')]
    fake_server.queue(fa.message_reply(blocks), fa.stream_reply(fa.stream_events(blocks)))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with anthropic_client(fake_server) as client:
        done = client.complete("primes below 100?", model=f"anthropic/{model}", reasoning="high")
        stream = client.stream(
            "primes below 100?", model=f"anthropic/{model}", reasoning="low", max_tokens=900, response_format=schema
        )
        text, thought = split(stream)
    first, second = (r.json() for r in fake_server.requests)
    assert first == {
        "model": model,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "primes below 100?"}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
    }
    assert second["thinking"] == {"type": "adaptive"} and second["max_tokens"] == 900
    assert second["output_config"]["effort"] == "low" and second["output_config"]["format"]["type"] == "json_schema"
    assert (done.reasoning, thought, text) == (THOUGHT, THOUGHT, '{"n": 25}')


def test_anthropic_token_budgets_where_claude_takes_only_an_effort(fake_server: FakeServer) -> None:
    fake_server.queue(fa.message_reply("ok"))
    with anthropic_client(fake_server) as client:
        for model in ("claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-4-7"):
            with pytest.raises(UnsupportedFeatureError, match="as a token budget"):
                client.complete("hi", model=f"anthropic/{model}", reasoning=4096)
        with pytest.raises(BadRequestError, match="not both"):
            client.complete("hi", model="anthropic/claude-opus-5-5", reasoning="low", output_config={"effort": "max"})
        assert fake_server.requests == []
        # Claude 4.6 still takes a budget (deprecated: the SDK says so), as extended thinking.
        with pytest.warns(UserWarning, match="deprecated"):
            client.complete("hi", model="anthropic/claude-opus-4-6", reasoning=2048, max_tokens=4000)
    [sent] = (r.json() for r in fake_server.requests)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048} and "output_config" not in sent


def test_anthropic_adaptive_thinking_takes_xhigh_and_max(fake_server: FakeServer) -> None:
    # At xhigh and max Anthropic asks for a large max_tokens (64k when the caller sets none), more
    # than the SDK sends unstreamed: complete() streams the same request.
    ok = fa.stream_reply(fa.stream_events([fa.text_block("ok")]))
    fake_server.queue(ok, ok)
    with anthropic_client(fake_server) as client:
        client.complete("hi", model="anthropic/claude-opus-5-5", reasoning="xhigh")
        client.complete("hi", model="anthropic/claude-opus-4-6", reasoning="max")
    first, second = (r.json() for r in fake_server.requests)
    assert first == {
        "model": "claude-opus-5-5",
        "max_tokens": 64000,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "xhigh"},
        "stream": True,
    }
    assert (second["thinking"], second["output_config"]) == ({"type": "adaptive"}, {"effort": "max"})


def test_anthropic_refuses_efforts_claude_has_no_level_for(fake_server: FakeServer) -> None:
    with anthropic_client(fake_server) as client:
        # adaptive thinking has no "none" or "minimal" effort (the profile lists what it takes)
        for effort in ("none", "minimal"):
            with pytest.raises(UnsupportedFeatureError, match=f"reasoning={effort!r} \\(it takes an effort: 'low'"):
                client.complete("hi", model="anthropic/claude-opus-5-5", reasoning=effort)
        # budget-only extended thinking: only the efforts THINKING_BUDGETS maps, never a neighbour
        for effort in ("none", "minimal", "xhigh", "max"):
            with pytest.raises(UnsupportedFeatureError, match=f"reasoning={effort!r}: this model takes a thinking"):
                client.complete("hi", model="anthropic/claude-sonnet-4-5", reasoning=effort)
    assert fake_server.requests == []


def test_check_reasoning_takes_every_effort_and_names_them_on_a_typo() -> None:
    from fmclient._validation import REASONING_EFFORTS, check_reasoning

    assert REASONING_EFFORTS == ("none", "minimal", "low", "medium", "high", "xhigh", "max")
    assert [check_reasoning(effort) for effort in REASONING_EFFORTS] == list(REASONING_EFFORTS)
    listed = "'none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max'"
    with pytest.raises(ValueError, match=f"reasoning must be one of {listed} or a token budget, got 'hgih'"):
        check_reasoning("hgih")
    with pytest.raises(ValueError, match="got 'MAX'"):
        check_reasoning("MAX")


# == Gemini ========================================================================================
def gemini_client(server: FakeServer) -> Client:
    return Client(providers={"gemini": {"base_url": server.url, "api_key": "test-key-gemini"}}, max_retries=0)


def test_gemini_thinking_budget_and_level(fake_server: FakeServer) -> None:
    from tests.fakes import gemini as fg

    parts = [fg.text_part(THOUGHT, thought=True), fg.text_part("Hello!", thought_signature=b"sig")]
    events = [
        fg.response_body(parts=[fg.text_part("The user greets me; ", thought=True)], finish_reason=None),
        fg.response_body(parts=[fg.text_part("greet back.", thought=True)], finish_reason=None),
        fg.response_body(parts=[fg.text_part("Hello!", thought_signature=b"sig")], usage=fg.usage_metadata()),
    ]
    fake_server.queue(fg.generate_reply(parts=parts), fg.stream_reply(events), fg.generate_reply("ok"))
    with gemini_client(fake_server) as client:
        done = client.complete("hi", model="gemini/gemini-2.5-flash", reasoning="high")
        stream = client.stream("hi", model="gemini/gemini-2.5-flash", reasoning=512)
        text, thought = split(stream)
        client.complete("hi", model="gemini/gemini-3-pro-preview", reasoning="low")
    # (google-genai sends the config keys snake_cased; the API takes both spellings)
    configs = [r.json()["generationConfig"]["thinkingConfig"] for r in fake_server.requests]
    assert configs == [
        {"include_thoughts": True, "thinking_budget": THINKING_BUDGETS["high"]},
        {"include_thoughts": True, "thinking_budget": 512},
        {"include_thoughts": True, "thinking_level": "LOW"},
    ]
    assert (done.text, done.reasoning) == ("Hello!", THOUGHT)
    assert (text, thought) == ("Hello!", THOUGHT)
    assert stream.completion.reasoning == THOUGHT and stream.completion.text == "Hello!"


def test_gemini_efforts_are_what_the_sdk_and_the_model_take(fake_server: FakeServer) -> None:
    from google.genai import types

    from tests.fakes import gemini as fg

    levels = {level.value for level in types.ThinkingLevel}
    fake_server.queue(fg.generate_reply("ok"), fg.generate_reply("ok"))
    with gemini_client(fake_server) as client:
        client.complete("hi", model="gemini/gemini-3-pro-preview", reasoning="minimal")
        client.complete("hi", model="gemini/gemini-3-pro-preview", reasoning="xhigh")
        # Gemini 3's thinking_level has no "none" or "max" (the SDK's ThinkingLevel lists none)
        for effort in ("none", "max"):
            assert effort.upper() not in levels
            with pytest.raises(UnsupportedFeatureError, match=f"reasoning={effort!r}: Gemini's thinking_level takes"):
                client.complete("hi", model="gemini/gemini-3-pro-preview", reasoning=effort)
        # Gemini 2.5 takes a budget: only the efforts THINKING_BUDGETS maps
        for effort in ("none", "minimal", "xhigh", "max"):
            with pytest.raises(UnsupportedFeatureError, match=f"reasoning={effort!r}: this model takes a thinking"):
                client.complete("hi", model="gemini/gemini-2.5-flash", reasoning=effort)
    configs = [r.json()["generationConfig"]["thinkingConfig"] for r in fake_server.requests]
    assert configs == [
        {"include_thoughts": True, "thinking_level": "MINIMAL"},
        {"include_thoughts": True, "thinking_level": "XHIGH"},
    ]


# == Claude on Bedrock =============================================================================
CLAUDE_ON_BEDROCK = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.fakes.bedrock import FakeBedrock

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with FakeBedrock() as server:
        yield server


def test_bedrock_claude_5_takes_an_effort_as_adaptive_thinking(bedrock: Any) -> None:
    from tests.fakes import bedrock as fb

    bedrock.queue(fb.converse_reply(text="Hello!", reasoning={"text": THOUGHT, "signature": "sig-1"}))
    with Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0) as client:
        done = client.complete("hi", model="bedrock/us.anthropic.claude-opus-5-5-v1:0", reasoning="medium")
        with pytest.raises(UnsupportedFeatureError, match="as a token budget"):
            client.complete("hi", model="bedrock/us.anthropic.claude-opus-5-5-v1:0", reasoning=4000)
    [sent] = bedrock.bodies()
    assert sent["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
    }
    assert "inferenceConfig" not in sent  # max_tokens is not raised by a budget
    assert (done.text, done.reasoning) == ("Hello!", THOUGHT)


def test_bedrock_claude_efforts_as_on_anthropic(bedrock: Any) -> None:
    from tests.fakes import bedrock as fb

    bedrock.queue(fb.converse_reply(text="ok"))
    with Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0) as client:
        client.complete("hi", model="bedrock/us.anthropic.claude-opus-5-5-v1:0", reasoning="max")
        with pytest.raises(UnsupportedFeatureError, match="reasoning='none'"):
            client.complete("hi", model="bedrock/us.anthropic.claude-opus-5-5-v1:0", reasoning="none")
        with pytest.raises(UnsupportedFeatureError, match="reasoning='xhigh': this model takes a thinking"):
            client.complete("hi", model=f"bedrock/{CLAUDE_ON_BEDROCK}", reasoning="xhigh")
    [sent] = bedrock.bodies()
    assert sent["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "max"},
    }


def test_bedrock_claude_thinking_through_additional_fields(bedrock: Any) -> None:
    from tests.fakes import bedrock as fb

    bedrock.queue(
        fb.converse_reply(text="Hello!", reasoning={"text": THOUGHT, "signature": "sig-1"}),
        fb.converse_stream_reply(text_pieces=["Hel", "lo!"], reasoning_pieces=["The user greets me; ", "greet back."]),
    )
    with Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0) as client:
        done = client.complete("hi", model=f"bedrock/{CLAUDE_ON_BEDROCK}", reasoning="low")
        stream = client.stream("hi", model=f"bedrock/{CLAUDE_ON_BEDROCK}", reasoning=4000, max_tokens=5000)
        text, thought = split(stream)
        with pytest.raises(UnsupportedFeatureError, match="Claude models only"):
            client.complete("hi", model="bedrock/us.deepseek.r1-v1:0", reasoning="low")
    first, second = bedrock.bodies()
    assert first == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": THINKING_BUDGETS["low"] + 4096},
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": THINKING_BUDGETS["low"]}},
    }
    assert second["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 4000}}
    assert second["inferenceConfig"] == {"maxTokens": 5000}
    assert (done.text, done.reasoning) == ("Hello!", THOUGHT)
    assert (text, thought) == ("Hello!", THOUGHT)
    completion = stream.completion
    assert completion.reasoning == THOUGHT
    assert completion.message.provider_state == {
        "bedrock": {"reasoning": [{"reasoningContent": {"reasoningText": {"text": THOUGHT, "signature": "sig-fake"}}}]}
    }


def test_claude_thinking_refuses_temperature_and_forced_tools_on_every_host(
    fake_server: FakeServer, bedrock: Any
) -> None:
    # Extended thinking takes tool_choice auto/none only, and no temperature: the family's rule,
    # refused before sending on Anthropic and on Bedrock alike (the API would answer 400).
    from tests.fakes import bedrock as fb

    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    with (
        anthropic_client(fake_server) as client,
        pytest.raises(UnsupportedFeatureError, match=r"forced tool choice \(tool_choice='required'\) with reasoning"),
    ):
        client.complete(
            "hi", model="anthropic/claude-sonnet-4-5", reasoning="low", tools=[weather], tool_choice="required"
        )
    bedrock_client = Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0)
    with bedrock_client as client:
        with pytest.raises(UnsupportedFeatureError, match="temperature together with reasoning"):
            client.complete("hi", model=f"bedrock/{CLAUDE_ON_BEDROCK}", reasoning="low", temperature=0.5)
        with pytest.raises(UnsupportedFeatureError, match="tool_choice='get_weather'\\) with reasoning"):
            client.complete(
                "hi", model=f"bedrock/{CLAUDE_ON_BEDROCK}", reasoning="low", tools=[weather], tool_choice="get_weather"
            )
        # without reasoning= the same sampling is sent
        bedrock.queue(fb.converse_reply(text="ok"))
        assert client.complete("hi", model=f"bedrock/{CLAUDE_ON_BEDROCK}", temperature=0.5).text == "ok"
    assert fake_server.requests == []
    assert [body["inferenceConfig"].get("temperature") for body in bedrock.bodies()] == [0.5]


# == Ollama ========================================================================================
def test_ollama_think_flag_and_thinking_split() -> None:
    from tests.fakes import ollama as fo

    with fo.FakeOllama(models=("qwen3", "gpt-oss", "llama3.2")) as server:
        server.queue(
            fo.chat_reply("Hello!", model="qwen3", thinking=THOUGHT),
            fo.stream_reply(
                fo.chat_stream_events(["Hel", "lo!"], model="gpt-oss", thinking=["The user greets me; ", "greet back."])
            ),
        )
        with Client(providers={"ollama": {"base_url": server.url}}, max_retries=0) as client:
            done = client.complete("hi", model="ollama/qwen3", reasoning="high")
            stream = client.stream("hi", model="ollama/gpt-oss", reasoning="low")
            text, thought = split(stream)
            with pytest.raises(UnsupportedFeatureError, match="not a token budget"):
                client.complete("hi", model="ollama/qwen3", reasoning=2048)
            with pytest.raises(UnsupportedFeatureError, match="not a reasoning model"):
                client.complete("hi", model="ollama/llama3.2", reasoning="low")
        chats = [r.json() for r in server.requests if r.path == "/api/chat"]
    assert [(c["model"], c["think"], c["stream"]) for c in chats] == [("qwen3", True, False), ("gpt-oss", "low", True)]
    assert chats[0] == {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "think": True,
    }
    assert (done.text, done.reasoning) == ("Hello!", THOUGHT)
    assert (text, thought) == ("Hello!", THOUGHT)
    assert stream.completion.reasoning == THOUGHT
    assert stream.completion.message.provider_state == {"ollama": {"thinking": THOUGHT}}


def test_ollama_gpt_oss_takes_three_efforts_other_models_think_or_not() -> None:
    from tests.fakes import ollama as fo

    with fo.FakeOllama(models=("qwen3", "gpt-oss")) as server:
        server.queue(
            fo.chat_reply("a", model="qwen3"),
            fo.chat_reply("b", model="qwen3"),
            fo.chat_reply("c", model="gpt-oss"),
        )
        with Client(providers={"ollama": {"base_url": server.url}}, max_retries=0) as client:
            client.complete("hi", model="ollama/qwen3", reasoning="none")
            client.complete("hi", model="ollama/qwen3", reasoning="max")
            client.complete("hi", model="ollama/gpt-oss", reasoning="high")
            for effort in ("none", "minimal", "xhigh", "max"):
                with pytest.raises(UnsupportedFeatureError, match=f"reasoning={effort!r}: gpt-oss on Ollama takes"):
                    client.complete("hi", model="ollama/gpt-oss", reasoning=effort)
        chats = [r.json() for r in server.requests if r.path == "/api/chat"]
    assert [(c["model"], c["think"]) for c in chats] == [("qwen3", False), ("qwen3", True), ("gpt-oss", "high")]


# == llama.cpp and unknown models ==================================================================
def test_llamacpp_refuses_reasoning_rather_than_drop_it() -> None:
    from fmclient.providers.llamacpp import build_params
    from fmclient.types import Message, Request

    request = Request(model="qwen3-8b.gguf", messages=(Message(role="user", content="hi"),), reasoning="low")
    with pytest.raises(UnsupportedFeatureError, match="cannot set reasoning"):
        build_params(request)


def test_unknown_model_reasoning_is_left_to_the_server() -> None:
    from fmclient.profiles import DEFAULT_PROFILE
    from fmclient.types import Message, Request

    for effort in ("none", "minimal", "low", "medium", "high", "xhigh", "max"):
        request = Request(model="my-model", messages=(Message(role="user", content="hi"),), reasoning=effort)
        DEFAULT_PROFILE.check(request, provider="vllm")  # no family: the server decides


def test_cached_answer_keeps_reasoning_and_replays_it_as_a_chunk() -> None:
    from fmclient.cache import completion_from_json, completion_to_json, replay_chunks
    from fmclient.types import Completion, Usage

    original = Completion(
        text="Hello!", finish_reason="stop", usage=Usage(), model="m", provider="p", reasoning=THOUGHT
    )
    stored = completion_to_json(original)
    assert stored is not None
    restored = completion_from_json(stored)
    assert restored.reasoning == THOUGHT
    assert [(c.reasoning, c.text) for c in replay_chunks(restored)][:2] == [(THOUGHT, ""), ("", "Hello!")]
