"""The Anthropic Messages API as a FakeServer speaks it: JSON replies, SSE streams and error bodies.

Shapes follow the wire format the ``anthropic`` SDK reads (``POST /v1/messages``): a message
object for non-streamed calls; for streamed calls the named SSE events ``message_start``,
``content_block_start``, ``content_block_delta`` (``text_delta``, ``input_json_delta``,
``thinking_delta``, ``signature_delta``), ``content_block_stop``, ``message_delta``,
``message_stop``, ``ping`` and ``error``; and ``{"type": "error", "error": {...}}`` bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from tests.fakes.server import Reply, sse

MODEL = "claude-sonnet-4-6"
MESSAGES_PATH = "/v1/messages"

Event = tuple[str, Any]

# -- content blocks ----------------------------------------------------------------------------


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_use_block(id: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": input}


def thinking_block(thinking: str, signature: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": thinking, "signature": signature}


def redacted_thinking_block(data: str) -> dict[str, Any]:
    return {"type": "redacted_thinking", "data": data}


def usage(
    input_tokens: int = 10,
    output_tokens: int = 5,
    *,
    cache_creation_input_tokens: int | None = None,
    cache_read_input_tokens: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_creation_input_tokens is not None:
        out["cache_creation_input_tokens"] = cache_creation_input_tokens
    if cache_read_input_tokens is not None:
        out["cache_read_input_tokens"] = cache_read_input_tokens
    return out


# -- non-streamed replies ----------------------------------------------------------------------


def message(
    content: str | Sequence[dict[str, Any]] = "Hello!",
    *,
    model: str = MODEL,
    stop_reason: str | None = "end_turn",
    stop_sequence: str | None = None,
    usage_: dict[str, Any] | None = None,
    id: str = "msg_01fake",
) -> dict[str, Any]:
    """A Messages API ``message`` object; a str ``content`` is one text block."""
    blocks = [text_block(content)] if isinstance(content, str) else list(content)
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_ if usage_ is not None else usage(),
    }


def message_reply(content: str | Sequence[dict[str, Any]] = "Hello!", **kwargs: Any) -> Reply:
    return Reply(body=message(content, **kwargs), headers={"request-id": "req_fake"})


# -- errors ------------------------------------------------------------------------------------

#: The ``error.type`` Anthropic sends with each status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def count_tokens_reply(input_tokens: int) -> Reply:
    """The answer of ``POST /v1/messages/count_tokens``."""
    return Reply(body={"input_tokens": input_tokens})


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_fake"}


def error_reply(
    status: int,
    message: str = "something went wrong",
    *,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    return Reply(
        status=status,
        body=error_body(error_type or ERROR_TYPES.get(status, "api_error"), message),
        headers={"request-id": "req_fake", **(headers or {})},
    )


# -- streamed replies --------------------------------------------------------------------------


def message_start(*, model: str = MODEL, usage_: dict[str, Any] | None = None, id: str = "msg_01fake") -> Event:
    start_usage = usage_ if usage_ is not None else usage(output_tokens=1)
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )


def content_block_start(index: int, block: dict[str, Any]) -> Event:
    return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _delta(index: int, delta: dict[str, Any]) -> Event:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def text_delta(index: int, text: str) -> Event:
    return _delta(index, {"type": "text_delta", "text": text})


def input_json_delta(index: int, partial_json: str) -> Event:
    return _delta(index, {"type": "input_json_delta", "partial_json": partial_json})


def thinking_delta(index: int, thinking: str) -> Event:
    return _delta(index, {"type": "thinking_delta", "thinking": thinking})


def signature_delta(index: int, signature: str) -> Event:
    return _delta(index, {"type": "signature_delta", "signature": signature})


def citations_delta(index: int, citation: dict[str, Any]) -> Event:
    return _delta(index, {"type": "citations_delta", "citation": citation})


def content_block_stop(index: int) -> Event:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(
    stop_reason: str | None = "end_turn", *, usage_: dict[str, Any] | None = None, stop_sequence: str | None = None
) -> Event:
    return (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": usage_ if usage_ is not None else {"output_tokens": 5},
        },
    )


def message_stop() -> Event:
    return ("message_stop", {"type": "message_stop"})


def ping() -> Event:
    return ("ping", {"type": "ping"})


def error_event(error_type: str, message: str) -> Event:
    return ("error", error_body(error_type, message))


def block_events(index: int, block: dict[str, Any], pieces: int = 3) -> list[Event]:
    """The start/delta/stop events that stream ``block``, its payload split in ``pieces``."""
    kind = block["type"]
    if kind == "text":
        events = [content_block_start(index, {"type": "text", "text": ""})]
        events += [text_delta(index, p) for p in _split(block["text"], pieces)]
    elif kind == "tool_use":
        events = [content_block_start(index, {**block, "input": {}})]
        events += [input_json_delta(index, p) for p in _split(json.dumps(block["input"]), pieces)]
    elif kind == "thinking":
        events = [content_block_start(index, {"type": "thinking", "thinking": "", "signature": ""})]
        events += [thinking_delta(index, p) for p in _split(block["thinking"], pieces)]
        events.append(signature_delta(index, block["signature"]))
    else:  # redacted_thinking and server blocks arrive whole
        events = [content_block_start(index, block)]
    return [*events, content_block_stop(index)]


def stream_events(
    content: str | Sequence[dict[str, Any]] = "Hello there!",
    *,
    model: str = MODEL,
    stop_reason: str = "end_turn",
    start_usage: dict[str, Any] | None = None,
    final_usage: dict[str, Any] | None = None,
    pieces: int = 3,
    with_ping: bool = True,
) -> list[Event]:
    """Every event of a complete stream of ``content`` (a str is one text block)."""
    blocks = [text_block(content)] if isinstance(content, str) else list(content)
    events = [message_start(model=model, usage_=start_usage)]
    if with_ping:
        events.append(ping())
    for index, block in enumerate(blocks):
        events += block_events(index, block, pieces)
    events.append(message_delta(stop_reason, usage_=final_usage))
    events.append(message_stop())
    return events


def stream_reply(events: Iterable[Event], **kwargs: Any) -> Reply:
    """A streamed (chunked SSE) reply of ``events``; kwargs go to :class:`Reply` (cut_after...)."""
    return Reply(chunks=sse(events), headers={"request-id": "req_fake"}, **kwargs)


def _split(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]
