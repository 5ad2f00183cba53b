"""A fake Gemini Developer API, speaking the wire format the ``google-genai`` SDK expects.

Builders return plain JSON bodies (camelCase, as the API sends them) or :class:`Reply` objects
to queue on a :class:`~tests.fakes.server.FakeServer`:

* ``POST /{version}/models/{model}:generateContent`` -> :func:`generate_reply`
* ``POST /{version}/models/{model}:streamGenerateContent?alt=sse`` -> :func:`stream_reply`
  (``data: {...}`` server-sent events, one ``GenerateContentResponse`` each)
* ``POST /{version}/models/{model}:batchEmbedContents`` -> :func:`embed_handler`, which
  answers from the request body so batching and ordering can be checked
* errors -> :func:`error_reply`: Google's ``{"error": {"code", "message", "status"}}`` body
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

from tests.fakes.server import RecordedRequest, Reply, sse

DEFAULT_MODEL_VERSION = "gemini-2.5-flash-001"

# google.rpc status names for the HTTP codes tests use.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def b64(data: bytes) -> str:
    """Standard base64, the way the API encodes bytes fields (thoughtSignature, inlineData)."""
    return base64.b64encode(data).decode("ascii")


def b64decode_any(text: str) -> bytes:
    """Decode standard or URL-safe base64 (the SDK sends the URL-safe alphabet)."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


# -- response bodies -----------------------------------------------------------------------


def text_part(text: str, *, thought: bool = False, thought_signature: bytes | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"text": text}
    if thought:
        part["thought"] = True
    if thought_signature is not None:
        part["thoughtSignature"] = b64(thought_signature)
    return part


def function_call_part(
    name: str,
    args: dict[str, Any],
    *,
    id: str | None = None,
    thought_signature: bytes | None = None,
) -> dict[str, Any]:
    call: dict[str, Any] = {"name": name, "args": args}
    if id is not None:
        call["id"] = id
    part: dict[str, Any] = {"functionCall": call}
    if thought_signature is not None:
        part["thoughtSignature"] = b64(thought_signature)
    return part


def usage_metadata(
    prompt: int = 10,
    candidates: int | None = 5,
    *,
    thoughts: int | None = None,
    cached: int | None = None,
    tool_use: int | None = None,
) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    total = prompt
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
        total += candidates
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
        total += thoughts
    if cached is not None:
        usage["cachedContentTokenCount"] = cached
    if tool_use is not None:
        usage["toolUsePromptTokenCount"] = tool_use
        total += tool_use
    usage["totalTokenCount"] = total
    return usage


def response_body(
    text: str | None = "Hello from Gemini",
    *,
    parts: list[dict[str, Any]] | None = None,
    finish_reason: str | None = "STOP",
    usage: dict[str, Any] | None = None,
    model_version: str = DEFAULT_MODEL_VERSION,
    prompt_feedback: dict[str, Any] | None = None,
    candidates: bool = True,
) -> dict[str, Any]:
    """One ``GenerateContentResponse``: the whole reply, or one streamed event."""
    body: dict[str, Any] = {"modelVersion": model_version, "responseId": "resp-1"}
    if candidates:
        content_parts = parts if parts is not None else ([text_part(text)] if text is not None else [])
        candidate: dict[str, Any] = {"index": 0}
        if content_parts:
            candidate["content"] = {"role": "model", "parts": content_parts}
        if finish_reason is not None:
            candidate["finishReason"] = finish_reason
        body["candidates"] = [candidate]
    if usage is not None:
        body["usageMetadata"] = usage
    if prompt_feedback is not None:
        body["promptFeedback"] = prompt_feedback
    return body


def generate_reply(text: str | None = "Hello from Gemini", **kwargs: Any) -> Reply:
    kwargs.setdefault("usage", usage_metadata())
    return Reply(body=response_body(text, **kwargs))


def stream_events(
    texts: list[str],
    *,
    finish_reason: str = "STOP",
    usage: dict[str, Any] | None = None,
    model_version: str = DEFAULT_MODEL_VERSION,
) -> list[dict[str, Any]]:
    """Streamed events for a text reply: one per delta, the last carrying finish and usage."""
    events = [response_body(t, finish_reason=None, model_version=model_version) for t in texts[:-1]]
    events.append(
        response_body(
            texts[-1] if texts else "",
            finish_reason=finish_reason,
            usage=usage or usage_metadata(),
            model_version=model_version,
        )
    )
    return events


def stream_reply(events: list[dict[str, Any]], *, cut_after: int | None = None, chunk_delay: float = 0.0) -> Reply:
    return Reply(chunks=sse((None, e) for e in events), cut_after=cut_after, chunk_delay=chunk_delay)


# -- errors --------------------------------------------------------------------------------


def error_body(code: int, message: str, status: str | None = None, details: list[Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status or STATUS_NAMES.get(code, "UNKNOWN")}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_reply(
    code: int,
    message: str = "something went wrong",
    status: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    details: list[Any] | None = None,
) -> Reply:
    return Reply(status=code, body=error_body(code, message, status, details), headers=headers or {})


def retry_info(delay: str) -> dict[str, Any]:
    """The ``google.rpc.RetryInfo`` detail Gemini attaches to 429 errors."""
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


# -- embeddings ----------------------------------------------------------------------------


def fake_vector(text: str) -> list[float]:
    """The vector the fake returns for a text: derived from the text, so order is checkable."""
    return [float(len(text)), float(zlib.crc32(text.encode()) % 100_000)]


def embed_handler(request: RecordedRequest) -> Reply:
    """Answer ``:batchEmbedContents`` with one embedding per request, in request order."""
    if ":batchEmbedContents" not in request.path:
        return error_reply(404, f"no fake route for {request.path}")
    body = request.json()
    embeddings = []
    for item in body["requests"]:
        text = "".join(p.get("text", "") for p in item["content"]["parts"])
        values = fake_vector(text)
        if "outputDimensionality" in item:
            values = (values * item["outputDimensionality"])[: item["outputDimensionality"]]
        embeddings.append({"values": values})
    return Reply(body={"embeddings": embeddings})
