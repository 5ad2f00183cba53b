"""LangChain's own standard test suite (``langchain-tests``, written by LangChain) run on fmclient's
integration: every unit test, and the integration tests against

* the OpenAI and Anthropic wire fakes, answered by :mod:`tests.fakes.responder` (a rule-based model
  that follows the instructions in each request), through the real SDKs over loopback HTTP;
* the embedded local model (llama.cpp, SmolLM2-135M, real inference on CPU; marked slow).

Tests are turned off only through the suite's documented capability properties, each with its
reason here and in the README's LangChain section.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_tests")

import httpx
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from fmclient import Usage
from fmclient.integrations.langchain import ChatFMClient, FMClientEmbeddings
from tests.fakes.images import small_png
from tests.fakes.responder import CACHE_MIN_WORDS, AnthropicResponder, OpenAIResponder
from tests.fakes.server import FakeServer

# The sample image the suite's image tests download; there is no internet here, so the same URL is
# answered with a PNG made locally (the model call itself is unchanged).
SUITE_IMAGE_URL = (
    "https://raw.githubusercontent.com/langchain-ai/docs/4d11d08b6b0e210bd456943f7a22febbd168b543/"
    "src/images/agentic-rag-output.png"
)


@pytest.fixture
def offline_sample_image(monkeypatch: pytest.MonkeyPatch) -> None:
    real_get = httpx.get

    def get(url: Any, *args: Any, **kwargs: Any) -> httpx.Response:
        if str(url) == SUITE_IMAGE_URL:
            return httpx.Response(200, content=small_png(), request=httpx.Request("GET", url))
        return real_get(url, *args, **kwargs)

    monkeypatch.setattr(httpx, "get", get)


# -- unit tests: all of them ----------------------------------------------------------------------
@pytest.mark.disable_socket
class TestChatFMClientUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatFMClient]:
        return ChatFMClient

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "openai/gpt-4o-mini"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        # fmclient's own variable for the default model.
        return {"FMCLIENT_MODEL": "anthropic/claude-haiku-4-5"}, {}, {"model": "anthropic/claude-haiku-4-5"}


@pytest.mark.disable_socket
class TestFMClientEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[FMClientEmbeddings]:
        return FMClientEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "text-embedding-3-small"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return {"FMCLIENT_EMBEDDING_MODEL": "titan-embed"}, {}, {"model": "titan-embed"}


# -- integration tests on the OpenAI wire fake ----------------------------------------------------
_wire_url: list[str] = []
_wire_config: list[str] = []


@pytest.fixture(scope="module")
def openai_wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAIResponder]:
    # The suite's model-override tests look for the override's name in the answer's model name, so
    # the override is an alias named as its target's id (the shipped aliases no longer include one).
    config = tmp_path_factory.mktemp("wire") / "fmclient.toml"
    config.write_text('[aliases]\ngpt-4o-mini = "openai/gpt-4o-mini"\n')
    with FakeServer() as server:
        responder = OpenAIResponder(server)
        _wire_url.append(server.url)
        _wire_config.append(str(config))
        yield responder
        _wire_url.remove(server.url)
        _wire_config.remove(str(config))


def _wire_params(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "api_key": "sk-fake",
        "base_url": _wire_url[-1],
        "config_path": _wire_config[-1],
        "max_retries": 0,
    }


def _usage_details() -> list[Any]:
    details = ["cache_read_input"]
    # Reported once fmclient's Usage carries reasoning tokens (added alongside this integration).
    if hasattr(Usage(), "reasoning_tokens"):
        details.append("reasoning_output")
    return details


@pytest.mark.usefixtures("openai_wire", "offline_sample_image")
class TestChatFMClientOpenAIWire(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatFMClient]:
        return ChatFMClient

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _wire_params("openai/gpt-4o")

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str | None:
        return "gpt-4o-mini"

    @property
    def supported_usage_metadata_details(self) -> dict[Any, list[Any]]:
        return {"invoke": _usage_details(), "stream": _usage_details()}

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        # A long shared prefix sent twice: the second request reads it from the (fake's) prompt cache.
        llm = ChatFMClient(**self.chat_model_params)
        system = SystemMessage(" ".join(["You answer questions about the solar system."] * (CACHE_MIN_WORDS // 5)))
        llm.invoke([system, HumanMessage("Which planet is largest?")])
        return _invoke(llm, [system, HumanMessage("Which planet is smallest?")], stream=stream)

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> AIMessage:
        # This responder speaks Chat Completions: o3 is pinned there (it defaults to the Responses API).
        llm = ChatFMClient(**{**_wire_params("openai/o3"), "model_kwargs": {"reasoning_effort": "low", "api": "chat"}})
        return _invoke(llm, [HumanMessage("Explain why the sky is blue, step by step.")], stream=stream)


class TestChatFMClientOpenAIWireFunctionCalling(TestChatFMClientOpenAIWire):
    """The same suite with structured output through a forced tool call instead of response_format."""

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "function_calling"}


# -- integration tests on the Anthropic wire fake ---------------------------------------------------
_anthropic_url: list[str] = []


@pytest.fixture(scope="module")
def anthropic_wire() -> Iterator[AnthropicResponder]:
    with FakeServer() as server:
        responder = AnthropicResponder(server)
        _anthropic_url.append(server.url)
        yield responder
        _anthropic_url.remove(server.url)


def _anthropic_details() -> list[Any]:
    details = ["cache_read_input"]
    # Reported once fmclient's Usage carries cache writes (added alongside this integration).
    if hasattr(Usage(), "cache_write_tokens"):
        details.append("cache_creation_input")
    return details


@pytest.mark.usefixtures("anthropic_wire", "offline_sample_image")
class TestChatFMClientAnthropicWire(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatFMClient]:
        return ChatFMClient

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # Claude Sonnet 4.5: the suite forces tool choice, which Sonnet 5.5 (the claude-sonnet alias) refuses.
        return {
            "model": "anthropic/claude-sonnet-4-5",
            "api_key": "sk-ant-fake",
            "base_url": _anthropic_url[-1],
            "max_retries": 0,
        }

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str | None:
        return "claude-haiku"

    @property
    def supported_usage_metadata_details(self) -> dict[Any, list[Any]]:
        return {"invoke": _anthropic_details(), "stream": _anthropic_details()}

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        # The same long prefix twice: the second request reads it from the (fake's) prompt cache.
        llm = ChatFMClient(**self.chat_model_params)
        system = SystemMessage(" ".join([f"You answer questions about the solar system ({stream})."] * (CACHE_MIN_WORDS // 5)))
        _invoke(llm, [system, HumanMessage("Which planet is largest?")], stream=stream)
        return _invoke(llm, [system, HumanMessage("Which planet is smallest?")], stream=stream)

    def invoke_with_cache_creation_input(self, *, stream: bool = False) -> AIMessage:
        # A long prefix seen for the first time is written to the (fake's) prompt cache.
        llm = ChatFMClient(**self.chat_model_params)
        system = SystemMessage(" ".join([f"You write haiku about rivers ({stream})."] * (CACHE_MIN_WORDS // 5)))
        return _invoke(llm, [system, HumanMessage("One haiku, please.")], stream=stream)


def _invoke(llm: ChatFMClient, messages: list[Any], *, stream: bool) -> AIMessage:
    if not stream:
        return llm.invoke(messages)
    full: Any = None
    for chunk in llm.stream(messages):
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


@pytest.mark.usefixtures("openai_wire")
class TestFMClientEmbeddingsOpenAIWire(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[FMClientEmbeddings]:
        return FMClientEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return _wire_params("text-embedding-3-small")


# -- integration tests on the embedded local model (real inference) ---------------------------------
@pytest.mark.slow
class TestChatFMClientEmbeddedModel(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatFMClient]:
        return ChatFMClient

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "llama-local", "max_tokens": 48, "temperature": 0}

    @property
    def has_tool_calling(self) -> bool:
        # fmclient refuses tools on the llama.cpp backend (UnsupportedFeatureError): no tool-call format.
        return False

    @property
    def has_structured_output(self) -> bool:
        # SmolLM2-135M loops inside a free-text JSON string ("a cat is a cat, and a cat is a cat, ...")
        # and never closes it, so no joke validates at any token limit. The same with_structured_output
        # path runs on this model with a bounded schema in test_langchain.py.
        return False

    @property
    def supports_model_override(self) -> bool:
        # One embedded model ships with fmclient: there is no second local model to switch to.
        return False


@pytest.mark.slow
class TestFMClientEmbeddingsEmbeddedModel(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[FMClientEmbeddings]:
        return FMClientEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "llama-local"}
