"""A mock provider for app developers' unit tests: scripted replies, recorded requests, no network.

Used as a context manager (or the ``fmclient_mock`` pytest fixture) it answers *every* model,
so app code that calls ``complete(..., model="claude-sonnet")`` runs unchanged::

    from fmclient.testing import MockProvider

    def test_summary():
        with MockProvider() as mock:
            mock.add_reply("A short summary.")
            assert summarise("long text") == "A short summary."
            assert mock.requests[0].model == "anthropic/claude-sonnet-5-5"

Scripted failures are raised as real fmclient errors and go through the real retry layer; while
the mock is active, retry waits are recorded in ``mock.sleeps`` instead of slept.

For a model the profile table knows (any alias of ``defaults.toml``, or a model id such as
``claude-sonnet-4-5``), the mock refuses what production would refuse: the real adapter's
capabilities for that target (the model family's profile, narrowed by its host) are checked
before the mock answers, so ``temperature=`` on a model that rejects it raises
:class:`~fmclient.errors.UnsupportedFeatureError` in the app's test too. Pass
``MockProvider(enforce_profiles=False)`` to accept everything.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fmclient import retry
from fmclient.errors import FMClientError, error_for_status
from fmclient.profiles import profile_for
from fmclient.providers.base import Capabilities, Provider, ProviderSettings
from fmclient.types import (
    AudioAnswer,
    Chunk,
    Completion,
    Embeddings,
    EmbedRequest,
    FinishReason,
    GeneratedImage,
    ImageRequest,
    Images,
    Message,
    Request,
    Speech,
    SpeechRequest,
    ToolCall,
    ToolCallDelta,
    Transcription,
    TranscriptionRequest,
    Usage,
    image_mime_type,
)

__all__ = ["MockProvider"]

ErrorSpec = type[FMClientError] | FMClientError | int


@dataclass
class _Reply:
    text: str = ""
    chunks: Sequence[str] | None = None
    tool_calls: Sequence[ToolCall] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error_after: int | None = None
    error: ErrorSpec | None = None


@dataclass
class _Failure:
    error: ErrorSpec
    retry_after: float | None = None
    message: str | None = None


@dataclass
class _Embedding:
    vectors: Sequence[Sequence[float]] | None = None
    failure: _Failure | None = None


@dataclass
class _ImageScript:
    images: Sequence[bytes] | None = None
    revised_prompt: str | None = None
    failure: _Failure | None = None


@dataclass
class _MediaScript:
    """One scripted transcribe (``text``) or speak (``data``) answer, or a failure."""

    text: str | None = None
    data: bytes | None = None
    failure: _Failure | None = None


@dataclass
class MockCall:
    """One call the mock received: the request, and whether it was streamed or an embedding."""

    request: Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest
    kind: str  # "complete", "stream", "embed", "image", "transcribe" or "speak"
    extra: dict[str, Any] = field(default_factory=dict)


class MockProvider(Provider):
    """Answers every model while active; scripts replies and failures; records requests."""

    def __init__(
        self,
        settings: ProviderSettings | None = None,
        *,
        default_text: str = "mock response",
        embedding_dimensions: int = 8,
        real_sleep: bool = False,
        enforce_profiles: bool = True,
    ) -> None:
        super().__init__(settings or ProviderSettings(name="mock", type="mock"))
        #: refuse, as production would, what a known model's profile does not accept
        self.enforce_profiles = enforce_profiles
        self.default_text = default_text
        self.embedding_dimensions = embedding_dimensions
        self.real_sleep = real_sleep
        self.calls: list[MockCall] = []
        self.sleeps: list[float] = []
        self._script: deque[_Reply | _Failure] = deque()
        self._embeddings: deque[_Embedding] = deque()
        self._images: deque[_ImageScript] = deque()
        self._transcripts: deque[_MediaScript] = deque()
        self._speeches: deque[_MediaScript] = deque()
        self._responder: Callable[[Request], str | Completion] | None = None
        self._lock = threading.Lock()
        self._saved_sleep: tuple[Any, Any] | None = None

    # -- scripting --------------------------------------------------------------------------
    def add_reply(
        self,
        text: str = "",
        *,
        tool_calls: Sequence[ToolCall | Mapping[str, Any]] = (),
        finish_reason: FinishReason | None = None,
        usage: Usage | None = None,
    ) -> MockProvider:
        """Queue one reply (used by the next complete or stream call)."""
        calls = tuple(_tool_call(c, i) for i, c in enumerate(tool_calls))
        self._script.append(_Reply(text=text, tool_calls=calls, finish_reason=finish_reason, usage=usage))
        return self

    def add_tool_call(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, id: str | None = None
    ) -> MockProvider:
        """Queue a reply that calls one tool."""
        return self.add_reply(
            tool_calls=[{"id": id or f"call_{len(self._script)}", "name": name, "arguments": dict(arguments or {})}]
        )

    def add_stream(
        self,
        chunks: Sequence[str],
        *,
        finish_reason: FinishReason = "stop",
        usage: Usage | None = None,
        error_after: int | None = None,
        error: ErrorSpec = FMClientError,
    ) -> MockProvider:
        """Queue a streamed reply in exactly these chunks; ``error_after=n`` fails after n chunks."""
        self._script.append(
            _Reply(
                text="".join(chunks),
                chunks=list(chunks),
                finish_reason=finish_reason,
                usage=usage,
                error_after=error_after,
                error=error if error_after is not None else None,
            )
        )
        return self

    def add_error(
        self, error: ErrorSpec, *, retry_after: float | None = None, message: str | None = None
    ) -> MockProvider:
        """Queue a failure: an fmclient error class or instance, or an HTTP status (429, 503...)."""
        self._script.append(_Failure(error, retry_after, message))
        return self

    def add_embeddings(self, vectors: Sequence[Sequence[float]]) -> MockProvider:
        self._embeddings.append(_Embedding(vectors=vectors))
        return self

    def add_embedding_error(self, error: ErrorSpec, *, retry_after: float | None = None) -> MockProvider:
        self._embeddings.append(_Embedding(failure=_Failure(error, retry_after)))
        return self

    def add_image(self, *images: bytes, revised_prompt: str | None = None) -> MockProvider:
        """Queue one ``generate_image`` answer: these encoded images (PNG, JPEG...). With none
        given, the answer is ``n`` PNGs of the asked size, as with nothing queued."""
        self._images.append(_ImageScript(images=images or None, revised_prompt=revised_prompt))
        return self

    def add_image_error(self, error: ErrorSpec, *, retry_after: float | None = None) -> MockProvider:
        """Queue a ``generate_image`` failure (an fmclient error class or instance, or a status)."""
        self._images.append(_ImageScript(failure=_Failure(error, retry_after)))
        return self

    def add_transcription(self, text: str) -> MockProvider:
        """Queue one ``transcribe`` answer (with none queued: "transcript of N bytes of <type>")."""
        self._transcripts.append(_MediaScript(text=text))
        return self

    def add_transcription_error(self, error: ErrorSpec, *, retry_after: float | None = None) -> MockProvider:
        self._transcripts.append(_MediaScript(failure=_Failure(error, retry_after)))
        return self

    def add_speech(self, data: bytes) -> MockProvider:
        """Queue one ``speak`` answer: these audio bytes (with none queued: a short WAV tone)."""
        self._speeches.append(_MediaScript(data=data))
        return self

    def add_speech_error(self, error: ErrorSpec, *, retry_after: float | None = None) -> MockProvider:
        self._speeches.append(_MediaScript(failure=_Failure(error, retry_after)))
        return self

    def respond_with(self, responder: Callable[[Request], str | Completion] | None) -> MockProvider:
        """Answer with ``responder(request)`` whenever nothing is queued."""
        self._responder = responder
        return self

    # -- inspection -------------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        """Chat requests received, in order (embedding requests are in ``embed_requests``)."""
        return [c.request for c in self.calls if isinstance(c.request, Request)]

    @property
    def embed_requests(self) -> list[EmbedRequest]:
        return [c.request for c in self.calls if isinstance(c.request, EmbedRequest)]

    @property
    def image_requests(self) -> list[ImageRequest]:
        return [c.request for c in self.calls if isinstance(c.request, ImageRequest)]

    @property
    def transcription_requests(self) -> list[TranscriptionRequest]:
        return [c.request for c in self.calls if isinstance(c.request, TranscriptionRequest)]

    @property
    def speech_requests(self) -> list[SpeechRequest]:
        return [c.request for c in self.calls if isinstance(c.request, SpeechRequest)]

    @property
    def last_request(self) -> Request:
        if not self.requests:
            raise AssertionError("the mock provider received no request")
        return self.requests[-1]

    @property
    def pending(self) -> int:
        """Scripted replies and failures not consumed yet."""
        return (
            len(self._script) + len(self._embeddings) + len(self._images) + len(self._transcripts) + len(self._speeches)
        )

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.sleeps.clear()
            self._script.clear()
            self._embeddings.clear()
            self._images.clear()
            self._transcripts.clear()
            self._speeches.clear()

    # -- activation -------------------------------------------------------------------------
    def __enter__(self) -> MockProvider:
        from fmclient import _engine

        _engine.overrides.append(self)
        if not self.real_sleep:
            self._saved_sleep = (retry.sleep, retry.asleep)
            retry.sleep = self._record_sleep
            retry.asleep = self._record_asleep
        return self

    def __exit__(self, *exc: object) -> None:
        from fmclient import _engine

        if self in _engine.overrides:
            _engine.overrides.remove(self)
        if self._saved_sleep is not None:
            retry.sleep, retry.asleep = self._saved_sleep
            self._saved_sleep = None

    def _record_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def _record_asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    # -- the Provider interface -------------------------------------------------------------
    def capabilities(self, model: str) -> Capabilities:
        """The family profile of a known model (when enforcing), else accept everything."""
        if self.enforce_profiles:
            profile = profile_for(model)
            if profile.family:
                return profile
        return _PERMISSIVE

    def route_capabilities(self, model: str, adapter: Callable[[], Capabilities]) -> Capabilities:
        """What the client checks a request against while the mock answers for ``model``.

        ``adapter()`` gives the real adapter's capabilities for the target (its family profile
        narrowed by its host, e.g. the anthropic SDK's API version). They are enforced for a model
        whose family is known, so an app test fails where production would. A subclass that
        overrides :meth:`capabilities` decides by itself.
        """
        if not self.enforce_profiles or type(self).capabilities is not MockProvider.capabilities:
            return self.capabilities(model)
        try:
            real = adapter()
        except FMClientError:  # e.g. a provider table the real adapter rejects: the mock still answers
            return self.capabilities(model)
        return real if real.family else _PERMISSIVE

    def _next(self, request: Request, kind: str) -> _Reply:
        with self._lock:
            self.calls.append(MockCall(request, kind))
            item = self._script.popleft() if self._script else None
        if isinstance(item, _Failure):
            raise self._error(item, request.model)
        if item is not None:
            return item
        if self._responder is not None:
            answer = self._responder(request)
            if isinstance(answer, Completion):
                return _Reply(
                    text=answer.text,
                    tool_calls=answer.tool_calls,
                    finish_reason=answer.finish_reason,
                    usage=answer.usage,
                )
            return _Reply(text=str(answer))
        return _Reply(text=self.default_text)

    def _error(self, failure: _Failure, model: str) -> FMClientError:
        spec = failure.error
        if isinstance(spec, FMClientError):
            error = spec
            error.provider = error.provider or self.name
            error.model = error.model or model
        elif isinstance(spec, int):
            error = error_for_status(spec, failure.message or f"mock HTTP {spec}", provider=self.name, model=model)
        else:
            error = spec(failure.message or f"mock {spec.__name__}", provider=self.name, model=model)
        if failure.retry_after is not None:
            error.retry_after = failure.retry_after
        return error

    @staticmethod
    def _usage(request: Request, reply: _Reply, text: str) -> Usage:
        if reply.usage is not None:
            return reply.usage
        prompt_words = sum(len(m.text.split()) for m in request.messages) + len((request.system or "").split())
        return Usage(input_tokens=prompt_words, output_tokens=len(text.split()))

    def complete(self, request: Request) -> Completion:
        reply = self._next(request, "complete")
        text = reply.text
        if request.max_tokens is not None and reply.finish_reason is None:
            words = text.split(" ")
            if len(words) > request.max_tokens:
                text = " ".join(words[: request.max_tokens])
                reply = _Reply(text=text, tool_calls=reply.tool_calls, finish_reason="length", usage=reply.usage)
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        calls = list(reply.tool_calls)
        return Completion(
            text=text,
            finish_reason=finish,
            usage=self._usage(request, reply, text),
            model=request.model,
            provider=self.name,
            tool_calls=calls,
            message=Message(role="assistant", content=text, tool_calls=tuple(calls)),
            raw={"mock": True, "text": text},
            # audio={...} asked for a spoken answer: a silent WAV as long as the text
            audio=AudioAnswer(_silent_wav(len(text)), "audio/wav", text) if request.audio is not None else None,
        )

    def stream(self, request: Request) -> Iterator[Chunk]:
        reply = self._next(request, "stream")
        pieces = list(reply.chunks) if reply.chunks is not None else _words(reply.text)
        for index, piece in enumerate(pieces):
            if reply.error_after is not None and index == reply.error_after:
                assert reply.error is not None
                raise self._error(_Failure(reply.error, message="mock stream broke off"), request.model)
            yield Chunk(text=piece)
        if request.audio is not None:
            # A streamed spoken answer: the silent WAV's samples in two raw PCM pieces, which the
            # stream joins into the same WAV complete() gives.
            pcm = _silent_wav(len(reply.text))[44:]
            half = len(pcm) // 4 * 2
            for piece_of_audio in (pcm[:half], pcm[half:]):
                yield Chunk(audio=piece_of_audio, audio_mime_type="audio/L16;codec=pcm;rate=16000")
        for index, call in enumerate(reply.tool_calls):
            yield Chunk(tool_calls=(ToolCallDelta(index, call.id, call.name, _json(call.arguments)),))
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        yield Chunk(finish_reason=finish, usage=self._usage(request, reply, reply.text), model=request.model)

    def embed(self, request: EmbedRequest) -> Embeddings:
        with self._lock:
            self.calls.append(MockCall(request, "embed"))
            item = self._embeddings.popleft() if self._embeddings else None
        if item is not None and item.failure is not None:
            raise self._error(item.failure, request.model)
        if item is not None and item.vectors is not None:
            vectors = [list(v) for v in item.vectors]
        else:
            vectors = [_pseudo_vector(t, self.embedding_dimensions) for t in request.texts]
        tokens = sum(len(t.split()) for t in request.texts)
        return Embeddings(vectors=vectors, usage=Usage(input_tokens=tokens), model=request.model, provider=self.name)

    def generate_image(self, request: ImageRequest) -> Images:
        with self._lock:
            self.calls.append(MockCall(request, "image"))
            item = self._images.popleft() if self._images else None
        if item is not None and item.failure is not None:
            raise self._error(item.failure, request.model)
        if item is not None and item.images is not None:
            encoded = list(item.images)
        else:
            width, height = request.dimensions or (256, 256)
            encoded = [_png(width, height, f"{request.prompt}#{i}") for i in range(request.n)]
        revised = item.revised_prompt if item is not None else None
        return Images(
            images=[GeneratedImage(data, image_mime_type(data), revised) for data in encoded],
            model=request.model,
            provider=self.name,
        )

    def transcribe(self, request: TranscriptionRequest) -> Transcription:
        with self._lock:
            self.calls.append(MockCall(request, "transcribe"))
            item = self._transcripts.popleft() if self._transcripts else None
        if item is not None and item.failure is not None:
            raise self._error(item.failure, request.model)
        text = item.text if item is not None and item.text is not None else None
        if text is None:
            text = f"transcript of {len(request.audio)} bytes of {request.mime_type}"
        return Transcription(text=text, model=request.model, provider=self.name, language=request.language)

    def speak(self, request: SpeechRequest) -> Speech:
        with self._lock:
            self.calls.append(MockCall(request, "speak"))
            item = self._speeches.popleft() if self._speeches else None
        if item is not None and item.failure is not None:
            raise self._error(item.failure, request.model)
        if item is not None and item.data is not None:
            data, mime_type = item.data, "application/octet-stream"
        else:
            data, mime_type = _silent_wav(len(request.text)), "audio/wav"
        return Speech(
            data=data, mime_type=mime_type, model=request.model, provider=self.name, characters=len(request.text)
        )


def _silent_wav(characters: int) -> bytes:
    """A valid 16 kHz mono WAV of silence, a tenth of a second per character spoken."""
    import io
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(2 * 1600 * max(1, characters)))
    return out.getvalue()


_PERMISSIVE = Capabilities(
    embeddings=True, image_generation=True, image_embeddings=True, transcription=True, speech=True
)


def _png(width: int, height: int, seed: str) -> bytes:
    """A one-colour RGB PNG (colour from ``seed``): real bytes any decoder opens."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    colour = hashlib.sha256(seed.encode()).digest()[:3]
    pixels = (b"\x00" + colour * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]] if text else []


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _tool_call(value: ToolCall | Mapping[str, Any], index: int) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    return ToolCall(
        id=str(value.get("id") or f"call_{index}"),
        name=str(value["name"]),
        arguments=dict(value.get("arguments") or {}),
    )


def _pseudo_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector per text, so similar-text tests are repeatable."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]
