"""Completion.cost / Embeddings.cost: priced offline from genai-prices, each token once.

Expected amounts are worked out here from the table's own per-million prices, token class by
token class, so a cache token priced twice (or reasoning tokens added on top of the output) shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import fmclient
from fmclient import Client, Completion
from fmclient import pricing as pricing_module
from fmclient.pricing import Cost, PriceRef, Unpriced, model_prices, price_data_version, price_usage
from fmclient.testing import MockProvider
from fmclient.types import Usage
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes.bedrock import FakeBedrock, converse_reply, converse_usage
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer

MILLION = Decimal(1_000_000)
FMCLIENT = shutil.which("fmclient", path=str(Path(sys.executable).parent)) or "fmclient"


def table(provider_id: str, model: str) -> Any:
    """The table's prices in force today for a model (genai-prices' own ModelPrice)."""
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    return info.get_prices(datetime.now(tz=timezone.utc))


def openai_client(server: FakeServer) -> Client:
    # The fake's host is no priced provider's: the config says whose prices apply.
    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')
    return Client(providers={"openai": {"base_url": server.url + "/v1", "api_key": "sk-test"}})


# -- each token class priced once ----------------------------------------------------------------
def test_anthropic_cache_reads_and_writes_are_priced_once(fake_server: FakeServer) -> None:
    usage = fa.usage(100, 42, cache_creation_input_tokens=300, cache_read_input_tokens=600)
    fake_server.queue(fa.message_reply("Paris.", usage_=usage))
    client = Client(providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}})
    reply = client.complete("Capital of France?", model="anthropic/claude-sonnet-4-6")
    assert reply.usage == Usage(1000, 42, cached_input_tokens=600, cache_write_tokens=300)

    p = table("anthropic", "claude-sonnet-4-6")
    expected_input = (100 * p.input_mtok + 600 * p.cache_read_mtok + 300 * p.cache_write_mtok) / MILLION
    assert reply.cost == Cost(
        total=expected_input + 42 * p.output_mtok / MILLION,
        input=expected_input,
        output=42 * p.output_mtok / MILLION,
    )
    # Counting the cache tokens as plain input as well would have cost this much more:
    double_counted = expected_input + 900 * p.input_mtok / MILLION
    assert reply.cost is not None and reply.cost.input != double_counted
    assert reply.cost_reason is None


def test_openai_cached_and_reasoning_tokens(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("Paris.", prompt_tokens=1000, completion_tokens=42, cached_tokens=600, reasoning_tokens=30))
    reply = openai_client(fake_server).complete("Capital of France?", model="openai/gpt-4o")
    assert reply.model == "gpt-4o-2024-08-06"  # the dated id that answered is found in the table
    p = table("openai", "gpt-4o")
    assert reply.cost is not None
    assert reply.cost.input == (400 * p.input_mtok + 600 * p.cache_read_mtok) / MILLION
    # Reasoning tokens are part of the 42 output tokens, not 30 more.
    assert reply.cost.output == 42 * p.output_mtok / MILLION


def test_gemini_thoughts_are_output_and_cached_content_is_cheaper(fake_server: FakeServer) -> None:
    fake_server.queue(fg.generate_reply("Paris.", usage=fg.usage_metadata(1000, 22, thoughts=20, cached=600)))
    client = Client(providers={"gemini": {"base_url": fake_server.url, "api_key": "gemini-test-key"}})
    reply = client.complete("Capital of France?", model="gemini/gemini-2.5-flash")
    # The fake answers as "gemini-2.5-flash-001", which the table does not list: the id asked
    # for prices it.
    assert reply.model == fg.DEFAULT_MODEL_VERSION
    p = table("google", "gemini-2.5-flash")
    assert reply.cost is not None
    assert reply.cost.input == (400 * p.input_mtok + 600 * p.cache_read_mtok) / MILLION
    assert reply.cost.output == 42 * p.output_mtok / MILLION


def test_vertex_ai_is_priced_from_googles_table(fake_server: FakeServer) -> None:
    fake_server.queue(fg.generate_reply("Paris.", usage=fg.usage_metadata(1000, 40)))
    vertex = {"type": "gemini", "base_url": fake_server.url, "api_key": "k", "vertexai": True, "api_version": "v1"}
    reply = Client(providers={"vertex": vertex}).complete("Capital?", model="vertex/gemini-2.5-flash")
    assert fake_server.requests[0].path.startswith("/v1/publishers/google/models/")
    p = table("google", "gemini-2.5-flash")
    assert reply.cost is not None and reply.cost.total == (1000 * p.input_mtok + 40 * p.output_mtok) / MILLION


def test_bedrock_uses_bedrocks_own_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    with FakeBedrock() as bedrock:
        bedrock.queue(converse_reply(text="Paris.", usage=converse_usage(100, 42, cache_read=600, cache_write=300)))
        client = Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}})
        reply = client.complete("Capital?", model=f"bedrock/{model}")
    aws = table("aws", model)
    direct = table("anthropic", "claude-sonnet-4-5")
    assert aws.input_mtok != direct.input_mtok  # Bedrock's regional price differs from Anthropic's own
    assert reply.cost is not None
    assert reply.cost.input == (100 * aws.input_mtok + 600 * aws.cache_read_mtok + 300 * aws.cache_write_mtok) / MILLION
    assert reply.cost.output == 42 * aws.output_mtok / MILLION


# -- one-hour cache writes, cache writes on Chat Completions (issue 19, items 1-2) ----------------
def test_anthropic_one_hour_cache_writes_are_priced_at_the_one_hour_price(fake_server: FakeServer) -> None:
    """Opus 4.6, 100k tokens written to the one-hour cache: $1.00, not the 5-minute $0.625."""
    usage = {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 100_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 100_000, "ephemeral_5m_input_tokens": 0},
    }
    fake_server.queue(fa.message_reply("ok", model="claude-opus-4-6", usage_=usage))
    client = Client(providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}})
    reply = client.complete("Long document...", model="anthropic/claude-opus-4-6")
    p = table("anthropic", "claude-opus-4-6")
    assert reply.usage == Usage(100_000, 0, cache_write_tokens=100_000, cache_write_1h_tokens=100_000)
    assert reply.cost is not None and reply.cost.total == 100_000 * p.cache_write_1h_mtok / MILLION == Decimal(1)


def test_bedrock_cache_details_price_each_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    usage = converse_usage(100, 0, cache_write=300, cache_write_1h=200)
    with FakeBedrock() as bedrock:
        bedrock.queue(converse_reply(text="ok", usage=usage))
        client = Client(providers={"bedrock": {"base_url": bedrock.url, "region": "us-east-1"}})
        reply = client.complete("Capital?", model=f"bedrock/{model}")
    aws = table("aws", model)
    assert reply.usage == Usage(400, 0, cache_write_tokens=300, cache_write_1h_tokens=200)
    expected = (100 * aws.input_mtok + 100 * aws.cache_write_mtok + 200 * aws.cache_write_1h_mtok) / MILLION
    assert reply.cost is not None and reply.cost.input == expected


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_chat_completions_cache_writes_are_priced_as_writes(fake_server: FakeServer, stream: bool) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(
        Answer(
            "Paris.",
            model="gpt-6-sol",
            prompt_tokens=1000,
            completion_tokens=42,
            cached_tokens=600,
            cache_write_tokens=300,
        )
    )
    client = openai_client(fake_server)
    if stream:
        with client.stream("Capital?", model="openai/gpt-6-sol", api="chat") as chunks:
            "".join(chunk.text for chunk in chunks)
        reply = chunks.completion
    else:
        reply = client.complete("Capital?", model="openai/gpt-6-sol", api="chat")
    assert fake_server.requests[0].path == "/v1/chat/completions"
    assert reply.usage.cache_write_tokens == 300
    import genai_prices

    def priced(**writes: int) -> Decimal:
        usage = genai_prices.Usage(input_tokens=1000, output_tokens=42, cache_read_tokens=600, **writes)
        return genai_prices.calc_price(usage, "gpt-6-sol", provider_id="openai").total_price

    assert priced(cache_write_tokens=300) != priced()  # a write is priced apart on this model
    assert reply.cost is not None and reply.cost.total == priced(cache_write_tokens=300)


# -- what changes the price of the same tokens (issue 19, item 4) --------------------------------
@pytest.mark.parametrize("tier", ["flex", "priority"])
def test_openai_service_tier_is_priced_at_that_tiers_price(fake_server: FakeServer, tier: str) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("Paris.", model="gpt-5", prompt_tokens=1000, completion_tokens=42, service_tier=tier))
    reply = openai_client(fake_server).complete("Capital?", model="openai/gpt-5", service_tier=tier)
    assert fake_server.requests[0].json()["service_tier"] == tier  # sent as asked
    assert reply.usage.service_tier == tier
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model("gpt-5", None, "openai", None)
    p = info.get_prices(datetime.now(tz=timezone.utc), {"service_tier": tier})
    standard = table("openai", "gpt-5")
    assert p.input_mtok != standard.input_mtok
    assert reply.cost == Cost(
        (1000 * p.input_mtok + 42 * p.output_mtok) / MILLION,
        1000 * p.input_mtok / MILLION,
        42 * p.output_mtok / MILLION,
    )


def test_a_tier_the_table_has_no_price_for_is_unknown_not_standard(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("Paris.", service_tier="flex"))
    reply = openai_client(fake_server).complete("Capital?", model="openai/gpt-4o", service_tier="flex")
    assert reply.cost is None
    assert reply.cost_reason is not None and "service_tier 'flex'" in reply.cost_reason


@pytest.mark.parametrize(
    ("fields", "named"),
    [({"service_tier": "priority"}, "service_tier 'priority'"), ({"speed": "fast"}, "speed 'fast'")],
    ids=["priority-tier", "fast-mode"],
)
def test_anthropic_priority_tier_and_fast_mode_without_a_price_are_unknown(
    fake_server: FakeServer, fields: dict[str, str], named: str
) -> None:
    fake_server.queue(fa.message_reply("Paris.", model="claude-opus-4-6", usage_={**fa.usage(100, 42), **fields}))
    client = Client(providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}})
    reply = client.complete("Capital?", model="anthropic/claude-opus-4-6")
    assert reply.cost is None and reply.cost_reason is not None and named in reply.cost_reason


def test_anthropic_fast_mode_is_priced_where_the_table_has_it() -> None:
    fast = price_usage(PriceRef("anthropic"), ("claude-opus-4-8",), Usage(1000, 100, speed="fast"), None)
    standard = price_usage(PriceRef("anthropic"), ("claude-opus-4-8",), Usage(1000, 100), None)
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model("claude-opus-4-8", None, "anthropic", None)
    p = info.get_prices(datetime.now(tz=timezone.utc), {"speed": "fast"})
    assert isinstance(fast, Cost) and isinstance(standard, Cost) and fast.total > standard.total
    assert fast.total == (1000 * p.input_mtok + 100 * p.output_mtok) / MILLION


def test_a_long_prompt_on_a_host_without_the_makers_long_context_tier_is_unknown() -> None:
    """Anthropic's table has Sonnet 4.5's >200k tier; Bedrock's prices it flat: above the tier
    the Bedrock price is not trusted. Below it, and on Anthropic itself, it is priced."""
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    above = price_usage(PriceRef("bedrock"), (model,), Usage(250_000, 10), None)
    assert isinstance(above, Unpriced) and "long-context price tier (200000 tokens)" in above.reason
    assert isinstance(price_usage(PriceRef("bedrock"), (model,), Usage(150_000, 10), None), Cost)
    direct = price_usage(PriceRef("anthropic"), ("claude-sonnet-4-5",), Usage(250_000, 10), None)
    p = table("anthropic", "claude-sonnet-4-5")
    assert isinstance(direct, Cost) and direct.input == 250_000 * p.input_mtok.tiers[0].price / MILLION


def test_one_hour_writes_on_a_model_without_a_one_hour_price_are_unknown() -> None:
    found = price_usage(
        PriceRef("bedrock"),
        ("anthropic.claude-sonnet-4-20250514-v1:0",),
        Usage(1000, 10, cache_write_tokens=500, cache_write_1h_tokens=100),
        None,
    )
    assert isinstance(found, Unpriced) and "one-hour cache-write price" in found.reason


def test_provider_batch_prices_one_hour_writes_at_the_batch_one_hour_price() -> None:
    from fmclient.pricing import price_batch_usage

    usage = Usage(100_000, 0, cache_write_tokens=100_000, cache_write_1h_tokens=100_000, service_tier="batch")
    cost, note = price_batch_usage(PriceRef("anthropic"), ("claude-opus-4-6",), usage, None)
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model("claude-opus-4-6", None, "anthropic", None)
    p = info.get_prices(datetime.now(tz=timezone.utc), {"processing": "batch"})
    assert note is None and cost is not None and cost.total == 100_000 * p.cache_write_1h_mtok / MILLION


def test_compatible_server_priced_by_its_host() -> None:
    mistral = PriceRef("openai", "https://api.mistral.ai/v1")
    cost = price_usage(mistral, ("mistral-large-latest",), Usage(1000, 100), None)
    p = table("mistral", "mistral-large-latest")
    assert cost == Cost(
        (1000 * p.input_mtok + 100 * p.output_mtok) / MILLION,
        1000 * p.input_mtok / MILLION,
        100 * p.output_mtok / MILLION,
    )


def test_embeddings_cost(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    result = openai_client(fake_server).embed(["one two three", "four five"], model="openai/text-embedding-3-small")
    assert result.usage.input_tokens == 5
    p = table("openai", "text-embedding-3-small")
    assert result.cost == Cost(5 * p.input_mtok / MILLION, 5 * p.input_mtok / MILLION, Decimal(0))


def test_streams_final_completion_is_priced(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("Paris is the capital.", prompt_tokens=1000, completion_tokens=42))
    with openai_client(fake_server).stream("Capital?", model="openai/gpt-4o") as stream:
        for _ in stream:
            pass
    p = table("openai", "gpt-4o")
    assert stream.completion.cost is not None
    assert stream.completion.cost.total == (1000 * p.input_mtok + 42 * p.output_mtok) / MILLION


def test_the_mock_is_priced_as_the_model_it_stands_in_for() -> None:
    with MockProvider() as mock:
        mock.add_reply("ok", usage=Usage(1000, 100))
        reply = Client().complete("hi", model="openai/gpt-4o")
    p = table("openai", "gpt-4o")
    assert reply.provider == "mock"
    assert reply.cost is not None and reply.cost.total == (1000 * p.input_mtok + 100 * p.output_mtok) / MILLION


# -- unknown is None with a reason, never 0 ------------------------------------------------------
def test_unknown_model_is_none_with_the_reason(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("hi", model="gpt-from-the-future-9"))
    reply = openai_client(fake_server).complete("hi", model="openai/gpt-from-the-future-9")
    assert reply.usage.total_tokens > 0
    assert reply.cost is None
    assert reply.cost_reason is not None and "gpt-from-the-future-9" in reply.cost_reason
    data = reply.to_dict()
    assert data["cost"] is None and data["cost_reason"] == reply.cost_reason


def test_unknown_compatible_server_is_not_guessed(fake_server: FakeServer) -> None:
    # gpt-oss-120b is in OpenAI's table, but a self-hosted one does not cost OpenAI's price.
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("hi", model="gpt-oss-120b"))
    client = Client(providers={"vllm": {"type": "openai", "base_url": fake_server.url + "/v1"}})
    reply = client.complete("hi", model="vllm/gpt-oss-120b")
    assert reply.cost is None
    assert reply.cost_reason is not None and "127.0.0.1" in reply.cost_reason and "[prices]" in reply.cost_reason


def test_a_server_chosen_by_openai_base_url_is_not_priced_as_openai(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same server as above, reached through the SDK's own variable instead of base_url.
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("hi", model="gpt-oss-120b"))
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.url + "/v1")
    client = Client(providers={"openai": {"api_key": "sk-cost-test"}})
    reply = client.complete("hi", model="openai/gpt-oss-120b")
    assert len(fake_server.requests) == 1
    assert reply.cost is None
    assert reply.cost_reason is not None and "127.0.0.1" in reply.cost_reason and "[prices]" in reply.cost_reason


def test_prices_table_can_say_none() -> None:
    found = price_usage(PriceRef("openai", None, "none"), ("gpt-4o",), Usage(10, 10), None)
    assert isinstance(found, Unpriced) and "[prices]" in found.reason


def test_local_models_cost_zero_and_unknown_types_none() -> None:
    assert price_usage(PriceRef("llamacpp"), ("smollm2",), Usage(100, 10), None) == Cost(
        Decimal(0), Decimal(0), Decimal(0)
    )
    found = price_usage(PriceRef("mock"), ("echo",), Usage(100, 10), None)
    assert isinstance(found, Unpriced) and "'mock'" in found.reason


def test_a_completion_made_outside_a_client_says_why_it_has_no_cost() -> None:
    bare = Completion(text="", finish_reason="stop", usage=Usage(1, 1), model="gpt-4o", provider="openai")
    assert bare.cost is None and bare.cost_reason is not None and "Client" in bare.cost_reason


def test_without_the_extra_cost_is_none_and_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing_module, "_loaded", None)
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # import genai_prices now fails
    with MockProvider() as mock:
        mock.add_reply("ok", usage=Usage(1000, 100))
        reply = Client().complete("hi", model="openai/gpt-4o")
    assert reply.cost is None
    assert reply.cost_reason == 'cost unknown: install the price table: pip install "fmclient[cost]"'
    assert price_data_version() is None


# -- cheap: nothing is priced on the path of a call ----------------------------------------------
def test_cost_is_worked_out_on_first_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    real = pricing_module.price_usage

    def counting(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(pricing_module, "price_usage", counting)
    with MockProvider() as mock:
        mock.add_reply("ok", usage=Usage(1000, 100))
        reply = Client().complete("hi", model="openai/gpt-4o")
    assert calls == []  # the call itself priced nothing
    first = reply.cost
    assert reply.cost is first and reply.cost_reason is None
    assert len(calls) == 1
    ref, models, at = calls[0][0], calls[0][1], calls[0][3]
    assert ref == PriceRef("openai", None, None) and models == ("gpt-4o",)
    assert abs(at - datetime.now(tz=timezone.utc).timestamp()) < 60  # priced as of the call


def test_cost_type_is_exported_lazily_and_adds_up() -> None:
    assert fmclient.Cost is Cost
    one = Cost(Decimal("0.1"), Decimal("0.04"), Decimal("0.06"))
    assert (one + one).total == Decimal("0.2")
    assert one.to_dict() == {"total": 0.1, "input": 0.04, "output": 0.06, "currency": "USD"}
    with pytest.raises(ValueError, match="EUR"):
        one + Cost(Decimal(1), Decimal(1), Decimal(0), currency="EUR")


def test_model_prices_per_million() -> None:
    found = model_prices(PriceRef("openai"), "gpt-4o")
    p = table("openai", "gpt-4o")
    assert found == (p.input_mtok, p.output_mtok, False)
    assert isinstance(model_prices(PriceRef("openai"), "no-such-model"), Unpriced)


# -- the command line ------------------------------------------------------------------------------
def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FMCLIENT, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_cli_complete_json_includes_the_cost(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("Paris.", prompt_tokens=1000, completion_tokens=40))
    Path("fmclient.toml").write_text(
        f'[prices]\nopenai = "openai"\n[providers.openai]\nbase_url = "{fake_server.url}/v1"\napi_key = "sk-test"\n'
    )
    out = cli("complete", "Capital?", "-m", "openai/gpt-4o", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    p = table("openai", "gpt-4o")
    expected = (1000 * p.input_mtok + 40 * p.output_mtok) / MILLION
    assert data["cost"] == {
        "total": float(expected),
        "input": float(1000 * p.input_mtok / MILLION),
        "output": float(40 * p.output_mtok / MILLION),
        "currency": "USD",
    }
    assert data["cost_reason"] is None


def test_cli_models_shows_prices_and_the_price_data_version() -> None:
    # An alias of a model the price table knows (the shipped ones may be newer than it).
    out = cli("models", env={"FMCLIENT_ALIAS_PRICED": "openai/gpt-4o"})
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if " priced " in f" {line} ")
    p = table("openai", "gpt-4o")
    assert f"in ${p.input_mtok.normalize():f}/M out ${p.output_mtok.normalize():f}/M" in line
    import genai_prices

    assert f"prices: USD per million tokens, genai-prices {genai_prices.__version__}" in out.stdout


@pytest.mark.parametrize(
    ("provider_type", "provider_id", "model"),
    [
        ("anthropic", "anthropic", "claude-sonnet-4-6"),
        ("anthropic", "anthropic", "claude-sonnet-4-5"),  # tiered: above 200k prompt tokens
        ("openai", "openai", "gpt-4o"),
        ("openai", "openai", "o3"),
        ("gemini", "google", "gemini-2.5-flash"),
        ("gemini", "google", "gemini-2.5-pro"),  # tiered
        ("bedrock", "aws", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ],
)
def test_pricing_matches_genai_prices_own_calculation(provider_type: str, provider_id: str, model: str) -> None:
    """fmclient reads per-token prices off genai-prices once per model (fast); the result must be
    what genai-prices itself computes, token kind by token kind, small prompts and huge ones."""
    import random

    import genai_prices

    rng = random.Random(7)
    at = datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp()
    for _ in range(60):
        input_tokens = rng.choice([0, 1, 17, 999, 150_000, 250_000, 1_200_000])
        cached = rng.randint(0, input_tokens)
        written = rng.randint(0, input_tokens - cached)
        written_1h = rng.choice([0, rng.randint(0, written)])
        output = rng.choice([0, 1, 42, 8_000])
        reasoning = rng.randint(0, output)
        usage = Usage(input_tokens, output, cached, written, reasoning, cache_write_1h_tokens=written_1h)
        ours = price_usage(PriceRef(provider_type), (model,), usage, at)
        if provider_type == "bedrock" and input_tokens > 200_000:
            # Bedrock's table prices Sonnet 4.5 flat where Anthropic's has a long-context tier:
            # above it the price is unknown, not the base rate.
            assert isinstance(ours, Unpriced) and "long-context price tier (200000 tokens)" in ours.reason
            continue
        theirs = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=input_tokens,
                output_tokens=output,
                cache_read_tokens=cached,
                cache_write_tokens=written,
                cache_write_1h_tokens=written_1h,
                output_reasoning_tokens=reasoning,
            ),
            model,
            provider_id=provider_id,
            genai_request_timestamp=datetime.fromtimestamp(at, tz=timezone.utc),
        )
        assert ours == Cost(theirs.total_price, theirs.input_price, theirs.output_price), usage


def test_usage_that_does_not_add_up_is_unpriced_not_guessed() -> None:
    found = price_usage(PriceRef("anthropic"), ("claude-sonnet-4-6",), Usage(10, 1, cached_input_tokens=600), None)
    assert isinstance(found, Unpriced) and "cannot exceed" in found.reason


def test_a_hook_reading_the_cost_early_does_not_lose_it() -> None:
    """on_response sees an attempt's answer before the client prices it: reading its cost there
    must not fix it at None for the caller (OpenTelemetryHook reads it for fmclient.cost.usd)."""
    from fmclient import Client
    from fmclient.hooks import AttemptInfo, Hook
    from fmclient.testing import MockProvider

    seen: list[object] = []

    class ReadsCost(Hook):
        def on_response(self, attempt: AttemptInfo, result: Any) -> None:
            seen.append(result.cost)

        def on_call_end(self, call: Any, result: Any, error: BaseException | None) -> None:
            seen.append(result.cost)

    with MockProvider() as mock:
        mock.add_reply("ok", usage=Usage(input_tokens=1000, output_tokens=100))
        reply = Client(hooks=[ReadsCost()]).complete("hi", model="openai/gpt-4o")
    assert reply.cost is not None and reply.cost.total > 0
    assert seen == [None, reply.cost]  # unknown during the attempt, the price once it is the answer


def test_a_batch_result_that_says_batch_without_a_batch_price_keeps_the_standard_price_and_says_so() -> None:
    """Anthropic's batch results report service_tier "batch": that must not turn the documented
    fallback (standard price, with a note) into an unknown cost."""
    from fmclient.pricing import price_batch_usage

    usage = Usage(1000, 100, service_tier="batch")
    cost, note = price_batch_usage(PriceRef("anthropic"), ("claude-3-haiku-20240307",), usage, None)
    standard = price_usage(PriceRef("anthropic"), ("claude-3-haiku-20240307",), Usage(1000, 100), None)
    assert cost == standard and note is not None and "standard price" in note
