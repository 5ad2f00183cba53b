"""Image generation (Titan Image Generator v2, Nova Canvas, the GPT image models, Gemini's image models) and Titan
multimodal embeddings: real SDKs over the loopback fakes, real PNG bytes decoded."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client, ConfigurationError
from fmclient.errors import (
    BadRequestError,
    ContentFilterError,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedFeatureError,
)
from fmclient.testing import MockProvider
from fmclient.types import ImagePart
from tests.fakes import gemini as gemini_fake
from tests.fakes.bedrock import FakeBedrock, embedding_for, error_reply
from tests.fakes.images import decode_png, generated_png, small_png
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai import error_reply as openai_error
from tests.fakes.server import FakeServer

TITAN = "amazon.titan-image-generator-v2:0"
NOVA = "amazon.nova-canvas-v1:0"
KEY = "sk-test-not-real-0000"


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def bedrock(aws_env: None) -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        yield server


@pytest.fixture
def openai_fake(fake_server: FakeServer) -> FakeOpenAI:
    return FakeOpenAI(fake_server)


def tables(bedrock: FakeBedrock | None = None, openai: FakeServer | None = None, gemini: FakeServer | None = None):  # type: ignore[no-untyped-def]
    providers: dict[str, Any] = {}
    if bedrock is not None:
        providers["bedrock"] = {"base_url": bedrock.url, "region": "us-east-1"}
    if openai is not None:
        providers["openai"] = {"base_url": openai.url + "/v1", "api_key": KEY}
    if gemini is not None:
        # Vertex AI express mode (the image models answer there as on the Gemini API)
        providers["gemini"] = {"base_url": gemini.url, "api_key": KEY, "options": {"vertexai": True}}
    return providers


def body_of(bedrock: FakeBedrock) -> Any:
    (body,) = bedrock.bodies("InvokeModel")
    return body


# -- Titan Image Generator v2 and Nova Canvas on Bedrock -----------------------------------------------
def test_titan_sends_text_image_and_returns_decodable_pngs(bedrock: FakeBedrock) -> None:
    client = Client(providers=tables(bedrock), max_retries=0)
    result = client.generate_image(
        "a red bicycle",
        size="768x1152",
        n=2,
        negative_prompt="people",
        seed=42,
        quality="premium",
        cfg_scale=7.5,
    )
    assert [FakeBedrock.route(r) for r in bedrock.requests] == [(TITAN, "InvokeModel")]
    assert body_of(bedrock) == {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "a red bicycle", "negativeText": "people"},
        "imageGenerationConfig": {
            "numberOfImages": 2,
            "width": 768,
            "height": 1152,
            "quality": "premium",
            "seed": 42,
            "cfgScale": 7.5,
        },
    }
    assert (result.model, result.provider, len(result)) == (TITAN, "bedrock", 2)
    decoded = [decode_png(image.data) for image in result]
    assert [(d.width, d.height) for d in decoded] == [(768, 1152), (768, 1152)]
    assert decoded[0].color != decoded[1].color  # two different images, in the provider's order
    assert result[0].data == generated_png("a red bicycle|42", 0, 768, 1152)
    assert {image.mime_type for image in result} == {"image/png"}
    assert result.images[0].revised_prompt is None and result.usage is None
    assert [a.model for a in result.attempts] == [TITAN]


def test_default_image_model_is_titan_image(bedrock: FakeBedrock) -> None:
    client = Client(providers=tables(bedrock))
    assert client.settings.default_image_model == "titan-image"
    result = client.generate_image("a lighthouse")
    assert FakeBedrock.route(bedrock.requests[0])[0] == TITAN
    assert body_of(bedrock)["imageGenerationConfig"] == {"numberOfImages": 1}
    assert (decode_png(result[0].data).width, decode_png(result[0].data).height) == (1024, 1024)


def test_nova_canvas_takes_any_size_its_rules_allow(bedrock: FakeBedrock) -> None:
    client = Client(providers=tables(bedrock))
    result = client.generate_image("a harbour at dawn", model="nova-canvas", size="1280x720", n=1)
    assert FakeBedrock.route(bedrock.requests[0]) == (NOVA, "InvokeModel")
    assert body_of(bedrock)["imageGenerationConfig"] == {"numberOfImages": 1, "width": 1280, "height": 720}
    decoded = decode_png(result[0].data)
    assert (decoded.width, decoded.height) == (1280, 720)


def test_titan_content_filter_in_a_200_body_raises_and_is_not_retried(bedrock: FakeBedrock) -> None:
    client = Client(providers=tables(bedrock), max_retries=3)
    with pytest.raises(ContentFilterError, match="blocked by our content filters") as caught:
        client.generate_image("forbidden-output scene")
    assert len(bedrock.requests) == 1
    assert caught.value.retryable is False and caught.value.provider == "bedrock"


def test_titan_content_filter_validation_exception_raises_and_is_not_retried(bedrock: FakeBedrock) -> None:
    client = Client(providers=tables(bedrock), max_retries=3)
    with pytest.raises(ContentFilterError, match="ValidationException"):
        client.generate_image("forbidden-input scene")
    assert len(bedrock.requests) == 1


def test_a_429_is_retried_once_then_the_images_come(bedrock: FakeBedrock, retry_sleeps: list[float]) -> None:
    bedrock.queue(error_reply("ThrottlingException", "Too many requests, please wait before trying again."))
    client = Client(providers=tables(bedrock), max_retries=2)
    result = client.generate_image("a kite", size="512x512")
    assert len(bedrock.requests) == 2 and len(retry_sleeps) == 1
    assert bedrock.bodies()[0] == bedrock.bodies()[1]  # the same request re-sent
    assert decode_png(result[0].data).width == 512


def test_retries_exhausted_raise_the_typed_error(bedrock: FakeBedrock, retry_sleeps: list[float]) -> None:
    bedrock.queue(*[error_reply("ThrottlingException", "slow down") for _ in range(2)])
    client = Client(providers=tables(bedrock), max_retries=1)
    with pytest.raises(RateLimitError):
        client.generate_image("a kite")
    assert len(bedrock.requests) == 2


def test_async_generate_image_on_bedrock(bedrock: FakeBedrock) -> None:
    async def run() -> Any:
        async with Client(providers=tables(bedrock)) as client:
            return await client.agenerate_image("a boat", model="titan-image", size="1152x640", n=3)

    result = asyncio.run(run())
    assert len(bedrock.requests) == 1 and body_of(bedrock)["imageGenerationConfig"]["numberOfImages"] == 3
    assert [(decode_png(i.data).width, decode_png(i.data).height) for i in result] == [(1152, 640)] * 3


# -- OpenAI GPT image models -------------------------------------------------------------------
def test_gpt_image_over_the_images_api(fake_server: FakeServer, openai_fake: FakeOpenAI) -> None:
    client = Client(providers=tables(openai=fake_server), max_retries=0)
    result = client.generate_image(
        "a red bicycle", model="gpt-image", size="1536x1024", n=2, quality="high", background="opaque"
    )
    (sent,) = fake_server.requests
    assert sent.path == "/v1/images/generations"
    assert sent.json() == {
        "model": "gpt-image-2.6-sunburst",
        "prompt": "a red bicycle",
        "n": 2,
        "size": "1536x1024",
        "quality": "high",
        "background": "opaque",
    }
    assert [(decode_png(i.data).width, decode_png(i.data).height) for i in result] == [(1536, 1024)] * 2
    assert result.usage is not None and result.usage.input_tokens == 3 and result.usage.output_tokens == 544
    assert (result.provider, result.model) == ("openai", "gpt-image-2.6-sunburst")


def test_gpt_image_async(fake_server: FakeServer, openai_fake: FakeOpenAI) -> None:
    async def run() -> Any:
        async with Client(providers=tables(openai=fake_server)) as client:
            return await client.agenerate_image("a cat", model="gpt-image")

    result = asyncio.run(run())
    assert len(fake_server.requests) == 1 and fake_server.requests[0].json() == {
        "model": "gpt-image-2.6-sunburst",
        "prompt": "a cat",
        "n": 1,
    }
    decoded = decode_png(result[0].data)
    assert (decoded.width, decoded.height) == (1024, 1024)


@pytest.mark.parametrize(
    ("model", "arguments", "made"),
    [
        # gpt-image-2 and later take free sizes: sides a multiple of 16, up to 3840x2160
        ("gpt-image", {"size": "1536x864", "quality": "xhigh"}, (1536, 864)),
        ("gpt-image", {"size": "3840x2160", "quality": "max", "output_format": "webp"}, (3840, 2160)),
        ("openai/gpt-image-2", {"size": "2048x1152", "quality": "high"}, (2048, 1152)),
        ("openai/gpt-image-2.5-flare", {"size": "auto", "quality": "xhigh"}, (1024, 1024)),
    ],
)
def test_gpt_image_2_takes_the_sizes_and_qualities_it_makes(
    fake_server: FakeServer, openai_fake: FakeOpenAI, model: str, arguments: dict[str, Any], made: tuple[int, int]
) -> None:
    # The family was gpt-image-1's: a 1536x864 or xhigh request was refused before sending.
    client = Client(providers=tables(openai=fake_server), max_retries=0)
    result = client.generate_image("a harbour at dawn", model=model, **arguments)
    (sent,) = fake_server.requests
    assert {key: sent.json()[key] for key in arguments} == arguments
    assert (decode_png(result[0].data).width, decode_png(result[0].data).height) == made


def test_gpt_image_2_6_answers_svg_as_svg(fake_server: FakeServer, openai_fake: FakeOpenAI) -> None:
    # SVG is text without a signature to sniff: the answer's output_format names it.
    client = Client(providers=tables(openai=fake_server), max_retries=0)
    result = client.generate_image("a logo", model="gpt-image", output_format="svg")
    assert fake_server.requests[0].json()["output_format"] == "svg"
    assert result[0].mime_type == "image/svg+xml" and result[0].data.startswith(b"<svg")


def test_a_fallback_from_titan_to_gpt_image(
    bedrock: FakeBedrock, fake_server: FakeServer, openai_fake: FakeOpenAI
) -> None:
    bedrock.queue(error_reply("ServiceUnavailableException", "Bedrock is unavailable"))
    client = Client(providers=tables(bedrock, openai=fake_server), max_retries=0)
    result = client.generate_image("a lighthouse", model="titan-image", size="1024x1024", fallbacks=["gpt-image"])
    assert len(bedrock.requests) == 1 and len(fake_server.requests) == 1
    assert result.provider == "openai"
    assert [(a.provider, a.model, type(a.error).__name__) for a in result.attempts] == [
        ("bedrock", TITAN, "ServiceUnavailableError"),
        ("openai", "gpt-image-2.6-sunburst", "NoneType"),
    ]
    assert decode_png(result[0].data).width == 1024


def test_a_fallback_that_cannot_make_the_size_is_skipped_unsent(
    bedrock: FakeBedrock, fake_server: FakeServer, openai_fake: FakeOpenAI
) -> None:
    bedrock.queue(error_reply("ServiceUnavailableException", "Bedrock is unavailable"))
    client = Client(providers=tables(bedrock, openai=fake_server), max_retries=0)
    with pytest.raises(ServiceUnavailableError) as caught:
        client.generate_image(
            "a lighthouse", model="titan-image", size="768x768", fallbacks=["gpt-image"]
        )  # < 655,360 px
    assert len(bedrock.requests) == 1 and fake_server.requests == []
    assert caught.value.attempts[1].skipped and isinstance(caught.value.attempts[1].error, UnsupportedFeatureError)


# -- Gemini's image models through google-genai's generate_content -----------------------------
@pytest.fixture
def gemini_api(fake_server: FakeServer) -> gemini_fake.GeminiAPI:
    api = gemini_fake.GeminiAPI("gemini", api_key=KEY)
    fake_server.handler = api
    return api


def gemini_client(fake_server: FakeServer, **options: Any) -> Client:
    return Client(providers={"gemini": {"base_url": fake_server.url, "api_key": KEY}}, **options)


def sent_generation_config(request: Any) -> Any:
    """The wire body's generationConfig, read by the SDK's own GenerateContentConfig (whose fields the
    wire config carries, in camelCase; extra fields forbidden)."""
    from google.genai import types

    return types.GenerateContentConfig.model_validate(request.json()["generationConfig"])


def test_gemini_image_asks_generate_content_for_images_and_decodes_them(
    fake_server: FakeServer, gemini_api: Any
) -> None:
    client = gemini_client(fake_server, max_retries=0)
    result = client.generate_image("a mountain lake", model="gemini-image", size="16:9")
    (sent,) = fake_server.requests
    assert sent.path.endswith("/models/gemini-3.1-flash-image:generateContent")
    assert sent.json()["contents"] == [{"role": "user", "parts": [{"text": "a mountain lake"}]}]
    config = sent_generation_config(sent)
    assert config.response_modalities == ["IMAGE"]
    assert config.image_config is not None and config.image_config.aspect_ratio == "16:9"
    assert config.image_config.image_size is None and config.candidate_count is None and config.seed is None
    (image,) = result
    assert image.mime_type == "image/png" and result.provider == "gemini" and result.model == "gemini-3.1-flash-image"
    png = decode_png(image.data)
    assert (png.width, png.height) == gemini_fake.gemini_image_size("16:9", "1K")
    # usage from usageMetadata, the image tokens apart
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.output_image_tokens) == (3, 1120, 1120)


def test_a_width_by_height_size_picks_the_ratio_and_the_resolution_that_holds_it(
    fake_server: FakeServer, gemini_api: Any
) -> None:
    client = gemini_client(fake_server, max_retries=0)
    result = client.generate_image("a mountain lake", model="gemini/gemini-3.1-flash-image", size="1920x1080")
    config = sent_generation_config(fake_server.requests[0])
    assert config.image_config is not None
    # 1920x1080 is more than 1K holds (about 1 MP): 2K, never a smaller image than asked for
    assert (config.image_config.aspect_ratio, config.image_config.image_size) == ("16:9", "2K")
    png = decode_png(result[0].data)
    assert png.width >= 1920 and png.height >= 1080
    assert result.usage is not None and result.usage.output_image_tokens == 1680


def test_n_images_are_n_requests_with_n_seeds_and_their_usage_summed(fake_server: FakeServer, gemini_api: Any) -> None:
    client = gemini_client(fake_server, max_retries=0)
    result = client.generate_image("a fox", model="gemini-image", n=3, seed=7)
    assert len(result) == 3 and len(fake_server.requests) == 3
    assert [sent_generation_config(r).seed for r in fake_server.requests] == [7, 8, 9]
    assert len({image.data for image in result}) == 3  # three different images
    # the API's seed is an int32: the next seeds after its largest wrap round, the first is as given
    client.generate_image("a fox", model="gemini-image", n=2, seed=2**31 - 1)
    assert [sent_generation_config(r).seed for r in fake_server.requests[3:]] == [2**31 - 1, 0]
    assert result.usage is not None and result.usage.output_image_tokens == 3 * 1120
    assert isinstance(result.raw, list) and len(result.raw) == 3


def test_gemini_image_on_vertex_ai(fake_server: FakeServer) -> None:
    fake_server.handler = gemini_fake.GeminiAPI("express", api_key=KEY)
    client = Client(providers=tables(gemini=fake_server), max_retries=0)
    result = client.generate_image("a fox", model="gemini-image", size="1024x1024")
    (sent,) = fake_server.requests
    assert sent.path == "/v1beta1/publishers/google/models/gemini-3.1-flash-image:generateContent"
    config = sent_generation_config(sent)
    assert config.image_config is not None
    assert (config.image_config.aspect_ratio, config.image_config.image_size) == ("1:1", "1K")
    assert len(result) == 1 and decode_png(result[0].data).width == 1024


def test_gemini_image_async(fake_server: FakeServer, gemini_api: Any) -> None:
    async def run() -> Any:
        async with gemini_client(fake_server) as client:
            return await client.agenerate_image("a fox", model="gemini-image", size="3:4", n=2)

    result = asyncio.run(run())
    assert len(result) == 2 and len(fake_server.requests) == 2
    assert all(sent_generation_config(r).image_config.aspect_ratio == "3:4" for r in fake_server.requests)
    assert (decode_png(result[1].data).width, decode_png(result[1].data).height) == gemini_fake.gemini_image_size(
        "3:4", "1K"
    )


def test_gemini_image_is_priced_with_its_image_tokens_apart(fake_server: FakeServer, gemini_api: Any) -> None:
    pytest.importorskip("genai_prices")
    from decimal import Decimal

    from fmclient.pricing import PriceRef, price_usage
    from fmclient.types import Cost

    client = gemini_client(fake_server, max_cost=1)
    result = client.generate_image("a fox", model="gemini-image", n=2)
    assert result.cost is not None and result.cost_reason is None
    # genai-prices: gemini-3.1-flash-image, $0.50 per million input tokens, $60 per million image output tokens
    assert result.cost.total == Decimal(2 * 2) * Decimal("0.5") / 1_000_000 + Decimal(2 * 1120) * 60 / 1_000_000
    assert client.spent == result.cost.total
    # Priced as text tokens ($3 per million), as before image tokens were carried apart, the bill
    # would come out at a twentieth of the image price.
    text_only = dataclasses.replace(result.usage, output_image_tokens=0)  # type: ignore[arg-type]
    as_text = price_usage(PriceRef("gemini", None, None), ("gemini-3.1-flash-image",), text_only, None)
    assert isinstance(as_text, Cost) and as_text.total * 10 < result.cost.total


def test_image_tokens_a_model_has_no_image_price_for_leave_the_cost_unknown() -> None:
    pytest.importorskip("genai_prices")
    from fmclient.pricing import PriceRef, Unpriced, price_usage
    from fmclient.types import Usage

    # gemini-3.8-flash has text prices only: billed as text, its image tokens would come out low
    usage = Usage(input_tokens=4, output_tokens=1120, output_image_tokens=1120)
    found = price_usage(PriceRef("gemini", None, None), ("gemini-3.8-flash",), usage, None)
    assert isinstance(found, Unpriced) and "1120 image output tokens" in found.reason


def test_an_image_stopped_for_safety_is_a_content_filter_error_not_retried(
    fake_server: FakeServer, gemini_api: Any
) -> None:
    client = gemini_client(fake_server, max_retries=2)
    with pytest.raises(ContentFilterError, match="IMAGE_SAFETY"):
        client.generate_image("a forbidden scene", model="gemini-image")
    assert len(fake_server.requests) == 1


def test_an_answer_with_text_and_no_image_raises_quoting_it(fake_server: FakeServer, gemini_api: Any) -> None:
    client = gemini_client(fake_server, max_retries=2)
    with pytest.raises(BadRequestError, match="answered no image: Here is a description instead"):
        client.generate_image("a chatty fox", model="gemini-image", n=2)
    assert len(fake_server.requests) == 1  # the first answer failed: the second image was never paid for


def test_a_429_on_one_image_request_is_retried_by_fmclient(
    fake_server: FakeServer, gemini_api: Any, retry_sleeps: list[float]
) -> None:
    gemini_api.queue(gemini_fake.error_reply(429, "Resource exhausted", details=[gemini_fake.retry_info("1s")]))
    client = gemini_client(fake_server, max_retries=1)
    result = client.generate_image("a fox", model="gemini-image")
    assert len(result) == 1 and len(fake_server.requests) == 2 and retry_sleeps == [1.0]


@pytest.mark.parametrize(
    ("model", "vertex"),
    [
        ("gemini/imagen-4.0-generate-001", False),
        ("gemini/imagen-4.0-generate-001", True),  # shut down on Vertex AI too
        ("gemini/imagen-4.0-ultra-generate-001", True),
        ("gemini/gemini-3-pro-image-preview", False),
    ],
)
def test_a_shut_down_image_model_is_refused_unsent_naming_its_successor(
    fake_server: FakeServer, model: str, vertex: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    from fmclient import deprecations

    monkeypatch.setattr(deprecations, "_today", lambda: datetime.date(2026, 12, 7))  # conftest's day is 2024
    options: dict[str, Any] = (
        {"vertexai": True, "project": "p", "location": "us-central1"} if vertex else {"api_key": KEY}
    )
    client = Client(providers={"gemini": {"type": "gemini", "base_url": fake_server.url, **options}})
    with pytest.raises(ConfigurationError, match=r"was retired on 2026-0\d-\d\d: use gemini/gemini-3"):
        client.generate_image("a fox", model=model)
    assert fake_server.requests == []


def test_an_imagen_id_the_retirement_table_does_not_list_is_refused_with_the_reason(fake_server: FakeServer) -> None:
    client = gemini_client(fake_server)
    with pytest.raises(UnsupportedFeatureError, match=r"shut down every Imagen model.*gemini-image"):
        client.generate_image("a fox", model="gemini/imagen-5.0-generate-001")
    assert fake_server.requests == []


def test_the_removed_imagen_alias_is_refused_naming_the_new_one(fake_server: FakeServer) -> None:
    client = gemini_client(fake_server)
    with pytest.raises(ConfigurationError, match=r"the alias 'imagen' was removed: .*use 'gemini-image'"):
        client.generate_image("a fox", model="imagen")
    assert fake_server.requests == []


# -- refused before sending --------------------------------------------------------------------
REFUSALS = [
    ("titan-image", {"size": "1000x1000"}, "cannot make size '1000x1000'"),
    ("titan-image", {"n": 6}, "at most 5 images"),
    ("titan-image", {"quality": "hd"}, "quality='hd'"),
    ("nova-canvas", {"size": "1000x1000"}, "multiple of 16"),
    ("nova-canvas", {"size": "4096x4096"}, "at most 4194304 pixels"),
    ("gpt-image", {"size": "512x512"}, "cannot make size '512x512' (at least 655360 pixels)"),
    ("gpt-image", {"size": "1000x1000"}, "multiple of 16"),
    ("gpt-image", {"size": "3856x1024"}, "each side must be 16 to 3840 pixels"),
    ("gpt-image", {"size": "3840x2176"}, "at most 8294400 pixels"),
    ("gpt-image", {"size": "3072x768"}, "at most 3 times the short one"),
    ("gpt-image", {"size": "16:9"}, "give a size as WIDTHxHEIGHT"),
    ("gpt-image", {"quality": "hd"}, "quality='hd'"),
    ("gpt-image", {"output_format": "bmp"}, "output_format='bmp'"),
    ("openai/gpt-image-2.5-sunburst", {"output_format": "svg"}, "it makes png, jpeg, webp"),
    ("openai/gpt-image-2", {"quality": "xhigh"}, "quality='xhigh'"),
    ("openai/gpt-image-1", {"size": "1536x864"}, "cannot make size '1536x864' (it makes 1024x1024"),
    ("gpt-image", {"n": 11}, "at most 10 images"),
    ("gpt-image", {"seed": 3}, "does not take a seed"),
    ("gpt-image", {"negative_prompt": "blur"}, "does not take a negative prompt"),
    ("gemini-image", {"size": "2:1"}, "aspect ratios 1:1, 3:2"),
    ("gemini-image", {"size": "1000x700"}, "cannot make size '1000x700'"),
    ("gemini-image", {"size": "5120x5120"}, "at most 16777216 pixels"),
    ("gemini-image", {"negative_prompt": "blur"}, "does not take a negative prompt"),
    ("gemini-image", {"quality": "high"}, "does not take a quality"),
    ("titan-text", {}, "does not generate images"),
    ("openai/gpt-4o", {}, "does not generate images"),
]


@pytest.mark.parametrize(("model", "arguments", "message"), REFUSALS)
def test_what_a_model_cannot_make_is_refused_before_sending(
    bedrock: FakeBedrock, fake_server: FakeServer, model: str, arguments: dict[str, Any], message: str
) -> None:
    client = Client(providers=tables(bedrock, openai=fake_server, gemini=fake_server))
    with pytest.raises(UnsupportedFeatureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        client.generate_image("a red bicycle", model=model, **arguments)
    assert bedrock.requests == [] and fake_server.requests == []


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"size": "big"}, ValueError),
        ({"n": 0}, ValueError),
        ({"n": "2"}, TypeError),
        ({"seed": -1}, ValueError),
        ({"negative_prompt": " "}, ValueError),
    ],
)
def test_bad_arguments_fail_before_sending(bedrock: FakeBedrock, arguments: dict[str, Any], error: type) -> None:
    client = Client(providers=tables(bedrock))
    with pytest.raises(error):
        client.generate_image("a kite", **arguments)
    with pytest.raises(ValueError, match="prompt must not be empty"):
        client.generate_image("  ")
    assert bedrock.requests == []


# -- Titan Multimodal Embeddings ---------------------------------------------------------------
def test_titan_multimodal_embeds_text_and_images(bedrock: FakeBedrock, tmp_path: Path) -> None:
    png = small_png(8, 8)
    on_disk = tmp_path / "photo.png"
    on_disk.write_bytes(small_png(2, 2))
    client = Client(providers=tables(bedrock))
    result = client.embed(
        ["a red bicycle", png, ImagePart.from_source(png), on_disk],
        model="titan-embed-image",
        embeddingConfig={"outputEmbeddingLength": 256},
    )
    bodies = sorted(bedrock.bodies("InvokeModel"), key=lambda b: (b.get("inputText", ""), b.get("inputImage", "")))
    config = {"embeddingConfig": {"outputEmbeddingLength": 256}}
    assert len(bedrock.requests) == 4
    assert {"inputText": "a red bicycle", **config} in bodies
    assert bodies.count({"inputImage": base64.b64encode(png).decode(), **config}) == 2
    assert {"inputImage": base64.b64encode(on_disk.read_bytes()).decode(), **config} in bodies
    assert all(FakeBedrock.route(r)[0] == "amazon.titan-embed-image-v1" for r in bedrock.requests)
    assert [len(v) for v in result.vectors] == [256] * 4
    assert result.vectors[0] == embedding_for("a red bicycle", 256)
    assert result.vectors[1] == result.vectors[2] != result.vectors[3]  # input order kept


@pytest.mark.parametrize("model", ["titan-embed", "text-embedding-3-small"])
def test_an_image_to_a_text_embedding_model_is_refused_before_sending(
    bedrock: FakeBedrock, fake_server: FakeServer, model: str
) -> None:
    client = Client(providers=tables(bedrock, openai=fake_server))
    with pytest.raises(UnsupportedFeatureError, match="does not embed images"):
        client.embed(["a caption", small_png()], model=model)
    assert bedrock.requests == [] and fake_server.requests == []


# -- the mock ----------------------------------------------------------------------------------
def test_the_mock_scripts_images_and_failures() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 12
    with MockProvider() as mock:
        mock.add_image(jpeg, revised_prompt="a red bicycle, studio light")
        mock.add_image_error(429, retry_after=0.5)
        client = Client()
        first = client.generate_image("a red bicycle", model="gpt-image")
        assert [(i.data, i.mime_type, i.revised_prompt) for i in first] == [
            (jpeg, "image/jpeg", "a red bicycle, studio light")
        ]
        second = client.generate_image("a kite", model="titan-image", size="512x512", n=2)
        assert [(decode_png(i.data).width, decode_png(i.data).height) for i in second] == [(512, 512)] * 2
        assert mock.sleeps == [0.5] and mock.pending == 0
        assert [r.model for r in mock.image_requests] == [
            "openai/gpt-image-2.6-sunburst",
            f"bedrock/{TITAN}",
            f"bedrock/{TITAN}",
        ]
        # the real profile is enforced: Titan makes at most 5
        with pytest.raises(UnsupportedFeatureError):
            client.generate_image("a kite", model="titan-image", n=6)


def test_the_mock_makes_gemini_images_under_the_real_profile() -> None:
    with MockProvider() as mock:
        client = Client()
        made = client.generate_image("a kite", model="gemini-image", size="16:9", n=2)
        assert len(made) == 2 and [r.model for r in mock.image_requests] == ["gemini/gemini-3.1-flash-image"]
        with pytest.raises(UnsupportedFeatureError, match="aspect ratios"):
            client.generate_image("a kite", model="gemini-image", size="2:1")
        with pytest.raises(UnsupportedFeatureError, match="shut down every Imagen model"):
            client.generate_image("a kite", model="gemini/imagen-5.0-generate-001")


# -- the CLI and the example -------------------------------------------------------------------
def cli_env(bedrock: FakeBedrock, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "fm.toml"
    config.write_text(f'[providers.bedrock]\nbase_url = "{bedrock.url}"\nregion = "us-east-1"\n')
    return {**os.environ, "FMCLIENT_CONFIG": str(config)}


SEEDED = ("--size", "512x512", "--seed", "5", "--negative", "rust")


def test_cli_image_writes_the_files_and_prints_their_paths(bedrock: FakeBedrock, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fmclient.cli", "image", "a red bicycle", "-o", "bike.png", "-n", "2", *SEEDED],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=cli_env(bedrock, tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["bike.png", "bike-2.png"]
    for name in ("bike.png", "bike-2.png"):
        decoded = decode_png((tmp_path / name).read_bytes())
        assert (decoded.width, decoded.height) == (512, 512)
    assert body_of(bedrock) == {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "a red bicycle", "negativeText": "rust"},
        "imageGenerationConfig": {"numberOfImages": 2, "width": 512, "height": 512, "seed": 5},
    }


def test_cli_image_refusal_is_one_line_and_nothing_is_written(bedrock: FakeBedrock, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fmclient.cli", "image", "a kite", "-o", "kite.png", "-n", "9"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=cli_env(bedrock, tmp_path),
    )
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "UnsupportedFeatureError" in out.stderr
    assert not (tmp_path / "kite.png").exists() and bedrock.requests == []


def test_the_image_example_runs_against_the_fake(bedrock: FakeBedrock, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "generate_image.py"
    out = subprocess.run(
        [sys.executable, str(example), "a red bicycle", str(tmp_path / "bike.png")],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(bedrock, tmp_path),
    )
    assert out.returncode == 0, out.stderr
    written = (tmp_path / "bike.png").read_bytes()
    assert out.stdout.strip().splitlines() == [
        f"bedrock/{TITAN} made 1 image(s)",
        f"wrote {tmp_path / 'bike.png'} (image/png, {len(written)} bytes)",
    ]
    decoded = decode_png(written)
    assert (decoded.width, decoded.height) == (1024, 1024)
    assert len(bedrock.requests) == 1


def test_a_400_from_the_images_api_is_a_bad_request_not_retried(
    fake_server: FakeServer, openai_fake: FakeOpenAI
) -> None:
    fake_server.queue(openai_error(400, "Your request was rejected by the safety system."))
    client = Client(providers=tables(openai=fake_server), max_retries=2)
    with pytest.raises(BadRequestError):
        client.generate_image("x", model="gpt-image", quality="auto")
    assert len(fake_server.requests) == 1


# -- hooks and telemetry ------------------------------------------------------------------------
def test_hooks_see_the_image_call_its_retry_and_its_result(bedrock: FakeBedrock, retry_sleeps: list[float]) -> None:
    from fmclient.hooks import Hook

    seen: list[tuple[str, Any]] = []

    class Recorder(Hook):
        def on_call_start(self, call: Any) -> None:
            seen.append(("start", call.operation))

        def on_attempt_start(self, attempt: Any) -> None:
            seen.append(("attempt", attempt.number))

        def on_retry(self, attempt: Any, wait: float) -> None:
            seen.append(("retry", attempt.number))

        def before_request(self, call: Any, request: Any) -> Any:
            return dataclasses.replace(request, negative_prompt="text")  # a hook may change the request

        def on_call_end(self, call: Any, result: Any, error: Any) -> None:
            seen.append(("end", (type(result).__name__, error)))

    bedrock.queue(error_reply("ThrottlingException", "slow down"))
    client = Client(providers=tables(bedrock), hooks=[Recorder()], max_retries=1)
    client.generate_image("a kite")
    assert seen == [
        ("start", "generate_content"),
        ("attempt", 1),
        ("retry", 1),
        ("attempt", 2),
        ("end", ("Images", None)),
    ]
    assert [b["textToImageParams"] for b in bedrock.bodies()] == [{"text": "a kite", "negativeText": "text"}] * 2


def test_a_hook_change_the_model_cannot_take_is_refused_unsent(bedrock: FakeBedrock) -> None:
    from fmclient.hooks import Hook

    class TooMany(Hook):
        def before_request(self, call: Any, request: Any) -> Any:
            return dataclasses.replace(request, n=9)

    client = Client(providers=tables(bedrock), hooks=[TooMany()])
    with pytest.raises(UnsupportedFeatureError, match="at most 5 images"):
        client.generate_image("a kite")
    assert bedrock.requests == []


def test_telemetry_names_the_operation_generate_content(fake_server: FakeServer, openai_fake: FakeOpenAI) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from tests.test_telemetry import make_otel

    otel = make_otel()
    client = Client(providers=tables(openai=fake_server), hooks=[otel.hook])
    client.generate_image("a cat", model="gpt-image")
    call, attempts = otel.spans()
    assert call.name == "generate_content gpt-image-2.6-sunburst" and len(attempts) == 1
    attributes = dict(call.attributes or {})
    assert attributes["gen_ai.operation.name"] == "generate_content"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (2, 272)


def test_telemetry_and_hooks_see_a_gemini_image_call_and_its_image_tokens(
    fake_server: FakeServer, gemini_api: Any
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from tests.test_telemetry import make_otel

    otel = make_otel()
    client = gemini_client(fake_server, hooks=[otel.hook])
    client.generate_image("a cat", model="gemini-image", n=2)
    call, attempts = otel.spans()
    assert call.name == "generate_content gemini-3.1-flash-image" and len(attempts) == 1
    attributes = dict(call.attributes or {})
    assert attributes["gen_ai.usage.output_tokens"] == 2 * 1120
    assert attributes["fmclient.usage.image.output_tokens"] == 2 * 1120


# -- cost --------------------------------------------------------------------------------------
def test_gpt_image_is_priced_from_its_token_usage_titan_says_why_not(
    bedrock: FakeBedrock, fake_server: FakeServer, openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    pytest.importorskip("genai_prices")
    from decimal import Decimal

    config = tmp_path / "fm.toml"
    config.write_text('[prices]\nopenai = "openai"\n')  # the fake's loopback address is priced as OpenAI
    client = Client(config_path=str(config), providers=tables(bedrock, openai=fake_server), max_cost=1)
    priced = client.generate_image("a red bicycle", model="openai/gpt-image-2.5-sunburst", n=2)
    assert priced.usage is not None and (priced.usage.input_tokens, priced.usage.output_tokens) == (3, 544)
    assert priced.cost is not None
    # gpt-image-2.5-sunburst: $5 per million input tokens, $30 per million image output tokens
    assert priced.cost.total == Decimal(3) * 5 / 1_000_000 + Decimal(544) * 30 / 1_000_000
    assert client.spent == priced.cost.total
    unpriced = client.generate_image("a red bicycle", model="titan-image")
    assert unpriced.cost is None and "no token usage" in (unpriced.cost_reason or "")
    assert client.spent == priced.cost.total


# -- Titan image variation (a provider option) ---------------------------------------------------
def test_titan_image_variation_from_a_source_image(bedrock: FakeBedrock, tmp_path: Path) -> None:
    source = tmp_path / "bike.png"
    source.write_bytes(small_png(16, 16))
    client = Client(providers=tables(bedrock))
    result = client.generate_image(
        "the same bicycle, painted blue", size="512x512", variation_of=source, similarity_strength=0.8
    )
    assert body_of(bedrock) == {
        "taskType": "IMAGE_VARIATION",
        "imageVariationParams": {
            "text": "the same bicycle, painted blue",
            "images": [base64.b64encode(source.read_bytes()).decode()],
            "similarityStrength": 0.8,
        },
        "imageGenerationConfig": {"numberOfImages": 1, "width": 512, "height": 512},
    }
    assert (decode_png(result[0].data).width, decode_png(result[0].data).height) == (512, 512)


def test_image_variation_with_a_file_that_is_not_an_image_is_refused_unsent(
    bedrock: FakeBedrock, tmp_path: Path
) -> None:
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    client = Client(providers=tables(bedrock), max_retries=2)
    with pytest.raises(BadRequestError, match="variation_of"):
        client.generate_image("blue", variation_of=not_image)
    assert bedrock.requests == []


def test_image_variation_never_reads_a_str_as_a_path(bedrock: FakeBedrock, tmp_path: Path) -> None:
    # variation_of is a provider option a server may forward: a str is a data URI, never a file.
    existing = tmp_path / "secret.png"
    existing.write_bytes(small_png(16, 16))
    client = Client(providers=tables(bedrock), max_retries=2)
    messages = []
    for value in (str(existing), str(tmp_path / "missing.png")):
        with pytest.raises(BadRequestError, match="an image URL must be") as caught:
            client.generate_image("blue", variation_of=value)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert bedrock.requests == []


def test_the_default_image_model_follows_the_environment_and_the_argument(
    fake_server: FakeServer, openai_fake: FakeOpenAI
) -> None:
    from_env = Client(providers=tables(openai=fake_server), env={"FMCLIENT_IMAGE_MODEL": "gpt-image"})
    assert from_env.settings.default_image_model == "gpt-image"
    assert from_env.settings.sources["default_image_model"] == "env FMCLIENT_IMAGE_MODEL"
    from_env.generate_image("a cat")
    argument = Client(providers=tables(openai=fake_server), image_model="openai/gpt-image-2.5-flare", env={})
    argument.generate_image("a dog")
    assert [r.json()["model"] for r in fake_server.requests] == ["gpt-image-2.6-sunburst", "gpt-image-2.5-flare"]
    assert [r.path for r in fake_server.requests] == ["/v1/images/generations"] * 2
