"""A fake Amazon Bedrock Runtime on 127.0.0.1 that real boto3 talks to.

It speaks the wire format boto3 parses, so an adapter test exercises boto3's own signing,
serialisation, response parsing and event-stream decoding:

* ``POST /model/{modelId}/invoke`` and ``/converse``: JSON bodies.
* ``POST /model/{modelId}/invoke-with-response-stream`` and ``/converse-stream``: the AWS
  event-stream binary framing (``application/vnd.amazon.eventstream``). Each message is a
  prelude (total length, headers length, prelude CRC32), typed headers (``:event-type``,
  ``:content-type``, ``:message-type`` = ``event`` or ``exception`` with ``:exception-type``),
  the JSON payload, and a CRC32 of the whole message.
* Errors as AWS rest-json errors: the status code, an ``x-amzn-ErrorType`` header naming the
  exception, and a ``{"message": ...}`` body.

Tests queue exact replies built with the helpers below (``titan_text_reply``,
``converse_stream_reply``, ``error_reply``...). With nothing queued, :class:`FakeBedrock`
answers like the service would: Titan embeddings computed from the text (honouring
``dimensions``/``normalize``), Titan text and Converse echoing the last user turn, and
``ValidationException`` for bodies Bedrock would reject. It counts requests in flight so
tests can prove concurrency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from tests.fakes.images import generated_png
from tests.fakes.server import FakeServer, RecordedRequest, Reply

EVENT_STREAM = "application/vnd.amazon.eventstream"

# The HTTP status Bedrock answers each modelled exception with (from the service model).
ERROR_STATUS: dict[str, int] = {
    "AccessDeniedException": 403,
    "ConflictException": 400,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelStreamErrorException": 424,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "ValidationException": 400,
    # Raised by the AWS front door, not the Bedrock model.
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "ExpiredTokenException": 403,
}

_OPERATIONS = {
    "invoke": "InvokeModel",
    "invoke-with-response-stream": "InvokeModelWithResponseStream",
    "converse": "Converse",
    "converse-stream": "ConverseStream",
    "count-tokens": "CountTokens",
}
_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>[a-z-]+)$")
_TITAN_STOP = re.compile(r"^(\|+|User:)$")


# -- event-stream framing ------------------------------------------------------------------
def _string_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # Header value type 7 is "string": a 2-byte length, then UTF-8 bytes.
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude + prelude CRC, headers, payload, message CRC."""
    header_bytes = b"".join(_string_header(k, v) for k, v in headers.items())
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + header_bytes + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event_frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    return encode_message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def exception_frame(exception_type: str, message: str, **fields: Any) -> bytes:
    """An exception delivered inside a stream (``throttlingException``, ``modelStreamErrorException``...)."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message, **fields}).encode(),
    )


def stream_reply(
    frames: Sequence[bytes],
    *,
    piece_size: int | None = None,
    cut_after: int | None = None,
    chunk_delay: float = 0.0,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """A 200 event-stream response. ``piece_size`` re-slices the bytes so frames straddle
    HTTP chunks, as they do on a real connection; ``cut_after`` drops the connection after
    that many HTTP chunks."""
    chunks: list[bytes] = list(frames)
    if piece_size:
        data = b"".join(frames)
        chunks = [data[i : i + piece_size] for i in range(0, len(data), piece_size)]
    return Reply(
        status=200,
        chunks=chunks,
        content_type=EVENT_STREAM,
        cut_after=cut_after,
        chunk_delay=chunk_delay,
        headers={"x-amzn-requestid": "fake-request-id", **(headers or {})},
    )


# -- errors --------------------------------------------------------------------------------
def error_reply(
    code: str,
    message: str = "error",
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    **fields: Any,
) -> Reply:
    """An AWS rest-json error: status, ``x-amzn-ErrorType`` header, ``{"message": ...}``."""
    return Reply(
        status=status or ERROR_STATUS.get(code, 400),
        body={"message": message, **fields},
        headers={
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-requestid": "fake-request-id",
            **(headers or {}),
        },
    )


# -- Titan text ----------------------------------------------------------------------------
def titan_text_reply(text: str, *, reason: str = "FINISH", input_tokens: int = 7, output_tokens: int = 5) -> Reply:
    body = {
        "inputTextTokenCount": input_tokens,
        "results": [{"tokenCount": output_tokens, "outputText": text, "completionReason": reason}],
    }
    return Reply(
        body=body,
        headers={
            "x-amzn-requestid": "fake-request-id",
            "x-amzn-bedrock-input-token-count": str(input_tokens),
            "x-amzn-bedrock-output-token-count": str(output_tokens),
        },
    )


def titan_chunk_frame(payload: Mapping[str, Any]) -> bytes:
    """A ``chunk`` event: the model's JSON, base64-encoded into ``bytes``."""
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    return event_frame("chunk", {"bytes": encoded, "p": "abcdefgh"})


def titan_stream_frames(
    pieces: Sequence[str], *, reason: str = "FINISH", input_tokens: int = 7, output_tokens: int | None = None
) -> list[bytes]:
    """Titan's streamed chunks; the last carries completionReason and the invocation metrics."""
    output_tokens = len(pieces) if output_tokens is None else output_tokens
    frames = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        payload: dict[str, Any] = {
            "outputText": piece,
            "index": 0,
            "totalOutputTextTokenCount": output_tokens if last else index + 1,
            "completionReason": reason if last else None,
            "inputTextTokenCount": input_tokens if index == 0 else None,
        }
        if last:
            payload["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": input_tokens,
                "outputTokenCount": output_tokens,
                "invocationLatency": 420,
                "firstByteLatency": 120,
            }
        frames.append(titan_chunk_frame(payload))
    return frames


# -- Titan embeddings ----------------------------------------------------------------------
def embedding_for(text: str, dimensions: int, normalize: bool = True) -> list[float]:
    """The vector the fake returns for ``text``: derived from its hash, so order is checkable."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [(seed[i % len(seed)] - 127.5) / 127.5 + i * 1e-4 for i in range(dimensions)]
    if not normalize:
        return [round(v, 6) for v in raw]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def titan_embedding_reply(vector: Sequence[float], *, tokens: int = 3) -> Reply:
    return Reply(
        body={"embedding": list(vector), "embeddingsByType": {"float": list(vector)}, "inputTextTokenCount": tokens},
        headers={"x-amzn-requestid": "fake-request-id"},
    )


# -- Converse --------------------------------------------------------------------------------
def converse_usage(
    input_tokens: int = 10,
    output_tokens: int = 5,
    cache_read: int = 0,
    cache_write: int = 0,
    *,
    cache_write_1h: int | None = None,
) -> dict[str, Any]:
    """Converse ``usage``; ``cache_write_1h`` adds ``cacheDetails`` (1h before 5m, as sent)."""
    usage: dict[str, Any] = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens + cache_read + cache_write,
        "cacheReadInputTokens": cache_read,
        "cacheWriteInputTokens": cache_write,
    }
    if cache_write_1h is not None:
        usage["cacheDetails"] = [
            {"ttl": "1h", "inputTokens": cache_write_1h},
            {"ttl": "5m", "inputTokens": cache_write - cache_write_1h},
        ]
    return usage


def converse_reply(
    *,
    text: str | None = None,
    tool_uses: Iterable[Mapping[str, Any]] = (),
    stop_reason: str = "end_turn",
    usage: Mapping[str, Any] | None = None,
    reasoning: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Reply:
    """A Converse answer. ``tool_uses`` are ``{"toolUseId", "name", "input"}`` dicts."""
    content: list[dict[str, Any]] = []
    if reasoning is not None:
        content.append({"reasoningContent": {"reasoningText": dict(reasoning)}})
    if text is not None:
        content.append({"text": text})
    content.extend({"toolUse": dict(use)} for use in tool_uses)
    body = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": dict(usage or converse_usage()),
        "metrics": {"latencyMs": 321},
        **(extra or {}),  # serviceTier, performanceConfig
    }
    return Reply(body=body, headers={"x-amzn-requestid": "fake-request-id"})


def converse_stream_frames(
    *,
    text_pieces: Sequence[str] = (),
    tool_uses: Iterable[Mapping[str, Any]] = (),
    stop_reason: str = "end_turn",
    usage: Mapping[str, Any] | None = None,
    metadata: bool = True,
    extra: Mapping[str, Any] | None = None,
    reasoning_pieces: Sequence[str] = (),
    signature: str = "sig-fake",
) -> list[bytes]:
    """The ConverseStream event sequence. Each tool use is ``{"toolUseId", "name",
    "fragments": [json pieces]}``; its input arrives as those ``toolUse.input`` deltas."""
    padding = {"p": "abcdefghijklmnop"}
    frames = [event_frame("messageStart", {"role": "assistant", **padding})]
    index = 0
    if reasoning_pieces:  # a reasoning block first, its signature in the last delta (as Claude sends it)
        for piece in reasoning_pieces:
            delta = {"reasoningContent": {"text": piece}}
            frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta, **padding}))
        delta = {"reasoningContent": {"signature": signature}}
        frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta, **padding}))
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index, **padding}))
        index += 1
    if text_pieces:
        for piece in text_pieces:
            frames.append(
                event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}, **padding})
            )
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index, **padding}))
        index += 1
    for use in tool_uses:
        start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
        frames.append(event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start, **padding}))
        for fragment in use.get("fragments", ()):
            delta = {"toolUse": {"input": fragment}}
            frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta, **padding}))
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index, **padding}))
        index += 1
    frames.append(event_frame("messageStop", {"stopReason": stop_reason, **padding}))
    if metadata:
        frames.append(
            event_frame(
                "metadata",
                {"usage": dict(usage or converse_usage()), "metrics": {"latencyMs": 99}, **(extra or {}), **padding},
            )
        )
    return frames


def converse_stream_reply(**kwargs: Any) -> Reply:
    piece_size = kwargs.pop("piece_size", None)
    return stream_reply(converse_stream_frames(**kwargs), piece_size=piece_size)


# -- the service ---------------------------------------------------------------------------
class FakeBedrock:
    """A Bedrock Runtime endpoint: queue replies, or let it answer like the service.

    ``delay`` holds every request that long inside the server (while counted in flight).
    """

    def __init__(self, *, delay: float = 0.0) -> None:
        self.server = FakeServer(handler=self._handle)
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    # lifecycle
    def start(self) -> FakeBedrock:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeBedrock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests

    def queue(self, *replies: Reply) -> None:
        self.server.queue(*replies)

    def reset(self) -> None:
        """Forget requests, queued replies and counters, so one server can serve many tests."""
        with self._lock:
            self.delay = 0.0
            self.in_flight = 0
            self.max_in_flight = 0
        self.server.requests.clear()
        self.server.replies.clear()

    @staticmethod
    def route(request: RecordedRequest) -> tuple[str, str]:
        """``(model id, operation name)`` of a recorded request."""
        match = _PATH.match(request.path.split("?")[0])
        if not match:
            return "", ""
        return unquote(match["model"]), _OPERATIONS.get(match["op"], match["op"])

    def bodies(self, operation: str | None = None) -> list[Any]:
        """The JSON bodies received, optionally for one operation only."""
        return [r.json() for r in self.requests if operation is None or self.route(r)[1] == operation]

    # default behaviour
    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            return self._answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, request: RecordedRequest) -> Reply:
        model, operation = self.route(request)
        if not request.headers.get("authorization", "").startswith(("AWS4-HMAC-SHA256 ", "Bearer ")):
            return error_reply("MissingAuthenticationTokenException", "Missing Authentication Token", status=403)
        try:
            body = request.json()
        except ValueError:
            return error_reply("ValidationException", "Malformed input request, please reformat your input")
        if operation == "InvokeModel" and "titan-embed-image" in model:
            return self._embed_multimodal(body)
        if operation == "InvokeModel" and "titan-embed" in model:
            return self._embed(model, body)
        if operation == "InvokeModel" and ("titan-image-generator" in model or "nova-canvas" in model):
            return self._generate_image(body, max_text=1024 if "nova" in model else 512)
        if operation in ("InvokeModel", "InvokeModelWithResponseStream") and "titan-text" in model:
            return self._titan_text(body, streaming=operation != "InvokeModel")
        if operation in ("Converse", "ConverseStream"):
            return self._converse(body, streaming=operation == "ConverseStream")
        if operation == "CountTokens":
            return self._count_tokens(body)
        if operation in _OPERATIONS.values():
            return error_reply("ValidationException", f"The provided model identifier is invalid: {model}")
        return error_reply("UnknownOperationException", "unknown operation", status=404)

    @staticmethod
    def _count_tokens(body: Any) -> Reply:
        """CountTokens over a Converse input: one token per word of text, plus 3 per message."""
        converse = (body.get("input") or {}).get("converse")
        if not isinstance(converse, dict) or not converse.get("messages"):
            return error_reply("ValidationException", "input.converse.messages is required")
        blocks = [block for m in converse["messages"] for block in m.get("content", [])]
        blocks += list(converse.get("system") or [])
        words = sum(len(str(block.get("text", "")).split()) for block in blocks)
        return Reply(body={"inputTokens": words + 3 * len(converse["messages"])})

    @staticmethod
    def _embed(model: str, body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("inputText"), str):
            return error_reply("ValidationException", "Malformed input request: required key [inputText] not found")
        v2 = "v2" in model
        extra = set(body) - ({"inputText", "dimensions", "normalize", "embeddingTypes"} if v2 else {"inputText"})
        if extra:
            return error_reply(
                "ValidationException",
                f"Malformed input request: extraneous key [{sorted(extra)[0]}] is not permitted",
            )
        dimensions = body.get("dimensions", 1024) if v2 else 1536
        if v2 and dimensions not in (256, 512, 1024):
            return error_reply("ValidationException", "Malformed input request: dimensions must be 256, 512 or 1024")
        vector = embedding_for(body["inputText"], dimensions, bool(body.get("normalize", True)) if v2 else False)
        return titan_embedding_reply(vector, tokens=len(body["inputText"].split()))

    @staticmethod
    def _embed_multimodal(body: Any) -> Reply:
        """Titan Multimodal Embeddings: inputText and/or inputImage, embeddingConfig.outputEmbeddingLength."""
        if not isinstance(body, dict) or not ({"inputText", "inputImage"} & set(body)):
            return error_reply("ValidationException", "Malformed input request: inputText or inputImage is required")
        extra = set(body) - {"inputText", "inputImage", "embeddingConfig"}
        if extra:
            return error_reply(
                "ValidationException", f"Malformed input request: extraneous key [{sorted(extra)[0]}] is not permitted"
            )
        dimensions = (body.get("embeddingConfig") or {}).get("outputEmbeddingLength", 1024)
        if dimensions not in (256, 384, 1024):
            return error_reply("ValidationException", "outputEmbeddingLength must be 256, 384 or 1024")
        seed = str(body.get("inputText", ""))
        if "inputImage" in body:
            image = base64.b64decode(body["inputImage"])
            if not image.startswith(b"\x89PNG\r\n\x1a\n") and not image.startswith(b"\xff\xd8\xff"):
                return error_reply("ValidationException", "inputImage is not a PNG or JPEG image")
            seed += hashlib.sha256(image).hexdigest()
        return titan_embedding_reply(
            embedding_for(seed, dimensions), tokens=len(str(body.get("inputText", "")).split())
        )

    @staticmethod
    def _generate_image(body: Any, *, max_text: int) -> Reply:
        """TEXT_IMAGE for Titan Image Generator / Nova Canvas: real PNGs of the asked size.

        A prompt with "forbidden-input" is refused like the input filter does (a ValidationException);
        one with "forbidden-output" answers 200 with an ``error``, as when the output filter blocks."""
        task = body.get("taskType") if isinstance(body, dict) else None
        if task not in ("TEXT_IMAGE", "IMAGE_VARIATION"):
            return error_reply("ValidationException", "Malformed input request: taskType must be one of TEXT_IMAGE")
        params = body.get("textToImageParams" if task == "TEXT_IMAGE" else "imageVariationParams") or {}
        if task == "IMAGE_VARIATION":
            sources = params.get("images")
            if not isinstance(sources, list) or not 1 <= len(sources) <= 5:
                return error_reply("ValidationException", "imageVariationParams.images: 1 to 5 images required")
            if any(not base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n") for image in sources):
                return error_reply("ValidationException", "imageVariationParams.images: not a PNG or JPEG image")
            strength = params.get("similarityStrength", 0.7)
            if not 0.2 <= strength <= 1.0:
                return error_reply("ValidationException", "similarityStrength must be between 0.2 and 1.0")
        text = params.get("text")
        if not isinstance(text, str) or not 1 <= len(text) <= max_text:
            return error_reply("ValidationException", f"text must be 1 to {max_text} characters")
        if "forbidden-input" in text:
            return error_reply("ValidationException", "This request has been blocked by our content filters.")
        config = body.get("imageGenerationConfig") or {}
        count = config.get("numberOfImages", 1)
        if not isinstance(count, int) or not 1 <= count <= 5:
            return error_reply("ValidationException", "numberOfImages: expected value between 1 and 5")
        width, height = config.get("width", 1024), config.get("height", 1024)
        if "forbidden-output" in text:
            return Reply(body={"images": [], "error": "The generated image has been blocked by our content filters."})
        seed = config.get("seed", 0)
        images = [base64.b64encode(generated_png(f"{text}|{seed}", i, width, height)).decode() for i in range(count)]
        return Reply(body={"images": images, "error": None}, headers={"x-amzn-requestid": "fake-request-id"})

    @staticmethod
    def _titan_text(body: Any, *, streaming: bool) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("inputText"), str):
            return error_reply("ValidationException", "Malformed input request: required key [inputText] not found")
        stops = (body.get("textGenerationConfig") or {}).get("stopSequences") or []
        if len(stops) > 1:
            return error_reply(
                "ValidationException",
                f"Malformed input request: expected maximum item count: 1, found: {len(stops)}",
            )
        if any(not _TITAN_STOP.match(s) for s in stops):
            return error_reply(
                "ValidationException", "Malformed input request: string does not match pattern ^(\\|+|User:)$"
            )
        user_lines = [ln for ln in body["inputText"].splitlines() if ln.startswith("User: ")]
        said = user_lines[-1][len("User: ") :] if user_lines else body["inputText"]
        answer = f"You said: {said}"
        tokens = len(body["inputText"].split())
        if streaming:
            return stream_reply(titan_stream_frames([" " + w for w in answer.split(" ")], input_tokens=tokens))
        return titan_text_reply(" " + answer, input_tokens=tokens, output_tokens=len(answer.split()))

    @staticmethod
    def _converse(body: Any, *, streaming: bool) -> Reply:
        messages = body.get("messages") if isinstance(body, dict) else None
        if not messages:
            return error_reply("ValidationException", "A conversation must start with a user message.")
        said = " ".join(b["text"] for b in messages[-1].get("content", []) if "text" in b)
        answer = f"You said: {said}"
        if streaming:
            return converse_stream_reply(text_pieces=[answer[:5], answer[5:]])
        return converse_reply(text=answer)
