"""Real audio for the tests, and the audio endpoints of the OpenAI and Gemini fakes.

* :func:`tone_wav` makes a valid WAV with the stdlib ``wave`` module; :func:`spoken_wav` real
  speech from Debian's ``espeak-ng`` (None where it is not installed).
* :class:`OpenAIAudio` answers ``/audio/transcriptions`` (a multipart upload, each form field
  checked against the openai SDK's ``TranscriptionCreateParams``, the file opened as a WAV where
  it is one) and ``/audio/speech`` (the JSON body checked against ``SpeechCreateParams``; a real
  WAV back when asked for one).
* :func:`gemini_audio_answer` answers a Gemini ``generateContent`` that carries audio or asks for
  audio out, the body checked against google-genai's own ``Content`` and ``GenerationConfig``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
import struct
import subprocess
import wave
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal, get_args, get_origin, get_type_hints

from tests.fakes.server import RecordedRequest, Reply


# -- real audio --------------------------------------------------------------------------------
def tone_wav(seconds: float = 1.0, *, rate: int = 16000, frequency: float = 440.0) -> bytes:
    """A mono 16-bit sine tone as a WAV file."""
    frames = int(seconds * rate)
    samples = (int(12000 * math.sin(2 * math.pi * frequency * i / rate)) for i in range(frames))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return out.getvalue()


def spoken_wav(text: str) -> bytes | None:
    """``text`` spoken by espeak-ng, as a WAV file; None where espeak-ng is not installed."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        return None
    import tempfile

    # -w writes a finished header (--stdout leaves the sizes at their streaming placeholders).
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/speech.wav"
        subprocess.run([binary, "-w", path, text], check=True, capture_output=True, timeout=60)
        with open(path, "rb") as file:
            return file.read()


@dataclass(frozen=True)
class DecodedWAV:
    channels: int
    sample_width: int
    rate: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def decode_wav(data: bytes) -> DecodedWAV:
    """Open a WAV file the way a player would (AssertionError if it is not one)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", "not a RIFF/WAVE file"
    with wave.open(io.BytesIO(data), "rb") as wav:
        frames = wav.getnframes()
        decoded = DecodedWAV(wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), frames)
        assert len(wav.readframes(frames)) == frames * decoded.channels * decoded.sample_width, "truncated samples"
    return decoded


def error_reply(status: int, message: str) -> Reply:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return Reply(status=status, body=body)


# -- OpenAI's Audio API ------------------------------------------------------------------------
@dataclass
class Upload:
    """What one ``/audio/transcriptions`` request carried."""

    fields: dict[str, Any]
    filename: str
    content_type: str
    data: bytes


def parse_multipart(request: RecordedRequest) -> Upload:
    """The form fields and the file of a multipart/form-data body (stdlib email parser)."""
    content_type = request.headers.get("content-type", "")
    assert content_type.startswith("multipart/form-data; boundary="), content_type
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
    fields: dict[str, Any] = {}
    upload: Upload | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        filename = part.get_filename()
        if filename is not None:
            upload = Upload({}, filename, part.get_content_type(), payload)
            continue
        value = payload.decode()
        if name.endswith("[]"):  # the SDK's array form: timestamp_granularities[]=segment
            fields.setdefault(name[:-2], []).append(value)
        else:
            fields[name] = value
    assert upload is not None, "no file part in the upload"
    upload.fields = fields
    return upload


def _transcription_fields() -> set[str]:
    from openai.types.audio.transcription_create_params import TranscriptionCreateParamsBase

    return set(TranscriptionCreateParamsBase.__annotations__)


def _speech_rules() -> tuple[set[str], set[str]]:
    from openai.types.audio.speech_create_params import SpeechCreateParams

    def literals(hint: Any) -> set[str]:
        if get_origin(hint) is Literal:
            return {arg for arg in get_args(hint) if isinstance(arg, str)}
        return {value for arg in get_args(hint) for value in literals(arg)}

    hints = get_type_hints(SpeechCreateParams)
    return set(SpeechCreateParams.__annotations__), literals(hints["response_format"])


@dataclass
class OpenAIAudio:
    """The Audio API of the OpenAI fake. ``transcript`` is what every transcription "hears";
    ``uploads`` and ``speech_bodies`` record what came in."""

    transcript: str = "hello world"
    uploads: list[Upload] = field(default_factory=list)
    speech_bodies: list[dict[str, Any]] = field(default_factory=list)

    def handle(self, request: RecordedRequest, path: str) -> Reply:
        if path.endswith("/audio/transcriptions"):
            return self.transcription(request)
        if path.endswith("/audio/speech"):
            return self.speech(request)
        return error_reply(404, f"Invalid URL (POST {path})")

    def transcription(self, request: RecordedRequest) -> Reply:
        upload = parse_multipart(request)
        self.uploads.append(upload)
        unknown = set(upload.fields) - _transcription_fields()
        if unknown:
            return error_reply(400, f"Unrecognized request argument supplied: {sorted(unknown)}")
        if "model" not in upload.fields:
            return error_reply(400, "you must provide a model parameter")
        if not upload.data:
            return error_reply(400, "Audio file might be corrupted or unsupported")
        extension = upload.filename.rsplit(".", 1)[-1]
        if extension not in ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"):
            return error_reply(400, f"Unrecognized file format. Supported formats: [...], got {extension!r}")
        seconds = decode_wav(upload.data).seconds if extension == "wav" else 1.0
        model = upload.fields["model"]
        response_format = upload.fields.get("response_format", "json")
        words = self.transcript.split()
        if response_format == "verbose_json":
            if not model.startswith("whisper"):
                return error_reply(400, f"response_format 'verbose_json' is not compatible with model '{model}'")
            half = round(seconds / 2, 3)
            segments = [
                {"id": 0, "seek": 0, "start": 0.0, "end": half, "text": " " + " ".join(words[: len(words) // 2 or 1])},
                {
                    "id": 1,
                    "seek": 0,
                    "start": half,
                    "end": seconds,
                    "text": " " + " ".join(words[len(words) // 2 or 1 :]),
                },
            ]
            for segment in segments:
                segment.update(
                    tokens=[1], temperature=0.0, avg_logprob=-0.2, compression_ratio=1.0, no_speech_prob=0.01
                )
            return Reply(
                body={
                    "task": "transcribe",
                    "language": "english",
                    "duration": seconds,
                    "text": self.transcript,
                    "segments": segments if "segment" in upload.fields.get("timestamp_granularities", []) else None,
                    "usage": {"type": "duration", "seconds": math.ceil(seconds)},
                }
            )
        if response_format != "json":
            return error_reply(400, f"fake answers json and verbose_json, not {response_format!r}")
        if model == "whisper-1":
            return Reply(body={"text": self.transcript, "usage": {"type": "duration", "seconds": math.ceil(seconds)}})
        if model == "gpt-transcribe":
            return Reply(
                body={
                    "text": self.transcript,
                    "languages": [{"code": "en"}],
                    "usage": {"type": "duration", "seconds": math.ceil(seconds)},
                }
            )
        audio_tokens = max(1, int(seconds * 10))
        text_tokens = len((upload.fields.get("prompt") or "").split())
        output = len(words)
        usage = {
            "type": "tokens",
            "input_tokens": audio_tokens + text_tokens,
            "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
            "output_tokens": output,
            "total_tokens": audio_tokens + text_tokens + output,
        }
        return Reply(body={"text": self.transcript, "usage": usage})

    def speech(self, request: RecordedRequest) -> Reply:
        body = request.json()
        self.speech_bodies.append(body)
        allowed, formats = _speech_rules()
        unknown = set(body) - allowed
        if unknown:
            return error_reply(400, f"Unrecognized request argument supplied: {sorted(unknown)}")
        if not body.get("input") or not body.get("voice") or not body.get("model"):
            return error_reply(400, "input, voice and model are required")
        if len(body["input"]) > 4096:
            return error_reply(400, "input is longer than 4096 characters")
        response_format = body.get("response_format", "mp3")
        if response_format not in formats:
            return error_reply(400, f"Invalid response_format {response_format!r}")
        if "instructions" in body and body["model"].startswith("tts-1"):
            return error_reply(400, "instructions are not supported for tts-1 models")
        seconds = max(0.2, len(body["input"]) / 15)
        pcm = tone_wav(seconds, rate=24000)[44:]  # the samples of a 24 kHz tone
        audio = {
            "wav": tone_wav(seconds, rate=24000),
            "pcm": pcm,
            "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400),
            "flac": b"fLaC" + bytes(100),
            "opus": b"OggS" + bytes(100),
            "aac": b"\xff\xf1\x50\x80" + bytes(100),
        }[response_format]
        content_type = {"wav": "audio/wav", "pcm": "audio/pcm", "mp3": "audio/mpeg"}.get(
            response_format, "audio/" + response_format
        )
        return Reply(body=audio, content_type=content_type)


# -- Gemini ------------------------------------------------------------------------------------
def gemini_checked_body(body: dict[str, Any]) -> tuple[list[Any], Any]:
    """The request's contents and generation config as google-genai's own types (ValidationError
    for anything the SDK's models do not have)."""
    from google.genai import types

    contents = [types.Content.model_validate(item) for item in body.get("contents") or ()]
    config = types.GenerationConfig.model_validate(body.get("generationConfig") or {})
    return contents, config


def gemini_audio_answer(body: dict[str, Any], *, transcript: str = "hello world") -> Reply:
    """A ``generateContent`` answer: audio out (24 kHz PCM, as the TTS models send it) when the
    config asks for it, else the transcript of the inline audio (a WAV is opened to count its
    seconds at 32 tokens each, as Gemini counts audio)."""
    contents, config = gemini_checked_body(body)
    modalities = [str(getattr(m, "value", m)) for m in config.response_modalities or ()]
    if modalities == ["AUDIO"]:
        voice = config.speech_config.voice_config.prebuilt_voice_config.voice_name  # type: ignore[union-attr]
        assert voice, "no voice name"
        text = "".join(part.text or "" for content in contents for part in content.parts or ())
        pcm = tone_wav(max(0.2, len(text) / 15), rate=24000)[44:]
        usage = {
            "promptTokenCount": len(text.split()),
            "candidatesTokenCount": len(pcm) // 1500,
            "totalTokenCount": len(text.split()) + len(pcm) // 1500,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": len(text.split())}],
            "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": len(pcm) // 1500}],
        }
        part = {"inlineData": {"mimeType": "audio/L16;codec=pcm;rate=24000", "data": base64.b64encode(pcm).decode()}}
        return Reply(
            body={
                "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage,
                "modelVersion": "gemini-3.8-flash-tts",
            }
        )
    blobs = [part.inline_data for content in contents for part in content.parts or () if part.inline_data]
    assert blobs and all(blob.mime_type and blob.mime_type.startswith("audio/") for blob in blobs), "no audio part"
    seconds = sum(decode_wav(blob.data).seconds if blob.mime_type == "audio/wav" else 1.0 for blob in blobs)  # type: ignore[arg-type]
    audio_tokens = math.ceil(seconds * 32)
    prompt_text = sum(len((part.text or "").split()) for content in contents for part in content.parts or ())
    usage = {
        "promptTokenCount": audio_tokens + prompt_text,
        "candidatesTokenCount": len(transcript.split()),
        "totalTokenCount": audio_tokens + prompt_text + len(transcript.split()),
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": prompt_text},
            {"modality": "AUDIO", "tokenCount": audio_tokens},
        ],
    }
    return Reply(
        body={
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": transcript}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": usage,
            "modelVersion": "gemini-3.8-flash",
        }
    )


def gemini_handler(transcript: str = "hello world") -> Any:
    """A FakeServer handler answering every ``generateContent`` with :func:`gemini_audio_answer`."""

    def handle(request: RecordedRequest) -> Reply:
        streamed = ":streamGenerateContent" in request.path
        if ":generateContent" not in request.path and not streamed:
            return error_reply(404, f"not faked: {request.path}")
        try:
            reply = gemini_audio_answer(json.loads(request.body), transcript=transcript)
            return gemini_streamed(reply.body) if streamed else reply
        except Exception as error:  # the SDK's own types refused the body: the API would too
            return Reply(status=400, body={"error": {"code": 400, "message": str(error), "status": "INVALID_ARGUMENT"}})

    return handle


def gemini_streamed(body: dict[str, Any], pieces: int = 3) -> Reply:
    """An answer as ``streamGenerateContent?alt=sse`` sends it: an audio answer's PCM in
    ``pieces`` events (as the TTS models stream it, cut on sample boundaries), the last one with
    the finish reason and usage; a text answer in one event."""
    from tests.fakes.server import sse

    candidate = body["candidates"][0]
    [part] = candidate["content"]["parts"]
    if "inlineData" not in part:
        return Reply(chunks=sse([(None, body)]))
    pcm = base64.b64decode(part["inlineData"]["data"])
    step = -(-len(pcm) // pieces) // 2 * 2
    events = []
    for start in range(0, len(pcm), step):
        piece = {
            "inlineData": {
                "mimeType": part["inlineData"]["mimeType"],
                "data": base64.b64encode(pcm[start : start + step]).decode(),
            }
        }
        events.append(
            {
                "candidates": [{"content": {"role": "model", "parts": [piece]}, "index": 0}],
                "modelVersion": body["modelVersion"],
            }
        )
    events[-1]["candidates"][0]["finishReason"] = candidate["finishReason"]
    events[-1]["usageMetadata"] = body["usageMetadata"]
    return Reply(chunks=sse((None, event) for event in events))
