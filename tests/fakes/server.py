"""A scriptable HTTP server on 127.0.0.1 that the provider fakes build on.

A test queues :class:`Reply` objects (or sets a ``handler``) and points the real SDK at
``server.url``. Every request the server receives is recorded in ``server.requests`` so tests
can count attempts exactly. Replies can be delayed, streamed in pieces, cut off mid-way or
answered with a connection reset, which is how the fault-injection tests are built.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """One scripted answer.

    ``body`` is bytes, a str, or any JSON-serialisable value. ``chunks`` (instead of ``body``)
    are written one by one with ``chunk_delay`` between them, as a streamed (chunked) response;
    ``cut_after`` closes the socket after that many chunks without finishing the response.
    ``reset`` answers with a TCP reset and nothing else. ``delay`` waits before answering.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None
    chunk_delay: float = 0.0
    cut_after: int | None = None
    delay: float = 0.0
    reset: bool = False
    content_type: str | None = None


Handler = Callable[[RecordedRequest], Reply]


class FakeServer:
    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.replies: deque[Reply] = deque()
        self.handler = handler
        self.default: Reply | None = None
        self._lock = threading.Lock()
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle's algorithm and
            # delayed ACKs add ~40 ms to every reply and swamp what the benchmarks measure.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = _read_chunked(self.rfile)
                recorded = RecordedRequest(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with fake._lock:
                    fake.requests.append(recorded)
                reply = fake._next_reply(recorded)
                try:
                    fake._write(self, reply)
                except OSError:
                    # The client gave up first (a timeout test): nothing left to answer.
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        # A short poll interval so stop() returns in ~50 ms instead of the default 0.5 s.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget recorded requests and queued replies (for a server shared across tests)."""
        with self._lock:
            self.requests.clear()
            self.replies.clear()
        self.handler = None
        self.default = None

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self.replies:
                return self.replies.popleft()
        if self.handler is not None:
            return self.handler(request)
        if self.default is not None:
            return self.default
        return Reply(status=500, body={"error": "no reply scripted for " + request.path})

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        if reply.reset:
            sock = handler.connection
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            handler.close_connection = True
            return
        handler.send_response(reply.status)
        headers = {k.lower(): v for k, v in reply.headers.items()}
        if reply.chunks is not None:
            handler.send_header("Content-Type", reply.content_type or headers.pop("content-type", "text/event-stream"))
            handler.send_header("Transfer-Encoding", "chunked")
            for k, v in headers.items():
                handler.send_header(k, v)
            handler.end_headers()
            try:
                for i, chunk in enumerate(reply.chunks):
                    if reply.cut_after is not None and i >= reply.cut_after:
                        handler.wfile.flush()
                        handler.close_connection = True
                        handler.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    handler.wfile.flush()
                handler.wfile.write(b"0\r\n\r\n")
                handler.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, OSError):
                handler.close_connection = True
            return
        body = reply.body
        content_type = reply.content_type or headers.pop("content-type", None)
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        elif body is None:
            data = b""
        else:
            data = json.dumps(body).encode()
            content_type = content_type or "application/json"
        handler.send_header("Content-Type", content_type or "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        try:
            handler.wfile.write(data)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True


class _QuietServer(ThreadingHTTPServer):
    # Many processes connect at once in the shared-state tests: the default backlog of 5 resets them.
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeout and reset tests do it on purpose) are not server errors.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _read_chunked(rfile: Any) -> bytes:
    out = bytearray()
    while True:
        size = int(rfile.readline().strip() or b"0", 16)
        if size == 0:
            rfile.readline()
            return bytes(out)
        out += rfile.read(size)
        rfile.readline()


def sse(events: Iterable[tuple[str | None, Any]]) -> list[bytes]:
    """Server-sent events as chunks: ``(event_name_or_None, data)``; data dicts become JSON."""
    chunks = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {name}\n" if name else ""
        chunks.append(f"{head}data: {payload}\n\n".encode())
    return chunks


def ndjson(objects: Iterable[Any]) -> list[bytes]:
    """Newline-delimited JSON as chunks, one object a chunk (Ollama's streaming format)."""
    return [(json.dumps(o) + "\n").encode() for o in objects]
