"""Anthropic adapter: Claude over the Messages API, through the official ``anthropic`` SDK.

Translation is kept in pure module-level functions (:func:`build_params`,
:func:`parse_response`, :class:`StreamState` / :func:`parse_stream_event`, :func:`map_error`);
:class:`AnthropicProvider` only owns the SDK clients and calls them.

Choices worth knowing:

* **max_tokens** — the Messages API requires one. When the request sets none, ``4096``
  (:data:`DEFAULT_MAX_TOKENS`) is sent.
* **temperature / top_p** — the installed SDK 2.x sends ``anthropic-version: 2026-10-21``, under
  which the API rejects every sampling parameter with a 400, so the capabilities say
  ``temperature=False, top_p=False`` and the client refuses them before sending (older SDKs,
  which send ``2023-06-01``, get them passed through). See :func:`sdk_accepts_sampling`.
* **Structured output** — native: ``output_config.format = {"type": "json_schema", ...}``. The
  schema goes through the SDK's own ``transform_schema`` (the one ``messages.parse`` uses): every
  object gets ``additionalProperties: false`` and keywords the API does not enforce move into
  descriptions. The client validates the reply against the caller's original schema. Model
  families that predate structured outputs (Claude 2/3, Opus 4.0, Sonnet 4.0) are refused
  before sending. What each Claude family accepts is its profile (:mod:`fmclient.profiles`),
  shared with Claude on Bedrock; this adapter only narrows it for the SDK's API version.
* **Thinking** — when a reply holds thinking / redacted_thinking (or server-tool) blocks, the
  whole content list is kept, exactly as received, in ``message.provider_state["<provider
  name>"]["content"]`` and replayed verbatim (same blocks, same order, signatures intact) when
  that assistant message is part of a later request. ``reasoning=`` enables it: on families
  with adaptive thinking (Claude 4.6 and later, their profile's ``adaptive_thinking``) an effort is
  ``thinking={"type": "adaptive"}`` with ``output_config={"effort": ...}``; otherwise, and for a
  token budget where the family still takes one, ``thinking={"type": "enabled", "budget_tokens":
  N}`` (an effort through :data:`~fmclient.providers.shared_io.THINKING_BUDGETS`; ``max_tokens``
  defaults to the budget plus 4096). The thinking text is ``Completion.reasoning`` and streams as
  ``Chunk.reasoning``.
* **Finish reasons** — ``end_turn``/``stop_sequence`` -> stop, ``max_tokens`` and
  ``model_context_window_exceeded`` -> length, ``tool_use`` -> tool_calls, ``refusal`` ->
  content_filter, anything else (``pause_turn``...) -> other.
* **Usage** — ``input_tokens`` = ``input_tokens + cache_creation_input_tokens +
  cache_read_input_tokens``; ``cached_input_tokens`` = ``cache_read_input_tokens``;
  ``cache_write_tokens`` = ``cache_creation_input_tokens`` (every write), of which
  ``cache_write_1h_tokens`` = ``cache_creation.ephemeral_1h_input_tokens`` (one-hour writes,
  priced apart). Thinking tokens are in ``output_tokens``; ``reasoning_tokens`` =
  ``output_tokens_details.thinking_tokens`` where the API reports it. ``usage.service_tier``
  (``priority``, ``batch``) and ``usage.speed`` (``fast``) are carried for pricing. A stream
  reads them from ``message_start`` and the final ``message_delta`` together.
* **Credentials** — the config's ``api_key`` / ``api_key_env``, else ``ANTHROPIC_API_KEY``. The
  SDK's other standard sources still work when no key is found: ``ANTHROPIC_AUTH_TOKEN``,
  ``ANTHROPIC_PROFILE`` or the provider's ``profile`` setting (an SDK credentials profile).
* **Base URL** — the config's ``base_url``; otherwise the SDK reads ``ANTHROPIC_BASE_URL``.
* **Errors** — a malformed response (body that is not JSON, or JSON that is not a Message, or an
  undecodable stream event) raises :class:`~fmclient.errors.ServiceUnavailableError`
  (retryable). A stream that ends before ``message_stop`` raises
  :class:`~fmclient.errors.APIConnectionError`. An ``error`` event inside a stream is mapped
  like the HTTP error of the same ``error.type`` (``overloaded_error`` is a 529).
* **Long non-streamed calls** — the SDK refuses a non-streamed request it expects to take more
  than ten minutes (a large ``max_tokens`` and no timeout). ``complete`` then streams the same
  request and assembles the reply, which is what Anthropic recommends.
* **Raw responses** — calls go through the SDK's own request path (``with_raw_response``: its
  headers, timeouts and errors) but answers are parsed from the JSON body, skipping the pydantic
  models the SDK would build only for fmclient to read back. ``Completion.raw`` is therefore the
  reply's JSON body as a dict, every field as the API sent it
  (``anthropic.types.Message.model_validate(raw)`` rebuilds the SDK object); stream events are
  parsed as dicts too. A call that no tracing would see (sync or async, streamed or not) posts
  its body with the SDK client's own ``post`` (``providers/_sdk_post.py``), skipping only the span
  attributes ``messages.create`` computes per call; the request on the wire is the same.
* **Async transport** — async calls use the SDK's ``DefaultAioHttpClient`` when ``aiohttp`` is
  installed (``pip install "fmclient[fast]"``): about twice the throughput of the default httpx
  pool under concurrency, with the same errors, timeouts and streaming. The provider setting
  ``async_transport = "httpx"`` keeps the SDK default (``"aiohttp"`` requires aiohttp; ``"auto"``
  is the default). One async client is kept per event loop; those of closed loops are released.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from fmclient.errors import (
    APIConnectionError,
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
from fmclient.providers._async_clients import (
    LoopClients,
    aiohttp_client,
    aiohttp_installed,
    async_transport_setting,
    parsed,
)
from fmclient.providers._sdk_post import anthropic_post_suits, message_post, post_message_raw
from fmclient.providers.base import Capabilities, Provider, ProviderSettings, import_sdk
from fmclient.providers.shared_io import (
    MappedErrors,
    astream_chunks,
    check_image_url,
    citation,
    claude_reasoning,
    media_in,
    merge_provider_options,
    rate_limit_headers,
    stream_chunks,
    tool_arguments,
)
from fmclient.secret import redact, register_secret
from fmclient.types import (
    CachePoint,
    Chunk,
    Citation,
    Completion,
    DocumentPart,
    FinishReason,
    ImagePart,
    Message,
    Request,
    TextPart,
    TokenCount,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    _sniff_image,
)

if TYPE_CHECKING:
    from anthropic import Anthropic, AsyncAnthropic

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_MAX_TOKENS",
    "SAMPLING_REFUSED_REASON",
    "AnthropicProvider",
    "MalformedResponse",
    "StreamState",
    "build_params",
    "finish_reason",
    "map_error",
    "parse_response",
    "parse_stream_event",
    "sdk_accepts_sampling",
    "usage_from",
]

#: Sent when the request sets no ``max_tokens`` (the Messages API requires one).
DEFAULT_MAX_TOKENS = 4096
#: The SDK's standard key variable.
API_KEY_ENV = "ANTHROPIC_API_KEY"
# Other credential sources the SDK resolves itself when no key is passed to it.
_SDK_CREDENTIAL_ENV = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE")

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The HTTP status each Anthropic ``error.type`` travels with; a stream's ``error`` event
# arrives on a 200 response, so its status is recovered from the type.
_STATUS_FOR_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# How the API words a prompt that does not fit ("prompt is too long: 210000 tokens > 200000
# maximum", "input length and `max_tokens` exceed context limit: ...").
_CONTEXT_WINDOW_MARKERS = ("prompt is too long", "exceed context limit", "context window")
_CONTENT_FILTER_MARKERS = ("content filtering", "content policy", "output blocked")

# Content blocks that need nothing but text and tool calls to be rebuilt; any other block
# (thinking, redacted_thinking, server tool use/results) makes the reply's content opaque state.
_REBUILDABLE_BLOCKS = frozenset({"text", "tool_use"})


class MalformedResponse(Exception):
    """The provider answered with something that is not a well-formed Messages API reply."""


# -- request translation ---------------------------------------------------------------------
def build_params(request: Request, provider: str = "anthropic") -> dict[str, Any]:
    """The keyword arguments of ``client.messages.create`` for ``request`` (without ``stream``).

    ``provider`` is the provider name whose ``provider_state`` entries are replayed.
    """
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": _messages(request, provider),
    }
    if request.system:
        params["system"] = request.system
        if request.system_cache is not None:
            params["system"] = _with_cache_control(request.system, request.system_cache)
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    if request.tools:
        params["tools"] = [_tool(t) for t in request.tools]
        if request.tool_choice is not None:
            params["tool_choice"] = _tool_choice(request.tool_choice)
    elif request.tool_choice not in (None, "auto", "none"):
        # Forcing a tool without offering any cannot be honoured; say so rather than drop it.
        raise BadRequestError(
            f"tool_choice={request.tool_choice!r} needs tools", provider=provider, model=request.model
        )
    if request.reasoning is not None:
        if "thinking" in request.provider_options:
            raise BadRequestError(
                "pass reasoning= or provider_options thinking, not both", provider=provider, model=request.model
            )
        profile = profile_for(request.model, "anthropic")
        adaptive = profile.adaptive_thinking
        if adaptive and "effort" in (request.provider_options.get("output_config") or {}):
            raise BadRequestError(
                "pass reasoning= or output_config's effort, not both", provider=provider, model=request.model
            )
        fields, max_tokens = claude_reasoning(
            request.reasoning,
            request.max_tokens,
            DEFAULT_MAX_TOKENS,
            adaptive=adaptive,
            provider=provider,
            model=request.model,
            output_limit=profile.max_output_tokens,
        )
        params.update(fields)
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
    if request.response_format is not None:
        # Next to an effort from reasoning=, if any.
        params["output_config"] = {
            **params.get("output_config", {}),
            "format": {"type": "json_schema", "schema": _output_schema(request.response_format.schema)},
        }
    # e.g. output_config={"effort": "low"} joins the response format; a value an argument set
    # (max_tokens=, a format, an effort) is not replaced. Only an unset max_tokens is a default.
    return merge_provider_options(
        params,
        request.provider_options,
        provider=provider,
        model=request.model,
        defaults=("max_tokens",) if request.max_tokens is None else (),
    )


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": dict(tool.parameters)}
    if tool.description:
        out["description"] = tool.description
    return out


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _output_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema in the strict dialect the API accepts, via the SDK's own transform."""
    plain = copy.deepcopy(dict(schema))
    try:
        from anthropic import transform_schema
    except ImportError:  # pragma: no cover - the adapter cannot run without the SDK anyway
        return plain
    try:
        return transform_schema(plain)
    except (ValueError, TypeError, KeyError, AssertionError):
        # A schema the transform does not understand (e.g. a list of types) is sent as given;
        # the API judges it, and a 400 says what it refused.
        return plain


def _messages(request: Request, provider: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pending_results: list[dict[str, Any]] = []

    def flush_results() -> None:
        if pending_results:
            out.append({"role": "user", "content": list(pending_results)})
            pending_results.clear()

    for index, message in enumerate(request.messages):
        if message.role == "tool":
            if not message.tool_call_id:
                raise BadRequestError(
                    f"messages[{index}]: a tool result needs the tool_call_id it answers",
                    provider=provider,
                    model=request.model,
                )
            # Consecutive results of one assistant turn travel together in one user turn; a
            # result made of parts keeps its images (tool_result content takes image blocks).
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": _user_content(message, index, request.model, provider),
            }
            if message.is_error:
                result["is_error"] = True
            if message.cache is not None:
                result["cache_control"] = _cache_control(message.cache)
            pending_results.append(result)
            continue
        flush_results()
        if message.role == "user":
            content = _user_content(message, index, request.model, provider)
            out.append({"role": "user", "content": _with_cache_control(content, message.cache)})
        elif message.role == "assistant":
            content = _assistant_content(message, index, request.model, provider)
            out.append({"role": "assistant", "content": _with_cache_control(content, message.cache)})
        else:
            raise BadRequestError(
                f"messages[{index}]: role {message.role!r} cannot appear in the conversation "
                "(system instructions go in Request.system)",
                provider=provider,
                model=request.model,
            )
    flush_results()
    return out


def _cache_control(point: CachePoint) -> dict[str, Any]:
    control: dict[str, Any] = {"type": "ephemeral"}
    if point.ttl is not None:
        control["ttl"] = point.ttl
    return control


def _with_cache_control(content: str | list[dict[str, Any]], point: CachePoint | None) -> str | list[dict[str, Any]]:
    """``content`` with a cache breakpoint on its last block (text becomes one text block)."""
    if point is None:
        return content
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    if not blocks:
        return content  # nothing to mark; an empty turn is the API's to refuse
    blocks[-1] = {**blocks[-1], "cache_control": _cache_control(point)}
    return blocks


def _user_content(message: Message, index: int, model: str, provider: str) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part, index, model, provider))
        elif isinstance(part, DocumentPart):
            blocks.append(_document_block(part, index, model, provider))
        else:
            raise UnsupportedFeatureError(
                f"messages[{index}]: the Messages API takes no {part.type} input", provider=provider, model=model
            )
    return blocks


def _document_block(part: DocumentPart, index: int, model: str, provider: str) -> dict[str, Any]:
    """A ``document`` block: a PDF (base64 or URL) or text (plain-text source: CSV, Markdown and
    HTML are text, sent as such). Office files are refused here: the Messages API has no source
    for them (Bedrock's Converse does)."""
    media_type = part.media_type
    source: dict[str, Any]
    if part.url is not None:
        check_image_url(part, ("https://", "http://"), host="Anthropic", provider=provider, model=model)
        if media_type not in (None, "application/pdf"):
            raise UnsupportedFeatureError(
                f"messages[{index}]: Anthropic fetches PDF documents from a URL, not {media_type}: pass the bytes",
                provider=provider,
                model=model,
            )
        source = {"type": "url", "url": part.url}
    elif media_type == "application/pdf":
        source = {"type": "base64", "media_type": "application/pdf", "data": part.base64_data}
    elif media_type is not None and media_type.startswith("text/") and part.data is not None:
        try:
            text = part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedFeatureError(
                f"messages[{index}]: a {media_type} document must be UTF-8 text", provider=provider, model=model
            ) from None
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        raise UnsupportedFeatureError(
            f"messages[{index}]: Anthropic's document blocks take PDF and text, not {media_type}",
            provider=provider,
            model=model,
        )
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.name:
        block["title"] = part.name
    if part.citations:
        block["citations"] = {"enabled": True}
    return block


def _image_block(part: ImagePart, index: int, model: str, provider: str) -> dict[str, Any]:
    if part.url is not None:
        # Claude fetches http(s) URLs; a gs:// or s3:// URI is refused before sending.
        check_image_url(part, ("https://", "http://"), host="Anthropic", provider=provider, model=model)
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    if part.data is None:
        raise BadRequestError(f"messages[{index}]: image has neither data nor url", provider=provider, model=model)
    media_type = part.media_type
    if media_type is None:
        try:
            media_type = _sniff_image(part.data, f"messages[{index}] image")
        except ValueError as exc:
            raise BadRequestError(str(exc), provider=provider, model=model) from None
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": part.base64_data}}


def _assistant_content(message: Message, index: int, model: str, provider: str) -> str | list[dict[str, Any]]:
    state = (message.provider_state or {}).get(provider)
    if isinstance(state, Mapping) and isinstance(state.get("content"), list):
        # Thinking signatures are checked by the API: send the blocks back exactly as received.
        replayed: list[dict[str, Any]] = copy.deepcopy(state["content"])
        return replayed
    kind = media_in(message)
    if kind is not None:
        raise UnsupportedFeatureError(
            f"messages[{index}]: Anthropic accepts {'images' if kind == 'image' else kind} in user turns only",
            provider=provider,
            model=model,
        )
    if not message.tool_calls:
        return message.text
    blocks: list[dict[str, Any]] = []
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)})
    return blocks


# -- response translation --------------------------------------------------------------------
def _as_dict(obj: Any, what: str) -> dict[str, Any]:
    """A plain dict of a wire object: SDK models give their fields exactly as received."""
    if type(obj) is dict:  # the parsed JSON itself: read, never changed, so no copy is needed
        return obj
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, dict):
            return data
    raise MalformedResponse(f"{what} is not a JSON object: {str(obj)[:200]!r}")


def finish_reason(stop_reason: str | None) -> FinishReason:
    return _FINISH.get(stop_reason or "", "other")


def usage_from(data: Mapping[str, Any] | None) -> Usage:
    """fmclient usage from Anthropic's: cache reads and writes are input tokens too."""
    get = (data or {}).get
    # The nested breakdowns are read only when present (most replies have none): this runs per call.
    by_ttl = get("cache_creation")
    one_hour = five_minutes = thinking = 0
    if by_ttl:
        by_ttl = _plain_mapping(by_ttl)
        one_hour = _int(by_ttl.get("ephemeral_1h_input_tokens"))
        five_minutes = _int(by_ttl.get("ephemeral_5m_input_tokens"))
    details = get("output_tokens_details")
    if details:
        thinking = _int(_plain_mapping(details).get("thinking_tokens"))
    # The total is the authority; the TTL breakdown only says which part is one-hour.
    cache_write = _int(get("cache_creation_input_tokens")) or one_hour + five_minutes
    cache_read = _int(get("cache_read_input_tokens"))
    output = _int(get("output_tokens"))
    return Usage(
        input_tokens=_int(get("input_tokens")) + cache_write + cache_read,
        output_tokens=output,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=min(thinking, output),
        cache_write_1h_tokens=min(one_hour, cache_write),
        service_tier=price_modifier(get("service_tier")),
        speed=price_modifier(get("speed")),
    )


def _plain_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _token_count(response: Any) -> TokenCount:
    tokens = _mapping(response).get("input_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        raise MalformedResponse(f"count_tokens answered without input_tokens: {str(response)[:200]!r}")
    return TokenCount(tokens, True, "Anthropic messages.count_tokens")


def _int(value: Any) -> int:
    return value if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)) else 0


def _content_result(blocks: list[dict[str, Any]], provider: str) -> tuple[str, list[ToolCall], dict[str, Any] | None]:
    """Text, tool calls and the opaque state to keep, from a reply's content blocks."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            arguments = block.get("input")
            if not isinstance(arguments, Mapping):
                raise MalformedResponse(f"tool_use block {block.get('id')!r} has no input object")
            calls.append(
                ToolCall(id=str(block.get("id") or ""), name=str(block.get("name") or ""), arguments=dict(arguments))
            )
    state = None
    if any(block.get("type") not in _REBUILDABLE_BLOCKS for block in blocks):
        state = {provider: {"content": copy.deepcopy(blocks)}}
    return "".join(texts), calls, state


# Anthropic's citation types and what their start/end count (end exclusive as the API gives it).
_CITATION_LOCATIONS: dict[str, tuple[Literal["page", "char", "chunk"], str, str]] = {
    "char_location": ("char", "start_char_index", "end_char_index"),
    "page_location": ("page", "start_page_number", "end_page_number"),
    "content_block_location": ("chunk", "start_block_index", "end_block_index"),
}


def _block_citations(block: Mapping[str, Any], answer: tuple[int, int]) -> list[Citation]:
    """The citations of one text block; ``answer`` is the block's place in the answer text."""
    found: list[Citation] = []
    for raw in block.get("citations") or ():
        if not isinstance(raw, Mapping):
            continue
        kind = _CITATION_LOCATIONS.get(str(raw.get("type")))
        found.append(
            citation(
                raw.get("cited_text"),
                document_index=raw.get("document_index"),
                document_name=raw.get("document_title") or raw.get("title") or raw.get("url"),
                location=kind[0] if kind else None,
                start=raw.get(kind[1]) if kind else None,
                end=raw.get(kind[2]) if kind else None,
                answer=answer,
            )
        )
    return found


def citations_from(blocks: list[dict[str, Any]]) -> list[Citation]:
    """Every citation of a reply's text blocks, each with the span of the answer it supports."""
    found: list[Citation] = []
    offset = 0
    for block in blocks:
        if block.get("type") != "text":
            continue
        length = len(str(block.get("text") or ""))
        found += _block_citations(block, (offset, offset + length))
        offset += length
    return found


def parse_response(response: Any, *, provider: str = "anthropic", model: str = "") -> Completion:
    """A Completion from a Messages API reply (SDK ``Message`` or its JSON dict).

    Raises :class:`MalformedResponse` when the reply is not a message.
    """
    data = _as_dict(response, "the response")
    content = data.get("content")
    if data.get("type") not in (None, "message") or not isinstance(content, list):
        raise MalformedResponse(f"the response is not a message: {json.dumps(data, default=str)[:200]}")
    blocks = [_as_dict(block, "a content block") for block in content]
    text, calls, state = _content_result(blocks, provider)
    thinking = "".join(str(b.get("thinking") or "") for b in blocks if b.get("type") == "thinking")
    usage = data.get("usage")
    return Completion(
        text=text,
        finish_reason=finish_reason(data.get("stop_reason")),
        usage=usage_from(usage if isinstance(usage, Mapping) else None),
        model=str(data.get("model") or model),
        provider=provider,
        tool_calls=calls,
        message=Message(role="assistant", content=text, tool_calls=tuple(calls), provider_state=state),
        raw=response,
        response_id=data.get("id") if isinstance(data.get("id"), str) else None,
        reasoning=thinking or None,
        citations=citations_from(blocks),
    )


def _request_id(raw: Any) -> str | None:
    """The ``request-id`` response header, from the SDK's raw response."""
    found = getattr(raw, "request_id", None)
    return found if isinstance(found, str) and found else None


@dataclass
class StreamState:
    """What a stream has said so far; :func:`parse_stream_event` updates it event by event."""

    provider: str = "anthropic"
    model: str = ""
    started: bool = False
    finished: bool = False
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    text: str = ""
    #: the argument text of tool calls that is not a JSON object (cut off by max_tokens), by id
    raw_arguments: dict[str, str] = field(default_factory=dict)
    _json: dict[int, list[str]] = field(default_factory=dict)
    _tool_index: dict[int, int] = field(default_factory=dict)

    @property
    def content(self) -> list[dict[str, Any]]:
        return [self.blocks[i] for i in sorted(self.blocks)]

    def message(self) -> dict[str, Any]:
        """The reply as a Messages API message dict (what a non-streamed call returns)."""
        return {
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content,
            "stop_reason": self.stop_reason,
            "usage": dict(self.usage),
        }


def parse_stream_event(event: Any, state: StreamState) -> Chunk | None:
    """Fold one stream event into ``state``; return the chunk it produces for the caller, if any.

    Text deltas become text chunks, client tool calls become :class:`ToolCallDelta` s, thinking
    is kept in ``state`` only, and ``message_stop`` yields the final chunk (finish reason,
    usage, model and the provider state). ``ping`` and unknown event types yield nothing.
    """
    # Events decoded from the wire are dicts already, read here without being copied.
    data = event if type(event) is dict else _as_dict(event, "a stream event")
    kind = data.get("type")
    if kind == "message_start":
        _on_message_start(data, state)
        return None
    if kind not in _EVENT_HANDLERS:
        return None
    if not state.started:
        raise MalformedResponse(f"stream event {kind!r} arrived before message_start")
    return _EVENT_HANDLERS[kind](data, state)


def _on_message_start(data: Mapping[str, Any], state: StreamState) -> None:
    message = _mapping(data.get("message"))
    state.started = True
    state.model = str(message.get("model") or state.model)
    state.usage.update({k: v for k, v in _mapping(message.get("usage")).items() if v is not None})


def _on_block_start(data: Mapping[str, Any], state: StreamState) -> Chunk | None:
    index = _index(data)
    # A copy: the stream's deltas are added to it, and the event it came from stays as received.
    block = dict(_as_dict(data.get("content_block"), "a content block"))
    state.blocks[index] = block
    if block.get("type") == "tool_use":
        ordinal = state._tool_index[index] = len(state._tool_index)
        initial = block.get("input")
        # The API starts tool_use blocks with an empty input and streams it as JSON fragments;
        # a start that already carries the input passes it on whole.
        arguments = json.dumps(initial) if isinstance(initial, Mapping) and initial else ""
        if arguments:
            state._json.setdefault(index, []).append(arguments)
        call = ToolCallDelta(
            index=ordinal, id=str(block.get("id") or ""), name=str(block.get("name") or ""), arguments=arguments
        )
        return Chunk(tool_calls=(call,))
    if block.get("type") == "text" and block.get("text"):
        state.text += str(block["text"])
        return Chunk(text=str(block["text"]))
    return None


def _on_block_delta(data: Mapping[str, Any], state: StreamState) -> Chunk | None:
    index = _index(data)
    block = state.blocks.get(index)
    if block is None:
        raise MalformedResponse(f"content_block_delta for block {index} before its content_block_start")
    delta = _mapping(data.get("delta"))
    delta_type = delta.get("type")
    if delta_type == "text_delta":
        piece = str(delta.get("text") or "")
        block["text"] = str(block.get("text") or "") + piece
        state.text += piece
        return Chunk(text=piece) if piece else None
    if delta_type == "input_json_delta":
        fragment = str(delta.get("partial_json") or "")
        state._json.setdefault(index, []).append(fragment)
        ordinal = state._tool_index.get(index)
        if ordinal is not None and fragment:
            return Chunk(tool_calls=(ToolCallDelta(index=ordinal, arguments=fragment),))
    elif delta_type == "thinking_delta":
        thought = str(delta.get("thinking") or "")
        block["thinking"] = str(block.get("thinking") or "") + thought
        return Chunk(reasoning=thought) if thought else None
    elif delta_type == "signature_delta":
        block["signature"] = str(delta.get("signature") or "")
    elif delta_type == "citations_delta":
        block["citations"] = [*(block.get("citations") or []), delta.get("citation")]
    return None


def _on_block_stop(data: Mapping[str, Any], state: StreamState) -> Chunk | None:
    index = _index(data)
    block = state.blocks.get(index)
    if block is not None and block.get("type") == "text" and block.get("citations"):
        # A block's citations go out once it is whole: then its place in the answer is known,
        # and the chunks join into what a non-streamed reply gives.
        end = len(state.text)
        return Chunk(citations=tuple(_block_citations(block, (end - len(str(block.get("text") or "")), end))))
    if block is None or index not in state._json:
        return None
    raw = "".join(state._json[index])
    try:
        value = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nested deeper than the stack
        return None  # judged at message_stop, once the stop reason says whether it was cut off
    if isinstance(value, dict):
        block["input"] = value
        del state._json[index]
    return None


def _on_message_delta(data: Mapping[str, Any], state: StreamState) -> None:
    delta = _mapping(data.get("delta"))
    if delta.get("stop_reason") is not None:
        state.stop_reason = str(delta["stop_reason"])
    # Counts on message_delta are cumulative: they replace, and absent ones keep their value.
    state.usage.update({k: v for k, v in _mapping(data.get("usage")).items() if v is not None})
    return None


def _on_message_stop(data: Mapping[str, Any], state: StreamState) -> Chunk:
    state.finished = True
    truncated = finish_reason(state.stop_reason) == "length"
    for index, fragments in sorted(state._json.items()):
        block = state.blocks[index]
        block_id = str(block.get("id") or "")
        block["input"], raw = tool_arguments(
            "".join(fragments),
            truncated=truncated,
            name=str(block.get("name") or ""),
            call_id=block_id,
            provider=state.provider,
            model=state.model,
        )
        if raw is not None:
            state.raw_arguments[block_id] = raw
    state._json.clear()
    _, _, provider_state = _content_result(state.content, state.provider)
    return Chunk(
        finish_reason=finish_reason(state.stop_reason),
        usage=usage_from(state.usage),
        model=state.model or None,
        provider_state=provider_state,
    )


_EVENT_HANDLERS: dict[str, Callable[[Mapping[str, Any], StreamState], Chunk | None]] = {
    "content_block_start": _on_block_start,
    "content_block_delta": _on_block_delta,
    "content_block_stop": _on_block_stop,
    "message_delta": _on_message_delta,
    "message_stop": _on_message_stop,
}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _index(data: Mapping[str, Any]) -> int:
    index = data.get("index")
    if not isinstance(index, int):
        raise MalformedResponse(f"stream event {data.get('type')!r} has no block index")
    return index


# -- errors ----------------------------------------------------------------------------------
def _connection_failed(exc: BaseException) -> bool:
    """A refused or reset connection that the SDK reports as a timeout.

    The aiohttp transport of anthropic SDKs before 2.10 maps every aiohttp connection error to
    ``ConnectTimeout``; the OS error underneath says what really happened.
    """
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, ConnectionError):
            return True
        cause = cause.__cause__
    return False


def map_error(exc: BaseException, provider: str = "anthropic", model: str | None = None) -> FMClientError:
    """The fmclient error for anything the SDK (or its HTTP layer) raised."""
    if isinstance(exc, FMClientError):
        return exc
    if isinstance(exc, MalformedResponse):
        return ServiceUnavailableError(
            f"malformed response from Anthropic: {redact(str(exc))}", provider=provider, model=model
        )
    try:
        import anthropic
    except ImportError:  # pragma: no cover - exceptions only come from the SDK
        anthropic = None  # type: ignore[assignment]
    if anthropic is not None:
        if isinstance(exc, anthropic.APIStatusError):
            return _status_error(exc, provider, model)
        if isinstance(exc, anthropic.APITimeoutError) and not _connection_failed(exc):
            return RequestTimeoutError(f"request timed out: {exc.message}", provider=provider, model=model)
        if isinstance(exc, anthropic.APIResponseValidationError):
            return ServiceUnavailableError(
                f"malformed response from Anthropic: {redact(exc.message)}",
                provider=provider,
                model=model,
                status_code=exc.status_code,
            )
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__
            detail = f"{exc.message} ({type(cause).__name__}: {cause})" if cause else exc.message
            return APIConnectionError(redact(detail), provider=provider, model=model)
        if isinstance(exc, anthropic.CredentialsError):
            return ConfigurationError(f"Anthropic credentials: {redact(str(exc))}", provider=provider, model=model)
        if isinstance(exc, anthropic.AnthropicError):
            return FMClientError(f"Anthropic SDK error: {redact(str(exc))}", provider=provider, model=model)
    # The SDK reads a stream's body itself, so transport failures mid-stream surface raw, from
    # httpx2 (SDK 2.x) or httpx (older SDKs); whichever raised is already imported.
    for name in ("httpx2", "httpx"):
        http = sys.modules.get(name)
        if http is None:
            continue
        if isinstance(exc, http.TimeoutException):
            return RequestTimeoutError(f"stream timed out: {exc}", provider=provider, model=model)
        if isinstance(exc, http.HTTPError):
            return APIConnectionError(
                f"connection broke: {type(exc).__name__}: {redact(str(exc))}", provider=provider, model=model
            )
    # The aiohttp transport translates its errors to httpx ones; any it does not know arrive as is.
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        return APIConnectionError(
            f"connection broke: {type(exc).__name__}: {redact(str(exc))}", provider=provider, model=model
        )
    if isinstance(exc, json.JSONDecodeError):
        return ServiceUnavailableError(
            f"malformed response from Anthropic: the body is not valid JSON ({exc})", provider=provider, model=model
        )
    if isinstance(exc, (ConnectionError, TimeoutError)):
        cls = RequestTimeoutError if isinstance(exc, TimeoutError) else APIConnectionError
        return cls(f"{type(exc).__name__}: {exc}", provider=provider, model=model)
    return FMClientError(
        f"unexpected error from the Anthropic SDK: {type(exc).__name__}: {redact(str(exc))}",
        provider=provider,
        model=model,
    )


def _status_error(exc: Any, provider: str, model: str | None) -> FMClientError:
    error = _mapping(_mapping(exc.body).get("error"))
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    api_message = error.get("message") if isinstance(error.get("message"), str) else None
    status = int(exc.status_code)
    if status < 400:
        # An ``error`` event inside a 200 stream: use the status its type travels with.
        status = _STATUS_FOR_ERROR_TYPE.get(error_type or "", 500)
    message = redact(api_message or str(exc.message))
    if error_type:
        message = f"{error_type}: {message}"
    try:
        headers = dict(exc.response.headers.items())
    except AttributeError:
        headers = {}
    mapped = error_for_status(status, message, provider=provider, model=model, retry_after=parse_retry_after(headers))
    lowered = (api_message or "").lower()
    refined: type[FMClientError] | None = None
    if status in (400, 413) and any(marker in lowered for marker in _CONTEXT_WINDOW_MARKERS):
        refined = ContextWindowExceededError
    elif status == 400 and any(marker in lowered for marker in _CONTENT_FILTER_MARKERS):
        refined = ContentFilterError
    elif error_type == "overloaded_error" and not isinstance(mapped, ServiceUnavailableError):
        refined = ServiceUnavailableError
    if refined is not None and type(mapped) is not refined:
        mapped = refined(message, provider=provider, model=model, status_code=status, retry_after=mapped.retry_after)
    return mapped


def _refused_as_too_long(exc: ValueError) -> bool:
    """The SDK's pre-flight refusal of a long non-streamed call (it says to stream instead)."""
    return not isinstance(exc, json.JSONDecodeError) and "streaming" in str(exc).lower()


#: Quoted when temperature / top_p are refused because of the installed SDK's API version.
SAMPLING_REFUSED_REASON = (
    "the installed anthropic SDK (2.x) sends anthropic-version 2026-10-21, under which the Messages API "
    "rejects temperature and top_p (an anthropic SDK below 2.0 sends 2023-06-01, which accepts them)"
)


@functools.lru_cache(maxsize=1)
def sdk_accepts_sampling() -> bool:
    """Whether temperature / top_p can be sent with the installed SDK.

    SDK 2.x sends ``anthropic-version: 2026-10-21``, under which the API answers 400 to any
    ``temperature``, ``top_p`` or ``top_k`` (and its ``messages.create`` has no such keywords).
    Older SDKs send ``2023-06-01``, which accepts them. Read from the package metadata, so
    asking does not import the SDK.
    """
    try:
        version = importlib.metadata.version("anthropic")
    except importlib.metadata.PackageNotFoundError:
        return True  # no SDK: check_ready reports that, not the capabilities
    major = version.split(".", 1)[0]
    return not (major.isdigit() and int(major) >= 2)


# -- the adapter -----------------------------------------------------------------------------
class AnthropicProvider(Provider):
    """Claude through ``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic`` (SDK retries off)."""

    extra = "anthropic"
    option_keys = frozenset({"async_transport"})

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._async_transport = async_transport_setting(settings)
        self._lock = threading.Lock()
        self._sync: Anthropic | None = None
        # An async HTTP pool is bound to the loop it first ran on: one AsyncAnthropic per loop.
        self._async: LoopClients[AsyncAnthropic] = LoopClients(lambda: self._build("AsyncAnthropic"))
        self._create_keys: frozenset[str] | None = None
        self._count_keys: frozenset[str] | None = None
        self._raw_stream: Any = None
        self._capabilities: dict[str, Capabilities] = {}
        self._ready = False

    # -- readiness ---------------------------------------------------------------------------
    def capabilities(self, model: str) -> Capabilities:
        found = self._capabilities.get(model)
        if found is None:
            found = self._capabilities[model] = self._capabilities_for(model)
        return found

    @staticmethod
    def _capabilities_for(model: str) -> Capabilities:
        profile = profile_for(model, "anthropic")
        if not sdk_accepts_sampling():
            profile = profile.restrict(
                temperature=False,
                top_p=False,
                reason=SAMPLING_REFUSED_REASON,
            )
        if profile.structured_output_mode == "tool":
            # Claude before Opus 4.1 / Sonnet 4.5 has no output_config.format; this adapter
            # sends structured output natively only (Bedrock emulates it with a forced tool).
            profile = profile.restrict(
                structured_output=False,
                reason="the Anthropic API's native structured output (output_config.format) starts at Claude "
                "Opus 4.1 / Sonnet 4.5",
            )
        return profile

    def check_ready(self, model: str) -> None:
        if self._ready:  # checked once: the client asks before every call
            return
        import_sdk("anthropic", extra=self.extra, provider=self.name)
        self._credentials()
        if self._async_transport == "aiohttp" and not aiohttp_installed():
            raise ConfigurationError(
                f'async_transport = "aiohttp" for provider {self.name!r} needs aiohttp: pip install "fmclient[fast]"',
                provider=self.name,
            )
        self._ready = True

    def _credentials(self) -> dict[str, Any]:
        """Constructor keywords carrying the credentials, or ConfigurationError naming the variable."""
        if not self.settings.ambient_credentials and any(os.environ.get(var) for var in _SDK_CREDENTIAL_ENV):
            # The SDK would add these to every request, whatever key it is given.
            raise ConfigurationError(
                f"{' / '.join(_SDK_CREDENTIAL_ENV)} would be sent to the base_url of provider {self.name!r}, "
                "which a config file in the working directory chose; trust that file explicitly "
                "(FMCLIENT_CONFIG or config_path) to allow it",
                provider=self.name,
            )
        key = self.settings.resolve_api_key(API_KEY_ENV)
        if key:
            register_secret(key)
            return {"api_key": key}
        if self.settings.profile:
            return {"profile": self.settings.profile}
        if any(os.environ.get(var) for var in _SDK_CREDENTIAL_ENV):
            return {}  # the SDK reads them itself
        raise ConfigurationError(
            f"no API key for provider {self.name!r}: set {self.settings.key_sources(API_KEY_ENV)} "
            f"or api_key in [providers.{self.name}]",
            provider=self.name,
        )

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {**self._credentials(), "max_retries": 0}
        if self.settings.base_url:
            kwargs["base_url"] = self.settings.base_url
        if self.settings.timeout is not None:
            kwargs["timeout"] = self.settings.timeout
        return kwargs

    def _client(self) -> Any:
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self._build("Anthropic")
                client = self._sync
        return client

    def _aclient(self) -> Any:
        return self._async.get()

    def _build(self, class_name: str) -> Any:
        sdk = import_sdk("anthropic", extra=self.extra, provider=self.name)
        kwargs = self._client_kwargs()
        if class_name.startswith("Async") and self._async_transport != "httpx":
            http_client = aiohttp_client(sdk)
            if http_client is not None:
                kwargs["http_client"] = http_client
        try:
            client = getattr(sdk, class_name)(**kwargs)
        except Exception as exc:
            # e.g. an SDK credentials profile that does not exist or cannot be read
            raise ConfigurationError(
                f"cannot set up the Anthropic client for provider {self.name!r}: "
                f"{type(exc).__name__}: {redact(str(exc))}",
                provider=self.name,
            ) from exc
        return self._built(client, client.base_url)

    def _params(self, request: Request) -> dict[str, Any]:
        """build_params, checked against what the installed SDK's ``messages.create`` takes."""
        # The client refuses these from capabilities(); a direct adapter call must not get a 400.
        self.capabilities(request.model).check(request, provider=self.name)
        params = build_params(request, self.name)
        accepted = self._accepted_keys()
        if request.provider_options:
            unknown = sorted(set(request.provider_options) - accepted)
            if unknown:
                raise BadRequestError(
                    f"unknown Anthropic option(s) {', '.join(map(repr, unknown))}; fields the SDK does not "
                    "know go in extra_body={...}",
                    provider=self.name,
                    model=request.model,
                )
        if not params.keys() <= accepted:
            # A field this SDK version has no keyword for (output_config on older SDKs) still
            # goes on the wire, in the same place, through extra_body.
            extra = {key: params.pop(key) for key in list(params) if key not in accepted}
            params["extra_body"] = {**extra, **(params.get("extra_body") or {})}
        if request.timeout is not None:
            params["timeout"] = request.timeout
        return params

    def _accepted_keys(self) -> frozenset[str]:
        if self._create_keys is None:
            sdk = import_sdk("anthropic", extra=self.extra, provider=self.name)
            signature = inspect.signature(sdk.resources.messages.Messages.create)
            self._create_keys = frozenset(signature.parameters) - {"self", "stream"}
        return self._create_keys

    def _stream_type(self, async_: bool) -> Any:
        """``Stream[object]`` / ``AsyncStream[object]``: the SDK's SSE decoding, events as dicts."""
        if self._raw_stream is None:
            sdk = import_sdk("anthropic", extra=self.extra, provider=self.name)
            self._raw_stream = (sdk.Stream[object], sdk.AsyncStream[object])
        return self._raw_stream[async_]

    # -- calls -------------------------------------------------------------------------------
    def _table(self, request: Request) -> Callable[[BaseException], FMClientError]:
        def table(exc: BaseException) -> FMClientError:
            if isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError):
                # The SDK checks some arguments itself before sending.
                return BadRequestError(
                    f"the Anthropic SDK refused the request: {exc}", provider=self.name, model=request.model
                )
            return map_error(exc, self.name, request.model)

        return table

    def _errors(self, request: Request, state: StreamState | None = None) -> MappedErrors:
        return MappedErrors(
            self._table(request),
            provider=self.name,
            model=request.model,
            partial_text=(lambda: state.text) if state is not None else None,
        )

    def _count_params(self, request: Request) -> dict[str, Any]:
        """The create arguments that ``messages.count_tokens`` takes (the input, not sampling)."""
        params = self._params(request)
        if self._count_keys is None:
            sdk = import_sdk("anthropic", extra=self.extra, provider=self.name)
            signature = inspect.signature(sdk.resources.messages.Messages.count_tokens)
            self._count_keys = frozenset(signature.parameters) - {"self"}
        return {key: value for key, value in params.items() if key in self._count_keys}

    def count_tokens(self, request: Request) -> TokenCount:
        params = self._count_params(request)
        client = self._client()
        with self._errors(request):
            response = client.messages.with_raw_response.count_tokens(**params).parse(to=object)
            return _token_count(response)

    async def acount_tokens(self, request: Request) -> TokenCount:
        params = self._count_params(request)
        client = self._aclient()
        with self._errors(request):
            raw = await client.messages.with_raw_response.count_tokens(**params)
            return _token_count(await parsed(raw.parse(to=object)))

    def complete(self, request: Request) -> Completion:
        params = self._params(request)
        client = self._client()
        with self._errors(request):
            try:
                # The raw response parsed to a plain dict: the SDK's own request path (timeouts,
                # errors, headers) without building a pydantic model fmclient would only read back,
                # and through the SDK's own post without create()'s per-call span work (see _sdk_post).
                if anthropic_post_suits(params):
                    raw = client.post(**message_post(client, params))
                else:
                    raw = client.messages.with_raw_response.create(**params)
                response = raw.parse(to=object)
            except ValueError as exc:
                if not _refused_as_too_long(exc):
                    raise
                # The SDK refuses non-streamed calls it expects to outlast its ten-minute default
                # timeout; streaming the same request is Anthropic's recommended way round.
                state = StreamState(provider=self.name, model=request.model)
                for _ in self._stream(request, state):
                    pass
                return self._streamed(state, request)
            completion = self._parse(response, request)
            completion.request_id = _request_id(raw)
            completion.rate_limit_headers = rate_limit_headers(raw.headers)
            # The raw response holds the sent JSON body (through its request); freed before
            # params (which hold a document's base64 text) are, the last-made block goes first.
            # Freed the other way round glibc gave the heap top back and faulted ~300 fresh pages
            # (1.2 MB) into the next call of a 1 MB PDF: ~0.4 ms of CPU on a 7 ms call, where the
            # SDK's create() frees its body first (bench/run.py --scenario media; minor faults
            # per call 1587 -> 1277, the SDK's 1292).
            del raw
            return completion

    def _streamed(self, state: StreamState, request: Request) -> Completion:
        completion = self._parse(state.message(), request)
        if state.raw_arguments:
            calls = [replace(c, raw_arguments=state.raw_arguments.get(c.id)) for c in completion.tool_calls]
            completion.tool_calls = calls
            completion.message = replace(completion.message, tool_calls=tuple(calls))
        return completion

    def _parse(self, response: Any, request: Request) -> Completion:
        if isinstance(response, str):
            # The SDK hands back the text of a reply that is not JSON.
            raise MalformedResponse(f"the body is not JSON: {response[:200]!r}")
        return parse_response(response, provider=self.name, model=request.model)

    def stream(self, request: Request) -> Iterator[Chunk]:
        return self._stream(request, StreamState(provider=self.name, model=request.model))

    def _stream(self, request: Request, state: StreamState) -> Iterator[Chunk]:
        params = self._params(request)
        client = self._client()

        def open_events() -> Any:
            stream_type = self._stream_type(False)
            if anthropic_post_suits(params):
                raw = client.post(**message_post(client, params, stream_type))
            else:
                raw = client.messages.with_raw_response.create(**params, stream=True)
            return raw.parse(to=stream_type)

        return stream_chunks(
            open_events,
            lambda event: parse_stream_event(event, state),
            self._end(state, request),
            self._errors(request, state),
        )

    async def acomplete(self, request: Request) -> Completion:
        params = self._params(request)
        client = self._aclient()
        with self._errors(request):
            try:
                if anthropic_post_suits(params):
                    # The SDK's own post, without create()'s per-call span work (see _sdk_post).
                    raw = await post_message_raw(client, params)
                else:
                    raw = await client.messages.with_raw_response.create(**params)
                response = await parsed(raw.parse(to=object))
            except ValueError as exc:
                if not _refused_as_too_long(exc):
                    raise
                state = StreamState(provider=self.name, model=request.model)
                async for _ in self._astream(request, state):
                    pass
                return self._streamed(state, request)
            completion = self._parse(response, request)
            completion.request_id = _request_id(raw)
            completion.rate_limit_headers = rate_limit_headers(raw.headers)
            del raw  # before params, as in complete (the order in which glibc is given memory back)
            return completion

    def astream(self, request: Request) -> AsyncIterator[Chunk]:
        return self._astream(request, StreamState(provider=self.name, model=request.model))

    def _astream(self, request: Request, state: StreamState) -> AsyncIterator[Chunk]:
        params = self._params(request)
        client = self._aclient()

        async def open_events() -> Any:
            stream_type = self._stream_type(True)
            if anthropic_post_suits(params):
                raw = await client.post(**message_post(client, params, stream_type))
            else:
                raw = await client.messages.with_raw_response.create(**params, stream=True)
            return await parsed(raw.parse(to=stream_type))

        return astream_chunks(
            open_events,
            lambda event: parse_stream_event(event, state),
            self._end(state, request),
            self._errors(request, state),
        )

    def _end(self, state: StreamState, request: Request) -> Callable[[], None]:
        def end() -> None:
            # The final chunk came with message_stop; a stream without it was cut short.
            if not state.finished:
                raise APIConnectionError(
                    "the stream ended before message_stop" + ("" if state.started else " (no message_start either)"),
                    provider=self.name,
                    model=request.model,
                    partial_text=state.text or None,
                )

        return end

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            client, self._sync = self._sync, None
        self._async.close_all()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        await self._async.aclose_current()
        self.close()
