"""Streams: the user-facing iterators and the assembly of chunks into one Completion."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fmclient._media import is_pcm, pcm_as_wav
from fmclient.errors import FMClientError
from fmclient.providers.shared_io import ToolCallAssembler
from fmclient.types import AudioAnswer, Chunk, Citation, Completion, FinishReason, Message, Usage

__all__ = ["AsyncStream", "Stream", "StreamAssembler"]


class StreamAssembler:
    """Collects chunks into the Completion a non-streamed call would have returned."""

    __slots__ = (
        "_audio",
        "_audio_expires_at",
        "_audio_id",
        "_audio_type",
        "_calls",
        "_citations",
        "_parts",
        "_thinking",
        "audio_format",
        "finish_reason",
        "model",
        "provider",
        "provider_state",
        "usage",
    )

    def __init__(self, provider: str, model: str, *, audio_format: str | None = None) -> None:
        self.provider = provider
        self.model = model
        #: the format a spoken answer was asked in (``audio={"format": ...}``): raw PCM pieces are
        #: wrapped as a WAV file for "wav" (or none named), kept raw for "pcm16"
        self.audio_format = audio_format
        self._audio_id: str | None = None
        self._audio_expires_at: int | None = None
        self._parts: list[str] = []
        self._thinking: list[str] = []
        self._citations: list[Citation] = []
        self._audio: list[bytes] = []
        self._audio_type: str | None = None
        self._calls = ToolCallAssembler()
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.provider_state: Any = None

    def add(self, chunk: Chunk) -> None:
        if chunk.text:
            self._parts.append(chunk.text)
        if chunk.reasoning:
            self._thinking.append(chunk.reasoning)
        self._citations.extend(chunk.citations)
        if chunk.audio:
            self._audio.append(chunk.audio)
            self._audio_type = self._audio_type or chunk.audio_mime_type
        if chunk.audio_id:
            self._audio_id = chunk.audio_id
        if chunk.audio_expires_at is not None:
            self._audio_expires_at = chunk.audio_expires_at
        for delta in chunk.tool_calls:
            self._calls.add(delta)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.model:
            self.model = chunk.model
        if chunk.provider_state is not None:
            self.provider_state = chunk.provider_state

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def completion(self) -> Completion:
        # A reply cut off by max_tokens may end inside a call's arguments: returned, not raised.
        tool_calls = self._calls.calls(
            truncated=self.finish_reason == "length", provider=self.provider, model=self.model
        )
        text = self.text
        finish = self.finish_reason or ("tool_calls" if tool_calls else "other")
        return Completion(
            text=text,
            finish_reason=finish,
            usage=self.usage or Usage(),
            model=self.model,
            provider=self.provider,
            tool_calls=tool_calls,
            message=Message(
                role="assistant", content=text, tool_calls=tuple(tool_calls), provider_state=self.provider_state
            ),
            reasoning="".join(self._thinking) or None,
            citations=list(self._citations),
            audio=self._audio_answer(text),
        )

    def _audio_answer(self, transcript: str) -> AudioAnswer | None:
        """The streamed audio joined: raw PCM wrapped as a WAV file, as the non-streamed answer."""
        if not self._audio:
            return None
        data, mime_type = b"".join(self._audio), self._audio_type or "audio/wav"
        if is_pcm(mime_type) and self.audio_format in (None, "wav"):
            data, mime_type = pcm_as_wav(data, mime_type), "audio/wav"
        return AudioAnswer(
            data=data, mime_type=mime_type, transcript=transcript, id=self._audio_id, expires_at=self._audio_expires_at
        )


class _StreamBase:
    """What the sync and async streams share, so ``.completion`` means the same on both."""

    _assembler: StreamAssembler | None
    _completion: Completion | None
    _error: FMClientError | None
    _closed: bool

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._assembler.text if self._assembler else ""

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._completion.finish_reason if self._completion else None

    @property
    def usage(self) -> Usage | None:
        return self._completion.usage if self._completion else None

    def _outcome(self) -> Completion | None:
        """The Completion if the stream ended; raise if it cannot have one; None while it can."""
        if self._completion is not None:
            return self._completion
        if self._error is not None:
            raise self._error  # the same error iteration raised, with its partial_text
        if self._closed:
            raise RuntimeError(
                "the stream was closed before it ended, so it has no completion; .text holds what was received"
            )
        return None

    @staticmethod
    def _stopped() -> RuntimeError:
        return RuntimeError("the stream stopped before it ended (interrupted), so it has no completion")


class Stream(_StreamBase):
    """Iterate for chunks; ``.completion`` is the assembled answer once the stream is consumed.

    Use it as a context manager (or call ``close()``) to release the connection if you stop early.
    """

    def __init__(self, chunks: Callable[[Stream], Iterator[Chunk]]) -> None:
        self._assembler = None
        self._completion = None
        self._error = None
        self._closed = False
        self._iterator = chunks(self)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Chunk:
        try:
            return next(self._iterator)
        except FMClientError as error:
            self._error = error
            raise

    @property
    def completion(self) -> Completion:
        """The assembled Completion. Whatever the caller has not read yet is consumed first; a
        stream that failed raises its error again, and one closed early raises RuntimeError."""
        done = self._outcome()
        if done is None:
            for _ in self:
                pass
            done = self._outcome()
        if done is None:
            raise self._stopped()
        return done

    def close(self) -> None:
        self._closed = True
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(_StreamBase):
    """The async twin of :class:`Stream`: ``async for chunk in stream`` then ``stream.completion``."""

    def __init__(self, chunks: Callable[[AsyncStream], AsyncIterator[Chunk]]) -> None:
        self._assembler = None
        self._completion = None
        self._error = None
        self._closed = False
        self._iterator = chunks(self)

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Chunk:
        try:
            return await self._iterator.__anext__()
        except FMClientError as error:
            self._error = error
            raise

    @property
    def completion(self) -> Completion:
        """As :attr:`Stream.completion`: the Completion once consumed, the stream's error again
        if it failed, RuntimeError if it was closed early. A property cannot await, so a stream
        with chunks still unread raises RuntimeError: ``await get_completion()`` reads them."""
        done = self._outcome()
        if done is None:
            raise RuntimeError("the stream is not consumed yet: iterate it to its end, or await get_completion()")
        return done

    async def get_completion(self) -> Completion:
        """Consume what remains and return the assembled Completion (the sync ``.completion``)."""
        done = self._outcome()
        if done is None:
            async for _ in self:
                pass
            done = self._outcome()
        if done is None:
            raise self._stopped()
        return done

    async def aclose(self) -> None:
        self._closed = True
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
