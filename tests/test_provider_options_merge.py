"""A provider option never silently replaces what fmclient sent for an argument.

Dict options merge one level deep into what fmclient built (``text={"verbosity": ...}`` keeps the
``text.format`` a ``response_format`` made); a value set from an argument may be repeated but
not changed (two answers to one question are refused before sending, naming both). Checked over
the wire fakes with the real SDKs: the exact body each provider got, or no request at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from fmclient import Client
from fmclient.errors import BadRequestError
from fmclient.providers.llamacpp import build_params as llamacpp_params
from fmclient.types import Message, Request
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}


# == the helper ====================================================================================
def test_merge_provider_options_joins_dicts_and_refuses_changed_values() -> None:
    from fmclient.providers.shared_io import merge_provider_options

    params = {"text": {"format": {"type": "json_schema"}}, "store": False, "reasoning": {"effort": "high"}}
    merged = merge_provider_options(
        params,
        {"text": {"verbosity": "low"}, "store": True, "reasoning": {"effort": "high"}, "new": 1},
        provider="p",
        model="m",
        defaults=("store",),
    )
    assert merged == {
        "text": {"format": {"type": "json_schema"}, "verbosity": "low"},
        "store": True,  # a default fmclient chose: the option replaces it
        "reasoning": {"effort": "high"},  # repeated, not changed
        "new": 1,
    }
    with pytest.raises(BadRequestError, match=r"reasoning\.effort='low' conflicts with 'high'"):
        merge_provider_options(merged, {"reasoning": {"effort": "low"}}, provider="p", model="m")
    with pytest.raises(BadRequestError, match="new=2 conflicts with 1"):
        merge_provider_options(merged, {"new": 2}, provider="p", model="m")
    # headers may carry credentials: a conflict there names the header, never its values
    with pytest.raises(BadRequestError) as refused:
        merge_provider_options(
            {"extra_headers": {"x-api-key": "first-secret"}},
            {"extra_headers": {"x-api-key": "second-secret"}},
            provider="p",
            model="m",
        )
    assert "extra_headers.x-api-key" in str(refused.value) and "secret" not in str(refused.value)


# == OpenAI: the Responses API =====================================================================
@pytest.fixture
def fake(fake_server: FakeServer) -> FakeOpenAI:
    return FakeOpenAI(fake_server)


def openai_client(server: FakeServer) -> Client:
    return Client(
        providers={"openai": {"base_url": server.url + "/v1", "api_key": "sk-test-0123456789"}}, max_retries=0
    )


def test_responses_text_and_reasoning_options_merge_with_fmclients_own(fake: FakeOpenAI) -> None:
    """``text={"verbosity": ...}`` used to replace ``text.format`` (structured output gone) and a
    ``reasoning`` body field replaced ``reasoning.effort``; ``reasoning`` being an argument name,
    that option reaches the body through ``extra_body``, which the SDK lays over the body."""
    fake.answer(Answer('{"n": 3}', model="gpt-5"), Answer('{"n": 3}', model="gpt-5"))
    with openai_client(fake.server) as client:
        done = client.complete(
            "n?",
            model="openai/gpt-5",
            response_format=SCHEMA,
            reasoning="high",
            text={"verbosity": "low"},
            extra_body={"reasoning": {"summary": "detailed"}},
        )
        client.complete("n?", model="openai/gpt-5", response_format=SCHEMA, store=True)
    first, second = fake.bodies("/responses")
    assert first["text"]["verbosity"] == "low"
    assert first["text"]["format"]["type"] == "json_schema"  # structured output kept
    assert first["reasoning"] == {"effort": "high", "summary": "detailed"}  # effort kept, summary replaced
    assert done.parsed == {"n": 3}
    assert second["store"] is True  # store is fmclient's default, not an argument


def test_responses_option_changing_an_argument_is_refused_before_sending(fake: FakeOpenAI) -> None:
    with openai_client(fake.server) as client:
        with pytest.raises(BadRequestError, match=r"reasoning\.effort='low' conflicts with 'high'"):
            client.complete("n?", model="openai/gpt-5", reasoning="high", extra_body={"reasoning": {"effort": "low"}})
        with pytest.raises(BadRequestError, match=r"text\.format="):
            client.complete("n?", model="openai/gpt-5", response_format=SCHEMA, text={"format": {"type": "text"}})
        with pytest.raises(BadRequestError, match="max_output_tokens=10 conflicts with 20"):
            client.complete("n?", model="openai/gpt-5", max_tokens=20, max_output_tokens=10)
    assert fake.server.requests == []


def test_chat_completions_options_cannot_change_arguments(fake: FakeOpenAI) -> None:
    fake.answer(Answer("ok"))
    with openai_client(fake.server) as client:
        with pytest.raises(BadRequestError, match="max_completion_tokens=9 conflicts with 5"):
            client.complete("n?", model="openai/gpt-5", api="chat", max_tokens=5, max_completion_tokens=9)
        with pytest.raises(BadRequestError, match="response_format="):
            client.complete(
                "n?", model="openai/gpt-4o", response_format=SCHEMA, extra_body={"response_format": {"type": "text"}}
            )
        assert fake.server.requests == []
        client.complete("n?", model="openai/gpt-4o", max_tokens=5, seed=7, extra_body={"max_tokens": 5})
    [sent] = fake.bodies()
    assert (sent["max_tokens"], sent["seed"]) == (5, 7)


# == Anthropic =====================================================================================
def anthropic_client(server: FakeServer) -> Client:
    return Client(providers={"anthropic": {"base_url": server.url, "api_key": "test-key-anthropic"}}, max_retries=0)


def test_anthropic_options_join_and_never_replace(fake_server: FakeServer) -> None:
    fake_server.queue(fa.message_reply('{"n": 3}'))
    with anthropic_client(fake_server) as client:
        with pytest.raises(BadRequestError, match=r"stop_sequences=\['X'\] conflicts with \['END'\]"):
            client.complete("n?", model="anthropic/claude-sonnet-4-5", stop=["END"], stop_sequences=["X"])
        with pytest.raises(BadRequestError, match=r"output_config\.format="):
            client.complete(
                "n?", model="anthropic/claude-sonnet-4-5", response_format=SCHEMA, output_config={"format": None}
            )
        assert fake_server.requests == []
        client.complete(
            "n?",
            model="anthropic/claude-sonnet-4-5",
            response_format=SCHEMA,
            output_config={"effort": "low"},
            metadata={"user_id": "u-1"},
        )
    [sent] = (r.json() for r in fake_server.requests)
    assert sent["output_config"]["effort"] == "low" and sent["output_config"]["format"]["type"] == "json_schema"
    assert sent["metadata"] == {"user_id": "u-1"}


# == Bedrock =======================================================================================
@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.fakes.bedrock import FakeBedrock

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with FakeBedrock() as server:
        yield server


def test_bedrock_options_join_and_never_replace(bedrock: Any) -> None:
    from tests.fakes import bedrock as fb

    model = "bedrock/us.anthropic.claude-opus-5-5-v1:0"
    bedrock.queue(fb.converse_reply(text="ok"))
    with Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0) as client:
        with pytest.raises(BadRequestError, match=r"additionalModelRequestFields\.output_config="):
            client.complete(
                "hi",
                model=model,
                reasoning="max",
                additionalModelRequestFields={"output_config": {"effort": "low"}},
            )
        with pytest.raises(BadRequestError, match=r"inferenceConfig\.maxTokens=10 conflicts with 20"):
            client.complete("hi", model=model, max_tokens=20, inferenceConfig={"maxTokens": 10})
        assert bedrock.requests == []
        client.complete(
            "hi",
            model=model,
            max_tokens=20,
            inferenceConfig={"stopSequences": ["X"]},
            performanceConfig={"latency": "optimized"},
        )
    [sent] = bedrock.bodies()
    assert sent["inferenceConfig"] == {"maxTokens": 20, "stopSequences": ["X"]}
    assert sent["performanceConfig"] == {"latency": "optimized"}


# == Gemini ========================================================================================
def test_gemini_config_options_join_and_never_replace(fake_server: FakeServer) -> None:
    fake_server.queue(fg.generate_reply('{"n": 3}'))
    client = Client(providers={"gemini": {"base_url": fake_server.url, "api_key": "test-key-gemini"}}, max_retries=0)
    with client:
        with pytest.raises(BadRequestError, match="max_output_tokens=10 conflicts with 20"):
            client.complete("n?", model="gemini/gemini-2.5-flash", max_tokens=20, max_output_tokens=10)
        with pytest.raises(BadRequestError, match="response_mime_type='text/plain'"):
            client.complete(
                "n?", model="gemini/gemini-2.5-flash", response_format=SCHEMA, response_mime_type="text/plain"
            )
        assert fake_server.requests == []
        done = client.complete("n?", model="gemini/gemini-2.5-flash", response_format=SCHEMA, max_tokens=20, seed=3)
    [sent] = (r.json() for r in fake_server.requests)
    config = sent["generationConfig"]
    assert (config["maxOutputTokens"], config["seed"], config["responseMimeType"]) == (20, 3, "application/json")
    assert done.parsed == {"n": 3}


# == Ollama and llama.cpp ==========================================================================
def test_ollama_options_table_joins_the_sampling_options() -> None:
    from tests.fakes.ollama import FakeOllama

    with FakeOllama() as server, Client(providers={"ollama": {"base_url": server.url}}, max_retries=0) as client:
        with pytest.raises(BadRequestError, match=r"options\.temperature=0\.9 conflicts with 0\.1"):
            client.complete("hi", model="ollama/llama3.2", temperature=0.1, options={"temperature": 0.9})
        with pytest.raises(BadRequestError, match="format='json'"):
            client.complete("hi", model="ollama/llama3.2", response_format=SCHEMA, format="json")
        assert [r for r in server.requests if r.path == "/api/chat"] == []
        client.complete("hi", model="ollama/llama3.2", temperature=0.1, options={"num_ctx": 4096}, keep_alive="5m")
        [sent] = [r.json() for r in server.requests if r.path == "/api/chat"]
    assert sent["options"] == {"temperature": 0.1, "num_ctx": 4096}
    assert sent["keep_alive"] == "5m"


def test_llamacpp_options_never_replace_arguments() -> None:
    request = Request(
        model="smollm2", messages=(Message("user", "hi"),), temperature=0.1, provider_options={"temperature": 0.9}
    )
    with pytest.raises(BadRequestError, match=r"temperature=0\.9 conflicts with 0\.1"):
        llamacpp_params(request)
    ok = Request(model="smollm2", messages=(Message("user", "hi"),), temperature=0.1, provider_options={"top_k": 5})
    assert llamacpp_params(ok)["top_k"] == 5


def test_image_and_embedding_bodies_merge_the_same_way() -> None:
    from fmclient.providers.gemini import build_image_params
    from fmclient.providers.ollama import build_embed_params
    from fmclient.types import EmbedRequest, ImageRequest

    # Gemini's image models: http_options join the attempt's timeout, image_config joins the
    # aspect ratio the size set (one level deep), and an option never overrides an argument
    config = build_image_params(
        ImageRequest(
            model="gemini-3.1-flash-image",
            prompt="a cat",
            size="16:9",
            seed=3,
            timeout=2.0,
            provider_options={"http_options": {"headers": {"x-trace": "1"}}, "image_config": {"image_size": "4K"}},
        )
    )["config"]
    assert config["http_options"] == {"timeout": 2000, "headers": {"x-trace": "1"}}
    assert config["image_config"] == {"aspect_ratio": "16:9", "image_size": "4K"}
    with pytest.raises(BadRequestError, match="seed=9 conflicts with 3"):
        build_image_params(
            ImageRequest(model="gemini-3.1-flash-image", prompt="a cat", seed=3, provider_options={"seed": 9})
        )
    # Ollama embeddings: truncate is fmclient's default, the texts are the argument
    body = build_embed_params(EmbedRequest(model="nomic-embed-text", texts=("a",), provider_options={"truncate": True}))
    assert body["truncate"] is True
    with pytest.raises(BadRequestError, match=r"input=\['b'\] conflicts with \['a'\]"):
        build_embed_params(EmbedRequest(model="nomic-embed-text", texts=("a",), provider_options={"input": ["b"]}))
