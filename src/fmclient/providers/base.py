"""The adapter interface every provider module implements, and what they share.

An adapter translates a normalised :class:`~fmclient.types.Request` into its SDK's call and the
SDK's answer back into :class:`~fmclient.types.Completion` / :class:`~fmclient.types.Chunk`.
It knows nothing of aliases, config files, retries or fallbacks: the client owns those. It must
build its SDK client once (SDK retries off) and map every SDK exception to an fmclient error.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from fmclient.errors import ConfigurationError, UnsupportedFeatureError
from fmclient.profiles import Capabilities
from fmclient.secret import Secret, register_environment_credentials, register_secret
from fmclient.types import (
    Chunk,
    Completion,
    Embeddings,
    EmbedRequest,
    ImageRequest,
    Images,
    Request,
    Speech,
    SpeechRequest,
    TokenCount,
    Transcription,
    TranscriptionRequest,
)

__all__ = [
    "Capabilities",
    "EmbedBatching",
    "Provider",
    "ProviderSettings",
    "import_sdk",
    "run_in_thread",
]

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Everything configuration says about one named provider.

    ``name`` is what users write before the slash (``mistral/...``); ``type`` picks the adapter
    (``openai`` for every OpenAI-compatible server). ``None`` means "not configured": the adapter
    then lets its SDK apply its own standard environment variables and defaults.
    """

    name: str
    type: str
    api_key: Secret | None = None
    api_key_env: str | None = None
    base_url: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    region: str | None = None
    profile: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: False when a config file found implicitly in the working directory points this provider at
    #: a host of its choosing: then only a key that file defines is sent, never one read from the
    #: standard variables (see ``fmclient.config``).
    ambient_credentials: bool = True

    def resolve_api_key(self, *standard_env: str) -> str | None:
        """The key to use: explicit, else ``api_key_env``, else the SDK's standard variables."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        for var in (self.api_key_env, *(standard_env if self.ambient_credentials else ())):
            if var and os.environ.get(var):
                register_secret(os.environ[var])
                return os.environ[var]
        return None

    def key_sources(self, *standard_env: str) -> str:
        """Human text naming where a key would be looked for (for error messages)."""
        names = [v for v in (self.api_key_env, *standard_env) if v]
        return " or ".join(names) if names else "api_key in the config file"


@dataclass(frozen=True, slots=True)
class EmbedBatching:
    """How a provider's embedding API takes texts. The client splits the input by it and sends
    each batch under the retry layer, so a retry re-sends only the batch that failed."""

    #: texts per request (None: any number in one request)
    max_texts: int | None = None
    #: batches in flight at once (1: one after another)
    max_concurrency: int = 1


class Provider:
    """Base class of adapters. Subclasses override what their provider can do.

    Sync methods are the primary path for SDKs without native async; the default async methods
    run them in a bounded thread pool so an event loop is never blocked. Adapters whose SDK has
    native async (openai, anthropic, google-genai, ollama) override the ``a*`` methods.
    """

    #: extra to name in "pip install fmclient[...]" when the SDK is missing
    extra: str = ""
    #: adapter-specific settings accepted in the provider's config table (``options``)
    option_keys: frozenset[str] = frozenset()
    #: Where requests go: the base URL (or endpoint) of the SDK client, read from the client when it
    #: is built, so it includes the SDK's own environment settings (``OPENAI_BASE_URL``,
    #: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, ``OLLAMA_HOST``...). None until a client is built,
    #: and for a model run in this process. Telemetry reports it as ``server.address``/``server.port``.
    endpoint: str | None = None

    def __init__(self, settings: ProviderSettings) -> None:
        # Whatever reads them (fmclient or the SDK itself), every credential in the environment
        # that this provider may send is known to the redaction before its first request.
        register_environment_credentials(extra=(settings.api_key_env,))
        unknown = sorted(set(settings.options) - self.option_keys)
        if unknown:
            accepted = ", ".join(sorted(self.option_keys)) or "none"
            raise ConfigurationError(
                f"unknown setting {', '.join(map(repr, unknown))} for provider {settings.name!r} "
                f"(type {settings.type!r}); accepted adapter settings: {accepted}",
                provider=settings.name,
            )
        self.settings = settings
        self.name = settings.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def _built(self, client: T, base_url: Any) -> T:
        """Record where a newly built SDK client sends requests (see :attr:`endpoint`); returns it."""
        if base_url:
            self.endpoint = str(base_url)
        return client

    # -- checks made before any network call ------------------------------------------------
    def capabilities(self, model: str) -> Capabilities:
        return Capabilities()

    def check_ready(self, model: str) -> None:
        """Raise ConfigurationError if a call cannot be made (missing extra or key).

        The client asks before a target's first call and remembers success, so this may do
        set-up work (import the SDK, resolve the key) without costing every call.
        """

    def embed_batching(self, model: str) -> EmbedBatching:
        """How :meth:`embed` takes texts: it sends one request for what it is given, and the
        client never gives it more than ``max_texts``."""
        return EmbedBatching()

    # -- calls -------------------------------------------------------------------------------
    def complete(self, request: Request) -> Completion:
        raise UnsupportedFeatureError("chat completions are not supported", provider=self.name, model=request.model)

    def stream(self, request: Request) -> Iterator[Chunk]:
        raise UnsupportedFeatureError("streaming is not supported", provider=self.name, model=request.model)

    def embed(self, request: EmbedRequest) -> Embeddings:
        raise UnsupportedFeatureError("embeddings are not supported", provider=self.name, model=request.model)

    async def acomplete(self, request: Request) -> Completion:
        return await run_in_thread(self.complete, request)

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        iterator = await run_in_thread(self.stream, request)
        done = object()
        while True:
            item = await run_in_thread(next, iterator, done)
            if item is done:
                return
            yield item

    async def aembed(self, request: EmbedRequest) -> Embeddings:
        return await run_in_thread(self.embed, request)

    def generate_image(self, request: ImageRequest) -> Images:
        raise UnsupportedFeatureError("image generation is not supported", provider=self.name, model=request.model)

    async def agenerate_image(self, request: ImageRequest) -> Images:
        return await run_in_thread(self.generate_image, request)

    def transcribe(self, request: TranscriptionRequest) -> Transcription:
        raise UnsupportedFeatureError("transcription is not supported", provider=self.name, model=request.model)

    async def atranscribe(self, request: TranscriptionRequest) -> Transcription:
        return await run_in_thread(self.transcribe, request)

    def speak(self, request: SpeechRequest) -> Speech:
        raise UnsupportedFeatureError("speech is not supported", provider=self.name, model=request.model)

    async def aspeak(self, request: SpeechRequest) -> Speech:
        return await run_in_thread(self.speak, request)

    def count_tokens(self, request: Request) -> TokenCount:
        """The request's input tokens. Without a count API or tokenizer: an estimate, flagged."""
        from fmclient.tokens import estimate

        return estimate(request, f"{type(self).__name__} has no token count API")

    async def acount_tokens(self, request: Request) -> TokenCount:
        return await run_in_thread(self.count_tokens, request)

    def close(self) -> None:
        """Release connections. The client calls it on ``Client.close()``."""

    async def aclose(self) -> None:
        self.close()


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        from fmclient._checks import max_threads  # FMCLIENT_MAX_THREADS, read now and checked, not at import

        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=max_threads(), thread_name_prefix="fmclient")
    return _pool


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking SDK work (boto3, llama.cpp) off the event loop, in one bounded pool."""
    import asyncio

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_thread_pool(), fn, *args)


def import_sdk(module: str, *, extra: str, provider: str) -> ModuleType:
    """Import a provider SDK on first use, or say exactly which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f'the {provider!r} provider needs the {module!r} package: pip install "fmclient[{extra}]"',
            provider=provider,
        ) from exc
