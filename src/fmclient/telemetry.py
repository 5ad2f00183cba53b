"""OpenTelemetry GenAI spans and metrics, built on :mod:`fmclient.hooks`.

Turn it on explicitly: ``Client(telemetry=True)``, or ``Client(hooks=[OpenTelemetryHook(...)])`` to
pass a tracer/meter provider or options. Nothing is emitted otherwise, and a client without it never
imports opentelemetry; ``import fmclient`` never does. It needs the ``fmclient[otel]`` extra
(``opentelemetry-api``); spans and metrics go to the providers the app configured (the global ones
by default: with none configured, the API's no-op tracer and meter).

What it emits follows the OpenTelemetry GenAI semantic conventions (client inference spans and
client metrics):

* one span per call, kind CLIENT, named ``{gen_ai.operation.name} {gen_ai.request.model}``, with the
  request attributes (``server.address``/``server.port``: where the adapter's SDK client sends
  requests, its base-URL environment settings included, read when that client is built), the
  answering attempt's response attributes and usage, ``error.type`` when the call failed, and
  ``fmclient.cost.usd`` when the completion carries a cost;
* under it, one CLIENT span per attempt (each retry and each fallback target is its own attempt)
  with ``error.type`` on failure, ``fmclient.attempt.number``, ``fmclient.attempt.target_index`` and,
  when the attempt was retried, ``fmclient.retry.wait`` (seconds); when its target has client-side
  rate limits (in process or shared over Redis), ``fmclient.rate_limit.wait``: the seconds it
  waited for them before it was sent; a skipped or failed target shows as a ``fmclient.fallback``
  event on the call span;
* ``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and, for streams,
  ``gen_ai.client.operation.time_to_first_chunk`` histograms with the spec's advisory bucket
  boundaries (``gen_ai.response.time_to_first_chunk`` on the spans);
* a call that sent no request still gets its call span (no attempt span under it) and its duration
  point: a response-cache hit carries ``fmclient.response_cache.hit = true`` on both and the
  response model, finish reason (and, when content is captured, the output) of the cached answer,
  but no usage and no token-usage point (its tokens were not consumed by this call); a call refused
  before sending (budget spent, client-side rate limit, circuit open, a ``before_request`` refusal;
  shared budgets and limits alike) ends its span with error status and ``error.type``, like any
  failed call.

A tool loop (``client.run`` and its twins, :mod:`fmclient.tool_loop`) is one INTERNAL
``invoke_agent`` span (its summed usage, ``fmclient.run.steps``, ``fmclient.run.stopped``) that is
current while the run goes, so each step's call span nests under it; each tool call is an INTERNAL
``execute_tool {gen_ai.tool.name}`` span under it with ``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
``gen_ai.tool.type`` and, when the tool failed, ``error.type`` and error status.

Message content (``gen_ai.system_instructions``, ``gen_ai.input.messages``,
``gen_ai.output.messages``, as JSON in the spec's message format) is recorded only when
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is ``true`` when the hook is built (or
``capture_content=True``). Keys are never part of a request, so never of a span.

The attempt span is the current span while the provider's SDK is called (for a stream: while it is
opened), so an SDK's own contrib instrumentation (for example opentelemetry-instrumentation-openai-v2)
nests its span under fmclient's attempt instead of starting a separate trace.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from fmclient.errors import FMClientError
from fmclient.hooks import AttemptInfo, CallInfo, Hook, RunInfo, ToolCallInfo
from fmclient.providers.base import ProviderSettings
from fmclient.types import (
    Chunk,
    Completion,
    Embeddings,
    EmbedRequest,
    ImageRequest,
    Images,
    Message,
    Request,
    Speech,
    SpeechRequest,
    TextPart,
    Transcription,
    TranscriptionRequest,
)

__all__ = [
    "CACHE_HIT_ATTRIBUTE",
    "CAPTURE_CONTENT_ENV",
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "OpenTelemetryHook",
    "provider_name",
]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# On the span and the duration point of a call answered from fmclient's response cache.
CACHE_HIT_ATTRIBUTE = "fmclient.response_cache.hit"
# The spec's advisory ExplicitBucketBoundaries.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

# gen_ai.provider.name by adapter type; the spec has no value for local servers, so they get their own.
_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
    "llamacpp": "llama_cpp",
}
# Where each adapter's SDK sends requests when no base_url is configured.
_DEFAULT_HOSTS = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "gcp.gemini": "generativelanguage.googleapis.com",
    "mistral_ai": "api.mistral.ai",
}
_FINISH_REASONS = {"tool_calls": "tool_call"}
_INSTRUMENTATION = "fmclient"


def provider_name(settings: ProviderSettings, endpoint: str | None = None) -> str:
    """The ``gen_ai.provider.name`` for a configured provider (``endpoint``: where its SDK client sends)."""
    kind = settings.type
    base_url = settings.base_url or endpoint or ""
    if kind == "openai" and (settings.name == "mistral" or "api.mistral.ai" in base_url):
        return "mistral_ai"
    if kind == "gemini" and (_uses_vertex(settings) or "aiplatform.googleapis.com" in base_url):
        return "gcp.vertex_ai"
    return _PROVIDER_NAMES.get(kind, kind)


def _uses_vertex(settings: ProviderSettings) -> bool:
    # The same switches the Gemini adapter (and google-genai) read.
    configured = settings.options.get("vertexai")
    if configured is not None:
        return configured is True or str(configured).lower() in ("true", "1", "yes", "on")
    for var in ("GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_USE_VERTEXAI"):
        value = os.environ.get(var)
        if value is not None:
            return value.lower() in ("true", "1")
    return False


def _server_of(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
    return parts.hostname, port


def _server(settings: ProviderSettings, flavour: str) -> tuple[str | None, int | None]:
    """Where a provider's requests would go, from its settings: only until its SDK client is built.

    Once built, the adapter reports the client's own base URL (``AttemptInfo.endpoint``), which
    also reflects the SDK's environment settings; this table is the fallback before that.
    """
    if settings.base_url:
        return _server_of(settings.base_url)
    if flavour == "aws.bedrock":
        region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return (f"bedrock-runtime.{region}.amazonaws.com", 443) if region else (None, None)
    if flavour == "ollama":
        return "localhost", 11434
    if flavour == "gcp.vertex_ai":
        location = settings.options.get("location") or os.environ.get("GOOGLE_CLOUD_LOCATION") or "global"
        return ("aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"), 443
    host = _DEFAULT_HOSTS.get(flavour)
    return (host, 443) if host else (None, None)


class OpenTelemetryHook(Hook):
    """Emits GenAI spans and metrics for every call of the client it is registered on."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool | None = None,
        emit_legacy_system: bool = False,
    ) -> None:
        from fmclient import __version__

        self._tracer = trace.get_tracer(_INSTRUMENTATION, __version__, tracer_provider)
        meter = metrics.get_meter(_INSTRUMENTATION, __version__, meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self._first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        if capture_content is None:
            capture_content = os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() == "true"
        self.capture_content = capture_content
        self.emit_legacy_system = emit_legacy_system
        self._flavours: dict[tuple[str, str | None], tuple[str, str | None, int | None]] = {}

    def __repr__(self) -> str:
        return f"<OpenTelemetryHook capture_content={self.capture_content}>"

    # -- helpers ---------------------------------------------------------------------------------------
    def _flavour(self, settings: ProviderSettings, endpoint: str | None = None) -> tuple[str, str | None, int | None]:
        """The provider name and server of a target; ``endpoint`` (where its SDK client sends) wins."""
        key = (settings.name, endpoint)
        found = self._flavours.get(key)
        if found is None:
            name = provider_name(settings, endpoint)
            server = _server_of(endpoint) if endpoint else _server(settings, name)
            found = self._flavours[key] = (name, *server)
        return found

    def _common(
        self, operation: str, settings: ProviderSettings, model: str, endpoint: str | None = None
    ) -> dict[str, Any]:
        name, address, port = self._flavour(settings, endpoint)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": name,
            "gen_ai.request.model": model,
        }
        if self.emit_legacy_system:
            attributes["gen_ai.system"] = name
        if address:
            attributes["server.address"] = address
            if port:
                attributes["server.port"] = port
        return attributes

    def _request_attributes(
        self, call: CallInfo, request: Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if isinstance(request, Request):
            attributes["gen_ai.request.stream"] = call.streaming
            if request.max_tokens is not None:
                attributes["gen_ai.request.max_tokens"] = request.max_tokens
            if request.temperature is not None:
                attributes["gen_ai.request.temperature"] = request.temperature
            if request.top_p is not None:
                attributes["gen_ai.request.top_p"] = request.top_p
            if request.stop:
                attributes["gen_ai.request.stop_sequences"] = list(request.stop)
            if self.capture_content:
                attributes.update(_input_content(request))
        return attributes

    # -- the call span -------------------------------------------------------------------------------
    def on_call_start(self, call: CallInfo) -> None:
        call.state[self] = None  # the span starts with the first attempt, once the provider is known

    def _call_span(self, attempt: AttemptInfo) -> Any:
        call = attempt.call
        span = call.state.get(self)
        if span is None:
            attributes = self._common(call.operation, attempt.settings, attempt.model, attempt.endpoint)
            attributes.update(self._request_attributes(call, attempt.request))
            span = self._tracer.start_span(
                f"{call.operation} {attempt.model}",
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=time.time_ns() - int((time.perf_counter() - call.started) * 1e9),
            )
            call.state[self] = span
        return span

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        call_span = self._call_span(attempt)
        if not call_span.is_recording():  # a no-op or sampled-out tracer: metrics only
            return
        attributes = self._common(attempt.call.operation, attempt.settings, attempt.model, attempt.endpoint)
        attributes.update(self._request_attributes(attempt.call, attempt.request))
        attributes["fmclient.attempt.number"] = attempt.number
        attributes["fmclient.attempt.target_index"] = attempt.target_index
        if attempt.rate_limit_wait is not None:  # the target has client-side rate limits
            attributes["fmclient.rate_limit.wait"] = attempt.rate_limit_wait
        span = self._tracer.start_span(
            f"{attempt.call.operation} {attempt.model}",
            context=trace.set_span_in_context(call_span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        # Current while the SDK is called, so an SDK's own instrumentation nests under it.
        token = otel_context.attach(trace.set_span_in_context(span))
        attempt.state[self] = [span, token]

    def on_attempt_sent(self, attempt: AttemptInfo) -> None:
        held = attempt.state.get(self)
        if held is not None and held[1] is not None:
            otel_context.detach(held[1])
            held[1] = None
        if held is not None and attempt.endpoint:
            # The first request of a target builds its SDK client: only now is it known where it went.
            held[0].set_attributes(_server_attributes(self._flavour(attempt.settings, attempt.endpoint)))

    def on_first_chunk(self, attempt: AttemptInfo, chunk: Chunk) -> None:
        held = attempt.state.get(self)
        if held is not None and attempt.first_chunk_at is not None:
            held[0].set_attribute("gen_ai.response.time_to_first_chunk", attempt.first_chunk_at - attempt.started)

    def on_response(
        self, attempt: AttemptInfo, result: Completion | Embeddings | Images | Transcription | Speech
    ) -> None:
        held = attempt.state.pop(self, None)
        if held is None:
            return
        span = held[0]
        span.set_attributes(self._response_attributes(result, content=False))
        span.end()

    def on_error(self, attempt: AttemptInfo, error: FMClientError) -> None:
        held = attempt.state.get(self)
        if held is None:
            return
        span = held[0]
        span.set_attribute("error.type", _error_type(error))
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        # Ended by on_retry (with its wait), on_fallback or on_call_end, whichever comes first.
        held.append(time.time_ns())

    def _end_failed(self, attempt: AttemptInfo | None) -> None:
        if attempt is None:
            return
        held = attempt.state.pop(self, None)
        if held is not None:
            held[0].end(end_time=held[2] if len(held) > 2 else None)

    def on_retry(self, attempt: AttemptInfo, wait: float) -> None:
        held = attempt.state.get(self)
        if held is not None:
            held[0].set_attribute("fmclient.retry.wait", wait)
        self._end_failed(attempt)

    def on_fallback(self, attempt: AttemptInfo | None, error: FMClientError) -> None:
        self._end_failed(attempt)
        call_span = None if attempt is None else attempt.call.state.get(self)
        if call_span is not None:
            call_span.add_event(
                "fmclient.fallback",
                {
                    "gen_ai.provider.name": self._flavour(attempt.settings)[0],
                    "gen_ai.request.model": attempt.model,
                    "error.type": _error_type(error),
                }
                if attempt is not None
                else {"error.type": _error_type(error)},
            )

    def on_call_end(
        self,
        call: CallInfo,
        result: Completion | Embeddings | Images | Transcription | Speech | None,
        error: BaseException | None,
    ) -> None:
        for attempt in call.attempts:
            self._end_failed(attempt)
        span = call.state.pop(self, None)
        last = call.attempts[-1] if call.attempts else None
        if last is None:  # a response-cache hit, or refused before any request left
            self._end_unsent(call, result, error)
            return
        if isinstance(error, GeneratorExit):
            error = None  # the caller closed a stream early: not a failure
        duration = (call.ended or time.perf_counter()) - call.started
        metric_attributes = self._common(call.operation, last.settings, last.model, last.endpoint)
        if result is not None and result.model:
            metric_attributes["gen_ai.response.model"] = result.model
        if error is not None:
            metric_attributes["error.type"] = _error_type(error)
        if span is not None and span.is_recording():
            response: dict[str, Any] = {}
            if result is not None:
                response = self._response_attributes(result, content=self.capture_content)
            elif error is not None:
                response = {"error.type": metric_attributes["error.type"]}
            if last.target_index:  # a fallback answered (or failed last): the span names that target
                span.set_attributes(metric_attributes)
                span.update_name(f"{call.operation} {last.model}")
            elif last.endpoint:  # where the request really went, known once it was sent
                span.set_attributes(_server_attributes(self._flavour(last.settings, last.endpoint)))
            if call.streaming and last.first_chunk_at is not None:
                response["gen_ai.response.time_to_first_chunk"] = last.first_chunk_at - call.started
            span.set_attributes(response)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()
        self._duration.record(duration, metric_attributes)
        if call.streaming and last.first_chunk_at is not None:
            self._first_chunk.record(last.first_chunk_at - call.started, metric_attributes)
        usage = None if result is None else result.usage
        if usage is not None:
            if usage.input_tokens:
                self._tokens.record(usage.input_tokens, {**metric_attributes, "gen_ai.token.type": "input"})
            if usage.output_tokens:
                self._tokens.record(usage.output_tokens, {**metric_attributes, "gen_ai.token.type": "output"})

    def _end_unsent(
        self,
        call: CallInfo,
        result: Completion | Embeddings | Images | Transcription | Speech | None,
        error: BaseException | None,
    ) -> None:
        """The span and duration of a call that sent no request: a hit, or a refusal.

        A hit gets no usage (no token was consumed by it, so no token-usage point either) and
        ``fmclient.response_cache.hit``, on the span and on its duration point.
        """
        settings = call.settings
        if settings is None:  # built without its target (not by the client): nothing to name it by
            return
        if isinstance(error, GeneratorExit):
            error = None  # a replayed stream closed early: not a failure
        ended = call.ended or time.perf_counter()
        metric_attributes = self._common(call.operation, settings, call.model, call.endpoint)
        if result is not None and result.model:
            metric_attributes["gen_ai.response.model"] = result.model
        if error is not None:
            metric_attributes["error.type"] = _error_type(error)
        if call.cache_hit:
            metric_attributes[CACHE_HIT_ATTRIBUTE] = True
        now_ns, now = time.time_ns(), time.perf_counter()
        span = self._tracer.start_span(
            f"{call.operation} {call.model}",
            kind=SpanKind.CLIENT,
            attributes={**metric_attributes, **self._request_attributes(call, call.request)},
            start_time=now_ns - int((now - call.started) * 1e9),
        )
        if span.is_recording():
            if isinstance(result, Completion):
                span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
                if self.capture_content:
                    span.set_attribute(
                        "gen_ai.output.messages", json.dumps([_output_message(result)], ensure_ascii=False)
                    )
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end(end_time=now_ns - int((now - ended) * 1e9))
        self._duration.record(ended - call.started, metric_attributes)

    def _response_attributes(
        self, result: Completion | Embeddings | Images | Transcription | Speech, *, content: bool
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if isinstance(result, (Images, Transcription, Speech)):  # tokens only where the provider reports them
            if result.usage is not None:
                attributes["gen_ai.usage.input_tokens"] = result.usage.input_tokens
                attributes["gen_ai.usage.output_tokens"] = result.usage.output_tokens
                if result.usage.output_image_tokens:  # Gemini's image models: priced apart
                    attributes["fmclient.usage.image.output_tokens"] = result.usage.output_image_tokens
            if result.model:
                attributes["gen_ai.response.model"] = result.model
            if not isinstance(result, Images):
                cost = result.cost  # per second of audio or per character where not per token
                if cost is not None and cost.currency == "USD":
                    attributes["fmclient.cost.usd"] = float(cost.total)
            return attributes
        usage = result.usage
        attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        if result.model:
            attributes["gen_ai.response.model"] = result.model
        if isinstance(result, Embeddings):
            if result.vectors:
                attributes["gen_ai.embeddings.dimension.count"] = len(result.vectors[0])
            return attributes
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        attributes["gen_ai.response.finish_reasons"] = [result.finish_reason]
        # The parts of input and output the provider reports, under the semantic conventions'
        # names (gen_ai.usage.*) and, where they have none yet, fmclient's own.
        for value, attribute in (
            (usage.cached_input_tokens, "gen_ai.usage.cache_read.input_tokens"),
            (usage.cache_write_tokens, "gen_ai.usage.cache_creation.input_tokens"),
            (usage.reasoning_tokens, "gen_ai.usage.reasoning.output_tokens"),
            (usage.cache_write_1h_tokens, "fmclient.usage.cache_creation_1h.input_tokens"),
            (usage.service_tier, "fmclient.usage.service_tier"),
            (usage.speed, "fmclient.usage.speed"),
            (usage.input_audio_tokens, "fmclient.usage.audio.input_tokens"),
            (usage.output_audio_tokens, "fmclient.usage.audio.output_tokens"),
            (usage.output_image_tokens, "fmclient.usage.image.output_tokens"),
        ):
            if value:
                attributes[attribute] = value
        response_id = getattr(result, "response_id", None)
        if response_id:
            attributes["gen_ai.response.id"] = response_id
        cost = getattr(result, "cost", None)
        total = getattr(cost, "total", None)  # a Decimal (fmclient.pricing.Cost)
        if total is not None and getattr(cost, "currency", None) == "USD":
            attributes["fmclient.cost.usd"] = float(total)
        if content:
            attributes["gen_ai.output.messages"] = json.dumps([_output_message(result)], ensure_ascii=False)
        return attributes

    # -- tool loops: one invoke_agent span per run, an execute_tool span per tool call --------------
    def on_run_start(self, run: RunInfo) -> None:
        attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent"}
        if run.model:
            attributes["gen_ai.request.model"] = run.model
        span = self._tracer.start_span("invoke_agent", kind=SpanKind.INTERNAL, attributes=attributes)
        # Current for the run, so each step's call span nests under it.
        run.state[self] = (span, otel_context.attach(trace.set_span_in_context(span)))

    def on_run_end(self, run: RunInfo, result: Any, error: BaseException | None) -> None:
        held = run.state.pop(self, None)
        if held is None:
            return
        span, token = held
        otel_context.detach(token)
        done = run.run
        if span.is_recording() and done is not None:
            usage = done.usage
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "fmclient.run.steps": len(done.steps),
                }
            )
            if done.stopped:
                span.set_attribute("fmclient.run.stopped", done.stopped)
        if error is not None and not isinstance(error, GeneratorExit):
            span.set_attribute("error.type", _error_type(error))
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    def on_tool_start(self, tool: ToolCallInfo) -> None:
        held = tool.run.state.get(self)
        name = tool.call.name
        span = self._tracer.start_span(
            f"execute_tool {name}",
            context=trace.set_span_in_context(held[0]) if held is not None else None,
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": tool.call.id,
                "gen_ai.tool.type": tool.kind,
            },
        )
        tool.state[self] = span

    def on_tool_end(self, tool: ToolCallInfo) -> None:
        span = tool.state.pop(self, None)
        if span is None:
            return
        result = tool.result
        if getattr(result, "is_error", False) or tool.error is not None:
            error_type = type(tool.error).__name__ if tool.error is not None else str(result.error_type)
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()


def _server_attributes(flavour: tuple[str, str | None, int | None]) -> dict[str, Any]:
    _, address, port = flavour
    if not address:
        return {}
    return {"server.address": address, "server.port": port} if port else {"server.address": address}


def _error_type(error: BaseException | None) -> str:
    if error is None:
        return "_OTHER"
    if isinstance(error, FMClientError) and error.status_code is not None:
        return str(error.status_code)
    return type(error).__name__


# -- the spec's message format ----------------------------------------------------------------------------
def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.content
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    else:
        for part in content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "content": part.text})
            else:
                if part.url is not None:
                    parts.append({"type": "uri", "modality": part.type, "uri": part.url})
                elif part.data is not None:
                    parts.append(
                        {
                            "type": "blob",
                            "modality": part.type,
                            "mime_type": part.media_type,
                            "content": base64.b64encode(part.data).decode("ascii"),
                        }
                    )
    if message.role == "tool":
        response = message.content if isinstance(message.content, str) else [p.get("content") for p in parts]
        return [{"type": "tool_call_response", "id": message.tool_call_id, "response": response}]
    for call in message.tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
    return parts


def _input_content(request: Request) -> dict[str, str]:
    attributes = {
        "gen_ai.input.messages": json.dumps(
            [{"role": m.role, "parts": _parts(m)} for m in request.messages if m.role != "system"],
            ensure_ascii=False,
        )
    }
    system = [m for m in request.messages if m.role == "system"]
    instructions = [request.system] if request.system else []
    instructions += [m.content for m in system if isinstance(m.content, str)]
    if instructions:
        attributes["gen_ai.system_instructions"] = json.dumps(
            [{"type": "text", "content": text} for text in instructions], ensure_ascii=False
        )
    return attributes


def _output_message(completion: Completion) -> Mapping[str, Any]:
    message = completion.message
    if not message.content and completion.text:
        message = Message(role="assistant", content=completion.text, tool_calls=tuple(completion.tool_calls))
    return {
        "role": "assistant",
        "parts": _parts(message),
        "finish_reason": _FINISH_REASONS.get(completion.finish_reason, completion.finish_reason),
    }
