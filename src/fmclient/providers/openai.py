"""OpenAI adapter, on the official ``openai`` SDK, speaking the Chat Completions API.

Chat Completions (not the Responses API) is what every OpenAI-compatible server speaks, so one
adapter serves OpenAI itself and any server configured with ``type = "openai"``: vLLM, the
llama.cpp server, LM Studio, and the built-in ``mistral`` provider. Everything that differs
between OpenAI and a compatible server is decided once, when the adapter is built. "OpenAI"
below means provider ``openai``, or any named provider without a ``base_url`` (it reaches OpenAI,
or ``$OPENAI_BASE_URL``, like the SDK does by default); a "compatible server" is any other named
provider, i.e. one with its own ``base_url``.

* API key. OpenAI: ``api_key``, else ``$api_key_env``, else ``$OPENAI_API_KEY``. A compatible
  server: ``api_key``, else ``$api_key_env`` (an error when that variable is unset), else a
  placeholder key: local servers (vLLM, llama.cpp, LM Studio) ignore the key but the SDK refuses
  to run without one, and ``$OPENAI_API_KEY`` must never be sent to a third-party server.
* Base URL: ``base_url`` from config, else the SDK's own ``$OPENAI_BASE_URL`` / default.
* Output limit: OpenAI deprecated ``max_tokens`` and its reasoning models (o-series, gpt-5)
  reject it, while ``max_completion_tokens`` works on every current OpenAI chat model; compatible
  servers (vLLM, llama.cpp, Mistral) know ``max_tokens`` (Mistral rejects the other with a 422).
  So OpenAI gets ``max_completion_tokens`` and compatible servers ``max_tokens``; the
  ``max_tokens_param`` setting overrides that choice for a server that needs the other one.
* Model rules come from the model family's profile (:mod:`fmclient.profiles`): on OpenAI the
  reasoning models (o-series, gpt-5) get their system prompt as a ``developer`` message, and are
  refused temperature / top_p / stop before sending. A compatible server's models get the
  permissive default profile: the server decides.
* Streamed usage: streams ask for a final usage chunk with ``stream_options.include_usage``.
  OpenAI always sends it, so only OpenAI's streams count as cut short without it (some compatible
  servers ignore the option). Mistral's API rejects ``stream_options`` with a
  422 and sends usage on its last chunk unasked, so the option is not sent to ``api.mistral.ai``,
  nor when the ``stream_usage = false`` setting says so.

Adapter settings accepted in a provider table: ``organization``, ``project`` (OpenAI headers),
``max_tokens_param``, ``stream_usage`` (bool), ``embed_batch_size`` (inputs per embeddings
request, default 2048, OpenAI's limit), ``async_transport`` and ``api``.

* The Responses API: on OpenAI itself, models whose family profile says ``api = "responses"``
  (the o-series and gpt-5) go through ``responses.create`` instead; the ``api`` setting or call
  option (``"chat"`` / ``"responses"``) overrides that, and a compatible server stays on chat
  unless so configured. Translation lives in :mod:`fmclient.providers._openai_responses`.

* Raw responses: chat calls go through the SDK's own request path (``with_raw_response``: its
  headers, timeouts and errors) but answers are parsed from the JSON, skipping the pydantic
  models the SDK would build only for fmclient to read back. ``Completion.raw`` is the
  ``chat.completion`` JSON body as a dict, every field as the server sent it
  (``openai.types.chat.ChatCompletion.model_validate(raw)`` rebuilds the SDK object), and a
  streamed ``Chunk.raw`` is the ``chat.completion.chunk`` dict. Embeddings keep the SDK's objects.
  Chat calls (sync or async, streamed or not) post their body with the SDK client's own ``post``
  (``providers/_sdk_post.py``), skipping ``create``'s body transform, a no-op walk over
  fmclient's plain-JSON body that was ~40% of a call's CPU; the request on the wire is the same.
* Async transport: async calls use the SDK's ``DefaultAioHttpClient`` when ``aiohttp`` is
  installed (``pip install "fmclient[fast]"``): about twice the throughput of the default httpx
  pool under concurrency, with the same errors, timeouts and streaming (a connection failure the
  aiohttp transport reports as a connect timeout is mapped back to ``APIConnectionError``).
  ``async_transport = "httpx"`` keeps the SDK default; ``"aiohttp"`` requires aiohttp; ``"auto"``
  is the default. One async client is kept per event loop; those of closed loops are released.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import inspect
import json
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fmclient._media import sniff
from fmclient.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    FMClientError,
    RequestTimeoutError,
    UnsupportedFeatureError,
    error_for_status,
    parse_retry_after,
)
from fmclient.pricing import price_modifier
from fmclient.profiles import DEFAULT_PROFILE, profile_for
from fmclient.providers._async_clients import (
    LoopClients,
    aiohttp_client,
    aiohttp_installed,
    async_transport_setting,
    parsed,
)
from fmclient.providers._openai_wire import (
    body_message,
    classify_error,
    malformed,
    parse_arguments,
    refined_error,
    response_format_param,
    str_or_none,
    stream_error,
)
from fmclient.providers._sdk_post import chat_completion_post, post_chat_completion_raw, response_post
from fmclient.providers.base import Capabilities, EmbedBatching, Provider, ProviderSettings, import_sdk
from fmclient.providers.shared_io import (
    MappedErrors,
    astream_chunks,
    check_image_url,
    document_filename,
    inline_only,
    merge_provider_options,
    rate_limit_headers,
    refuse_media,
    stream_chunks,
)
from fmclient.types import (
    AudioAnswer,
    AudioPart,
    Chunk,
    Completion,
    DocumentPart,
    Embeddings,
    EmbedRequest,
    FinishReason,
    GeneratedImage,
    ImagePart,
    ImageRequest,
    Images,
    Message,
    Request,
    Speech,
    SpeechRequest,
    TextPart,
    TokenCount,
    ToolCall,
    ToolCallDelta,
    Transcription,
    TranscriptionRequest,
    TranscriptSegment,
    Usage,
    image_mime_type,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI, OpenAI

__all__ = [
    "EMBED_BATCH_SIZE",
    "LOCAL_PLACEHOLDER_KEY",
    "OpenAIProvider",
    "StreamParser",
    "build_messages",
    "build_params",
    "capabilities_for",
    "map_error",
    "parse_arguments",
    "parse_embeddings",
    "parse_response",
    "parse_usage",
    "response_format_param",
]

#: OpenAI accepts at most 2048 inputs per embeddings request; larger calls are split.
EMBED_BATCH_SIZE = 2048
#: Sent to a keyless local server (vLLM, llama.cpp, LM Studio): they ignore it, the SDK needs one.
LOCAL_PLACEHOLDER_KEY = "fmclient-no-key"

_NATIVE = "openai"
_APIS = ("chat", "responses")
_MAX_TOKENS_PARAMS = frozenset({"max_tokens", "max_completion_tokens"})
# Hosts known to reject ``stream_options`` (with 422 extra_forbidden) while sending usage anyway.
_NO_STREAM_OPTIONS_HOSTS = frozenset({"api.mistral.ai"})
# Keys of provider_options that are SDK request options rather than body fields.
_REQUEST_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body"})

_FINISH_REASONS: dict[str | None, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

# Exceptions from the SDK's HTTP stack that it did not wrap: all mean the connection failed.
_HTTP_MODULES = ("httpx", "httpcore", "h11", "anyio", "aiohttp")


# -- capabilities ----------------------------------------------------------------------------
def capabilities_for(model: str, *, native: bool) -> Capabilities:
    """What a model accepts: its family's profile on OpenAI itself. A compatible server's models
    are assumed to accept everything (and to embed): the server itself says no."""
    if not native:
        return DEFAULT_PROFILE.with_host_embeddings()
    profile = profile_for(model, "openai")
    if profile.chat:
        profile = profile.restrict(max_stop_sequences=4, reason="the OpenAI API accepts at most 4 stop sequences")
    return profile


# -- request translation ---------------------------------------------------------------------
# The image URLs OpenAI fetches itself (inline images go as data URIs).
_HTTP = ("https://", "http://")


def build_messages(request: Request, provider: str = _NATIVE, *, system_role: str = "system") -> list[dict[str, Any]]:
    """The Chat Completions ``messages`` array: system prompt first (in the role the model's
    profile names: ``developer`` for OpenAI's reasoning models), then the conversation.

    ``provider`` names whose ``provider_state`` (list content, e.g. Mistral thinking) is replayed.
    """
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": system_role, "content": request.system})
    for message in request.messages:
        role = message.role
        if role == "tool":
            if not message.tool_call_id:
                raise BadRequestError(
                    "a tool result message needs the tool_call_id of the call it answers",
                    model=request.model,
                )
            # Chat Completions tool messages take text parts only.
            refuse_media(message, "tool results", host="OpenAI Chat Completions", model=request.model)
            out.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text})
        elif role == "assistant":
            out.append(_assistant_message(message, request.model, provider))
        else:
            out.append({"role": role, "content": _content(message.content, request.model, provider)})
    return out


def _content(content: str | tuple[Any, ...], model: str, provider: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    # A lone text part goes as a plain string: older compatible servers only accept that.
    if len(content) == 1 and isinstance(content[0], TextPart):
        return content[0].text
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            check_image_url(part, _HTTP, host="OpenAI", provider=provider, model=model)
            # data_uri is the URL itself for a URL image, a base64 data URI for inline bytes.
            parts.append({"type": "image_url", "image_url": {"url": part.data_uri}})
        elif isinstance(part, AudioPart):
            parts.append(_input_audio(part, model, provider))
        elif isinstance(part, DocumentPart):
            parts.append(_file_part(part, model, provider))
        else:
            raise UnsupportedFeatureError(
                f"OpenAI Chat Completions takes no {part.type} parts", provider=provider, model=model
            )
    return parts


# input_audio's format (the SDK's InputAudio: Literal["wav", "mp3"]).
_AUDIO_FORMAT = {"audio/wav": "wav", "audio/mpeg": "mp3"}


def _input_audio(part: AudioPart, model: str, provider: str) -> dict[str, Any]:
    inline_only(part, host="OpenAI Chat Completions", provider=provider, model=model)
    fmt = _AUDIO_FORMAT.get(part.media_type or "")
    if fmt is None:
        raise UnsupportedFeatureError(
            f"OpenAI's input_audio takes WAV or MP3, not {part.media_type}", provider=provider, model=model
        )
    return {"type": "input_audio", "input_audio": {"data": part.base64_data, "format": fmt}}


def _file_part(part: DocumentPart, model: str, provider: str) -> dict[str, Any]:
    """A document as a ``file`` part: its bytes as a data URI in ``file_data`` with a file name
    (the API requires one with file_data). Chat Completions takes PDF there, nothing else (its
    400 names application/pdf as the one type, [openai-file-inputs] in profiles/families.toml);
    the Responses API's ``input_file`` takes the other document types the profile lists."""
    inline_only(part, host="OpenAI Chat Completions", provider=provider, model=model)
    if part.media_type != "application/pdf":
        raise UnsupportedFeatureError(
            f"OpenAI Chat Completions' file parts take PDF only, not {part.media_type}; the Responses "
            "API's input_file takes it: call with api='responses'",
            provider=provider,
            model=model,
        )
    return {"type": "file", "file": {"file_data": part.data_uri, "filename": document_filename(part)}}


def _assistant_message(message: Message, model: str, provider: str) -> dict[str, Any]:
    refuse_media(message, "assistant messages", host="OpenAI", model=model)
    text = message.text
    out: dict[str, Any] = {"role": "assistant", "content": text}
    state = (message.provider_state or {}).get(provider)
    if isinstance(state, Mapping) and isinstance(state.get("content"), list):
        # The reply came as a list of parts (thinking next to text): sent back as it came.
        out["content"] = [dict(part) for part in state["content"]]
    if isinstance(state, Mapping) and isinstance(state.get("audio_id"), str):
        # A spoken answer goes back by its id: the model hears its own audio again.
        out["audio"] = {"id": state["audio_id"]}
    if message.tool_calls:
        # OpenAI wants content null rather than "" next to tool calls.
        if not isinstance(out["content"], list):
            out["content"] = text or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return out


def build_params(
    request: Request,
    *,
    max_tokens_param: str = "max_tokens",
    system_role: str = "system",
    stream: bool = False,
    stream_usage: bool = True,
    sdk_params: frozenset[str] | None = None,
    provider: str = _NATIVE,
) -> dict[str, Any]:
    """Keyword arguments for ``chat.completions.create`` (the per-attempt timeout aside).

    ``provider_options`` are merged in unchanged: keys the SDK method knows become keyword
    arguments, any other key (a server's own extension, e.g. vLLM's ``top_k``) goes into
    ``extra_body`` so it reaches the JSON body. With ``sdk_params=None`` all are keywords.
    """
    params: dict[str, Any] = {
        "model": request.model,
        "messages": build_messages(request, provider, system_role=system_role),
    }
    if request.max_tokens is not None:
        params[max_tokens_param] = request.max_tokens
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.stop:
        params["stop"] = list(request.stop)
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": dict(tool.parameters),
                },
            }
            for tool in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        params["tool_choice"] = (
            choice if choice in ("auto", "none", "required") else {"type": "function", "function": {"name": choice}}
        )
    if request.response_format is not None:
        params["response_format"] = response_format_param(request.response_format)
    if request.audio is not None:  # a spoken answer as well as the text
        params["modalities"] = ["text", "audio"]
        params["audio"] = dict(request.audio)
        if stream and request.audio.get("format") == "wav":
            # A stream is pcm16 only (the profile refused other formats): the assembled answer
            # wraps the PCM as the WAV file asked for.
            params["audio"]["format"] = "pcm16"
    if stream:
        params["stream"] = True
        if stream_usage:
            params["stream_options"] = {"include_usage": True}
    if request.provider_options:
        # include_usage is fmclient's default for a stream, not an argument: an option may change it
        _merge_options(
            params,
            request.provider_options,
            sdk_params,
            provider=provider,
            model=request.model,
            defaults=("stream_options",),
        )
        if request.audio is None:
            _refuse_audio_answers(params, provider=provider, model=request.model)
    return params


def _refuse_audio_answers(params: Mapping[str, Any], *, provider: str, model: str) -> None:
    """An audio answer asked for through provider options would skip the profile's check and the
    parsing of ``message.audio``: refused, pointing at complete()'s own ``audio=`` argument."""
    for holder in (params, params.get("extra_body") or {}):
        modalities = holder.get("modalities")
        if holder.get("audio") is not None or (isinstance(modalities, (list, tuple)) and "audio" in modalities):
            raise UnsupportedFeatureError(
                "audio answers through provider options (audio=, modalities=['audio']) are refused: "
                "pass complete()'s own audio={'voice': ..., 'format': ...} argument",
                provider=provider,
                model=model,
            )


def _merge_options(
    params: dict[str, Any],
    options: Mapping[str, Any],
    sdk_params: frozenset[str] | None,
    *,
    provider: str,
    model: str,
    defaults: Iterable[str] = (),
) -> None:
    """Merge provider options into SDK keyword arguments (see
    :func:`~fmclient.providers.shared_io.merge_provider_options`): keys the SDK method takes as
    keywords merge into ``params``; others go into ``extra_body``. An ``extra_body`` key that
    names a field fmclient already sends merges the same way, since the SDK would lay
    ``extra_body`` over the body and replace that field whole."""
    keywords: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in options.items():
        if key == "extra_body":
            for name, field_value in value.items():
                (keywords if name in params else extra)[name] = field_value
        elif sdk_params is None or key in sdk_params or key in _REQUEST_OPTIONS:
            keywords[key] = value
        else:
            extra[key] = value
    merge_provider_options(params, keywords, provider=provider, model=model, defaults=defaults)
    if extra:
        params["extra_body"] = extra


def _without_api_option(request: Request) -> Request:
    """The call option ``api`` chooses the endpoint; it is not a body field."""
    if "api" not in request.provider_options:
        return request
    options = {k: v for k, v in request.provider_options.items() if k != "api"}
    return dataclasses.replace(request, provider_options=options)


def _sdk_param_names(method: Callable[..., Any]) -> frozenset[str]:
    # inspect follows functools.wraps (the SDK's required_args decorator) to the real signature.
    return frozenset(
        name
        for name, p in inspect.signature(method).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "timeout"
    )


# -- response translation --------------------------------------------------------------------
def _plain(obj: Any) -> Any:
    """Wire data as plain JSON values: an SDK model becomes the dict it was built from."""
    if obj is None or type(obj) is dict:
        return obj
    to_dict = getattr(obj, "to_dict", None)
    return to_dict() if callable(to_dict) else obj


def parse_usage(usage: Any, service_tier: Any = None) -> Usage | None:
    """prompt_tokens already include cached ones (and cache writes), completion_tokens include
    reasoning ones.

    ``usage`` is the JSON ``usage`` object (or the SDK's ``CompletionUsage``); ``service_tier``
    the response's (``flex``, ``priority``...: the price it was served at).
    """
    usage = _plain(usage)
    if not isinstance(usage, Mapping):
        return None
    details = _plain(usage.get("prompt_tokens_details"))
    details = details if isinstance(details, Mapping) else {}
    output_details = _plain(usage.get("completion_tokens_details"))
    output_details = output_details if isinstance(output_details, Mapping) else {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cached_input_tokens=details.get("cached_tokens") or 0,
        cache_write_tokens=details.get("cache_write_tokens") or 0,
        reasoning_tokens=output_details.get("reasoning_tokens") or 0,
        service_tier=price_modifier(service_tier),
        # Audio in and out is priced apart from text (gpt-audio: 32 and 64 $/MTok against 2.5 and 10).
        input_audio_tokens=details.get("audio_tokens") or 0,
        output_audio_tokens=output_details.get("audio_tokens") or 0,
    )


def split_content(content: Any) -> tuple[str, list[dict[str, Any]] | None]:
    """``message.content`` (or a delta's) -> its text, and the parts to keep when it is a list.

    OpenAI-compatible servers may send a list of parts instead of a string; Mistral's reasoning
    models send ``{"type": "thinking", "thinking": [...]}`` next to ``{"type": "text", ...}``.
    The text is the text parts joined; the list is kept only when it holds more than text.
    """
    if content is None:
        return "", None
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        return str(content), None
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    only_text = True
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, Mapping):
            continue
        parts.append(dict(part))
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            only_text = False
    return "".join(texts), (None if only_text else parts)


def _merge_parts(kept: list[dict[str, Any]], parts: Sequence[Mapping[str, Any]]) -> None:
    """Streamed parts appended to the ones so far, pieces of one part joined into it."""
    for part in parts:
        previous = kept[-1] if kept else None
        kind = str(part.get("type"))
        if previous is not None and previous.get("type") == kind == "text":
            previous["text"] = str(previous.get("text") or "") + str(part.get("text") or "")
        elif (
            previous is not None
            and previous.get("type") == kind
            and isinstance(previous.get(kind), list)
            and isinstance(part.get(kind), list)
        ):
            _merge_parts(previous[kind], part[kind])
        elif previous is not None and previous.get("type") == kind and isinstance(previous.get(kind), str):
            previous[kind] = previous[kind] + str(part.get(kind) or "")
        else:
            kept.append(json.loads(json.dumps(part)))


def parse_response(response: Any, *, provider: str, model: str) -> Completion:
    """A ``chat.completion`` body (the JSON dict, or the SDK's ChatCompletion) -> Completion.

    Only the first choice is read. ``Completion.raw`` is ``response`` itself.
    """
    if isinstance(response, str):
        # The SDK hands back the text of a non-JSON body instead of raising.
        raise malformed(f"expected a chat.completion JSON body, got {response[:200]!r}", provider=provider, model=model)
    data = _plain(response)
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if not isinstance(choices, list) or not choices:
        raise malformed("the body has no choices", provider=provider, model=model)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(message, Mapping):
        raise malformed("the first choice has no message", provider=provider, model=model)
    answered = data.get("model") or model
    text, parts = split_content(message.get("content"))
    finish = _FINISH_REASONS.get(choice.get("finish_reason"), "other")
    # Cut off by max_tokens: a tool call's arguments may stop mid-JSON (kept raw, not raised).
    truncated = finish == "length"

    def tool_call(call_id: str, function: Mapping[str, Any]) -> ToolCall:
        name = function.get("name") or ""
        arguments, raw = parse_arguments(
            function.get("arguments"),
            name=name,
            call_id=call_id,
            provider=provider,
            model=answered,
            truncated=truncated,
        )
        return ToolCall(id=call_id, name=name, arguments=arguments, raw_arguments=raw)

    tool_calls: list[ToolCall] = []
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):  # a custom-tool call: fmclient only declares function tools
            continue
        tool_calls.append(tool_call(call.get("id") or f"call_{i}", function))
    legacy = message.get("function_call")
    if isinstance(legacy, Mapping) and not tool_calls:  # pre-tools servers answer with function_call
        tool_calls.append(tool_call("call_0", legacy))
    if tool_calls and finish == "stop":  # some compatible servers say "stop" after tool calls
        finish = "tool_calls"
    refusal = message.get("refusal")
    if refusal:
        # A refusal (structured output) comes instead of content: surface it as the text.
        finish = "content_filter"
        text = text or refusal
    state: dict[str, Any] = {"content": parts} if parts else {}
    audio = parse_audio_answer(message.get("audio"))
    if audio is not None:
        text = text or audio.transcript  # a spoken answer has no content: its transcript is the text
        if audio.id:
            state["audio_id"] = audio.id
    return Completion(
        text=text,
        finish_reason=finish,
        usage=parse_usage(data.get("usage"), data.get("service_tier")) or Usage(),
        model=answered,
        provider=provider,
        tool_calls=tool_calls,
        message=Message(
            role="assistant",
            content=text,
            tool_calls=tuple(tool_calls),
            provider_state={provider: state} if state else None,
        ),
        raw=response,
        response_id=str_or_none(data.get("id")),
        audio=audio,
    )


# pcm16 has no header to read: 24 kHz 16-bit little-endian mono samples.
PCM16 = "audio/pcm;rate=24000;channels=1;bits=16"


def parse_audio_answer(audio: Any) -> AudioAnswer | None:
    """``message.audio`` (``{"id", "data": base64, "transcript", "expires_at"}``) as an AudioAnswer."""
    audio = _plain(audio)
    if not isinstance(audio, Mapping) or not isinstance(audio.get("data"), str):
        return None
    data = base64.b64decode(audio["data"])
    return AudioAnswer(
        data=data,
        mime_type=sniff(data, "audio") or PCM16,
        transcript=str(audio.get("transcript") or ""),
        id=str_or_none(audio.get("id")),
        expires_at=audio.get("expires_at") if isinstance(audio.get("expires_at"), int) else None,
    )


class StreamParser:
    """Turns ChatCompletionChunk objects into Chunks; :meth:`end` makes the final chunk.

    The finish reason arrives on the last content chunk and usage on a separate chunk after it
    (with ``include_usage``), so both are held and delivered together at the end.
    """

    __slots__ = (
        "audio_id",
        "finish_reason",
        "model",
        "parts",
        "provider",
        "refused",
        "require_usage",
        "saw_content",
        "saw_tool_calls",
        "text",
        "usage",
    )

    def __init__(self, provider: str, model: str, *, require_usage: bool = False) -> None:
        self.provider = provider
        self.model = model
        self.require_usage = require_usage
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.refused = False
        self.saw_tool_calls = False
        self.saw_content = False
        self.audio_id: str | None = None  # a spoken answer's id, for the next turn
        self.text = ""
        # Content that came as lists of parts (e.g. Mistral thinking), merged as it streams.
        self.parts: list[dict[str, Any]] = []

    def feed(self, event: Any) -> Chunk | None:
        """One ``chat.completion.chunk`` (its JSON dict, or the SDK's object) -> a Chunk, if it says anything."""
        if type(event) is not dict:
            if isinstance(event, str) or not hasattr(event, "choices"):
                raise malformed(
                    f"unexpected stream event {str(event)[:200]!r}", provider=self.provider, model=self.model
                )
            event = _plain(event)
        if "choices" not in event:
            raise malformed(f"unexpected stream event {str(event)[:200]!r}", provider=self.provider, model=self.model)
        model = event.get("model")
        if model:
            self.model = model
        usage = event.get("usage")
        if usage is not None:
            self.usage = parse_usage(usage, event.get("service_tier"))
        text = ""
        deltas: tuple[ToolCallDelta, ...] = ()
        audio: dict[str, Any] | None = None
        for choice in event["choices"] or ():
            if choice.get("index"):  # only the first choice (n > 1 interleaves others)
                continue
            delta = choice.get("delta")
            if delta is not None:
                content = delta.get("content")
                text, parts = split_content(content)
                if isinstance(content, list):
                    if not self.parts and self.text:  # text that came as plain strings before
                        self.parts.append({"type": "text", "text": self.text})
                    _merge_parts(self.parts, parts or [{"type": "text", "text": text}])
                elif text and self.parts:
                    _merge_parts(self.parts, [{"type": "text", "text": text}])
                if text:
                    self.saw_content = True
                if delta.get("audio") is not None:
                    audio = self._audio_piece(delta["audio"])
                    transcript = audio.pop("transcript")
                    if transcript and not self.saw_content:
                        # A spoken answer has no content: its transcript is the text (as unstreamed).
                        text += transcript
                refusal = delta.get("refusal")
                if refusal:
                    text += refusal
                    self.refused = True
                calls = delta.get("tool_calls")
                if calls:
                    self.saw_tool_calls = True
                    deltas = tuple(_tool_call_delta(call) for call in calls)
                elif delta.get("function_call") is not None:
                    self.saw_tool_calls = True
                    legacy = delta["function_call"]
                    deltas = (ToolCallDelta(0, None, legacy.get("name"), legacy.get("arguments") or ""),)
            finish = choice.get("finish_reason")
            if finish:
                self.finish_reason = _FINISH_REASONS.get(finish, "other")
        if audio is not None:
            self.text += text
            return Chunk(text=text, tool_calls=deltas, raw=event, **audio)
        if text or deltas:
            self.text += text
            return Chunk(text=text, tool_calls=deltas, raw=event)
        return None

    def _audio_piece(self, audio: Any) -> dict[str, Any]:
        """``delta.audio`` (``{"id", "data": base64 pcm16, "transcript", "expires_at"}``, any of
        them) as Chunk fields; the transcript comes back apart, for the text."""
        if not isinstance(audio, Mapping):
            raise malformed(f"unexpected delta.audio {str(audio)[:200]!r}", provider=self.provider, model=self.model)
        audio_id = str_or_none(audio.get("id"))
        if audio_id:
            self.audio_id = audio_id
        encoded = audio.get("data")
        expires_at = audio.get("expires_at")
        return {
            "audio": base64.b64decode(encoded) if isinstance(encoded, str) and encoded else b"",
            "audio_mime_type": PCM16,  # streams are pcm16 only (the profile refuses the rest)
            "audio_id": audio_id,
            "audio_expires_at": expires_at if isinstance(expires_at, int) else None,
            "transcript": str(audio.get("transcript") or ""),
        }

    def end(self) -> Chunk:
        """The final chunk, or APIConnectionError if the stream stopped before its end."""
        if self.finish_reason is None or (self.require_usage and self.usage is None):
            missing = "finish_reason" if self.finish_reason is None else "usage chunk"
            raise APIConnectionError(
                f"the stream ended before its final event (no {missing} received)",
                provider=self.provider,
                model=self.model,
            )
        finish = self.finish_reason
        if self.refused:
            finish = "content_filter"
        elif finish == "stop" and self.saw_tool_calls:
            finish = "tool_calls"
        state: dict[str, Any] = {}
        if any(part.get("type") != "text" for part in self.parts):
            state["content"] = self.parts
        if self.audio_id:
            state["audio_id"] = self.audio_id  # the spoken answer goes back by its id, as unstreamed
        return Chunk(
            finish_reason=finish,
            usage=self.usage,
            model=self.model,
            provider_state={self.provider: state} if state else None,
        )


def _tool_call_delta(call: Mapping[str, Any]) -> ToolCallDelta:
    function = call.get("function")
    if function is None:
        return ToolCallDelta(index=call.get("index") or 0, id=call.get("id"))
    return ToolCallDelta(
        index=call.get("index") or 0,
        id=call.get("id"),
        name=function.get("name"),
        arguments=function.get("arguments") or "",
    )


def parse_embeddings(responses: Sequence[Any], sizes: Sequence[int], *, provider: str, model: str) -> Embeddings:
    """One Embeddings from the responses of consecutive batches of ``sizes`` inputs each.

    Vectors are placed by each item's ``index`` (servers need not answer in input order).
    """
    vectors: list[list[float] | None] = [None] * sum(sizes)
    usage = Usage()
    offset = 0
    for response, size in zip(responses, sizes, strict=True):
        data = getattr(response, "data", None)
        if not isinstance(data, list):
            raise malformed("the embeddings body has no data list", provider=provider, model=model)
        for item in data:
            index, vector = item.index, item.embedding
            if not (isinstance(index, int) and 0 <= index < size and isinstance(vector, list)):
                raise malformed(f"bad embedding item (index {index!r})", provider=provider, model=model)
            vectors[offset + index] = vector
        if response.usage is not None:
            usage = usage + Usage(input_tokens=response.usage.prompt_tokens or 0)
        offset += size
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        raise malformed(f"no embedding returned for input(s) {missing[:10]}", provider=provider, model=model)
    return Embeddings(
        vectors=vectors,  # type: ignore[arg-type]  # every slot checked above
        usage=usage,
        model=(getattr(responses[0], "model", None) if responses else None) or model,
        provider=provider,
        raw=responses[0] if len(responses) == 1 else list(responses),
    )


# -- errors ----------------------------------------------------------------------------------
def _aiohttp_connection_failure(exc: BaseException) -> BaseException | None:
    """The aiohttp connection error behind an SDK "timeout" that was none, if that is what it is.

    The aiohttp transport the openai SDK vendors (httpx-aiohttp as published) reports every
    ``aiohttp.ClientConnectionError`` (refused, reset, dropped) as ``httpx.ConnectTimeout``, which
    the SDK raises as ``APITimeoutError``. Over httpx those are connection errors: keep them so.
    """
    aiohttp = sys.modules.get("aiohttp")
    cause = exc.__cause__
    root = cause.__cause__ if cause is not None else None
    if aiohttp is None or root is None:
        return None
    connection_error: type[BaseException] = aiohttp.ClientConnectionError
    # aiohttp's own timeouts (ServerTimeoutError...) are asyncio.TimeoutError too: timeouts stay so.
    if isinstance(root, connection_error) and not isinstance(root, asyncio.TimeoutError):
        return root
    return None


def map_error(exc: BaseException, *, provider: str, model: str | None, secret: str | None = None) -> FMClientError:
    """Any exception from the openai SDK (or its HTTP layer) -> the fmclient error for it.

    ``secret`` (the API key in use) is blanked out of messages, in case a server echoes it.
    """
    import openai

    if isinstance(exc, FMClientError):
        return exc

    def clean(text: str) -> str:
        return text.replace(secret, "***") if secret and len(secret) > 3 else text

    if isinstance(exc, openai.APIStatusError):
        message = clean(body_message(exc.body, exc.message))
        error = error_for_status(
            exc.status_code,
            message,
            provider=provider,
            model=model,
            retry_after=parse_retry_after(exc.response.headers),
        )
        return classify_error(error, exc.code, exc.type)
    if isinstance(exc, openai.APITimeoutError):
        failure = _aiohttp_connection_failure(exc)
        if failure is not None:
            detail = f"{type(failure).__name__}: {clean(str(failure))}"
            return APIConnectionError(f"connection failed: {detail}", provider=provider, model=model)
        return RequestTimeoutError("the request timed out", provider=provider, model=model)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        detail = f": {type(cause).__name__}: {clean(str(cause))}" if cause else ""
        return APIConnectionError(f"connection failed{detail}", provider=provider, model=model)
    if isinstance(exc, openai.APIResponseValidationError):
        return malformed(clean(exc.message), provider=provider, model=model)
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        return stream_error(exc.body, clean(exc.message), provider=provider, model=model)
    if isinstance(exc, ValueError):  # json.JSONDecodeError, UnicodeDecodeError, SDK parse checks
        detail = f"{type(exc).__name__}: {clean(str(exc))}"
        return malformed(detail, provider=provider, model=model)
    if type(exc).__module__.startswith(_HTTP_MODULES) or isinstance(exc, OSError):
        detail = f"{type(exc).__name__}: {clean(str(exc))}"
        return APIConnectionError(f"connection failed: {detail}", provider=provider, model=model)
    return FMClientError(
        f"unexpected {type(exc).__name__} from the openai SDK: {clean(str(exc))}",
        provider=provider,
        model=model,
    )


# -- the adapter -----------------------------------------------------------------------------
class OpenAIProvider(Provider):
    """OpenAI and every OpenAI-compatible server, through ``openai.OpenAI`` / ``AsyncOpenAI``."""

    extra = "openai"
    option_keys = frozenset(
        {"organization", "project", "max_tokens_param", "stream_usage", "embed_batch_size", "async_transport", "api"}
    )

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        options = settings.options
        # Talks to OpenAI itself (see the module docstring) rather than a compatible server.
        self._native = self.name == _NATIVE or settings.base_url is None
        # An explicit setting wins; otherwise the model's profile decides, then the host default.
        self._max_tokens_setting: str | None = options.get("max_tokens_param")
        max_tokens_param = options.get("max_tokens_param", "max_completion_tokens" if self._native else "max_tokens")
        if max_tokens_param not in _MAX_TOKENS_PARAMS:
            raise ConfigurationError(
                f"max_tokens_param must be 'max_tokens' or 'max_completion_tokens', got {max_tokens_param!r}",
                provider=self.name,
            )
        self._max_tokens_param: str = max_tokens_param
        host = urlsplit(settings.base_url).hostname if settings.base_url else None
        stream_usage = options.get("stream_usage", host not in _NO_STREAM_OPTIONS_HOSTS)
        if not isinstance(stream_usage, bool):
            raise ConfigurationError(f"stream_usage must be true or false, got {stream_usage!r}", provider=self.name)
        self._stream_usage = stream_usage
        self._require_usage = self._native and stream_usage
        batch = options.get("embed_batch_size", EMBED_BATCH_SIZE)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(f"embed_batch_size must be a positive integer, got {batch!r}", provider=self.name)
        self._batch_size: int = batch
        for key in ("organization", "project"):
            if key in options and not isinstance(options[key], str):
                raise ConfigurationError(f"{key} must be a string", provider=self.name)
        self._async_transport = async_transport_setting(settings)
        self._api_setting: str | None = options.get("api")
        if self._api_setting is not None and self._api_setting not in _APIS:
            raise ConfigurationError(
                f"api must be 'chat' or 'responses', got {self._api_setting!r}", provider=self.name
            )
        self._responses_params: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._api_key: str | None = None
        self._placeholder_key = False
        self._client: OpenAI | None = None
        # An async HTTP pool is bound to the event loop it first ran on: one AsyncOpenAI per loop.
        self._async_clients: LoopClients[AsyncOpenAI] = LoopClients(self._build_async)
        self._raw_streams: tuple[Any, Any] | None = None
        self._chat_params: frozenset[str] = frozenset()
        self._embed_params: frozenset[str] = frozenset()
        self._capabilities: dict[str, Capabilities] = {}

    # -- checks --------------------------------------------------------------------------------
    def capabilities(self, model: str) -> Capabilities:
        found = self._capabilities.get(model)
        if found is None:
            found = self._capabilities[model] = capabilities_for(model, native=self._native)
        return found

    def check_ready(self, model: str) -> None:
        if self._api_key is not None:  # resolved once; the client calls this before every call
            return
        sdk = import_sdk("openai", extra=self.extra, provider=self.name)
        key = self._resolve_key()
        if not self._chat_params:
            self._chat_params = _sdk_param_names(sdk.resources.chat.completions.Completions.create)
            self._embed_params = _sdk_param_names(sdk.resources.embeddings.Embeddings.create)
            # Stream[object]: the SDK's SSE decoding and error events, chunks left as JSON dicts.
            self._raw_streams = (sdk.Stream[object], sdk.AsyncStream[object])
        if self._async_transport == "aiohttp" and not aiohttp_installed():
            raise ConfigurationError(
                f'async_transport = "aiohttp" for provider {self.name!r} needs aiohttp: pip install "fmclient[fast]"',
                provider=self.name,
            )
        self._api_key = key

    def _resolve_key(self) -> str:
        settings = self.settings
        if not self._native:
            key = settings.resolve_api_key()  # never $OPENAI_API_KEY: it is not this server's
            if key is not None:
                return key
            if settings.api_key_env:
                raise ConfigurationError(
                    f"no API key for provider {self.name!r}: set the {settings.api_key_env} environment variable",
                    provider=self.name,
                )
            self._placeholder_key = True
            return LOCAL_PLACEHOLDER_KEY
        key = settings.resolve_api_key("OPENAI_API_KEY")
        if key is None:
            raise ConfigurationError(
                f"no API key for provider {self.name!r}: set "
                f"{settings.key_sources('OPENAI_API_KEY')}, or api_key in [providers.{self.name}]",
                provider=self.name,
            )
        return key

    # -- SDK clients, built once ---------------------------------------------------------------
    def _client_kwargs(self) -> dict[str, Any]:
        self.check_ready("")
        kwargs: dict[str, Any] = {
            "api_key": self._api_key,
            "base_url": self.settings.base_url,  # None: the SDK reads $OPENAI_BASE_URL itself
            "max_retries": 0,  # fmclient's retry layer is the only one
        }
        if self.settings.timeout is not None:
            kwargs["timeout"] = self.settings.timeout
        for key in ("organization", "project"):
            if key in self.settings.options:
                kwargs[key] = self.settings.options[key]
        return kwargs

    def _sync_client(self) -> OpenAI:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    import openai

                    client = openai.OpenAI(**self._client_kwargs())
                    self._client = self._built(client, client.base_url)
        return client

    def _async_client(self) -> AsyncOpenAI:
        return self._async_clients.get()

    def _build_async(self) -> AsyncOpenAI:
        import openai

        kwargs = self._client_kwargs()
        if self._async_transport != "httpx":
            http_client = aiohttp_client(openai)
            if http_client is not None:
                kwargs["http_client"] = http_client
        client = openai.AsyncOpenAI(**kwargs)
        return self._built(client, client.base_url)

    def _stream_type(self, async_: bool) -> Any:
        if self._raw_streams is None:
            self.check_ready("")
        assert self._raw_streams is not None
        return self._raw_streams[async_]

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        self._async_clients.close_all()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        await self._async_clients.aclose_current()
        self.close()

    # -- calls ---------------------------------------------------------------------------------
    def _chat_kwargs(self, request: Request, *, stream: bool) -> dict[str, Any]:
        profile = self.capabilities(request.model)
        request = _without_api_option(request)
        params = build_params(
            request,
            max_tokens_param=self._max_tokens_setting or profile.max_tokens_param or self._max_tokens_param,
            system_role=profile.system_role,
            stream=stream,
            stream_usage=self._stream_usage,
            sdk_params=self._chat_params,
            provider=self.name,
        )
        if request.reasoning is not None:
            if not isinstance(request.reasoning, str):
                raise UnsupportedFeatureError(
                    f"reasoning={request.reasoning!r}: OpenAI takes a reasoning effort (such as 'medium'), "
                    "not a token budget",
                    provider=self.name,
                    model=request.model,
                )
            params["reasoning_effort"] = request.reasoning
        if request.timeout is not None:
            params["timeout"] = request.timeout
        return params

    # -- the Responses API (see fmclient.providers._openai_responses) --------------------------
    def uses_responses(self, request: Request) -> bool:
        """Whether ``request`` goes to the Responses API: the call option ``api``, else the
        provider setting, else (OpenAI itself only) the model family's profile."""
        chosen = request.provider_options.get("api", self._api_setting)
        if chosen is None:
            return self._native and self.capabilities(request.model).api == "responses"
        if chosen not in _APIS:
            raise BadRequestError(
                f"api must be 'chat' or 'responses', got {chosen!r}", provider=self.name, model=request.model
            )
        return bool(chosen == "responses")

    def _responses_kwargs(self, request: Request, *, stream: bool) -> dict[str, Any]:
        from fmclient.providers._openai_responses import RESPONSES_DEFAULTS, build_responses_params

        request = _without_api_option(request)
        if request.audio is not None:
            raise UnsupportedFeatureError(
                "the Responses API makes no audio answers (audio=): use api='chat'",
                provider=self.name,
                model=request.model,
            )
        try:
            params = build_responses_params(
                request,
                provider=self.name,
                reasoning_model=self.capabilities(request.model).reasoning,
                stream=stream,
            )
        except FMClientError as error:
            error.provider = self.name
            raise
        if request.provider_options:
            if not self._responses_params:
                from openai.resources.responses import Responses

                self._responses_params = _sdk_param_names(Responses.create)
            # store, include and the summary setting are fmclient's defaults, not arguments
            _merge_options(
                params,
                request.provider_options,
                self._responses_params,
                provider=self.name,
                model=request.model,
                defaults=RESPONSES_DEFAULTS,
            )
        if request.timeout is not None:
            params["timeout"] = request.timeout
        return params

    def _responses_complete(self, request: Request) -> Completion:
        from fmclient.providers._openai_responses import parse_responses_body

        client = self._sync_client()
        kwargs = self._responses_kwargs(request, stream=False)
        with self._errors(request.model):
            raw = client.post(**response_post(kwargs))
            completion = parse_responses_body(raw.parse(to=object), provider=self.name, model=request.model)
            completion.request_id = str_or_none(raw.request_id)
            completion.rate_limit_headers = rate_limit_headers(raw.headers)
            return completion

    async def _responses_acomplete(self, request: Request) -> Completion:
        from fmclient.providers._openai_responses import parse_responses_body

        client = self._async_client()
        kwargs = self._responses_kwargs(request, stream=False)
        with self._errors(request.model):
            raw = await client.post(**response_post(kwargs))
            response = await parsed(raw.parse(to=object))
            completion = parse_responses_body(response, provider=self.name, model=request.model)
            completion.request_id = str_or_none(raw.request_id)
            completion.rate_limit_headers = rate_limit_headers(raw.headers)
            return completion

    def _responses_stream(self, request: Request) -> Iterator[Chunk]:
        from fmclient.providers._openai_responses import ResponsesStreamParser

        client = self._sync_client()
        kwargs = self._responses_kwargs(request, stream=True)
        parser = ResponsesStreamParser(self.name, request.model)

        def open_events() -> Any:
            stream_type = self._stream_type(False)
            return client.post(**response_post(kwargs, stream_type)).parse(to=stream_type)

        return stream_chunks(open_events, parser.feed, parser.end, self._errors(request.model, lambda: parser.text))

    def _responses_astream(self, request: Request) -> AsyncIterator[Chunk]:
        from fmclient.providers._openai_responses import ResponsesStreamParser

        client = self._async_client()
        kwargs = self._responses_kwargs(request, stream=True)
        parser = ResponsesStreamParser(self.name, request.model)

        async def open_events() -> Any:
            stream_type = self._stream_type(True)
            raw = await client.post(**response_post(kwargs, stream_type))
            return await parsed(raw.parse(to=stream_type))

        return astream_chunks(open_events, parser.feed, parser.end, self._errors(request.model, lambda: parser.text))

    def _map(self, exc: BaseException, model: str) -> FMClientError:
        error = map_error(exc, provider=self.name, model=model, secret=self._api_key)
        if self._placeholder_key and isinstance(error, AuthenticationError):
            error = refined_error(
                error,
                AuthenticationError,
                f"{error.message} (no API key is configured for provider {self.name!r}: "
                f"set api_key or api_key_env in [providers.{self.name}])",
            )
        return error

    def _errors(self, model: str, partial_text: Callable[[], str] | None = None) -> MappedErrors:
        return MappedErrors(
            lambda exc: self._map(exc, model), provider=self.name, model=model, partial_text=partial_text
        )

    def count_tokens(self, request: Request) -> TokenCount:
        """Offline, with tiktoken (``fmclient[tokens]``): OpenAI has no count API for chat."""
        from fmclient.tokens import tiktoken_count

        counted = tiktoken_count(request)
        if not self._native and counted.exact:
            # A compatible server runs its own model with its own tokenizer.
            return TokenCount(counted.input_tokens, False, f"{counted.method} (estimate: not OpenAI's own server)")
        return counted

    def complete(self, request: Request) -> Completion:
        if self.uses_responses(request):
            return self._responses_complete(request)
        client = self._sync_client()
        kwargs = self._chat_kwargs(request, stream=False)
        with self._errors(request.model):
            # The raw response parsed to a plain dict: the SDK's own request path (timeouts,
            # errors, headers) without building a pydantic model fmclient would only read back,
            # and through the SDK's own post without create()'s no-op body transform (see _sdk_post).
            raw = client.post(**chat_completion_post(kwargs))
            completion = parse_response(raw.parse(to=object), provider=self.name, model=request.model)
            completion.request_id = str_or_none(raw.request_id)  # the x-request-id header
            completion.rate_limit_headers = rate_limit_headers(raw.headers)
            return completion

    async def acomplete(self, request: Request) -> Completion:
        if self.uses_responses(request):
            return await self._responses_acomplete(request)
        client = self._async_client()
        kwargs = self._chat_kwargs(request, stream=False)
        with self._errors(request.model):
            # The SDK's own post without create()'s no-op body transform: ~37% of the call's CPU (see the module).
            raw = await post_chat_completion_raw(client, kwargs)
            response = await parsed(raw.parse(to=object))
            completion = parse_response(response, provider=self.name, model=request.model)
            completion.request_id = str_or_none(raw.request_id)
            completion.rate_limit_headers = rate_limit_headers(raw.headers)
            return completion

    def stream(self, request: Request) -> Iterator[Chunk]:
        if self.uses_responses(request):
            return self._responses_stream(request)
        client = self._sync_client()
        kwargs = self._chat_kwargs(request, stream=True)
        parser = StreamParser(self.name, request.model, require_usage=self._require_usage)

        def open_events() -> Any:
            stream_type = self._stream_type(False)
            return client.post(**chat_completion_post(kwargs, stream_type)).parse(to=stream_type)

        return stream_chunks(open_events, parser.feed, parser.end, self._errors(request.model, lambda: parser.text))

    def astream(self, request: Request) -> AsyncIterator[Chunk]:
        if self.uses_responses(request):
            return self._responses_astream(request)
        client = self._async_client()
        kwargs = self._chat_kwargs(request, stream=True)
        parser = StreamParser(self.name, request.model, require_usage=self._require_usage)

        async def open_events() -> Any:
            stream_type = self._stream_type(True)
            raw = await client.post(**chat_completion_post(kwargs, stream_type))
            return await parsed(raw.parse(to=stream_type))

        return astream_chunks(open_events, parser.feed, parser.end, self._errors(request.model, lambda: parser.text))

    def embed_batching(self, model: str) -> EmbedBatching:
        # Batches go one after another, not all at once: a burst of large requests would mostly
        # buy rate-limit errors.
        return EmbedBatching(max_texts=self._batch_size)

    def _embed_arguments(self, request: EmbedRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": request.model, "input": list(request.texts)}
        if request.provider_options:  # e.g. dimensions=256
            _merge_options(
                kwargs, request.provider_options, self._embed_params, provider=self.name, model=request.model
            )
        if request.timeout is not None:
            kwargs["timeout"] = request.timeout
        return kwargs

    def embed(self, request: EmbedRequest) -> Embeddings:
        """One request for the texts given (the client splits by ``embed_batch_size``)."""
        client = self._sync_client()
        kwargs = self._embed_arguments(request)
        with self._errors(request.model):
            response = client.embeddings.create(**kwargs)
            return parse_embeddings([response], [len(request.texts)], provider=self.name, model=request.model)

    async def aembed(self, request: EmbedRequest) -> Embeddings:
        client = self._async_client()
        kwargs = self._embed_arguments(request)
        with self._errors(request.model):
            response = await client.embeddings.create(**kwargs)
            return parse_embeddings([response], [len(request.texts)], provider=self.name, model=request.model)

    # -- image generation (Images API) ---------------------------------------------------------
    def generate_image(self, request: ImageRequest) -> Images:
        """``images.generate`` (the GPT image models answer base64 images and report token usage)."""
        client = self._sync_client()
        kwargs = build_image_params(request, _image_params())
        with self._errors(request.model):
            response = client.images.generate(**kwargs)
            return parse_images_response(response, provider=self.name, model=request.model)

    async def agenerate_image(self, request: ImageRequest) -> Images:
        client = self._async_client()
        kwargs = build_image_params(request, _image_params())
        with self._errors(request.model):
            response = await client.images.generate(**kwargs)
            return parse_images_response(response, provider=self.name, model=request.model)

    # -- transcription and speech (Audio API) ----------------------------------------------------
    def transcribe(self, request: TranscriptionRequest) -> Transcription:
        """``audio.transcriptions.create``: a multipart upload of the audio file. Its answer is
        read as the raw JSON (as ``with_raw_response`` does, see :func:`_raw_answer`)."""
        client = self._sync_client()
        kwargs = _raw_answer(
            build_transcription_params(request, self._timestamps(request.model), _transcription_params())
        )
        with self._errors(request.model):
            raw = client.audio.transcriptions.create(**kwargs)
            return parse_transcription(raw.parse(to=object), provider=self.name, model=request.model)

    async def atranscribe(self, request: TranscriptionRequest) -> Transcription:
        client = self._async_client()
        kwargs = _raw_answer(
            build_transcription_params(request, self._timestamps(request.model), _transcription_params())
        )
        with self._errors(request.model):
            raw = await client.audio.transcriptions.create(**kwargs)
            response = await parsed(raw.parse(to=object))
            return parse_transcription(response, provider=self.name, model=request.model)

    def _timestamps(self, model: str) -> bool:
        return self.capabilities(model).transcription_timestamps

    def speak(self, request: SpeechRequest) -> Speech:
        """``audio.speech.create``: the audio file's bytes, in the format asked for."""
        client = self._sync_client()
        kwargs = build_speech_params(request, _speech_params())
        with self._errors(request.model):
            response = client.audio.speech.create(**kwargs)
            return speech_result(response.content, request, provider=self.name)

    async def aspeak(self, request: SpeechRequest) -> Speech:
        client = self._async_client()
        kwargs = build_speech_params(request, _speech_params())
        with self._errors(request.model):
            response = await client.audio.speech.create(**kwargs)
            return speech_result(response.content, request, provider=self.name)


_image_param_names: frozenset[str] | None = None


def _image_params() -> frozenset[str]:
    """``images.generate``'s keyword names: a provider option that is one goes as a keyword,
    anything else in ``extra_body``."""
    global _image_param_names
    if _image_param_names is None:
        from openai.resources.images import Images as ImagesResource

        _image_param_names = _sdk_param_names(ImagesResource.generate)
    return _image_param_names


def build_image_params(request: ImageRequest, sdk_params: frozenset[str] | None = None) -> dict[str, Any]:
    """``images.generate`` keywords for an image request. The profile has already refused what
    the model cannot take (a negative prompt or seed for the GPT image models)."""
    kwargs: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": request.n}
    if request.size is not None:
        kwargs["size"] = request.size
    if request.quality is not None:
        kwargs["quality"] = request.quality
    if request.negative_prompt is not None or request.seed is not None:
        raise UnsupportedFeatureError(
            "the OpenAI Images API takes no negative prompt or seed", provider=_NATIVE, model=request.model
        )
    if request.provider_options:  # e.g. background="transparent", output_format="webp"
        _merge_options(kwargs, request.provider_options, sdk_params, provider=_NATIVE, model=request.model)
    if request.timeout is not None:
        kwargs["timeout"] = request.timeout
    return kwargs


def parse_images_response(response: Any, *, provider: str, model: str) -> Images:
    body = _plain(response)
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), list) or not body["data"]:
        raise malformed("the Images API answered without data", provider=provider, model=model)
    images: list[GeneratedImage] = []
    for item in body["data"]:
        item = _plain(item)
        encoded = item.get("b64_json") if isinstance(item, Mapping) else None
        if not isinstance(encoded, str):
            raise malformed(
                "an image came back without b64_json (a URL answer is not fetched)", provider=provider, model=model
            )
        data = base64.b64decode(encoded)
        mime_type = image_mime_type(data)
        if mime_type == "application/octet-stream" and body.get("output_format") == "svg":
            # SVG (gpt-image-2.6) is XML text: no signature to sniff, so the answer's own word.
            mime_type = "image/svg+xml"
        images.append(GeneratedImage(data=data, mime_type=mime_type, revised_prompt=item.get("revised_prompt")))
    usage = _plain(body.get("usage"))
    parsed_usage = None
    if isinstance(usage, Mapping):
        parsed_usage = Usage(input_tokens=usage.get("input_tokens") or 0, output_tokens=usage.get("output_tokens") or 0)
    return Images(images=images, model=model, provider=provider, usage=parsed_usage, raw=body)


# -- transcription and speech ------------------------------------------------------------------
_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"  # the SDK's with_raw_response asks with it
_audio_param_names: dict[str, frozenset[str]] = {}


def _transcription_params() -> frozenset[str]:
    """``audio.transcriptions.create``'s keyword names (a provider option that is one goes as a
    keyword, e.g. ``temperature``, ``include``, ``chunking_strategy``)."""
    found = _audio_param_names.get("transcriptions")
    if found is None:
        from openai.resources.audio.transcriptions import Transcriptions

        found = _audio_param_names["transcriptions"] = _sdk_param_names(Transcriptions.create)
    return found


def _speech_params() -> frozenset[str]:
    found = _audio_param_names.get("speech")
    if found is None:
        from openai.resources.audio.speech import Speech as SpeechResource

        found = _audio_param_names["speech"] = _sdk_param_names(SpeechResource.create)
    return found


def build_transcription_params(
    request: TranscriptionRequest, timestamps: bool, sdk_params: frozenset[str] | None = None
) -> dict[str, Any]:
    """``audio.transcriptions.create`` keywords. The file goes as (name, bytes, MIME type), the
    multipart part the SDK sends. A model that gives timed segments (whisper-1) is asked for
    ``verbose_json`` with segment timestamps; the others answer ``json``."""
    kwargs: dict[str, Any] = {
        "model": request.model,
        "file": (request.filename, request.audio, request.mime_type),
    }
    if timestamps:
        kwargs["response_format"] = "verbose_json"
        kwargs["timestamp_granularities"] = ["segment"]
    else:
        kwargs["response_format"] = "json"
    if request.language is not None:
        kwargs["language"] = request.language
    if request.prompt is not None:
        kwargs["prompt"] = request.prompt
    if request.provider_options:
        _merge_options(kwargs, request.provider_options, sdk_params, provider=_NATIVE, model=request.model)
    if kwargs.get("stream"):
        raise UnsupportedFeatureError(
            "transcribe() does not stream (stream=True)", provider=_NATIVE, model=request.model
        )
    if request.timeout is not None:
        kwargs["timeout"] = request.timeout
    return kwargs


def _raw_answer(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` asking the SDK for its raw response, as its ``with_raw_response`` does (the
    header is how that wrapper asks): ``parse(to=object)`` of it is the answer's JSON as a dict.
    The SDK would otherwise build a pydantic ``Transcription`` that fmclient only reads back
    (``to_dict``): two walks over the answer per call, the dump the largest single item of
    fmclient's own time on a transcription (cProfile, bench/run.py --scenario media). A caller's
    extra_headers go too."""
    kwargs["extra_headers"] = {**(kwargs.get("extra_headers") or {}), _RAW_RESPONSE_HEADER: "true"}
    return kwargs


def parse_transcription(response: Any, *, provider: str, model: str) -> Transcription:
    """A ``Transcription`` (json) or ``TranscriptionVerbose`` (verbose_json) answer."""
    body = _plain(response)
    if not isinstance(body, Mapping) or not isinstance(body.get("text"), str):
        raise malformed("the transcription answer has no text", provider=provider, model=model)
    language = body.get("language")
    if not isinstance(language, str):  # gpt-transcribe: the languages it detected, most likely first
        detected = body.get("languages")
        first = detected[0] if isinstance(detected, list) and detected else None
        language = first.get("code") if isinstance(first, Mapping) else None
    segments = [
        TranscriptSegment(start=float(item["start"]), end=float(item["end"]), text=str(item["text"]).strip())
        for item in body.get("segments") or ()
        if isinstance(item, Mapping) and {"start", "end", "text"} <= item.keys()
    ]
    duration = body.get("duration")
    usage = body.get("usage")
    parsed_usage = None
    if isinstance(usage, Mapping):
        if usage.get("type") == "tokens":
            details = usage.get("input_token_details") or {}
            parsed_usage = Usage(
                input_tokens=usage.get("input_tokens") or 0,
                output_tokens=usage.get("output_tokens") or 0,
                input_audio_tokens=details.get("audio_tokens") or 0,
            )
        elif usage.get("type") == "duration" and isinstance(usage.get("seconds"), (int, float)):
            duration = usage["seconds"]  # the seconds billed
    return Transcription(
        text=body["text"],
        model=model,
        provider=provider,
        language=language if isinstance(language, str) else None,
        duration=float(duration) if isinstance(duration, (int, float)) else None,
        segments=segments,
        usage=parsed_usage,
        raw=body,
    )


# The Speech API's formats and what each file is: opus comes in an Ogg container; pcm is raw
# 24 kHz 16-bit little-endian mono samples with no header.
_SPEECH_MIME_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": PCM16,
}


def build_speech_params(request: SpeechRequest, sdk_params: frozenset[str] | None = None) -> dict[str, Any]:
    """``audio.speech.create`` keywords (the profile has refused a format or instructions the
    model cannot take)."""
    kwargs: dict[str, Any] = {
        "model": request.model,
        "input": request.text,
        "voice": request.voice,
        "response_format": request.format or "mp3",
    }
    if request.instructions is not None:
        kwargs["instructions"] = request.instructions
    if request.provider_options:  # e.g. speed=1.25
        _merge_options(kwargs, request.provider_options, sdk_params, provider=_NATIVE, model=request.model)
    if kwargs.get("stream_format") not in (None, "audio"):
        raise UnsupportedFeatureError(
            "speak() answers one audio file: stream_format must be 'audio'", provider=_NATIVE, model=request.model
        )
    if request.timeout is not None:
        kwargs["timeout"] = request.timeout
    return kwargs


def speech_result(data: bytes, request: SpeechRequest, *, provider: str) -> Speech:
    if not data:
        raise malformed("the Speech API answered no audio", provider=provider, model=request.model)
    return Speech(
        data=data,
        mime_type=_SPEECH_MIME_TYPES[request.format or "mp3"],
        model=request.model,
        provider=provider,
        characters=len(request.text),
    )
