"""Resumable batch runs: many prompts, bounded concurrency, one JSONL line per finished item.

``client.batch(inputs, model=..., concurrency=..., output="results.jsonl")`` (and ``abatch``)
sends every input through the client (so rate limits, retries and fallbacks apply), records each
finished item as one JSON line in ``output`` and returns a :class:`BatchResult` in input order.

Inputs are strings, message lists, or dicts with ``prompt`` or ``messages`` and optional ``id``
and ``system``. A failed item is recorded with its typed error and does not stop the run.

Resuming: a run restarted with the same output file reads it first and sends only the items not
in it. Each line names its item (``index``, ``id``) and a fingerprint of its input, so a file
written for other inputs is refused rather than silently mixed in, and so is a second run on a
file that a live run holds (an advisory ``flock``; POSIX). A torn last line (the process
died mid-write) is cut off and that item redone.

Durability: every line is written whole and flushed to the OS as soon as its item finishes, so a
killed process (even SIGKILL) loses at most the items in flight; those are sent again on resume.
The file is fsynced at the end of the run, not per line (an fsync per item would cap the run at
the disk's sync rate); after a power loss, items since the last fsync are redone, and torn-line
recovery keeps the file readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fmclient._fan_out import afan_out, fan_out
from fmclient.errors import FMClientError
from fmclient.types import Usage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fmclient.types import Completion

__all__ = ["BatchError", "BatchItem", "BatchResult"]

_ITEM_KEYS = frozenset({"id", "prompt", "messages", "system"})


@dataclass(frozen=True, slots=True)
class BatchError:
    """A failed item's typed error, as recorded."""

    type: str
    message: str
    status_code: int | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One input's outcome. ``resumed``: it was finished by an earlier run (read from the file)."""

    index: int
    id: Any
    text: str | None = None
    usage: Usage | None = None
    cost: float | None = None
    error: BatchError | None = None
    resumed: bool = False

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


# -- inputs ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Input:
    index: int
    id: Any
    prompt: Any
    system: str | None
    fingerprint: str


def _normalise(inputs: Iterable[Any]) -> list[_Input]:
    """Check every input before anything is sent; refuse what is not a prompt."""
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
        found.append(_Input(index, item_id, prompt, system, _fingerprint(prompt, system)))
    return found


def _fingerprint(prompt: Any, system: str | None) -> str:
    text = json.dumps([prompt, system], sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the output file ------------------------------------------------------------------------------
def _recover(path: str, inputs: list[_Input], redo_failed: bool) -> dict[int, dict[str, Any]]:
    """Read what an earlier run finished; cut a torn last line off the file."""
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as handle:
        data = handle.read()
    # Each line is written whole with its newline last, so only the bytes after the last newline
    # can be torn (the process died mid-write): they are cut off and that item is redone.
    whole = data.rfind(b"\n") + 1
    if whole < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(whole)
    done: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(data[:whole].split(b"\n")[:-1], 1):
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
            done[record["index"]] = record
        else:
            done.pop(record["index"], None)
    return done


def _check_record(path: str, number: int, record: Any, inputs: list[_Input]) -> None:
    index = record.get("index") if isinstance(record, dict) else None
    if not isinstance(index, int) or not 0 <= index < len(inputs):
        raise ValueError(
            f"{path}:{number}: no item {index!r} among these {len(inputs)} inputs; is it another run's file?"
        )
    expected = inputs[index]
    if record.get("id") != expected.id or record.get("input") != expected.fingerprint:
        raise ValueError(
            f"{path}:{number}: item {index} was written for a different input; "
            "use another output file or the inputs of that run"
        )


class _Writer:
    """Appends one whole line per finished item and flushes it; shared by threads and tasks."""

    def __init__(self, path: str | None) -> None:
        self._handle = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()
        if self._handle is not None:
            _lock_exclusively(self._handle, path)

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            return
        line = json.dumps(record, ensure_ascii=False, default=repr) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()


# -- one item -------------------------------------------------------------------------------------
def _cost(completion: Completion) -> float | None:
    cost = getattr(completion, "cost", None)
    cost = getattr(cost, "total", cost)  # a breakdown object, if cost is one
    if cost is None or isinstance(cost, bool):
        return None
    try:
        return float(cost)  # float, int or Decimal
    except (TypeError, ValueError):
        return None


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


def _ok_record(item: _Input, completion: Completion) -> dict[str, Any]:
    return {
        "index": item.index,
        "id": item.id,
        "input": item.fingerprint,
        "ok": True,
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "model": completion.model,
        "provider": completion.provider,
        "usage": completion.usage.to_dict(),
        "cost": _cost(completion),
    }


def _error_record(item: _Input, error: Exception) -> dict[str, Any]:
    return {
        "index": item.index,
        "id": item.id,
        "input": item.fingerprint,
        "ok": False,
        "error": {
            "type": type(error).__name__,
            "message": getattr(error, "message", None) or str(error),
            "status_code": getattr(error, "status_code", None),
            "retryable": bool(getattr(error, "retryable", False)),
        },
    }


def _item_from_record(record: dict[str, Any], resumed: bool) -> BatchItem:
    error = record.get("error")
    usage = record.get("usage")
    return BatchItem(
        index=record["index"],
        id=record["id"],
        text=record.get("text"),
        usage=Usage(usage["input_tokens"], usage["output_tokens"], usage.get("cached_input_tokens", 0))
        if usage
        else None,
        cost=record.get("cost"),
        error=BatchError(error["type"], error["message"], error.get("status_code"), error.get("retryable", False))
        if error
        else None,
        resumed=resumed,
    )


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
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.started = time.monotonic()
        self.inputs = _normalise(inputs)
        self.output = os.fspath(output) if output is not None else None
        self.concurrency = concurrency
        # The writer locks the file first, so the recovery below cannot race another run.
        self.writer = _Writer(self.output)
        try:
            self.done = _recover(self.output, self.inputs, redo_failed) if self.output else {}
        except BaseException:
            self.writer.close()
            raise
        self.todo = [item for item in self.inputs if item.index not in self.done]
        self.new: dict[int, dict[str, Any]] = {}
        self.bar = _progress_bar(progress, total=len(self.inputs), initial=len(self.done))

    def finished(self, record: dict[str, Any]) -> None:
        self.writer.write(record)
        self.new[record["index"]] = record
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
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
                items.append(_item_from_record(self.done[item.index], resumed=True))
                continue
            batch_item = _item_from_record(record, resumed=False)
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
) -> BatchResult:
    """``client.batch``: a thread pool of ``concurrency`` workers over ``complete`` (``client.complete``)."""
    run = _Run(inputs, output, concurrency, progress, redo_failed)

    def one(item: Any) -> None:
        try:
            completion = complete(item.prompt, **_call_kwargs(item, model, call_args))
        except _ITEM_ERRORS as error:
            run.finished(_error_record(item, error))
            return
        run.finished(_ok_record(item, completion))

    # An item's failure is recorded; anything else (a bug, an interrupt) stops the pool after the
    # items in flight, before the output file is closed under them.
    try:
        if run.todo:
            fan_out(one, run.todo, concurrency)
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
) -> BatchResult:
    """``client.abatch``: ``concurrency`` asyncio workers over ``acomplete`` (``client.acomplete``)."""
    run = _Run(inputs, output, concurrency, progress, redo_failed)

    async def one(item: Any) -> None:
        try:
            completion = await acomplete(item.prompt, **_call_kwargs(item, model, call_args))
        except _ITEM_ERRORS as error:
            run.finished(_error_record(item, error))
            return
        run.finished(_ok_record(item, completion))

    # As in run_batch: an unexpected error (a bug, or cancellation) stops the other workers before
    # the output file is closed under them.
    try:
        if run.todo:
            await afan_out(one, run.todo, concurrency)
    finally:
        run.close()
    return run.result()
