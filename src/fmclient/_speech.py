"""Transcription and speech over the call engine: the same fallback walk, retries, deadline,
circuit breakers, rate limits, budget and hooks as chat (:class:`TranscriptionCall` and
:class:`SpeechCall` are :class:`~fmclient._engine.Call` subclasses, as ``_images.ImageCall`` is).

What a model takes (formats, file size, text length, instructions) is in its family's profile and
checked before anything is sent, on the primary and on every fallback. Cost comes from
genai-prices by what the call is billed on: tokens, seconds of audio (whisper-1) or characters
(tts-1); a price the call has no count for is ``None`` with the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from fmclient import _media, _validation, pricing
from fmclient._engine import Attempt, Call, Route, overrides
from fmclient.errors import FMClientError
from fmclient.types import Speech, SpeechRequest, Transcription, TranscriptionRequest

if TYPE_CHECKING:
    from fmclient._engine import Engine
    from fmclient.hooks import CallObserver

__all__ = ["aspeak", "atranscribe", "speak", "transcribe"]

# The file extension a multipart upload names each audio type with (the server reads the format
# from the name).
_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/flac": "flac",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
    "audio/aiff": "aiff",
    "audio/x-matroska": "mka",
}


def _read_audio(audio: Any, mime_type: str | None) -> tuple[bytes, str, str]:
    """(bytes, MIME type, file name) from ``transcribe``'s ``audio``: bytes, a path (a
    :class:`os.PathLike`, or a plain string: the argument is the audio's own), a ``data:`` URI or
    an open binary file. Where the bytes come from and what they are is :func:`_media.load`'s."""
    if mime_type is not None and not isinstance(mime_type, str):
        raise TypeError(f"mime_type must be a str, not {type(mime_type).__name__}")
    if isinstance(audio, str) and not audio.startswith("data:") and "://" in audio:
        raise ValueError(f"audio must be bytes, a file path or a data URI; a URL is not fetched: {audio[:60]!r}")
    if hasattr(audio, "read") and not isinstance(audio, (str, bytes, bytearray, memoryview, os.PathLike)):
        data = audio.read()
        if not isinstance(data, bytes):
            raise TypeError("an audio file object must be opened in binary mode ('rb')")
        given = getattr(audio, "name", None)
        name = os.path.basename(given) if isinstance(given, str) else None
        what = f"audio file {name}" if name else "audio file object"
        source = _media.MediaSource(data, None, _media.resolve_type(data, "audio", mime_type, name, what), name)
    elif isinstance(audio, (str, bytes, bytearray, memoryview, os.PathLike)):
        path = isinstance(audio, str) and not audio.startswith("data:")
        source = _media.load(audio, "audio", mime_type, path=path)
    else:
        raise TypeError(f"audio must be bytes, a path, a data URI or a binary file, not {type(audio).__name__}")
    assert source.data is not None and source.media_type is not None  # no URL: load read the bytes
    extension = _EXTENSIONS.get(source.media_type, source.media_type.split("/")[1])
    name = source.filename
    if not name or not name.lower().endswith("." + extension):
        name = f"audio.{extension}"  # the upload's name tells the server its format
    return source.data, source.media_type, name


def _optional_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    return value


def _model_name(model: Any, what: str) -> str:
    if model is None:
        raise ValueError(f"{what} needs a model: model='gpt-transcribe', say, or another alias (docs/speech.md)")
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, not {type(model).__name__}")
    return model


def build_transcription_request(
    audio: Any, *, mime_type: Any, language: Any, prompt: Any, provider_options: Mapping[str, Any]
) -> TranscriptionRequest:
    """A :class:`TranscriptionRequest` from ``transcribe``'s arguments; bad input raises here."""
    data, kind, name = _read_audio(audio, mime_type)
    return TranscriptionRequest(
        model="",
        audio=data,
        mime_type=kind,
        filename=name,
        language=_optional_text(language, "language"),
        prompt=_optional_text(prompt, "prompt"),
        provider_options=dict(provider_options),
    )


def build_speech_request(
    text: Any, *, voice: Any, format: Any, instructions: Any, provider_options: Mapping[str, Any]
) -> SpeechRequest:
    """A :class:`SpeechRequest` from ``speak``'s arguments; bad input raises here."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    if not text.strip():
        raise ValueError("text must not be empty")
    if not isinstance(voice, str) or not voice.strip():
        raise ValueError(f"voice must be a non-empty str (a voice name such as 'alloy' or 'Kore'), got {voice!r}")
    if format is not None and (not isinstance(format, str) or not format):
        raise ValueError(f"format must be a non-empty str such as 'mp3' or 'wav', got {format!r}")
    return SpeechRequest(
        model="",
        text=text,
        voice=voice,
        format=format.lower() if format is not None else None,
        instructions=_optional_text(instructions, "instructions"),
        provider_options=dict(provider_options),
    )


# -- the calls ---------------------------------------------------------------------------------
def _prepare_transcription(engine: Engine, route: Route, request: TranscriptionRequest) -> TranscriptionRequest:
    request = replace(request, model=engine.model_id(route))
    route.check_lifecycle(request.model)
    route.capabilities.check_transcription(request, provider=route.target.provider)
    route.ensure_ready(request.model)
    return request


def _prepare_speech(engine: Engine, route: Route, request: SpeechRequest) -> SpeechRequest:
    request = replace(request, model=engine.model_id(route))
    route.check_lifecycle(request.model)
    route.capabilities.check_speech(request, provider=route.target.provider)
    route.ensure_ready(request.model)
    return request


def _transcription_call(
    engine: Engine,
    audio: Any,
    model: Any,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> TranscriptionCall:
    name = _model_name(model, "transcribe()")
    request = build_transcription_request(audio, provider_options=provider_options, **params)
    routes = engine.routes_for(name, fallbacks, _validation.check_max_retries(max_retries))
    # The primary is checked now: a format or size it cannot take fails before any request.
    first = _prepare_transcription(engine, routes[0], request)
    call = TranscriptionCall(engine, request, routes, first, engine.deadline(timeout, routes[0]), False)  # type: ignore[arg-type]
    call.check_budget()
    return call


def _speech_call(
    engine: Engine,
    text: Any,
    model: Any,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> SpeechCall:
    name = _model_name(model, "speak()")
    request = build_speech_request(text, provider_options=provider_options, **params)
    routes = engine.routes_for(name, fallbacks, _validation.check_max_retries(max_retries))
    first = _prepare_speech(engine, routes[0], request)
    call = SpeechCall(engine, request, routes, first, engine.deadline(timeout, routes[0]), False)  # type: ignore[arg-type]
    call.check_budget()
    return call


def transcribe(
    engine: Engine,
    audio: Any,
    model: Any,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Transcription:
    """``Client.transcribe``: ``params`` are its mime_type, language and prompt."""
    call = _transcription_call(engine, audio, model, fallbacks, max_retries, timeout, provider_options, params)
    return engine.walk(call, "transcribe", call.finish_transcription)


async def atranscribe(
    engine: Engine,
    audio: Any,
    model: Any,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Transcription:
    """``Client.atranscribe``: the async twin of :func:`transcribe`."""
    call = _transcription_call(engine, audio, model, fallbacks, max_retries, timeout, provider_options, params)
    return await engine.awalk(call, "atranscribe", call.finish_transcription)


def speak(
    engine: Engine,
    text: Any,
    model: Any,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Speech:
    """``Client.speak``: ``params`` are its voice, format and instructions."""
    call = _speech_call(engine, text, model, fallbacks, max_retries, timeout, provider_options, params)
    return engine.walk(call, "speak", call.finish_speech)


async def aspeak(
    engine: Engine,
    text: Any,
    model: Any,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Speech:
    """``Client.aspeak``: the async twin of :func:`speak`."""
    call = _speech_call(engine, text, model, fallbacks, max_retries, timeout, provider_options, params)
    return await engine.awalk(call, "aspeak", call.finish_speech)


class _MediaCall(Call):
    """What transcription and speech calls share: no response cache, no structured output; the
    operation name its hooks and spans see; pricing by what the call is billed on."""

    #: the GenAI semantic conventions' gen_ai.operation.name for this call
    operation = ""

    def _start_observer(self, cache_hit: bool = False) -> CallObserver | None:
        return self.engine.observer_for(self.operation, self.first, False, self.routes[0].target)  # type: ignore[arg-type]

    def _check(self, route: Route, request: Any) -> None:
        raise NotImplementedError

    def _before_request(self, route: Route, prepared: Any) -> Any:
        assert self.observer is not None
        try:
            return self.observer.before_request(prepared, lambda changed: self._check(route, changed))
        except FMClientError as error:  # refused by a hook: no request, no fallback
            error.attempts = self.attempts
            self.observer.refuse(error)
            raise

    def _units(self, result: Any) -> tuple[dict[str, float], str]:
        raise NotImplementedError

    def _finish(self, route: Route, result: Any) -> Any:
        """Record the answer, bind its pricing, charge the budget, end the call."""
        self._record(route, None)
        self.attempts.append(Attempt(route.target.provider, route.target.model))
        result.attempts = self.attempts
        if overrides:
            result.provider = overrides[-1].name
        target = route.target
        models = (target.model,) if overrides else (result.model, target.model)
        units, why_missing = self._units(result)
        result._pricer = partial(
            pricing.price_media_units, self.engine.price_ref(route), models, time.time(), units, why_missing
        )
        budget = self.engine.budget
        if budget is not None:
            budget.charge(result, target.provider, target.model, self.take_reservation())
        self._end(result, None)
        return result


class TranscriptionCall(_MediaCall):
    """A transcribe call across its targets (see :class:`_MediaCall`)."""

    request: TranscriptionRequest  # type: ignore[assignment]
    first: TranscriptionRequest  # type: ignore[assignment]
    # Not in the GenAI conventions' list yet; named as OpenAI's API and OpenLLMetry name it.
    operation = "transcription"

    def _check(self, route: Route, request: Any) -> None:
        route.capabilities.check_transcription(request, provider=route.target.provider)

    def _prepare_for(self, route: Route) -> TranscriptionRequest:
        return _prepare_transcription(self.engine, route, self.request)

    def finish_transcription(self, route: Route, transcription: Transcription) -> Transcription:
        return self._finish(route, transcription)  # type: ignore[no-any-return]

    def _units(self, result: Any) -> tuple[dict[str, float], str]:
        units: dict[str, float] = {}
        usage = result.usage
        if usage is not None:
            units["input_tokens"] = usage.input_tokens
            units["output_tokens"] = usage.output_tokens
            if usage.input_audio_tokens:  # absent, not zero, when the provider gave no split
                units["input_audio_tokens"] = usage.input_audio_tokens
        if result.duration is not None:
            units["audio_seconds"] = units["input_audio_seconds"] = result.duration
        return units, "the provider did not report it for this transcription"


class SpeechCall(_MediaCall):
    """A speak call across its targets (see :class:`_MediaCall`)."""

    request: SpeechRequest  # type: ignore[assignment]
    first: SpeechRequest  # type: ignore[assignment]
    operation = "text_to_speech"

    def _check(self, route: Route, request: Any) -> None:
        route.capabilities.check_speech(request, provider=route.target.provider)

    def _prepare_for(self, route: Route) -> SpeechRequest:
        return _prepare_speech(self.engine, route, self.request)

    def finish_speech(self, route: Route, speech: Speech) -> Speech:
        return self._finish(route, speech)  # type: ignore[no-any-return]

    def _units(self, result: Any) -> tuple[dict[str, float], str]:
        units: dict[str, float] = {"input_characters": result.characters}
        usage = result.usage
        if usage is not None:
            units["input_tokens"] = usage.input_tokens
            units["output_tokens"] = usage.output_tokens
            if usage.output_audio_tokens:
                units["output_audio_tokens"] = usage.output_audio_tokens
        return units, "the provider reports no token usage for speech (OpenAI's Speech API answers audio only)"
