"""A fake OpenAI API (Chat Completions + Embeddings) on top of :class:`FakeServer`.

It speaks the real wire format, so the real ``openai`` SDK can be pointed at it: JSON
``chat.completion`` bodies, ``chat.completion.chunk`` server-sent events ending in
``data: [DONE]`` (with the usage chunk only when ``stream_options.include_usage`` asks for it),
``/embeddings`` answers (base64 float32 when ``encoding_format`` is ``base64``, as the SDK asks by
default) and OpenAI error bodies. Whether a chat request is streamed is read from the request,
so one scripted :class:`Answer` serves ``complete`` and ``stream`` alike.

Faults (errors, resets, cut-off streams) are queued as raw :class:`Reply` objects on the server;
they take precedence over the scripted answers.
"""

from __future__ import annotations

import base64
import json
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.audio import OpenAIAudio
from tests.fakes.images import generated_png
from tests.fakes.server import FakeServer, RecordedRequest, Reply, sse

__all__ = [
    "Answer",
    "FakeOpenAI",
    "chunk_events",
    "completion_body",
    "embeddings_reply",
    "error_body",
    "error_reply",
    "fake_vector",
    "response_body",
    "response_events",
]

DEFAULT_MODEL = "gpt-4o-2024-08-06"


@dataclass
class Answer:
    """One scripted model answer. ``tool_calls`` are ``(id, name, arguments_json_text)``."""

    text: str = ""
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    finish_reason: str | None = None  # default: "tool_calls" with tool calls, else "stop"
    refusal: str | None = None
    model: str = DEFAULT_MODEL
    prompt_tokens: int = 12
    completion_tokens: int = 5
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # part of prompt_tokens, reported where nonzero
    service_tier: str = "default"  # the tier the body (and every chunk) says served the call
    pieces: list[str] | None = None  # how a stream splits the text; default: word by word
    args_piece: int = 4  # streamed tool-call arguments come in fragments of this many chars
    # Responses API only: a reasoning item (summary text, encrypted content) before the output,
    # and an incomplete status with its reason ("max_output_tokens", "content_filter").
    reasoning: str | None = None
    #: Responses API only: reasoning items, each the list of its summary parts (replaces ``reasoning``)
    reasoning_items: list[list[str]] | None = None
    encrypted_content: str | None = None
    incomplete: str | None = None
    #: Responses API only: the response fails with this error ({"code", "message"})
    failed: dict[str, Any] | None = None
    #: Responses API only: the output_text part's annotations (file citations...)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finish(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {
                "cached_tokens": self.cached_tokens,
                "audio_tokens": 0,
                **({"cache_write_tokens": self.cache_write_tokens} if self.cache_write_tokens else {}),
            },
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def text_pieces(self) -> list[str]:
        if self.pieces is not None:
            return self.pieces
        words = self.text.split(" ")
        return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words) if w or i == 0]


def completion_body(answer: Answer, *, completion_id: str = "chatcmpl-fake") -> dict[str, Any]:
    """A non-streamed ``chat.completion`` body."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text if answer.refusal is None else None,
        "refusal": answer.refusal,
        "annotations": [],
    }
    if answer.tool_calls:
        message["content"] = answer.text or None
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in answer.tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish}],
        "usage": answer.usage(),
        "service_tier": answer.service_tier,
        "system_fingerprint": "fp_fake",
    }


def stream_chunk(
    answer: Answer,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    *,
    completion_id: str = "chatcmpl-fake",
    include_usage: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``: ``delta`` for the first choice (None: no choices, as the
    usage chunk has), ``usage: null`` where usage was asked for, ``extra`` keys on top."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": answer.model,
        "service_tier": answer.service_tier,
        "system_fingerprint": "fp_fake",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if include_usage:
        body["usage"] = None
    body.update(extra)
    return body


def chunk_events(
    answer: Answer,
    *,
    include_usage: bool,
    done: bool = True,
    usage_on_finish: bool = False,
    completion_id: str = "chatcmpl-fake",
) -> list[bytes]:
    """The SSE chunks of a streamed answer, as OpenAI sends them.

    ``usage_on_finish`` puts usage on the finish chunk instead, unasked, as Mistral does.
    """

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return stream_chunk(answer, delta, finish, completion_id=completion_id, include_usage=include_usage, **extra)

    events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if answer.refusal is not None:
        events.append(chunk({"refusal": answer.refusal}))
    elif answer.text:
        events.extend(chunk({"content": piece}) for piece in answer.text_pieces())
    for index, (cid, name, args) in enumerate(answer.tool_calls):
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": cid,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        step = max(1, answer.args_piece)
        for start in range(0, len(args), step):
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "function": {"arguments": args[start : start + step]},
                            }
                        ]
                    }
                )
            )
    if usage_on_finish:
        events.append(chunk({}, answer.finish, usage=answer.usage()))
    else:
        events.append(chunk({}, answer.finish))
    if include_usage:
        events.append(chunk(None, usage=answer.usage()))
    out = sse((None, e) for e in events)
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_reply(
    status: int,
    message: str = "error",
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    return Reply(status=status, body=error_body(message, type=type, code=code), headers=dict(headers or {}))


def fake_vector(text: str, dimensions: int = 3) -> list[float]:
    """The deterministic embedding the fake returns for a text (exact in float32)."""
    base = [float(len(text)), float(sum(map(ord, text)) % 1000), 0.5]
    return (base * (dimensions // 3 + 1))[:dimensions]


class FakeOpenAI:
    """Answers ``/chat/completions`` from a queue of :class:`Answer` (default: "ok") and
    ``/embeddings`` with :func:`fake_vector`, in reverse order to prove clients sort by index."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.answers: deque[Answer] = deque()
        self.stream_done = True  # False: streams end cleanly but without "data: [DONE]"
        # Mistral's dialect: a 422 for ``stream_options``, usage on the finish chunk unasked.
        self.mistral = False
        self.audio = OpenAIAudio()  # /audio/transcriptions and /audio/speech
        server.handler = self._handle

    def answer(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def bodies(self, path_suffix: str = "/chat/completions") -> list[Any]:
        return [r.json() for r in self.server.requests if r.path.endswith(path_suffix)]

    def _handle(self, request: RecordedRequest) -> Reply:
        path = request.path.split("?")[0]
        if request.method != "POST":
            return error_reply(405, f"method {request.method} not allowed")
        if "/audio/" in path:  # multipart uploads and binary answers: tests/fakes/audio.py
            return self.audio.handle(request, path)
        try:
            body = request.json()
        except json.JSONDecodeError:
            return error_reply(400, "We could not parse the JSON body of your request.")
        if path.endswith("/chat/completions"):
            return self._chat(body)
        if path.endswith("/responses"):
            return self._responses(body)
        if path.endswith("/embeddings"):
            return self._embeddings(body)
        if path.endswith("/images/generations"):
            return images_reply(body)
        return error_reply(404, f"Invalid URL (POST {path})", code="unknown_url")

    def _chat(self, body: dict[str, Any]) -> Reply:
        if not body.get("messages") or not body.get("model"):
            return error_reply(400, "you must provide a model and messages")
        answer = self.answers.popleft() if self.answers else Answer("ok")
        if self.mistral and "stream_options" in body:
            return Reply(
                status=422,
                body={
                    "object": "error",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                    "message": {
                        "detail": [
                            {
                                "type": "extra_forbidden",
                                "loc": ["body", "stream_options"],
                                "msg": "Extra inputs are not permitted",
                            }
                        ]
                    },
                },
            )
        if body.get("audio") is not None:
            return audio_answer_reply(body, answer)
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return Reply(
                chunks=chunk_events(answer, include_usage=include, done=self.stream_done, usage_on_finish=self.mistral)
            )
        return Reply(body=completion_body(answer))

    def _embeddings(self, body: dict[str, Any]) -> Reply:
        return embeddings_reply(body)

    def _responses(self, body: dict[str, Any]) -> Reply:
        if not body.get("input") or not body.get("model"):
            return error_reply(400, "you must provide a model and input")
        answer = self.answers.popleft() if self.answers else Answer("ok")
        if body.get("stream"):
            return Reply(chunks=response_events(answer, done=self.stream_done))
        return Reply(body=response_body(answer))


# -- the Responses API ------------------------------------------------------------------------------
def response_output(answer: Answer) -> list[dict[str, Any]]:
    """The ``output`` items of a response: reasoning, then the message, then function calls."""
    output: list[dict[str, Any]] = []
    if answer.reasoning_items is not None:
        for index, parts in enumerate(answer.reasoning_items):
            output.append(
                {
                    "id": f"rs_fake{index}",
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": part} for part in parts],
                }
            )
    elif answer.reasoning is not None or answer.encrypted_content is not None:
        item: dict[str, Any] = {
            "id": "rs_fake",
            "type": "reasoning",
            "summary": [] if answer.reasoning is None else [{"type": "summary_text", "text": answer.reasoning}],
        }
        if answer.encrypted_content is not None:
            item["encrypted_content"] = answer.encrypted_content
        output.append(item)
    if answer.text or answer.refusal is not None or not answer.tool_calls:
        part = (
            {"type": "refusal", "refusal": answer.refusal}
            if answer.refusal is not None
            else {"type": "output_text", "text": answer.text, "annotations": list(answer.annotations), "logprobs": []}
        )
        output.append(
            {"id": "msg_fake", "type": "message", "role": "assistant", "status": "completed", "content": [part]}
        )
    for index, (cid, name, args) in enumerate(answer.tool_calls):
        output.append(
            {
                "id": f"fc_fake{index}",
                "type": "function_call",
                "call_id": cid,
                "name": name,
                "arguments": args,
                "status": "completed",
            }
        )
    return output


def response_body(answer: Answer, *, status: str | None = None) -> dict[str, Any]:
    """A ``response`` object as ``POST /v1/responses`` returns it."""
    if status is None:
        status = "failed" if answer.failed else "incomplete" if answer.incomplete else "completed"
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "model": answer.model,
        "output": [] if status in ("in_progress", "failed") else response_output(answer),
        "error": answer.failed if status == "failed" else None,
        "incomplete_details": {"reason": answer.incomplete} if status == "incomplete" else None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "store": False,
        "service_tier": answer.service_tier,
        "usage": None
        if status == "in_progress"
        else {
            "input_tokens": answer.prompt_tokens,
            "input_tokens_details": {
                "cached_tokens": answer.cached_tokens,
                "cache_write_tokens": answer.cache_write_tokens,
            },
            "output_tokens": answer.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        },
    }


def response_events(answer: Answer, *, done: bool = True, error: dict[str, Any] | None = None) -> list[bytes]:
    """A streamed response: every event the SDK's ResponseStreamEvent union lists for what the
    answer holds, each with its ``sequence_number``. ``error`` sends an ``error`` event instead of
    the terminal one; ``done=False`` cuts the stream before it."""
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    emit("response.created", response=response_body(answer, status="in_progress"))
    emit("response.in_progress", response=response_body(answer, status="in_progress"))
    for index, item in enumerate(response_output(answer) if not answer.failed else []):
        kind = item["type"]
        if kind == "reasoning":
            emit("response.output_item.added", output_index=index, item={**item, "summary": []})
            for s_index, summary in enumerate(item["summary"]):
                part = {"type": "summary_text", "text": ""}
                emit(
                    "response.reasoning_summary_part.added",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=s_index,
                    part=part,
                )
                for piece in Answer(summary["text"]).text_pieces():
                    emit(
                        "response.reasoning_summary_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        summary_index=s_index,
                        delta=piece,
                    )
                emit(
                    "response.reasoning_summary_text.done",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=s_index,
                    text=summary["text"],
                )
                emit(
                    "response.reasoning_summary_part.done",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=s_index,
                    part=summary,
                )
        elif kind == "message":
            part = item["content"][0]
            emit(
                "response.output_item.added", output_index=index, item={**item, "content": [], "status": "in_progress"}
            )
            empty = {"type": "refusal", "refusal": ""} if part["type"] == "refusal" else {**part, "text": ""}
            emit("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=empty)
            if part["type"] == "refusal":
                emit(
                    "response.refusal.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=part["refusal"],
                )
                emit(
                    "response.refusal.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    refusal=part["refusal"],
                )
            else:
                for piece in answer.text_pieces():
                    emit(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                emit(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            emit("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part)
        elif kind == "function_call":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            step = max(1, answer.args_piece)
            for start in range(0, len(item["arguments"]), step):
                emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=item["arguments"][start : start + step],
                )
            emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        emit("response.output_item.done", output_index=index, item=item)
    if error is not None:
        emit("error", **error)
    elif done:
        final = response_body(answer)
        emit(
            {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}[
                final["status"]
            ],
            response=final,
        )
    return sse((event["type"], event) for event in events)


def embeddings_reply(body: dict[str, Any]) -> Reply:
    """The ``/embeddings`` answer for a request body: :func:`fake_vector` per input, listed in
    reverse order to prove clients sort by index."""
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or len(inputs) > 2048:
        return error_reply(400, "'input' must be a string or a list of 1 to 2048 strings")
    dims = body.get("dimensions") or 3
    data = []
    for index, text in enumerate(inputs):
        vector = fake_vector(text, dims)
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(t.split()) for t in inputs)
    return Reply(
        body={
            "object": "list",
            "data": data[::-1],
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


_GPT_IMAGE_1_SIZES = {"1024x1024", "1536x1024", "1024x1536", "auto"}


def _gpt_image_size_error(model: str, size: str) -> str | None:
    """What the Images API says of a size the model cannot make, or None. gpt-image-1, -1-mini and
    -1.5 make three sizes; gpt-image-2 and later any WIDTHxHEIGHT with sides a multiple of 16, the
    long side at most 3,840 and 3x the short one, 655,360 to 8,294,400 pixels."""
    if size == "auto":
        return None
    if model.startswith("gpt-image-1"):
        return None if size in _GPT_IMAGE_1_SIZES else f"Supported values are: {sorted(_GPT_IMAGE_1_SIZES)}."
    width, height = (int(side) for side in size.split("x"))
    if width % 16 or height % 16 or max(width, height) > 3840 or max(width, height) > 3 * min(width, height):
        return "Width and height must be multiples of 16, at most 3840, within a 3:1 aspect ratio."
    if not 655_360 <= width * height <= 8_294_400:
        return "The requested size must have between 655360 and 8294400 pixels."
    return None


def images_reply(body: dict[str, Any]) -> Reply:
    """``/images/generations`` as the GPT image models answer: ``b64_json`` images of the asked size
    (1024x1024 for "auto"; PNG, or an SVG document for ``output_format="svg"``), token usage, and
    a 400 for what the API refuses (a size the model cannot make, n over 10)."""
    prompt, size, n = body.get("prompt"), body.get("size", "auto"), body.get("n", 1)
    model, output_format = str(body.get("model", "")), body.get("output_format", "png")
    if not isinstance(prompt, str) or not prompt:
        return error_reply(400, "Missing required parameter: 'prompt'.")
    refused = _gpt_image_size_error(model, size)
    if refused is not None:
        return error_reply(400, f"Invalid value: '{size}'. {refused}")
    if not isinstance(n, int) or not 1 <= n <= 10:
        return error_reply(400, "Invalid 'n': integer above maximum value. Expected a value <= 10.")
    width, height = (1024, 1024) if size == "auto" else (int(side) for side in size.split("x"))

    def image(index: int) -> bytes:
        if output_format == "svg":  # an SVG answer has no signature a sniffer knows: text
            return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"/>'.encode()
        return generated_png(prompt, index, width, height)

    data = [{"b64_json": base64.b64encode(image(i)).decode(), "revised_prompt": None} for i in range(n)]
    words = len(prompt.split())
    usage = {
        "input_tokens": words,
        "output_tokens": 272 * n,
        "total_tokens": words + 272 * n,
        "input_tokens_details": {"text_tokens": words, "image_tokens": 0},
    }
    return Reply(body={"created": 1767225600, "data": data, "usage": usage, "output_format": output_format})


def audio_answer_reply(body: dict[str, Any], answer: Answer) -> Reply:
    """A spoken answer as gpt-audio gives it: ``message.audio`` (id, base64 audio, transcript) and
    no content; audio tokens in the usage details. Refused as the API does without ``modalities``.

    The audio is half a second of a 24 kHz tone: a WAV file for ``wav`` (and the formats the fake
    does not encode), the bare samples for ``pcm16``. Streamed (pcm16 only, as the API says), it
    comes as ``delta.audio`` pieces: the id with the first transcript piece, the rest of the
    transcript, the base64 samples in pieces, then the expiry alone."""
    import base64

    from tests.fakes.audio import tone_wav

    if "audio" not in (body.get("modalities") or ()):
        return error_reply(400, "audio output requires modalities to include 'audio'")
    answer_format = body["audio"].get("format")
    if answer_format not in ("wav", "mp3", "flac", "opus", "pcm16", "aac") or not body["audio"].get("voice"):
        return error_reply(400, "audio needs a voice and a format")
    spoken = tone_wav(0.5, rate=24000)
    samples = spoken[44:]  # the tone's PCM, after the 44-byte header wave writes
    audio_id = f"audio_{len(body['messages'])}"
    usage = answer.usage()
    usage["prompt_tokens_details"] = {"audio_tokens": 0, "cached_tokens": 0}
    usage["completion_tokens_details"] = {"audio_tokens": usage["completion_tokens"]}
    if body.get("stream"):
        if answer_format != "pcm16":
            return error_reply(
                400,
                f"Unsupported value: 'audio.format' does not support '{answer_format}' when stream=true. "
                "Supported values are: 'pcm16'.",
            )
        pieces = answer.text_pieces() if answer.text else [""]
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None, "refusal": None}]
        deltas.append({"audio": {"id": audio_id, "transcript": pieces[0]}})
        deltas.extend({"audio": {"transcript": piece}} for piece in pieces[1:])
        step = len(samples) // 3 + 1  # three pieces, the last shorter, none a multiple of 3 bytes
        deltas.extend(
            {"audio": {"data": base64.b64encode(samples[i : i + step]).decode()}} for i in range(0, len(samples), step)
        )
        deltas.append({"audio": {"expires_at": 1_700_003_600}})
        events = [stream_chunk(answer, delta) for delta in deltas]
        events.append(stream_chunk(answer, {}, answer.finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(stream_chunk(answer, None, usage=usage))
        return Reply(chunks=[*sse((None, e) for e in events), b"data: [DONE]\n\n"])
    completion = completion_body(answer)
    message = completion["choices"][0]["message"]
    message["content"] = None
    message["audio"] = {
        "id": audio_id,
        "data": base64.b64encode(samples if answer_format == "pcm16" else spoken).decode(),
        "transcript": answer.text,
        "expires_at": 1_700_003_600,
    }
    completion["usage"] = usage
    return Reply(body=completion)
