"""The OpenAI Responses API (``/v1/responses``): pure translation for :mod:`fmclient.providers.openai`.

The OpenAI adapter sends a model here when its family's profile says ``api = "responses"``
(the o-series and gpt-5: OpenAI's reasoning models), or when the provider setting or the call
option ``api`` says so. What differs from Chat Completions:

* Conversation state stays with the caller. Requests go with ``store: false`` and ask for
  ``reasoning.encrypted_content``; the answer's ``output`` items (reasoning items with their
  encrypted content, messages, function calls) ride on ``Completion.message.provider_state`` and
  are sent back verbatim on the next turn, so the model keeps its reasoning across tool calls
  without any state on OpenAI's side.
* ``finish_reason`` comes from ``status`` and ``incomplete_details.reason``; a ``failed``
  response (or an in-stream ``error`` event) raises the fmclient error it describes.
* ``reasoning=`` maps to ``reasoning.effort`` (with ``summary: "auto"``, so the summary the model
  gives is ``Completion.reasoning``); a token budget has no Responses equivalent and is refused.
* The API has no stop sequences: they are refused before sending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fmclient.errors import BadRequestError, FMClientError, UnsupportedFeatureError
from fmclient.pricing import price_modifier
from fmclient.providers.shared_io import check_image_url, citation, document_filename, refuse_media
from fmclient.types import (
    Chunk,
    Citation,
    Completion,
    DocumentPart,
    FinishReason,
    ImagePart,
    Message,
    Request,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "RESPONSES_DEFAULTS",
    "ResponsesStreamParser",
    "build_responses_params",
    "parse_responses_body",
    "parse_responses_usage",
]

_INCOMPLETE: dict[str | None, FinishReason] = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _unsupported(what: str, model: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(f"the OpenAI Responses API does not support {what}", model=model)


def _input_content(content: str | tuple[Any, ...], model: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImagePart):
            check_image_url(part, ("https://", "http://"), host="the OpenAI Responses API", model=model)
            parts.append({"type": "input_image", "image_url": part.data_uri, "detail": "auto"})
        elif isinstance(part, DocumentPart):
            check_image_url(part, ("https://", "http://"), host="the OpenAI Responses API", model=model)
            if part.data is None:
                parts.append({"type": "input_file", "file_url": part.url})
            else:
                parts.append({"type": "input_file", "file_data": part.data_uri, "filename": document_filename(part)})
        else:
            raise _unsupported(f"{part.type} input (use Chat Completions: api='chat')", model)
    return parts


def build_input(request: Request, provider: str) -> list[dict[str, Any]]:
    """The ``input`` items: the conversation, an earlier answer's output items replayed verbatim."""
    items: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "tool":
            if not message.tool_call_id:
                raise BadRequestError(
                    "a tool result message needs the tool_call_id of the call it answers", model=request.model
                )
            refuse_media(message, "tool results", host="the OpenAI Responses API", model=request.model)
            items.append({"type": "function_call_output", "call_id": message.tool_call_id, "output": message.text})
        elif message.role == "assistant":
            state = (message.provider_state or {}).get(provider)
            output = state.get("output") if isinstance(state, Mapping) else None
            if isinstance(output, list):
                items.extend(json.loads(json.dumps(item)) for item in output)  # a deep copy, as it came
                continue
            refuse_media(message, "assistant messages", host="the OpenAI Responses API", model=request.model)
            if message.text:
                items.append({"role": "assistant", "content": message.text})
            for call in message.tool_calls:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.id,
                        "name": call.name,
                        "arguments": json.dumps(call.arguments),
                    }
                )
        else:
            items.append({"role": message.role, "content": _input_content(message.content, request.model)})
    return items


#: What :func:`build_responses_params` sets as defaults rather than from the call's arguments:
#: a provider option may replace them (``reasoning={"summary": "detailed"}``, ``store=True``).
RESPONSES_DEFAULTS = ("store", "include", "reasoning.summary")


def build_responses_params(
    request: Request, *, provider: str, reasoning_model: bool, stream: bool = False
) -> dict[str, Any]:
    """Keyword arguments for ``responses.create`` (provider_options and the timeout aside)."""
    from fmclient.providers._openai_wire import response_format_param

    if request.stop:
        raise _unsupported("stop sequences", request.model)
    params: dict[str, Any] = {
        "model": request.model,
        "input": build_input(request, provider),
        "store": False,
    }
    if request.system:
        params["instructions"] = request.system
    if reasoning_model:
        params["include"] = ["reasoning.encrypted_content"]
    if request.max_tokens is not None:
        params["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "parameters": dict(tool.parameters),
                "strict": False,
            }
            for tool in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        params["tool_choice"] = (
            choice if choice in ("auto", "none", "required") else {"type": "function", "name": choice}
        )
    if request.response_format is not None:
        schema = response_format_param(request.response_format)["json_schema"]
        params["text"] = {"format": {"type": "json_schema", **schema}}
    if request.reasoning is not None:
        if not isinstance(request.reasoning, str):
            raise UnsupportedFeatureError(
                f"reasoning={request.reasoning!r}: OpenAI takes a reasoning effort (such as 'medium'), "
                "not a token budget",
                model=request.model,
            )
        params["reasoning"] = {"effort": request.reasoning, "summary": "auto"}
    if stream:
        params["stream"] = True
    return params


# -- answers ------------------------------------------------------------------------------------
def parse_responses_usage(usage: Any, service_tier: Any = None) -> Usage | None:
    """``input_tokens`` include cached ones, ``output_tokens`` include reasoning ones;
    ``service_tier`` is the response's (the price it was served at)."""
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("input_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    output_details = usage.get("output_tokens_details")
    output_details = output_details if isinstance(output_details, Mapping) else {}
    return Usage(
        input_tokens=usage.get("input_tokens") or 0,
        output_tokens=usage.get("output_tokens") or 0,
        cached_input_tokens=details.get("cached_tokens") or 0,
        cache_write_tokens=details.get("cache_write_tokens") or 0,
        reasoning_tokens=output_details.get("reasoning_tokens") or 0,
        service_tier=price_modifier(service_tier),
    )


def _failure(response: Mapping[str, Any], *, provider: str, model: str) -> FMClientError:
    from fmclient.providers._openai_wire import stream_error

    error = response.get("error")
    error = error if isinstance(error, Mapping) else {}
    message = str(error.get("message") or "the response failed")
    return stream_error(error, message, provider=provider, model=model)


#: What separates two summary parts, or two reasoning items, in ``Completion.reasoning``; the
#: stream parser puts the same between them, so a stream's completion reads as ``complete()``'s.
REASONING_SEPARATOR = "\n\n"


def _reasoning_text(item: Mapping[str, Any]) -> str:
    """A reasoning item's summary parts, or else its reasoning text (content parts run on)."""
    summary = [s.get("text") or "" for s in item.get("summary") or () if isinstance(s, Mapping)]
    if any(summary):
        return REASONING_SEPARATOR.join(part for part in summary if part)
    return "".join(c.get("text") or "" for c in item.get("content") or () if isinstance(c, Mapping))


def parse_responses_body(response: Any, *, provider: str, model: str) -> Completion:
    """A ``response`` object (JSON dict) -> Completion; a failed response raises its error."""
    from fmclient.providers._openai_wire import malformed, parse_arguments, str_or_none

    if not isinstance(response, Mapping) or not isinstance(response.get("output"), list):
        raise malformed(f"expected a response object, got {str(response)[:200]!r}", provider=provider, model=model)
    answered = str(response.get("model") or model)
    status = response.get("status")
    if status == "failed":
        raise _failure(response, provider=provider, model=answered)
    incomplete = response.get("incomplete_details")
    reason = incomplete.get("reason") if isinstance(incomplete, Mapping) else None
    finish: FinishReason = "stop" if status == "completed" else _INCOMPLETE.get(reason, "other")
    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[ToolCall] = []
    citations: list[Citation] = []
    refused = False
    for item in response["output"]:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    offset = sum(len(t) for t in texts)
                    citations += _file_citations(part.get("annotations"), offset)
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    texts.append(part.get("refusal") or "")
                    refused = True
        elif kind == "function_call":
            call_id = str(item.get("call_id") or item.get("id") or f"call_{len(tool_calls)}")
            name = str(item.get("name") or "")
            arguments, raw = parse_arguments(
                item.get("arguments"),
                name=name,
                call_id=call_id,
                provider=provider,
                model=answered,
                truncated=finish == "length",
            )
            tool_calls.append(ToolCall(id=call_id, name=name, arguments=arguments, raw_arguments=raw))
        elif kind == "reasoning":
            thought = _reasoning_text(item)
            if thought:
                thoughts.append(thought)
    if refused:
        finish = "content_filter"
    elif tool_calls and finish == "stop":
        finish = "tool_calls"
    text = "".join(texts)
    return Completion(
        text=text,
        finish_reason=finish,
        usage=parse_responses_usage(response.get("usage"), response.get("service_tier")) or Usage(),
        model=answered,
        provider=provider,
        tool_calls=tool_calls,
        message=Message(
            role="assistant",
            content=text,
            tool_calls=tuple(tool_calls),
            provider_state={provider: {"output": list(response["output"])}},
        ),
        raw=response,
        response_id=str_or_none(response.get("id")),
        reasoning=REASONING_SEPARATOR.join(thoughts) or None,
        citations=citations,
    )


def _file_citations(annotations: Any, offset: int) -> list[Citation]:
    """The file citations of an ``output_text`` part (``file_citation`` marks a point of the
    text, ``container_file_citation`` a range); web citations are not document citations."""
    found: list[Citation] = []
    for note in annotations or ():
        if not isinstance(note, Mapping) or note.get("type") not in ("file_citation", "container_file_citation"):
            continue
        start = note.get("start_index", note.get("index"))
        end = note.get("end_index", start)
        span = (offset + start, offset + end) if isinstance(start, int) and isinstance(end, int) else None
        found.append(citation("", document_name=note.get("filename") or note.get("file_id"), answer=span))
    return found


class ResponsesStreamParser:
    """Responses API stream events (JSON dicts) -> Chunks; :meth:`end` makes the final chunk
    from the terminal event (``response.completed`` / ``response.incomplete``)."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.text = ""
        self._final: Completion | None = None
        self._tool_index: dict[int, int] = {}  # output_index -> tool-call index
        # Where the last reasoning delta belonged, and the items whose summary was streamed.
        self._reasoning_part: tuple[int, int] | None = None
        self._summarised: set[int] = set()

    def _reasoning_delta(self, event: Mapping[str, Any], *, summary: bool) -> str:
        """A reasoning delta as :func:`parse_responses_body` joins the same text: a separator
        before a new summary part or a new item, none between the content parts of one item,
        and an item's reasoning text only where it has no summary."""
        delta = str(event.get("delta") or "")
        item = int(event.get("output_index") or 0)
        if summary:
            self._summarised.add(item)
            part = (item, int(event.get("summary_index") or 0))
        elif item in self._summarised:
            return ""
        else:
            part = (item, -1)
        if not delta:
            return ""
        if self._reasoning_part is not None and part != self._reasoning_part:
            delta = REASONING_SEPARATOR + delta
        self._reasoning_part = part
        return delta

    def feed(self, event: Any) -> Chunk | None:
        from fmclient.providers._openai_wire import malformed, stream_error

        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
            raise malformed(f"unexpected stream event {str(event)[:200]!r}", provider=self.provider, model=self.model)
        kind: str = event["type"]
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = str(event.get("delta") or "")
            self.text += delta
            return Chunk(text=delta, raw=event) if delta else None
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            delta = self._reasoning_delta(event, summary=kind == "response.reasoning_summary_text.delta")
            return Chunk(reasoning=delta, raw=event) if delta else None
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                index = self._tool_index.setdefault(int(event.get("output_index") or 0), len(self._tool_index))
                return Chunk(
                    tool_calls=(
                        ToolCallDelta(index, item.get("call_id"), item.get("name"), item.get("arguments") or ""),
                    ),
                    raw=event,
                )
            return None
        if kind == "response.function_call_arguments.delta":
            announced = self._tool_index.get(int(event.get("output_index") or 0))
            if announced is None:
                raise malformed(
                    "arguments for a function call never announced", provider=self.provider, model=self.model
                )
            return Chunk(tool_calls=(ToolCallDelta(announced, arguments=str(event.get("delta") or "")),), raw=event)
        if kind in ("response.created", "response.in_progress", "response.queued"):
            response = event.get("response")
            if isinstance(response, Mapping) and response.get("model"):
                self.model = str(response["model"])
            return None
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.get("response")
            self._final = parse_responses_body(response, provider=self.provider, model=self.model)  # failed raises
            return None
        if kind == "error":
            message = str(event.get("message") or "an error occurred during streaming")
            raise stream_error(event, message, provider=self.provider, model=self.model)
        return None  # done events repeat what the deltas said; hosted-tool progress is not fmclient's

    def end(self) -> Chunk:
        from fmclient.errors import APIConnectionError

        final = self._final
        if final is None:
            raise APIConnectionError(
                "the stream ended before its final event (no response.completed received)",
                provider=self.provider,
                model=self.model,
            )
        return Chunk(
            finish_reason=final.finish_reason,
            usage=final.usage,
            model=final.model,
            provider_state=final.message.provider_state,
            # The final event carries the whole response, annotations included: the same citations.
            citations=tuple(final.citations),
        )
