"""The OpenAI SDK's own ``post`` for a non-streamed async chat completion, without its TypedDict transform.

Profiling ``acomplete`` at concurrency 100 against the loopback fake showed ~37% of the CPU of one
call inside ``openai._utils._transform.async_transform``: ``chat.completions.create`` walks the
body against ``CompletionCreateParams`` (every union member of every message), which only renames
aliased keys and formats dates/files. fmclient's body is already plain JSON built by
``build_params``, and no chat-completions parameter has an alias or a format, so the walk returns
its input unchanged. Posting it with the client's own ``post`` keeps everything else of the SDK:
auth headers, base URL, timeouts, error classes (``APIStatusError`` and friends), the raw response
with its request id and ``parse``.

Everything ``create`` does besides the transform is repeated here: ``validate_response_format``,
the request options (``extra_headers``/``extra_query``/``extra_body``/``timeout``) and the
bearer-auth security option where the SDK has one.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

__all__ = ["post_chat_completion_raw"]

_OPTION_KEYS = ("extra_headers", "extra_query", "extra_body", "timeout")


@cache
def _sdk() -> tuple[Any, Any, Any, bool]:
    # Both names as the SDK's chat-completions module itself imports them (their home moved between releases).
    from openai.resources.chat.completions.completions import (  # type: ignore[attr-defined]
        make_request_options,
        validate_response_format,
    )
    from openai.types.chat import ChatCompletion

    takes_security = "security" in inspect.signature(make_request_options).parameters
    return make_request_options, validate_response_format, ChatCompletion, takes_security


async def post_chat_completion_raw(client: Any, kwargs: dict[str, Any]) -> Any:
    """What ``await client.chat.completions.with_raw_response.create(**kwargs)`` returns (non-streamed)."""
    make_request_options, validate_response_format, chat_completion, takes_security = _sdk()
    body = dict(kwargs)
    options = {key: body.pop(key) for key in _OPTION_KEYS if key in body}
    validate_response_format(body.get("response_format"))
    # The header that makes the SDK hand back its raw (legacy) response, as with_raw_response does.
    options["extra_headers"] = {"X-Stainless-Raw-Response": "true", **(options.get("extra_headers") or {})}
    if takes_security:
        options["security"] = {"bearer_auth": True}
    return await client.post(
        "/chat/completions", body=body, cast_to=chat_completion, options=make_request_options(**options)
    )
