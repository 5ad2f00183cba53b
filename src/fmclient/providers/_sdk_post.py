"""The SDKs' own ``post`` for a call, without what the resource method adds.

Profiling ``complete``, ``stream`` and ``acomplete`` against the loopback fake (``bench/run.py``;
cProfile of the client process) showed most of a call's CPU inside the official SDK, and part of
it in work that changes nothing for the request fmclient sends:

* OpenAI: ~37-40% of a chat call inside ``openai._utils._transform.(async_)transform``.
  ``chat.completions.create`` walks the body against ``CompletionCreateParams`` (every union
  member of every message), which only renames aliased keys and formats dates/files. fmclient's
  body is already plain JSON built by ``build_params``, and no chat-completions parameter has an
  alias or a format, so the walk returns its input unchanged.
* Anthropic: ``messages.create`` starts an OpenTelemetry span for every call and computes its
  attributes (server, request and method attributes, ~10% of the call) even when no tracer
  provider is configured and the span neither records nor propagates. Older SDKs also run the
  body transform, which is a no-op for fmclient's plain-JSON body as above.

Posting the body with the client's own ``post`` keeps everything else of the SDK: auth headers,
base URL, timeouts, error classes (``APIStatusError`` and friends), the raw response with its
request id and ``parse``, SSE decoding for streams. The same arguments serve the sync and the async
client (``client.post(**arguments)`` / ``await client.post(**arguments)``), streamed or not.
``tests/test_sdk_post.py`` checks the request on the wire is the same as ``create``'s, byte for
byte in the body and header for header, on every path. What ``create`` does besides is repeated
here or is why a call is not taken this way (see :func:`anthropic_post_suits`).
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

__all__ = [
    "anthropic_post_suits",
    "chat_completion_post",
    "message_post",
    "post_chat_completion_raw",
    "post_message_raw",
    "response_post",
]

_OPTION_KEYS = ("extra_headers", "extra_query", "extra_body", "timeout")
_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def _split(kwargs: dict[str, Any], raw_value: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``create``'s keyword arguments as (JSON body, request options); the caller's dict is not consumed.

    ``raw_value`` is what the SDK's ``with_raw_response`` puts in its raw-response header, which
    makes ``post`` hand back the raw response instead of a parsed model.
    """
    body = dict(kwargs)
    options = {key: body.pop(key) for key in _OPTION_KEYS if key in body}
    options["extra_headers"] = {_RAW_RESPONSE_HEADER: raw_value, **(options.get("extra_headers") or {})}
    return body, options


# -- OpenAI ------------------------------------------------------------------------------------
@cache
def _openai() -> tuple[Any, Any, Any, Any, bool]:
    # Both names as the SDK's chat-completions module itself imports them (their home moved between releases).
    from openai.resources.chat.completions.completions import (  # type: ignore[attr-defined]
        make_request_options,
        validate_response_format,
    )
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    takes_security = "security" in inspect.signature(make_request_options).parameters
    return make_request_options, validate_response_format, ChatCompletion, Response, takes_security


def _openai_post(path: str, cast_to: Any, kwargs: dict[str, Any], stream_cls: Any) -> dict[str, Any]:
    make_request_options, _, _, _, takes_security = _openai()
    body, options = _split(kwargs, "true")  # the openai SDK's legacy raw response, as with_raw_response
    if takes_security:
        options["security"] = {"bearer_auth": True}
    return {
        "path": path,
        "body": body,
        "cast_to": cast_to,
        "options": make_request_options(**options),
        "stream": bool(body.get("stream")),
        "stream_cls": stream_cls,
    }


def chat_completion_post(kwargs: dict[str, Any], stream_cls: Any = None) -> dict[str, Any]:
    """The arguments of ``client.post`` that do what ``client.chat.completions.with_raw_response.create(**kwargs)``
    does, sync or async; for a stream (``kwargs["stream"]`` true), ``stream_cls`` is the SDK stream
    type to decode it with (the raw response's ``parse(to=...)`` takes it too).

    Besides the transform, ``create`` checks ``response_format`` and sets the bearer-auth security
    option where the SDK has one: both are repeated here.
    """
    _, validate_response_format, chat_completion, _, _ = _openai()
    validate_response_format(kwargs.get("response_format"))
    return _openai_post("/chat/completions", chat_completion, kwargs, stream_cls)


def response_post(kwargs: dict[str, Any], stream_cls: Any = None) -> dict[str, Any]:
    """The same for ``client.responses.with_raw_response.create(**kwargs)`` (the Responses API),
    whose body transform is as much a no-op for fmclient's plain JSON: its only annotations are
    union discriminators."""
    return _openai_post("/responses", _openai()[3], kwargs, stream_cls)


async def post_chat_completion_raw(client: Any, kwargs: dict[str, Any]) -> Any:
    """What ``await client.chat.completions.with_raw_response.create(**kwargs)`` returns (non-streamed)."""
    return await client.post(**chat_completion_post(kwargs))


# -- Anthropic ---------------------------------------------------------------------------------
#: The ``messages.create`` arguments that it puts in the JSON body unchanged, or passes on as the
#: request options above: all that fmclient's ``build_params`` makes, except ``thinking``
#: (``create`` may warn about it per model). Any other argument (a provider option ``create``
#: turns into a header, say) takes the ``create`` path.
_ANTHROPIC_PLAIN_KEYS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "stop_sequences",
        "tools",
        "tool_choice",
        "output_config",
        "metadata",
        "service_tier",
        *_OPTION_KEYS,
    }
)


def _sdk_span_would_matter() -> bool:
    """Whether the anthropic SDK's span for a call could record or propagate anything.

    It records only under a configured tracer provider (the OpenTelemetry API's default is a
    proxy until one is set), and propagates only inside a valid span context. Asked per call, so
    a provider set up later is seen at once.
    """
    trace = _otel_trace()
    if trace is None:
        return False
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True
    return bool(trace.get_current_span().get_span_context().is_valid)


@cache
def _otel_trace() -> Any:
    """The OpenTelemetry trace API, imported once (asked per call, above)."""
    try:
        from opentelemetry import trace
    except ImportError:  # SDKs before their tracing did not depend on OpenTelemetry
        return None
    return trace


def anthropic_post_suits(params: dict[str, Any]) -> bool:
    """Whether ``post_message_raw`` sends what ``messages.create`` would, with nothing of it lost.

    Calls that tracing would see, and SDKs whose internals below are not there, go through ``create``.
    """
    return params.keys() <= _ANTHROPIC_PLAIN_KEYS and _anthropic() is not None and not _sdk_span_would_matter()


@cache
def _anthropic() -> tuple[Any, Any, Any] | None:
    import anthropic

    try:  # the internals create() itself uses; an SDK without them keeps the create() path
        from anthropic._base_client import make_request_options
        from anthropic._constants import DEFAULT_TIMEOUT, MODEL_NONSTREAMING_TOKENS
    except ImportError:
        return None
    if not all(
        hasattr(cls, "_calculate_nonstreaming_timeout") for cls in (anthropic.Anthropic, anthropic.AsyncAnthropic)
    ):
        return None
    return make_request_options, DEFAULT_TIMEOUT, MODEL_NONSTREAMING_TOKENS


def message_post(client: Any, params: dict[str, Any], stream_cls: Any = None) -> dict[str, Any]:
    """The arguments of ``client.post`` (an ``Anthropic`` or ``AsyncAnthropic`` client) that do what
    ``client.messages.with_raw_response.create(**params)`` does, for ``params`` that
    :func:`anthropic_post_suits`; with ``stream_cls`` (the SDK stream type to decode with), what
    ``create(**params, stream=True)`` does.

    Raises ``ValueError`` as ``create`` does for a non-streamed call that could outlast ten minutes.
    """
    found = _anthropic()
    assert found is not None, "only for params that anthropic_post_suits"
    make_request_options, default_timeout, nonstreaming_tokens = found
    body, options = _split(params, "raw")  # as the anthropic SDK's with_raw_response
    stream = stream_cls is not None
    if stream:
        body["stream"] = True
    elif "timeout" not in options and client.timeout == default_timeout:
        # As create(): the SDK's own timeout for the expected length of the answer; it raises
        # ValueError for a call that could outlast ten minutes (the adapter then streams it).
        options["timeout"] = _nonstreaming_timeout(client, body["max_tokens"], nonstreaming_tokens.get(body["model"]))
    return {
        "path": "/v1/messages",
        "body": body,
        "cast_to": object,
        "options": make_request_options(**options),
        "stream": stream,
        "stream_cls": stream_cls,
    }


#: The SDK's timeout per (client class, max_tokens, the model's non-streaming limit): the SDK
#: works it out on every call from those alone, building a new httpx Timeout each time.
_NONSTREAMING_TIMEOUTS: dict[tuple[type, Any, Any], Any] = {}


def _nonstreaming_timeout(client: Any, max_tokens: Any, limit: Any) -> Any:
    key = (type(client), max_tokens, limit)
    found = _NONSTREAMING_TIMEOUTS.get(key)
    if found is None:
        found = client._calculate_nonstreaming_timeout(max_tokens, limit)  # raises ValueError: never kept
        if len(_NONSTREAMING_TIMEOUTS) < 1024:  # max_tokens varies little in practice; bounded anyway
            _NONSTREAMING_TIMEOUTS[key] = found
    return found


async def post_message_raw(client: Any, params: dict[str, Any]) -> Any:
    """What ``await client.messages.with_raw_response.create(**params)`` returns (non-streamed),
    for ``params`` that :func:`anthropic_post_suits`."""
    return await client.post(**message_post(client, params))
