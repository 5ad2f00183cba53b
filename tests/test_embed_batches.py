"""Embedding retries re-send only the batch that failed, never the whole input, and usage counts
each text once. The client splits the input by what each adapter declares (OpenAI 2048 texts a
request, Gemini 100, Titan one, fanned out); real SDKs over HTTP against the wire fakes, each with
a 429 scripted for exactly one batch."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fmclient import Client
from fmclient.providers.base import EmbedBatching, ProviderSettings
from fmclient.providers.bedrock import BedrockProvider
from fmclient.providers.gemini import EMBED_BATCH_SIZE as GEMINI_BATCH
from fmclient.providers.gemini import GeminiProvider
from fmclient.providers.llamacpp import LlamaCppProvider
from fmclient.providers.ollama import OllamaProvider
from fmclient.providers.openai import EMBED_BATCH_SIZE as OPENAI_BATCH
from fmclient.providers.openai import OpenAIProvider
from fmclient.types import EmbedRequest
from tests.fakes import bedrock as bedrock_fake
from tests.fakes import gemini as gemini_fake
from tests.fakes import ollama as ollama_fake
from tests.fakes import openai as openai_fake
from tests.fakes.server import FakeServer, RecordedRequest, Reply

KEY = "sk-embed-batches-0123456789"


def fail_once(server: FakeServer, is_target: Callable[[RecordedRequest], bool], failure: Reply) -> None:
    """Answer the first request that ``is_target`` picks with ``failure``; everything else as before."""
    answer = server.handler
    assert answer is not None
    lock = threading.Lock()
    failed = [False]

    def handler(request: RecordedRequest) -> Reply:
        with lock:
            fire = not failed[0] and is_target(request)
            failed[0] = failed[0] or fire
        return failure if fire else answer(request)

    server.handler = handler


def words(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)


@pytest.fixture(params=["sync", "async"])
def embed(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``client.embed`` or ``client.aembed`` behind one synchronous call."""

    def call(client: Client, texts: list[str], **kwargs: Any) -> Any:
        if request.param == "sync":
            return client.embed(texts, **kwargs)
        import asyncio

        async def run() -> Any:
            try:
                return await client.aembed(texts, **kwargs)
            finally:
                await client.aclose()

        return asyncio.run(run())

    return call


# -- what each adapter declares ------------------------------------------------------------------
def test_each_adapter_declares_how_it_batches() -> None:
    def settings(kind: str, **options: Any) -> ProviderSettings:
        return ProviderSettings(name=kind, type=kind, options=options)

    assert OpenAIProvider(settings("openai")).embed_batching("text-embedding-3-small") == EmbedBatching(OPENAI_BATCH)
    assert OPENAI_BATCH == 2048
    assert OpenAIProvider(settings("openai", embed_batch_size=16)).embed_batching("x") == EmbedBatching(16)
    assert GeminiProvider(settings("gemini")).embed_batching("gemini-embedding-001") == EmbedBatching(GEMINI_BATCH)
    assert GEMINI_BATCH == 100
    bedrock = BedrockProvider(settings("bedrock", max_workers=5))
    assert bedrock.embed_batching("amazon.titan-embed-text-v2:0") == EmbedBatching(max_texts=1, max_concurrency=5)
    assert OllamaProvider(settings("ollama")).embed_batching("nomic-embed-text") == EmbedBatching()
    assert LlamaCppProvider(settings("llamacpp")).embed_batching("model.gguf") == EmbedBatching(max_texts=1)


# -- OpenAI: batches one after another -------------------------------------------------------------
def test_openai_retry_resends_only_the_failed_batch(
    fake_server: FakeServer, retry_sleeps: list[float], embed: Callable[..., Any]
) -> None:
    fake = openai_fake.FakeOpenAI(fake_server)
    texts = ["alpha", "beta gamma", "delta", "epsilon zeta eta", "theta"]
    fail_once(
        fake_server,
        lambda r: (r.json() or {}).get("input") == texts[2:4],
        openai_fake.error_reply(429, "Rate limit reached", code="rate_limit_exceeded"),
    )
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": KEY, "embed_batch_size": 2}},
        max_retries=2,
    )
    result = embed(client, texts, model="openai/text-embedding-3-small")
    sent = [body["input"] for body in fake.bodies("/embeddings")]
    assert sent == [texts[0:2], texts[2:4], texts[2:4], texts[4:]]  # the throttled batch, and only it, again
    assert result.vectors == [openai_fake.fake_vector(t) for t in texts]
    assert result.usage.input_tokens == words(texts)  # each text counted once
    assert len(retry_sleeps) == 1


# -- Gemini: batches of 100 ------------------------------------------------------------------------
def test_gemini_retry_resends_only_the_failed_batch(
    fake_server: FakeServer, retry_sleeps: list[float], embed: Callable[..., Any]
) -> None:
    fake_server.handler = gemini_fake.embed_handler
    texts = [f"text number {i}" for i in range(2 * GEMINI_BATCH + 50)]

    def first_text(request: RecordedRequest) -> str:
        return str(request.json()["requests"][0]["content"]["parts"][0]["text"])

    fail_once(fake_server, lambda r: first_text(r) == texts[100], gemini_fake.error_reply(429, "quota exceeded"))
    client = Client(providers={"gemini": {"base_url": fake_server.url, "api_key": KEY}}, max_retries=2)
    result = embed(client, texts, model="gemini/gemini-embedding-001")
    sent = [(first_text(r), len(r.json()["requests"])) for r in fake_server.requests]
    assert sent == [(texts[0], 100), (texts[100], 100), (texts[100], 100), (texts[200], 50)]
    assert result.vectors == [gemini_fake.fake_vector(t) for t in texts]
    assert len(retry_sleeps) == 1


# -- Bedrock Titan: one text per request, fanned out -----------------------------------------------
@pytest.fixture
def titan() -> Iterator[bedrock_fake.FakeBedrock]:
    with bedrock_fake.FakeBedrock() as server:
        yield server


def test_titan_retry_resends_only_the_failed_text(
    titan: bedrock_fake.FakeBedrock,
    retry_sleeps: list[float],
    embed: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    texts = [f"text number {i}" for i in range(12)]
    fail_once(
        titan.server,
        lambda r: (r.json() or {}).get("inputText") == texts[7],
        bedrock_fake.error_reply("ThrottlingException", "Too many requests, please wait before trying again."),
    )
    titan.delay = 0.02  # keeps several texts in flight at once
    client = Client(
        providers={"bedrock": {"base_url": titan.url, "region": "us-east-1", "max_workers": 4}}, max_retries=2
    )
    model = "amazon.titan-embed-text-v2:0"
    result = embed(client, texts, model=f"bedrock/{model}", dimensions=256)
    sent = Counter(body["inputText"] for body in titan.bodies("InvokeModel"))
    assert sent == Counter({**dict.fromkeys(texts, 1), texts[7]: 2})  # 13 requests: one text re-sent
    assert result.vectors == [bedrock_fake.embedding_for(t, 256, True) for t in texts]
    assert result.usage.input_tokens == words(texts)  # the fake counts words; each text once
    assert 1 < titan.max_in_flight <= 4
    assert len(retry_sleeps) == 1


def test_titan_failure_for_good_stops_the_fan_out(
    titan: bedrock_fake.FakeBedrock, retry_sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmclient import BadRequestError

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    texts = [f"text number {i}" for i in range(40)]
    fail_once(
        titan.server,
        lambda r: (r.json() or {}).get("inputText") == texts[1],
        bedrock_fake.error_reply("ValidationException", "Malformed input request"),
    )
    client = Client(
        providers={"bedrock": {"base_url": titan.url, "region": "us-east-1", "max_workers": 2}}, max_retries=2
    )
    with pytest.raises(BadRequestError):
        client.embed(texts, model="bedrock/amazon.titan-embed-text-v2:0")
    assert len(titan.requests) < len(texts)  # nothing new started after the failure
    assert retry_sleeps == []  # a 400 is not retried


# -- Ollama: the whole input is one batch ----------------------------------------------------------
def test_ollama_sends_one_batch_and_its_retry_resends_that_batch(
    retry_sleeps: list[float], embed: Callable[..., Any]
) -> None:
    texts = ["one", "two words", "three"]
    with ollama_fake.FakeOllama() as server:
        fail_once(server, lambda r: r.path == "/api/embed", Reply(status=503, body={"error": "server busy"}))
        client = Client(providers={"ollama": {"base_url": server.url}}, max_retries=2)
        result = embed(client, texts, model="ollama/nomic-embed-text")
        sent = [r.json()["input"] for r in server.requests if r.path == "/api/embed"]
    assert sent == [texts, texts]
    assert result.vectors == [ollama_fake.fake_vector(t, i) for i, t in enumerate(texts)]
    assert result.usage.input_tokens == words(texts)


# -- llama.cpp: the real embedded model, one text per call ---------------------------------------
@pytest.mark.slow
def test_llamacpp_retry_redoes_only_the_failed_text(retry_sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    """No wire here (the model runs in-process): a retryable failure is injected on one text, and
    the adapter's calls are counted, to show the retry redoes that text alone."""
    from fmclient import ServiceUnavailableError

    texts = ["the cat sat on the mat", "quarterly revenue grew", "a third text"]
    client = Client(model="llama-local")  # the default embedding model is the embedded one too
    adapter = client.provider("llamacpp")
    real_embed = adapter.embed
    seen: list[tuple[str, ...]] = []

    def embed_once_failing(request: Any) -> Any:
        seen.append(request.texts)
        if request.texts == (texts[1],) and seen.count((texts[1],)) == 1:
            raise ServiceUnavailableError("busy", provider="llamacpp", model=request.model)
        return real_embed(request)

    monkeypatch.setattr(adapter, "embed", embed_once_failing)
    result = client.embed(texts)
    assert seen == [(texts[0],), (texts[1],), (texts[1],), (texts[2],)]
    model = client.resolve(None).model
    alone = [real_embed(EmbedRequest(model=model, texts=(text,))) for text in texts]
    assert len(result.vectors) == 3
    for vector, one in zip(result.vectors, alone, strict=True):
        assert vector == pytest.approx(one.vectors[0])
    assert result.usage.input_tokens == sum(one.usage.input_tokens for one in alone)
    assert len(retry_sleeps) == 1
    client.close()
