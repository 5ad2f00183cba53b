"""A fake Ollama daemon: :class:`FakeServer` speaking Ollama's HTTP API on 127.0.0.1.

Left alone it behaves like a daemon with the models in ``models`` pulled: ``POST /api/chat``
answers with one JSON body, or NDJSON lines ending in a ``"done": true`` line when the body
asks to stream (Ollama streams unless told ``"stream": false``); ``POST /api/embed`` returns
one deterministic vector per input; ``POST /api/show`` and ``GET /api/tags`` describe the
models; an unknown model gets Ollama's 404 ``{"error": "model \\"x\\" not found, try pulling it
first"}``. Tests script anything else by queueing :class:`Reply` objects built with the helpers
below (they take precedence over the default behaviour).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tests.fakes.server import FakeServer, RecordedRequest, Reply, ndjson

__all__ = [
    "FakeOllama",
    "chat_body",
    "chat_reply",
    "chat_stream_events",
    "embed_reply",
    "error_reply",
    "model_not_found",
    "stream_reply",
]

CREATED_AT = "2025-01-01T00:00:00.000000Z"
NDJSON = "application/x-ndjson"


def _tool_calls(calls: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """``[{"name": ..., "arguments": {...}, "id": optional}]`` -> Ollama's tool_calls shape."""
    out = []
    for index, call in enumerate(calls or ()):
        entry: dict[str, Any] = {
            "function": {"index": index, "name": call["name"], "arguments": call.get("arguments", {})}
        }
        if call.get("id"):
            entry["id"] = call["id"]
        out.append(entry)
    return out


def chat_body(
    content: str = "",
    *,
    model: str = "llama3.2",
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    thinking: str | None = None,
    done_reason: str | None = "stop",
    prompt_eval_count: int | None = 12,
    eval_count: int | None = 7,
) -> dict[str, Any]:
    """A complete non-streamed ``/api/chat`` answer."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = _tool_calls(tool_calls)
    body: dict[str, Any] = {"model": model, "created_at": CREATED_AT, "message": message, "done": True}
    if done_reason is not None:
        body["done_reason"] = done_reason
    body.update({"total_duration": 1_000_000, "load_duration": 10_000, "prompt_eval_duration": 100_000})
    if prompt_eval_count is not None:
        body["prompt_eval_count"] = prompt_eval_count
    if eval_count is not None:
        body["eval_count"] = eval_count
    body["eval_duration"] = 500_000
    return body


def chat_reply(content: str = "", **kwargs: Any) -> Reply:
    return Reply(body=chat_body(content, **kwargs))


def chat_stream_events(
    pieces: Iterable[str],
    *,
    model: str = "llama3.2",
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    thinking: Sequence[str] = (),
    done_reason: str | None = "stop",
    prompt_eval_count: int | None = 12,
    eval_count: int | None = 7,
    done: bool = True,
) -> list[dict[str, Any]]:
    """The NDJSON objects of a streamed answer: thinking, text pieces, tool calls, the done line."""
    events: list[dict[str, Any]] = []

    def line(message: dict[str, Any]) -> dict[str, Any]:
        return {"model": model, "created_at": CREATED_AT, "message": message, "done": False}

    for piece in thinking:
        events.append(line({"role": "assistant", "content": "", "thinking": piece}))
    for piece in pieces:
        events.append(line({"role": "assistant", "content": piece}))
    if tool_calls:
        # Ollama sends tool calls whole, in one line of their own.
        events.append(line({"role": "assistant", "content": "", "tool_calls": _tool_calls(tool_calls)}))
    if done:
        final = chat_body(
            "", model=model, done_reason=done_reason, prompt_eval_count=prompt_eval_count, eval_count=eval_count
        )
        events.append(final)
    return events


def stream_reply(events: Iterable[Any], *, cut_after: int | None = None, chunk_delay: float = 0.0) -> Reply:
    """NDJSON ``events`` (dicts, or raw str/bytes lines) as a chunked streamed response."""
    chunks = [
        event if isinstance(event, bytes) else event.encode() if isinstance(event, str) else ndjson([event])[0]
        for event in events
    ]
    return Reply(chunks=chunks, content_type=NDJSON, cut_after=cut_after, chunk_delay=chunk_delay)


def embed_reply(
    vectors: Sequence[Sequence[float]], *, model: str = "nomic-embed-text", prompt_eval_count: int = 8
) -> Reply:
    return Reply(
        body={
            "model": model,
            "embeddings": [list(v) for v in vectors],
            "total_duration": 1_000_000,
            "load_duration": 10_000,
            "prompt_eval_count": prompt_eval_count,
        }
    )


def error_reply(status: int, message: str, *, headers: dict[str, str] | None = None) -> Reply:
    """Ollama's error body: ``{"error": "..."}`` with the status."""
    return Reply(status=status, body={"error": message}, headers=headers or {})


def model_not_found(model: str) -> Reply:
    return error_reply(404, f'model "{model}" not found, try pulling it first')


def fake_vector(text: str, index: int) -> list[float]:
    """The default embedding: deterministic and different per text, so tests can check order."""
    return [float(len(text)), float(index), float(sum(map(ord, text)) % 97)]


class FakeOllama(FakeServer):
    """A fake daemon with ``models`` pulled; queued replies override its default answers."""

    def __init__(
        self, models: Iterable[str] = ("llama3.2", "nomic-embed-text"), answer: str = "Hello from Ollama."
    ) -> None:
        super().__init__(handler=self._route)
        self.models = set(models)
        self.answer = answer

    def _pulled(self, model: Any) -> bool:
        if not isinstance(model, str):
            return False
        return model in self.models or model.removesuffix(":latest") in self.models

    def _route(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == "/api/tags":
            return Reply(
                body={
                    "models": [
                        {"name": f"{m}:latest", "model": f"{m}:latest", "size": 1, "digest": "0" * 64}
                        for m in sorted(self.models)
                    ]
                }
            )
        if request.method == "GET" and request.path == "/api/version":
            return Reply(body={"version": "0.12.0"})
        if request.method != "POST" or request.path not in ("/api/chat", "/api/embed", "/api/show"):
            return Reply(status=404, body="404 page not found", content_type="text/plain")
        try:
            body = request.json() or {}
        except json.JSONDecodeError:
            return error_reply(400, "invalid character in request body")
        model = body.get("model")
        if not self._pulled(model):
            return model_not_found(str(model))
        if request.path == "/api/show":
            return Reply(
                body={
                    "modelfile": f"FROM {model}",
                    "template": "{{ .Prompt }}",
                    "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
                    "model_info": {"general.architecture": "llama"},
                    "capabilities": ["completion", "tools"],
                }
            )
        if request.path == "/api/embed":
            inputs = body.get("input")
            texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
            return embed_reply(
                [fake_vector(t, i) for i, t in enumerate(texts)],
                model=model,
                prompt_eval_count=sum(len(t.split()) for t in texts),
            )
        words = self.answer.split(" ")
        if body.get("stream", True):
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            return stream_reply(chat_stream_events(pieces, model=model, eval_count=len(words)))
        return chat_reply(self.answer, model=model, eval_count=len(words))
