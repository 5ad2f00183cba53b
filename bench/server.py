"""A fast fake model API on 127.0.0.1, for the benchmark. Run it in its own process.

It is a raw :mod:`asyncio` protocol with a minimal HTTP/1.1 parser (keep-alive, Content-Length
or chunked request bodies) and pre-encoded answers, so it costs far less per request than the
clients it serves and is never what a benchmark measures. It answers, by path:

* ``POST .../v1/messages`` — an Anthropic Messages API ``message`` (JSON), or with
  ``"stream": true`` an SSE stream of ``--chunks`` text deltas between ``message_start`` and
  ``message_stop``.
* ``POST .../chat/completions`` — an OpenAI ``chat.completion`` (JSON), or with ``"stream":
  true`` ``--chunks`` ``chat.completion.chunk`` events, a usage chunk and ``data: [DONE]``. A
  request with tools whose history holds fewer than four tool results is answered with two calls
  of the tool ``noop`` instead (the tool-loop scenario: three steps, two calls in each of the first two).
* ``POST /model/<model-id>/invoke`` — a Bedrock ``InvokeModel`` answer for Titan embeddings
  (``{"embedding": [...], "inputTextTokenCount": n}``) after ``--embed-delay`` seconds.
* ``POST .../models/<model>:generateContent`` — a Gemini ``GenerateContentResponse`` (JSON).
* ``POST .../audio/transcriptions`` — a ``gpt-4o-transcribe`` JSON transcription (text and token
  usage). The multipart upload is read off the socket and dropped as it arrives, never buffered
  (the media scenario sends 5 MB a call).
* anything else — 404 with a JSON error body.

Streams are sent with chunked transfer encoding, one write per event, like real servers do.
It prints ``PORT <n>`` on stdout once listening and serves until killed (or, with
``--watch-stdin``, until its stdin closes).

    python bench/server.py --chunks 50 --embed-delay 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

ANTHROPIC_MODEL = "claude-sonnet-4-6"
OPENAI_MODEL = "gpt-6-luna"  # the model the bench asks for (run.py); replies name it
EMBED_DIMENSIONS = 256

# A reply of a realistic size: a paragraph of text, usage with cache fields, ids.
REPLY_TEXT = (
    "The quick brown fox jumps over the lazy dog. Benchmarks measure what they measure, and "
    "this one measures the client: the server answers from memory in microseconds."
)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def anthropic_message() -> bytes:
    return _json(
        {
            "id": "msg_01benchmark",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL,
            "content": [{"type": "text", "text": REPLY_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 12,
                "output_tokens": 33,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }
    )


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {payload}\n\n".encode()


def _pieces(chunks: int) -> list[str]:
    return [f"word{i} " for i in range(chunks)]


def anthropic_stream(chunks: int) -> list[bytes]:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_01benchmark",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    }
    events = [
        _sse("message_start", start),
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    for piece in _pieces(chunks):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        events.append(_sse("content_block_delta", delta))
    events += [
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return events


def openai_completion() -> bytes:
    return _json(
        {
            "id": "chatcmpl-benchmark",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": OPENAI_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 33,
                "total_tokens": 45,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_benchmark",
        }
    )


def openai_tool_calls(done: int) -> bytes:
    """Two calls of ``noop`` (ids after the ``done`` results already in the history)."""
    calls = [
        {"id": f"call_{done + i}", "type": "function", "function": {"name": "noop", "arguments": f'{{"x": {i}}}'}}
        for i in (1, 2)
    ]
    return _json(
        {
            "id": "chatcmpl-benchmark-tools",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": OPENAI_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60},
        }
    )


def openai_stream(chunks: int) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-benchmark",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": OPENAI_MODEL,
            "system_fingerprint": "fp_benchmark",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    events = [_sse(None, chunk({"role": "assistant", "content": "", "refusal": None}))]
    events += [_sse(None, chunk({"content": piece})) for piece in _pieces(chunks)]
    events.append(_sse(None, chunk({}, "stop")))
    usage = chunk({})
    usage["choices"] = []
    usage["usage"] = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    events.append(_sse(None, usage))
    events.append(_sse(None, "[DONE]"))
    return events


def gemini_response() -> bytes:
    return _json(
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": REPLY_TEXT}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 33, "totalTokenCount": 45},
            "modelVersion": "gemini-3.8-flash",
        }
    )


def openai_transcription() -> bytes:
    usage = {
        "type": "tokens",
        "input_tokens": 1_300,
        "input_token_details": {"audio_tokens": 1_300, "text_tokens": 0},
        "output_tokens": 33,
        "total_tokens": 1_333,
    }
    return _json({"text": REPLY_TEXT, "usage": usage})


def titan_embedding() -> bytes:
    vector = [round((i % 17) / 17 - 0.5, 6) for i in range(EMBED_DIMENSIONS)]
    return _json({"embedding": vector, "inputTextTokenCount": 5})


def _response(status: bytes, body: bytes, content_type: bytes = b"application/json", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


_STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class Answers:
    """Every answer, encoded once."""

    def __init__(self, chunks: int, embed_delay: float, chunk_delay: float) -> None:
        self.anthropic = _response(b"200 OK", anthropic_message(), extra=b"request-id: req_bench\r\n")
        self.openai = _response(b"200 OK", openai_completion(), extra=b"x-request-id: req_bench\r\n")
        self.openai_tools = {n: _response(b"200 OK", openai_tool_calls(n)) for n in (0, 2)}
        self.titan = _response(b"200 OK", titan_embedding(), extra=b"x-amzn-requestid: req-bench\r\n")
        self.gemini = _response(b"200 OK", gemini_response())
        self.transcription = _response(b"200 OK", openai_transcription(), extra=b"x-request-id: req_bench\r\n")
        self.not_found = _response(b"404 Not Found", _json({"error": {"type": "not_found", "message": "no route"}}))
        self.anthropic_stream = [_STREAM_HEAD] + [_chunked(e) for e in anthropic_stream(chunks)] + [b"0\r\n\r\n"]
        self.openai_stream = [_STREAM_HEAD] + [_chunked(e) for e in openai_stream(chunks)] + [b"0\r\n\r\n"]
        self.embed_delay = embed_delay
        self.chunk_delay = chunk_delay


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _wants_stream(body: bytes) -> bool:
    if b'"stream"' not in body:
        return False
    try:
        return json.loads(body).get("stream") is True
    except ValueError:
        return False


class HTTPProtocol(asyncio.Protocol):
    """One keep-alive connection: parse requests as bytes arrive, answer each in order."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # an answer is being written later (delay or paced stream)
        # A request whose head is read and whose body is still arriving: (target, body start,
        # length), so a large body is waited for without searching the buffer again per packet.
        self.head: tuple[bytes, int, int] | None = None
        self.discarding = 0  # bytes of an upload's body still to drop as they arrive
        self.discarded_for: bytes | None = None  # the target answered once its body is dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            dropped = min(self.discarding, len(data))
            self.discarding -= dropped
            data = data[dropped:]
            if self.discarding:
                return
            assert self.discarded_for is not None
            target, self.discarded_for = self.discarded_for, None
            self._answer(target, b"")
        self.buffer += data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        while not self.busy:
            request = self._next_request()
            if request is None:
                return
            self._answer(*request)

    def _next_request(self) -> tuple[bytes, bytes] | None:
        buffer = self.buffer
        if self.head is not None:  # the head is read: wait for the body without parsing again
            target, start, length = self.head
            if len(buffer) < start + length:
                return None
            self.head = None
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            return target, body
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[:end])
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1]
        length = 0
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        start = end + 4
        if not chunked and target.split(b"?", 1)[0].endswith(b"/audio/transcriptions"):
            # An upload: drop its body as it arrives (what is here now, the rest in data_received).
            here = min(len(buffer) - start, length)
            del buffer[: start + here]
            if here == length:
                return target, b""
            self.discarding, self.discarded_for = length - here, target
            return None
        if chunked:
            decoded = _dechunk(buffer, start)
            if decoded is None:
                return None
            body, consumed = decoded
            del buffer[:consumed]
            return target, body
        if len(buffer) < start + length:
            self.head = (target, start, length)
            return None
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        return target, body

    def _answer(self, target: bytes, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        answers = self.answers
        path = target.split(b"?", 1)[0]
        if path.endswith(b"/messages"):
            if _wants_stream(body):
                self._stream(answers.anthropic_stream)
            else:
                transport.write(answers.anthropic)
        elif path.endswith(b"/chat/completions"):
            if _wants_stream(body):
                self._stream(answers.openai_stream)
            elif b'"tools"' in body and (done := body.count(b'"role":"tool"') + body.count(b'"role": "tool"')) < 4:
                transport.write(answers.openai_tools[done])
            else:
                transport.write(answers.openai)
        elif path.endswith(b":generateContent"):
            transport.write(answers.gemini)
        elif path.endswith(b"/audio/transcriptions"):
            transport.write(answers.transcription)
        elif path.startswith(b"/model/") and path.endswith(b"/invoke"):
            if answers.embed_delay > 0:
                self._later(answers.embed_delay, answers.titan)
            else:
                transport.write(answers.titan)
        else:
            transport.write(answers.not_found)

    def _later(self, delay: float, data: bytes) -> None:
        self.busy = True

        def send() -> None:
            self.busy = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)
                self._serve()

        asyncio.get_running_loop().call_later(delay, send)

    def _stream(self, parts: list[bytes]) -> None:
        transport = self.transport
        assert transport is not None
        if self.answers.chunk_delay <= 0:
            for part in parts:
                transport.write(part)
            return
        self.busy = True
        asyncio.get_running_loop().create_task(self._paced(parts))

    async def _paced(self, parts: list[bytes]) -> None:
        transport = self.transport
        assert transport is not None
        for part in parts:
            if transport.is_closing():
                return
            transport.write(part)
            await asyncio.sleep(self.answers.chunk_delay)
        self.busy = False
        self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked request body starting at ``start``: (body, bytes consumed), or None if incomplete."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", position)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 2
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2


async def serve(host: str, port: int, answers: Answers, *, watch_stdin: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HTTPProtocol(answers), host, port, backlog=1024, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    done = loop.create_future()
    if watch_stdin:
        # Started by bench/run.py: stop when the parent goes away (its end of our stdin closes).
        loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    async with server:
        await done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=50, help="text deltas per streamed answer")
    parser.add_argument("--embed-delay", type=float, default=0.02, help="seconds before each Titan answer")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed events")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches end of file")
    args = parser.parse_args(argv)
    answers = Answers(args.chunks, args.embed_delay, args.chunk_delay)
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(args.host, args.port, answers, watch_stdin=args.watch_stdin))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
