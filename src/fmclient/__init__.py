"""fmclient: one small, typed interface to every foundation model.

    from fmclient import Client
    reply = Client().complete("Summarise this", model="claude-sonnet")
    print(reply.text, reply.usage.output_tokens, reply.finish_reason)

Importing fmclient imports no provider SDK: each adapter imports its SDK on first use. The names
below are loaded on first access (PEP 562), so ``import fmclient`` alone costs almost nothing and
each part of the library is imported when it is first used.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmclient._schema import (
        tool_arguments,
    )
    from fmclient._stream import (
        AsyncStream,
        Stream,
    )
    from fmclient.client import (
        Attempt,
        Client,
    )
    from fmclient.errors import (
        APIConnectionError,
        AuthenticationError,
        BadRequestError,
        BudgetExceededError,
        ConfigurationError,
        ContentFilterError,
        ContextWindowExceededError,
        FMClientError,
        ModelNotFoundError,
        PermissionDeniedError,
        RateLimitError,
        RequestTimeoutError,
        ServiceUnavailableError,
        StructuredOutputError,
        ToolError,
        UnsupportedFeatureError,
    )
    from fmclient.tool_loop import (
        FunctionTool,
        Run,
        Step,
        ToolResult,
        tool,
    )
    from fmclient.types import (
        AudioPart,
        CachePoint,
        Chunk,
        Citation,
        Completion,
        Cost,
        DocumentPart,
        Embeddings,
        GeneratedImage,
        ImagePart,
        Images,
        Message,
        Speech,
        TextPart,
        TokenCount,
        Tool,
        ToolCall,
        Transcription,
        TranscriptSegment,
        Usage,
        VideoPart,
    )

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "AsyncStream",
    "Attempt",
    "AudioPart",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CachePoint",
    "Chunk",
    "Citation",
    "Client",
    "Completion",
    "ConfigurationError",
    "ContentFilterError",
    "ContextWindowExceededError",
    "Cost",
    "DocumentPart",
    "Embeddings",
    "FMClientError",
    "FunctionTool",
    "GeneratedImage",
    "ImagePart",
    "Images",
    "Message",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "Run",
    "ServiceUnavailableError",
    "Speech",
    "Step",
    "Stream",
    "StructuredOutputError",
    "TextPart",
    "TokenCount",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolResult",
    "TranscriptSegment",
    "Transcription",
    "UnsupportedFeatureError",
    "Usage",
    "VideoPart",
    "acomplete",
    "aembed",
    "agenerate_image",
    "astream",
    "complete",
    "default_client",
    "embed",
    "generate_image",
    "set_default_client",
    "stream",
    "tool",
    "tool_arguments",
]

# Where each public name lives; loaded on first access and then kept as a module attribute.
_LAZY: dict[str, str] = {
    "tool_arguments": "fmclient._schema",
    "AsyncStream": "fmclient._stream",
    "Stream": "fmclient._stream",
    "Attempt": "fmclient.client",
    "Client": "fmclient.client",
    "APIConnectionError": "fmclient.errors",
    "AuthenticationError": "fmclient.errors",
    "BadRequestError": "fmclient.errors",
    "BudgetExceededError": "fmclient.errors",
    "ConfigurationError": "fmclient.errors",
    "ContentFilterError": "fmclient.errors",
    "ContextWindowExceededError": "fmclient.errors",
    "FMClientError": "fmclient.errors",
    "ModelNotFoundError": "fmclient.errors",
    "PermissionDeniedError": "fmclient.errors",
    "RateLimitError": "fmclient.errors",
    "RequestTimeoutError": "fmclient.errors",
    "ServiceUnavailableError": "fmclient.errors",
    "StructuredOutputError": "fmclient.errors",
    "UnsupportedFeatureError": "fmclient.errors",
    "ToolError": "fmclient.errors",
    "FunctionTool": "fmclient.tool_loop",
    "Run": "fmclient.tool_loop",
    "Step": "fmclient.tool_loop",
    "ToolResult": "fmclient.tool_loop",
    "tool": "fmclient.tool_loop",
    "AudioPart": "fmclient.types",
    "CachePoint": "fmclient.types",
    "Citation": "fmclient.types",
    "DocumentPart": "fmclient.types",
    "VideoPart": "fmclient.types",
    "Chunk": "fmclient.types",
    "Completion": "fmclient.types",
    "Cost": "fmclient.types",
    "Embeddings": "fmclient.types",
    "GeneratedImage": "fmclient.types",
    "ImagePart": "fmclient.types",
    "Images": "fmclient.types",
    "Message": "fmclient.types",
    "TextPart": "fmclient.types",
    "TokenCount": "fmclient.types",
    "Tool": "fmclient.types",
    "ToolCall": "fmclient.types",
    "Speech": "fmclient.types",
    "Transcription": "fmclient.types",
    "TranscriptSegment": "fmclient.types",
    "Usage": "fmclient.types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fmclient' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client behind the module-level shortcuts, built from configuration on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                from fmclient.client import Client

                _default = Client()
    return _default


def set_default_client(client: Client | None) -> None:
    """Replace the shortcuts' client (None rebuilds it from configuration on next use)."""
    global _default
    _default = client


def complete(prompt: Any, **kwargs: Any) -> Completion:
    """``Client.complete`` on the default client."""
    return default_client().complete(prompt, **kwargs)


async def acomplete(prompt: Any, **kwargs: Any) -> Completion:
    """``Client.acomplete`` on the default client."""
    return await default_client().acomplete(prompt, **kwargs)


def stream(prompt: Any, **kwargs: Any) -> Stream:
    """``Client.stream`` on the default client."""
    return default_client().stream(prompt, **kwargs)


def astream(prompt: Any, **kwargs: Any) -> AsyncStream:
    """``Client.astream`` on the default client."""
    return default_client().astream(prompt, **kwargs)


def embed(texts: str | Sequence[str], **kwargs: Any) -> Embeddings:
    """``Client.embed`` on the default client."""
    return default_client().embed(texts, **kwargs)


async def aembed(texts: str | Sequence[str], **kwargs: Any) -> Embeddings:
    """``Client.aembed`` on the default client."""
    return await default_client().aembed(texts, **kwargs)


def generate_image(prompt: str, **kwargs: Any) -> Images:
    """``Client.generate_image`` on the default client."""
    return default_client().generate_image(prompt, **kwargs)


async def agenerate_image(prompt: str, **kwargs: Any) -> Images:
    """``Client.agenerate_image`` on the default client."""
    return await default_client().agenerate_image(prompt, **kwargs)
