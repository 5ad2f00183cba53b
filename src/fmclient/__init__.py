"""fmclient: one small, typed interface to every foundation model.

    from fmclient import Client
    reply = Client().complete("Summarise this", model="claude-sonnet")
    print(reply.text, reply.usage.output_tokens, reply.finish_reason)

Importing fmclient imports no provider SDK: each adapter imports its SDK on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fmclient._schema import tool_arguments
from fmclient._stream import AsyncStream, Stream
from fmclient.client import Attempt, Client
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
    UnsupportedFeatureError,
)
from fmclient.types import (
    CachePoint,
    Chunk,
    Completion,
    Embeddings,
    GeneratedImage,
    ImagePart,
    Images,
    Message,
    TextPart,
    TokenCount,
    Tool,
    ToolCall,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "AsyncStream",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CachePoint",
    "Chunk",
    "Client",
    "Completion",
    "ConfigurationError",
    "ContentFilterError",
    "ContextWindowExceededError",
    "Cost",
    "Embeddings",
    "FMClientError",
    "GeneratedImage",
    "ImagePart",
    "Images",
    "Message",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServiceUnavailableError",
    "Stream",
    "StructuredOutputError",
    "TextPart",
    "TokenCount",
    "Tool",
    "ToolCall",
    "UnsupportedFeatureError",
    "Usage",
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
    "tool_arguments",
]

if TYPE_CHECKING:
    from fmclient.pricing import Cost


def __getattr__(name: str) -> Any:
    # Cost needs decimal (~4 ms to import): loaded when asked for, not on `import fmclient`.
    if name == "Cost":
        from fmclient.pricing import Cost

        return Cost
    raise AttributeError(f"module 'fmclient' has no attribute {name!r}")


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client behind the module-level shortcuts, built from configuration on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
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
