"""Amazon Bedrock, through boto3's ``bedrock-runtime`` client.

Three paths, picked from the model id:

* **Titan text** (``amazon.titan-text-*``, ``amazon.titan-tg1-*``) goes through ``InvokeModel`` /
  ``InvokeModelWithResponseStream`` with Titan's own body. Titan has no roles, so the system
  prompt and the history are rendered into its documented conversation format::

      <system prompt>

      User: <turn>
      Bot: <turn>
      User: <turn>
      Bot:

  Titan cannot take tools, images or structured output (its family profile says so) and
  accepts at most one stop sequence, which must be ``"User:"`` or a run of ``"|"`` (the
  service validates ``^(\\|+|User:)$``); anything else is refused before sending. The leading
  whitespace Titan emits after ``Bot:`` is dropped. Pass ``provider_options={"api":
  "converse"}`` to send a Titan model through Converse instead.
* **Titan embeddings** (``amazon.titan-embed-text-v1``, ``-v2:0``) take one text per call, so
  the client fans the texts out, up to ``max_workers`` (default 8) at a time, each text under
  its own retries, and returns vectors in input order, usage summed. ``dimensions`` /
  ``normalize`` / ``embeddingTypes`` from ``provider_options`` go into the v2 body; v1 accepts
  none of them and refuses them.
* **Converse / ConverseStream** for every other chat model (Claude, Llama, Mistral, Nova...).

Decisions where Converse and fmclient's request do not line up:

* ``tool_choice="none"``: Converse has no "none". The tools are left out of the request, which
  keeps the meaning (the model cannot call a tool). When the history already holds tool calls
  or results Bedrock insists on a ``toolConfig``, so that case raises ``UnsupportedFeatureError``.
* Images: inline bytes are sent as image blocks; ``s3://`` URLs as S3 locations (Bedrock reads
  them itself). An ``http(s)`` URL is refused (``UnsupportedFeatureError``): the adapter does
  not fetch arbitrary URLs on the caller's behalf — download it and pass the bytes.
* Structured output: Converse's native ``outputConfig.textFormat`` (JSON schema) is used for the
  models Bedrock documents it for (Claude 4.5 and later); objects in that schema get
  ``additionalProperties: false`` unless they say otherwise, as constrained decoding requires.
  For every other model a single tool whose input schema is the requested schema is forced
  (``toolChoice: {"tool": ...}``), and its input JSON is returned as the completion text (finish
  reason "stop", no tool calls; when streamed, its input fragments are the text chunks and any
  text around the tool call is dropped). ``provider_options={"structured_output": "native" |
  "tool"}`` overrides the choice. The forced-tool form cannot be combined with the caller's own
  tools (``UnsupportedFeatureError``). Bedrock only honours a forced tool on models with tool
  choice support (Claude, Mistral Large, Nova); others answer with a ``BadRequestError``.
* ``temperature`` above 1 is refused before sending (Bedrock's range is 0..1).
* ``provider_options`` are merged into the Converse arguments / the Titan body (dicts one level
  deep), except ``api`` and ``structured_output``, which this adapter reads itself; InvokeModel
  header arguments (``guardrailIdentifier``, ``trace``...) go to the call, not the Titan body.
* Usage: ``input_tokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens``,
  ``cached_input_tokens = cacheReadInputTokens``, ``cache_write_tokens = cacheWriteInputTokens``
  of which ``cache_write_1h_tokens`` = the ``cacheDetails`` entries with ``ttl = "1h"`` (see
  :mod:`fmclient.types`); Converse does not count reasoning tokens apart. The response's
  ``serviceTier`` (``priority``, ``flex``, ``reserved``) and a latency-optimized
  ``performanceConfig`` (``speed = "optimized"``) are carried for pricing.

Credentials, region and profile come from the standard AWS chain (``AWS_REGION`` is honoured
before boto3's own ``AWS_DEFAULT_REGION``), overridden by the provider's ``region`` / ``profile``
settings; a Bedrock API key in ``AWS_BEARER_TOKEN_BEDROCK`` counts as credentials (boto3 sends it
over HTTPS only). Missing region or credentials raise ``ConfigurationError`` from
``check_ready``, before any request. The endpoint is ``base_url`` or the ``endpoint_url`` option;
when neither is set boto3 applies ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` / ``AWS_ENDPOINT_URL``
itself. botocore's retries are off: fmclient's retry layer is the only one. The per-attempt
``request.timeout`` becomes botocore's per-request read timeout (through a ``before-call`` hook
and the request context); ``settings.timeout`` is the client's default; else botocore's 60 s.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from fmclient.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFilterError,
    ContextWindowExceededError,
    FMClientError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedFeatureError,
    error_for_status,
    parse_retry_after,
)
from fmclient.pricing import price_modifier
from fmclient.profiles import profile_for
from fmclient.profiles._profile import structured_output_mode
from fmclient.providers.base import Capabilities, EmbedBatching, Provider, ProviderSettings, import_sdk
from fmclient.providers.shared_io import (
    MappedErrors,
    citation,
    claude_reasoning,
    media_in,
    merge_provider_options,
    stream_chunks,
)
from fmclient.secret import redact, register_secret
from fmclient.types import (
    AudioPart,
    CachePoint,
    Chunk,
    Citation,
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
    TextPart,
    TokenCount,
    ToolCall,
    ToolCallDelta,
    Usage,
    VideoPart,
    image_mime_type,
)

__all__ = [
    "BedrockProvider",
    "ConverseStreamParser",
    "TitanStreamParser",
    "build_converse_params",
    "build_image_body",
    "build_titan_embedding_body",
    "build_titan_multimodal_embedding_body",
    "build_titan_text_body",
    "map_error",
    "model_family",
    "parse_converse_response",
    "parse_image_response",
    "parse_titan_embedding",
    "parse_titan_text_response",
    "render_titan_prompt",
    "uses_native_structured_output",
]

DEFAULT_MAX_WORKERS = 8
BEARER_TOKEN_ENV = "AWS_BEARER_TOKEN_BEDROCK"
# provider_options keys this adapter consumes itself; everything else goes to Bedrock.
_OWN_OPTIONS = frozenset({"api", "structured_output"})
# InvokeModel arguments (headers), as opposed to keys of the model's JSON body.
_INVOKE_ARGUMENTS = frozenset(
    {
        "trace",
        "guardrailIdentifier",
        "guardrailVersion",
        "performanceConfigLatency",
        "serviceTier",
        "requestMetadata",
        "projectIdentifier",
    }
)
_TITAN_STOP = re.compile(r"^(\|+|User:)$")
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_EXTENSION_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "webp": "webp"}

# The read timeout of the call being made on this thread; a botocore ``before-call`` hook copies
# it into the request context, which botocore's HTTP layer honours per request.
_read_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "fmclient_bedrock_read_timeout", default=None
)


# -- model families ------------------------------------------------------------------------
def _base_id(model: str) -> str:
    # ARNs end in ".../<model id>"; the family is in the id.
    return model.rsplit("/", 1)[-1].lower()


def model_family(model: str) -> str:
    """``titan-text``, ``titan-embed``, ``embed`` (other embedding models) or ``converse``."""
    base = _base_id(model)
    if "amazon.titan-text" in base or "amazon.titan-tg1" in base:
        return "titan-text"
    if any(f"amazon.titan-embed-{kind}" in base for kind in ("text", "g1-text", "image")):
        return "titan-embed"
    if ".embed" in base or base.startswith("embed"):
        return "embed"
    return "converse"


def uses_native_structured_output(model: str) -> bool:
    """Whether Converse's ``outputConfig.textFormat`` is used for this model: its family profile
    says ``json_schema`` on Bedrock (Claude Sonnet/Haiku/Opus 4.5 and later); others get the
    forced-tool form."""
    return profile_for(model, "bedrock").structured_output_mode == "json_schema"


def _is_titan_v1_embedding(model: str) -> bool:
    return not profile_for(model, "bedrock").embedding_options


# -- shared request checks -----------------------------------------------------------------
def _refuse(what: str, request_model: str, provider: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(what, provider=provider, model=request_model)


def _check_ranges(request: Request, provider: str) -> None:
    # Bedrock's API shapes (and Titan) accept temperature in [0, 1], not fmclient's [0, 2].
    if request.temperature is not None and request.temperature > 1.0:
        raise BadRequestError(
            f"temperature {request.temperature:g} is outside Bedrock's range 0..1",
            provider=provider,
            model=request.model,
        )


def _check_titan_stops(request: Request, provider: str) -> None:
    if len(request.stop) > 1:
        raise _refuse(f"Titan text accepts at most one stop sequence, got {len(request.stop)}", request.model, provider)
    for stop in request.stop:
        if not _TITAN_STOP.match(stop):
            raise _refuse(
                f"Titan text accepts only 'User:' or '|' (a run of '|') as stop sequence, got {stop!r}",
                request.model,
                provider,
            )


def _own_option(request: Request, key: str) -> Any:
    return request.provider_options.get(key)


def _passthrough(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _OWN_OPTIONS}


def _merge(
    params: dict[str, Any], extra: Mapping[str, Any], *, model: str, provider: str, defaults: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Merge provider options into params; dicts present on both sides merge one level deep, and
    a value set from the call's arguments is not replaced (see ``merge_provider_options``)."""
    return merge_provider_options(params, extra, provider=provider, model=model, defaults=defaults)


# -- Titan text ----------------------------------------------------------------------------
def render_titan_prompt(
    system: str | None, messages: Sequence[Message], *, provider: str = "bedrock", model: str = ""
) -> str:
    """The system prompt and the conversation in Titan's "User: ...\\nBot: ..." format,
    ending with ``Bot:`` for the model to continue (or with a partial assistant turn)."""
    lines: list[str] = []
    for message in messages:
        if message.role == "tool" or message.tool_calls:
            raise _refuse("Titan text cannot take tool calls or tool results", model, provider)
        media = media_in(message)
        if media is not None:
            raise _refuse(f"Titan text does not support {media} input", model, provider)
        speaker = "User" if message.role == "user" else "Bot"
        lines.append(f"{speaker}: {message.text.strip()}")
    if not messages or messages[-1].role != "assistant":
        lines.append("Bot:")
    conversation = "\n".join(lines)
    if system and system.strip():
        return f"{system.strip()}\n\n{conversation}"
    return conversation


def build_titan_text_body(request: Request, *, provider: str = "bedrock") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(body, invoke_model_arguments)`` for a Titan text request. Refuses what Titan cannot do."""
    if request.tools:
        raise _refuse("Titan text does not support tools", request.model, provider)
    if request.response_format is not None:
        raise _refuse("Titan text does not support structured output", request.model, provider)
    _check_titan_stops(request, provider)
    _check_ranges(request, provider)
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxTokenCount"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    body: dict[str, Any] = {
        "inputText": render_titan_prompt(request.system, request.messages, provider=provider, model=request.model)
    }
    if config:
        body["textGenerationConfig"] = config
    options = _passthrough(request.provider_options)
    arguments = {k: v for k, v in options.items() if k in _INVOKE_ARGUMENTS}
    _merge(
        body, {k: v for k, v in options.items() if k not in _INVOKE_ARGUMENTS}, model=request.model, provider=provider
    )
    return body, arguments


_TITAN_FINISH: dict[str, FinishReason] = {
    "FINISH": "stop",
    "FINISHED": "stop",
    "STOP_CRITERIA_MET": "stop",
    "LENGTH": "length",
    "MAX_TOKENS": "length",
    "CONTENT_FILTERED": "content_filter",
}


def titan_finish_reason(reason: str | None) -> FinishReason:
    return _TITAN_FINISH.get((reason or "").upper(), "other")


def parse_titan_text_response(body: Mapping[str, Any], *, provider: str, model: str, raw: Any = None) -> Completion:
    try:
        result = body["results"][0]
        text = str(result.get("outputText") or "").lstrip()
        usage = Usage(
            input_tokens=int(body.get("inputTextTokenCount") or 0),
            output_tokens=int(result.get("tokenCount") or 0),
        )
        reason = titan_finish_reason(result.get("completionReason"))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise _malformed(f"Titan response has no usable results[0]: {exc!r}", provider, model) from exc
    return Completion(
        text=text,
        finish_reason=reason,
        usage=usage,
        model=model,
        provider=provider,
        message=Message(role="assistant", content=text),
        raw=raw if raw is not None else dict(body),
    )


class TitanStreamParser:
    """Turns ``InvokeModelWithResponseStream`` chunk events of a Titan model into Chunks."""

    def __init__(self, *, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self._started = False  # whether non-whitespace text has been emitted yet
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self._input_tokens = 0

    def feed(self, event: Mapping[str, Any]) -> list[Chunk]:
        chunk = event.get("chunk")
        if chunk is None:
            return []
        try:
            payload = json.loads(chunk["bytes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(f"Titan stream chunk is not JSON: {exc}", self.provider, self.model) from exc
        if not isinstance(payload, dict):
            raise _malformed("Titan stream chunk is not a JSON object", self.provider, self.model)
        out: list[Chunk] = []
        text = str(payload.get("outputText") or "")
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        if text:
            out.append(Chunk(text=text, raw=payload))
        if payload.get("inputTextTokenCount"):
            self._input_tokens = int(payload["inputTextTokenCount"])
        if payload.get("completionReason"):
            self.finish_reason = titan_finish_reason(payload["completionReason"])
            metrics = payload.get("amazon-bedrock-invocationMetrics") or {}
            self.usage = Usage(
                input_tokens=int(metrics.get("inputTokenCount") or self._input_tokens),
                output_tokens=int(metrics.get("outputTokenCount") or payload.get("totalOutputTextTokenCount") or 0),
            )
        return out

    def finish(self) -> Chunk:
        if self.finish_reason is None or self.usage is None:
            raise APIConnectionError(
                "the Titan stream ended before its final chunk (no completionReason)",
                provider=self.provider,
                model=self.model,
            )
        return Chunk(finish_reason=self.finish_reason, usage=self.usage, model=self.model)


# -- Titan embeddings ----------------------------------------------------------------------
def build_titan_embedding_body(
    text: str, model: str, options: Mapping[str, Any], *, provider: str = "bedrock"
) -> dict[str, Any]:
    options = _passthrough(options)
    if _is_titan_v1_embedding(model) and options:
        raise _refuse(
            f"Titan embeddings v1 takes no options (got {', '.join(sorted(options))}); "
            "dimensions/normalize need amazon.titan-embed-text-v2:0",
            model,
            provider,
        )
    return _merge({"inputText": text}, options, model=model, provider=provider)


def build_titan_multimodal_embedding_body(
    text: str, image: ImagePart | None, options: Mapping[str, Any], *, model: str = "", provider: str = "bedrock"
) -> dict[str, Any]:
    """Titan Multimodal Embeddings: ``inputText`` and/or ``inputImage`` (base64), plus options
    such as ``embeddingConfig``."""
    body: dict[str, Any] = {}
    if text:
        body["inputText"] = text
    if image is not None:
        body["inputImage"] = image.base64_data
    return _merge(body, _passthrough(options), model=model, provider=provider)


# -- image generation (Titan Image Generator, Nova Canvas) ----------------------------------
# fmclient's option names for the imageGenerationConfig fields generate_image has no argument for.
_IMAGE_CONFIG_OPTIONS = {"cfg_scale": "cfgScale"}


def _variation_sources(value: Any, model: str, provider: str) -> list[str]:
    """``variation_of`` (an image's bytes, a pathlib.Path, a data URI or an ImagePart, or a list of
    them) as base64. A str is never read as a file path (see ImagePart.from_url)."""
    sources = value if isinstance(value, (list, tuple)) else [value]
    if not 1 <= len(sources) <= 5:
        raise BadRequestError("variation_of takes 1 to 5 images", provider=provider, model=model)
    encoded = []
    for source in sources:
        try:
            part = source if isinstance(source, ImagePart) else ImagePart.from_source(source)
        except (TypeError, ValueError) as exc:
            raise BadRequestError(f"variation_of: {exc}", provider=provider, model=model) from None
        if part.data is None:
            raise BadRequestError(
                "variation_of: an image must be inline data, not a URL", provider=provider, model=model
            )
        encoded.append(part.base64_data)
    return encoded


def build_image_body(request: ImageRequest, *, provider: str = "bedrock") -> dict[str, Any]:
    """The InvokeModel body; Titan Image Generator v2 and Nova Canvas share it. TEXT_IMAGE, or
    IMAGE_VARIATION when the provider option ``variation_of`` gives the source image(s) (with
    ``similarity_strength``). Other provider options are merged into the body as given."""
    text: dict[str, Any] = {"text": request.prompt}
    if request.negative_prompt is not None:
        text["negativeText"] = request.negative_prompt
    config: dict[str, Any] = {"numberOfImages": request.n}
    dimensions = request.dimensions
    if dimensions is not None:
        config["width"], config["height"] = dimensions
    if request.quality is not None:
        config["quality"] = request.quality
    if request.seed is not None:
        config["seed"] = request.seed
    extra = dict(request.provider_options)
    for option, field_name in _IMAGE_CONFIG_OPTIONS.items():
        if option in extra:
            config[field_name] = extra.pop(option)
    if "variation_of" in extra:
        text["images"] = _variation_sources(extra.pop("variation_of"), request.model, provider)
        if "similarity_strength" in extra:
            text["similarityStrength"] = extra.pop("similarity_strength")
        body = {"taskType": "IMAGE_VARIATION", "imageVariationParams": text, "imageGenerationConfig": config}
    else:
        body = {"taskType": "TEXT_IMAGE", "textToImageParams": text, "imageGenerationConfig": config}
    return _merge(body, extra, model=request.model, provider=provider)


def parse_image_response(body: Mapping[str, Any], *, provider: str, model: str, raw: Any = None) -> Images:
    """Titan/Nova's answer: ``{"images": [base64...], "error": ...}``. A 200 with an ``error``
    (the content filters blocked the prompt or the images) raises, never retried."""
    error = body.get("error")
    if error:
        text = f"{model} refused: {error}"
        if _SAFETY.search(str(error)):
            raise ContentFilterError(text, provider=provider, model=model)
        raise BadRequestError(text, provider=provider, model=model)
    encoded = body.get("images")
    if not isinstance(encoded, list) or not encoded:
        raise _malformed("image response has no 'images' list", provider, model)
    images = []
    for item in encoded:
        data = base64.b64decode(item)
        images.append(GeneratedImage(data=data, mime_type=image_mime_type(data)))
    return Images(images=images, model=model, provider=provider, raw=raw)


def parse_titan_embedding(body: Mapping[str, Any], *, provider: str, model: str) -> tuple[list[float], int]:
    vector = body.get("embedding")
    if vector is None:
        by_type = body.get("embeddingsByType") or {}
        vector = by_type.get("float", by_type.get("binary"))
    if not isinstance(vector, list):
        raise _malformed("Titan embedding response has no 'embedding' list", provider, model)
    return [float(v) for v in vector], int(body.get("inputTextTokenCount") or 0)


# -- Converse ------------------------------------------------------------------------------
def _image_format(part: ImagePart, provider: str, model: str) -> str:
    if part.media_type in _IMAGE_FORMATS:
        return _IMAGE_FORMATS[part.media_type]
    if part.url:
        extension = part.url.split("?")[0].rsplit(".", 1)[-1].lower()
        if extension in _EXTENSION_FORMATS:
            return _EXTENSION_FORMATS[extension]
    raise _refuse(
        f"Bedrock takes PNG, JPEG, GIF or WebP images, not {part.media_type or 'an unknown type'}", model, provider
    )


def _image_block(part: ImagePart, provider: str, model: str) -> dict[str, Any]:
    fmt = _image_format(part, provider, model)
    if part.data is not None:
        return {"image": {"format": fmt, "source": {"bytes": part.data}}}
    url = part.url or ""
    if url.startswith("s3://"):
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": url}}}}
    raise _refuse(
        f"Bedrock cannot fetch image URLs ({url[:60]!r}): pass the image bytes (or an s3:// URI) instead",
        model,
        provider,
    )


def _content_blocks(
    parts: Iterable[Any], provider: str, model: str, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """Converse content blocks; ``names`` collects the document names of the whole request (each
    must be unique there)."""
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part, provider, model))
        elif isinstance(part, DocumentPart):
            blocks.append(_document_block(part, provider, model, [] if names is None else names))
        else:
            fmt = _MEDIA_FORMATS[part.type].get(part.media_type or "")
            if fmt is None:
                takes = ", ".join(sorted(_MEDIA_FORMATS[part.type]))
                raise _refuse(f"Bedrock takes {part.type} of the types {takes}, not {part.media_type}", model, provider)
            blocks.append({part.type: {"format": fmt, "source": _media_source(part, provider, model)}})
    return blocks


# The Converse block formats (the SDK's DocumentFormat, VideoFormat, AudioFormat) by MIME type.
_MEDIA_FORMATS: dict[str, dict[str, str]] = {
    "document": {
        "application/pdf": "pdf",
        "text/csv": "csv",
        "application/msword": "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
        "application/vnd.ms-excel": "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
        "text/html": "html",
        "text/plain": "txt",
        "text/markdown": "md",
    },
    "video": {
        "video/x-matroska": "mkv",
        "video/quicktime": "mov",
        "video/mp4": "mp4",
        "video/webm": "webm",
        "video/x-flv": "flv",
        "video/mpeg": "mpeg",
        "video/x-ms-wmv": "wmv",
        "video/3gpp": "three_gp",
    },
    "audio": {
        "audio/mpeg": "mp3",
        "audio/wav": "wav",
        "audio/aac": "aac",
        "audio/flac": "flac",
        "audio/mp4": "m4a",
        "audio/ogg": "ogg",
        "audio/webm": "webm",
    },
}
# A document's name: alphanumerics, whitespace (no two in a row), hyphens, parentheses, brackets.
_NAME_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")
# Bedrock reads each document inline up to 4.5 MB, and five documents a request
# (conversation-inference-call.html).
_MAX_DOCUMENT_BYTES = 4_718_592
_MAX_DOCUMENTS = 5


def _media_source(part: DocumentPart | AudioPart | VideoPart, provider: str, model: str) -> dict[str, Any]:
    if part.data is not None:
        return {"bytes": part.data}
    url = part.url or ""
    if url.startswith("s3://"):
        return {"s3Location": {"uri": url}}
    raise _refuse(
        f"Bedrock cannot fetch {part.type} URLs ({url[:60]!r}): pass the bytes (or an s3:// URI) instead",
        model,
        provider,
    )


def _document_block(part: DocumentPart, provider: str, model: str, names: list[str]) -> dict[str, Any]:
    fmt = _MEDIA_FORMATS["document"].get(part.media_type or "")
    if fmt is None:
        takes = ", ".join(sorted(set(_MEDIA_FORMATS["document"].values())))
        raise _refuse(f"Bedrock's document block takes {takes}, not {part.media_type}", model, provider)
    if part.data is not None and len(part.data) > _MAX_DOCUMENT_BYTES:
        raise _refuse(
            f"Bedrock takes documents of at most 4.5 MB inline, not {len(part.data):,} bytes: use an s3:// URI",
            model,
            provider,
        )
    if len(names) >= _MAX_DOCUMENTS:
        raise _refuse(f"Bedrock takes at most {_MAX_DOCUMENTS} documents in one request", model, provider)
    stem = (part.name or "").rsplit(".", 1)[0] if part.name and "." in part.name else (part.name or "")
    name = " ".join(_NAME_NOT_ALLOWED.sub("-", stem).split()) or f"document-{len(names) + 1}"
    while name in names:  # names are unique in a request
        name = f"{name}-{len(names) + 1}"
    names.append(name)
    block: dict[str, Any] = {"format": fmt, "name": name, "source": _media_source(part, provider, model)}
    if part.citations:
        block["citations"] = {"enabled": True}
    return {"document": block}


def _cache_point(point: CachePoint) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "default"}
    if point.ttl is not None:
        block["ttl"] = point.ttl
    return {"cachePoint": block}


def _has_tool_history(messages: Sequence[Message]) -> bool:
    return any(m.role == "tool" or m.tool_calls for m in messages)


def _converse_messages(messages: Sequence[Message], provider: str, model: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    names: list[str] = []
    for message in messages:
        blocks: list[dict[str, Any]]
        if message.role == "tool":
            role = "user"
            result_blocks: list[dict[str, Any]] = (
                [{"text": message.content}]
                if isinstance(message.content, str)
                else _content_blocks(message.content, provider, model, names)
            )
            tool_result: dict[str, Any] = {"toolUseId": message.tool_call_id, "content": result_blocks}
            if message.is_error:
                tool_result["status"] = "error"
            blocks = [{"toolResult": tool_result}]
        elif message.role == "assistant":
            role = "assistant"
            state = (message.provider_state or {}).get(provider) or {}
            blocks = [dict(b) for b in state.get("reasoning", ())]
            blocks += _content_blocks(message.parts, provider, model, names)
            blocks += [
                {"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.arguments}}
                for call in message.tool_calls
            ]
        else:
            role = "user"
            blocks = _content_blocks(message.parts, provider, model, names)
        if not blocks:
            continue  # an empty turn carries nothing, and Bedrock rejects empty content
        if message.cache is not None:
            blocks.append(_cache_point(message.cache))
        # Converse wants alternating roles: tool results and a following user text share a turn.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _structured_mode(request: Request) -> str | None:
    if request.response_format is None:
        return None
    override = _own_option(request, "structured_output")
    if override is not None and override not in ("native", "tool"):
        raise BadRequestError(
            f"provider option structured_output must be 'native' or 'tool', got {override!r}",
            model=request.model,
        )
    # The same reading the profile's check makes (a forced tool does not mix with thinking).
    mode = structured_output_mode(profile_for(request.model, "bedrock"), request)
    return "native" if mode == "json_schema" else "tool"


_SUBSCHEMA = frozenset({"items", "additionalProperties", "not", "contains", "if", "then", "else"})
_SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SUBSCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})


def closed_schema(schema: Any) -> Any:
    """A copy of a JSON schema where every object that does not say otherwise gets
    ``additionalProperties: false``: Bedrock's native structured output (Claude's constrained
    decoding) rejects object schemas without it. Forbidding keys the schema does not name keeps
    every reply valid against the caller's schema, which the client checks."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SUBSCHEMA:
            out[key] = closed_schema(value)
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [closed_schema(item) for item in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: closed_schema(sub) for name, sub in value.items()}
        else:
            out[key] = value
    if (schema.get("type") == "object" or "properties" in schema) and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def structured_tool_name(request: Request) -> str | None:
    """The name of the forced tool carrying structured output, when that form is used."""
    if _structured_mode(request) != "tool":
        return None
    assert request.response_format is not None
    return request.response_format.name


#: The answer's share of ``maxTokens`` on top of the thinking budget when the request sets none.
CLAUDE_DEFAULT_MAX_TOKENS = 4096


def build_converse_params(request: Request, *, provider: str = "bedrock") -> dict[str, Any]:
    """The keyword arguments of ``client.converse`` / ``client.converse_stream``."""
    _check_ranges(request, provider)
    if model_family(request.model) == "titan-text":
        _check_titan_stops(request, provider)
    params: dict[str, Any] = {
        "modelId": request.model,
        "messages": _converse_messages(request.messages, provider, request.model),
    }
    if request.system:
        params["system"] = [{"text": request.system}]
        if request.system_cache is not None:
            params["system"].append(_cache_point(request.system_cache))
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if request.reasoning is not None:
        profile = profile_for(request.model, "bedrock")
        if not profile.family.startswith("claude"):
            raise _refuse(
                f"reasoning={request.reasoning!r}: fmclient maps reasoning on Bedrock for Claude models only",
                request.model,
                provider,
            )
        # The Anthropic request fields, which Bedrock passes on to Claude as they are.
        fields, max_tokens = claude_reasoning(
            request.reasoning,
            request.max_tokens,
            CLAUDE_DEFAULT_MAX_TOKENS,
            adaptive=profile.adaptive_thinking,
            provider=provider,
            model=request.model,
            output_limit=profile.max_output_tokens,
        )
        if max_tokens is not None:
            inference["maxTokens"] = max_tokens
        params["additionalModelRequestFields"] = fields
    if inference:
        params["inferenceConfig"] = inference

    tools = [
        {
            "toolSpec": {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "inputSchema": {"json": dict(tool.parameters)},
            }
        }
        for tool in request.tools
    ]
    choice = request.tool_choice
    mode = _structured_mode(request)
    if mode == "tool":
        assert request.response_format is not None
        if request.tools:
            raise _refuse(
                "structured output on this model uses a forced tool, which cannot be combined with "
                "other tools (pass provider_options structured_output='native' if the model supports it)",
                request.model,
                provider,
            )
        fmt = request.response_format
        tools = [
            {
                "toolSpec": {
                    "name": fmt.name,
                    "description": f"Reply with the {fmt.name} JSON object.",
                    "inputSchema": {"json": dict(fmt.schema)},
                }
            }
        ]
        params["toolConfig"] = {"tools": tools, "toolChoice": {"tool": {"name": fmt.name}}}
    elif tools:
        if choice == "none":
            if _has_tool_history(request.messages):
                raise _refuse(
                    "tool_choice='none' is not available on Bedrock Converse when the conversation "
                    "holds tool calls or results (Bedrock then requires the tools to be sent)",
                    request.model,
                    provider,
                )
            # Leaving the tools out is how "none" is honoured: the model cannot call any.
        else:
            config: dict[str, Any] = {"tools": tools}
            if choice == "auto":
                config["toolChoice"] = {"auto": {}}
            elif choice == "required":
                config["toolChoice"] = {"any": {}}
            elif choice:
                config["toolChoice"] = {"tool": {"name": choice}}
            params["toolConfig"] = config
    if mode == "native":
        assert request.response_format is not None
        fmt = request.response_format
        params["outputConfig"] = {
            "textFormat": {
                "type": "json_schema",
                # The API takes the schema as a JSON string, not a document.
                "structure": {"jsonSchema": {"name": fmt.name, "schema": json.dumps(closed_schema(fmt.schema))}},
            }
        }
    # maxTokens sized for a thinking budget, when the call set none, is a default an option may replace
    defaults = ("inferenceConfig.maxTokens",) if request.max_tokens is None else ()
    return _merge(
        params, _passthrough(request.provider_options), model=request.model, provider=provider, defaults=defaults
    )


_CONVERSE_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def converse_finish_reason(reason: str | None, *, structured_tool: bool = False) -> FinishReason:
    mapped = _CONVERSE_FINISH.get(reason or "", "other")
    # The forced structured-output tool is fmclient's mechanism, not a call for the caller.
    if structured_tool and mapped == "tool_calls":
        return "stop"
    return mapped


def converse_usage(usage: Mapping[str, Any] | None, response: Mapping[str, Any] | None = None) -> Usage:
    """Usage of a Converse response (or a ConverseStream ``metadata`` event, ``response``
    giving its ``serviceTier`` and ``performanceConfig``)."""
    usage = usage or {}
    response = response or {}
    cache_read = int(usage.get("cacheReadInputTokens") or 0)
    details = usage.get("cacheDetails") or ()
    one_hour = sum(int(d.get("inputTokens") or 0) for d in details if isinstance(d, Mapping) and d.get("ttl") == "1h")
    by_ttl = sum(int(d.get("inputTokens") or 0) for d in details if isinstance(d, Mapping))
    cache_write = int(usage.get("cacheWriteInputTokens") or 0) or by_ttl
    tier = response.get("serviceTier")
    performance = response.get("performanceConfig")
    latency = performance.get("latency") if isinstance(performance, Mapping) else None
    return Usage(
        input_tokens=int(usage.get("inputTokens") or 0) + cache_read + cache_write,
        output_tokens=int(usage.get("outputTokens") or 0),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(one_hour, cache_write),
        service_tier=price_modifier(tier.get("type")) if isinstance(tier, Mapping) else None,
        speed="optimized" if latency == "optimized" else None,
    )


def _answered_model(response: Mapping[str, Any], requested: str) -> str:
    # A prompt router says which model it picked; otherwise the model asked for answered.
    router = ((response.get("trace") or {}).get("promptRouter") or {}).get("invokedModelId")
    return str(router) if router else requested


def parse_converse_response(
    response: Mapping[str, Any], *, provider: str, model: str, structured_tool: str | None = None
) -> Completion:
    try:
        content = response["output"]["message"]["content"]
        stop_reason = response.get("stopReason")
    except (KeyError, TypeError) as exc:
        raise _malformed(f"Converse response has no output message: {exc!r}", provider, model) from exc
    texts: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[dict[str, Any]] = []
    structured: str | None = None
    citations: list[Citation] = []
    for block in content:
        if "text" in block:
            texts.append(block["text"])
        elif "citationsContent" in block:
            # Text generated with citations comes in its own block: its text is part of the answer.
            cited = block["citationsContent"] or {}
            piece = "".join(str(c.get("text") or "") for c in cited.get("content") or () if isinstance(c, Mapping))
            start = sum(len(t) for t in texts)
            texts.append(piece)
            citations += [converse_citation(c, (start, start + len(piece))) for c in cited.get("citations") or ()]
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = use.get("input")
            if structured_tool is not None and use.get("name") == structured_tool:
                structured = json.dumps(arguments)
                continue
            if not isinstance(arguments, dict):
                arguments = {} if arguments is None else {"input": arguments}
            calls.append(ToolCall(id=str(use.get("toolUseId")), name=str(use.get("name")), arguments=arguments))
        elif "reasoningContent" in block:
            reasoning.append(block)
    text = structured if structured is not None else "".join(texts)
    state = {provider: {"reasoning": reasoning}} if reasoning else None
    thinking = "".join(
        str(((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text") or "") for block in reasoning
    )
    return Completion(
        text=text,
        finish_reason=converse_finish_reason(stop_reason, structured_tool=structured_tool is not None),
        usage=converse_usage(response.get("usage"), response),
        model=_answered_model(response, model),
        provider=provider,
        tool_calls=calls,
        message=Message(role="assistant", content=text, tool_calls=tuple(calls), provider_state=state),
        raw=response,
        request_id=(response.get("ResponseMetadata") or {}).get("RequestId"),
        reasoning=thinking or None,
        citations=citations if structured is None else [],
    )


_CITATION_LOCATIONS: dict[str, Literal["page", "char", "chunk"]] = {
    "documentPage": "page",
    "documentChar": "char",
    "documentChunk": "chunk",
}


def converse_citation(raw: Mapping[str, Any], answer: tuple[int, int]) -> Citation:
    """A Converse ``Citation`` (or streamed ``CitationsDelta``) as a normalised Citation."""
    location = raw.get("location") or {}
    kind = next((key for key in _CITATION_LOCATIONS if key in location), None)
    where = (location.get(kind) or {}) if kind else {}
    cited = "".join(str(c.get("text") or "") for c in raw.get("sourceContent") or () if isinstance(c, Mapping))
    return citation(
        cited,
        document_index=where.get("documentIndex"),
        document_name=raw.get("title") or raw.get("source"),
        location=_CITATION_LOCATIONS[kind] if kind else None,
        start=where.get("start"),
        end=where.get("end"),
        answer=answer,
    )


class ConverseStreamParser:
    """Turns ConverseStream events into Chunks: text deltas, ToolCallDeltas (id and name from
    ``contentBlockStart``, argument fragments from ``contentBlockDelta``), and a final chunk
    from ``messageStop`` + ``metadata``. With ``structured_tool`` set, that tool's argument
    fragments are the text and reasoning is kept; other text and tool calls are dropped."""

    def __init__(self, *, provider: str, model: str, structured_tool: str | None = None) -> None:
        self.provider = provider
        self.model = model
        self.structured_tool = structured_tool
        self.stop_reason: str | None = None
        self.usage: Usage | None = None
        self.answered_model = model
        self._tool_index: dict[int, int] = {}  # content block index -> tool call index
        self._structured_blocks: set[int] = set()
        self._reasoning: dict[int, dict[str, Any]] = {}
        # Citations wait for their block's end, when the answer text they support is known.
        self._text_length = 0
        self._block_start: dict[int, int] = {}
        self._citations: dict[int, list[Mapping[str, Any]]] = {}

    def feed(self, event: Mapping[str, Any]) -> list[Chunk]:
        if "contentBlockStop" in event:
            block = int(event["contentBlockStop"].get("contentBlockIndex", 0))
            pending = self._citations.pop(block, None)
            if not pending or self.structured_tool is not None:
                return []
            answer = (self._block_start.get(block, self._text_length), self._text_length)
            return [Chunk(citations=tuple(converse_citation(c, answer) for c in pending))]
        if "contentBlockStart" in event:
            start_event = event["contentBlockStart"]
            block = int(start_event.get("contentBlockIndex", 0))
            use = (start_event.get("start") or {}).get("toolUse")
            if use is None:
                return []
            if self.structured_tool is not None:
                if use.get("name") == self.structured_tool:
                    self._structured_blocks.add(block)
                return []
            index = self._tool_index.setdefault(block, len(self._tool_index))
            return [Chunk(tool_calls=(ToolCallDelta(index=index, id=use.get("toolUseId"), name=use.get("name")),))]
        if "contentBlockDelta" in event:
            delta_event = event["contentBlockDelta"]
            block = int(delta_event.get("contentBlockIndex", 0))
            delta = delta_event.get("delta") or {}
            if "text" in delta:
                if self.structured_tool is not None:
                    return []  # chatter around the forced tool is not part of the JSON answer
                self._block_start.setdefault(block, self._text_length)
                self._text_length += len(delta["text"] or "")
                return [Chunk(text=delta["text"])] if delta["text"] else []
            if "citation" in delta:
                self._block_start.setdefault(block, self._text_length)
                self._citations.setdefault(block, []).append(delta["citation"] or {})
                return []
            if "toolUse" in delta:
                fragment = str((delta["toolUse"] or {}).get("input") or "")
                if block in self._structured_blocks:
                    return [Chunk(text=fragment)] if fragment else []
                if block not in self._tool_index or not fragment:
                    return []
                return [Chunk(tool_calls=(ToolCallDelta(index=self._tool_index[block], arguments=fragment),))]
            if "reasoningContent" in delta:
                thought = (delta["reasoningContent"] or {}).get("text") or ""
                self._add_reasoning(block, delta["reasoningContent"] or {})
                # kept beside a forced structured-output tool too, as the unstreamed answer keeps it
                return [Chunk(reasoning=thought)] if thought else []
            return []
        if "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason") or "end_turn"
            return []
        if "metadata" in event:
            metadata = event["metadata"]
            self.usage = converse_usage(metadata.get("usage"), metadata)
            self.answered_model = _answered_model(metadata, self.model)
            return []
        return []

    def _add_reasoning(self, block: int, delta: Mapping[str, Any]) -> None:
        entry = self._reasoning.setdefault(block, {"text": "", "signature": None, "redacted": None})
        if delta.get("text"):
            entry["text"] += delta["text"]
        if delta.get("signature"):
            entry["signature"] = delta["signature"]
        if delta.get("redactedContent"):
            entry["redacted"] = delta["redactedContent"]

    def _reasoning_blocks(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for index in sorted(self._reasoning):
            entry = self._reasoning[index]
            if entry["redacted"] is not None:
                blocks.append({"reasoningContent": {"redactedContent": entry["redacted"]}})
            else:
                text_block: dict[str, Any] = {"text": entry["text"]}
                if entry["signature"]:
                    text_block["signature"] = entry["signature"]
                blocks.append({"reasoningContent": {"reasoningText": text_block}})
        return blocks

    def finish(self) -> Chunk:
        if self.stop_reason is None or self.usage is None:
            missing = "messageStop" if self.stop_reason is None else "metadata"
            raise APIConnectionError(
                f"the ConverseStream ended before its {missing} event", provider=self.provider, model=self.model
            )
        reasoning = self._reasoning_blocks()
        return Chunk(
            finish_reason=converse_finish_reason(self.stop_reason, structured_tool=self.structured_tool is not None),
            usage=self.usage,
            model=self.answered_model,
            provider_state={self.provider: {"reasoning": reasoning}} if reasoning else None,
        )


# -- errors ----------------------------------------------------------------------------------
def _malformed(what: str, provider: str | None, model: str | None) -> FMClientError:
    return ServiceUnavailableError(f"Bedrock returned a malformed response: {what}", provider=provider, model=model)


_RATE_LIMIT = frozenset({"ThrottlingException", "ServiceQuotaExceededException"})
_UNAVAILABLE = frozenset(
    {
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelNotReadyException",
        "ModelStreamErrorException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
_AUTH = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
        "SignatureDoesNotMatch",
    }
)
# Statuses of the modelled exceptions, for errors that arrive inside an event stream (where
# botocore reports no HTTP status of its own).
_STATUS = {
    "AccessDeniedException": 403,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelStreamErrorException": 424,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "ValidationException": 400,
}
# How Bedrock's models word "the prompt does not fit" (Claude, Titan, Llama, Mistral, Nova).
_TOO_LONG = re.compile(
    r"too long|too many input tokens|maximum context length|context window|too large for model|"
    r"input tokens exceeded|exceeds (the )?max(imum)? (input|context|prompt)|expected maxLength",
    re.IGNORECASE,
)
_SAFETY = re.compile(r"content filter|responsible ai polic", re.IGNORECASE)
_BAD_MODEL = re.compile(r"model identifier is invalid|invalid model identifier", re.IGNORECASE)


def _client_error(exc: Any, provider: str | None, model: str | None) -> FMClientError:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    raw_code = str(error.get("Code") or "")
    # In-stream exceptions are named after the stream member: "throttlingException".
    code = raw_code[:1].upper() + raw_code[1:]
    message = str(error.get("Message") or "") or str(exc)
    metadata = response.get("ResponseMetadata") or {}
    headers = metadata.get("HTTPHeaders") or {}
    # In-stream errors carry no HTTP status; the modelled one stands in for it.
    status = metadata.get("HTTPStatusCode") or _STATUS.get(code)
    retry_after = parse_retry_after(headers)
    text = f"{code or 'Error'}: {message}"
    kwargs: dict[str, Any] = {"provider": provider, "model": model, "status_code": status, "retry_after": retry_after}
    if code in _RATE_LIMIT:
        return RateLimitError(text, **kwargs)
    if code in _UNAVAILABLE:
        return ServiceUnavailableError(text, **kwargs)
    if code == "ModelTimeoutException":
        return RequestTimeoutError(text, **kwargs)
    if code == "AccessDeniedException":
        return PermissionDeniedError(text, **kwargs)
    if code == "ResourceNotFoundException":
        return ModelNotFoundError(text, **kwargs)
    if code in _AUTH:
        return AuthenticationError(text, **kwargs)
    if code == "ValidationException":
        if _TOO_LONG.search(message):
            return ContextWindowExceededError(text, **kwargs)
        if _BAD_MODEL.search(message):  # Bedrock answers an unknown model id with a 400
            return ModelNotFoundError(text, **kwargs)
        if _SAFETY.search(message):
            return ContentFilterError(text, **kwargs)
        return BadRequestError(text, **kwargs)
    if code == "ModelErrorException":
        # The model itself failed; its own status says whether a retry can help.
        original = response.get("originalStatusCode")
        if isinstance(original, int) and 400 <= original < 500 and original not in (408, 429):
            if _SAFETY.search(message):
                return ContentFilterError(text, **kwargs)
            return BadRequestError(text, **kwargs)
        return ServiceUnavailableError(text, **kwargs)
    if code == "ConflictException":
        return BadRequestError(text, **kwargs)
    if isinstance(status, int) and status >= 400:
        return error_for_status(status, text, provider=provider, model=model, retry_after=retry_after)
    return FMClientError(text, provider=provider, model=model, status_code=status)


def map_error(exc: BaseException, provider: str | None = "bedrock", model: str | None = None) -> FMClientError:
    """The fmclient error for anything boto3, botocore or urllib3 raised during a call."""
    if isinstance(exc, FMClientError):
        return exc
    try:
        from botocore import eventstream as bev
        from botocore import exceptions as bex
        from botocore.parsers import ResponseParserError
    except ImportError:  # pragma: no cover - boto3 is present whenever a call was made
        return FMClientError(f"{type(exc).__name__}: {exc}", provider=provider, model=model)
    try:
        from urllib3 import exceptions as u3
    except ImportError:  # pragma: no cover
        u3 = None  # type: ignore[assignment]

    where: dict[str, Any] = {"provider": provider, "model": model}
    if isinstance(exc, bex.ClientError):
        return _client_error(exc, provider, model)
    if isinstance(exc, (bex.ReadTimeoutError, bex.ConnectTimeoutError)) or (
        u3 is not None and isinstance(exc, (u3.ReadTimeoutError, u3.ConnectTimeoutError))
    ):
        return RequestTimeoutError(f"Bedrock request timed out: {exc}", **where)
    if isinstance(
        exc,
        (
            bex.EndpointConnectionError,
            bex.ConnectionClosedError,
            bex.ConnectionError,
            bex.ResponseStreamingError,
            bex.HTTPClientError,
            bex.IncompleteReadError,
        ),
    ):
        return APIConnectionError(f"connection to Bedrock failed: {exc}", **where)
    if u3 is not None and isinstance(exc, u3.HTTPError):
        return APIConnectionError(f"connection to Bedrock failed mid-response: {exc}", **where)
    if isinstance(exc, bev.ParserError):
        return APIConnectionError(f"Bedrock event stream is corrupt: {exc}", **where)
    if isinstance(exc, ResponseParserError):
        return _malformed(str(exc), provider, model)
    if isinstance(
        exc,
        (
            bex.NoCredentialsError,
            bex.PartialCredentialsError,
            bex.NoRegionError,
            bex.ProfileNotFound,
            bex.NoAuthTokenError,
            bex.InvalidEndpointConfigurationError,
        ),
    ):
        return ConfigurationError(f"AWS configuration problem: {exc}", **where)
    if isinstance(exc, (bex.CredentialRetrievalError, bex.TokenRetrievalError)):
        return AuthenticationError(f"could not obtain AWS credentials: {exc}", **where)
    if isinstance(exc, (bex.ParamValidationError, bex.ValidationError)):
        return BadRequestError(f"request rejected by botocore before sending: {exc}", **where)
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError, binascii.Error)):
        return _malformed(f"body is not valid JSON: {exc}", provider, model)
    if isinstance(exc, OSError):
        return APIConnectionError(f"connection to Bedrock failed: {exc}", **where)
    return FMClientError(f"unexpected {type(exc).__name__} from boto3: {exc}", **where)


# -- the provider ----------------------------------------------------------------------------
class BedrockProvider(Provider):
    """Amazon Bedrock Runtime through one boto3 client per provider instance."""

    extra = "bedrock"
    option_keys = frozenset({"max_workers", "endpoint_url", "batch_s3_uri", "batch_role_arn"})

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        workers = settings.options.get("max_workers", DEFAULT_MAX_WORKERS)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError(
                f"providers.{settings.name}.max_workers must be a positive integer, got {workers!r}",
                provider=settings.name,
            )
        endpoint = settings.options.get("endpoint_url")
        if endpoint is not None and not isinstance(endpoint, str):
            raise ConfigurationError(f"providers.{settings.name}.endpoint_url must be a string", provider=settings.name)
        self.max_workers: int = workers
        self._endpoint_url: str | None = settings.base_url or endpoint or None
        self._lock = threading.Lock()
        self._client: Any = None

    # -- readiness -------------------------------------------------------------------------
    def capabilities(self, model: str) -> Capabilities:
        # Claude on Bedrock gets Claude's profile, Llama Llama's...; the table narrows each
        # family for what Bedrock itself does not take (toolChoice, streamed tool use...).
        profile = profile_for(model, "bedrock")
        family = model_family(model)
        if family == "embed":
            return profile.restrict(
                embeddings=False,
                reason="the Bedrock adapter makes embeddings with Amazon Titan text embedding models only",
            )
        return profile

    def check_ready(self, model: str) -> None:
        self._get_client()

    def _get_client(self) -> Any:
        client = self._client
        if client is not None:
            return client
        # boto3 sessions are not thread-safe; clients are. Build the one client under a lock.
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        boto3 = import_sdk("boto3", extra=self.extra, provider=self.name)
        install_botocore_log_redaction()
        from botocore import exceptions as bex
        from botocore.config import Config

        settings = self.settings
        if settings.api_key is not None or settings.api_key_env is not None:
            raise ConfigurationError(
                f"provider {self.name!r} does not take api_key / api_key_env: Bedrock authenticates "
                f"through the AWS credential chain, or a Bedrock API key in {BEARER_TOKEN_ENV}",
                provider=self.name,
            )
        # boto3 itself reads only AWS_DEFAULT_REGION; AWS_REGION (what Lambda and the other AWS
        # SDKs set) takes precedence over it, as it does there.
        region = settings.region or os.environ.get("AWS_REGION") or None
        try:
            session = boto3.Session(profile_name=settings.profile, region_name=region)
        except bex.ProfileNotFound as exc:
            raise ConfigurationError(
                f"AWS profile {settings.profile!r} for provider {self.name!r} is not in the AWS config files",
                provider=self.name,
            ) from exc
        if not session.region_name:
            raise ConfigurationError(
                f"no AWS region for provider {self.name!r}: set AWS_REGION (or AWS_DEFAULT_REGION), "
                f'a region in the AWS profile, or region = "..." in [providers.{self.name}]',
                provider=self.name,
            )
        try:
            credentials = session.get_credentials()
        except bex.BotoCoreError as exc:
            raise ConfigurationError(
                f"could not load AWS credentials for provider {self.name!r}: {exc}", provider=self.name
            ) from exc
        if credentials is not None:
            # Keys from a profile file, SSO or a role never pass through the environment: the
            # error text a gateway echoes must still not show them.
            register_secret(credentials.secret_key)
            register_secret(credentials.token)
        if credentials is None and not os.environ.get(BEARER_TOKEN_ENV):
            raise ConfigurationError(
                f"no AWS credentials for provider {self.name!r}: configure the standard AWS credential "
                'chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or profile = "..." in '
                f"[providers.{self.name}], SSO, or an instance/container role), or set {BEARER_TOKEN_ENV}",
                provider=self.name,
            )
        config_args: dict[str, Any] = {
            # fmclient's retry layer is the only one: one attempt per call.
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "max_pool_connections": max(10, self.max_workers),
            "user_agent_extra": "fmclient",
        }
        if settings.timeout is not None:
            config_args["read_timeout"] = settings.timeout
            config_args["connect_timeout"] = min(settings.timeout, 60)
        client = session.client(
            "bedrock-runtime",
            config=Config(**config_args),
            # None lets boto3 apply AWS_ENDPOINT_URL_BEDROCK_RUNTIME / AWS_ENDPOINT_URL.
            endpoint_url=self._endpoint_url,
        )
        client.meta.events.register("before-call.bedrock-runtime", _apply_read_timeout)
        return self._built(client, client.meta.endpoint_url)

    # -- plumbing --------------------------------------------------------------------------
    def _invoke(self, fn: Callable[..., Any], timeout: float | None, **params: Any) -> Any:
        token = _read_timeout.set(timeout)
        try:
            return fn(**params)
        finally:
            _read_timeout.reset(token)

    def _uses_titan_invoke(self, request: Request) -> bool:
        api = _own_option(request, "api")
        if api not in (None, "invoke", "converse"):
            raise BadRequestError(
                f"provider option api must be 'invoke' or 'converse', got {api!r}",
                provider=self.name,
                model=request.model,
            )
        return model_family(request.model) == "titan-text" and api != "converse"

    def _check_chat_model(self, request: Request) -> None:
        family = model_family(request.model)
        if family in ("titan-embed", "embed"):
            raise _refuse(
                f"model {request.model!r} does not support chat completions (it is an embedding model)",
                request.model,
                self.name,
            )

    # -- chat --------------------------------------------------------------------------------
    def _errors(self, model: str) -> MappedErrors:
        return MappedErrors(lambda exc: map_error(exc, self.name, model), provider=self.name, model=model)

    def _titan_invoke_args(self, request: Request) -> dict[str, Any]:
        body, arguments = build_titan_text_body(request, provider=self.name)
        return {
            "modelId": request.model,
            "body": json.dumps(body),
            "contentType": "application/json",
            "accept": "application/json",
            **arguments,
        }

    def complete(self, request: Request) -> Completion:
        self._check_chat_model(request)
        with self._errors(request.model):
            if self._uses_titan_invoke(request):
                arguments = self._titan_invoke_args(request)
                response = self._invoke(self._get_client().invoke_model, request.timeout, **arguments)
                parsed = json.loads(response["body"].read())
                raw = {k: v for k, v in response.items() if k != "body"}
                raw["body"] = parsed
                return parse_titan_text_response(parsed, provider=self.name, model=request.model, raw=raw)
            params = build_converse_params(request, provider=self.name)
            response = self._invoke(self._get_client().converse, request.timeout, **params)
            return parse_converse_response(
                response, provider=self.name, model=request.model, structured_tool=structured_tool_name(request)
            )

    def count_tokens(self, request: Request) -> TokenCount:
        """Bedrock CountTokens over the Converse form of the request (free, and exact)."""
        self._check_chat_model(request)
        if self._uses_titan_invoke(request):
            from fmclient.tokens import estimate

            return estimate(request, "Bedrock CountTokens does not take Titan Text models")
        params = build_converse_params(request, provider=self.name)
        converse = {key: params[key] for key in ("messages", "system", "toolConfig") if key in params}
        with self._errors(request.model):
            response = self._invoke(
                self._get_client().count_tokens, request.timeout, modelId=request.model, input={"converse": converse}
            )
            tokens = response.get("inputTokens")
            if not isinstance(tokens, int) or isinstance(tokens, bool):
                raise _malformed("CountTokens answered without inputTokens", self.name, request.model)
        return TokenCount(tokens, True, "Bedrock CountTokens")

    def stream(self, request: Request) -> Iterator[Chunk]:
        self._check_chat_model(request)
        errors = self._errors(request.model)
        parser: TitanStreamParser | ConverseStreamParser
        # Arguments are built (and bad input refused) now; the request goes at the first next().
        with errors:
            if self._uses_titan_invoke(request):
                arguments = self._titan_invoke_args(request)
                parser = TitanStreamParser(provider=self.name, model=request.model)

                def open_events() -> Any:
                    fn = self._get_client().invoke_model_with_response_stream
                    return self._invoke(fn, request.timeout, **arguments)["body"]
            else:
                params = build_converse_params(request, provider=self.name)
                parser = ConverseStreamParser(
                    provider=self.name, model=request.model, structured_tool=structured_tool_name(request)
                )

                def open_events() -> Any:
                    return self._invoke(self._get_client().converse_stream, request.timeout, **params)["stream"]

        return stream_chunks(open_events, parser.feed, parser.finish, errors)

    # -- embeddings ------------------------------------------------------------------------------
    def _embed_bodies(self, request: EmbedRequest) -> list[dict[str, Any]]:
        if model_family(request.model) != "titan-embed":
            raise _refuse(
                "embeddings on Bedrock are supported for Amazon Titan text embedding and multimodal embedding models "
                "(amazon.titan-embed-text-v1, amazon.titan-embed-text-v2:0, amazon.titan-embed-image-v1)",
                request.model,
                self.name,
            )
        if profile_for(request.model, "bedrock").image_embeddings:
            images = request.images or (None,) * len(request.texts)
            return [
                build_titan_multimodal_embedding_body(
                    text, image, request.provider_options, model=request.model, provider=self.name
                )
                for text, image in zip(request.texts, images, strict=True)
            ]
        if request.images:
            raise _refuse(f"model {request.model!r} does not embed images", request.model, self.name)
        return [
            build_titan_embedding_body(text, request.model, request.provider_options, provider=self.name)
            for text in request.texts
        ]

    def embed_batching(self, model: str) -> EmbedBatching:
        # Titan embeds one text per InvokeModel call: the client fans the texts out, up to
        # max_workers at a time, each under its own retries.
        if model_family(model) == "titan-embed":
            return EmbedBatching(max_texts=1, max_concurrency=self.max_workers)
        return EmbedBatching()

    def _embed_one(
        self, client: Any, model: str, body: Mapping[str, Any], timeout: float | None
    ) -> tuple[list[float], int]:
        """One InvokeModel call. Every exception leaves it mapped."""
        with self._errors(model):
            response = self._invoke(
                client.invoke_model,
                timeout,
                modelId=model,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            )
            parsed = json.loads(response["body"].read())
            return parse_titan_embedding(parsed, provider=self.name, model=model)

    def embed(self, request: EmbedRequest) -> Embeddings:
        """One InvokeModel call per text, in order (the client gives one text at a time and fans
        out)."""
        bodies = self._embed_bodies(request)
        client = self._get_client()
        deadline = None if request.timeout is None else time.monotonic() + request.timeout
        results: list[tuple[list[float], int]] = []
        for body in bodies:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise RequestTimeoutError(
                    "the embedding call ran out of time before this text was sent",
                    provider=self.name,
                    model=request.model,
                )
            results.append(self._embed_one(client, request.model, body, timeout))
        return Embeddings(
            vectors=[vector for vector, _ in results],
            usage=Usage(input_tokens=sum(tokens for _, tokens in results)),
            model=request.model,
            provider=self.name,
            raw=None,
        )

    # -- image generation ------------------------------------------------------------------------
    def generate_image(self, request: ImageRequest) -> Images:
        """One InvokeModel call (TEXT_IMAGE) to Titan Image Generator or Nova Canvas."""
        if not profile_for(request.model, "bedrock").image_generation:
            raise _refuse(f"model {request.model!r} does not generate images", request.model, self.name)
        body = build_image_body(request, provider=self.name)
        with self._errors(request.model):
            response = self._invoke(
                self._get_client().invoke_model,
                request.timeout,
                modelId=request.model,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            )
            parsed = json.loads(response["body"].read())
            raw = {k: v for k, v in response.items() if k != "body"}
            return parse_image_response(parsed, provider=self.name, model=request.model, raw=raw)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _apply_read_timeout(context: dict[str, Any], **kwargs: Any) -> None:
    """botocore ``before-call`` hook: the per-attempt read timeout of the current call."""
    timeout = _read_timeout.get()
    if timeout is not None:
        # botocore's HTTP layer reads this per request; keep a floor so 0 never means "no timeout".
        context["read_timeout"] = max(timeout, 0.001)


# -- botocore's own DEBUG logging -------------------------------------------------------------------
# botocore logs the canonical request it signs and the prepared request, headers included: the
# session token (X-Amz-Security-Token), a Bedrock API key (Authorization: Bearer) and the signature
# show there at DEBUG. A filter on each of its loggers rewrites such records before any handler sees
# them. Filters on a logger do not apply to records propagated from its children, so it goes on every
# botocore/boto3 logger that exists once boto3 is imported, and on the ones that log requests.
_SENSITIVE_LOG_VALUES = re.compile(
    r"(?i)(x-amz-security-token['\"]?\s*[:=,]\s*b?['\"]?|bearer\s+|signature=|x-amz-signature=)"
    r"([A-Za-z0-9+/=%._~-]{8,})"
)
_BOTOCORE_REQUEST_LOGGERS = (
    "botocore.auth",
    "botocore.endpoint",
    "botocore.awsrequest",
    "botocore.httpsession",
    "botocore.hooks",
    "botocore.parsers",
    "botocore.retryhandler",
    "botocore.credentials",
    "botocore.utils",
    "botocore.client",
    "urllib3.connectionpool",
)


class _BotocoreRedaction:
    """A logging filter: any credential in a botocore record's text is replaced before it is emitted."""

    def filter(self, record: Any) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a record that cannot be formatted is left to logging's own error path
        redacted = redact(_SENSITIVE_LOG_VALUES.sub(lambda m: m.group(1) + "**********", message))
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_REDACTION = _BotocoreRedaction()


def install_botocore_log_redaction() -> None:
    """Put the redaction filter on botocore's and boto3's loggers (idempotent)."""
    import logging

    names = {
        name for name in logging.root.manager.loggerDict if name.split(".")[0] in ("botocore", "boto3", "s3transfer")
    }
    for name in (*_BOTOCORE_REQUEST_LOGGERS, *sorted(names), "botocore", "boto3"):
        logger = logging.getLogger(name)
        if _REDACTION not in logger.filters:
            logger.addFilter(_REDACTION)
