"""Ollama adapter (``ollama/<model>``), on the official ``ollama`` client.

Wire format: ``POST /api/chat`` (one JSON body, or NDJSON lines when streaming, the last one
carrying ``"done": true`` with ``done_reason`` and the token counts) and ``POST /api/embed``.

Two deliberate departures from the client's high-level ``chat()``/``embed()`` helpers, both
through ``Client._request`` (the one method every helper funnels into, so the SDK's own status
and NDJSON-error handling still applies):

* the body is built here, not by the SDK's pydantic ``ChatRequest``: that model re-validates
  tools through a narrow ``Tool.Parameters.Property`` schema and silently drops every JSON-Schema
  keyword it does not know (nested ``properties``, ``minimum``, ``additionalProperties``...);
* responses are read as plain dicts, because ``ChatResponse`` drops the ``id`` newer Ollama
  servers put on tool calls; and ``_request`` takes httpx's per-request ``timeout``, which the
  helpers do not expose.

The host is ``base_url`` from configuration when set; otherwise the SDK reads ``OLLAMA_HOST``
(default ``http://127.0.0.1:11434``). Ollama needs no key; a configured ``api_key`` (for a
hosted Ollama) is sent as a bearer token, and the SDK itself honours ``OLLAMA_API_KEY``.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fmclient.errors import (
    APIConnectionError,
    BadRequestError,
    ConfigurationError,
    ContextWindowExceededError,
    FMClientError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedFeatureError,
    error_for_status,
    parse_retry_after,
)
from fmclient.profiles import normalise_model_id, profile_for
from fmclient.providers._async_clients import LoopClients
from fmclient.providers.base import Capabilities, EmbedBatching, Provider, ProviderSettings, import_sdk
from fmclient.providers.shared_io import (
    MappedErrors,
    astream_chunks,
    merge_provider_options,
    refuse_media,
    stream_chunks,
    tool_arguments,
)
from fmclient.types import (
    Chunk,
    Completion,
    Embeddings,
    EmbedRequest,
    FinishReason,
    ImagePart,
    Message,
    Request,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    import ollama

__all__ = [
    "OllamaProvider",
    "StreamState",
    "build_embed_params",
    "build_messages",
    "build_params",
    "map_error",
    "map_finish_reason",
    "parse_embed_response",
    "parse_response",
    "parse_stream_event",
]

DEFAULT_HOST = "http://127.0.0.1:11434"

# Phrases Ollama (and the llama.cpp runner under it) use when a prompt does not fit.
_CONTEXT_PHRASES = (
    "context length",
    "context window",
    "exceeds the context",
    "input length exceeds",
    "too many tokens",
    "prompt is too long",
)


# -- request translation (pure) ------------------------------------------------------------------
def build_messages(request: Request, *, provider: str = "ollama") -> list[dict[str, Any]]:
    """Normalised messages -> Ollama's ``messages`` (system first, images as base64)."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    # Ollama identifies a tool result by the tool's name; look it up from the call id when the
    # caller only gave the id.
    names_by_id: dict[str, str] = {}
    for message in request.messages:
        if message.role == "assistant":
            refuse_media(message, "assistant messages", host="Ollama", model=request.model, provider=provider)
            out.append(_assistant_message(message, provider=provider))
            for call in message.tool_calls:
                names_by_id[call.id] = call.name
        elif message.role == "tool":
            # A result made of parts keeps its images: every /api/chat message takes ``images``.
            entry = _user_message(message, request.model, provider)
            name = message.name or names_by_id.get(message.tool_call_id or "")
            if name:
                entry["tool_name"] = name
            if message.tool_call_id:
                entry["tool_call_id"] = message.tool_call_id
            out.append(entry)
        elif message.role == "system":
            out.append({"role": "system", "content": message.text})
        else:
            out.append(_user_message(message, request.model, provider))
    return out


def _user_message(message: Message, model: str, provider: str) -> dict[str, Any]:
    texts: list[str] = []
    images: list[str] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ImagePart):
            if part.data is None:
                # Ollama never fetches URLs: it takes inline base64 only.
                raise UnsupportedFeatureError(
                    "Ollama accepts images only as inline bytes, not URLs; load the image "
                    "(ImagePart.from_path(path) or its bytes) and pass its data",
                    provider=provider,
                    model=model,
                )
            images.append(part.base64_data)
        else:
            # Ollama's chat API carries text and images only: anything else would be dropped.
            raise UnsupportedFeatureError(
                f"Ollama's chat API takes text and images only, not {part.type} input",
                provider=provider,
                model=model,
            )
    entry: dict[str, Any] = {"role": message.role, "content": "\n".join(texts)}
    if images:
        entry["images"] = images
    return entry


def _assistant_message(message: Message, *, provider: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": "assistant", "content": message.text}
    if message.tool_calls:
        entry["tool_calls"] = [
            {"id": call.id, "function": {"name": call.name, "arguments": dict(call.arguments)}}
            for call in message.tool_calls
        ]
    state = (message.provider_state or {}).get(provider)
    if isinstance(state, Mapping) and state.get("thinking"):
        # Thinking models expect their earlier reasoning back on the next turn.
        entry["thinking"] = state["thinking"]
    return entry


def build_params(request: Request, *, stream: bool, provider: str = "ollama") -> dict[str, Any]:
    """The JSON body of ``POST /api/chat`` for a normalised request (``provider``: the
    configured provider name, whose key in ``provider_state`` holds earlier thinking)."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": build_messages(request, provider=provider),
        "stream": stream,
    }
    choice = request.tool_choice
    if request.tools and choice != "none":
        if choice not in (None, "auto"):
            # Ollama has no tool_choice: it cannot force a call, so say so instead of ignoring it.
            raise UnsupportedFeatureError(
                f"Ollama cannot force a tool call (tool_choice={choice!r}); use 'auto' or 'none'",
                provider=provider,
                model=request.model,
            )
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                },
            }
            for tool in request.tools
        ]
    if request.response_format is not None:
        body["format"] = dict(request.response_format.schema)
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.stop:
        options["stop"] = list(request.stop)
    if request.reasoning is not None:
        body["think"] = think_flag(request, provider)
    if options:
        body["options"] = options
    # provider_options go to the body; their ``options`` table joins the sampling options above,
    # and what an argument set (temperature, num_predict, format, think...) is not replaced.
    return merge_provider_options(body, request.provider_options, provider=provider, model=request.model)


#: The levels gpt-oss thinks at (Ollama passes ``think`` on to it as its reasoning effort).
GPT_OSS_EFFORTS = ("low", "medium", "high")


def think_flag(request: Request, provider: str) -> bool | str:
    """``reasoning=`` as Ollama's ``think``: the effort itself for gpt-oss (which takes "low",
    "medium" or "high"; any other effort is refused), for other thinking models ``True``, or
    ``False`` for "none" (they think or not, with no levels). A token budget has no Ollama
    equivalent and is refused."""
    reasoning = request.reasoning
    if "think" in request.provider_options:
        raise BadRequestError(
            "pass reasoning= or provider_options think, not both", provider=provider, model=request.model
        )
    if not isinstance(reasoning, str):
        raise UnsupportedFeatureError(
            f"reasoning={reasoning!r}: Ollama takes an effort (such as 'medium'), not a token budget",
            provider=provider,
            model=request.model,
        )
    if not normalise_model_id(request.model).startswith("gpt-oss"):
        return reasoning != "none"
    if reasoning not in GPT_OSS_EFFORTS:
        raise UnsupportedFeatureError(
            f"reasoning={reasoning!r}: gpt-oss on Ollama takes an effort of {', '.join(map(repr, GPT_OSS_EFFORTS))}",
            provider=provider,
            model=request.model,
        )
    return reasoning


def build_embed_params(request: EmbedRequest) -> dict[str, Any]:
    """The JSON body of ``POST /api/embed``: one batched call for every text."""
    body: dict[str, Any] = {
        "model": request.model,
        "input": list(request.texts),
        # Ollama truncates over-long inputs silently by default; an error is more honest.
        "truncate": False,
    }
    # truncate is fmclient's default; model and input come from the arguments
    return merge_provider_options(
        body, request.provider_options, provider="ollama", model=request.model, defaults=("truncate",)
    )


# -- response translation (pure) -----------------------------------------------------------------
def map_finish_reason(done_reason: str | None, *, has_tool_calls: bool = False) -> FinishReason:
    if done_reason == "length":  # cut off, possibly in the middle of a tool call
        return "length"
    if has_tool_calls:
        return "tool_calls"
    if done_reason in (None, "", "stop"):
        # Servers before done_reason existed ended every normal answer without one.
        return "stop"
    if done_reason == "length":
        return "length"
    return "other"


def _usage(data: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=int(data.get("prompt_eval_count") or 0),
        output_tokens=int(data.get("eval_count") or 0),
    )


def _malformed(what: str, provider: str, model: str) -> FMClientError:
    # Retryable like every adapter's malformed body: usually a proxy or a half-written reply.
    return ServiceUnavailableError(f"Ollama sent a malformed response: {what}", provider=provider, model=model)


def _tool_call(raw: Any, position: int, *, provider: str, model: str, truncated: bool) -> ToolCall:
    """A tool call; ``truncated`` (the reply was cut off) keeps argument text that is not JSON."""
    function = raw.get("function") if isinstance(raw, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise _malformed(f"a tool call without a function name: {raw!r}", provider, model)
    call_id = raw.get("id")
    if not isinstance(call_id, str) or not call_id:
        # Older Ollama servers send no ids; the tool result must still name its call.
        call_id = f"call_{position}_{uuid.uuid4().hex[:12]}"
    arguments = function.get("arguments")
    text: str | None = None
    if arguments is None:
        arguments = {}
    elif isinstance(arguments, str):
        # Ollama sends a JSON object; OpenAI-style servers behind OLLAMA_HOST sometimes a string.
        arguments, text = tool_arguments(
            arguments, truncated=truncated, name=function["name"], call_id=call_id, provider=provider, model=model
        )
    if not isinstance(arguments, Mapping):
        raise _malformed(f"tool call arguments are not an object: {arguments!r}", provider, model)
    return ToolCall(id=call_id, name=function["name"], arguments=dict(arguments), raw_arguments=text)


def _message_of(data: Any, provider: str, model: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _malformed(f"expected a JSON object, got {type(data).__name__}", provider, model)
    message = data.get("message")
    if message is None and data.get("done"):
        return {}
    if not isinstance(message, Mapping):
        raise _malformed("no 'message' object in the chat response", provider, model)
    return message


def parse_response(data: Any, *, provider: str, model: str) -> Completion:
    """A non-streamed ``/api/chat`` body -> Completion (``model`` is the requested id)."""
    message = _message_of(data, provider, model)
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise _malformed("message content is not a string", provider, model)
    truncated = isinstance(data, Mapping) and data.get("done_reason") == "length"
    calls = [
        _tool_call(raw, i, provider=provider, model=model, truncated=truncated)
        for i, raw in enumerate(message.get("tool_calls") or ())
    ]
    thinking = message.get("thinking")
    state = {provider: {"thinking": thinking}} if thinking else None
    return Completion(
        reasoning=thinking if isinstance(thinking, str) and thinking else None,
        text=content,
        finish_reason=map_finish_reason(data.get("done_reason"), has_tool_calls=bool(calls)),
        usage=_usage(data),
        model=str(data.get("model") or model),
        provider=provider,
        tool_calls=calls,
        message=Message(role="assistant", content=content, tool_calls=tuple(calls), provider_state=state),
        raw=data,
    )


@dataclass
class StreamState:
    """What one NDJSON stream remembers between lines."""

    provider: str
    model: str
    tool_calls: int = 0
    thinking: list[str] = field(default_factory=list)
    done: bool = False
    text: str = ""


def parse_stream_event(data: Any, state: StreamState) -> Chunk | None:
    """One NDJSON line -> a Chunk, or None when the line carries nothing for the caller."""
    message = _message_of(data, state.provider, state.model)
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise _malformed("message content is not a string", state.provider, state.model)
    deltas = []
    for raw in message.get("tool_calls") or ():
        # Ollama sends each tool call whole, arguments already parsed: one delta per call. Text
        # that is not JSON is passed on as it came, for the assembler to judge once the stop
        # reason is known (a reply cut off by max_tokens keeps it).
        call = _tool_call(raw, state.tool_calls, provider=state.provider, model=state.model, truncated=True)
        arguments = call.raw_arguments if call.raw_arguments is not None else json.dumps(call.arguments)
        deltas.append(ToolCallDelta(index=state.tool_calls, id=call.id, name=call.name, arguments=arguments))
        state.tool_calls += 1
    thinking = message.get("thinking")
    if not isinstance(thinking, str):
        thinking = ""
    if thinking:
        state.thinking.append(thinking)
    state.text += text
    if not data.get("done"):
        if not text and not deltas and not thinking:
            return None
        return Chunk(text=text, reasoning=thinking, tool_calls=tuple(deltas), raw=data)
    state.done = True
    joined = "".join(state.thinking)
    return Chunk(
        text=text,
        reasoning=thinking,
        tool_calls=tuple(deltas),
        finish_reason=map_finish_reason(data.get("done_reason"), has_tool_calls=state.tool_calls > 0),
        usage=_usage(data),
        model=str(data.get("model") or state.model),
        provider_state={state.provider: {"thinking": joined}} if joined else None,
        raw=data,
    )


def parse_embed_response(data: Any, *, provider: str, model: str, expected: int) -> Embeddings:
    if not isinstance(data, Mapping) or not isinstance(data.get("embeddings"), list):
        raise _malformed("no 'embeddings' list in the embed response", provider, model)
    vectors = [[float(x) for x in vector] for vector in data["embeddings"]]
    if len(vectors) != expected:
        raise _malformed(f"{len(vectors)} embeddings for {expected} inputs", provider, model)
    return Embeddings(
        vectors=vectors,
        usage=Usage(input_tokens=int(data.get("prompt_eval_count") or 0)),
        model=str(data.get("model") or model),
        provider=provider,
        raw=data,
    )


# -- errors --------------------------------------------------------------------------------------
def map_error(exc: BaseException, *, provider: str, model: str, host: str) -> FMClientError:
    """Any exception from the ollama client or httpx under it -> the fmclient error."""
    import httpx
    import ollama

    if isinstance(exc, FMClientError):
        return exc
    if isinstance(exc, ollama.ResponseError):
        error = _map_response_error(str(exc.error), exc.status_code, provider=provider, model=model)
        # The SDK re-raises httpx's status error as a ResponseError "from None", which drops the
        # response headers from the error itself; the original stays as the context.
        context = exc.__context__
        if error.retry_after is None and isinstance(context, httpx.HTTPStatusError):
            error.retry_after = parse_retry_after(context.response.headers)
        return error
    if isinstance(exc, (httpx.ConnectError, ConnectionError)):
        # The SDK turns httpx.ConnectError into a bare ConnectionError that names no host.
        return APIConnectionError(
            f"could not connect to Ollama at {host}: is the daemon running? Start it with "
            "`ollama serve`, or point base_url / OLLAMA_HOST at it",
            provider=provider,
            model=model,
        )
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(
            f"Ollama at {host} did not answer in time ({type(exc).__name__})", provider=provider, model=model
        )
    if isinstance(exc, (httpx.TransportError, httpx.StreamError)):
        return APIConnectionError(
            f"the connection to Ollama at {host} broke off: {type(exc).__name__}: {exc}",
            provider=provider,
            model=model,
        )
    if isinstance(exc, (ValueError, TypeError)):
        # json.JSONDecodeError, or a JSON value the SDK cannot spread into a dict.
        return _malformed(f"not a JSON object ({type(exc).__name__}: {exc})", provider, model)
    if isinstance(exc, ollama.RequestError):
        return BadRequestError(str(exc.error), provider=provider, model=model)
    return FMClientError(f"unexpected {type(exc).__name__} from Ollama: {exc}", provider=provider, model=model)


def _map_response_error(message: str, status: int, *, provider: str, model: str) -> FMClientError:
    lowered = message.lower()
    code = status if status > 0 else None  # -1: an error line inside a stream, no HTTP status
    not_found = "not found" in lowered and ("model" in lowered or "pull" in lowered)
    if not_found and (status == 404 or code is None):
        return ModelNotFoundError(
            f"{message}; run `ollama pull {model}` to download it",
            provider=provider,
            model=model,
            status_code=code,
        )
    if status == 404:
        # A 404 that names no model is a route the server does not have: not an Ollama server.
        return ModelNotFoundError(
            f"{message or 'HTTP 404'} (check that base_url / OLLAMA_HOST points at an Ollama server)",
            provider=provider,
            model=model,
            status_code=404,
        )
    if any(phrase in lowered for phrase in _CONTEXT_PHRASES) and (code is None or 400 <= status < 500):
        return ContextWindowExceededError(message, provider=provider, model=model, status_code=code)
    if code is None:
        # The runner failed mid-answer: a server-side failure, worth another attempt.
        return ServiceUnavailableError(
            f"Ollama reported an error mid-stream: {message}", provider=provider, model=model
        )
    return error_for_status(status, message or f"HTTP {status}", provider=provider, model=model)


# -- the adapter ---------------------------------------------------------------------------------
class OllamaProvider(Provider):
    """Chat, streaming, tools, images, structured output and embeddings on a local Ollama."""

    extra = "ollama"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._client: ollama.Client | None = None
        # An httpx.AsyncClient is bound to the loop it first ran on: one per running loop.
        self._async_clients: LoopClients[ollama.AsyncClient] = LoopClients(self._build_async)
        self._lock = threading.Lock()

    # -- readiness -------------------------------------------------------------------------------
    def capabilities(self, model: str) -> Capabilities:
        # The family's profile where the tag names a known family (llama3.2, mistral, gemma3...);
        # anything else depends on what the user pulled, and Ollama itself reports it.
        return (
            profile_for(model, "ollama")
            .with_host_embeddings()
            .restrict(
                forced_tool_choice=False,
                named_tool_choice=False,
                reason="Ollama's chat API has no tool_choice, so it cannot force a tool call",
            )
            .restrict(prompt_caching=False, reason="Ollama's chat API has no prompt-cache breakpoints")
            .restrict(
                structured_output_mode="json_grammar",
                reason="Ollama constrains structured output with the schema as a grammar (format)",
            )
        )

    def check_ready(self, model: str) -> None:
        self._sdk()

    def _sdk(self) -> Any:
        return import_sdk("ollama", extra=self.extra, provider=self.name)

    # -- clients ---------------------------------------------------------------------------------
    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.settings.timeout is not None:
            kwargs["timeout"] = self.settings.timeout
        key = self.settings.resolve_api_key()
        if key:
            kwargs["headers"] = {"Authorization": f"Bearer {key}"}
        elif not self.settings.ambient_credentials and os.environ.get("OLLAMA_API_KEY"):
            # The SDK adds $OLLAMA_API_KEY to a client given no Authorization header, whatever the host.
            raise ConfigurationError(
                f"OLLAMA_API_KEY would be sent to the base_url of provider {self.name!r}, which a config "
                "file in the working directory chose; trust that file explicitly (FMCLIENT_CONFIG or "
                "config_path) to allow it",
                provider=self.name,
            )
        return kwargs

    def _sync_client(self) -> ollama.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    sdk = self._sdk()
                    # host=None lets the SDK read OLLAMA_HOST itself.
                    client = sdk.Client(host=self.settings.base_url, **self._client_kwargs())
                    self._client = self._built(client, self._host(client))
        return self._client

    def _build_async(self) -> ollama.AsyncClient:
        client: ollama.AsyncClient = self._sdk().AsyncClient(host=self.settings.base_url, **self._client_kwargs())
        return self._built(client, self._host(client))

    def _async_client(self) -> ollama.AsyncClient:
        return self._async_clients.get()

    @staticmethod
    def _host(client: Any) -> str:
        inner = getattr(client, "_client", None)
        base = getattr(inner, "base_url", None)
        return str(base).rstrip("/") if base else DEFAULT_HOST

    def _request_kwargs(self, timeout: float | None) -> dict[str, Any]:
        # Only a set timeout is passed: httpx reads timeout=None as "never time out".
        chosen = timeout if timeout is not None else self.settings.timeout
        return {} if chosen is None else {"timeout": chosen}

    def _errors(self, model: str, client: Any, state: StreamState | None = None) -> MappedErrors:
        return MappedErrors(
            lambda exc: map_error(exc, provider=self.name, model=model, host=self._host(client)),
            provider=self.name,
            model=model,
            partial_text=(lambda: state.text) if state is not None else None,
        )

    # -- chat ------------------------------------------------------------------------------------
    def complete(self, request: Request) -> Completion:
        body = build_params(request, stream=False, provider=self.name)
        client = self._sync_client()
        with self._errors(request.model, client):
            data = client._request(dict, "POST", "/api/chat", json=body, **self._request_kwargs(request.timeout))
            return parse_response(data, provider=self.name, model=request.model)

    async def acomplete(self, request: Request) -> Completion:
        body = build_params(request, stream=False, provider=self.name)
        client = self._async_client()
        with self._errors(request.model, client):
            data = await client._request(dict, "POST", "/api/chat", json=body, **self._request_kwargs(request.timeout))
            return parse_response(data, provider=self.name, model=request.model)

    def stream(self, request: Request) -> Iterator[Chunk]:
        body = build_params(request, stream=True, provider=self.name)
        client = self._sync_client()
        state = StreamState(provider=self.name, model=request.model)

        def open_events() -> Any:
            return client._request(
                dict, "POST", "/api/chat", json=body, stream=True, **self._request_kwargs(request.timeout)
            )

        return stream_chunks(
            open_events,
            lambda data: parse_stream_event(data, state),
            self._end(state, client, request),
            self._errors(request.model, client, state),
            done=lambda: state.done,
        )

    def astream(self, request: Request) -> AsyncIterator[Chunk]:
        body = build_params(request, stream=True, provider=self.name)
        client = self._async_client()
        state = StreamState(provider=self.name, model=request.model)

        async def open_events() -> Any:
            return await client._request(
                dict, "POST", "/api/chat", json=body, stream=True, **self._request_kwargs(request.timeout)
            )

        return astream_chunks(
            open_events,
            lambda data: parse_stream_event(data, state),
            self._end(state, client, request),
            self._errors(request.model, client, state),
            done=lambda: state.done,
        )

    def _end(self, state: StreamState, client: Any, request: Request) -> Any:
        def end() -> None:
            # The final chunk came with the 'done' line; a stream without it was cut short.
            if not state.done:
                raise APIConnectionError(
                    f"the stream from Ollama at {self._host(client)} ended without its final 'done' line",
                    provider=self.name,
                    model=request.model,
                )

        return end

    # -- embeddings ------------------------------------------------------------------------------
    def embed_batching(self, model: str) -> EmbedBatching:
        return EmbedBatching()  # /api/embed takes every text in one request, and it is local

    def embed(self, request: EmbedRequest) -> Embeddings:
        body = build_embed_params(request)
        client = self._sync_client()
        with self._errors(request.model, client):
            data = client._request(dict, "POST", "/api/embed", json=body, **self._request_kwargs(request.timeout))
        return parse_embed_response(data, provider=self.name, model=request.model, expected=len(request.texts))

    async def aembed(self, request: EmbedRequest) -> Embeddings:
        body = build_embed_params(request)
        client = self._async_client()
        with self._errors(request.model, client):
            data = await client._request(dict, "POST", "/api/embed", json=body, **self._request_kwargs(request.timeout))
        return parse_embed_response(data, provider=self.name, model=request.model, expected=len(request.texts))

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        self._async_clients.close_all()
        if client is not None:
            closer: Any = client.close  # untyped in the SDK
            closer()

    async def aclose(self) -> None:
        await self._async_clients.aclose_current()
        self.close()
