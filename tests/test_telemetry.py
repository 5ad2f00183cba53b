"""OpenTelemetry GenAI spans and metrics, over every provider's wire fake, with the SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fmclient import Client, FMClientError
from fmclient.hooks import Hook
from fmclient.telemetry import DURATION_BUCKETS, TOKEN_BUCKETS, OpenTelemetryHook
from fmclient.testing import MockProvider
from fmclient.types import Usage
from tests.fakes.profiles import PROFILES
from tests.fakes.server import FakeServer


@dataclasses.dataclass
class Otel:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    hook: OpenTelemetryHook

    def spans(self) -> tuple[ReadableSpan, list[ReadableSpan]]:
        """The one call span and its attempt spans, in start order."""
        finished = list(self.exporter.get_finished_spans())
        calls = [s for s in finished if s.parent is None]
        assert len(calls) == 1, [s.name for s in finished]
        call = calls[0]
        attempts = sorted(
            (s for s in finished if s.parent is not None and s.parent.span_id == call.context.span_id),
            key=lambda s: s.start_time or 0,
        )
        return call, attempts

    def points(self) -> dict[str, list[HistogramDataPoint]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[HistogramDataPoint]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)  # type: ignore[arg-type]
        return found


def make_otel(**options: Any) -> Otel:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    hook = OpenTelemetryHook(tracer_provider=tracer_provider, meter_provider=MeterProvider([reader]), **options)
    return Otel(exporter, reader, tracer_provider, hook)


@pytest.fixture
def otel() -> Otel:
    return make_otel()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFMCLIENTTESTID01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "telemetry-test-secret")


@dataclasses.dataclass(frozen=True)
class Case:
    profile: str  # the wire format the fake speaks
    provider: str  # the configured provider name
    model: str
    otel_name: str  # gen_ai.provider.name
    response_model: str
    input_tokens: int
    output_tokens: int
    response_id: str | None


CASES = {
    "anthropic": Case(
        "anthropic", "anthropic", "claude-sonnet-4-6", "anthropic", "claude-sonnet-4-6", 10, 5, "msg_01fake"
    ),
    "openai": Case("openai", "openai", "gpt-4o", "openai", "gpt-4o-2024-08-06", 12, 5, "chatcmpl-fake"),
    "mistral": Case(
        "openai", "mistral", "mistral-small-latest", "mistral_ai", "gpt-4o-2024-08-06", 12, 5, "chatcmpl-fake"
    ),
    "gemini": Case("gemini", "gemini", "gemini-2.5-flash", "gcp.gemini", "gemini-2.5-flash-001", 10, 5, "resp-1"),
    "bedrock": Case(
        "bedrock",
        "bedrock",
        PROFILES["bedrock"].model_id,
        "aws.bedrock",
        PROFILES["bedrock"].model_id,
        10,
        5,
        None,
    ),
    "ollama": Case("ollama", "ollama", "llama3.2", "ollama", "llama3.2", 12, 7, None),
}


def client_for(case: Case, server: FakeServer, otel: Otel, **kwargs: Any) -> Client:
    profile = PROFILES[case.profile]
    return Client(providers={case.provider: profile.table(server.url)}, hooks=[otel.hook], **kwargs)


def sampling(case: Case) -> dict[str, Any]:
    # Claude under the anthropic SDK 2.x takes no sampling parameters, and the Claude family takes
    # temperature or top_p, not both (Claude on Bedrock): fmclient refuses those before sending.
    if case.otel_name == "anthropic":
        return {}
    if case.otel_name == "aws.bedrock":
        return {"temperature": 0.5}
    return {"temperature": 0.5, "top_p": 0.9}


def request_attributes(case: Case, port: int, *, stream: bool, sampled: bool = True) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": case.otel_name,
        "gen_ai.request.model": case.model,
        "server.address": "127.0.0.1",
        "server.port": port,
        "gen_ai.request.stream": stream,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.stop_sequences": ("END",),
    }
    if sampled:
        attributes.update({f"gen_ai.request.{name}": value for name, value in sampling(case).items()})
    return attributes


def response_attributes(case: Case) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.response.model": case.response_model,
        "gen_ai.usage.input_tokens": case.input_tokens,
        "gen_ai.usage.output_tokens": case.output_tokens,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    if case.response_id:
        attributes["gen_ai.response.id"] = case.response_id
    return attributes


@pytest.mark.parametrize("name", list(CASES))
def test_every_provider_one_call_span_and_one_attempt_span_with_exact_attributes(
    name: str, fake_server: FakeServer, otel: Otel, aws: None
) -> None:
    case = CASES[name]
    fake_server.replies.append(PROFILES[case.profile].reply("hello there"))
    client = client_for(case, fake_server, otel)
    reply = client.complete("hi", model=f"{case.provider}/{case.model}", max_tokens=50, stop=["END"], **sampling(case))
    assert len(fake_server.requests) == 1
    call, attempts = otel.spans()
    expected = {**request_attributes(case, fake_server.port, stream=False), **response_attributes(case)}
    assert call.name == f"chat {case.model}" and call.kind is SpanKind.CLIENT
    # The call span carries what the completion cost (priced once the answer is the call's).
    cost = {} if reply.cost is None else {"fmclient.cost.usd": float(reply.cost.total)}
    assert dict(call.attributes or {}) == {**expected, **cost}
    assert call.status.status_code is StatusCode.UNSET
    assert [a.name for a in attempts] == [f"chat {case.model}"]
    assert attempts[0].kind is SpanKind.CLIENT
    assert dict(attempts[0].attributes or {}) == {
        **expected,
        "fmclient.attempt.number": 1,
        "fmclient.attempt.target_index": 0,
    }


def test_llamacpp_provider_name_is_a_custom_value(otel: Otel) -> None:
    # The embedded model is slow; the mock answers under the llamacpp target instead.
    with MockProvider() as mock:
        mock.add_reply("local", usage=Usage(input_tokens=3, output_tokens=2))
        Client(hooks=[otel.hook]).complete("hi", model="llama-local")
    call, attempts = otel.spans()
    assert call.name == "chat smollm2-135m-instruct"
    assert dict(call.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "llama_cpp",
        "gen_ai.request.model": "smollm2-135m-instruct",
        "gen_ai.request.stream": False,
        "gen_ai.response.model": "llamacpp/smollm2-135m-instruct",  # the mock answers with the full name
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.response.finish_reasons": ("stop",),
        "fmclient.cost.usd": 0.0,  # a local model is free
    }
    assert len(attempts) == 1


def test_a_retried_call_is_one_call_span_with_two_attempt_spans(
    fake_server: FakeServer, otel: Otel, retry_sleeps: list[float]
) -> None:
    case = CASES["openai"]
    profile = PROFILES["openai"]
    fake_server.replies.extend([profile.status("429", retry_after="1"), profile.reply("hello there")])
    client = client_for(case, fake_server, otel, max_retries=2)
    client.complete("hi", model="openai/gpt-4o", max_tokens=50, stop=["END"], temperature=0.5, top_p=0.9)
    assert len(fake_server.requests) == 2 and retry_sleeps == [1.0]
    call, (failed, answered) = otel.spans()
    base = request_attributes(case, fake_server.port, stream=False)
    assert dict(failed.attributes or {}) == {
        **base,
        "fmclient.attempt.number": 1,
        "fmclient.attempt.target_index": 0,
        "error.type": "429",
        "fmclient.retry.wait": 1.0,
    }
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(answered.attributes or {}) == {
        **base,
        **response_attributes(case),
        "fmclient.attempt.number": 2,
        "fmclient.attempt.target_index": 0,
    }
    assert dict(call.attributes or {}) == {**base, **response_attributes(case)}
    assert call.status.status_code is StatusCode.UNSET


def test_a_fallback_shows_both_targets_and_the_call_span_names_who_answered(
    fake_server: FakeServer, otel: Otel
) -> None:
    openai, anthropic = CASES["openai"], CASES["anthropic"]
    fake_server.replies.extend([PROFILES["openai"].status("500"), PROFILES["anthropic"].reply("hello there")])
    client = Client(
        providers={
            "openai": PROFILES["openai"].table(fake_server.url),
            "anthropic": PROFILES["anthropic"].table(fake_server.url),
        },
        hooks=[otel.hook],
        max_retries=0,
    )
    reply = client.complete(
        "hi", model="openai/gpt-4o", fallbacks=["anthropic/claude-sonnet-4-6"], max_tokens=50, stop=["END"]
    )
    assert reply.cost is not None  # the answering target's price, on the call span
    call, (first, second) = otel.spans()
    assert dict(first.attributes or {}) == {
        **request_attributes(openai, fake_server.port, stream=False, sampled=False),
        "fmclient.attempt.number": 1,
        "fmclient.attempt.target_index": 0,
        "error.type": "500",
    }
    assert dict(second.attributes or {}) == {
        **request_attributes(anthropic, fake_server.port, stream=False),
        **response_attributes(anthropic),
        "fmclient.attempt.number": 1,
        "fmclient.attempt.target_index": 1,
    }
    # The call span starts as the primary's and ends naming the target that answered.
    assert call.name == "chat claude-sonnet-4-6"
    assert dict(call.attributes or {}) == {
        **request_attributes(anthropic, fake_server.port, stream=False),
        **response_attributes(anthropic),
        "fmclient.cost.usd": float(reply.cost.total),
    }
    assert [(e.name, dict(e.attributes or {})) for e in call.events] == [
        (
            "fmclient.fallback",
            {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "error.type": "500"},
        )
    ]


def test_a_failed_stream_ends_both_spans_with_the_error(fake_server: FakeServer, otel: Otel) -> None:
    case = CASES["anthropic"]
    profile = PROFILES["anthropic"]
    fake_server.replies.append(profile.stream_with_error(["one ", "two"], 1, fatal=True, message="boom"))
    client = client_for(case, fake_server, otel, max_retries=0)
    with pytest.raises(FMClientError) as raised:
        list(client.stream("hi", model="anthropic/claude-sonnet-4-6", max_tokens=50, stop=["END"]))
    call, (attempt,) = otel.spans()
    error_type = str(raised.value.status_code) if raised.value.status_code is not None else type(raised.value).__name__
    attributes = dict(attempt.attributes or {})
    first_chunk = attributes.pop("gen_ai.response.time_to_first_chunk")
    assert isinstance(first_chunk, float) and first_chunk >= 0
    assert attributes == {
        **request_attributes(case, fake_server.port, stream=True),
        "fmclient.attempt.number": 1,
        "fmclient.attempt.target_index": 0,
        "error.type": error_type,
    }
    call_attributes = dict(call.attributes or {})
    assert call_attributes.pop("gen_ai.response.time_to_first_chunk") >= first_chunk
    assert call_attributes == {**request_attributes(case, fake_server.port, stream=True), "error.type": error_type}
    assert call.status.status_code is StatusCode.ERROR and attempt.status.status_code is StatusCode.ERROR


def test_metrics_points_and_the_specs_bucket_boundaries(fake_server: FakeServer, otel: Otel) -> None:
    case = CASES["openai"]
    profile = PROFILES["openai"]
    fake_server.replies.extend([profile.reply("hello there"), profile.stream(["a", "b"])])
    client = client_for(case, fake_server, otel)
    client.complete("hi", model="openai/gpt-4o")
    streamed = client.stream("hi", model="openai/gpt-4o")
    list(streamed)
    points = otel.points()
    assert set(points) == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
    }
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "server.address": "127.0.0.1",
        "server.port": fake_server.port,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
    }
    (duration,) = points["gen_ai.client.operation.duration"]
    assert dict(duration.attributes or {}) == base and duration.count == 2
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS
    tokens = {p.attributes["gen_ai.token.type"]: p for p in points["gen_ai.client.token.usage"]}  # type: ignore[index]
    usage = streamed.completion.usage
    assert tokens["input"].count == 2 and tokens["input"].sum == 12 + usage.input_tokens
    assert tokens["output"].count == 2 and tokens["output"].sum == 5 + usage.output_tokens
    assert dict(tokens["output"].attributes or {}) == {**base, "gen_ai.token.type": "output"}
    assert all(tuple(p.explicit_bounds) == TOKEN_BUCKETS for p in tokens.values())
    (first_chunk,) = points["gen_ai.client.operation.time_to_first_chunk"]
    assert first_chunk.count == 1  # only the stream
    assert tuple(first_chunk.explicit_bounds) == DURATION_BUCKETS


def test_failed_call_duration_carries_error_type(fake_server: FakeServer, otel: Otel) -> None:
    fake_server.replies.append(PROFILES["openai"].status("bad-request"))
    client = client_for(CASES["openai"], fake_server, otel)
    with pytest.raises(FMClientError):
        client.complete("hi", model="openai/gpt-4o")
    (duration,) = otel.points()["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "400"  # type: ignore[index]
    assert "gen_ai.client.token.usage" not in otel.points()


def test_message_content_only_with_the_standard_switch(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = PROFILES["openai"]
    fake_server.replies.extend([profile.reply("hello there"), profile.reply("hello there")])
    quiet = make_otel()
    client_for(CASES["openai"], fake_server, quiet).complete("hi", model="openai/gpt-4o", system="be brief")
    call, _ = quiet.spans()
    assert not any("messages" in key or "instructions" in key for key in call.attributes or {})

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    loud = make_otel()
    client_for(CASES["openai"], fake_server, loud).complete("hi", model="openai/gpt-4o", system="be brief")
    call, _attempts = loud.spans()
    attributes = call.attributes or {}
    assert json.loads(str(attributes["gen_ai.system_instructions"])) == [{"type": "text", "content": "be brief"}]
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "hello there"}], "finish_reason": "stop"}
    ]


def test_tool_calls_in_the_output_message_format(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = make_otel(capture_content=True)
    with MockProvider() as mock:
        mock.add_tool_call("get_weather", {"city": "Paris"}, id="call_1")
        Client(hooks=[hook.hook]).complete("weather?", model="openai/gpt-4o")
    call, _ = hook.spans()
    assert json.loads(str((call.attributes or {})["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
            "finish_reason": "tool_call",
        }
    ]


def test_legacy_gen_ai_system_only_behind_its_switch() -> None:
    for legacy, expected in ((False, None), (True, "openai")):
        otel = make_otel(emit_legacy_system=legacy)
        with MockProvider() as mock:
            mock.add_reply("x")
            Client(hooks=[otel.hook]).complete("hi", model="openai/gpt-4o")
        call, _ = otel.spans()
        assert (call.attributes or {}).get("gen_ai.system") == expected


def test_embeddings_span(otel: Otel) -> None:
    with MockProvider() as mock:
        mock.add_embeddings([[0.1, 0.2, 0.3]])
        asyncio.run(Client(hooks=[otel.hook]).aembed(["one"], model="openai/text-embedding-3-small"))
    call, attempts = otel.spans()
    assert call.name == "embeddings text-embedding-3-small" and len(attempts) == 1
    attributes = call.attributes or {}
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.embeddings.dimension.count"] == 3
    assert "gen_ai.request.stream" not in attributes


def test_the_attempt_span_is_current_while_the_sdk_is_called(otel: Otel) -> None:
    """So an SDK's own contrib instrumentation nests under fmclient's attempt instead of doubling."""
    tracer = otel.tracer_provider.get_tracer("sdk-instrumentation")

    def sdk_call(request: Any) -> str:
        with tracer.start_as_current_span("sdk span"):
            return "ok"

    with MockProvider() as mock:
        mock.respond_with(sdk_call)
        Client(hooks=[otel.hook]).complete("hi", model="openai/gpt-4o")
    spans = {s.name: s for s in otel.exporter.get_finished_spans() if s.parent is not None}
    finished = list(otel.exporter.get_finished_spans())
    attempt = next(s for s in finished if s.name == "chat gpt-4o" and s.parent is not None)
    assert spans["sdk span"].parent.span_id == attempt.context.span_id  # type: ignore[union-attr]
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached again


def test_telemetry_true_uses_the_global_providers_and_import_stays_free_of_opentelemetry() -> None:
    code = (
        "import sys, fmclient\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), 'imported at import'\n"
        "fmclient.Client()\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), 'imported by a plain client'\n"
        "c = fmclient.Client(telemetry=True)\n"
        "assert 'opentelemetry.trace' in sys.modules\n"
        "print(type(c._engine.hooks[-1]).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "OpenTelemetryHook"


def test_async_stream_over_the_wire_has_the_same_spans_and_the_first_chunk_metric(
    fake_server: FakeServer, otel: Otel
) -> None:
    case = CASES["openai"]
    fake_server.replies.append(PROFILES["openai"].stream(["a", "b"]))
    client = client_for(case, fake_server, otel)

    async def consume() -> str:
        stream = client.astream("hi", model="openai/gpt-4o", max_tokens=50, stop=["END"], temperature=0.5, top_p=0.9)
        return "".join([chunk.text async for chunk in stream])

    assert asyncio.run(consume()) == "ab"
    call, (attempt,) = otel.spans()
    attributes = dict(call.attributes or {})
    assert attributes.pop("gen_ai.response.time_to_first_chunk") >= 0
    assert attributes["gen_ai.request.stream"] is True
    assert {k: v for k, v in attributes.items() if k.startswith("gen_ai.request.")} == {
        k: v
        for k, v in request_attributes(case, fake_server.port, stream=True).items()
        if k.startswith("gen_ai.request.")
    }
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.response.time_to_first_chunk" in (attempt.attributes or {})
    assert otel.points()["gen_ai.client.operation.time_to_first_chunk"][0].count == 1


def test_a_no_op_tracer_records_no_span_but_metrics_still_count(fake_server: FakeServer) -> None:
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    hook = OpenTelemetryHook(tracer_provider=trace.NoOpTracerProvider(), meter_provider=MeterProvider([reader]))
    otel = Otel(exporter, reader, TracerProvider(), hook)
    fake_server.replies.append(PROFILES["openai"].reply("hello there"))
    client_for(CASES["openai"], fake_server, otel).complete("hi", model="openai/gpt-4o")
    assert exporter.get_finished_spans() == ()
    (duration,) = otel.points()["gen_ai.client.operation.duration"]
    assert duration.count == 1 and duration.attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"  # type: ignore[index]


@pytest.mark.parametrize(
    ("table", "env", "expected"),
    [
        ({"type": "openai"}, {}, ("openai", "api.openai.com", 443)),
        ({"type": "openai", "base_url": "https://api.mistral.ai/v1"}, {}, ("mistral_ai", "api.mistral.ai", 443)),
        ({"type": "anthropic"}, {}, ("anthropic", "api.anthropic.com", 443)),
        ({"type": "gemini"}, {}, ("gcp.gemini", "generativelanguage.googleapis.com", 443)),
        (
            {"type": "gemini", "vertexai": True, "location": "europe-west4"},
            {},
            ("gcp.vertex_ai", "europe-west4-aiplatform.googleapis.com", 443),
        ),
        (
            {"type": "gemini"},
            {"GOOGLE_GENAI_USE_VERTEXAI": "true"},
            ("gcp.vertex_ai", "aiplatform.googleapis.com", 443),
        ),
        (
            {"type": "bedrock", "region": "eu-west-1"},
            {},
            ("aws.bedrock", "bedrock-runtime.eu-west-1.amazonaws.com", 443),
        ),
        ({"type": "ollama"}, {}, ("ollama", "localhost", 11434)),
        ({"type": "ollama", "base_url": "http://gpu-box:8080"}, {}, ("ollama", "gpu-box", 8080)),
        ({"type": "llamacpp"}, {}, ("llama_cpp", None, None)),
    ],
)
def test_provider_name_and_server_for_each_configuration(
    table: dict[str, Any], env: dict[str, str], expected: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = Client(providers={"target": table})
    hook = OpenTelemetryHook(tracer_provider=trace.NoOpTracerProvider())
    assert hook._flavour(client.settings.provider_settings("target")) == expected


def test_a_stream_closed_early_ends_its_spans_without_an_error(fake_server: FakeServer, otel: Otel) -> None:
    fake_server.replies.append(PROFILES["openai"].stream(["a", "b", "c"]))
    client = client_for(CASES["openai"], fake_server, otel)
    with client.stream("hi", model="openai/gpt-4o") as stream:
        next(stream)
    call, (attempt,) = otel.spans()
    for span in (call, attempt):
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in (span.attributes or {})
    (duration,) = otel.points()["gen_ai.client.operation.duration"]
    assert "error.type" not in (duration.attributes or {})


@pytest.mark.slow
def test_llamacpp_one_short_real_call(otel: Otel) -> None:
    completion = Client(hooks=[otel.hook]).complete(
        "Say hi.", model="llama-local", max_tokens=4, temperature=0.0, seed=1
    )
    call, (attempt,) = otel.spans()
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "llama_cpp",
        "gen_ai.request.model": "smollm2-135m-instruct",
        "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 4,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.response.model": completion.model,
        "gen_ai.usage.input_tokens": completion.usage.input_tokens,
        "gen_ai.usage.output_tokens": completion.usage.output_tokens,
        "gen_ai.response.finish_reasons": (completion.finish_reason,),
    }
    assert completion.usage.input_tokens > 0 and 0 < completion.usage.output_tokens <= 4
    assert dict(call.attributes or {}) == {**expected, "fmclient.cost.usd": 0.0}  # the call's cost: local is free
    assert dict(attempt.attributes or {}) == {
        **expected,
        "fmclient.attempt.number": 1,
        "fmclient.attempt.target_index": 0,
    }


# -- calls that send nothing: response-cache hits and refusals -------------------------------------
def _token_counts(otel: Otel) -> dict[str, int]:
    return {str((p.attributes or {})["gen_ai.token.type"]): p.count for p in otel.points()["gen_ai.client.token.usage"]}


@pytest.mark.parametrize("streaming", [False, True])
def test_a_cache_hit_is_one_span_marked_as_a_hit_with_a_duration_and_no_token_usage(
    streaming: bool, fake_server: FakeServer, otel: Otel
) -> None:
    fake_server.replies.append(PROFILES["openai"].reply("hello there"))
    client = client_for(CASES["openai"], fake_server, otel, cache=True)
    assert not client.complete("hi", model="openai/gpt-4o").cached
    assert _token_counts(otel) == {"input": 1, "output": 1}
    otel.exporter.clear()
    if streaming:
        stream = client.stream("hi", model="openai/gpt-4o")
        assert [c.text for c in stream] == ["hello there", ""]
        assert stream.completion.cached
    else:
        assert client.complete("hi", model="openai/gpt-4o").cached
    assert len(fake_server.requests) == 1
    call, attempts = otel.spans()
    assert attempts == [] and len(otel.exporter.get_finished_spans()) == 1
    assert call.name == "chat gpt-4o" and call.kind is SpanKind.CLIENT
    assert call.status.status_code is StatusCode.UNSET
    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "server.address": "127.0.0.1",
        "server.port": fake_server.port,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
    }
    assert dict(call.attributes or {}) == {
        **common,
        "gen_ai.request.stream": streaming,
        "gen_ai.response.finish_reasons": ("stop",),
        "fmclient.response_cache.hit": True,
    }
    assert _token_counts(otel) == {"input": 1, "output": 1}  # the miss's points only
    durations = {
        bool((p.attributes or {}).get("fmclient.response_cache.hit")): p
        for p in otel.points()["gen_ai.client.operation.duration"]
    }
    assert dict(durations[True].attributes or {}) == {**common, "fmclient.response_cache.hit": True}
    assert durations[True].count == 1 and durations[False].count == 1
    assert "gen_ai.client.operation.time_to_first_chunk" not in otel.points()


class _Refuse(Hook):
    def before_request(self, call: Any, request: Any) -> Any:
        raise FMClientError("blocked by policy")


@pytest.mark.parametrize("why", ["budget", "rate_limit", "before_request"])
def test_a_call_refused_before_sending_is_one_span_with_error_status(
    why: str, fake_server: FakeServer, otel: Otel
) -> None:
    profile = PROFILES["openai"]
    fake_server.replies.append(profile.reply("hello there"))
    options: dict[str, Any] = {
        "budget": {"max_cost": 0},
        "rate_limit": {"rate_limits": {"openai": {"rpm": 1}}},
        "before_request": {},
    }[why]
    client = client_for(CASES["openai"], fake_server, otel, **options)
    if why == "rate_limit":
        client.complete("first", model="openai/gpt-4o")  # takes the one slot of the next 60 s
        otel.exporter.clear()
    if why == "before_request":
        client.add_hook(_Refuse())
    expected_error = {"budget": "BudgetExceededError", "rate_limit": "RateLimitError"}.get(why, "FMClientError")
    sent = len(fake_server.requests)
    with pytest.raises(FMClientError) as raised:
        client.complete("hi", model="openai/gpt-4o", timeout=30)
    assert type(raised.value).__name__ == expected_error
    assert len(fake_server.requests) == sent  # nothing more went out
    call, attempts = otel.spans()
    assert attempts == []
    assert call.name == "chat gpt-4o"
    assert call.status.status_code is StatusCode.ERROR
    assert (call.attributes or {})["error.type"] == expected_error
    assert "fmclient.response_cache.hit" not in (call.attributes or {})
    failed = [p for p in otel.points()["gen_ai.client.operation.duration"] if "error.type" in (p.attributes or {})]
    assert [(p.attributes or {})["error.type"] for p in failed] == [expected_error] and failed[0].count == 1


@pytest.mark.parametrize("streaming", [False, True])
def test_every_usage_attribute_from_a_usage_with_every_field_set(otel: Otel, streaming: bool) -> None:
    """Each Usage field has its span attribute (the GenAI conventions' names where they have
    one, fmclient's own otherwise), and the token histogram counts input and output."""
    usage = Usage(
        input_tokens=1000,
        output_tokens=42,
        cached_input_tokens=600,
        cache_write_tokens=300,
        reasoning_tokens=30,
        cache_write_1h_tokens=200,
        service_tier="flex",
        speed="fast",
    )
    with MockProvider() as mock:
        mock.add_reply("Paris.", usage=usage)
        client = Client(hooks=[otel.hook])
        if streaming:
            with client.stream("Capital of France?", model="openai/gpt-4o") as stream:
                "".join(chunk.text for chunk in stream)
        else:
            client.complete("Capital of France?", model="openai/gpt-4o")
    call, _ = otel.spans()
    attributes = dict(call.attributes or {})
    assert {k: v for k, v in attributes.items() if "usage" in k} == {
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 42,
        "gen_ai.usage.cache_read.input_tokens": 600,
        "gen_ai.usage.cache_creation.input_tokens": 300,
        "gen_ai.usage.reasoning.output_tokens": 30,
        "fmclient.usage.cache_creation_1h.input_tokens": 200,
        "fmclient.usage.service_tier": "flex",
        "fmclient.usage.speed": "fast",
    }
    sums = {str((p.attributes or {})["gen_ai.token.type"]): p.sum for p in otel.points()["gen_ai.client.token.usage"]}
    assert sums == {"input": 1000, "output": 42}


# -- where the request really went (issue 19 item 22) ---------------------------------------------------
ENDPOINT_SETTINGS = {
    # provider: (the variable its SDK reads, the URL suffix the fake's route needs, extra settings)
    "openai": ("OPENAI_BASE_URL", "/v1", {}),
    "anthropic": ("ANTHROPIC_BASE_URL", "", {}),
    "gemini": ("GOOGLE_GEMINI_BASE_URL", "", {}),
    "bedrock": ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "", {}),
    "ollama": ("OLLAMA_HOST", "", {}),
    "bedrock-endpoint-option": (None, "", {"endpoint_url": "{url}"}),
}


@pytest.mark.parametrize("name", list(ENDPOINT_SETTINGS))
def test_server_address_is_where_the_sdk_sent_the_request_not_the_providers_public_host(
    name: str, fake_server: FakeServer, otel: Otel, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable, suffix, extra = ENDPOINT_SETTINGS[name]
    case = CASES[name.split("-")[0]]
    table = {k: v for k, v in PROFILES[case.profile].table(fake_server.url).items() if k != "base_url"}
    table.update({k: v.format(url=fake_server.url) for k, v in extra.items()})
    if variable is not None:  # the SDK's own setting, not fmclient's base_url
        monkeypatch.setenv(variable, fake_server.url + suffix)
    client = Client(providers={case.provider: table}, hooks=[otel.hook])
    where = {"server.address": "127.0.0.1", "server.port": fake_server.port}
    for _ in range(2):  # the first call builds the SDK client; the second starts with it built
        otel.exporter.clear()
        fake_server.replies.append(PROFILES[case.profile].reply("hello there"))
        client.complete("hi", model=f"{case.provider}/{case.model}", max_tokens=50)
        call, attempts = otel.spans()
        for span in (call, *attempts):
            assert {k: (span.attributes or {}).get(k) for k in where} == where, span.name
    assert len(fake_server.requests) == 2
    for point in otel.points()["gen_ai.client.operation.duration"]:
        assert {k: point.attributes.get(k) for k in where} == where


async def test_async_calls_report_the_async_sdk_clients_endpoint(
    fake_server: FakeServer, otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES["openai"]
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.url + "/v1")
    table = {k: v for k, v in PROFILES[case.profile].table(fake_server.url).items() if k != "base_url"}
    client = Client(providers={"openai": table}, hooks=[otel.hook])
    fake_server.replies.append(PROFILES[case.profile].reply("hello there"))
    await client.acomplete("hi", model="openai/gpt-4o", max_tokens=50)
    call, attempts = otel.spans()
    for span in (call, *attempts):
        assert (span.attributes or {}).get("server.address") == "127.0.0.1"
        assert (span.attributes or {}).get("server.port") == fake_server.port
    await client.aclose()


# -- switching telemetry on without code (issue 19 item 23) ----------------------------------------------
def has_otel_hook(client: Client) -> bool:
    return any(isinstance(hook, OpenTelemetryHook) for hook in client._engine.hooks)


def test_telemetry_from_the_config_file_the_environment_and_the_argument(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmclient.errors import ConfigurationError

    monkeypatch.delenv("FMCLIENT_TELEMETRY", raising=False)
    on, off = tmp_path / "on.toml", tmp_path / "off.toml"
    on.write_text("telemetry = true\n")
    off.write_text("telemetry = false\n")
    assert not has_otel_hook(Client(config_path=off))
    assert has_otel_hook(Client(config_path=on))
    assert Client(config_path=on).settings.sources["telemetry"] == f"config file {on}"
    # Read when the client is built (not when fmclient was imported): the environment beats the file ...
    monkeypatch.setenv("FMCLIENT_TELEMETRY", "1")
    client = Client(config_path=off)
    assert has_otel_hook(client) and client.settings.sources["telemetry"] == "env FMCLIENT_TELEMETRY"
    monkeypatch.setenv("FMCLIENT_TELEMETRY", "off")
    assert not has_otel_hook(Client(config_path=on))
    # ... and the argument beats both.
    monkeypatch.setenv("FMCLIENT_TELEMETRY", "true")
    assert not has_otel_hook(Client(telemetry=False))
    monkeypatch.setenv("FMCLIENT_TELEMETRY", "sure")
    with pytest.raises(ConfigurationError, match="FMCLIENT_TELEMETRY must be true or false"):
        Client()
    bad = tmp_path / "bad.toml"
    bad.write_text('telemetry = "maybe"\n')
    monkeypatch.delenv("FMCLIENT_TELEMETRY")
    with pytest.raises(ConfigurationError, match="telemetry must be true or false"):
        Client(config_path=bad)


def test_fmclient_telemetry_is_not_read_at_import_time() -> None:
    code = (
        "import os, sys, fmclient\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), 'imported at import'\n"
        "os.environ['FMCLIENT_TELEMETRY'] = '1'  # set after the import: still honoured\n"
        "client = fmclient.Client()\n"
        "print(type(client._engine.hooks[-1]).__name__)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "FMCLIENT_TELEMETRY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "OpenTelemetryHook"


def test_the_instrumentor_traces_every_client_until_uninstrumented(fake_server: FakeServer) -> None:
    from fmclient.instrumentation import FMClientInstrumentor

    otel = make_otel()
    case = CASES["openai"]
    table = PROFILES[case.profile].table(fake_server.url)
    before = Client(providers={"openai": table})  # built before instrument(): traced too
    instrumentor = FMClientInstrumentor()
    reader = InMemoryMetricReader()
    instrumentor.instrument(tracer_provider=otel.tracer_provider, meter_provider=MeterProvider([reader]))
    try:
        assert instrumentor.instrumentation_dependencies() == ()
        after = Client(providers={"openai": table})
        own = Client(providers={"openai": table}, hooks=[otel.hook])  # has its own hook: no second span
        for client in (before, after, own):
            otel.exporter.clear()
            fake_server.replies.append(PROFILES[case.profile].reply("hello there"))
            client.complete("hi", model="openai/gpt-4o", max_tokens=50)
            call, attempts = otel.spans()
            assert call.name == "chat gpt-4o" and len(attempts) == 1
            assert (call.attributes or {})["gen_ai.provider.name"] == "openai"
        durations = [m for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics]
        assert [m.name for m in durations] == ["gen_ai.client.operation.duration", "gen_ai.client.token.usage"]
    finally:
        instrumentor.uninstrument()
    otel.exporter.clear()
    fake_server.replies.append(PROFILES[case.profile].reply("hello there"))
    before.complete("hi", model="openai/gpt-4o", max_tokens=50)
    assert otel.exporter.get_finished_spans() == ()


def test_the_instrumentor_does_not_import_the_opentelemetry_sdk() -> None:
    code = (
        "import sys\n"
        "from fmclient.instrumentation import FMClientInstrumentor\n"
        "FMClientInstrumentor().instrument()\n"
        "import fmclient\n"
        "fmclient.Client()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


INSTRUMENTED_APP = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fmclient

# The app sets up its exporter, as it would for any instrumentation; it never mentions fmclient's.
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
client = fmclient.Client(providers={"openai": {"base_url": sys.argv[1], "api_key": "sk-instrumented"}})
print("ANSWER", client.complete("hi", model="openai/gpt-4o", max_tokens=5).text)
print("SPANS", json.dumps([[s.name, dict(s.attributes)] for s in exporter.get_finished_spans()]))
"""


def test_opentelemetry_instrument_traces_an_app_that_never_asks_for_it(fake_server: FakeServer, tmp_path: Any) -> None:
    """``opentelemetry-instrument python app.py`` finds the instrumentor through the entry point.

    The entry point is package metadata: the installed metadata is that of whatever checkout was
    last ``pip install -e``'d, so this test installs this tree's declaration (from pyproject.toml)
    as a dist-info of its own, first on the path, the way pip would write it.
    """
    import os
    from pathlib import Path

    from fmclient.config import _read_toml  # tomllib, or tomli on Python 3.10

    root = Path(__file__).resolve().parent.parent
    declared = _read_toml(root / "pyproject.toml")["project"]["entry-points"]
    group = declared["opentelemetry_instrumentor"]
    assert group == {"fmclient": "fmclient.instrumentation:FMClientInstrumentor"}
    dist_info = tmp_path / "site" / "fmclient-0.0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fmclient\nVersion: 0.0.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\n" + "".join(f"{name} = {value}\n" for name, value in group.items())
    )
    app = tmp_path / "app.py"
    app.write_text(INSTRUMENTED_APP)
    fake_server.replies.append(PROFILES["openai"].reply("traced"))
    command = Path(sys.executable).parent / "opentelemetry-instrument"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(tmp_path / "site"), str(root / "src"), os.environ.get("PYTHONPATH")) if p
        ),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    env.pop("FMCLIENT_TELEMETRY", None)
    out = subprocess.run(
        [str(command), sys.executable, str(app), fake_server.url + "/v1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("ANSWER", "SPANS")))
    assert lines["ANSWER"] == "traced"
    spans = json.loads(lines["SPANS"])
    assert [name for name, _ in spans] == ["chat gpt-4o", "chat gpt-4o"]  # the attempt span, then the call span
    for _, attributes in spans:
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["server.address"] == "127.0.0.1" and attributes["server.port"] == fake_server.port


def test_the_provider_name_follows_the_sdk_clients_endpoint_too() -> None:
    hook = OpenTelemetryHook(tracer_provider=trace.NoOpTracerProvider())
    openai = Client(providers={"openai": {}}).settings.provider_settings("openai")
    # OPENAI_BASE_URL pointing the OpenAI SDK at Mistral's compatible API
    assert hook._flavour(openai, "https://api.mistral.ai/v1") == ("mistral_ai", "api.mistral.ai", 443)
    gemini = Client(providers={"gemini": {}}).settings.provider_settings("gemini")
    vertex = "https://europe-west4-aiplatform.googleapis.com/"  # GOOGLE_VERTEX_BASE_URL, or the SDK's Vertex host
    assert hook._flavour(gemini, vertex) == ("gcp.vertex_ai", "europe-west4-aiplatform.googleapis.com", 443)
