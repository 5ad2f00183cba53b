"""A rule-based stand-in for a model that follows instructions, behind the OpenAI fake.

LangChain's standard integration tests need a model that does what it is asked: call the tool the
prompt names, with the numbers and names in the prompt as arguments; answer a forced ``tool_choice``
with that tool; reply with JSON matching a ``response_format`` schema; stop at a stop sequence; cut a
reply at ``max_tokens``. :class:`Responder` decides each answer from the request body alone (no
script, no knowledge of which test is running) and :class:`OpenAIResponder` speaks it over the
real Chat Completions wire format of :mod:`tests.fakes.openai`, streamed or not.

Token counts are words (a fake's tokenizer). Usage is realistic in shape: a prompt that repeats a
long prefix (>= ``CACHE_MIN_WORDS`` words) seen before reports those words as cached, and a request
with ``reasoning_effort`` reports reasoning tokens inside the completion tokens, as OpenAI does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import anthropic as fa
from tests.fakes.openai import Answer, chunk_events, completion_body, embeddings_reply, error_reply
from tests.fakes.server import FakeServer, RecordedRequest, Reply

CACHE_MIN_WORDS = 200
REASONING_WORDS = 7


@dataclass
class Decision:
    text: str = ""
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments JSON)
    finish_reason: str | None = None


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"(?<![\w.])-?\d+(?![\w.])", text)]


def _quoted(text: str) -> list[str]:
    return [single or double for single, double in re.findall(r"'([^']+)'|\"([^\"]+)\"", text)]


def _proper_noun_phrase(text: str) -> str | None:
    """The first run of capitalised words that is not the sentence's opening word ("San Francisco, CA")."""
    tokens = re.findall(r"[\w'-]+,?", text)
    run: list[str] = []
    for i, token in enumerate(tokens):
        if i > 0 and token[:1].isupper():
            run.append(token)
            continue
        if run:
            break
    return " ".join(run).rstrip(",") or None


class Responder:
    """Decides a plausible answer for a Chat Completions request body."""

    def __init__(self) -> None:
        self._seen_prefixes: set[str] = set()

    # -- what to answer ------------------------------------------------------------------------
    def decide(self, body: dict[str, Any]) -> Decision:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        user_text = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            return Decision(text=json.dumps(self._fill_object(schema, user_text), ensure_ascii=False))
        if response_format.get("type") == "json_object":
            return Decision(text=json.dumps(self._fill_object({}, user_text), ensure_ascii=False))
        tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
        choice = body.get("tool_choice", "auto")
        if tools and choice != "none":
            tool = self._pick_tool(tools, choice, user_text, last)
            if tool is not None:
                arguments = self._fill_object(tool.get("parameters") or {}, user_text)
                call_id = f"call_{len(messages)}_{tool['name']}"
                return Decision(tool_calls=[(call_id, tool["name"], json.dumps(arguments, ensure_ascii=False))])
        if last.get("role") == "tool":
            return Decision(text=f"The tool answered: {_text_of(last.get('content'))}")
        return Decision(text=self._reply(user_text))

    def _pick_tool(
        self, tools: list[dict[str, Any]], choice: Any, user_text: str, last: dict[str, Any]
    ) -> dict[str, Any] | None:
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            return next((t for t in tools if t["name"] == name), None)
        forced = choice == "required"
        if not forced and last.get("role") != "user":
            return None  # the tool already answered: now reply in words
        lowered = user_text.lower()
        for tool in tools:  # a tool the prompt names outright
            if tool["name"].lower() in lowered:
                return tool
        for tool in tools:  # or one whose name's words the prompt uses ("weather" -> get_weather)
            if any(len(w) > 3 and w in lowered for w in tool["name"].lower().split("_")):
                return tool
        if forced or "tool" in lowered:
            return tools[0]
        return None

    def _fill_object(self, schema: dict[str, Any], user_text: str) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        if not properties:  # free-form JSON: use the keys the prompt asks for
            properties = {key: {"type": "string"} for key in _quoted(user_text)}
        numbers = iter(_numbers(user_text))
        quoted = _quoted(user_text)
        strings = iter([*quoted, _proper_noun_phrase(user_text) or user_text])
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            out[name] = self._fill_value(name, sub, numbers, strings, user_text)
        return out

    def _fill_value(self, name: str, schema: dict[str, Any], numbers: Any, strings: Any, user_text: str) -> Any:
        kind = schema.get("type")
        if isinstance(kind, list):  # strict schemas spell optional fields ["string", "null"]
            kind = next((k for k in kind if k != "null"), None)
        if kind is None and isinstance(schema.get("anyOf"), list):
            kinds = [s for s in schema["anyOf"] if s.get("type") != "null"]
            return self._fill_value(name, kinds[0] if kinds else {}, numbers, strings, user_text)
        if kind in ("integer", "number"):
            return next(numbers, 1)
        if kind == "boolean":
            return True
        if kind == "array":
            return []
        if kind == "object":
            return self._fill_object(schema, user_text)
        if "enum" in schema:
            return schema["enum"][0]
        description = str(schema.get("description") or name.replace("_", " "))
        if "joke" in user_text.lower() and "setup" in name:
            return "Why did the cat sit on the computer?"
        if "joke" in user_text.lower() and "punchline" in name:
            return "To keep an eye on the mouse."
        return next(strings, description)

    @staticmethod
    def _reply(user_text: str) -> str:
        lowered = user_text.lower().strip()
        if "haiku" in lowered:
            return (
                "Soft rain on the roof / the kettle hums its small song / evening settles in\n\n"
                "Cold stars over snow / a fox crosses the white field / silence follows it"
            )
        if lowered.startswith(("hello", "hi", "hey")) and "how are you" not in lowered:
            return "Hello! How can I help you today?"
        if "how are you" in lowered:
            return "I am doing well, thank you for asking. How can I help you?"
        return f"Here is my answer to your message: {user_text.strip()}"

    # -- wire-level details: usage, stop sequences, max_tokens ------------------------------------
    def answer(self, body: dict[str, Any]) -> Answer:
        decision = self.decide(body)
        text, finish = decision.text, decision.finish_reason
        stops = body.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else stops:
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit and not decision.tool_calls and _words(text) > limit:
            text, finish = " ".join(text.split(" ")[:limit]), "length"
        prompt_words = sum(_words(_text_of(m.get("content"))) for m in body.get("messages") or []) + 3
        reasoning = REASONING_WORDS if body.get("reasoning_effort") else 0
        completion_words = _words(text) + sum(_words(a) for _, _, a in decision.tool_calls) + reasoning
        return Answer(
            text=text,
            tool_calls=decision.tool_calls,
            finish_reason=finish,
            model=str(body.get("model")),
            prompt_tokens=prompt_words,
            completion_tokens=max(1, completion_words),
            cached_tokens=self.cache(body)[0],
            reasoning_tokens=reasoning,
        )

    def cache(self, body: dict[str, Any]) -> tuple[int, int]:
        """(words read from the prompt cache, words written to it) for this request's prefix."""
        messages = body.get("messages") or []
        prefix = json.dumps(messages[:-1], sort_keys=True)
        words = sum(_words(_text_of(m.get("content"))) for m in messages[:-1])
        if words < CACHE_MIN_WORDS:
            return 0, 0
        if prefix in self._seen_prefixes:
            return words, 0
        self._seen_prefixes.add(prefix)
        return 0, words


class OpenAIResponder:
    """Serves ``/chat/completions`` with :class:`Responder`'s answers and ``/embeddings`` like the OpenAI fake."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.responder = Responder()
        server.handler = self._handle

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.server.requests if r.path.endswith("/chat/completions")]

    def _handle(self, request: RecordedRequest) -> Reply:
        body = request.json()
        if request.path.endswith("/embeddings"):
            return embeddings_reply(body)
        if not request.path.endswith("/chat/completions"):
            return error_reply(404, f"Invalid URL (POST {request.path})", code="unknown_url")
        if not body.get("messages") or not body.get("model"):
            return error_reply(400, "you must provide a model and messages")
        answer = self.responder.answer(body)
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return Reply(chunks=chunk_events(answer, include_usage=include))
        return Reply(body=completion_body(answer))


class AnthropicResponder:
    """Serves ``/v1/messages`` with :class:`Responder`'s answers in the Anthropic wire format.

    The request is read as Anthropic sends it (top-level ``system``, ``tool_use``/``tool_result``
    blocks, ``tool_choice`` objects, ``output_config.format``, ``stop_sequences``) and the answer
    goes back as a message or as the named SSE events. Usage follows Anthropic: ``input_tokens``
    excludes cache reads and writes, which are reported beside it.
    """

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.responder = Responder()
        server.handler = self._handle

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.server.requests if r.path.endswith(fa.MESSAGES_PATH)]

    def _handle(self, request: RecordedRequest) -> Reply:
        if not request.path.split("?")[0].endswith(fa.MESSAGES_PATH):
            return fa.error_reply(404, f"Not found: {request.path}")
        body = request.json()
        if not body.get("messages") or not body.get("model") or not body.get("max_tokens"):
            return fa.error_reply(400, "model, messages and max_tokens are required")
        chat = as_chat_completions(body)
        answer = self.responder.answer(chat)
        read, written = self.responder.cache(chat)
        blocks: list[dict[str, Any]] = [fa.text_block(answer.text)] if answer.text else []
        blocks += [fa.tool_use_block(cid, name, json.loads(args)) for cid, name, args in answer.tool_calls]
        stop_reason = {"tool_calls": "tool_use", "length": "max_tokens"}.get(answer.finish, "end_turn")
        usage = fa.usage(
            answer.prompt_tokens - read - written,
            answer.completion_tokens,
            cache_creation_input_tokens=written,
            cache_read_input_tokens=read,
        )
        model = str(body["model"])
        if body.get("stream"):
            start = {**usage, "output_tokens": 1}
            final = {"output_tokens": answer.completion_tokens}
            events = fa.stream_events(
                blocks, model=model, stop_reason=stop_reason, start_usage=start, final_usage=final
            )
            return fa.stream_reply(events)
        return fa.message_reply(blocks, model=model, stop_reason=stop_reason, usage_=usage)


def as_chat_completions(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request read as the Chat Completions body :class:`Responder` decides on."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": system if isinstance(system, str) else _text_of(system)})
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        results = [b for b in content if b.get("type") == "tool_result"]
        for result in results:
            inner = result.get("content")
            messages.append({"role": "tool", "tool_call_id": result.get("tool_use_id"), "content": _text_of(inner)})
        text = _text_of(content)
        calls = [b for b in content if b.get("type") == "tool_use"]
        if text or calls or not results:
            out: dict[str, Any] = {"role": message["role"], "content": text}
            if calls:
                out["tool_calls"] = [{"id": c["id"], "function": {"name": c["name"]}} for c in calls]
            messages.append(out)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": body.get("max_tokens")}
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    if body.get("tools"):
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t["input_schema"],
                },
            }
            for t in body["tools"]
        ]
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "any":
        chat["tool_choice"] = "required"
    elif choice.get("type") == "tool":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice.get("type") in ("auto", "none"):
        chat["tool_choice"] = choice["type"]
    output_format = (body.get("output_config") or {}).get("format") or {}
    if output_format.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {"schema": output_format.get("schema")}}
    return chat
