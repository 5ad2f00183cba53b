"""What OpenAI's Chat Completions and Responses adapters share on the wire: structured-output
schemas, tool-call arguments, malformed bodies and error events. Its own module so that
``openai`` and ``_openai_responses`` both import it and neither imports the other's internals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from fmclient.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ContextWindowExceededError,
    FMClientError,
    RateLimitError,
    ServiceUnavailableError,
    error_for_status,
)
from fmclient.providers.shared_io import tool_arguments
from fmclient.types import ResponseFormat

# Error codes/types seen from OpenAI, Azure OpenAI, vLLM, llama.cpp and Mistral.
_CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
_CONTEXT_TEXT = re.compile(r"context[ _](length|size|window)|too many tokens", re.IGNORECASE)
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation", "invalid_prompt", "moderation_blocked"})
_FILTER_TEXT = re.compile(r"content (management )?polic|flagged as potentially", re.IGNORECASE)
_RATE_CODES = frozenset({"rate_limit_exceeded", "rate_limit_error", "requests", "tokens"})
_AUTH_CODES = frozenset({"invalid_api_key", "authentication_error"})
_BAD_REQUEST_TYPES = frozenset({"invalid_request_error", "BadRequestError"})
# Strict structured output rejects these keywords (OpenAI's supported-schema subset).
_NON_STRICT_KEYWORDS = frozenset(
    {
        "allOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
    }
)
_SCHEMA_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


def response_format_param(response_format: ResponseFormat) -> dict[str, Any]:
    """``response_format`` for json_schema output.

    ``strict`` (guaranteed conformance) is only set when OpenAI's strict subset allows the schema:
    every object lists all its properties as required and allows no extra keys. Objects that say
    nothing about extra keys get ``additionalProperties: false`` added, which only narrows what
    the model may produce (the reply still validates against the caller's schema). A schema with
    optional properties, open objects or unsupported keywords is sent non-strict: the model is
    guided by it and the client validates the reply.
    """
    schema = dict(response_format.schema)
    strict_schema = _strict_schema(schema, root=True)
    name = _SCHEMA_NAME_INVALID.sub("_", response_format.name)[:64] or "response"
    return {
        "type": "json_schema",
        "json_schema": {
            "name": name,
            "schema": strict_schema if strict_schema is not None else schema,
            "strict": strict_schema is not None,
        },
    }


def _strict_schema(node: Any, *, root: bool = False) -> Any:
    """A strict-mode copy of a schema node, or None when strict mode cannot express it."""
    if isinstance(node, list):
        items = [_strict_schema(item) for item in node]
        return None if any(item is None for item in items) else items
    if not isinstance(node, Mapping):
        return node
    if _NON_STRICT_KEYWORDS & node.keys():
        return None
    if root and (node.get("type") != "object" or "anyOf" in node):
        return None
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions"):
            if not isinstance(value, Mapping):
                return None
            converted = {}
            for sub_name, sub in value.items():
                sub_strict = _strict_schema(sub)
                if sub_strict is None:
                    return None
                converted[sub_name] = sub_strict
            out[key] = converted
        elif key in ("items", "anyOf", "prefixItems"):
            sub_strict = _strict_schema(value)
            if sub_strict is None:
                return None
            out[key] = sub_strict
        else:
            out[key] = value
    if node.get("type") == "object" or "properties" in node:
        extra = node.get("additionalProperties", False)
        if extra is not False or set(node.get("required", ())) != set(node.get("properties", ())):
            return None
        if "properties" not in node and "additionalProperties" not in node:
            return None  # a free-form object: strict mode would force it to be empty
        out["additionalProperties"] = False
    return out


def malformed(what: str, *, provider: str, model: str | None) -> ServiceUnavailableError:
    # A body that is not Chat Completions JSON (a proxy's HTML page, a cut-off body) is the
    # server failing, usually transiently: ServiceUnavailableError, retryable.
    return ServiceUnavailableError(f"malformed response: {what}", provider=provider, model=model)


def parse_arguments(
    raw: str | None, *, name: str, call_id: str, provider: str, model: str, truncated: bool = False
) -> tuple[dict[str, Any], str | None]:
    """Tool-call arguments (a JSON object in a string): see :func:`~fmclient.providers.shared_io.tool_arguments`."""
    return tool_arguments(raw, truncated=truncated, name=name, call_id=call_id, provider=provider, model=model)


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def refined_error(
    error: FMClientError, cls: type[FMClientError], message: str | None = None, **changes: Any
) -> FMClientError:
    return cls(
        message or error.message,
        provider=error.provider,
        model=error.model,
        status_code=error.status_code,
        retry_after=error.retry_after,
        **changes,
    )


def classify_error(error: FMClientError, code: str | None, kind: str | None) -> FMClientError:
    """Refine a status-derived error by what the body says."""
    text = error.message
    if isinstance(error, BadRequestError):
        if code in _CONTEXT_CODES or kind in _CONTEXT_CODES or _CONTEXT_TEXT.search(text):
            return refined_error(error, ContextWindowExceededError)
        if code in _FILTER_CODES or kind in _FILTER_CODES or _FILTER_TEXT.search(text):
            return refined_error(error, ContentFilterError)
    if isinstance(error, RateLimitError) and code == "insufficient_quota":
        # Out of credit: waiting will not help, so do not retry.
        return refined_error(error, RateLimitError, retryable=False)
    return error


def body_message(body: object, fallback: str) -> str:
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
        # Mistral nests validation details in "message"; FastAPI servers send {"detail": ...}.
        detail = json.dumps(message or body, default=str)
        return f"{fallback} - {detail[:500]}"
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback


def stream_error(body: object, message: str, *, provider: str, model: str | None) -> FMClientError:
    """An ``{"error": ...}`` event inside a stream: mapped like the HTTP error it describes."""
    code = kind = None
    if isinstance(body, Mapping):
        code = None if body.get("code") is None else str(body.get("code"))
        kind = None if body.get("type") is None else str(body.get("type"))
    if code is not None and code.isdigit() and 400 <= int(code) < 600:  # vLLM: "code": 400
        error = error_for_status(int(code), message, provider=provider, model=model)
        return classify_error(error, code, kind)
    for label in (code, kind):
        if label in _CONTEXT_CODES:
            return ContextWindowExceededError(message, provider=provider, model=model)
        if label in _FILTER_CODES:
            return ContentFilterError(message, provider=provider, model=model)
        if label in _RATE_CODES:
            return RateLimitError(message, provider=provider, model=model)
        if label in _AUTH_CODES:
            return AuthenticationError(message, provider=provider, model=model)
        if label in _BAD_REQUEST_TYPES:
            return classify_error(BadRequestError(message, provider=provider, model=model), code, kind)
    # server_error, overloaded, or nothing said: the provider failed mid-answer.
    return ServiceUnavailableError(message, provider=provider, model=model)
