"""Transcription and speech: the real openai and google-genai SDKs over the loopback fakes, with
real audio (WAVs made with ``wave``, speech from espeak-ng), the request bodies checked against
the SDKs' own types by the fakes (tests/fakes/audio.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client
from fmclient.errors import RateLimitError, ServiceUnavailableError, UnsupportedFeatureError
from fmclient.hooks import CallInfo, Hook
from fmclient.testing import MockProvider
from fmclient.types import Speech, Transcription, TranscriptSegment
from tests.fakes import audio as fake_audio
from tests.fakes.audio import decode_wav, spoken_wav, tone_wav
from tests.fakes.media import ebml_head, mp4_head
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai import error_reply as openai_error
from tests.fakes.server import FakeServer

KEY = "sk-test-not-real-0000"


def genai_price(model: str, provider: str = "openai", **units: float) -> Decimal:
    """What genai-prices itself says, to compare fmclient's cost with."""
    from genai_prices import Usage, calc_price

    return calc_price(Usage(**units), model_ref=model, provider_id=provider).total_price  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def openai_prices() -> None:
    # The fake's host is no priced provider's: the config says whose prices apply.
    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')


@pytest.fixture
def openai_fake(fake_server: FakeServer) -> FakeOpenAI:
    return FakeOpenAI(fake_server)


@pytest.fixture
def gemini_server() -> Iterator[FakeServer]:
    with FakeServer(handler=fake_audio.gemini_handler("hello world")) as server:
        yield server


def openai_client(server: FakeServer, **kwargs: Any) -> Client:
    return Client(providers={"openai": {"base_url": server.url + "/v1", "api_key": KEY}}, **kwargs)


def both_client(openai: FakeServer, gemini: FakeServer, **kwargs: Any) -> Client:
    return Client(
        providers={
            "openai": {"base_url": openai.url + "/v1", "api_key": KEY},
            "gemini": {"base_url": gemini.url, "api_key": KEY},
        },
        **kwargs,
    )


class Operations(Hook):
    """Records each call's operation name and outcome."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_call_end(self, call: CallInfo, result: Any, error: BaseException | None) -> None:
        self.calls.append((call.operation, type(result).__name__ if error is None else type(error).__name__))


# -- OpenAI transcription ----------------------------------------------------------------------
def test_gpt_4o_transcribe_uploads_the_wav_as_multipart_and_prices_audio_tokens(openai_fake: FakeOpenAI) -> None:
    audio = tone_wav(2.0)
    client = openai_client(openai_fake.server, max_retries=0)
    result = client.transcribe(audio, model="openai/gpt-4o-transcribe", language="en", prompt="Acme Corp")
    (upload,) = openai_fake.audio.uploads
    assert upload.fields == {
        "model": "gpt-4o-transcribe",
        "response_format": "json",
        "language": "en",
        "prompt": "Acme Corp",
    }
    assert (upload.filename, upload.content_type, upload.data) == ("audio.wav", "audio/wav", audio)
    assert isinstance(result, Transcription)
    assert (result.text, result.model, result.provider) == ("hello world", "gpt-4o-transcribe", "openai")
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.input_audio_tokens, result.usage.output_tokens) == (22, 20, 2)
    # Audio input is priced at its own rate (6 $/MTok against 2.5 for text).
    expected = genai_price("gpt-4o-transcribe", input_tokens=22, input_audio_tokens=20, output_tokens=2)
    assert result.cost is not None and result.cost.total == expected
    assert expected != genai_price("gpt-4o-transcribe", input_tokens=22, output_tokens=2)
    assert (
        result.language is None
        and result.segments == []
        and [a.model for a in result.attempts] == ["gpt-4o-transcribe"]
    )


def test_whisper_answers_segments_language_and_duration_priced_per_second(
    openai_fake: FakeOpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "meeting.wav"
    path.write_bytes(tone_wav(3.0))
    client = openai_client(openai_fake.server, max_retries=0)
    result = client.transcribe(path, model="openai/whisper-1")  # a path object is read
    (upload,) = openai_fake.audio.uploads
    assert upload.fields == {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "timestamp_granularities": ["segment"],
    }
    assert upload.filename == "meeting.wav"
    assert result.language == "english" and result.duration == 3.0
    assert result.segments == [TranscriptSegment(0.0, 1.5, "hello"), TranscriptSegment(1.5, 3.0, "world")]
    assert result.usage is None
    assert result.cost is not None and result.cost.total == genai_price(
        "whisper-1", audio_seconds=3, input_audio_seconds=3
    )
    assert result.cost.total > 0  # whisper-1 priced by its tokens would read as free


def test_gpt_transcribe_alias_reads_the_detected_language(openai_fake: FakeOpenAI) -> None:
    client = openai_client(openai_fake.server, max_retries=0)
    result = client.transcribe(tone_wav(1.0), model="gpt-transcribe")
    assert openai_fake.audio.uploads[0].fields["model"] == "gpt-transcribe"
    assert result.language == "en" and result.duration == 1.0
    assert result.cost is not None and result.cost.total == genai_price(
        "gpt-transcribe", audio_seconds=1, input_audio_seconds=1
    )


@pytest.mark.parametrize("run_async", [False, True])
def test_transcription_answer_is_read_as_json_and_extra_headers_still_go(
    openai_fake: FakeOpenAI, run_async: bool
) -> None:
    # The adapter asks the SDK for its raw response (no pydantic model built and read back): the
    # caller's own extra headers must still reach the server beside that, and the answer's JSON
    # comes back whole as .raw.
    options = {"extra_headers": {"X-Trace-Id": "abc123"}}
    client = openai_client(openai_fake.server, max_retries=0)

    async def run_async_call() -> Transcription:
        async with openai_client(openai_fake.server, max_retries=0) as aclient:
            return await aclient.atranscribe(tone_wav(0.5), model="openai/gpt-4o-transcribe", **options)

    if run_async:
        result = asyncio.run(run_async_call())
    else:
        result = client.transcribe(tone_wav(0.5), model="openai/gpt-4o-transcribe", **options)
    (request,) = [r for r in openai_fake.server.requests if r.path.endswith("/audio/transcriptions")]
    assert request.headers.get("x-trace-id") == "abc123"
    assert type(result.raw) is dict and result.raw["text"] == result.text == "hello world"
    assert result.usage is not None and result.usage.input_audio_tokens > 0


def test_real_speech_from_espeak_is_uploaded_whole(openai_fake: FakeOpenAI) -> None:
    spoken = spoken_wav("hello world, this is a test")
    if spoken is None:
        pytest.skip("espeak-ng is not installed")
    openai_fake.audio.transcript = "hello world, this is a test"
    result = openai_client(openai_fake.server, max_retries=0).transcribe(spoken, model="openai/whisper-1")
    assert openai_fake.audio.uploads[0].data == spoken
    assert result.text == "hello world, this is a test"
    assert result.duration == pytest.approx(decode_wav(spoken).seconds, abs=1.0)


def test_atranscribe_from_an_open_file(openai_fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(tone_wav(1.0))

    async def run() -> Transcription:
        async with openai_client(openai_fake.server, max_retries=0) as client:
            with path.open("rb") as file:
                return await client.atranscribe(file, model="openai/gpt-4o-mini-transcribe")

    result = asyncio.run(run())
    assert result.text == "hello world" and openai_fake.audio.uploads[0].filename == "clip.wav"


def test_transcription_retries_a_429_and_the_hooks_see_one_transcription_call(
    openai_fake: FakeOpenAI, retry_sleeps: list[float]
) -> None:
    audio = openai_fake.audio
    calls = {"n": 0}

    def flaky(request: Any, path: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return openai_error(429, "slow down", type="rate_limit_error")
        return fake_audio.OpenAIAudio.handle(audio, request, path)

    openai_fake.audio = type("Flaky", (), {"handle": staticmethod(flaky), "uploads": audio.uploads})()  # type: ignore[assignment]
    hook = Operations()
    client = openai_client(openai_fake.server, max_retries=2, hooks=[hook])
    result = client.transcribe(tone_wav(0.5), model="openai/gpt-4o-transcribe")
    assert result.text == "hello world" and calls["n"] == 2 and len(retry_sleeps) == 1
    assert hook.calls == [("transcription", "Transcription")]


# -- Gemini transcription ----------------------------------------------------------------------
def test_gemini_transcribes_inline_audio_with_a_verbatim_instruction(gemini_server: FakeServer) -> None:
    audio = tone_wav(2.0)
    client = Client(providers={"gemini": {"base_url": gemini_server.url, "api_key": KEY}}, max_retries=0)
    result = client.transcribe(audio, model="gemini-flash", language="English", prompt="Acme Corp")
    (request,) = gemini_server.requests
    (content,), _ = fake_audio.gemini_checked_body(request.json())  # as google-genai's own types
    instruction, blob = content.parts  # type: ignore[misc]
    assert instruction.text is not None
    assert "verbatim" in instruction.text and "English" in instruction.text and "Acme Corp" in instruction.text
    assert blob.inline_data is not None
    assert (blob.inline_data.mime_type, blob.inline_data.data) == ("audio/wav", audio)
    assert (result.text, result.provider, result.language) == ("hello world", "gemini", "English")
    assert result.usage is not None and result.usage.input_audio_tokens == 64
    expected = genai_price(
        "gemini-3.8-flash", "google", input_tokens=result.usage.input_tokens, input_audio_tokens=64, output_tokens=2
    )
    assert result.cost is not None and result.cost.total == expected


def test_gemini_names_mp3_as_its_docs_do(gemini_server: FakeServer) -> None:
    mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400)
    client = Client(providers={"gemini": {"base_url": gemini_server.url, "api_key": KEY}}, max_retries=0)
    client.transcribe(mp3, model="gemini/gemini-3.8-flash")
    (content,), _ = fake_audio.gemini_checked_body(gemini_server.requests[0].json())
    assert content.parts is not None and content.parts[1].inline_data is not None
    assert content.parts[1].inline_data.mime_type == "audio/mp3"


def test_a_failed_openai_transcription_falls_back_to_gemini(
    openai_fake: FakeOpenAI, gemini_server: FakeServer, retry_sleeps: list[float]
) -> None:
    openai_fake.audio = type("Down", (), {"handle": staticmethod(lambda r, p: openai_error(503, "overloaded"))})()  # type: ignore[assignment]
    client = both_client(openai_fake.server, gemini_server, max_retries=0)
    result = client.transcribe(tone_wav(1.0), model="openai/gpt-4o-transcribe", fallbacks=["gemini-flash"])
    assert result.provider == "gemini" and result.text == "hello world"
    assert [(a.provider, type(a.error).__name__ if a.error else None) for a in result.attempts] == [
        ("openai", "ServiceUnavailableError"),
        ("gemini", None),
    ]


# -- speech ------------------------------------------------------------------------------------
def test_openai_speech_returns_a_playable_wav_and_says_why_it_has_no_cost(openai_fake: FakeOpenAI) -> None:
    client = openai_client(openai_fake.server, max_retries=0)
    speech = client.speak(
        "Hello there.", model="openai/gpt-4o-mini-tts", voice="coral", format="wav", instructions="calm", speed=1.1
    )
    assert openai_fake.audio.speech_bodies == [
        {
            "model": "gpt-4o-mini-tts",
            "input": "Hello there.",
            "voice": "coral",
            "response_format": "wav",
            "instructions": "calm",
            "speed": 1.1,
        }
    ]
    assert isinstance(speech, Speech) and speech.mime_type == "audio/wav"
    assert decode_wav(speech.data).rate == 24000
    assert speech.cost is None and speech.cost_reason is not None
    assert "input_tokens" in speech.cost_reason and "reports no token usage" in speech.cost_reason


def test_tts_1_is_priced_per_character_and_mp3_is_the_default(openai_fake: FakeOpenAI, tmp_path: Path) -> None:
    client = openai_client(openai_fake.server, max_retries=0, max_cost=1)
    text = "Read this aloud, please."
    speech = client.speak(text, model="openai/tts-1", voice="alloy")
    assert openai_fake.audio.speech_bodies[0]["response_format"] == "mp3"
    assert speech.mime_type == "audio/mpeg" and speech.data.startswith(b"ID3") and speech.characters == len(text)
    expected = genai_price("tts-1", input_characters=len(text))
    assert speech.cost is not None and speech.cost.total == expected > 0
    assert client.spent == expected  # the budget counts it
    speech.save(tmp_path / "out.mp3")
    assert (tmp_path / "out.mp3").read_bytes() == speech.data


def test_gemini_tts_pcm_comes_back_as_a_valid_wav(gemini_server: FakeServer) -> None:
    hook = Operations()
    client = Client(providers={"gemini": {"base_url": gemini_server.url, "api_key": KEY}}, max_retries=0, hooks=[hook])
    speech = client.speak("Have a wonderful day!", model="gemini-tts", voice="Kore", instructions="Say cheerfully")
    (content,), config = fake_audio.gemini_checked_body(gemini_server.requests[0].json())
    assert [part.text for part in content.parts or ()] == ["Say cheerfully: Have a wonderful day!"]
    assert config.response_modalities == ["AUDIO"]
    assert config.speech_config.voice_config.prebuilt_voice_config.voice_name == "Kore"  # type: ignore[union-attr]
    decoded = decode_wav(speech.data)
    assert (speech.mime_type, decoded.rate, decoded.channels, decoded.sample_width) == ("audio/wav", 24000, 1, 2)
    assert speech.usage is not None and speech.usage.output_audio_tokens > 0
    expected = genai_price(
        "gemini-3.8-flash-tts",
        "google",
        input_tokens=speech.usage.input_tokens,
        output_tokens=speech.usage.output_tokens,
        output_audio_tokens=speech.usage.output_audio_tokens,
    )
    assert speech.cost is not None and speech.cost.total == expected
    assert hook.calls == [("text_to_speech", "Speech")]


def test_aspeak(gemini_server: FakeServer) -> None:
    async def run() -> Speech:
        async with Client(providers={"gemini": {"base_url": gemini_server.url, "api_key": KEY}}) as client:
            return await client.aspeak("hi", model="gemini-tts", voice="Puck")

    assert decode_wav(asyncio.run(run()).data).frames > 0


def test_a_gemini_tts_model_answers_complete_in_audio(gemini_server: FakeServer) -> None:
    client = Client(providers={"gemini": {"base_url": gemini_server.url, "api_key": KEY}}, max_retries=0)
    reply = client.complete("Have a wonderful day!", model="gemini-tts", audio={"voice": "Kore", "format": "wav"})
    (content,), config = fake_audio.gemini_checked_body(gemini_server.requests[0].json())
    assert [part.text for part in content.parts or ()] == ["Have a wonderful day!"]
    assert config.response_modalities == ["AUDIO"]
    assert config.speech_config.voice_config.prebuilt_voice_config.voice_name == "Kore"  # type: ignore[union-attr]
    assert reply.audio is not None and reply.audio.mime_type == "audio/wav"
    decoded = decode_wav(reply.audio.data)  # the raw PCM, wrapped as speak() wraps it
    assert (decoded.rate, decoded.channels, decoded.sample_width) == (24000, 1, 2) and decoded.frames > 0
    assert (reply.text, reply.audio.transcript) == ("", "")  # a TTS model says no text besides
    assert reply.usage.output_audio_tokens == reply.usage.output_tokens > 0
    expected = genai_price(
        "gemini-3.8-flash-tts",
        "google",
        input_tokens=reply.usage.input_tokens,
        output_tokens=reply.usage.output_tokens,
        output_audio_tokens=reply.usage.output_audio_tokens,
    )
    assert reply.cost is not None and reply.cost.total == expected


def test_a_gemini_tts_model_streams_audio_that_joins_to_the_same_answer(gemini_server: FakeServer) -> None:
    from fmclient._media import pcm_as_wav

    client = Client(providers={"gemini": {"base_url": gemini_server.url, "api_key": KEY}}, max_retries=0)
    whole = client.complete("Have a wonderful day!", model="gemini-tts", audio={"voice": "Kore"})
    stream = client.stream("Have a wonderful day!", model="gemini-tts", audio={"voice": "Kore"})
    pieces = [chunk for chunk in stream if chunk.audio]

    assert ":streamGenerateContent" in gemini_server.requests[1].path
    assert len(pieces) == 3  # the fake streams the PCM in three events
    assert {chunk.audio_mime_type for chunk in pieces} == {"audio/L16;codec=pcm;rate=24000"}
    joined = b"".join(chunk.audio for chunk in pieces)
    assert whole.audio is not None and pcm_as_wav(joined, "audio/L16;codec=pcm;rate=24000") == whole.audio.data
    streamed = stream.completion
    assert streamed is not None and streamed.audio == whole.audio  # the same WAV, mime type, transcript
    assert streamed.usage.output_audio_tokens == whole.usage.output_audio_tokens > 0


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (
            "gemini/gemini-2.5-flash-preview-tts",
            {"audio": {"voice": "Kore"}, "stream": True},
            "streamed audio answers",
        ),
        ("gemini-tts", {}, "answers in audio only"),
        ("gemini-tts", {"audio": {"voice": "Kore", "format": "mp3"}}, "use 'wav'"),
        ("gemini-tts", {"audio": {"voice": "Kore", "speed": 1.2}}, "not speed"),
        ("gemini/gemini-2.5-flash-native-audio-preview-09-2025", {"audio": {"voice": "Kore"}}, "Live API"),
    ],
)
def test_gemini_audio_answers_it_cannot_give_are_refused_unsent(
    gemini_server: FakeServer, model: str, kwargs: dict[str, Any], message: str
) -> None:
    client = Client(providers={"gemini": {"base_url": gemini_server.url, "api_key": KEY}}, max_retries=0)
    stream = kwargs.pop("stream", False)
    with pytest.raises(UnsupportedFeatureError, match=message):
        if stream:
            list(client.stream("hi", model=model, **kwargs))
        else:
            client.complete("hi", model=model, **kwargs)
    assert gemini_server.requests == []


# -- refused before sending --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c.transcribe(b"", model="openai/whisper-1"), ValueError, "empty"),
        (lambda c: c.transcribe(b"not audio at all", model="openai/whisper-1"), ValueError, "could not be told"),
        (
            lambda c: c.transcribe(ebml_head(b"matroska"), model="openai/whisper-1"),
            UnsupportedFeatureError,
            "does not take audio/x-matroska",
        ),
        (
            lambda c: c.transcribe(tone_wav(0.1), model="openai/whisper-1", mime_type="audio/mpeg"),
            ValueError,
            "its bytes are audio/wav",
        ),
        (
            lambda c: c.transcribe(tone_wav(0.1), model="openai/whisper-1", mime_type="text/plain"),
            ValueError,
            "not an audio type",
        ),
        (lambda c: c.transcribe("https://example.com/a.wav", model="openai/whisper-1"), ValueError, "not fetched"),
        (lambda c: c.transcribe(tone_wav(0.1), model="openai/gpt-4o"), UnsupportedFeatureError, "does not transcribe"),
        (lambda c: c.transcribe(tone_wav(0.1), model="openai/tts-1"), UnsupportedFeatureError, "does not transcribe"),
        (
            lambda c: c.transcribe(b"FORM\x00\x00\x00\x00AIFF" + bytes(8), model="openai/whisper-1"),
            UnsupportedFeatureError,
            "audio/aiff",
        ),
        (
            lambda c: c.transcribe(tone_wav(0.1), model="ollama/llama3.2"),
            UnsupportedFeatureError,
            "does not transcribe",
        ),
        (lambda c: c.transcribe(tone_wav(0.1), model="gemini-tts"), UnsupportedFeatureError, "does not transcribe"),
        (lambda c: c.speak("x" * 4097, model="openai/tts-1", voice="alloy"), UnsupportedFeatureError, "4096"),
        (
            lambda c: c.speak("hi", model="openai/tts-1", voice="alloy", instructions="calm"),
            UnsupportedFeatureError,
            "instructions",
        ),
        (
            lambda c: c.speak("hi", model="openai/tts-1", voice="alloy", format="ogg"),
            UnsupportedFeatureError,
            "format='ogg'",
        ),
        (
            lambda c: c.speak("hi", model="gemini-tts", voice="Kore", format="mp3"),
            UnsupportedFeatureError,
            "format='mp3'",
        ),
        (
            lambda c: c.speak("hi", model="openai/whisper-1", voice="alloy"),
            UnsupportedFeatureError,
            "does not make speech",
        ),
        (
            lambda c: c.speak("hi", model="openai/gpt-4o", voice="alloy"),
            UnsupportedFeatureError,
            "does not make speech",
        ),
        (lambda c: c.speak("  ", model="openai/tts-1", voice="alloy"), ValueError, "empty"),
        (lambda c: c.speak("hi", model="openai/tts-1", voice=""), ValueError, "voice"),
        (lambda c: c.complete("hi", model="openai/whisper-1"), UnsupportedFeatureError, "a transcription model"),
    ],
)
def test_bad_input_is_refused_with_zero_requests(
    fake_server: FakeServer, gemini_server: FakeServer, call: Any, error: type[Exception], message: str
) -> None:
    FakeOpenAI(fake_server)
    client = Client(
        providers={
            "openai": {"base_url": fake_server.url + "/v1", "api_key": KEY},
            "gemini": {"base_url": gemini_server.url, "api_key": KEY},
            "ollama": {"base_url": fake_server.url},
        }
    )
    with pytest.raises(error, match=message):
        call(client)
    assert fake_server.requests == [] and gemini_server.requests == []


def test_a_file_over_the_upload_limit_is_refused_before_sending(fake_server: FakeServer) -> None:
    FakeOpenAI(fake_server)
    big = tone_wav(0.01) + bytes(25 * 1024 * 1024)
    with pytest.raises(UnsupportedFeatureError, match="at most 26214400 bytes"):
        openai_client(fake_server).transcribe(big, model="openai/whisper-1")
    # Vertex AI has no Files API: audio over the inline limit is refused there (the Gemini API
    # uploads it: tests/test_media_gemini_files.py).
    inline = tone_wav(0.01) + bytes(21 * 1024 * 1024)
    vertex = {"type": "gemini", "base_url": fake_server.url, "vertexai": True, "api_key": KEY}
    with pytest.raises(UnsupportedFeatureError, match=r"at most 20971520 bytes.*Vertex AI has no Files API"):
        Client(providers={"vertex": vertex}).transcribe(inline, model="vertex/gemini-3.8-flash")
    assert fake_server.requests == []


@pytest.mark.parametrize(
    ("data", "expected", "filename"),
    [
        (ebml_head(b"webm"), "audio/webm", "audio.webm"),
        (ebml_head(None), "audio/x-matroska", "audio.mka"),  # EBML without a DocType: Matroska
        (mp4_head(b"mp42"), "audio/mp4", "audio.m4a"),  # a brand that does not say audio or video
        (mp4_head(b"M4A "), "audio/mp4", "audio.m4a"),
    ],
    ids=["webm", "ebml-without-doctype", "mp4-brand-mp42", "m4a"],
)
def test_transcribe_and_an_audio_part_tell_the_same_type(data: bytes, expected: str, filename: str) -> None:
    from fmclient._speech import build_transcription_request
    from fmclient.types import AudioPart

    request = build_transcription_request(data, mime_type=None, language=None, prompt=None, provider_options={})
    assert (request.mime_type, request.filename) == (expected, filename)
    assert AudioPart.from_source(data).media_type == expected


def test_audio_whose_bytes_do_not_tell_is_typed_by_its_file_name(tmp_path: Path) -> None:
    from fmclient._speech import build_transcription_request
    from fmclient.types import AudioPart

    file = tmp_path / "talk.mp3"
    file.write_bytes(bytes(64))  # no header: a raw stream the name alone describes
    request = build_transcription_request(file, mime_type=None, language=None, prompt=None, provider_options={})
    assert (request.mime_type, request.filename) == ("audio/mpeg", "talk.mp3")
    assert AudioPart.from_path(file).media_type == "audio/mpeg"


def test_a_fallback_that_cannot_take_the_audio_is_skipped_unsent(
    openai_fake: FakeOpenAI, gemini_server: FakeServer
) -> None:
    openai_fake.audio = type("Down", (), {"handle": staticmethod(lambda r, p: openai_error(503, "overloaded"))})()  # type: ignore[assignment]
    webm = ebml_head(b"webm")  # WebM: OpenAI takes it, Gemini does not
    client = both_client(openai_fake.server, gemini_server, max_retries=0)
    with pytest.raises(ServiceUnavailableError) as raised:
        client.transcribe(webm, model="openai/whisper-1", fallbacks=["gemini-flash"])
    assert [a.skipped for a in raised.value.attempts] == [False, True]
    assert gemini_server.requests == []


# -- the mock, deprecations --------------------------------------------------------------------
def test_the_mock_answers_transcribe_and_speak_and_enforces_the_profiles() -> None:
    with MockProvider() as mock:
        mock.add_transcription("scripted words")
        mock.add_speech_error(RateLimitError)
        client = Client()
        assert client.transcribe(tone_wav(0.1), model="gpt-transcribe").text == "scripted words"
        assert mock.transcription_requests[0].mime_type == "audio/wav"
        speech = client.speak("hi", model="gemini-tts", voice="Kore", max_retries=1)
        assert decode_wav(speech.data).frames > 0 and mock.sleeps  # the 429 was retried
        with pytest.raises(UnsupportedFeatureError):
            client.speak("hi", model="gemini-tts", voice="Kore", format="mp3")
        assert [c.kind for c in mock.calls] == ["transcribe", "speak", "speak"]


def test_openai_speech_models_retiring_per_the_sdk_warn_once(
    openai_fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    client = openai_client(openai_fake.server, max_retries=0)
    with caplog.at_level(logging.WARNING, logger="fmclient"):
        client.speak("hi", model="openai/tts-1-hd", voice="alloy")
        client.speak("hi", model="openai/tts-1-hd", voice="alloy")
    assert [r.getMessage() for r in caplog.records if "tts-1-hd" in r.getMessage()] == [
        "openai/tts-1-hd is deprecated: its provider retires it on 2027-01-06 (per the installed openai SDK); "
        "point the alias or model name at a current model"
    ]


def test_pcm_as_wav_reads_the_rate_from_the_mime_type() -> None:
    from fmclient.providers.gemini import pcm_as_wav

    wav = pcm_as_wav(bytes(3200), "audio/L16;codec=pcm;rate=16000")
    assert decode_wav(wav) == fake_audio.DecodedWAV(1, 2, 16000, 1600)
    assert io.BytesIO(wav).read(4) == b"RIFF" and base64.b64encode(wav)


def test_the_openai_audio_models_retirement_dates_come_from_their_own_sdk_listings() -> None:
    from fmclient.deprecations import deprecation, known_models

    found = deprecation("openai", "gpt-4o-transcribe")
    assert found is not None and found.retires == "2027-02-26"
    found = deprecation("openai", "gpt-4o-mini-tts")
    assert found is not None and found.retires == "2027-01-06"
    assert deprecation("openai", "gpt-transcribe") is None
    assert {"gpt-transcribe", "whisper-1", "tts-1"} <= (known_models("openai") or set())


@pytest.mark.parametrize(
    "options",
    [
        {"modalities": ["text", "audio"]},
        {"extra_body": {"audio": {"voice": "alloy", "format": "wav"}}},
    ],
)
def test_an_audio_answer_asked_through_provider_options_is_refused_unsent(
    openai_fake: FakeOpenAI, options: dict[str, Any]
) -> None:
    # Through provider options the profile's check and message.audio's parsing would be skipped.
    client = openai_client(openai_fake.server, max_retries=0)
    with pytest.raises(UnsupportedFeatureError, match="audio answers through provider options"):
        client.complete("Say hi", model="openai/gpt-audio-mini", **options)
    assert openai_fake.server.requests == []


def test_opentelemetry_spans_name_the_operation_and_carry_the_cost(openai_fake: FakeOpenAI) -> None:
    from tests.test_telemetry import make_otel

    otel = make_otel()
    client = openai_client(openai_fake.server, max_retries=0, hooks=[otel.hook])
    text = "Read this aloud."
    client.speak(text, model="openai/tts-1", voice="alloy")
    call, attempts = otel.spans()
    assert call.name == "text_to_speech tts-1" and len(attempts) == 1
    assert call.attributes is not None
    assert call.attributes["gen_ai.operation.name"] == "text_to_speech"
    assert call.attributes["fmclient.cost.usd"] == float(genai_price("tts-1", input_characters=len(text)))


# -- audio answers -----------------------------------------------------------------------------
def test_an_audio_answer_comes_back_and_its_id_goes_back_on_the_next_turn(openai_fake: FakeOpenAI) -> None:
    from fmclient.types import Message
    from tests.fakes.openai import Answer

    openai_fake.answer(Answer("ok", model="gpt-audio-mini-2025-12-15"))
    client = openai_client(openai_fake.server, max_retries=0)
    reply = client.complete("Say hi", model="openai/gpt-audio-mini", audio={"voice": "alloy", "format": "wav"})
    (body,) = openai_fake.bodies()
    assert (body["modalities"], body["audio"]) == (["text", "audio"], {"voice": "alloy", "format": "wav"})
    assert reply.audio is not None and reply.text == "ok" == reply.audio.transcript
    assert decode_wav(reply.audio.data).rate == 24000 and reply.audio.mime_type == "audio/wav"
    assert (reply.audio.id, reply.audio.expires_at) == ("audio_1", 1_700_003_600)
    assert reply.usage.output_audio_tokens == reply.usage.output_tokens > 0
    expected = genai_price(
        "gpt-audio-mini",
        input_tokens=reply.usage.input_tokens,
        output_tokens=reply.usage.output_tokens,
        output_audio_tokens=reply.usage.output_audio_tokens,
    )
    assert reply.cost is not None and reply.cost.total == expected  # audio out at its own price
    client.complete(
        [Message.user("Say hi"), reply.message, Message.user("Again")],
        model="openai/gpt-audio-mini",
        audio={"voice": "alloy", "format": "wav"},
    )
    assistant = openai_fake.bodies()[1]["messages"][1]
    assert assistant["role"] == "assistant" and assistant["audio"] == {"id": "audio_1"}


@pytest.mark.parametrize(
    ("model", "stream", "message"),
    [
        ("openai/gpt-4o", False, "does not support audio answers"),
        ("claude-sonnet", False, "does not support audio answers"),
        ("gemini-flash", False, "does not support audio answers"),
        ("openai/gpt-audio-mini", True, "streamed audio answers in format 'mp3': it streams pcm16 only"),
    ],
)
def test_an_audio_answer_from_a_model_that_cannot_give_one_is_refused_unsent(
    fake_server: FakeServer, model: str, stream: bool, message: str
) -> None:
    FakeOpenAI(fake_server)
    client = Client(
        providers={
            "openai": {"base_url": fake_server.url + "/v1", "api_key": KEY},
            "anthropic": {"base_url": fake_server.url, "api_key": KEY},
            "gemini": {"base_url": fake_server.url, "api_key": KEY},
        }
    )
    with pytest.raises(UnsupportedFeatureError, match=message):
        if stream:  # OpenAI streams audio as pcm16 only (wav wraps it): an mp3 cannot be streamed
            client.stream("hi", model=model, audio={"voice": "alloy", "format": "mp3"})
        else:
            client.complete("hi", model=model, audio={"voice": "alloy"})
    assert fake_server.requests == []


def test_the_mock_gives_an_audio_answer() -> None:
    with MockProvider() as mock:
        mock.add_reply("spoken words")
        reply = Client().complete("hi", model="openai/gpt-audio-mini", audio={"voice": "alloy"})
        assert reply.audio is not None and reply.audio.transcript == "spoken words"
        assert decode_wav(reply.audio.data).frames > 0
        assert mock.last_request.audio == {"voice": "alloy", "format": "wav"}


def test_the_mock_streams_an_audio_answer_that_joins_to_its_complete_answer() -> None:
    with MockProvider() as mock:
        mock.add_reply("spoken words")
        mock.add_reply("spoken words")
        whole = Client().complete("hi", model="gemini-tts", audio={"voice": "Kore"})
        stream = Client().stream("hi", model="gemini-tts", audio={"voice": "Kore"})
        pieces = [chunk.audio for chunk in stream if chunk.audio]
        assert len(pieces) == 2
        assert stream.completion is not None and stream.completion.audio == whole.audio


def _audio_pieces(chunks: list[Any]) -> list[Any]:
    return [chunk for chunk in chunks if chunk.audio or chunk.audio_id or chunk.audio_expires_at]


@pytest.mark.parametrize("answer_format", ["pcm16", "wav"])
def test_a_streamed_audio_answer_joins_into_the_unstreamed_one(openai_fake: FakeOpenAI, answer_format: str) -> None:
    from fmclient.types import Message
    from tests.fakes.openai import Answer

    openai_fake.answer(*(Answer("Hello there Ada", model="gpt-audio-mini-2025-12-15") for _ in range(3)))
    client = openai_client(openai_fake.server, max_retries=0)
    asked = {"voice": "alloy", "format": answer_format}
    unstreamed = client.complete("Say hi", model="openai/gpt-audio-mini", audio=asked)
    stream = client.stream("Say hi", model="openai/gpt-audio-mini", audio=asked)
    chunks = list(stream)
    streamed = stream.completion
    # The wire: modalities and pcm16, the one format a stream takes; usage asked for.
    body = openai_fake.bodies()[1]
    assert (body["stream"], body["modalities"]) == (True, ["text", "audio"])
    assert body["audio"] == {"voice": "alloy", "format": "pcm16"}
    # The pieces: raw 24 kHz PCM in several chunks, the transcript as the text, the id and expiry.
    pieces = _audio_pieces(chunks)
    assert len([p for p in pieces if p.audio]) == 3
    assert {p.audio_mime_type for p in pieces} == {"audio/pcm;rate=24000;channels=1;bits=16"}
    assert "".join(c.text for c in chunks) == "Hello there Ada"
    assert [p.audio_id for p in pieces if p.audio_id] == ["audio_1"] and pieces[-1].audio_expires_at == 1_700_003_600
    # Joined: the same answer as unstreamed, bytes (a WAV for wav, the samples for pcm16) and all.
    assert streamed.audio is not None and unstreamed.audio is not None
    assert streamed.audio == unstreamed.audio
    if answer_format == "wav":
        assert streamed.audio.mime_type == "audio/wav" and decode_wav(streamed.audio.data).rate == 24000
    else:
        assert streamed.audio.data == b"".join(p.audio for p in pieces)
    assert streamed.text == unstreamed.text == "Hello there Ada"
    assert streamed.usage == unstreamed.usage and streamed.usage.output_audio_tokens > 0
    assert streamed.cost is not None and streamed.cost.total == unstreamed.cost.total  # type: ignore[union-attr]
    # The id goes back on the next turn, as an unstreamed answer's does.
    assert streamed.message.provider_state == unstreamed.message.provider_state == {"openai": {"audio_id": "audio_1"}}
    client.complete(
        [Message.user("Say hi"), streamed.message, Message.user("Again")], model="openai/gpt-audio-mini", audio=asked
    )
    assert openai_fake.bodies()[2]["messages"][1]["audio"] == {"id": "audio_1"}


def test_an_async_stream_gives_the_same_audio_answer(openai_fake: FakeOpenAI) -> None:
    from tests.fakes.openai import Answer

    openai_fake.answer(Answer("Hi", model="gpt-audio-mini-2025-12-15"), Answer("Hi", model="gpt-audio-mini-2025-12-15"))
    client = openai_client(openai_fake.server, max_retries=0)
    unstreamed = client.complete("Say hi", model="openai/gpt-audio-mini", audio={"voice": "alloy"})

    async def main() -> tuple[list[Any], Any]:
        stream = client.astream("Say hi", model="openai/gpt-audio-mini", audio={"voice": "alloy"})
        chunks = [chunk async for chunk in stream]
        return chunks, await stream.get_completion()

    chunks, streamed = asyncio.run(main())
    assert len([p for p in _audio_pieces(chunks) if p.audio]) == 3
    assert streamed.audio == unstreamed.audio and streamed.audio.mime_type == "audio/wav"
    assert streamed.cost is not None and streamed.cost.total == unstreamed.cost.total  # type: ignore[union-attr]


def test_the_responses_api_refuses_audio_answers_unsent(openai_fake: FakeOpenAI) -> None:
    # The installed SDK's responses.create takes no modalities and no audio: the Responses API
    # makes no spoken answers, streamed or not.
    client = openai_client(openai_fake.server, max_retries=0)
    audio = {"voice": "alloy", "format": "pcm16"}
    with pytest.raises(UnsupportedFeatureError, match="the Responses API makes no audio answers"):
        client.complete("hi", model="openai/gpt-audio-mini", audio=audio, api="responses")
    with pytest.raises(UnsupportedFeatureError, match="the Responses API makes no audio answers"):
        list(client.stream("hi", model="openai/gpt-audio-mini", audio=audio, api="responses"))
    assert openai_fake.server.requests == []


def test_the_mock_streams_the_audio_answer_it_gives_unstreamed() -> None:
    with MockProvider() as mock:
        mock.add_reply("spoken words")
        mock.add_reply("spoken words")
        client = Client()
        unstreamed = client.complete("hi", model="openai/gpt-audio-mini", audio={"voice": "alloy"})
        stream = client.stream("hi", model="openai/gpt-audio-mini", audio={"voice": "alloy"})
        assert _audio_pieces(list(stream)) and stream.completion.audio == unstreamed.audio
        with pytest.raises(UnsupportedFeatureError, match="it streams pcm16 only"):
            client.stream("hi", model="openai/gpt-audio-mini", audio={"voice": "alloy", "format": "mp3"})
