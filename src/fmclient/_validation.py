"""Turn what a caller passed into a normalised Request, refusing bad input before any I/O.

Every error names the argument at fault. Nothing the caller passed is dropped: a value that
cannot be honoured is an error here, or an UnsupportedFeatureError from the capability check.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from fmclient._schema import is_pydantic_model, model_schema, tool_from_function
from fmclient.errors import StructuredOutputError, UnsupportedFeatureError
from fmclient.types import (
    MEDIA_PARTS,
    ROLES,
    CachePoint,
    Completion,
    EmbedRequest,
    ImagePart,
    ImageRequest,
    Message,
    Part,
    Request,
    ResponseFormat,
    Tool,
    ToolCall,
    part_from_input,
)

JSON_SCHEMA_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
TOOL_CHOICES = frozenset({"auto", "none", "required"})


def build_request(
    prompt: Any,
    *,
    model: str = "",
    system: Any = None,
    max_tokens: Any = None,
    temperature: Any = None,
    top_p: Any = None,
    stop: Any = None,
    tools: Any = None,
    tool_choice: Any = None,
    response_format: Any = None,
    timeout: Any = None,
    provider_options: Mapping[str, Any] | None = None,
    reasoning: Any = None,
    audio: Any = None,
) -> Request:
    """Validate everything a caller passed.

    ``model`` is a hint: the client passes the primary target's model id when it already knows
    it (so the Request need not be copied to fill it in) and checks it per target anyway.
    """
    messages = messages_from_prompt(prompt)
    system_parts: list[str] = []
    system_cache: CachePoint | None = None
    if system is not None:
        if not isinstance(system, str):
            raise TypeError(f"system must be a str, not {type(system).__name__}")
        if system.strip():
            system_parts.append(system)
    body: list[Message] = []
    for index, message in enumerate(messages):
        if message.role == "system":
            if body:
                raise ValueError(
                    f"messages[{index}]: a system message must come before the conversation; "
                    "put system instructions first or pass system="
                )
            media = next((part.type for part in message.parts if isinstance(part, MEDIA_PARTS)), None)
            if media is not None:
                # Request.system is text: media here would be dropped without a word.
                raise UnsupportedFeatureError(
                    f"messages[{index}]: a system message cannot carry {'images' if media == 'image' else media} "
                    "(system instructions are text only for Gemini, Anthropic, OpenAI and Bedrock); put the "
                    f"{media} in a user message"
                )
            if message.text.strip():
                system_parts.append(message.text)
            if message.cache is not None:
                system_cache = message.cache
            continue
        body.append(message)
    if not body:
        raise ValueError("prompt must contain at least one user, assistant or tool message")
    if system_cache is not None and not system_parts:
        raise ValueError("a CachePoint after an empty system prompt has nothing to cache")
    if any(message.role == "tool" for message in body):
        body = _name_tool_results(body)
    built_tools = () if tools is None else tools_from_input(tools)
    # Each check below returns its default for None; the tests for None keep the hot path
    # (a plain prompt, a few arguments) from calling nine functions to learn that.
    return Request(
        model=model,
        messages=tuple(body),
        system="\n\n".join(system_parts) or None,
        max_tokens=None if max_tokens is None else _positive_int(max_tokens, "max_tokens"),
        temperature=None if temperature is None else _number_in(temperature, "temperature", 0.0, 2.0),
        top_p=None if top_p is None else _number_in(top_p, "top_p", 0.0, 1.0),
        stop=() if stop is None else _stop(stop),
        tools=built_tools,
        tool_choice=None if tool_choice is None else _tool_choice(tool_choice, built_tools),
        response_format=None if response_format is None else response_format_from_input(response_format),
        timeout=None if timeout is None else check_timeout(timeout),
        provider_options=dict(provider_options) if provider_options else {},
        system_cache=system_cache,
        reasoning=None if reasoning is None else check_reasoning(reasoning),
        audio=None if audio is None else _audio_answer(audio),
    )


def _audio_answer(audio: Any) -> dict[str, Any] | None:
    """``audio={"voice": ..., "format": ...}``: a spoken answer; other keys go through as given."""
    if audio is None:
        return None
    if not isinstance(audio, Mapping):
        raise TypeError(
            f"audio must be a dict such as {{'voice': 'alloy', 'format': 'wav'}}, not {type(audio).__name__}"
        )
    voice = audio.get("voice")
    if not isinstance(voice, str) or not voice:
        raise ValueError(f"audio needs a voice (a non-empty str), got {voice!r}")
    answer_format = audio.get("format", "wav")
    if not isinstance(answer_format, str) or not answer_format:
        raise ValueError(f"audio format must be a non-empty str such as 'wav' or 'mp3', got {answer_format!r}")
    return {**audio, "voice": voice, "format": answer_format}


def build_embed_request(
    texts: Any, *, timeout: Any = None, provider_options: Mapping[str, Any] | None = None
) -> EmbedRequest:
    if isinstance(texts, (str, ImagePart, bytes, bytearray, os.PathLike)):
        texts = [texts]
    if not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a list of str, not {type(texts).__name__}")
    if not texts:
        raise ValueError("texts must not be empty")
    strings: list[str] = []
    images: list[ImagePart | None] = []
    for i, text in enumerate(texts):
        # An image input (a multimodal embedding model's): an ImagePart, its bytes or its file.
        if isinstance(text, (bytes, bytearray, os.PathLike)):
            text = ImagePart.from_source(bytes(text) if isinstance(text, (bytes, bytearray)) else text)
        if isinstance(text, ImagePart):
            if text.data is None:
                raise ValueError(f"texts[{i}]: an image to embed must be inline data, not a URL")
            strings.append("")
            images.append(text)
            continue
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str or an image, not {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"texts[{i}] must not be empty")
        strings.append(text)
        images.append(None)
    return EmbedRequest(
        model="",
        texts=tuple(strings),
        timeout=check_timeout(timeout),
        provider_options=dict(provider_options or {}),
        images=tuple(images) if any(image is not None for image in images) else (),
    )


_IMAGE_SIZE = re.compile(r"^(\d{2,5}x\d{2,5}|\d{1,3}:\d{1,3}|auto)$")


def build_image_request(
    prompt: Any,
    *,
    size: Any = None,
    n: Any = 1,
    negative_prompt: Any = None,
    seed: Any = None,
    quality: Any = None,
    provider_options: Mapping[str, Any] | None = None,
) -> ImageRequest:
    """An :class:`ImageRequest` from ``generate_image``'s arguments; bad input raises here."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt must not be empty")
    if size is not None and (not isinstance(size, str) or not _IMAGE_SIZE.match(size)):
        raise ValueError(
            f"size must be 'WIDTHxHEIGHT' (e.g. '1024x1024'), an aspect ratio ('16:9') or 'auto', got {size!r}"
        )
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if negative_prompt is not None and (not isinstance(negative_prompt, str) or not negative_prompt.strip()):
        raise ValueError("negative_prompt must be a non-empty str")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if quality is not None and (not isinstance(quality, str) or not quality):
        raise ValueError(f"quality must be a non-empty str, got {quality!r}")
    return ImageRequest(
        model="",
        prompt=prompt,
        size=size,
        n=n,
        negative_prompt=negative_prompt,
        seed=seed,
        quality=quality,
        provider_options=dict(provider_options or {}),
    )


# -- messages ------------------------------------------------------------------------------
def messages_from_prompt(prompt: Any) -> list[Message]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("prompt must not be empty")
        return [Message(role="user", content=prompt)]
    if isinstance(prompt, (Message, Mapping)):
        prompt = [prompt]
    if not isinstance(prompt, Sequence) or isinstance(prompt, (bytes, bytearray)):
        raise TypeError(f"prompt must be a str or a list of messages, not {type(prompt).__name__}")
    if not prompt:
        raise ValueError("prompt must not be empty")
    messages: list[Message] = []
    for index, item in enumerate(prompt):
        if isinstance(item, CachePoint):
            # A breakpoint marks the message before it: the prefix it ends is what is cached.
            if not messages or messages[-1].cache is not None:
                raise ValueError(f"messages[{index}]: a CachePoint must follow a message (one per message)")
            messages[-1] = replace(messages[-1], cache=item)
            continue
        messages.append(message_from_input(item, index))
    return messages


def message_from_input(item: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if isinstance(item, Message):
        if item.role not in ROLES:
            raise ValueError(f"{where}.role must be one of {sorted(ROLES)}, got {item.role!r}")
        return item
    if not isinstance(item, Mapping):
        raise TypeError(f"{where} must be a dict or fmclient.Message, not {type(item).__name__}")
    role = item.get("role")
    if role not in ROLES:
        raise ValueError(f"{where}.role must be one of {sorted(ROLES)}, got {role!r}")
    unknown = set(item) - {"role", "content", "tool_calls", "tool_call_id", "name", "provider_state", "is_error"}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
    content = _content(item.get("content"), where, role)
    tool_calls = tuple(_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(item.get("tool_calls") or ()))
    tool_call_id = item.get("tool_call_id")
    if role == "tool" and not isinstance(tool_call_id, str):
        raise ValueError(f"{where}: a tool message needs tool_call_id (the id of the call it answers)")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{where}.name must be a str")
    if role != "assistant" and tool_calls:
        raise ValueError(f"{where}: only assistant messages carry tool_calls")
    if role == "user" and not tool_calls and not _has_content(content):
        raise ValueError(f"{where}.content must not be empty")
    return Message(
        role=role,
        content=content,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        name=name,
        provider_state=item.get("provider_state"),
        is_error=role == "tool" and bool(item.get("is_error", False)),
    )


def _has_content(content: str | tuple[Part, ...]) -> bool:
    return bool(content.strip()) if isinstance(content, str) else bool(content)


def _content(value: Any, where: str, role: str) -> str | tuple[Part, ...]:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if role == "tool" and isinstance(value, (dict, list)) and not _looks_like_parts(value):
        return json.dumps(value)
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{where}.content must be a str or a list of parts, not {type(value).__name__}")
    return tuple(part_from_input(p, f"{where}.content[{i}]") for i, p in enumerate(value))


def _looks_like_parts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(p, Mapping) and "type" in p for p in value)


def _tool_call(value: Any, where: str) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a dict or ToolCall")
    function: Mapping[str, Any] = value["function"] if isinstance(value.get("function"), Mapping) else value
    name = function.get("name")
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}.arguments is not valid JSON: {exc}") from None
    if not isinstance(name, str) or not isinstance(arguments, Mapping):
        raise TypeError(f"{where} needs a str name and dict arguments")
    call_id = value.get("id")
    if not isinstance(call_id, str):
        raise ValueError(f"{where} needs a str id")
    return ToolCall(id=call_id, name=name, arguments=dict(arguments))


def _name_tool_results(messages: list[Message]) -> list[Message]:
    """Give each tool result the name of the call it answers (Gemini needs it on the wire)."""
    names: dict[str, str] = {}
    out: list[Message] = []
    for message in messages:
        for call in message.tool_calls:
            names[call.id] = call.name
        if message.role == "tool" and message.name is None and message.tool_call_id in names:
            message = replace(message, name=names[message.tool_call_id])
        out.append(message)
    return out


# -- parameters ----------------------------------------------------------------------------
#: Every effort some provider takes, least to most. Which of them a model takes is its profile's
#: ``reasoning_efforts`` (or the provider's to decide).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


def check_reasoning(value: Any) -> str | int | None:
    """``reasoning=``: an effort (one of :data:`REASONING_EFFORTS`) or a positive token budget."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in REASONING_EFFORTS:
            raise ValueError(
                f"reasoning must be one of {', '.join(map(repr, REASONING_EFFORTS))} or a token budget, got {value!r}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"reasoning must be an effort (str) or a token budget (int), not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"reasoning as a token budget must be positive, got {value}")
    return value


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _number_in(value: Any, name: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def check_timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"timeout must be positive, got {value}")
    return float(value)


def check_max_retries(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_retries must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"max_retries must not be negative, got {value}")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence):
        raise TypeError(f"stop must be a str or a list of str, not {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"stop[{i}] must be a str, not {type(item).__name__}")
        if not item:
            raise ValueError(f"stop[{i}] must not be empty")
    return tuple(value)


# -- tools ---------------------------------------------------------------------------------
class CheckedTools(tuple[Tool, ...]):
    """Tools :func:`tools_from_input` has already checked: a tool loop checks its tools once
    per run (or when an MCP server's list changes), not again on every step's call."""

    __slots__ = ()


def tools_from_input(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if type(value) is CheckedTools:
        return tuple(value)
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise TypeError(f"tools must be a list, not {type(value).__name__}")
    tools = tuple(tool_from_input(t, f"tools[{i}]") for i, t in enumerate(value))
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"tools: duplicate tool names {duplicates}")
    return tools


def tool_from_input(value: Any, where: str = "tool") -> Tool:
    if isinstance(value, Tool):
        tool = value
    elif callable(value) and not isinstance(value, Mapping):
        tool = tool_from_function(value)
    elif isinstance(value, Mapping):
        spec = value.get("function") if value.get("type") == "function" else value
        if not isinstance(spec, Mapping):
            raise TypeError(f"{where}.function must be a dict")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where} needs a non-empty str 'name'")
        description = spec.get("description") or ""
        if not isinstance(description, str):
            raise TypeError(f"{where}.description must be a str")
        parameters = spec.get("parameters", spec.get("input_schema", {"type": "object", "properties": {}}))
        tool = Tool(name=name, description=description, parameters=parameters)
    else:
        raise TypeError(f"{where} must be a dict, a Tool or a function, not {type(value).__name__}")
    if not all(c.isalnum() or c in "_-" for c in tool.name) or len(tool.name) > 64:
        raise ValueError(f"{where}: tool name {tool.name!r} must be 1-64 letters, digits, '_' or '-'")
    check_json_schema(tool.parameters, f"{where}.parameters")
    if tool.parameters.get("type") != "object":
        raise ValueError(f"{where}.parameters must be a JSON Schema with type 'object'")
    return tool


def check_json_schema(schema: Any, where: str) -> None:
    """A structural check that catches what is plainly not JSON Schema (not a full validator)."""
    if not isinstance(schema, Mapping):
        raise TypeError(f"{where} must be a JSON Schema dict, not {type(schema).__name__}")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in JSON_SCHEMA_TYPES:
            raise ValueError(f"{where}.type {k!r} is not a JSON Schema type ({', '.join(sorted(JSON_SCHEMA_TYPES))})")
    properties = schema.get("properties")
    if properties is not None:
        if not isinstance(properties, Mapping):
            raise ValueError(f"{where}.properties must be an object of schemas")
        for key, sub in properties.items():
            check_json_schema(sub, f"{where}.properties.{key}")
    required = schema.get("required")
    if required is not None and (not isinstance(required, list) or not all(isinstance(r, str) for r in required)):
        raise ValueError(f"{where}.required must be a list of property names")
    items = schema.get("items")
    if isinstance(items, Mapping):
        check_json_schema(items, f"{where}.items")


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        inner: Mapping[str, Any] = value["function"] if isinstance(value.get("function"), Mapping) else value
        value = inner.get("name")
    if not isinstance(value, str):
        raise TypeError("tool_choice must be 'auto', 'none', 'required' or a tool name")
    if value in TOOL_CHOICES:
        if value == "required" and not tools:
            raise ValueError("tool_choice='required' needs tools")
        return value
    if value not in {t.name for t in tools}:
        raise ValueError(f"tool_choice {value!r} is not 'auto', 'none', 'required' or the name of one of the tools")
    return value


# -- structured output ---------------------------------------------------------------------
def response_format_from_input(value: Any) -> ResponseFormat | None:
    if value is None or isinstance(value, ResponseFormat):
        return value
    if is_pydantic_model(value):
        return ResponseFormat(name=value.__name__, schema=model_schema(value), model=value)
    if isinstance(value, Mapping):
        if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), Mapping):
            inner = value["json_schema"]
            schema = inner.get("schema")
            name = inner.get("name", "response")
        else:
            schema = value.get("schema", value) if "schema" in value and "type" not in value else value
            name = str(value.get("title") or "response")
        check_json_schema(schema, "response_format")
        return ResponseFormat(name=_safe_name(str(name)), schema=dict(schema))
    raise TypeError("response_format must be a Pydantic model class or a JSON Schema dict")


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64]
    return cleaned or "response"


def parse_structured(completion: Completion, response_format: ResponseFormat) -> None:
    """Fill ``completion.parsed``; a reply that does not validate raises with the raw text (and
    the completion itself: it was answered and billed, only its parse failed)."""
    text = completion.text.strip()
    if text.startswith("```"):
        # Some models wrap JSON in a Markdown fence even in JSON mode.
        text = text.strip("`").removeprefix("json").strip()
    where: dict[str, Any] = {"provider": completion.provider, "model": completion.model, "completion": completion}
    if response_format.model is not None:
        try:
            completion.parsed = response_format.model.model_validate_json(text)
        except Exception as exc:
            raise StructuredOutputError(
                f"reply does not validate as {response_format.name}: {exc}", text=completion.text, **where
            ) from exc
        return
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the interpreter's stack, a reply as unusable as bad JSON.
        raise StructuredOutputError(f"reply is not valid JSON: {exc}", text=completion.text, **where) from exc
    problem = _schema_mismatch(value, response_format.schema, "$")
    if problem:
        raise StructuredOutputError(f"reply does not match the schema: {problem}", text=completion.text, **where)
    completion.parsed = value


def _schema_mismatch(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    if kinds and not any(checks[k](value) for k in kinds if k in checks):
        return f"{path} should be {' or '.join(kinds)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} should be one of {schema['enum']}"
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{path} is missing required property {key!r}"
        for key, sub in (schema.get("properties") or {}).items():
            if key in value and isinstance(sub, Mapping):
                problem = _schema_mismatch(value[key], sub, f"{path}.{key}")
                if problem:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problem = _schema_mismatch(item, schema["items"], f"{path}[{i}]")
            if problem:
                return problem
    return None
