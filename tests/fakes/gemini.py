"""A fake Gemini API (Developer API and Vertex AI), speaking the wire format ``google-genai`` expects.

Builders return plain JSON bodies (camelCase, as the API sends them) or :class:`Reply` objects
to queue on a :class:`~tests.fakes.server.FakeServer`:

* ``POST /{version}/models/{model}:generateContent`` -> :func:`generate_reply`
* ``POST /{version}/models/{model}:streamGenerateContent?alt=sse`` -> :func:`stream_reply`
  (``data: {...}`` server-sent events, one ``GenerateContentResponse`` each)
* ``POST /{version}/models/{model}:batchEmbedContents`` -> :func:`embed_handler`, which
  answers from the request body so batching and ordering can be checked
* errors -> :func:`error_reply`: Google's ``{"error": {"code", "message", "status"}}`` body

:class:`GeminiAPI` is a stricter handler for the same server: it routes the Developer API's
paths and Vertex AI's (``/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}:...``,
and express mode's ``/v1beta1/publishers/google/models/{m}:...``), checks the credential each
one takes, answers every embedding wire shape from the request body, and rejects Gemini 3
function-call history without thought signatures the way the real API does.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.fakes.images import generated_png
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


# -- routing, credentials and the Gemini 3 signature rule -------------------------------------

_ROUTE = re.compile(
    r"^/(?P<version>v[0-9a-z]+)/"
    r"(?:(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?(?P<publisher>publishers/google/))?"
    r"models/(?P<model>[^/:?]+):(?P<method>[A-Za-z]+)(?:\?(?P<query>.*))?$"
)
SIGNATURE_ERROR = (
    "Function call is missing a thought_signature in functionCall parts. This is required for tools "
    "to work correctly, and missing thought_signature may lead to degraded model performance."
)


@dataclass(frozen=True)
class Route:
    """Where a request went: ``surface`` is ``"gemini"`` (Developer API), ``"vertex"`` (project
    and location, OAuth) or ``"express"`` (Vertex AI express mode, API key)."""

    surface: str
    version: str
    model: str
    method: str
    project: str | None = None
    location: str | None = None
    query: str = ""


def parse_route(path: str) -> Route | None:
    match = _ROUTE.match(path)
    if match is None:
        return None
    if match["project"]:
        surface = "vertex"
    elif match["publisher"]:
        surface = "express"
    else:
        surface = "gemini"
    return Route(
        surface=surface,
        version=match["version"],
        model=match["model"],
        method=match["method"],
        project=match["project"],
        location=match["location"],
        query=match["query"] or "",
    )


def validates_signatures(model: str) -> bool:
    """Gemini 3 (and later) checks thought signatures in function-call history."""
    found = re.match(r"gemini-(\d+)", model)
    return found is not None and int(found.group(1)) >= 3


def missing_signature(body: dict[str, Any]) -> str | None:
    """The real API's rule: in the current turn (after the last user message that is not only
    function responses), the first functionCall part of every model step carries a
    thoughtSignature. Returns the name of the first call breaking it."""
    contents = body.get("contents") or []
    start = 0
    for index, content in enumerate(contents):
        parts = content.get("parts") or []
        if content.get("role") == "user" and not all("functionResponse" in p for p in parts):
            start = index + 1
    for content in contents[start:]:
        if content.get("role") != "model":
            continue
        calls = [p for p in content.get("parts") or [] if "functionCall" in p]
        if calls and not calls[0].get("thoughtSignature"):
            return str(calls[0]["functionCall"].get("name"))
    return None


def count_tokens_reply(total_tokens: int) -> Reply:
    """The answer of ``POST .../models/<model>:countTokens``."""
    return Reply(body={"totalTokens": total_tokens})


def token_count(text: str) -> int:
    """The fake's tokenizer: one token per word, so usage is checkable."""
    return len(text.split())


def _dimensions(values: list[float], size: Any) -> list[float]:
    return (values * int(size))[: int(size)] if size else values


def _text_of(content: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in content.get("parts") or [])


def embed_answer(route: Route, body: dict[str, Any]) -> Reply:
    """Embeddings for each wire shape the SDK uses, computed from the request body."""
    if route.method == "batchEmbedContents":
        texts, embeddings = [], []
        for item in body["requests"]:
            config = item.get("embedContentConfig", item)  # Vertex nests the options, the Gemini API does not
            text = _text_of(item["content"])
            texts.append(text)
            embeddings.append({"values": _dimensions(fake_vector(text), config.get("outputDimensionality"))})
        answer: dict[str, Any] = {"embeddings": embeddings}
        if route.surface != "gemini":
            answer["usageMetadata"] = {"promptTokenCount": sum(token_count(t) for t in texts)}
        return Reply(body=answer)
    if route.method == "embedContent":
        text = _text_of(body["content"])
        size = (body.get("embedContentConfig") or body).get("outputDimensionality")
        return Reply(
            body={
                "embedding": {"values": _dimensions(fake_vector(text), size)},
                "usageMetadata": {"promptTokenCount": token_count(text)},
            }
        )
    # Vertex AI's :predict, for its non-Gemini embedding models (text-embedding-005 ...)
    size = (body.get("parameters") or {}).get("outputDimensionality")
    predictions = [
        {
            "embeddings": {
                "values": _dimensions(fake_vector(instance["content"]), size),
                "statistics": {"token_count": token_count(instance["content"]), "truncated": False},
            }
        }
        for instance in body["instances"]
    ]
    return Reply(body={"predictions": predictions})


class GeminiAPI:
    """A :class:`~tests.fakes.server.FakeServer` handler that behaves like one Gemini surface.

    ``surface`` is the one it serves (see :class:`Route`); a request for another, or without
    the right credential (``api_key`` in ``x-goog-api-key``, or ``token`` as a bearer token for
    ``vertex``, whose ``project``/``location`` must match too), gets the error the real service
    gives. Embedding calls are answered from the body; generate calls from :meth:`queue`, after
    the Gemini 3 signature check. Set it with ``server.handler = api`` and queue replies here,
    not on the server (the server's own queue would bypass these checks).
    """

    def __init__(
        self,
        surface: str = "gemini",
        *,
        api_key: str | None = None,
        token: str | None = None,
        project: str | None = None,
        location: str | None = None,
    ) -> None:
        self.surface = surface
        self.api_key = api_key
        self.token = token
        self.project = project
        self.location = location
        self.replies: deque[Reply] = deque()
        self.routes: list[Route] = []
        self.files = GeminiFiles()

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def __call__(self, request: RecordedRequest) -> Reply:
        if self.surface == "gemini" and _UPLOAD_SESSION.match(request.path):
            # The session URL is the credential of an upload's chunks (the SDK sends no key).
            return self.files.answer(request)
        if self.surface == "gemini" and _FILES_PATH.match(request.path.split("?", 1)[0]):
            refused = self._authenticate(Route("gemini", "", "", "files"), request)
            return refused or self.files.answer(request)
        route = parse_route(request.path)
        if route is None or route.surface != self.surface:
            return error_reply(404, f"no {self.surface} route for {request.path}")
        self.routes.append(route)
        refused = self._authenticate(route, request)
        if refused is not None:
            return refused
        body = request.json() or {}
        if route.method == "predict" and route.model.startswith("imagen-"):
            # Google shut Imagen down on both hosts: the endpoint is gone
            return error_reply(404, f"Publisher Model `{route.model}` was not found.", "NOT_FOUND")
        if route.method in ("batchEmbedContents", "embedContent", "predict"):
            return embed_answer(route, body)
        if route.method not in ("generateContent", "streamGenerateContent"):
            return error_reply(404, f"method {route.method} not faked")
        unusable = self.files.unusable(body)
        if unusable is not None:
            return error_reply(400, unusable, "FAILED_PRECONDITION")
        if validates_signatures(route.model):
            name = missing_signature(body)
            if name is not None:
                return error_reply(400, f"{SIGNATURE_ERROR} Additional data, function call `default_api:{name}`.")
        if not self.replies and route.method == "generateContent" and GEMINI_IMAGE_MODEL.search(route.model):
            return gemini_image_answer(body)
        if not self.replies:
            return error_reply(500, f"no reply scripted for {request.path}")
        return self.replies.popleft()

    def _authenticate(self, route: Route, request: RecordedRequest) -> Reply | None:
        if route.surface == "vertex":
            if (route.project, route.location) != (self.project, self.location):
                return error_reply(403, f"Permission denied on resource project {route.project}.")
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return error_reply(401, "Request had invalid authentication credentials.")
            return None
        if request.headers.get("x-goog-api-key") != self.api_key:
            details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
            return error_reply(400, "API key not valid. Please pass a valid API key.", details=details)
        return None


# Imagen's output size per aspect ratio (1K).


# -- the Files API ---------------------------------------------------------------------------

_FILES_PATH = re.compile(r"^/(?:upload/)?v[0-9a-z]+/files(?:/[^/]+)?$")
_UPLOAD_SESSION = re.compile(r"^/upload/v[0-9a-z]+/files\?upload_id=(?P<id>[^&]+)")


class GeminiFiles:
    """The Gemini Files API as google-genai speaks it, for :class:`GeminiAPI`.

    * ``POST /upload/{version}/files`` with ``X-Goog-Upload-Protocol: resumable``, ``X-Goog-Upload-
      Command: start`` and the ``X-Goog-Upload-Header-Content-Length`` / ``-Content-Type`` of the
      bytes to come, body ``{"file": {...}}``: answers an ``x-goog-upload-url`` (a session URL).
    * ``POST`` to that URL, one per chunk, ``X-Goog-Upload-Command: upload`` (``upload, finalize``
      on the last) at ``X-Goog-Upload-Offset``: ``x-goog-upload-status: active`` until the last,
      which answers ``final`` and ``{"file": File}``. An offset or size that does not add up is
      refused as the service does.
    * ``GET /{version}/files/{id}``: the File (``state`` PROCESSING -> ACTIVE).

    ``processing_polls``: how many ``files.get`` answers say PROCESSING for a video before it
    is ACTIVE (audio and documents are ACTIVE at once). ``fail_next``: a :class:`Reply` that the
    next upload start gets instead (a failed upload). ``uploaded`` keeps the bytes of each file.
    """

    def __init__(self) -> None:
        self.processing_polls = 0
        self.fail_next: Reply | None = None
        self.files: dict[str, dict[str, Any]] = {}
        self.uploaded: dict[str, bytes] = {}
        self.polls: dict[str, int] = {}
        self._sessions: dict[str, dict[str, Any]] = {}
        self._count = 0

    @property
    def starts(self) -> int:
        """Upload sessions opened (each is one upload)."""
        return self._count

    def answer(self, request: RecordedRequest) -> Reply:
        path = request.path.split("?", 1)[0]
        session = _UPLOAD_SESSION.match(request.path)
        if request.method == "POST" and session:
            return self._chunk(request, session["id"])
        if request.method == "POST" and path.startswith("/upload/") and path.endswith("/files"):
            return self._start(request)
        if request.method == "GET" and "/files/" in path:
            return self._get(path.rsplit("/", 1)[1])
        return error_reply(404, f"no Files API route for {request.method} {path}")

    def _start(self, request: RecordedRequest) -> Reply:
        headers = request.headers
        if headers.get("x-goog-upload-protocol") != "resumable" or headers.get("x-goog-upload-command") != "start":
            return error_reply(400, "Upload protocol or command missing.")
        if self.fail_next is not None:
            reply, self.fail_next = self.fail_next, None
            return reply
        size, mime_type = (
            headers.get("x-goog-upload-header-content-length"),
            headers.get("x-goog-upload-header-content-type"),
        )
        body = request.json() or {}
        declared = (body.get("file") or {}).get("mimeType")
        if not size or not size.isdigit() or not mime_type or (declared and declared != mime_type):
            return error_reply(400, "Invalid upload headers.")
        self._count += 1
        upload_id = f"upload-{self._count}"
        self._sessions[upload_id] = {"size": int(size), "mime_type": mime_type, "data": bytearray()}
        url = f"http://{headers.get('host', '127.0.0.1')}{request.path}?upload_id={upload_id}&upload_protocol=resumable"
        return Reply(body={}, headers={"x-goog-upload-url": url, "x-goog-upload-status": "active"})

    def _chunk(self, request: RecordedRequest, upload_id: str) -> Reply:
        session = self._sessions.get(upload_id)
        final = {"x-goog-upload-status": "final"}
        if session is None:
            return Reply(status=404, body=error_body(404, "No such upload."), headers=final)
        command = [c.strip() for c in request.headers.get("x-goog-upload-command", "").split(",")]
        offset = request.headers.get("x-goog-upload-offset")
        if "upload" not in command or offset != str(len(session["data"])):
            return Reply(status=400, body=error_body(400, "Bad upload command or offset."), headers=final)
        session["data"] += request.body
        if "finalize" not in command:
            return Reply(body=b"", headers={"x-goog-upload-status": "active"})
        del self._sessions[upload_id]
        if len(session["data"]) != session["size"]:
            return Reply(status=400, body=error_body(400, "Upload size mismatch."), headers=final)
        name = f"files/{upload_id.replace('upload-', 'f')}"
        video = session["mime_type"].startswith("video/")
        self.files[name] = {
            "name": name,
            "mimeType": session["mime_type"],
            "sizeBytes": str(session["size"]),
            "createTime": "2026-12-07T10:00:00.000000Z",
            "updateTime": "2026-12-07T10:00:00.000000Z",
            "expirationTime": "2099-12-09T10:00:00.000000Z",
            "sha256Hash": b64(hashlib.sha256(bytes(session["data"])).hexdigest().encode()),
            "uri": f"https://generativelanguage.googleapis.com/v1beta/{name}",
            "state": "PROCESSING" if video and self.processing_polls else "ACTIVE",
            "source": "UPLOADED",
        }
        self.uploaded[name] = bytes(session["data"])
        self.polls[name] = 0
        return Reply(body={"file": self.files[name]}, headers=final)

    def _get(self, file_id: str) -> Reply:
        name = f"files/{file_id}"
        file = self.files.get(name)
        if file is None:
            return error_reply(403, f"You do not have permission to access the File {file_id} or it may not exist.")
        self.polls[name] += 1
        if file["state"] == "PROCESSING" and self.polls[name] > self.processing_polls:
            file["state"] = "ACTIVE"
        return Reply(body=file)

    def unusable(self, body: dict[str, Any]) -> str | None:
        """Why a generate request's ``fileData`` cannot be used (unknown, or not ACTIVE yet)."""
        for content in body.get("contents") or []:
            for part in content.get("parts") or []:
                ref = part.get("fileData") or part.get("file_data")
                if not ref:
                    continue
                uri = ref.get("fileUri") or ref.get("file_uri") or ""
                if not uri.startswith("https://generativelanguage.googleapis.com/v1beta/files/"):
                    continue
                file = self.files.get(uri.split("/v1beta/", 1)[1])
                if file is None:
                    return f"File {uri} not found."
                if file["state"] != "ACTIVE":
                    return f"The File {file['name']} is not in an ACTIVE state and usage is not allowed."
        return None


# -- Gemini's image models ("Nano Banana") through generateContent --------------------------------
GEMINI_IMAGE_MODEL = re.compile(r"gemini-.*-image")
GEMINI_IMAGE_RATIOS = (
    "1:1",
    "3:2",
    "2:3",
    "3:4",
    "1:4",
    "4:1",
    "4:3",
    "4:5",
    "5:4",
    "1:8",
    "8:1",
    "9:16",
    "16:9",
    "21:9",
    "9:21",
)
# image_size -> (pixels, output tokens an image of it costs), as the Vertex AI model page gives them
GEMINI_IMAGE_RESOLUTIONS = {
    "512": (512 * 512, 747),
    "1K": (1024 * 1024, 1120),
    "2K": (2048 * 2048, 1680),
    "4K": (4096 * 4096, 2520),
}


def gemini_image_size(ratio: str, resolution: str) -> tuple[int, int]:
    """The (width, height) the fake makes for an aspect ratio at a resolution (sides in 16s)."""
    across, down = (int(side) for side in ratio.split(":"))
    pixels = GEMINI_IMAGE_RESOLUTIONS[resolution][0]
    width = round((pixels * across / down) ** 0.5 / 16) * 16
    return width, round(width * down / across / 16) * 16


def gemini_image_answer(body: dict[str, Any]) -> Reply:
    """An image model's ``generateContent`` answer: one PNG ``inlineData`` part of the asked
    ratio and resolution (1:1 at 1K by default), its output tokens counted as IMAGE. Without IMAGE
    in ``responseModalities`` it answers text, as the model would; a prompt with "forbidden" is
    stopped (finishReason IMAGE_SAFETY, no content); one with "chatty" gets text and no image."""
    config = body.get("generationConfig") or {}
    image_config = config.get("imageConfig") or {}
    ratio = image_config.get("aspectRatio", "1:1")
    resolution = image_config.get("imageSize", "1K")
    if ratio not in GEMINI_IMAGE_RATIOS or resolution not in GEMINI_IMAGE_RESOLUTIONS:
        return error_reply(400, "Invalid aspect ratio or image size.", "INVALID_ARGUMENT")
    prompt = _text_of((body.get("contents") or [{}])[-1])
    prompt_tokens = token_count(prompt)
    if "IMAGE" not in (config.get("responseModalities") or []) or "chatty" in prompt:
        return Reply(body=response_body("Here is a description instead.", usage=usage_metadata(prompt_tokens, 6)))
    if "forbidden" in prompt:
        stopped = response_body(None, finish_reason="IMAGE_SAFETY", usage=usage_metadata(prompt_tokens, None))
        return Reply(body=stopped)
    width, height = gemini_image_size(ratio, resolution)
    tokens = GEMINI_IMAGE_RESOLUTIONS[resolution][1]
    image = generated_png(f"{prompt}|{config.get('seed', 0)}", 0, width, height)
    usage = usage_metadata(prompt_tokens, tokens)
    usage["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": tokens}]
    parts = [{"inlineData": {"mimeType": "image/png", "data": b64(image)}}]
    return Reply(body=response_body(parts=parts, usage=usage, model_version="gemini-3.1-flash-image"))
