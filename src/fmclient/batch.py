"""Resumable batch runs: many prompts, bounded concurrency, one JSONL line per finished item.

``client.batch(inputs, model=..., concurrency=..., output="results.jsonl")`` (and ``abatch``)
sends every input through the client (so rate limits, retries and fallbacks apply), records each
finished item as one JSON line in ``output`` and returns a :class:`BatchResult` in input order.

Inputs are strings, message lists, or dicts with ``prompt`` or ``messages`` and optional ``id``
and ``system``. Every input and every call argument is checked before anything is sent. A failed
item is recorded with its typed error and does not stop the run.

What is recorded: everything of a :class:`~fmclient.types.Completion` a caller uses (text, tool
calls, ``parsed``, reasoning, the assistant message with its opaque provider state, finish
reason, usage, cost, model, response and request ids), so an item read back on resume equals the
one the first run returned, field by field.

The output file begins with a header line naming the run: its model (as resolved to a provider
and model id), its fallbacks, and a fingerprint of each call argument. Each item's line carries a
fingerprint of exactly what its request holds (every message, image bytes included, and its
system prompt). Resuming: a run restarted with the same output file reads it first and sends only
the items not in it; failed items stay failed (whatever the failure, a spent budget included)
unless ``redo_failed=True`` sends them again. A file written by a run with another model, other
call arguments or other inputs is refused, naming what changed, and so is a file that is not a
batch output at all (the prompts file, ``notes.md``): nothing in such a file is changed. A second
run on a file that a live run holds is refused too (an advisory ``flock``; POSIX). A torn last
line (the process died mid-write) is cut off, once the file is known to be this run's, and that
item redone.

Durability: every line is written whole and flushed to the OS as soon as its item finishes, so a
killed process (even SIGKILL) loses at most the items in flight; those are sent again on resume.
An interrupt (Ctrl-C), a cancellation or an unexpected error stops handing out work, waits for
the calls in flight and writes their answers (already paid for), then closes the file and
re-raises; a second interrupt abandons the calls still in flight. The file is fsynced at the end
of the run, not per line (an fsync per item would cap the run at the disk's sync rate); after a
power loss, items since the last fsync are redone, and torn-line recovery keeps the file readable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any

from fmclient._fan_out import afan_out, fan_out
from fmclient.errors import FMClientError, UnsupportedFeatureError
from fmclient.types import (
    AudioPart,
    DocumentPart,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    Usage,
    VideoPart,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable

    from fmclient.types import Completion, Part

#: Where a model name goes (``Client.resolve``): its ``str()`` is ``provider/model-id``.
Resolve = Callable[[str | None], object]

__all__ = ["BatchError", "BatchItem", "BatchResult"]

_ITEM_KEYS = frozenset({"id", "prompt", "messages", "system"})

#: The output file's format; its first line says which (``{"fmclient_batch": 1, ...}``).
_FORMAT = 1
_HEADER_KEY = "fmclient_batch"
_HEADER_START = b'{"' + _HEADER_KEY.encode() + b'"'


@dataclass(frozen=True, slots=True)
class BatchError:
    """A failed item's typed error, as recorded."""

    type: str
    message: str
    status_code: int | None = None
    retryable: bool = False
    #: who failed, where the error says (the last model tried, with fallbacks)
    provider: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One input's outcome. ``resumed``: it was finished by an earlier run (read from the file).

    A failed item has its ``error``; its ``text`` is the raw reply when there was one (a reply that
    did not validate as the ``response_format``).

    An answered item carries what its :class:`~fmclient.types.Completion` did: ``text``,
    ``tool_calls``, ``parsed`` (rebuilt with the ``response_format`` model when one was given),
    ``reasoning``, ``message`` (the assistant turn with its provider state, ready to send back in
    a conversation), ``finish_reason``, ``usage``, ``cost`` (``cost_reason`` when unknown), the
    ``model`` and ``provider`` that answered, ``response_id``, ``request_id`` and ``cached``.
    """

    index: int
    id: Any
    text: str | None = None
    usage: Usage | None = None
    cost: float | None = None
    error: BatchError | None = None
    resumed: bool = False
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    parsed: Any = None
    reasoning: str | None = None
    message: Message | None = None
    model: str | None = None
    provider: str | None = None
    cost_reason: str | None = None
    response_id: str | None = None
    request_id: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Every item in input order, and the run's summary.

    ``succeeded``/``failed`` count items finished by this run; ``skipped`` those an earlier run had
    already finished. Tokens and cost are this run's; ``cost_unknown`` counts answered items whose
    cost was not known.
    """

    items: list[BatchItem]
    succeeded: int
    failed: int
    skipped: int
    input_tokens: int
    output_tokens: int
    cost: float
    cost_unknown: int
    wall_time: float
    output: str | None = None
    errors: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        cost = f"${self.cost:.4f}" + (f" ({self.cost_unknown} unknown)" if self.cost_unknown else "")
        return (
            f"{self.succeeded} ok, {self.failed} failed, {self.skipped} skipped (already done); "
            f"{self.input_tokens} input + {self.output_tokens} output tokens; cost {cost}; "
            f"{self.wall_time:.1f}s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
            "cost_unknown": self.cost_unknown,
            "wall_time": self.wall_time,
            "output": self.output,
            "errors": self.errors,
        }


# -- fingerprints -----------------------------------------------------------------------------------
def _canonical(value: Any) -> Any:
    """``value`` as plain JSON data that names everything a request holds, for hashing.

    Unlike a repr, bytes are hashed whole (an image's repr shows only its size), dataclasses are
    taken field by field and classes by their qualified name.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(_canonical(item), sort_keys=True) for item in value)
    if isinstance(value, type):
        return {"$class": f"{value.__module__}.{value.__qualname__}"}
    if is_dataclass(value):
        # Fields at their default are left out, so a field added to a type (with a default) does
        # not change the fingerprints of files written before.
        found: dict[str, Any] = {"$type": type(value).__name__}
        for name, default in _defaults(type(value)):
            current = getattr(value, name)
            if default is _NO_DEFAULT or current != default:
                found[name] = _canonical(current)
        return found
    if hasattr(value, "model_dump"):  # a pydantic model instance
        return {"$type": type(value).__name__, **value.model_dump(mode="json")}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return {"$repr": repr(value)}


_NO_DEFAULT: Any = object()
_DEFAULTS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    """A dataclass's field names and defaults (``_NO_DEFAULT`` for none), worked out once per type."""
    found = _DEFAULTS.get(cls)
    if found is None:
        found = _DEFAULTS[cls] = tuple(
            (
                spec.name,
                spec.default
                if spec.default is not MISSING
                else spec.default_factory()
                if spec.default_factory is not MISSING
                else _NO_DEFAULT,
            )
            for spec in fields(cls)
        )
    return found


def _digest(value: Any) -> str:
    text = json.dumps(_canonical(value), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


#: complete()'s arguments that change what is sent, and the Request field each becomes.
_REQUEST_ARGUMENTS = (
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "reasoning",
)
#: complete()'s arguments that change how a call is made, not what is asked: not fingerprinted, so a
#: run resumed with a longer timeout or more retries is the same run.
_DELIVERY_ARGUMENTS = ("timeout", "max_retries")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every item of this run is sent with, checked once, and the header that names it."""

    header: dict[str, Any]
    response_format: ResponseFormat | None


def _plan(model: str | None, call_args: Mapping[str, Any], resolve: Resolve | None) -> _Plan:
    """Check the call arguments once (before anything is sent) and fingerprint each."""
    from fmclient import _validation

    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a str, not {type(model).__name__}")
    named = {name: call_args[name] for name in _REQUEST_ARGUMENTS if call_args.get(name) is not None}
    request = _validation.build_request("-", **named)
    _validation.check_timeout(call_args.get("timeout"))
    _validation.check_max_retries(call_args.get("max_retries"))
    arguments = {name: _digest(getattr(request, name)) for name in named}
    for name, value in call_args.items():
        if name in _REQUEST_ARGUMENTS or name in _DELIVERY_ARGUMENTS or name == "fallbacks" or value is None:
            continue
        arguments[name] = _digest(value)  # a provider option, sent as given
    fallbacks = call_args.get("fallbacks")
    if fallbacks is not None and (isinstance(fallbacks, str) or not isinstance(fallbacks, Sequence)):
        raise TypeError("fallbacks must be a list of model names")
    # The model as resolved (alias -> provider/model id): a changed alias or default is a change.
    target = str(resolve(model)) if resolve is not None else model
    header = {
        _HEADER_KEY: _FORMAT,
        "model": model,
        "target": target,
        "fallbacks": None if fallbacks is None else [str(resolve(n)) if resolve else n for n in fallbacks],
        "arguments": dict(sorted(arguments.items())),
    }
    return _Plan(header, request.response_format)


def _check_header(path: str, found: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Refuse a file whose run differs from this one, naming what differs."""
    if found.get(_HEADER_KEY) != _FORMAT:
        raise ValueError(
            f"{path}: a batch output of format {found.get(_HEADER_KEY)!r} (this fmclient writes {_FORMAT}); "
            "use another output file"
        )
    if found.get("target") != expected["target"] or found.get("fallbacks") != expected["fallbacks"]:
        raise ValueError(
            f"{path} was written for model {found.get('target')!r} (fallbacks {found.get('fallbacks')!r}); "
            f"this run asks for {expected['target']!r} (fallbacks {expected['fallbacks']!r}): "
            "use another output file, or the model of that run"
        )
    old, new = found.get("arguments") or {}, expected["arguments"]
    changed = sorted(name for name in {*old, *new} if old.get(name) != new.get(name))
    if changed:
        raise ValueError(
            f"{path} was written with other call arguments ({', '.join(changed)} changed): "
            "use another output file, or the arguments of that run"
        )


# -- inputs ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Input:
    index: int
    id: Any
    prompt: Any
    system: str | None
    fingerprint: str


def _normalise(inputs: Iterable[Any], call_args: Mapping[str, Any]) -> list[_Input]:
    """Check every input before anything is sent; refuse what is not a prompt."""
    from fmclient import _validation

    if isinstance(inputs, (str, bytes, Mapping)):
        raise TypeError("inputs must be a sequence of prompts (str, message list or dict), not a single prompt")
    found: list[_Input] = []
    ids: set[Any] = set()
    for index, item in enumerate(inputs):
        item_id: Any = index
        system = None
        if isinstance(item, str):
            prompt: Any = item
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)):
            prompt = item
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - _ITEM_KEYS)
            if unknown:
                raise ValueError(
                    f"input {index}: unknown key {', '.join(map(repr, unknown))}; known: id, prompt, messages, system"
                )
            if ("prompt" in item) == ("messages" in item):
                raise ValueError(f"input {index}: give exactly one of 'prompt' or 'messages'")
            prompt = item.get("prompt", item.get("messages"))
            item_id = item.get("id", index)
            system = item.get("system")
            if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
                raise TypeError(f"input {index}: id must be a str or int, not {type(item_id).__name__}")
        else:
            raise TypeError(f"input {index}: expected a str, message list or dict, not {type(item).__name__}")
        if item_id in ids:
            raise ValueError(f"input {index}: duplicate id {item_id!r}")
        ids.add(item_id)
        # Normalised as complete() will (files read, data URIs decoded), so the fingerprint covers
        # what is sent, image bytes included, and a bad prompt fails now, not after others are paid.
        try:
            request = _validation.build_request(
                prompt, system=system if system is not None else call_args.get("system")
            )
        except (TypeError, ValueError, UnsupportedFeatureError) as error:
            raise type(error)(f"input {index}: {error}") from None
        fingerprint = _digest([request.messages, request.system, request.system_cache])
        found.append(_Input(index, item_id, prompt, system, fingerprint))
    return found


# -- records: one JSON line per item --------------------------------------------------------------
def _to_json(value: Any, where: str) -> Any:
    """Opaque data (provider state, parsed values) as JSON, losslessly: bytes are tagged base64."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"cannot record {where} in the batch output: a key is not a str")
        return {key: _to_json(item, where) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(item, where) for item in value]
    # Written as a repr it would come back as a string: refused, so nothing is silently changed.
    raise TypeError(f"cannot record {where} in the batch output: {type(value).__name__} is not JSON data")


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            return base64.b64decode(value["$bytes"])
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _usage_record(usage: Usage) -> dict[str, Any]:
    # Every field, whatever fields Usage gains: a count left out would be lost on resume.
    return {f.name: _to_json(getattr(usage, f.name), "usage") for f in fields(usage)}


def _usage_from(record: Mapping[str, Any]) -> Usage:
    known = {f.name for f in fields(Usage)}
    return Usage(**{name: _from_json(value) for name, value in record.items() if name in known})


def _tool_call_record(call: ToolCall) -> dict[str, Any]:
    record: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": _to_json(call.arguments, "tool call")}
    if call.raw_arguments is not None:
        record["raw_arguments"] = call.raw_arguments
    return record


def _tool_call_from(record: Mapping[str, Any]) -> ToolCall:
    return ToolCall(record["id"], record["name"], _from_json(record["arguments"]), record.get("raw_arguments"))


def _part_record(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    record = {"type": part.type, "data": _to_json(part.data, part.type), "url": part.url, "media_type": part.media_type}
    if isinstance(part, DocumentPart):
        record.update(name=part.name, citations=part.citations)
    return record


def _part_from(record: Mapping[str, Any]) -> Part:
    if record["type"] == "text":
        return TextPart(record["text"])
    fields = {"data": _from_json(record["data"]), "url": record["url"], "media_type": record["media_type"]}
    if record["type"] == "document":
        return DocumentPart(**fields, name=record.get("name"), citations=bool(record.get("citations")))
    cls: type[ImagePart | AudioPart | VideoPart] = {"audio": AudioPart, "video": VideoPart}.get(
        record["type"], ImagePart
    )
    return cls(**fields)


def _message_record(message: Message, text: str, tool_calls: Sequence[ToolCall]) -> dict[str, Any]:
    """The assistant message; what repeats ``text`` and ``tool_calls`` (nearly always all of it but
    the provider state) is not written twice."""
    record: dict[str, Any] = {}
    if message.role != "assistant":
        record["role"] = message.role
    if message.content != text:
        content = message.content
        record["content"] = content if isinstance(content, str) else [_part_record(p) for p in content]
    if message.tool_calls != tuple(tool_calls):
        record["tool_calls"] = [_tool_call_record(c) for c in message.tool_calls]
    for name in ("tool_call_id", "name"):
        if getattr(message, name) is not None:
            record[name] = getattr(message, name)
    if message.provider_state is not None:
        record["provider_state"] = _to_json(message.provider_state, "the provider state")
    if message.cache is not None:
        record["cache"] = message.cache.ttl or ""
    return record


def _message_from(record: Mapping[str, Any], text: str, tool_calls: tuple[ToolCall, ...]) -> Message:
    from fmclient.types import CachePoint

    content = record.get("content", text)
    cache = record.get("cache")
    return Message(
        role=record.get("role", "assistant"),
        content=content if isinstance(content, str) else tuple(_part_from(p) for p in content),
        tool_calls=tuple(_tool_call_from(c) for c in record["tool_calls"]) if "tool_calls" in record else tool_calls,
        tool_call_id=record.get("tool_call_id"),
        name=record.get("name"),
        provider_state=_from_json(record.get("provider_state")),
        cache=None if cache is None else CachePoint(cache or None),  # type: ignore[arg-type]
    )


def _cost(completion: Completion) -> float | None:
    cost = getattr(completion, "cost", None)
    cost = getattr(cost, "total", cost)  # a breakdown object, if cost is one
    if cost is None or isinstance(cost, bool):
        return None
    try:
        return float(cost)  # float, int or Decimal
    except (TypeError, ValueError):
        return None


def _ok_record(item: _Input, completion: Completion) -> dict[str, Any]:
    parsed = completion.parsed
    if parsed is not None and hasattr(parsed, "model_dump"):
        parsed = parsed.model_dump(mode="json")
    tool_calls = list(completion.tool_calls)
    return {
        "index": item.index,
        "id": item.id,
        "input": item.fingerprint,
        "ok": True,
        "text": completion.text,
        "tool_calls": [_tool_call_record(call) for call in tool_calls],
        "parsed": _to_json(parsed, "the parsed reply"),
        "reasoning": completion.reasoning,
        "message": _message_record(completion.message, completion.text, tool_calls),
        "finish_reason": completion.finish_reason,
        "model": completion.model,
        "provider": completion.provider,
        "usage": _usage_record(completion.usage),
        "cost": _cost(completion),
        "cost_reason": getattr(completion, "cost_reason", None),
        "response_id": completion.response_id,
        "request_id": completion.request_id,
        "cached": completion.cached,
    }


def _error_record(item: _Input, error: Exception) -> dict[str, Any]:
    record: dict[str, Any] = {
        "index": item.index,
        "id": item.id,
        "input": item.fingerprint,
        "ok": False,
        "error": {
            "type": type(error).__name__,
            "message": getattr(error, "message", None) or str(error),
            "status_code": getattr(error, "status_code", None),
            "retryable": bool(getattr(error, "retryable", False)),
            "provider": getattr(error, "provider", None),
            "model": getattr(error, "model", None),
        },
    }
    text = getattr(error, "text", None)  # a reply that did not validate (StructuredOutputError): paid for
    if isinstance(text, str):
        record["text"] = text
    return record


def _item_from_record(record: Mapping[str, Any], resumed: bool, response_format: ResponseFormat | None) -> BatchItem:
    """A BatchItem from its line; fresh items are built this way too, so both are alike."""
    error = record.get("error")
    if error:
        return BatchItem(
            index=record["index"],
            id=record["id"],
            text=record.get("text"),
            error=BatchError(
                error["type"],
                error["message"],
                error.get("status_code"),
                error.get("retryable", False),
                error.get("provider"),
                error.get("model"),
            ),
            resumed=resumed,
        )
    text = record.get("text")
    tool_calls = tuple(_tool_call_from(call) for call in record.get("tool_calls") or ())
    parsed = _from_json(record.get("parsed"))
    if parsed is not None and response_format is not None and response_format.model is not None:
        try:
            parsed = response_format.model.model_validate(parsed)
        except Exception as exc:
            raise ValueError(
                f"item {record['index']}: its recorded reply no longer validates as {response_format.name}: {exc}"
            ) from exc
    usage = record.get("usage")
    message = record.get("message")
    return BatchItem(
        index=record["index"],
        id=record["id"],
        text=text,
        usage=_usage_from(usage) if usage else None,
        cost=record.get("cost"),
        resumed=resumed,
        finish_reason=record.get("finish_reason"),
        tool_calls=tool_calls,
        parsed=parsed,
        reasoning=record.get("reasoning"),
        message=_message_from(message, text or "", tool_calls) if message is not None else None,
        model=record.get("model"),
        provider=record.get("provider"),
        cost_reason=record.get("cost_reason"),
        response_id=record.get("response_id"),
        request_id=record.get("request_id"),
        cached=bool(record.get("cached", False)),
    )


def _line(record: Mapping[str, Any]) -> bytes:
    """One whole JSON line; readable UTF-8, or escaped ASCII for text UTF-8 cannot carry (a lone
    surrogate a provider sent), so no answer is lost to its encoding."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")


# -- the output file ------------------------------------------------------------------------------
@dataclass(slots=True)
class _Existing:
    """What an output file holds: its finished items, and where its whole lines end."""

    done: dict[int, BatchItem]
    has_header: bool
    whole: int  # bytes of whole lines; anything after is a torn last line
    size: int


def _read_output(path: str, plan: _Plan, inputs: list[_Input], redo_failed: bool, handle: Any) -> _Existing:
    """Read an earlier run's file and check it is this run's, changing nothing (the caller cuts a
    torn last line off only once everything here has passed)."""
    handle.seek(0)
    data = handle.read()
    whole = data.rfind(b"\n") + 1
    if not data:
        return _Existing({}, False, 0, 0)
    if whole == 0:
        # No whole line: a header cut short (the run died as it began) is ours and holds nothing.
        if data.startswith(_HEADER_START):
            return _Existing({}, False, 0, len(data))
        raise ValueError(f"{path} exists and is not a batch output file; refusing to write to it")
    lines = data[:whole].split(b"\n")[:-1]
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or _HEADER_KEY not in header:
        if isinstance(header, dict) and "index" in header and "input" in header:
            raise ValueError(
                f"{path} was written by an earlier fmclient whose records cannot be checked against this "
                "run (model and call arguments were not recorded); use another output file"
            )
        raise ValueError(f"{path} exists and is not a batch output file; refusing to write to it")
    _check_header(path, header, plan.header)
    done: dict[int, BatchItem] = {}
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise ValueError(
                f"{path}:{number}: not a JSON line; refusing to resume over a corrupt output file"
            ) from None
        _check_record(path, number, record, inputs)
        if record.get("ok") or not redo_failed:
            done[record["index"]] = _item_from_record(record, True, plan.response_format)
        else:
            done.pop(record["index"], None)
    return _Existing(done, True, whole, len(data))


def _check_record(path: str, number: int, record: Any, inputs: list[_Input]) -> None:
    if isinstance(record, dict) and _HEADER_KEY in record:
        raise ValueError(f"{path}:{number}: a second run header; is it two files joined?")
    index = record.get("index") if isinstance(record, dict) else None
    if not isinstance(index, int) or not 0 <= index < len(inputs):
        raise ValueError(
            f"{path}:{number}: no item {index!r} among these {len(inputs)} inputs; is it another run's file?"
        )
    expected = inputs[index]
    if record.get("id") != expected.id or record.get("input") != expected.fingerprint:
        raise ValueError(
            f"{path}:{number}: item {index} (id {record.get('id')!r}) was written for a different input; "
            "use another output file or the inputs of that run"
        )


class _Writer:
    """Appends one whole line per finished item and flushes it; shared by threads and tasks."""

    def __init__(self, path: str | None) -> None:
        # Opened for appending (which changes nothing) and locked before the file is read, so the
        # reading cannot race another run.
        self._handle = open(path, "a+b") if path else None  # noqa: SIM115
        self._lock = threading.Lock()
        if self._handle is not None:
            _lock_exclusively(self._handle, path)

    @property
    def handle(self) -> Any:
        return self._handle

    def cut(self, size: int) -> None:
        """Cut a torn last line off (only once the file is known to be this run's)."""
        if self._handle is not None:
            self._handle.truncate(size)

    def write(self, record: Mapping[str, Any]) -> None:
        if self._handle is None:
            return
        line = _line(record)
        with self._lock:
            if self._handle.closed:
                return  # a call abandoned at a second interrupt finished after the file was closed
            self._handle.write(line)
            self._handle.flush()

    def close(self) -> None:
        if self._handle is None:
            return
        with self._lock:
            if self._handle.closed:
                return
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()


def _lock_exclusively(handle: Any, path: str | None) -> None:
    """Two runs appending to one output file would send items twice: the second is refused.

    An advisory ``flock``, released when the process ends however it ends (POSIX only).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ValueError(f"{path} is in use by another batch run") from None


# -- the run --------------------------------------------------------------------------------------
class _Run:
    """State shared by the sync and async runners."""

    def __init__(
        self,
        inputs: Iterable[Any],
        output: str | os.PathLike[str] | None,
        concurrency: int,
        progress: bool | None,
        redo_failed: bool,
        plan: _Plan,
        call_args: Mapping[str, Any],
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.started = time.monotonic()
        self.plan = plan
        self.inputs = _normalise(inputs, call_args)
        self.output = os.fspath(output) if output is not None else None
        self.concurrency = concurrency
        self.writer = _Writer(self.output)
        try:
            self.done = self._resume(redo_failed)
        except BaseException:
            self.writer.close()
            raise
        self.todo = [item for item in self.inputs if item.index not in self.done]
        self.new: dict[int, dict[str, Any]] = {}
        self.bar = _progress_bar(progress, total=len(self.inputs), initial=len(self.done))
        # Calls in flight, and whether work may still be handed out: an interrupt stops handing it
        # out and waits for these, so answers already paid for are written.
        self.idle = threading.Condition()
        self.in_flight = 0
        self.stopping = False

    def _resume(self, redo_failed: bool) -> dict[int, BatchItem]:
        if self.output is None:
            return {}
        existing = _read_output(self.output, self.plan, self.inputs, redo_failed, self.writer.handle)
        if existing.whole < existing.size:
            self.writer.cut(existing.whole)
        if not existing.has_header:
            self.writer.write(self.plan.header)
        return existing.done

    def start(self) -> bool:
        """Count a call in flight, unless the run is stopping (then nothing new is sent)."""
        with self.idle:
            if self.stopping:
                return False
            self.in_flight += 1
            return True

    def end(self) -> None:
        with self.idle:
            self.in_flight -= 1
            self.idle.notify_all()

    def drain(self) -> None:
        """Stop handing out work and wait for the calls in flight to be recorded. A second
        interrupt while waiting abandons them (they are sent again on resume)."""
        with self.idle:
            self.stopping = True
            while self.in_flight:
                self.idle.wait()

    def finished(self, record: dict[str, Any]) -> None:
        self.writer.write(record)
        self.new[record["index"]] = record
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        self.stopping = True
        if self.bar is not None:
            self.bar.close()
        self.writer.close()

    def result(self) -> BatchResult:
        items = []
        succeeded = failed = input_tokens = output_tokens = cost_unknown = 0
        cost = 0.0
        errors: dict[str, int] = {}
        for item in self.inputs:
            record = self.new.get(item.index)
            if record is None:
                items.append(self.done[item.index])
                continue
            batch_item = _item_from_record(record, False, self.plan.response_format)
            items.append(batch_item)
            if batch_item.error is not None:
                failed += 1
                errors[batch_item.error.type] = errors.get(batch_item.error.type, 0) + 1
                continue
            succeeded += 1
            if batch_item.usage is not None:
                input_tokens += batch_item.usage.input_tokens
                output_tokens += batch_item.usage.output_tokens
            if batch_item.cost is None:
                cost_unknown += 1
            else:
                cost += batch_item.cost
        return BatchResult(
            items=items,
            succeeded=succeeded,
            failed=failed,
            skipped=len(self.inputs) - len(self.new),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            cost_unknown=cost_unknown,
            wall_time=time.monotonic() - self.started,
            output=self.output,
            errors=errors,
        )


def _progress_bar(progress: bool | None, *, total: int, initial: int) -> Any:
    """A tqdm bar on an interactive stderr (or when asked); none in CI, pipes or logs."""
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)()) and not os.environ.get("CI")
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None  # the [batch] extra is not installed: the run works the same, without a bar
    return tqdm(total=total, initial=initial, unit="item", file=sys.stderr)


def _call_kwargs(item: _Input, model: str | None, call_args: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(call_args)
    kwargs["model"] = model
    if item.system is not None:
        kwargs["system"] = item.system
    return kwargs


_ITEM_ERRORS = (FMClientError, TypeError, ValueError)


def _start(
    resolve: Resolve | None,
    inputs: Iterable[Any],
    model: str | None,
    concurrency: int,
    output: str | os.PathLike[str] | None,
    progress: bool | None,
    redo_failed: bool,
    call_args: Mapping[str, Any],
) -> _Run:
    plan = _plan(model, call_args, resolve)
    return _Run(inputs, output, concurrency, progress, redo_failed, plan, call_args)


def run_batch(
    complete: Callable[..., Completion],
    inputs: Iterable[Any],
    *,
    model: str | None,
    concurrency: int,
    output: str | os.PathLike[str] | None,
    progress: bool | None,
    redo_failed: bool,
    call_args: Mapping[str, Any],
    resolve: Resolve | None = None,
) -> BatchResult:
    """``client.batch``: a thread pool of ``concurrency`` workers over ``complete`` (``client.complete``).

    ``resolve`` (``client.resolve``) names the model a run asks for in its output file, so a resume
    after an alias or the default model was pointed elsewhere is refused; without it the model is
    compared by the name given.
    """
    run = _start(resolve, inputs, model, concurrency, output, progress, redo_failed, call_args)

    def one(item: _Input) -> None:
        if not run.start():
            return
        try:
            try:
                completion = complete(item.prompt, **_call_kwargs(item, model, call_args))
            except _ITEM_ERRORS as error:
                run.finished(_error_record(item, error))
                return
            run.finished(_ok_record(item, completion))
        finally:
            run.end()

    # An item's failure is recorded; anything else (a bug, Ctrl-C) stops handing out work, and the
    # calls in flight are waited for and written before the output file is closed.
    try:
        if run.todo:
            fan_out(one, run.todo, concurrency)
    except BaseException:
        run.drain()
        raise
    finally:
        run.close()
    return run.result()


async def arun_batch(
    acomplete: Callable[..., Awaitable[Completion]],
    inputs: Iterable[Any],
    *,
    model: str | None,
    concurrency: int,
    output: str | os.PathLike[str] | None,
    progress: bool | None,
    redo_failed: bool,
    call_args: Mapping[str, Any],
    resolve: Resolve | None = None,
) -> BatchResult:
    """``client.abatch``: ``concurrency`` asyncio workers over ``acomplete`` (``client.acomplete``);
    ``resolve`` as in :func:`run_batch`."""
    import asyncio

    run = _start(resolve, inputs, model, concurrency, output, progress, redo_failed, call_args)
    # Each call runs in its own task, shielded from its worker's cancellation: a cancelled run
    # (Ctrl-C under asyncio.run, a timeout around abatch) waits for the calls in flight and writes
    # their answers, as the sync run does.
    in_flight: dict[asyncio.Future[Completion], _Input] = {}

    def settle(call: asyncio.Future[Completion], item: _Input) -> None:
        if call.cancelled():
            return
        error = call.exception()
        if error is None:
            run.finished(_ok_record(item, call.result()))
        elif isinstance(error, _ITEM_ERRORS):
            run.finished(_error_record(item, error))
        # else: a bug, raised by the worker that awaited the call

    async def one(item: _Input) -> None:
        if run.stopping:
            return
        call = asyncio.ensure_future(acomplete(item.prompt, **_call_kwargs(item, model, call_args)))
        in_flight[call] = item
        try:
            await asyncio.shield(call)
        except _ITEM_ERRORS:
            pass  # the item's failure, recorded below
        # Anything else leaves the call to the drain below: cancelled, the call goes on and is
        # recorded when it answers; a bug is raised (and not recorded as the item's failure).
        del in_flight[call]
        settle(call, item)

    try:
        if run.todo:
            await afan_out(one, run.todo, concurrency)
    except BaseException:
        run.stopping = True
        try:
            while in_flight:
                done, _ = await asyncio.wait(list(in_flight))
                for call in done:
                    settle(call, in_flight.pop(call))
        except BaseException:  # cancelled again: abandon the calls still in flight
            for call in in_flight:
                call.cancel()
            raise
        raise
    finally:
        run.close()
    return run.result()
