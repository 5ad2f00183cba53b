"""One "profile" per provider fake: the same faults, spoken in each provider's own wire format.

The cross-provider fault suite (``tests/test_faults.py``) and the secrets test drive every
adapter through one table. A profile knows, for its provider, how to point a ``Client`` at a
:class:`~tests.fakes.server.FakeServer` and how to build each scripted answer with that fake
module's own builders: a success (whole or streamed), an HTTP error of a given kind, an error
event inside a stream, a malformed body or event. The generic faults that are the same on every
wire (a TCP reset, a slow reply, a body or stream cut off, a stream missing its final event) are
built here from those pieces, so each fault is defined once.

A stream is modelled as ``preamble + one chunk per text piece + finale``: ``preamble`` chunks
carry no text (Anthropic's ``message_start``, OpenAI's role chunk), ``finale`` chunks are the
final event(s) an adapter must see before it calls the answer complete.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from fmclient.errors import (
    APIConnectionError,
    BadRequestError,
    FMClientError,
    ModelNotFoundError,
    ServiceUnavailableError,
)
from tests.fakes import anthropic as fa
from tests.fakes import bedrock as fb
from tests.fakes import gemini as fg
from tests.fakes import ollama as fo
from tests.fakes import openai as foa
from tests.fakes.server import RecordedRequest, Reply, ndjson, sse

__all__ = [
    "EXTRA_PROFILES",
    "PROFILES",
    "AnthropicProfile",
    "BedrockProfile",
    "BedrockTitanProfile",
    "GeminiProfile",
    "OllamaProfile",
    "OpenAIProfile",
    "Profile",
    "embeddings_reply",
    "is_streamed",
    "profile_for",
]

#: The provider-specific HTTP failures a profile can answer with.
STATUS_FAULTS = ("429", "500", "502", "503", "overloaded", "bad-request", "bad-key", "unknown-model")

# A proxy or load balancer in front of any provider answers 502 with an HTML page, not the
# provider's JSON: that is the realistic 502 for every adapter.
GATEWAY_502 = Reply(status=502, body="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")


class Profile:
    """What the fault suite needs from one provider's fake."""

    name: ClassVar[str]
    model_id: ClassVar[str]
    preamble: ClassVar[int]
    finale: ClassVar[int]
    #: the error class the adapter raises for a 200 whose body is not valid JSON
    malformed_error: ClassVar[type[FMClientError]] = ServiceUnavailableError
    #: ... and for a stream event that cannot be decoded
    malformed_event_error: ClassVar[type[FMClientError]] = ServiceUnavailableError
    #: ... and for the non-retryable in-stream error event of :meth:`error_event`
    fatal_event_error: ClassVar[type[FMClientError]] = BadRequestError

    @property
    def model(self) -> str:
        return f"{self.name}/{self.model_id}"

    def table(self, url: str, api_key: str | None = "test-key-fault-suite") -> dict[str, Any]:
        """The ``providers={name: table}`` entry pointing the adapter at ``url``."""
        table: dict[str, Any] = {"base_url": url}
        if api_key is not None:
            table["api_key"] = api_key
        return table

    # -- provider-specific pieces -------------------------------------------------------------
    def reply(self, text: str) -> Reply:
        raise NotImplementedError

    def stream_chunks(self, pieces: Sequence[str]) -> list[bytes]:
        """Every chunk of a complete streamed answer of ``pieces``: preamble, pieces, finale."""
        raise NotImplementedError

    def status(self, fault: str, *, retry_after: str | None = None, message: str | None = None) -> Reply:
        """The provider's own answer for one of :data:`STATUS_FAULTS`."""
        raise NotImplementedError

    def error_event(self, *, fatal: bool, message: str | None = None) -> bytes:
        """An error inside a 200 stream: retryable (overloaded) or not (``fatal``)."""
        raise NotImplementedError

    def malformed_event(self) -> bytes:
        """A stream event the SDK cannot decode."""
        raise NotImplementedError

    def stream_content_type(self) -> str | None:
        return None

    # -- built from the pieces ------------------------------------------------------------------
    def stream(self, pieces: Sequence[str], **reply: Any) -> Reply:
        return self._stream_reply(self.stream_chunks(pieces), **reply)

    def _stream_reply(self, chunks: list[bytes], **reply: Any) -> Reply:
        return Reply(chunks=chunks, content_type=self.stream_content_type(), **reply)

    def malformed_body(self) -> Reply:
        return Reply(body=b'{"id": "half a JSON obj', content_type="application/json")

    def truncated_body(self, text: str) -> Reply:
        """A whole (non-streamed) JSON answer whose connection drops half-way through the body."""
        body = json.dumps(self.reply(text).body).encode()
        half = len(body) // 2
        return Reply(chunks=[body[:half], body[half:]], cut_after=1, content_type="application/json")

    def truncated_stream(self, pieces: Sequence[str], after: int) -> Reply:
        """The stream cut off after ``after`` text pieces; 0 cuts it inside the very first chunk,
        before anything could be decoded."""
        chunks = self.stream_chunks(pieces)
        if after == 0:
            first = chunks[0]
            return self._stream_reply([first[: len(first) // 2], first[len(first) // 2 :], *chunks[1:]], cut_after=1)
        return self._stream_reply(chunks, cut_after=self.preamble + after)

    def unfinished_stream(self, pieces: Sequence[str], after: int) -> Reply:
        """A stream that ends cleanly (a proper end of body) after ``after`` text pieces, without
        its final event."""
        chunks = self.stream_chunks(pieces)
        return self._stream_reply(chunks[: self.preamble + after])

    def stream_with_error(self, pieces: Sequence[str], after: int, *, fatal: bool, message: str | None = None) -> Reply:
        chunks = self.stream_chunks(pieces)
        event = self.error_event(fatal=fatal, message=message)
        return self._stream_reply([*chunks[: self.preamble + after], event])

    def stream_malformed(self, pieces: Sequence[str]) -> Reply:
        chunks = self.stream_chunks(pieces)
        return self._stream_reply([*chunks[: self.preamble], self.malformed_event(), *chunks[self.preamble :]])


class AnthropicProfile(Profile):
    name = "anthropic"
    model_id = fa.MODEL
    preamble = 3  # message_start, ping, content_block_start
    finale = 1  # message_stop (content_block_stop and message_delta come before it)

    _types: ClassVar[dict[str, tuple[int, str]]] = {
        "429": (429, "rate_limit_error"),
        "500": (500, "api_error"),
        "503": (503, "api_error"),
        # Anthropic's own overload signal: 529 overloaded_error.
        "overloaded": (529, "overloaded_error"),
        "bad-request": (400, "invalid_request_error"),
        "bad-key": (401, "authentication_error"),
        "unknown-model": (404, "not_found_error"),
    }

    def reply(self, text: str) -> Reply:
        return fa.message_reply(text)

    def stream_chunks(self, pieces: Sequence[str]) -> list[bytes]:
        chunks = sse([fa.message_start(), fa.ping(), fa.content_block_start(0, {"type": "text", "text": ""})])
        chunks += sse(fa.text_delta(0, piece) for piece in pieces)
        # content_block_stop and message_delta carry no text: they ride on the last text chunk,
        # so that dropping the finale removes exactly message_stop.
        chunks[-1] += b"".join(sse([fa.content_block_stop(0), fa.message_delta("end_turn")]))
        return [*chunks, *sse([fa.message_stop()])]

    def status(self, fault: str, *, retry_after: str | None = None, message: str | None = None) -> Reply:
        if fault == "502":
            return GATEWAY_502
        code, kind = self._types[fault]
        headers = {"retry-after": retry_after} if retry_after is not None else None
        return fa.error_reply(code, message or f"{kind} from the fake", error_type=kind, headers=headers)

    def error_event(self, *, fatal: bool, message: str | None = None) -> bytes:
        kind = "invalid_request_error" if fatal else "overloaded_error"
        return sse([fa.error_event(kind, message or ("bad request" if fatal else "Overloaded"))])[0]

    def malformed_event(self) -> bytes:
        return b"event: content_block_delta\ndata: {broken\n\n"


class OpenAIProfile(Profile):
    name = "openai"
    model_id = "gpt-4o"
    preamble = 1  # the role chunk, with empty content
    finale = 3  # the finish chunk, the usage chunk and data: [DONE]

    _errors: ClassVar[dict[str, tuple[int, str, str | None]]] = {
        "429": (429, "requests", "rate_limit_exceeded"),
        "500": (500, "server_error", None),
        "503": (503, "server_error", None),
        # OpenAI has no 529: its overload answer is a 503 saying the engine is overloaded.
        "overloaded": (503, "server_error", "engine_overloaded"),
        "bad-request": (400, "invalid_request_error", None),
        "bad-key": (401, "invalid_request_error", "invalid_api_key"),
        "unknown-model": (404, "invalid_request_error", "model_not_found"),
    }

    def table(self, url: str, api_key: str | None = "test-key-fault-suite") -> dict[str, Any]:
        return super().table(url + "/v1", api_key)

    def reply(self, text: str) -> Reply:
        return Reply(body=foa.completion_body(foa.Answer(text)))

    def stream_chunks(self, pieces: Sequence[str]) -> list[bytes]:
        return foa.chunk_events(foa.Answer("".join(pieces), pieces=list(pieces)), include_usage=True)

    def status(self, fault: str, *, retry_after: str | None = None, message: str | None = None) -> Reply:
        if fault == "502":
            return GATEWAY_502
        code, kind, error_code = self._errors[fault]
        headers = {"retry-after": retry_after} if retry_after is not None else None
        text = message or (
            "The engine is currently overloaded, please try again later" if fault == "overloaded" else f"{fault} error"
        )
        return foa.error_reply(code, text, type=kind, code=error_code, headers=headers)

    def error_event(self, *, fatal: bool, message: str | None = None) -> bytes:
        error = (
            {"message": message or "bad request", "type": "invalid_request_error", "code": None}
            if fatal
            else {"message": message or "The server is overloaded", "type": "server_error", "code": None}
        )
        return sse([(None, {"error": error})])[0]

    def malformed_event(self) -> bytes:
        return b"data: {oops\n\n"


class GeminiProfile(Profile):
    name = "gemini"
    model_id = "gemini-2.5-flash"
    preamble = 0  # every event carries text
    finale = 1  # the event with finishReason (and usage)
    # google-genai reports a body or event it cannot parse as its own error, which the adapter
    # maps as a broken connection.
    malformed_error = APIConnectionError
    malformed_event_error = APIConnectionError

    _codes: ClassVar[dict[str, int]] = {"429": 429, "500": 500, "503": 503, "bad-request": 400, "unknown-model": 404}

    def reply(self, text: str) -> Reply:
        return fg.generate_reply(text)

    def stream_chunks(self, pieces: Sequence[str]) -> list[bytes]:
        # The final event carries no text of its own, so dropping it loses no piece.
        return sse((None, event) for event in fg.stream_events([*pieces, ""]))

    def status(self, fault: str, *, retry_after: str | None = None, message: str | None = None) -> Reply:
        if fault == "502":
            return GATEWAY_502
        headers = {"retry-after": retry_after} if retry_after is not None else None
        if fault == "overloaded":
            # Gemini has no 529: an overloaded model answers 503 UNAVAILABLE.
            return fg.error_reply(503, message or "The model is overloaded. Please try again later.", headers=headers)
        if fault == "bad-key":
            # Gemini answers a bad key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID.
            return fg.error_reply(
                400,
                message or "API key not valid. Please pass a valid API key.",
                details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
                headers=headers,
            )
        return fg.error_reply(self._codes[fault], message or f"{fault} error", headers=headers)

    def error_event(self, *, fatal: bool, message: str | None = None) -> bytes:
        body = fg.error_body(400, message or "bad request") if fatal else fg.error_body(503, message or "overloaded")
        return sse([(None, body)])[0]

    def malformed_event(self) -> bytes:
        return b"data: {oops\n\n"


class BedrockProfile(Profile):
    name = "bedrock"
    model_id = "anthropic.claude-sonnet-4-5-20250929-v1:0"  # Converse / ConverseStream
    preamble = 1  # messageStart
    finale = 2  # messageStop and metadata (contentBlockStop stays with the text)
    # botocore checks every event-stream frame's CRC: a corrupt frame is a broken connection.
    malformed_event_error = APIConnectionError

    _codes: ClassVar[dict[str, tuple[str, str]]] = {
        "429": ("ThrottlingException", "Too many requests, please wait before trying again."),
        "500": ("InternalServerException", "The server encountered an internal error."),
        "503": ("ServiceUnavailableException", "Bedrock is unable to process your request."),
        # Bedrock has no 529: ModelNotReadyException (429) is its "the model cannot serve you
        # right now" answer, which fmclient treats as the service being unavailable.
        "overloaded": ("ModelNotReadyException", "Model is not ready to serve inference requests."),
        "bad-request": ("ValidationException", "Malformed input request, please reformat your input"),
        # Bedrock answers a bad key at the AWS front door with 403, not 401.
        "bad-key": ("UnrecognizedClientException", "The security token included in the request is invalid."),
        # ...and an unknown model id with a 400 ValidationException.
        "unknown-model": ("ValidationException", "The provided model identifier is invalid."),
    }

    def table(self, url: str, api_key: str | None = None) -> dict[str, Any]:
        # Bedrock takes no api_key: credentials come from the AWS chain (see the test fixture).
        return {"base_url": url, "region": "us-east-1"}

    def reply(self, text: str) -> Reply:
        return fb.converse_reply(text=text)

    def stream_chunks(self, pieces: Sequence[str]) -> list[bytes]:
        assert pieces, "a Converse stream of no text has no contentBlockStop to place"
        # messageStart, one contentBlockDelta per piece, contentBlockStop, messageStop, metadata.
        frames = fb.converse_stream_frames(text_pieces=list(pieces))
        chunks, finale = frames[: 1 + len(pieces)], frames[2 + len(pieces) :]
        chunks[-1] += frames[1 + len(pieces)]  # contentBlockStop rides on the last text frame
        return [*chunks, *finale]

    def stream_content_type(self) -> str | None:
        return fb.EVENT_STREAM

    def status(self, fault: str, *, retry_after: str | None = None, message: str | None = None) -> Reply:
        if fault == "502":
            return GATEWAY_502
        code, text = self._codes[fault]
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return fb.error_reply(code, message or text, headers=headers)

    def error_event(self, *, fatal: bool, message: str | None = None) -> bytes:
        if fatal:
            return fb.exception_frame("validationException", message or "bad request")
        return fb.exception_frame("modelStreamErrorException", message or "model overloaded", originalStatusCode=529)

    def malformed_event(self) -> bytes:
        frame = bytearray(fb.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
        frame[-2] ^= 0xFF  # a bad message CRC
        return bytes(frame)


class BedrockTitanProfile(BedrockProfile):
    """Bedrock's other path: InvokeModel / InvokeModelWithResponseStream with a Titan text model
    (its own JSON body and ``chunk`` events), with the same errors as Converse."""

    model_id = "amazon.titan-text-express-v1"
    preamble = 0  # every chunk event carries text
    finale = 1  # the chunk with completionReason and the invocation metrics

    def reply(self, text: str) -> Reply:
        return fb.titan_text_reply(text)

    def stream_chunks(self, pieces: Sequence[str]) -> list[bytes]:
        # The final chunk carries no text of its own, so dropping it loses no piece.
        return fb.titan_stream_frames([*pieces, ""])


class OllamaProfile(Profile):
    name = "ollama"
    model_id = "llama3.2"
    preamble = 0  # every line carries text
    finale = 1  # the "done": true line
    # An error line names no status; "model not found" is the one that is clearly not transient.
    fatal_event_error = ModelNotFoundError

    _errors: ClassVar[dict[str, tuple[int, str]]] = {
        "429": (429, "too many requests"),
        "500": (500, "llama runner process has terminated: exit status 2"),
        "503": (503, "service unavailable"),
        # Ollama has no 529: a full request queue answers 503 "server busy".
        "overloaded": (503, "server busy, please try again.  maximum pending requests exceeded"),
        "bad-request": (400, "invalid options: num_ctx"),
        "bad-key": (401, "unauthorized"),
        "unknown-model": (404, 'model "llama3.2" not found, try pulling it first'),
    }

    def table(self, url: str, api_key: str | None = None) -> dict[str, Any]:
        # A local daemon needs no key; Ollama's hosted API takes one as a bearer token.
        return super().table(url, api_key)

    def reply(self, text: str) -> Reply:
        return fo.chat_reply(text)

    def stream_chunks(self, pieces: Sequence[str]) -> list[bytes]:
        return ndjson(fo.chat_stream_events(list(pieces)))

    def stream_content_type(self) -> str | None:
        return fo.NDJSON

    def status(self, fault: str, *, retry_after: str | None = None, message: str | None = None) -> Reply:
        if fault == "502":
            return GATEWAY_502
        code, text = self._errors[fault]
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return fo.error_reply(code, message or text, headers=headers)

    def error_event(self, *, fatal: bool, message: str | None = None) -> bytes:
        # Ollama has no SSE error event: a failing runner writes an {"error": ...} NDJSON line.
        text = message or (
            'model "llama3.2" not found, try pulling it first' if fatal else "model runner has unexpectedly stopped"
        )
        return ndjson([{"error": text}])[0]

    def malformed_event(self) -> bytes:
        return b"{not json\n"


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (AnthropicProfile(), OpenAIProfile(), GeminiProfile(), BedrockProfile(), OllamaProfile())
}
#: Second paths through an adapter, keyed by a name of their own (the provider is still ``name``).
EXTRA_PROFILES: dict[str, Profile] = {"bedrock-titan": BedrockTitanProfile()}


# -- one server for every provider ---------------------------------------------------------------
# The providers' paths differ, so one FakeServer can answer all five at once (the soak and the
# secrets test use this; OpenAI-compatible providers share OpenAI's profile).


def profile_for(request: RecordedRequest) -> Profile:
    """The profile whose provider sent this chat request, from its path."""
    path = request.path.split("?")[0]
    if path.endswith("/v1/messages"):
        return PROFILES["anthropic"]
    if path.endswith("/chat/completions"):
        return PROFILES["openai"]
    if path == "/api/chat":
        return PROFILES["ollama"]
    if path.startswith("/model/"):
        return PROFILES["bedrock"]
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return PROFILES["gemini"]
    raise AssertionError(f"not a chat request of a known provider: {request.method} {request.path}")


def is_streamed(request: RecordedRequest, profile: Profile) -> bool:
    if profile.name == "gemini":
        return ":streamGenerateContent" in request.path
    if profile.name == "bedrock":
        return request.path.split("?")[0].endswith("/converse-stream")
    body = request.json() or {}
    # Ollama streams unless told not to; the others only when asked.
    return bool(body.get("stream", profile.name == "ollama"))


def embeddings_reply(request: RecordedRequest) -> Reply | None:
    """The answer to any provider's embeddings request, or None if this is not one."""
    path = request.path.split("?")[0]
    if path.endswith("/embeddings"):
        return foa.embeddings_reply(request.json())
    if ":batchEmbedContents" in path:
        return fg.embed_handler(request)
    if path == "/api/embed":
        inputs = request.json().get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        return fo.embed_reply([fo.fake_vector(text, index) for index, text in enumerate(texts)])
    model, operation = fb.FakeBedrock.route(request)
    if operation == "InvokeModel" and "embed" in model:
        return fb.FakeBedrock._embed(model, request.json())
    return None
