"""Google Gemini, through the official ``google-genai`` SDK (Gemini Developer API or Vertex AI).

Configuration (``[providers.gemini]`` or any table with ``type = "gemini"``):

* key: ``api_key``, else ``api_key_env``, else ``GOOGLE_API_KEY`` / ``GEMINI_API_KEY`` (the
  variables the SDK itself reads, in its order of precedence).
* ``base_url``: sent as ``HttpOptions(base_url=...)``; when unset the SDK applies
  ``GOOGLE_GEMINI_BASE_URL`` (``GOOGLE_VERTEX_BASE_URL`` on Vertex) itself.
* ``vertexai = true`` (or the SDK's ``GOOGLE_GENAI_USE_VERTEXAI``) selects Vertex AI, which
  authenticates with Application Default Credentials, resolved when the client is built so a
  machine without them gets a ``ConfigurationError`` saying what to set; ``credentials`` (a
  ``google.auth`` credentials object, set in code) replaces them, and an ``api_key`` selects
  express mode. ``project`` / ``location`` fall back to ``GOOGLE_CLOUD_PROJECT`` /
  ``GOOGLE_CLOUD_LOCATION``. ``api_version`` overrides the SDK's.

SDK behaviour this adapter relies on (google-genai 3.x):

* One ``genai.Client`` per provider instance serves sync and async calls. Its async transport
  (httpx2, or aiohttp when installed) already keeps one connection pool per event loop, so the
  same client is safe to use from several loops.
* Retries: the SDK retries nothing unless ``HttpOptions.retry_options`` is set, *except* its
  aiohttp path, which silently retries a failed connection once after a 1-10 s sleep unless
  retry options are present. We therefore set ``retry_options.attempts = 1``: exactly one
  attempt, and fmclient's retry layer is the only one.
* ``HttpOptions.timeout`` is in milliseconds.
* Automatic function calling is disabled: fmclient returns tool calls to the caller.
* Automatic continuation (``finishReason: CONTINUATION`` + ``continuationToken``) is left on:
  it is how the API delivers one long generation in several hops. It also lets the SDK resume
  a dropped stream from a checkpoint token the server already sent (never from scratch, and
  never when no token was sent). Turn it off with
  ``provider_options={"automatic_continuation": False}``.
* Images given by http(s) URL are sent as ``file_data`` parts: the Gemini API (and Vertex AI)
  fetch public or signed URLs themselves, so the adapter never downloads them.
* Inline media above the profile's ``max_inline_media_bytes`` go through the Files API
  (``files.upload``, ``files.get`` until ACTIVE), once per content and account, within the
  attempt's time (``_gemini_files``). Vertex AI has no Files API: there the limits narrow to the
  inline one and larger media are refused before sending.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fmclient._media import is_pcm, pcm_as_wav
from fmclient.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFilterError,
    ContextWindowExceededError,
    FMClientError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedFeatureError,
    error_for_status,
    parse_retry_after,
)
from fmclient.pricing import price_modifier
from fmclient.profiles import profile_for
from fmclient.providers import _gemini_files
from fmclient.providers.base import Capabilities, EmbedBatching, Provider, ProviderSettings, import_sdk
from fmclient.providers.shared_io import (
    MappedErrors,
    astream_chunks,
    check_image_url,
    merge_provider_options,
    stream_chunks,
    thinking_budget,
)
from fmclient.types import (
    AudioAnswer,
    Chunk,
    Completion,
    Embeddings,
    EmbedRequest,
    FinishReason,
    GeneratedImage,
    ImagePart,
    ImageRequest,
    Images,
    MediaPart,
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
    Usage,
)

if TYPE_CHECKING:
    from google import genai

__all__ = [
    "EMBED_BATCH_SIZE",
    "FOREIGN_CALL_SIGNATURE",
    "GeminiProvider",
    "build_contents",
    "build_embed_config",
    "build_params",
    "map_error",
    "map_finish_reason",
    "parse_embeddings",
    "parse_response",
    "parse_usage",
]

#: ``batchEmbedContents`` accepts at most this many texts per request.
EMBED_BATCH_SIZE = 100
#: The Gemini API accepts at most this many stop sequences.
MAX_STOP_SEQUENCES = 5
#: Key variables the SDK reads, in the SDK's order of precedence.
KEY_ENV_VARS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
#: The placeholder signature Gemini documents for function calls it did not produce itself
#: (history from another model, or edited). Gemini 3 answers 400 when the first function call of
#: a step in the current turn has no signature; this value is accepted by the Gemini API and
#: Vertex AI alike (the Gemini API also takes "context_engineering_is_the_way_to_go").
FOREIGN_CALL_SIGNATURE = b"skip_thought_signature_validator"

_CONTENT_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# HTTP codes for google.rpc status names, for errors that carry a status but no code
# (an error event inside a stream).
_STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_CONTEXT_WINDOW_PATTERNS = (
    "exceeds the maximum number of tokens",
    "input token count",
    "exceeds the context window",
    "context length",
)
_TRUE = ("1", "true", "yes", "on")
_VERTEX_NO_FILES_API = (
    "Vertex AI has no Files API, so media above {limit:,} bytes inline a request cannot be uploaded: "
    "put the file in Cloud Storage and pass its gs:// URI"
)


# -- request translation (pure) ---------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Mappings/sequences (e.g. frozen schema mappings) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def json_schema(schema: Mapping[str, Any]) -> Any:
    """A JSON Schema in the form Gemini documents: a ``$ref`` may have no sibling keywords but
    ``$...`` ones (pydantic puts a field's ``default`` or ``description`` next to it). Such a node
    becomes ``{"anyOf": [{"$ref": ...}], ...siblings}``, which means the same and keeps every
    keyword. ``$defs`` stay at the top: Gemini resolves ``$ref`` into them."""
    return _ref_siblings_moved(_plain(schema))


# Keywords whose values are JSON data, not schemas: left exactly as given.
_SCHEMA_DATA_KEYWORDS = frozenset({"default", "enum", "const", "examples", "example"})


def _ref_siblings_moved(node: Any) -> Any:
    if isinstance(node, list):
        return [_ref_siblings_moved(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: value if key in _SCHEMA_DATA_KEYWORDS else _ref_siblings_moved(value) for key, value in node.items()}
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "anyOf" not in out:
        # Older pydantic wraps a $ref that has siblings in a one-member allOf, which Gemini's
        # subset lacks; a one-member anyOf means the same.
        out["anyOf"] = out.pop("allOf")
    if "$ref" in out and any(not key.startswith("$") for key in out):
        ref = {key: value for key, value in out.items() if key.startswith("$")}
        return {"anyOf": [ref], **{key: value for key, value in out.items() if not key.startswith("$")}}
    return out


def _ms(seconds: float) -> int:
    # HttpOptions.timeout is whole milliseconds and the SDK treats 0 as "no timeout".
    return max(1, math.ceil(seconds * 1000))


def _tool_call_id(index: int, name: str, args: Mapping[str, Any]) -> str:
    """A stable id for a function call the API returned without one.

    Derived from the call itself, so the same response always yields the same id, streamed or
    not. It is never sent back to the API (see :func:`build_contents`).
    """
    digest = hashlib.sha256(
        f"{index}\x00{name}\x00{json.dumps(_plain(args), sort_keys=True, default=str)}".encode()
    ).hexdigest()
    return f"call_{digest[:24]}"


# The names Gemini's video docs give the formats whose registered MIME types differ
# (ai.google.dev/gemini-api/docs/video-understanding lists video/mov and video/wmv).
_GEMINI_MEDIA_NAMES = {"video/quicktime": "video/mov", "video/x-ms-wmv": "video/wmv"}


def _media_part(part: MediaPart) -> dict[str, Any]:
    """An image, audio, video or document as ``inline_data`` (bytes) or ``file_data`` (a URL).
    Inline parts above the request's inline limit are uploaded to the Files API just before the
    call and swapped for ``file_data`` references (``_gemini_files``)."""
    media_type = _GEMINI_MEDIA_NAMES.get(part.media_type or "", part.media_type)
    if part.data is not None:
        return {
            "inline_data": {
                "mime_type": media_type or "application/octet-stream",
                "data": part.data,
            }
        }
    # Gemini fetches public http(s) URLs and reads Cloud Storage; an s3:// URI is not for it.
    check_image_url(part, ("https://", "http://", "gs://"), host="Gemini")
    file_data: dict[str, Any] = {"file_uri": part.url}
    if media_type:
        file_data["mime_type"] = media_type
    return {"file_data": file_data}


def _content_parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"text": part.text})
        else:
            parts.append(_media_part(part))
    return parts


def _gemini_3_or_later(model: str) -> bool:
    """Whether a model id names Gemini 3 or a later generation.

    Ids without a version (``gemini-flash-latest``) count as current; known older generations
    (``gemini-2.5-flash``) and other families (Gemma) do not.
    """
    name = model.rsplit("/", 1)[-1].lower()
    if not name.startswith("gemini-"):
        return False
    match = re.match(r"gemini-(\d+)", name)
    return match is None or int(match.group(1)) >= 3


def _function_response_parts(message: Message, provider: str, model: str, vertex: bool) -> list[dict[str, Any]]:
    """The images of a tool result as ``function_response.parts`` (multimodal function responses).

    Gemini 3 takes inline image bytes there; Vertex AI also takes a URL (``file_data``), the
    Gemini API does not. Anything else is refused here, before sending.
    """
    images = [p for p in message.parts if isinstance(p, ImagePart)]
    if not images:
        return []
    if not _gemini_3_or_later(model):
        raise UnsupportedFeatureError(
            f"model {model!r} does not take images in tool results: multimodal function responses "
            "need Gemini 3 or later",
            provider=provider,
            model=model,
        )
    parts: list[dict[str, Any]] = []
    for image in images:
        if image.data is not None:
            blob = {"mime_type": image.media_type or "application/octet-stream", "data": image.data}
            parts.append({"inline_data": blob})
        elif vertex:
            file_data: dict[str, Any] = {"file_uri": image.url}
            if image.media_type:
                file_data["mime_type"] = image.media_type
            parts.append({"file_data": file_data})
        else:
            raise UnsupportedFeatureError(
                "the Gemini API takes images in tool results only as inline data: pass the image "
                "bytes (ImagePart(data=...)) instead of a URL, or use Vertex AI",
                provider=provider,
                model=model,
            )
    return parts


def _sign_foreign_calls(contents: list[dict[str, Any]]) -> None:
    """Give unsigned function calls of the current turn Gemini's documented placeholder.

    Gemini 3 validates the signature of the first function call in each model step of the
    current turn (everything after the last user message that is not only tool results) and
    answers 400 when it is missing. Calls Gemini produced itself carry their real signature,
    which is kept as it is; calls from another provider, or rebuilt after an edit, have none.
    """
    start = 0
    for index, content in enumerate(contents):
        if content["role"] == "user" and not all("function_response" in p for p in content["parts"]):
            start = index + 1
    for content in contents[start:]:
        if content["role"] != "model":
            continue
        parts = content["parts"]
        for index, part in enumerate(parts):
            if isinstance(part, dict):
                if "function_call" not in part:
                    continue
                if part.get("thought_signature") is None:
                    parts[index] = {**part, "thought_signature": FOREIGN_CALL_SIGNATURE}
            else:  # an SDK Part restored from this provider's stored state
                if part.function_call is None:
                    continue
                if part.thought_signature is None:
                    parts[index] = part.model_copy(update={"thought_signature": FOREIGN_CALL_SIGNATURE})
            break


def _tool_output(content: str) -> dict[str, Any]:
    """A tool result as a ``function_response.response`` object.

    JSON objects are sent as they are; anything else goes under ``output``, the key the API
    documents for a function's result.
    """
    try:
        value = json.loads(content)
    except (ValueError, RecursionError):  # not JSON, or JSON nested deeper than the stack: sent as text
        return {"output": content}
    return value if isinstance(value, dict) else {"output": value}


def _restore_parts(stored: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Stored (JSON-mode) parts back into SDK parts: bytes fields are base64 in the store."""
    from google.genai import types

    return [types.Part.model_validate_json(json.dumps(_plain(d))) for d in stored]


def _state_parts(message: Message, provider: str) -> list[Mapping[str, Any]] | None:
    """The raw parts stored on an assistant message, if they still describe that message.

    A caller may have edited the message's text or tool calls; then the stored parts (and
    their signatures) no longer apply and the message is rebuilt from its fields.
    """
    state = (message.provider_state or {}).get(provider)
    if not isinstance(state, Mapping):
        return None
    parts = state.get("parts")
    if not isinstance(parts, Sequence) or not all(isinstance(p, Mapping) for p in parts):
        return None
    calls = [
        (p["function_call"].get("name"), p["function_call"].get("args") or {})
        for p in parts
        if isinstance(p.get("function_call"), Mapping)
    ]
    text = "".join(p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought"))
    if calls != [(c.name, _plain(c.arguments)) for c in message.tool_calls] or text != message.text:
        return None
    return list(parts)


def build_contents(
    messages: Sequence[Message], provider: str, *, model: str = "", vertex: bool = False
) -> list[dict[str, Any]]:
    """Normalised messages -> Gemini ``contents``.

    * assistant turns use role ``model``; when the message carries this provider's stored
      parts, those are sent back verbatim, thought signatures included (Gemini 3 rejects
      function-call history without them); for Gemini 3, function calls of the current turn
      that have no signature (another provider's, or edited) get the documented placeholder;
    * consecutive tool results become one ``user`` turn of ``function_response`` parts, named
      after ``Message.name`` (else the matching tool call); a call id is echoed only when the
      API issued it, never when fmclient synthesised it. Images in a tool result go in the
      response's ``parts`` (Gemini 3), or are refused.
    """
    contents: list[dict[str, Any]] = []
    # tool call id -> (function name, id the API gave the call or None)
    calls: dict[str, tuple[str, str | None]] = {}
    last_was_tool = False
    for message in messages:
        if message.role == "tool":
            known = calls.get(message.tool_call_id or "")
            name = message.name or (known[0] if known else None)
            if not name:
                raise BadRequestError(
                    "Gemini needs the tool name with each tool result: build it with "
                    "Message.tool_result(tool_call_id, content, name=<tool name>) or keep the "
                    "assistant message that made the call in the conversation",
                    provider=provider,
                )
            # The API documents "output" for a function's result and "error" for its failure.
            output = {"error": message.text} if message.is_error else _tool_output(message.text)
            response: dict[str, Any] = {"name": name, "response": output}
            if known and known[1]:
                response["id"] = known[1]
            media = _function_response_parts(message, provider, model, vertex)
            if media:
                response["parts"] = media
            part = {"function_response": response}
            if last_was_tool:
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
            last_was_tool = True
            continue
        last_was_tool = False
        if message.role == "assistant":
            stored = _state_parts(message, provider)
            parts: list[Any]
            if stored is not None:
                try:
                    parts = _restore_parts(stored)
                except ValueError as exc:  # pydantic's ValidationError included
                    raise BadRequestError(
                        f"the stored Gemini state of an assistant message is corrupt: {exc}",
                        provider=provider,
                    ) from exc
                api_ids = [p["function_call"].get("id") for p in stored if isinstance(p.get("function_call"), Mapping)]
            else:
                parts = _content_parts(message)
                parts.extend(
                    {"function_call": {"name": c.name, "args": _plain(c.arguments)}} for c in message.tool_calls
                )
                api_ids = [None] * len(message.tool_calls)
            for call, api_id in zip(message.tool_calls, api_ids, strict=True):
                calls[call.id] = (call.name, api_id)
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        elif message.role == "user":
            contents.append({"role": "user", "parts": _content_parts(message) or [{"text": ""}]})
        else:
            # Request.system holds the leading system messages; Gemini has no later ones.
            raise BadRequestError(
                "Gemini accepts system instructions only at the start of a conversation",
                provider=provider,
            )
    if _gemini_3_or_later(model):
        _sign_foreign_calls(contents)
    return contents


def thinking_config(request: Request, provider: str) -> dict[str, Any]:
    """``reasoning=`` as a ``ThinkingConfig``, thoughts included so they can be read back: an
    effort is a ``thinking_level`` on Gemini 3 and later (one the SDK's ``ThinkingLevel`` has), a
    budget (through :data:`~fmclient.providers.shared_io.THINKING_BUDGETS`) before; a budget is
    ``thinking_budget``. An effort neither takes is refused, never sent as a neighbouring one."""
    if "thinking_config" in request.provider_options:
        raise BadRequestError(
            "pass reasoning= or provider_options thinking_config, not both", provider=provider, model=request.model
        )
    reasoning = request.reasoning
    assert reasoning is not None
    config: dict[str, Any] = {"include_thoughts": True}
    if isinstance(reasoning, str) and _gemini_3_or_later(request.model):
        levels = thinking_levels()
        if reasoning not in levels:
            raise UnsupportedFeatureError(
                f"reasoning={reasoning!r}: Gemini's thinking_level takes {', '.join(map(repr, levels))}",
                provider=provider,
                model=request.model,
            )
        config["thinking_level"] = reasoning.upper()
    else:
        config["thinking_budget"] = thinking_budget(reasoning, provider=provider, model=request.model)
    return config


def thinking_levels() -> tuple[str, ...]:
    """The efforts the installed SDK's ``ThinkingLevel`` can send, lower-cased as ``reasoning=`` spells them."""
    from google.genai import types

    return tuple(
        level.value.lower()
        for level in types.ThinkingLevel
        if level is not types.ThinkingLevel.THINKING_LEVEL_UNSPECIFIED
    )


def build_params(request: Request, provider: str = "gemini", *, vertex: bool = False) -> dict[str, Any]:
    """A :class:`Request` -> keyword arguments for ``models.generate_content(_stream)``.

    ``config`` is a plain ``GenerateContentConfig`` dict; ``provider_options`` are merged in
    last, so any SDK config field can be set, and dicts join fmclient's one level deep; a value
    set from an argument is refused rather than replaced. ``vertex``: the request goes to
    Vertex AI, which takes a few inputs the Gemini API does not.
    """
    config: dict[str, Any] = {
        # fmclient hands tool calls back to the caller: the SDK must never run a tool loop.
        "automatic_function_calling": {"disable": True},
    }
    if request.system:
        config["system_instruction"] = request.system
    if request.max_tokens is not None:
        config["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["top_p"] = request.top_p
    if request.stop:
        config["stop_sequences"] = list(request.stop)
    if request.tools:
        declarations = []
        for tool in request.tools:
            declaration: dict[str, Any] = {
                "name": tool.name,
                "parameters_json_schema": json_schema(tool.parameters),
            }
            if tool.description:
                declaration["description"] = tool.description
            declarations.append(declaration)
        config["tools"] = [{"function_declarations": declarations}]
        if request.tool_choice:
            mode = _TOOL_CHOICE_MODES.get(request.tool_choice)
            calling: dict[str, Any] = {"mode": mode or "ANY"}
            if mode is None:
                calling["allowed_function_names"] = [request.tool_choice]
            config["tool_config"] = {"function_calling_config": calling}
    if request.response_format is not None:
        config["response_mime_type"] = "application/json"
        config["response_json_schema"] = json_schema(request.response_format.schema)
    if request.reasoning is not None:
        config["thinking_config"] = thinking_config(request, provider)
    if request.audio is not None:
        config.update(audio_answer_config(request.audio, provider, request.model))
    if request.timeout is not None:
        config["http_options"] = {"timeout": _ms(request.timeout)}
    # Dicts join fmclient's one level deep (thinking_config, http_options...); a value an argument
    # set is not replaced. The per-attempt timeout in http_options stays the option's to change.
    merge_provider_options(
        config,
        {
            key: _plain(value) if isinstance(value, Mapping) else value
            for key, value in request.provider_options.items()
        },
        provider=provider,
        model=request.model,
        defaults=("http_options.timeout",),
    )
    return {
        "model": request.model,
        "contents": build_contents(request.messages, provider, model=request.model, vertex=vertex),
        "config": config,
    }


def audio_answer_config(audio: Mapping[str, Any], provider: str, model: str) -> dict[str, Any]:
    """``complete(..., audio={"voice": ..., "format": "wav", "language_code": ...})`` as the
    ``response_modalities`` and ``speech_config`` of a TTS model. Gemini speaks 24 kHz PCM, given
    back as a WAV file: another format, or a key Gemini has no place for, is refused."""
    answer_format = str(audio.get("format", "wav")).lower()
    if answer_format != "wav":
        raise UnsupportedFeatureError(
            f"Gemini answers audio as PCM, which fmclient gives back as WAV: audio format {answer_format!r} "
            "is not available (use 'wav')",
            provider=provider,
            model=model,
        )
    unknown = sorted(set(audio) - {"voice", "format", "language_code"})
    if unknown:
        raise UnsupportedFeatureError(
            f"Gemini audio answers take voice, format and language_code, not {', '.join(unknown)}",
            provider=provider,
            model=model,
        )
    speech: dict[str, Any] = {"voice_config": {"prebuilt_voice_config": {"voice_name": audio["voice"]}}}
    if audio.get("language_code"):
        speech["language_code"] = str(audio["language_code"])
    return {"response_modalities": ["AUDIO"], "speech_config": speech}


def _audio_blob(part: Any) -> Any:
    """A part's ``inline_data`` when it holds audio (or bytes of no stated type), else None."""
    blob = getattr(part, "inline_data", None)
    mime_type = str(getattr(blob, "mime_type", None) or "")
    if getattr(blob, "data", None) and (not mime_type or mime_type.lower().startswith("audio/")):
        return blob
    return None


def parse_audio_answer(parts: Sequence[Any], transcript: str) -> AudioAnswer | None:
    """The audio part of an answer, raw PCM wrapped as WAV (as for ``speak``), or None."""
    for part in parts:
        blob = _audio_blob(part)
        if blob is not None:
            data, mime_type = blob.data, str(blob.mime_type or "")
            if is_pcm(mime_type):
                data, mime_type = pcm_as_wav(data, mime_type), "audio/wav"
            return AudioAnswer(data=data, mime_type=mime_type or "audio/wav", transcript=transcript)
    return None


def build_embed_config(request: EmbedRequest) -> dict[str, Any]:
    """``EmbedContentConfig`` fields: ``provider_options`` (``task_type``,
    ``output_dimensionality``, ``title`` ...) plus the attempt's timeout."""
    config: dict[str, Any] = {}
    if request.timeout is not None:
        config["http_options"] = {"timeout": _ms(request.timeout)}
    # http_options join the attempt's timeout, which stays the option's to change.
    options = {
        key: _plain(value) if isinstance(value, Mapping) else value for key, value in request.provider_options.items()
    }
    return merge_provider_options(
        config, options, provider="gemini", model=request.model, defaults=("http_options.timeout",)
    )


# -- response translation (pure) --------------------------------------------------------------


def _enum_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def map_finish_reason(reason: Any, has_tool_calls: bool = False) -> FinishReason:
    name = _enum_value(reason)
    if name == "STOP":
        return "tool_calls" if has_tool_calls else "stop"
    if name == "MAX_TOKENS":
        return "length"
    if name in _CONTENT_FILTER_REASONS:
        return "content_filter"
    if name is None and has_tool_calls:
        return "tool_calls"
    return "other"


def parse_usage(usage: Any, service_tier: Any = None) -> Usage:
    """``usage_metadata`` -> :class:`Usage`.

    ``prompt_token_count`` already includes cached tokens; tool-use prompt tokens (e.g. search
    results fed back to the model) are input too; thinking tokens are output
    (``candidates_token_count`` leaves them out, so output = candidates + thoughts).
    Gemini reports no cache writes: an explicit cache is created by its own API call. The reply
    does not say its service tier: ``service_tier`` is the one the request asked for (``flex``,
    ``priority``), for pricing.
    """
    tier = price_modifier(service_tier)
    if usage is None:
        return Usage(service_tier=tier)

    def count(name: str) -> int:
        value = getattr(usage, name, None)
        return int(value or 0)

    return Usage(
        input_tokens=count("prompt_token_count") + count("tool_use_prompt_token_count"),
        output_tokens=count("candidates_token_count") + count("thoughts_token_count"),
        cached_input_tokens=count("cached_content_token_count"),
        reasoning_tokens=count("thoughts_token_count"),
        service_tier=tier,
        # Audio is priced apart from text (audio input, TTS output): the per-modality counts.
        input_audio_tokens=_modality_tokens(getattr(usage, "prompt_tokens_details", None), "AUDIO"),
        output_audio_tokens=_modality_tokens(getattr(usage, "candidates_tokens_details", None), "AUDIO"),
        # Image models bill their image output at its own (much higher) price.
        output_image_tokens=_modality_tokens(getattr(usage, "candidates_tokens_details", None), "IMAGE"),
    )


def _modality_tokens(details: Any, modality: str) -> int:
    """The tokens of one modality in a ``ModalityTokenCount`` list (0 when not reported)."""
    total = 0
    for item in details or ():
        if _enum_value(getattr(item, "modality", None)) == modality:
            total += int(getattr(item, "token_count", None) or 0)
    return total


def requested_service_tier(params: Mapping[str, Any]) -> Any:
    """The ``service_tier`` a ``generate_content`` call asks for (set through provider_options)."""
    config = params.get("config")
    if isinstance(config, Mapping):
        return config.get("service_tier")
    return getattr(config, "service_tier", None)


def _raise_if_blocked(response: Any, provider: str, model: str) -> None:
    feedback = getattr(response, "prompt_feedback", None)
    reason = _enum_value(getattr(feedback, "block_reason", None))
    if reason and not getattr(response, "candidates", None):
        detail = getattr(feedback, "block_reason_message", None)
        raise ContentFilterError(
            f"Gemini blocked the prompt ({reason})" + (f": {detail}" if detail else ""),
            provider=provider,
            model=model,
        )


def _dump_part(part: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = part.model_dump(mode="json", exclude_none=True)
    return dumped


def _needs_state(parts: Sequence[Any]) -> bool:
    # Signatures must go back verbatim; API-issued call ids must be echoed in the results.
    return any(
        getattr(p, "thought_signature", None) is not None or getattr(getattr(p, "function_call", None), "id", None)
        for p in parts
    )


def _provider_state(parts: Sequence[Any], provider: str) -> dict[str, Any] | None:
    if not _needs_state(parts):
        return None
    return {provider: {"parts": [_dump_part(p) for p in parts]}}


def _as_response(response: Any) -> Any:
    if isinstance(response, Mapping):
        from google.genai import types

        return types.GenerateContentResponse.model_validate(dict(response))
    return response


def parse_response(response: Any, *, provider: str, model: str, service_tier: Any = None) -> Completion:
    """A ``GenerateContentResponse`` (SDK object or API dict) -> :class:`Completion`.

    Raises :class:`ContentFilterError` when the prompt itself was blocked.
    """
    response = _as_response(response)
    _raise_if_blocked(response, provider, model)
    candidates = response.candidates or []
    candidate = candidates[0] if candidates else None
    content = getattr(candidate, "content", None)
    parts = list(getattr(content, "parts", None) or [])
    text = "".join(p.text for p in parts if p.text and not p.thought)
    thoughts = "".join(p.text for p in parts if p.text and p.thought)
    tool_calls: list[ToolCall] = []
    for part in parts:
        call = part.function_call
        if call is None:
            continue
        args = dict(call.args or {})
        name = call.name or ""
        tool_calls.append(ToolCall(id=call.id or _tool_call_id(len(tool_calls), name, args), name=name, arguments=args))
    finish = map_finish_reason(getattr(candidate, "finish_reason", None), bool(tool_calls))
    message = Message(
        role="assistant",
        content=text,
        tool_calls=tuple(tool_calls),
        provider_state=_provider_state(parts, provider),
    )
    return Completion(
        text=text,
        finish_reason=finish,
        usage=parse_usage(response.usage_metadata, service_tier),
        model=response.model_version or model,
        provider=provider,
        tool_calls=tool_calls,
        message=message,
        raw=response,
        response_id=getattr(response, "response_id", None) or None,
        reasoning=thoughts or None,
        audio=parse_audio_answer(parts, text),
    )


class StreamParser:
    """Turns streamed ``GenerateContentResponse`` events into :class:`Chunk` objects.

    Text arrives as deltas; function calls arrive whole, each in one event. Usage is a running
    total, so the last one seen is the answer. The raw parts are merged (text deltas joined
    until a part carrying a signature closes them) so the stored state matches what a
    non-streamed reply would have returned.
    """

    def __init__(self, provider: str, model: str, *, service_tier: Any = None) -> None:
        self.provider = provider
        self.model = model
        self.service_tier = service_tier
        self.text = ""
        self._parts: list[Any] = []
        self._tool_count = 0
        self._finish: Any = None
        self._usage: Any = None
        self._model_version: str | None = None

    def parse_stream_event(self, event: Any) -> Chunk | None:
        event = _as_response(event)
        _raise_if_blocked(event, self.provider, self.model)
        if event.model_version:
            self._model_version = event.model_version
        if event.usage_metadata is not None:
            self._usage = event.usage_metadata
        candidates = event.candidates or []
        if not candidates:
            return None
        candidate = candidates[0]
        if candidate.finish_reason is not None:
            self._finish = candidate.finish_reason
        parts = list(getattr(candidate.content, "parts", None) or [])
        delta = thought = ""
        audio, audio_type = b"", None
        deltas: list[ToolCallDelta] = []
        for part in parts:
            self._keep(part)
            if part.function_call is not None:
                call = part.function_call
                args = dict(call.args or {})
                name = call.name or ""
                deltas.append(
                    ToolCallDelta(
                        index=self._tool_count,
                        id=call.id or _tool_call_id(self._tool_count, name, args),
                        name=name,
                        arguments=json.dumps(args),
                    )
                )
                self._tool_count += 1
            elif part.text and part.thought:
                thought += part.text
            elif part.text:
                delta += part.text
            elif _audio_blob(part) is not None:
                # A TTS model's streamed answer: raw PCM pieces, joined and wrapped as WAV by the
                # stream's assembler into the same audio complete() gives.
                blob = part.inline_data
                audio += blob.data
                audio_type = audio_type or blob.mime_type
        if not delta and not deltas and not thought and not audio:
            return None
        self.text += delta
        return Chunk(
            text=delta,
            reasoning=thought,
            tool_calls=tuple(deltas),
            model=self._model_version,
            raw=event,
            audio=audio,
            audio_mime_type=audio_type,
        )

    def _keep(self, part: Any) -> None:
        previous = self._parts[-1] if self._parts else None
        if (
            previous is not None
            and part.text is not None
            and previous.text is not None
            and bool(part.thought) == bool(previous.thought)
            and previous.thought_signature is None
            and part.function_call is None
        ):
            self._parts[-1] = previous.model_copy(
                update={"text": previous.text + part.text, "thought_signature": part.thought_signature}
            )
        else:
            self._parts.append(part)

    def final_chunk(self) -> Chunk:
        """The closing chunk; a stream that never said why it finished was cut off."""
        if self._finish is None:
            raise APIConnectionError(
                "the Gemini stream ended before its final event (no finish reason)",
                provider=self.provider,
                model=self.model,
                partial_text=self.text or None,
            )
        return Chunk(
            finish_reason=map_finish_reason(self._finish, self._tool_count > 0),
            usage=parse_usage(self._usage, self.service_tier),
            model=self._model_version or self.model,
            provider_state=_provider_state(self._parts, self.provider),
        )


def parse_embeddings(response: Any, expected: int, *, provider: str, model: str) -> tuple[list[list[float]], Usage]:
    embeddings = list(getattr(response, "embeddings", None) or [])
    if len(embeddings) != expected or any(e.values is None for e in embeddings):
        raise APIConnectionError(
            f"malformed Gemini embedding response: expected {expected} vectors, got {len(embeddings)}",
            provider=provider,
            model=model,
        )
    vectors = [list(e.values) for e in embeddings]
    usage_metadata = getattr(response, "usage_metadata", None)
    if usage_metadata is not None and usage_metadata.prompt_token_count is not None:
        tokens = int(usage_metadata.prompt_token_count)
    else:
        # Vertex AI reports a token count per embedding instead.
        tokens = sum(int(getattr(getattr(e, "statistics", None), "token_count", None) or 0) for e in embeddings)
    return vectors, Usage(input_tokens=tokens)


# -- errors -----------------------------------------------------------------------------------


def _optional_module(name: str) -> Any:
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


def _exception_types(*specs: tuple[str, str]) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name, attr in specs:
        module = _optional_module(module_name)
        cls = getattr(module, attr, None) if module is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


@dataclass(frozen=True)
class _ErrorKinds:
    timeout: tuple[type[BaseException], ...]
    connection: tuple[type[BaseException], ...]
    malformed: tuple[type[BaseException], ...]
    credentials: tuple[type[BaseException], ...]


@functools.cache
def _error_kinds() -> _ErrorKinds:
    """Exception classes of the SDK's transports (httpx2, httpx, aiohttp), whichever exist."""
    return _ErrorKinds(
        timeout=(
            *_exception_types(("httpx2", "TimeoutException"), ("httpx", "TimeoutException")),
            TimeoutError,
            asyncio.TimeoutError,
        ),
        connection=(
            *_exception_types(
                ("httpx2", "HTTPError"),
                ("httpx", "HTTPError"),
                ("aiohttp", "ClientError"),
                ("google.auth.exceptions", "TransportError"),
            ),
            ConnectionError,
        ),
        malformed=(
            *_exception_types(("google.genai.errors", "UnknownApiResponseError"), ("pydantic", "ValidationError")),
            json.JSONDecodeError,
        ),
        credentials=_exception_types(
            ("google.auth.exceptions", "DefaultCredentialsError"),
            ("google.auth.exceptions", "RefreshError"),
        ),
    )


def _retry_delay(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "37s"``)."""
    error = details.get("error", details) if isinstance(details, Mapping) else None
    items = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, Mapping) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = re.fullmatch(r"\s*([0-9.]+)s\s*", str(item.get("retryDelay", "")))
            if match:
                try:
                    return float(match.group(1))
                except ValueError:
                    return None
    return None


def _error_reasons(details: Any) -> set[str]:
    error = details.get("error", details) if isinstance(details, Mapping) else None
    items = error.get("details") if isinstance(error, Mapping) else None
    return {
        str(item["reason"])
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, Mapping) and item.get("reason")
    }


def _headers(response: Any) -> Mapping[str, str] | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        return {str(k): str(v) for k, v in headers.items()}
    except (AttributeError, TypeError):
        return None


def _map_api_error(exc: Any, provider: str, model: str) -> FMClientError:
    status = exc.status if isinstance(exc.status, str) else None
    code = exc.code if isinstance(exc.code, int) and exc.code >= 400 else None
    if code is None:
        code = _STATUS_CODES.get(status or "")
    if code is None:
        name = type(exc).__name__
        code = 400 if name == "ClientError" else 500
    message = exc.message if isinstance(exc.message, str) and exc.message else str(exc)
    text = f"{status}: {message}" if status else message
    retry_after = parse_retry_after(_headers(exc.response))
    if retry_after is None:
        retry_after = _retry_delay(exc.details)
    error = error_for_status(code, text, provider=provider, model=model, retry_after=retry_after)
    lowered = message.lower()
    if code == 400 and any(p in lowered for p in _CONTEXT_WINDOW_PATTERNS):
        return ContextWindowExceededError(
            text, provider=provider, model=model, status_code=code, retry_after=retry_after
        )
    if code == 400 and ("API_KEY_INVALID" in _error_reasons(exc.details) or "api key not valid" in lowered):
        # Gemini answers a bad key with 400 INVALID_ARGUMENT rather than 401.
        return AuthenticationError(text, provider=provider, model=model, status_code=code)
    return error


def map_error(exc: BaseException, provider: str, model: str) -> FMClientError:
    """Any exception from a google-genai call -> the fmclient error it means."""
    if isinstance(exc, FMClientError):
        return exc
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        return _map_api_error(exc, provider, model)
    kinds = _error_kinds()
    if isinstance(exc, kinds.timeout):
        return RequestTimeoutError(
            f"the request to Gemini timed out ({type(exc).__name__})", provider=provider, model=model
        )
    if isinstance(exc, kinds.connection):
        return APIConnectionError(
            f"connection to Gemini failed: {type(exc).__name__}: {exc}", provider=provider, model=model
        )
    if isinstance(exc, kinds.malformed):
        return APIConnectionError(
            f"Gemini returned a malformed response body: {type(exc).__name__}: {exc}",
            provider=provider,
            model=model,
        )
    if isinstance(exc, kinds.credentials):
        return AuthenticationError(
            f"Google credentials failed: {type(exc).__name__}: {exc}", provider=provider, model=model
        )
    if isinstance(exc, OSError):
        return APIConnectionError(
            f"connection to Gemini failed: {type(exc).__name__}: {exc}", provider=provider, model=model
        )
    if isinstance(exc, (ValueError, TypeError)):
        # The SDK validates the request before sending: nothing reached the network.
        if "only supported in" in str(exc):
            # e.g. a config field that exists on Vertex AI but not on the Developer API
            return UnsupportedFeatureError(str(exc), provider=provider, model=model)
        return BadRequestError(f"the google-genai SDK rejected the request: {exc}", provider=provider, model=model)
    return FMClientError(
        f"unexpected error from the google-genai SDK: {type(exc).__name__}: {exc}",
        provider=provider,
        model=model,
    )


# -- the adapter ------------------------------------------------------------------------------


class GeminiProvider(Provider):
    """Gemini models via ``google-genai`` (Developer API, or Vertex AI with ``vertexai``)."""

    extra = "gemini"
    option_keys = frozenset({"vertexai", "project", "location", "api_version", "credentials"})

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._client: genai.Client | None = None
        self._lock = threading.Lock()

    # -- configuration ----------------------------------------------------------------------
    def _vertex(self) -> bool:
        configured = self.settings.options.get("vertexai")
        if configured is not None:
            return configured is True or str(configured).lower() in _TRUE
        # The SDK's own switches, honoured the same way it does.
        for var in ("GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_USE_VERTEXAI"):
            value = os.environ.get(var)
            if value is not None:
                return value.lower() in ("true", "1")
        return False

    def capabilities(self, model: str) -> Capabilities:
        profile = profile_for(model, "gemini")
        if profile.family == "imagen":
            # [imagen] in families.toml: shut down on both hosts; the retirement table names the
            # ids it knows, this refuses any other before sending.
            return profile.restrict(
                image_generation=False,
                reason="Google shut down every Imagen model, on the Gemini API and Vertex AI alike: "
                "use a Gemini image model (the gemini-image alias, gemini/gemini-3.1-flash-image)",
            )
        if not profile.chat:
            return profile
        narrowed = profile.restrict(
            max_stop_sequences=MAX_STOP_SEQUENCES,
            reason=f"the Gemini API accepts at most {MAX_STOP_SEQUENCES} stop sequences",
        )
        limit = profile.max_inline_media_bytes
        if limit is not None and self._vertex():
            # The family's per-file limits are the Files API's; Vertex AI takes media inline only.
            narrowed = narrowed.restrict(
                max_audio_bytes=limit,
                max_video_bytes=limit,
                max_document_bytes=limit,
                max_media_bytes=limit,
                transcription_max_bytes=limit,
                reason=_VERTEX_NO_FILES_API.format(limit=limit),
            )
        return narrowed

    def check_ready(self, model: str) -> None:
        import_sdk("google.genai", extra=self.extra, provider=self.name)
        if self._vertex():
            # Application Default Credentials are resolved when the SDK client is built (first call).
            credentials = self.settings.options.get("credentials")
            if credentials is not None:
                self._checked_credentials(credentials)
            return
        if not self.settings.resolve_api_key(*KEY_ENV_VARS):
            raise ConfigurationError(
                f"no API key for provider {self.name!r}: set "
                f"{self.settings.key_sources(*KEY_ENV_VARS)} (or api_key in the config file)",
                provider=self.name,
                model=model,
            )

    def _sdk(self) -> genai.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> genai.Client:
        genai_module = import_sdk("google.genai", extra=self.extra, provider=self.name)
        types = import_sdk("google.genai.types", extra=self.extra, provider=self.name)
        options = self.settings.options
        http: dict[str, Any] = {"retry_options": types.HttpRetryOptions(attempts=1)}
        if self.settings.base_url:
            http["base_url"] = self.settings.base_url
        if options.get("api_version"):
            http["api_version"] = str(options["api_version"])
        if self.settings.timeout is not None:
            http["timeout"] = _ms(self.settings.timeout)
        kwargs: dict[str, Any] = {"http_options": types.HttpOptions(**http)}
        if self._vertex():
            kwargs["vertexai"] = True
            if options.get("project"):
                kwargs["project"] = str(options["project"])
            if options.get("location"):
                kwargs["location"] = str(options["location"])
            # Only an explicitly configured key selects Vertex express mode; the SDK applies
            # its own environment precedence otherwise.
            key = self.settings.resolve_api_key()
            if key:
                kwargs["api_key"] = key
            credentials = options.get("credentials")
            if credentials is not None:
                kwargs["credentials"] = self._checked_credentials(credentials)
            elif self._needs_adc(key):
                kwargs["credentials"], project = self._application_default_credentials()
                if "project" not in kwargs and not os.environ.get("GOOGLE_CLOUD_PROJECT") and project:
                    kwargs["project"] = project
        else:
            kwargs["vertexai"] = False
            key = self.settings.resolve_api_key(*KEY_ENV_VARS)
            if key:
                kwargs["api_key"] = key
        try:
            client: genai.Client = genai_module.Client(**kwargs)
        except Exception as exc:
            # Missing key/project or no Application Default Credentials. The SDK's messages
            # never contain the key.
            raise ConfigurationError(
                f"cannot set up the google-genai client for provider {self.name!r}: {exc}",
                provider=self.name,
            ) from exc
        # The SDK settles the base URL (GOOGLE_GEMINI_BASE_URL / GOOGLE_VERTEX_BASE_URL, the Vertex
        # location's host) on its API client; a private attribute, so read defensively.
        http_options = getattr(getattr(client, "_api_client", None), "_http_options", None)
        return self._built(client, getattr(http_options, "base_url", None))

    def _checked_credentials(self, credentials: Any) -> Any:
        from google.auth.credentials import Credentials

        if not isinstance(credentials, Credentials):
            raise ConfigurationError(
                f"provider {self.name!r}: credentials must be a google.auth.credentials.Credentials "
                f"object, not {type(credentials).__name__}",
                provider=self.name,
            )
        return credentials

    def _needs_adc(self, key: str | None) -> bool:
        """Whether the SDK will authenticate Vertex AI calls with Application Default Credentials.

        It does when it has a project or location and no key. A key from the environment selects
        express mode only when no project or location is set; with a ``base_url`` and neither,
        the SDK treats the host as a gateway that authenticates by itself.
        """
        if key:
            return False
        options = self.settings.options
        placed = options.get("project") or options.get("location")
        placed = placed or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GOOGLE_CLOUD_LOCATION")
        if placed:
            return True
        return not (any(os.environ.get(v) for v in KEY_ENV_VARS) or self.settings.base_url)

    def _application_default_credentials(self) -> tuple[Any, str | None]:
        """Application Default Credentials, resolved now so that their absence is a
        configuration error naming what to set, not an authentication failure mid-call."""
        google_auth = import_sdk("google.auth", extra=self.extra, provider=self.name)
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, project = google_auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"provider {self.name!r} uses Vertex AI, which needs Google Cloud credentials, and none "
                "were found. Run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or set api_key for "
                f"Vertex AI express mode (or vertexai = false to use the Gemini API). Detail: {exc}",
                provider=self.name,
            ) from exc
        return credentials, project

    def _prepare(self, request: Request) -> dict[str, Any]:
        """Build and validate the call's arguments before anything touches the network."""

        return self._validated(build_params(request, self.name, vertex=self._vertex()), request.model)

    def _validated(self, params: dict[str, Any], model: str) -> dict[str, Any]:
        """``contents`` and ``config`` as the SDK's own types (a typed error for what they refuse)."""
        from google.genai import types
        from pydantic import ValidationError

        try:
            params["contents"] = [types.Content.model_validate(c) for c in params["contents"]]
            params["config"] = types.GenerateContentConfig.model_validate(params["config"])
        except ValidationError as exc:
            raise BadRequestError(
                f"invalid Gemini request (check provider_options): {exc}", provider=self.name, model=model
            ) from exc
        return params

    def _prepare_embed(self, request: EmbedRequest) -> Any:
        from google.genai import types
        from pydantic import ValidationError

        try:
            return types.EmbedContentConfig.model_validate(build_embed_config(request))
        except ValidationError as exc:
            raise BadRequestError(
                f"invalid Gemini embedding options (check provider_options): {exc}",
                provider=self.name,
                model=request.model,
            ) from exc

    # -- calls ------------------------------------------------------------------------------
    def _errors(self, model: str, parser: StreamParser | None = None) -> MappedErrors:
        return MappedErrors(
            lambda exc: map_error(exc, self.name, model),
            provider=self.name,
            model=model,
            partial_text=(lambda: parser.text) if parser is not None else None,
        )

    def _count_params(self, params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """``models.count_tokens`` arguments from a call's, and whether the count will be exact.

        Vertex AI counts the system instruction and tools too. The Developer API counts contents
        only: the system instruction is counted as one more content (close, not exact) and
        tools make the count an estimate.
        """
        from google.genai import types

        config: Any = params["config"]
        contents = list(params["contents"])
        exact = True
        if self._vertex():
            count_config = types.CountTokensConfig(system_instruction=config.system_instruction, tools=config.tools)
            return {"model": params["model"], "contents": contents, "config": count_config}, exact
        if config.system_instruction is not None:
            system = config.system_instruction
            parts = [types.Part(text=system)] if isinstance(system, str) else getattr(system, "parts", None)
            contents.insert(0, types.Content(role="user", parts=parts))
            exact = False
        if config.tools:
            exact = False
        return {"model": params["model"], "contents": contents}, exact

    @staticmethod
    def _token_count(response: Any, exact: bool, provider: str, model: str) -> TokenCount:
        tokens = getattr(response, "total_tokens", None)
        if not isinstance(tokens, int):
            raise ServiceUnavailableError(
                "Gemini countTokens answered without totalTokens", provider=provider, model=model
            )
        method = "Gemini models.count_tokens"
        if not exact:
            method += " (the Developer API counts contents only: system instruction and tools approximated)"
        return TokenCount(tokens, exact, method)

    def count_tokens(self, request: Request) -> TokenCount:
        params = self._prepare(request)
        self._upload_media(params, request)
        params, exact = self._count_params(params)
        with self._errors(request.model):
            response = self._sdk().models.count_tokens(**params)
        return self._token_count(response, exact, self.name, request.model)

    async def acount_tokens(self, request: Request) -> TokenCount:
        params = self._prepare(request)
        await self._aupload_media(params, request)
        params, exact = self._count_params(params)
        with self._errors(request.model):
            response = await self._sdk().aio.models.count_tokens(**params)
        return self._token_count(response, exact, self.name, request.model)

    # -- media above the inline limit: the Files API ---------------------------------------------
    def _uploads(self, params: dict[str, Any], request: Request | TranscriptionRequest) -> list[tuple[int, int]]:
        """Where the inline parts to upload are (none when the request's inline media fit)."""
        limit = profile_for(request.model, "gemini").max_inline_media_bytes
        if limit is None:
            return []
        positions = _gemini_files.parts_to_upload(params["contents"], limit)
        if positions and self._vertex():
            # The profile check refuses this first (capabilities narrows the limits on Vertex AI).
            raise UnsupportedFeatureError(
                _VERTEX_NO_FILES_API.format(limit=limit), provider=self.name, model=request.model
            )
        return positions

    def _account(self) -> str:
        return _gemini_files.account_of(self.settings.resolve_api_key(*KEY_ENV_VARS), self.settings.base_url)

    def _reference(
        self,
        params: dict[str, Any],
        positions: list[tuple[int, int]],
        files: list[_gemini_files.UploadedFile],
        deadline: _gemini_files.Deadline,
        model: str,
    ) -> None:
        """The uploaded parts replaced by ``file_data`` references, and the attempt's timeout
        for ``generateContent`` cut to the time the uploads left."""
        from google.genai import types

        for (c, p), file in zip(positions, files, strict=True):
            params["contents"][c].parts[p] = types.Part(
                file_data=types.FileData(file_uri=file.uri, mime_type=file.mime_type)
            )
        config = params["config"]
        http = config.http_options
        if deadline.timeout is not None and http is not None and http.timeout == _ms(deadline.timeout):
            left = deadline.remaining(provider=self.name, model=model, doing="uploading media to the Gemini Files API")
            config.http_options = http.model_copy(update={"timeout": _ms(left or deadline.timeout)})

    def _upload_media(self, params: dict[str, Any], request: Request | TranscriptionRequest) -> None:
        positions = self._uploads(params, request)
        if not positions:
            return
        deadline = _gemini_files.Deadline(request.timeout)
        client, account = self._sdk(), self._account()
        files = []
        with self._errors(request.model):
            for c, p in positions:
                blob = params["contents"][c].parts[p].inline_data
                files.append(
                    _gemini_files.upload(
                        client,
                        blob.data,
                        blob.mime_type or "application/octet-stream",
                        account,
                        deadline,
                        provider=self.name,
                        model=request.model,
                    )
                )
        self._reference(params, positions, files, deadline, request.model)

    async def _aupload_media(self, params: dict[str, Any], request: Request | TranscriptionRequest) -> None:
        positions = self._uploads(params, request)
        if not positions:
            return
        deadline = _gemini_files.Deadline(request.timeout)
        client, account = self._sdk(), self._account()
        files = []
        with self._errors(request.model):
            for c, p in positions:
                blob = params["contents"][c].parts[p].inline_data
                files.append(
                    await _gemini_files.aupload(
                        client.aio,
                        blob.data,
                        blob.mime_type or "application/octet-stream",
                        account,
                        deadline,
                        provider=self.name,
                        model=request.model,
                    )
                )
        self._reference(params, positions, files, deadline, request.model)

    def complete(self, request: Request) -> Completion:
        params = self._prepare(request)
        self._upload_media(params, request)
        client = self._sdk()
        with self._errors(request.model):
            response = client.models.generate_content(**params)
        return parse_response(
            response, provider=self.name, model=request.model, service_tier=requested_service_tier(params)
        )

    async def acomplete(self, request: Request) -> Completion:
        params = self._prepare(request)
        await self._aupload_media(params, request)
        client = self._sdk()
        with self._errors(request.model):
            response = await client.aio.models.generate_content(**params)
        return parse_response(
            response, provider=self.name, model=request.model, service_tier=requested_service_tier(params)
        )

    def stream(self, request: Request) -> Iterator[Chunk]:
        params = self._prepare(request)
        self._upload_media(params, request)
        client = self._sdk()
        parser = StreamParser(self.name, request.model, service_tier=requested_service_tier(params))
        return stream_chunks(
            lambda: client.models.generate_content_stream(**params),
            parser.parse_stream_event,
            parser.final_chunk,
            self._errors(request.model, parser),
        )

    def astream(self, request: Request) -> AsyncIterator[Chunk]:
        params = self._prepare(request)
        client = self._sdk()
        parser = StreamParser(self.name, request.model, service_tier=requested_service_tier(params))

        async def open_events() -> Any:
            await self._aupload_media(params, request)
            return await client.aio.models.generate_content_stream(**params)

        return astream_chunks(
            open_events, parser.parse_stream_event, parser.final_chunk, self._errors(request.model, parser)
        )

    def embed_batching(self, model: str) -> EmbedBatching:
        return EmbedBatching(max_texts=EMBED_BATCH_SIZE)

    def embed(self, request: EmbedRequest) -> Embeddings:
        """One ``batchEmbedContents`` request for the texts given (the client splits by
        ``EMBED_BATCH_SIZE``)."""
        config = self._prepare_embed(request)
        if not request.texts:
            return Embeddings(vectors=[], usage=Usage(), model=request.model, provider=self.name, raw=[])
        client = self._sdk()
        with self._errors(request.model):
            response = client.models.embed_content(model=request.model, contents=list(request.texts), config=config)
        return self._embeddings(request, response)

    async def aembed(self, request: EmbedRequest) -> Embeddings:
        config = self._prepare_embed(request)
        if not request.texts:
            return Embeddings(vectors=[], usage=Usage(), model=request.model, provider=self.name, raw=[])
        client = self._sdk()
        with self._errors(request.model):
            response = await client.aio.models.embed_content(
                model=request.model, contents=list(request.texts), config=config
            )
        return self._embeddings(request, response)

    def _embeddings(self, request: EmbedRequest, response: Any) -> Embeddings:
        vectors, usage = parse_embeddings(response, len(request.texts), provider=self.name, model=request.model)
        return Embeddings(vectors=vectors, usage=usage, model=request.model, provider=self.name, raw=response)

    # -- image generation (Gemini's image models, through generateContent) -------------------------
    def generate_image(self, request: ImageRequest) -> Images:
        """``models.generate_content`` with image output, one request per image asked for (see
        :func:`build_image_params`); one after the other, so a failure stops the spending."""
        calls = [self._validated(build_image_params(request, i), request.model) for i in range(request.n)]
        client = self._sdk()
        responses = []
        for params in calls:
            with self._errors(request.model):
                response = client.models.generate_content(**params)
            check_image_answer(response, provider=self.name, model=request.model)  # stop paying at a refusal
            responses.append(response)
        return parse_image_answers(responses, provider=self.name, model=request.model)

    async def agenerate_image(self, request: ImageRequest) -> Images:
        calls = [self._validated(build_image_params(request, i), request.model) for i in range(request.n)]
        client = self._sdk()
        responses = []
        for params in calls:
            with self._errors(request.model):
                response = await client.aio.models.generate_content(**params)
            check_image_answer(response, provider=self.name, model=request.model)
            responses.append(response)
        return parse_image_answers(responses, provider=self.name, model=request.model)

    # -- transcription (audio understanding) and speech (TTS models) ------------------------------
    def transcribe(self, request: TranscriptionRequest) -> Transcription:
        """``models.generate_content`` with the audio (inline, or through the Files API when it
        is over the inline limit) and a verbatim-transcript instruction."""
        params = self._validated(build_transcription_params(request), request.model)
        self._upload_media(params, request)
        client = self._sdk()
        with self._errors(request.model):
            response = client.models.generate_content(**params)
        return parse_transcription(response, request, provider=self.name)

    async def atranscribe(self, request: TranscriptionRequest) -> Transcription:
        params = self._validated(build_transcription_params(request), request.model)
        await self._aupload_media(params, request)
        client = self._sdk()
        with self._errors(request.model):
            response = await client.aio.models.generate_content(**params)
        return parse_transcription(response, request, provider=self.name)

    def speak(self, request: SpeechRequest) -> Speech:
        """``models.generate_content`` on a TTS model, audio out; its PCM comes back as a WAV file."""
        params = build_speech_params(request)
        client = self._sdk()
        with self._errors(request.model):
            response = client.models.generate_content(**params)
        return parse_speech(response, request, provider=self.name)

    async def aspeak(self, request: SpeechRequest) -> Speech:
        params = build_speech_params(request)
        client = self._sdk()
        with self._errors(request.model):
            response = await client.aio.models.generate_content(**params)
        return parse_speech(response, request, provider=self.name)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                await client.aio.aclose()
            finally:
                client.close()


# -- image generation (Gemini's image models) ------------------------------------------------------
# The resolutions ImageConfig.image_size takes, by the pixels each holds at most (1K is about one
# megapixel, 2K four, 4K sixteen: docs.cloud.google.com .../models/gemini/3-1-flash-image). The
# smallest that holds a "WxH" size is asked for: never a smaller image than the size named.
_IMAGE_RESOLUTIONS = (("1K", 1024 * 1024), ("2K", 2048 * 2048), ("4K", 4096 * 4096))


def image_resolution(width: int, height: int) -> str | None:
    """The ``image_size`` that holds ``width`` x ``height`` pixels, or None when none does."""
    return next((name for name, pixels in _IMAGE_RESOLUTIONS if width * height <= pixels), None)


def build_image_params(request: ImageRequest, index: int = 0) -> dict[str, Any]:
    """``generate_content`` arguments that ask an image model for the ``index``-th image of a call.

    The size is an aspect ratio (``image_config.aspect_ratio``); a "WxH" size also picks the
    resolution that holds it (``image_config.image_size``). The API makes one image per request
    and documents no count parameter for these models (candidateCount is 1 by default, and the
    images of one answer are bounded only by its output tokens), so ``n`` images are ``n``
    requests (:meth:`GeminiProvider.generate_image`), never fewer images than asked for. With a
    seed, the ``index``-th request takes ``seed + index``: n different images, which the same seed
    makes again (one seed for all would ask n times for the same image).
    """
    from fmclient.profiles._profile import image_aspect_ratio

    config: dict[str, Any] = {"response_modalities": ["IMAGE"]}
    if request.size is not None:
        image_config: dict[str, Any] = {"aspect_ratio": image_aspect_ratio(request.size)}
        if request.dimensions is not None:
            resolution = image_resolution(*request.dimensions)
            if resolution is None:  # the profile refused it already; a second guard, not a guess
                raise BadRequestError(
                    f"no resolution holds size {request.size!r}", provider="gemini", model=request.model
                )
            image_config["image_size"] = resolution
        config["image_config"] = image_config
    if request.seed is not None:
        # The first image takes the seed as given; the API's seed is an int32, so the later ones
        # wrap round below 2**31 rather than overflow it.
        config["seed"] = (request.seed + index) % 2**31 if index else request.seed
    # e.g. image_config={"image_size": "4K"} with a ratio size, thinking_config, or
    # response_modalities=["TEXT", "IMAGE"] for commentary beside the image (kept in ``raw``).
    return {
        "model": request.model,
        "contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
        "config": _config_with_options(config, request),
    }


def _image_parts(response: Any) -> list[GeneratedImage]:
    """The final images of one answer: inline image parts, not the model's interim thought images."""
    images: list[GeneratedImage] = []
    for candidate in getattr(response, "candidates", None) or ():
        for part in getattr(getattr(candidate, "content", None), "parts", None) or ():
            blob = getattr(part, "inline_data", None)
            data = getattr(blob, "data", None)
            mime_type = getattr(blob, "mime_type", None) or ""
            if data and mime_type.startswith("image/") and not getattr(part, "thought", None):
                images.append(GeneratedImage(data=data, mime_type=mime_type))
    return images


def check_image_answer(response: Any, *, provider: str, model: str) -> None:
    """Raise when one ``generate_content`` answer holds no image: :class:`ContentFilterError` when
    the prompt was blocked or the answer was stopped for safety, else :class:`BadRequestError`
    quoting what the model said instead (never fewer images than asked for, silently)."""
    _raise_if_blocked(response, provider, model)
    if _image_parts(response):
        return
    candidates = getattr(response, "candidates", None) or ()
    reasons = [_enum_value(getattr(c, "finish_reason", None)) for c in candidates]
    filtered = [str(r) for r in reasons if r in _CONTENT_FILTER_REASONS]
    if filtered:
        raise ContentFilterError(f"{model} made no image ({', '.join(filtered)})", provider=provider, model=model)
    said = " ".join(
        getattr(part, "text", None) or ""
        for c in candidates
        for part in getattr(getattr(c, "content", None), "parts", None) or ()
    ).strip()
    raise BadRequestError(
        f"{model} answered no image" + (f": {said[:300]}" if said else f" (finish reasons {reasons})"),
        provider=provider,
        model=model,
    )


def parse_image_answers(responses: Sequence[Any], *, provider: str, model: str) -> Images:
    """The images of the ``generate_content`` answers to one image call (each checked by
    :func:`check_image_answer`), their usage summed."""
    images: list[GeneratedImage] = []
    usage = Usage()
    for response in responses:
        check_image_answer(response, provider=provider, model=model)
        usage = usage + parse_usage(getattr(response, "usage_metadata", None))
        images.extend(_image_parts(response))
    version = getattr(responses[-1], "model_version", None) if responses else None
    raw = responses[0] if len(responses) == 1 else list(responses)
    return Images(images=images, model=version or model, provider=provider, usage=usage, raw=raw)


# -- transcription and speech ------------------------------------------------------------------
# Gemini names MP3 audio/mp3 (ai.google.dev/gemini-api/docs/audio); the rest as fmclient does.
_GEMINI_AUDIO_TYPES = {"audio/mpeg": "audio/mp3"}

TRANSCRIBE_INSTRUCTION = (
    "Transcribe this audio verbatim: every word as it is spoken, in the language it is spoken in. "
    "Answer with the transcript only: no summary, no commentary, no timestamps, no speaker labels."
)


def _config_with_options(
    config: dict[str, Any], request: TranscriptionRequest | SpeechRequest | ImageRequest
) -> dict[str, Any]:
    if request.timeout is not None:
        config["http_options"] = {"timeout": _ms(request.timeout)}
    options = {
        key: _plain(value) if isinstance(value, Mapping) else value for key, value in request.provider_options.items()
    }
    return merge_provider_options(
        config, options, provider="gemini", model=request.model, defaults=("http_options.timeout",)
    )


def build_transcription_params(request: TranscriptionRequest) -> dict[str, Any]:
    """``generate_content`` arguments: the instruction (with the language and the caller's prompt
    as context), then the audio as ``inline_data``."""
    instruction = TRANSCRIBE_INSTRUCTION
    if request.language is not None:
        instruction += f" The speech is in {request.language}."
    if request.prompt is not None:
        instruction += f" Context for names and spelling (do not transcribe it): {request.prompt}"
    mime_type = _GEMINI_AUDIO_TYPES.get(request.mime_type, request.mime_type)
    contents = [
        {
            "role": "user",
            "parts": [{"text": instruction}, {"inline_data": {"mime_type": mime_type, "data": request.audio}}],
        }
    ]
    return {"model": request.model, "contents": contents, "config": _config_with_options({}, request)}


def parse_transcription(response: Any, request: TranscriptionRequest, *, provider: str) -> Transcription:
    _raise_if_blocked(response, provider, request.model)
    text = getattr(response, "text", None)
    if not isinstance(text, str):
        raise BadRequestError(
            f"{request.model} answered no transcript (finish reason "
            f"{_enum_value(getattr((getattr(response, 'candidates', None) or [None])[0], 'finish_reason', None))})",
            provider=provider,
            model=request.model,
        )
    return Transcription(
        text=text.strip(),
        model=getattr(response, "model_version", None) or request.model,
        provider=provider,
        language=request.language,  # Gemini does not say which language it heard
        usage=parse_usage(getattr(response, "usage_metadata", None)),
        raw=response,
    )


def build_speech_params(request: SpeechRequest) -> dict[str, Any]:
    """``generate_content`` arguments for a TTS model: audio out in the voice asked for. Gemini
    takes the speaking style in the text itself ("Say cheerfully: ...")."""
    text = request.text if request.instructions is None else f"{request.instructions}: {request.text}"
    config: dict[str, Any] = {
        "response_modalities": ["AUDIO"],
        "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": request.voice}}},
    }
    return {"model": request.model, "contents": text, "config": _config_with_options(config, request)}


def parse_speech(response: Any, request: SpeechRequest, *, provider: str) -> Speech:
    """The audio part of a TTS answer; raw PCM (``audio/L16;codec=pcm;rate=24000``) is wrapped
    as a WAV file so any player opens it."""
    _raise_if_blocked(response, provider, request.model)
    for candidate in getattr(response, "candidates", None) or ():
        answer = parse_audio_answer(getattr(getattr(candidate, "content", None), "parts", None) or (), "")
        if answer is not None:
            return Speech(
                data=answer.data,
                mime_type=answer.mime_type,
                model=getattr(response, "model_version", None) or request.model,
                provider=provider,
                characters=len(request.text),
                usage=parse_usage(getattr(response, "usage_metadata", None)),
                raw=response,
            )
    raise BadRequestError(f"{request.model} answered no audio", provider=provider, model=request.model)
