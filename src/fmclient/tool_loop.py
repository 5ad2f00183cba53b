"""Tool loops: call the model, run the tools it asks for, send the results back, until it answers.

``client.run(prompt, tools=[...])`` (and ``arun``, ``run_stream``, ``arun_stream``) returns a
:class:`Run`: the final answer, every step with its completion, tool calls and tool results, the
whole message history (ready to continue), and usage and cost summed over every step.

Each step is an ordinary ``complete``/``stream`` call: retries, fallbacks, the deadline, the
budget, rate limits, the response cache, hooks and telemetry apply to it as to any call. This
module takes those callables (the client's bound methods) and its hooks, never the client.

What the loop promises:

* It stops when the model answers without calling a tool (``stopped="answer"``), whatever finish
  reason the provider reported; at ``max_steps`` (``stopped="max_steps"``: the run so far is
  returned, its last tool results included, so it can be continued); when ``stop_when(run)`` says
  so (``"stop_when"``); when the model calls a final tool (``stopped=<its name>``); or when one
  tool has failed ``max_tool_failures`` times in a row (``"tool_failures"``).
* A tool that raises sends its error back to the model as the tool's result (type and message,
  never a traceback; :class:`~fmclient.errors.ToolError` words the message itself); so do an
  unknown tool name, arguments that do not fit the tool's schema, a call ``approve`` denied and a
  call that outran ``tool_timeout``. ``on_tool_error="raise"`` stops the run with the tool's
  exception instead.
* An error that stops the run (the budget spent before a step, the run's deadline, a provider
  error after its retries) is raised with the run so far on ``error.run``.
* Several calls in one step run concurrently (``parallel_tools=False``: one at a time); results
  go back in call order. In ``arun`` async tools are tasks and sync tools run in worker threads;
  cancelling ``arun`` cancels and awaits every tool task. (A sync tool's thread cannot be stopped
  from outside: one that outruns its timeout keeps its thread until it returns.)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from types import FunctionType
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload, runtime_checkable

from fmclient import _validation
from fmclient.errors import FMClientError, RequestTimeoutError, StructuredOutputError, ToolError
from fmclient.hooks import RunInfo, ToolCallInfo, notify
from fmclient.retry import Deadline
from fmclient.secret import redact
from fmclient.types import (
    Completion,
    Cost,
    ImagePart,
    Message,
    Part,
    TextPart,
    Tool,
    ToolCall,
    Usage,
    from_json_ready,
    json_ready,
    tool_call_from_json,
)

if TYPE_CHECKING:
    from fmclient._stream import AsyncStream, Stream
    from fmclient.hooks import Hook

__all__ = [
    "AsyncRunStream",
    "FunctionTool",
    "ReasoningDelta",
    "Run",
    "RunEvent",
    "RunStream",
    "Step",
    "StepEnd",
    "TextDelta",
    "ToolCallEvent",
    "ToolResult",
    "ToolResultEvent",
    "ToolSource",
    "tool",
]

#: The result a call to a final tool without a handler gets (the history stays well-formed).
FINAL_TOOL_RESULT = "ok"


# -- tools -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A tool the loop can run: its schema (what the model sees) and what runs it.

    Build one with :func:`tool`; plain functions, ``{"name", "parameters", "handler"}`` dicts and
    MCP servers' tools (:mod:`fmclient.mcp`) become one by themselves.
    """

    spec: Tool
    #: called with the checked arguments as keywords (sync or async); None: a final tool with no
    #: code (its call's arguments are the run's answer)
    handler: Callable[..., Any] | None = None
    #: True: ``approve`` must allow each call; False: never asked; None: asked when ``approve`` is given
    requires_approval: bool | None = None
    #: a call to it ends the run (``Run.stopped`` is its name) once its result is in
    final: bool = False
    #: gen_ai.tool.type: "function" (Python code), "extension" (an MCP server's tool)
    kind: str = "function"
    #: seconds one call may take (overrides the run's ``tool_timeout``)
    timeout: float | None = None
    #: the tool's own check of the model's arguments: returns the keywords for ``handler`` or raises
    #: (StructuredOutputError, ValueError, TypeError) with the problem the model should fix
    check: Callable[[Mapping[str, Any]], dict[str, Any]] | None = field(default=None, repr=False)
    #: for an async-native tool (MCP): awaited in ``arun`` instead of running ``handler`` in a thread
    ahandler: Callable[..., Awaitable[Any]] | None = field(default=None, repr=False)
    #: the spec has passed the checks every call's tools get (set when fmclient builds the tool,
    #: or by the first run of one made by hand), so no run or step checks it again
    checked: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def arguments(self, call: ToolCall) -> dict[str, Any]:
        """The call's arguments checked against the tool's schema, as the handler's keywords."""
        if call.raw_arguments is not None:
            raise ValueError(
                f"the arguments for {call.name!r} were cut off (the reply reached max_tokens): "
                "make the call again with complete arguments"
            )
        check = self.check
        if check is None:  # built once per tool (a frozen dataclass: set through object)
            check = _schema_check(self.spec)
            object.__setattr__(self, "check", check)
        return check(call.arguments)


@overload
def tool(
    fn: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    requires_approval: bool | None = None,
    final: bool = False,
    timeout: float | None = None,
) -> FunctionTool: ...


@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str,
    description: str | None = None,
    parameters: Mapping[str, Any],
    requires_approval: bool | None = None,
    final: bool = False,
    timeout: float | None = None,
) -> FunctionTool: ...


@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool | None = None,
    final: bool = False,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    requires_approval: bool | None = None,
    final: bool = False,
    timeout: float | None = None,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """A :class:`FunctionTool`, from a typed function or a JSON Schema (also as a decorator).

    ``tool(fn)`` takes the function's name, docstring and annotations (as ``tools=[fn]`` does);
    ``tool(fn, name=..., parameters={...})`` gives a handler an explicit JSON Schema; ``tool(name=...,
    parameters={...}, final=True)`` with no function is a final tool: the model's call to it ends
    the run, and its arguments are the answer (``Run.final_call``).
    """
    if fn is None and parameters is None:
        return lambda function: tool(  # used as @tool(...)
            function,
            name=name,
            description=description,
            requires_approval=requires_approval,
            final=final,
            timeout=timeout,
        )
    if timeout is not None:
        timeout = _positive(timeout, "timeout")
    if parameters is not None or fn is None:
        if name is None:
            if fn is None:
                raise ValueError("a tool with no function needs a name")
            name = fn.__name__
        spec = _validation.tool_from_input(
            {"name": name, "description": description or "", "parameters": parameters or _EMPTY}, "tool"
        )
        return _checked(FunctionTool(spec, fn, requires_approval, final or fn is None, "function", timeout))
    spec = _validation.tool_from_input(fn, "tool")
    if name is not None or description is not None:
        spec = _validation.tool_from_input(
            {"name": name or spec.name, "description": description or spec.description, "parameters": spec.parameters},
            "tool",
        )
    return _checked(
        FunctionTool(spec, fn, requires_approval, final, "function", timeout, check=_function_check(fn, spec.name))
    )


_EMPTY: Mapping[str, Any] = {"type": "object", "properties": {}}


def _checked(made: FunctionTool) -> FunctionTool:
    """``made``, whose spec ``_validation.tool_from_input`` built (so checked as complete() checks
    tools): no run checks it again."""
    object.__setattr__(made, "checked", True)
    return made


@runtime_checkable
class ToolSource(Protocol):
    """Something that offers tools to a run and may change them between steps (an MCP server)."""

    def loop_tools(self) -> Sequence[FunctionTool]: ...


def _function_check(fn: Callable[..., Any], name: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    from fmclient._schema import arguments_check

    check_arguments = arguments_check(fn)  # fmclient.tool_arguments with the signature read once
    own = getattr(fn, "__name__", name)
    if own == name:
        return check_arguments

    def check(arguments: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return check_arguments(arguments)
        except StructuredOutputError as exc:
            # The model knows the tool by the name it was given, not the function's.
            raise StructuredOutputError(
                exc.message.replace(f"tool {own!r}", f"tool {name!r}", 1), text=exc.text
            ) from None

    return check


def _schema_check(spec: Tool) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A JSON Schema tool's argument check: jsonschema where installed (the mcp extra brings it),
    its validator built once per tool; else fmclient's own structural check."""
    validator: list[Any] = []

    def check(arguments: Mapping[str, Any]) -> dict[str, Any]:
        if not validator:
            try:
                import jsonschema
            except ImportError:
                validator.append(None)
            else:
                validator.append(jsonschema.Draft202012Validator(dict(spec.parameters)))
        if validator[0] is None:
            problem = _validation._schema_mismatch(dict(arguments), spec.parameters, "$")
            if problem:
                raise StructuredOutputError(
                    f"arguments for tool {spec.name!r} do not fit: {problem}", text=json.dumps(arguments, default=str)
                ) from None
            return dict(arguments)
        errors = sorted(validator[0].iter_errors(dict(arguments)), key=lambda e: list(e.absolute_path))
        if errors:
            problems = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}" for e in errors)
            raise StructuredOutputError(
                f"arguments for tool {spec.name!r} do not fit: {problems}", text=json.dumps(arguments, default=str)
            )
        return dict(arguments)

    return check


def _as_tool(value: Any, where: str) -> FunctionTool:
    if isinstance(value, FunctionTool):
        return value
    if isinstance(value, Mapping) and "handler" in value:
        rest = {k: v for k, v in value.items() if k not in ("handler", "requires_approval", "final", "timeout")}
        handler = value["handler"]
        if not callable(handler):
            raise TypeError(f"{where}.handler must be callable")
        spec = _validation.tool_from_input(rest, where)
        timeout = value.get("timeout")
        from_dict = FunctionTool(
            spec,
            handler,
            value.get("requires_approval"),
            bool(value.get("final", False)),
            "function",
            None if timeout is None else _positive(timeout, f"{where}.timeout"),
        )
        return _checked(from_dict)
    if isinstance(value, (Mapping, Tool)):
        # A schema with nothing to run it: a final tool (its arguments are the run's answer).
        return _checked(FunctionTool(_validation.tool_from_input(value, where), None, None, True))
    if callable(value):
        try:
            made = _FUNCTION_TOOLS.get(value)
        except TypeError:  # not weak-referenceable: built each time
            made = None
        if made is None:
            spec = _validation.tool_from_input(value, where)
            made = _checked(FunctionTool(spec, value, check=_function_check(value, spec.name)))
            with contextlib.suppress(TypeError):
                _FUNCTION_TOOLS[value] = made
        return made
    raise TypeError(f"{where} must be a function, a tool dict, fmclient.tool(...) or an MCP server's tools")


# A function's tool (its schema comes from pydantic, which is slow to ask): built once per function.
_FUNCTION_TOOLS: weakref.WeakKeyDictionary[Callable[..., Any], FunctionTool] = weakref.WeakKeyDictionary()


class _Toolbox:
    """The run's tools: fixed ones built once, sources (MCP servers) listed again on every step."""

    __slots__ = ("_fixed", "_sources", "by_name", "specs")

    def __init__(self, tools: Any) -> None:
        if tools is None:
            raise ValueError("a run needs tools=[...] (for one call without tools, use complete())")
        if not isinstance(tools, Sequence) or isinstance(tools, (str, bytes)):
            raise TypeError(f"tools must be a list, not {type(tools).__name__}")
        self._fixed: list[FunctionTool] = []
        self._sources: list[ToolSource] = []
        for index, item in enumerate(tools):
            made = _FUNCTION_TOOLS.get(item) if type(item) is FunctionType else None  # a function seen before
            if made is not None:
                self._fixed.append(made)
            # Duck-typed: isinstance() against a runtime-checkable protocol costs ~30 µs a run.
            elif not isinstance(item, FunctionTool) and callable(getattr(item, "loop_tools", None)):
                self._sources.append(item)
            else:
                self._fixed.append(_as_tool(item, f"tools[{index}]"))
        self.by_name: dict[str, FunctionTool] = {}
        self.specs: tuple[Tool, ...] = ()
        self.refresh()

    def refresh(self) -> bool:
        """List the sources' tools again; False when nothing can have changed."""
        if self.by_name and not self._sources:
            return False
        every = self._fixed
        if self._sources:
            every = [*every, *(t for source in self._sources for t in source.loop_tools())]
        by_name: dict[str, FunctionTool] = {}
        for index, found in enumerate(every):
            if found.name in by_name:
                raise ValueError(f"tools: two tools are named {found.name!r} (give an MCP server a prefix=)")
            by_name[found.name] = found
            if not found.checked:  # what complete() checks in each tool, once per tool
                _validation.tool_from_input(found.spec, f"tools[{index}]")
                object.__setattr__(found, "checked", True)
        self.by_name = by_name
        # Checked: each step's call does not check them again.
        self.specs = _validation.CheckedTools(t.spec for t in every)
        return True


# -- what a run records ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToolResult:
    """What went back to the model for one tool call."""

    call_id: str
    name: str
    content: str | tuple[Part, ...]
    #: the tool failed (raised, timed out, unknown, invalid arguments, denied): ``content`` says why
    is_error: bool = False
    #: the exception's type name, or "unknown_tool", "invalid_arguments", "denied", "timeout"
    error_type: str | None = None

    @property
    def denied(self) -> bool:
        return self.error_type == "denied"

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def message(self) -> Message:
        return Message(
            role="tool", content=self.content, tool_call_id=self.call_id, name=self.name, is_error=self.is_error
        )

    def to_json(self) -> dict[str, Any]:
        out = Message(role="tool", content=self.content).to_json()
        return {
            "call_id": self.call_id,
            "name": self.name,
            "content": out["content"],
            "is_error": self.is_error,
            "error_type": self.error_type,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolResult:
        content = Message.from_json({"role": "tool", "content": data["content"]}).content
        return cls(data["call_id"], data["name"], content, bool(data.get("is_error")), data.get("error_type"))


@dataclass(slots=True)
class Step:
    """One model call of a run and the tool calls it led to."""

    number: int  # 1 for the first step
    completion: Completion
    tool_results: list[ToolResult] = field(default_factory=list)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self.completion.tool_calls

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "completion": _completion_to_json(self.completion),
            "tool_results": [r.to_json() for r in self.tool_results],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            data["number"],
            _completion_from_json(data["completion"]),
            [ToolResult.from_json(r) for r in data.get("tool_results", ())],
        )


Stopped = str  # "answer", "max_steps", "stop_when", "tool_failures" or a final tool's name


@dataclass(slots=True)
class Run:
    """A finished (or, on ``error.run``, interrupted) tool loop."""

    steps: list[Step]
    #: the whole conversation: the prompt's messages, then each step's answer and tool results.
    #: Pass it as the next run's (or complete()'s) prompt to continue.
    messages: list[Message]
    #: why it ended: "answer", "max_steps", "stop_when", "tool_failures" or a final tool's name
    #: ("" while running, and on the run an error carries)
    stopped: Stopped = ""

    @property
    def completion(self) -> Completion:
        """The last step's completion."""
        if not self.steps:
            raise ValueError("the run has no step yet")
        return self.steps[-1].completion

    @property
    def text(self) -> str:
        """The final answer's text ("" when the run has no step)."""
        return self.steps[-1].completion.text if self.steps else ""

    @property
    def parsed(self) -> Any:
        return self.steps[-1].completion.parsed if self.steps else None

    @property
    def final_call(self) -> ToolCall | None:
        """The call to a final tool that ended the run, if one did: its arguments are the answer."""
        if not self.steps:
            return None
        return next((c for c in self.steps[-1].tool_calls if c.name == self.stopped), None)

    @property
    def usage(self) -> Usage:
        """Usage summed over every step."""
        if not self.steps:
            return Usage()
        # From the first step's, not Usage(): a service tier every step shares is kept.
        total = self.steps[0].completion.usage
        for step in self.steps[1:]:
            total = total + step.completion.usage
        return total

    @property
    def cost(self) -> Cost | None:
        """Cost summed over every step; None when any step's cost is unknown (see :attr:`cost_reason`)."""
        total: Cost | None = None
        for step in self.steps:
            cost = step.completion.cost
            if cost is None:
                return None
            total = cost if total is None else total + cost
        return total

    @property
    def cost_reason(self) -> str | None:
        for step in self.steps:
            if step.completion.cost is None:
                return f"step {step.number}: {step.completion.cost_reason}"
        return None if self.steps else "cost unknown: the run has no step"

    def to_json(self) -> dict[str, Any]:
        """Everything in the run as JSON-ready data; :meth:`from_json` gives it back."""
        return {
            "steps": [s.to_json() for s in self.steps],
            "messages": [m.to_json() for m in self.messages],
            "stopped": self.stopped,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(
            [Step.from_json(s) for s in data["steps"]],
            [Message.from_json(m) for m in data["messages"]],
            data.get("stopped", ""),
        )


def _completion_to_json(completion: Completion) -> dict[str, Any]:
    cost = completion.cost
    parsed = completion.parsed
    if parsed is not None and hasattr(parsed, "model_dump"):
        parsed = parsed.model_dump(mode="json")
    return {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "usage": {k: v for k, v in completion.usage.to_dict().items() if k != "total_tokens"},
        "model": completion.model,
        "provider": completion.provider,
        "tool_calls": [json_ready(_call_json(c)) for c in completion.tool_calls],
        "message": completion.message.to_json(),
        "parsed": json_ready(parsed),
        "reasoning": completion.reasoning,
        "response_id": completion.response_id,
        "request_id": completion.request_id,
        "cached": completion.cached,
        # Decimal amounts as strings: exact after the round trip.
        "cost": None if cost is None else {**{k: str(v) for k, v in _amounts(cost).items()}, "currency": cost.currency},
        "cost_reason": completion.cost_reason,
    }


def _amounts(cost: Cost) -> dict[str, Any]:
    return {"total": cost.total, "input": cost.input, "output": cost.output}


def _call_json(call: ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": call.arguments}
    if call.raw_arguments is not None:
        out["raw_arguments"] = call.raw_arguments
    return out


def _completion_from_json(data: Mapping[str, Any]) -> Completion:
    from decimal import Decimal

    raw_cost = data.get("cost")
    cost = None
    if raw_cost is not None:
        total, spent_in, spent_out = (Decimal(raw_cost[k]) for k in ("total", "input", "output"))
        cost = Cost(total, spent_in, spent_out, raw_cost["currency"])
    completion = Completion(
        text=data["text"],
        finish_reason=data["finish_reason"],
        usage=Usage(**data["usage"]),
        model=data["model"],
        provider=data["provider"],
        tool_calls=[tool_call_from_json(c) for c in data.get("tool_calls", ())],
        message=Message.from_json(data["message"]),
        parsed=from_json_ready(data.get("parsed")),
        response_id=data.get("response_id"),
        request_id=data.get("request_id"),
        cached=bool(data.get("cached")),
        reasoning=data.get("reasoning"),
    )
    completion._priced = (cost, data.get("cost_reason"))  # priced when it ran, not again
    return completion


# -- stream events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TextDelta:
    step: int
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    step: int
    text: str
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """The model called a tool (sent before it runs)."""

    step: int
    call: ToolCall
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    step: int
    result: ToolResult
    type: Literal["tool_result"] = "tool_result"


@dataclass(frozen=True, slots=True)
class StepEnd:
    step: Step
    type: Literal["step_end"] = "step_end"


RunEvent = TextDelta | ReasoningDelta | ToolCallEvent | ToolResultEvent | StepEnd


# -- the loop itself (no I/O: the four drivers below call the model and the tools) ----------------
@dataclass(slots=True)
class _Pending:
    """One tool call of a step: what to run, or the result already decided (unknown, invalid)."""

    call: ToolCall
    tool: FunctionTool | None
    arguments: dict[str, Any]
    result: ToolResult | None = None
    info: ToolCallInfo | None = None
    error: BaseException | None = None


class _Loop:
    __slots__ = (
        "approve",
        "arguments",
        "deadline",
        "failures",
        "hooks",
        "info",
        "max_steps",
        "max_tool_failures",
        "model",
        "on_tool_error",
        "parallel",
        "run",
        "stop_when",
        "timeout",
        "tool_timeout",
        "toolbox",
    )

    def __init__(
        self,
        hooks: Sequence[Hook],
        prompt: Any,
        tools: Any,
        model: str | None,
        max_steps: int,
        stop_when: Callable[[Run], bool] | None,
        approve: Callable[[ToolCall], Any] | None,
        parallel_tools: bool,
        tool_timeout: float | None,
        on_tool_error: str,
        max_tool_failures: int | None,
        timeout: float | None,
        streaming: bool,
        call_args: Mapping[str, Any],
    ) -> None:
        # Everything is checked before the first request.
        if type(max_steps) is not int or max_steps < 1:
            raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
        if on_tool_error not in ("return", "raise"):
            raise ValueError(f"on_tool_error must be 'return' or 'raise', got {on_tool_error!r}")
        if max_tool_failures is not None and (type(max_tool_failures) is not int or max_tool_failures < 1):
            raise ValueError(f"max_tool_failures must be an int >= 1 or None, got {max_tool_failures!r}")
        if stop_when is not None and not callable(stop_when):
            raise TypeError("stop_when must be callable")
        if approve is not None and not callable(approve):
            raise TypeError("approve must be callable")
        if call_args:
            for reserved in ("tools", "timeout", "model"):
                if reserved in call_args:
                    raise TypeError(f"pass {reserved}= once")
        self.toolbox = _Toolbox(tools)
        self.model = model
        self.max_steps = max_steps
        self.stop_when = stop_when
        self.approve = approve
        if approve is None:
            needing = [t.name for t in self.toolbox.by_name.values() if t.requires_approval]
            if needing:
                raise ValueError(f"tools {needing} require approval: pass approve=")
        self.parallel = parallel_tools
        self.tool_timeout = None if tool_timeout is None else _positive(tool_timeout, "tool_timeout")
        self.on_tool_error = on_tool_error
        self.max_tool_failures = max_tool_failures
        self.timeout = None if timeout is None else _validation.check_timeout(timeout)
        self.deadline = Deadline(self.timeout)
        self.arguments: dict[str, Any] = {"model": model, "tools": self.toolbox.specs, "timeout": None, **call_args}
        self.run = Run([], _validation.messages_from_prompt(prompt))
        self.failures: dict[str, int] = {}
        self.hooks = hooks
        self.info: RunInfo | None = None
        if hooks:
            self.info = RunInfo(model or "", streaming, time.perf_counter(), tuple(self.toolbox.by_name), run=self.run)

    # -- the run's life ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.info is not None:
            notify(self.hooks, "on_run_start", self.info)

    def end(self, error: BaseException | None) -> Run:
        if error is not None and isinstance(error, FMClientError) and error.run is None:
            error.run = self.run
        if self.info is not None:
            self.info.ended = time.perf_counter()
            notify(self.hooks, "on_run_end", self.info, None if error else self.run, error)
        return self.run

    def next_call(self) -> dict[str, Any] | None:
        """The next step's complete() arguments, or None when the run is over."""
        run = self.run
        if run.stopped:
            return None
        if len(run.steps) >= self.max_steps:
            run.stopped = "max_steps"
            return None
        left = self.deadline.remaining()
        if left is not None and left <= 0:
            raise RequestTimeoutError(f"the run's deadline of {self.timeout:g}s was exceeded", retryable=False)
        arguments = self.arguments  # the same every step but for the time left and the tools
        if left is not None:
            arguments["timeout"] = left
        if run.steps and self.toolbox.refresh():  # an MCP server's tool list may have changed
            arguments["tools"] = self.toolbox.specs
        return arguments

    def answered(self, completion: Completion) -> list[_Pending]:
        """The step's answer: the tool calls to run (none: the run is over)."""
        run = self.run
        run.steps.append(Step(len(run.steps) + 1, completion))
        run.messages.append(completion.message)
        if not completion.tool_calls:
            run.stopped = "answer"
            return []
        pending = []
        by_name = self.toolbox.by_name
        for call in completion.tool_calls:
            found = by_name.get(call.name)
            if found is None:
                known = ", ".join(sorted(by_name)) or "none"
                error = _error_result(call, f"unknown tool {call.name!r}; the tools are: {known}", "unknown_tool")
                pending.append(_Pending(call, None, {}, error))
                continue
            try:
                arguments = found.arguments(call)
            except (StructuredOutputError, ValueError, TypeError) as exc:
                message = exc.message if isinstance(exc, FMClientError) else str(exc)
                pending.append(_Pending(call, found, {}, _error_result(call, message, "invalid_arguments")))
            else:
                pending.append(_Pending(call, found, arguments))
        return pending

    def needs_approval(self, item: _Pending) -> bool:
        assert item.tool is not None
        wanted = item.tool.requires_approval
        return self.approve is not None and (wanted is None or wanted)

    def denied(self, item: _Pending) -> None:
        item.result = _error_result(item.call, f"the call to {item.call.name!r} was denied", "denied")

    def limited(self, todo: list[_Pending]) -> bool:
        """Whether a time limit (the run's deadline, tool_timeout, a tool's own) covers a call."""
        if self.timeout is not None or self.tool_timeout is not None:
            return True
        for item in todo:
            assert item.tool is not None
            if item.tool.timeout is not None:
                return True
        return False

    def tool_timeout_for(self, item: _Pending) -> tuple[float | None, bool]:
        """Seconds the call may take, and whether that limit is the run's deadline."""
        assert item.tool is not None
        own = item.tool.timeout if item.tool.timeout is not None else self.tool_timeout
        left = self.deadline.remaining()
        if left is not None and (own is None or left < own):
            return max(left, 0.0), True
        return own, False

    def tool_started(self, item: _Pending) -> None:
        if self.info is not None:  # hooks are told; without hooks nothing is recorded
            assert item.tool is not None or item.result is not None
            kind = item.tool.kind if item.tool is not None else "function"
            item.info = ToolCallInfo(self.info, item.call, kind, len(self.run.steps), time.perf_counter())
            notify(self.hooks, "on_tool_start", item.info)

    def tool_ended(self, item: _Pending, result: ToolResult, error: BaseException | None) -> None:
        item.result = result
        item.error = error
        if item.info is None and self.info is not None:  # decided without running: still reported
            self.tool_started(item)
        if item.info is not None:
            item.info.ended = item.info.ended or time.perf_counter()
            item.info.result = result
            item.info.error = error
            notify(self.hooks, "on_tool_end", item.info)

    def outcome(self, item: _Pending, value: Any = None, error: BaseException | None = None) -> ToolResult:
        """The result the model sees for a call that ran (or raised)."""
        call = item.call
        if error is None:
            return ToolResult(call.id, call.name, _content(value))
        if isinstance(error, ToolError):
            return _error_result(call, error.message, type(error).__name__)
        # Type and message only, never a traceback; known secrets are masked.
        return _error_result(call, redact(f"{type(error).__name__}: {error}"), type(error).__name__)

    def timed_out(self, item: _Pending, seconds: float | None) -> ToolResult:
        return _error_result(item.call, f"tool {item.call.name!r} did not finish within {seconds:g}s", "timeout")

    def deadline_error(self, item: _Pending) -> RequestTimeoutError:
        return RequestTimeoutError(
            f"the run's deadline of {self.timeout:g}s was exceeded while tool {item.call.name!r} ran", retryable=False
        )

    def results(self, pending: list[_Pending]) -> None:
        """Every call of the step has its result: send them back, and decide whether to go on."""
        run = self.run
        step = run.steps[-1]
        results = step.tool_results
        messages = run.messages
        failures = self.failures
        raise_error: BaseException | None = None
        final: str | None = None
        for item in pending:
            result = item.result
            assert result is not None
            results.append(result)
            messages.append(result.message())
            if result.is_error:
                failures[result.name] = failures.get(result.name, 0) + 1
            elif failures:
                failures.pop(result.name, None)
            if raise_error is None and item.error is not None and self.on_tool_error == "raise":
                raise_error = item.error
            if final is None and item.tool is not None and item.tool.final:
                final = item.tool.name
        if self.info is not None:
            notify(self.hooks, "on_step_end", self.info, step)
        if raise_error is not None:
            raise raise_error
        if final is not None:
            run.stopped = final
        elif failures and self.max_tool_failures is not None and max(failures.values()) >= self.max_tool_failures:
            run.stopped = "tool_failures"
        elif self.stop_when is not None and self.stop_when(run):
            run.stopped = "stop_when"


def _error_result(call: ToolCall, message: str, error_type: str) -> ToolResult:
    return ToolResult(call.id, call.name, f"Error: {message}", True, error_type)


def _content(value: Any) -> str | tuple[Part, ...]:
    """A tool's return value as a tool result's content."""
    if isinstance(value, str):
        return value
    if type(value) is int:  # what json.dumps writes, without its encoder set-up
        return int.__repr__(value)
    if value is None:
        return ""
    if isinstance(value, (TextPart, ImagePart)):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (TextPart, ImagePart)) for v in value):
        return tuple(value)
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json())
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


# -- running tools: sync -----------------------------------------------------------------------------
def _call_sync(item: _Pending) -> Any:
    assert item.tool is not None
    handler = item.tool.handler
    if handler is None:
        return FINAL_TOOL_RESULT
    value = handler(**item.arguments)
    if type(value) not in _NOT_AWAITABLE and inspect.isawaitable(value):
        return asyncio.run(_awaited(value))  # an async tool in a sync run: run it to completion here
    return value


# What tools mostly return, known not to be awaitable without asking inspect (~0.3 µs a call).
_NOT_AWAITABLE = frozenset({str, int, float, bool, type(None), dict, list, tuple})


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _approve_sync(loop: _Loop, item: _Pending) -> None:
    if item.result is None and loop.needs_approval(item):
        assert loop.approve is not None
        verdict = loop.approve(item.call)
        if inspect.isawaitable(verdict):
            verdict = asyncio.run(_awaited(verdict))
        if not verdict:
            loop.denied(item)


class _Workers:
    """Worker threads for a sync run's tools: one pool for the process, made on first need, so a
    run does not pay for starting threads. A tool that outruns its timeout keeps its thread busy
    until it returns (a thread cannot be stopped from outside); the pool is large enough that a
    few such tools do not hold up the others."""

    __slots__ = ()
    _pool: ThreadPoolExecutor | None = None
    _lock = threading.Lock()

    def submit(self, item: _Pending) -> Any:
        pool = _Workers._pool
        if pool is None:
            with _Workers._lock:
                pool = _Workers._pool
                if pool is None:
                    pool = _Workers._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="fmclient-tool")
        context = contextvars.copy_context()  # the tool sees the caller's context (spans, vars)
        return pool.submit(context.run, _call_sync, item)

    def close(self) -> None:
        pass  # the pool outlives the run


def _run_tools(loop: _Loop, pending: list[_Pending], workers: _Workers) -> None:
    if loop.approve is not None:
        for item in pending:
            _approve_sync(loop, item)
    todo = [item for item in pending if item.result is None]
    if not loop.limited(todo):
        if loop.parallel and len(todo) > 1:
            _run_parallel(loop, pending, todo, workers)
            return
        # One call, or one at a time: in this thread, in call order.
        for item in pending:
            if item.result is None:
                loop.tool_started(item)
                try:
                    value = _call_sync(item)
                except Exception as exc:
                    loop.tool_ended(item, loop.outcome(item, error=exc), exc)
                else:
                    loop.tool_ended(item, ToolResult(item.call.id, item.call.name, _content(value)), None)
            else:  # decided without running (unknown, invalid, denied)
                loop.tool_ended(item, item.result, None)
        return
    # A time limit applies: each call runs in a worker thread that the limit can stop waiting for.
    if not loop.parallel:
        for item in pending:
            if item.result is not None:
                loop.tool_ended(item, item.result, None)
                continue
            seconds, is_deadline = loop.tool_timeout_for(item)
            loop.tool_started(item)
            _settle(loop, item, workers.submit(item), seconds, seconds, is_deadline)
        return
    for item in pending:
        if item.result is not None:
            loop.tool_ended(item, item.result, None)
    limits = [loop.tool_timeout_for(item) for item in todo]
    started = time.monotonic()
    futures = []
    for item in todo:
        loop.tool_started(item)
        futures.append(workers.submit(item))
    stop: RequestTimeoutError | None = None
    for item, future, (seconds, is_deadline) in zip(todo, futures, limits, strict=True):
        wait = None if seconds is None else max(started + seconds - time.monotonic(), 0.0)
        try:
            _settle(loop, item, future, wait, seconds, is_deadline)
        except RequestTimeoutError as error:  # the run's deadline: every call still ends for hooks
            stop = stop or error
    if stop is not None:
        raise stop


def _run_parallel(loop: _Loop, pending: list[_Pending], todo: list[_Pending], workers: _Workers) -> None:
    """Several calls with no time limit: all but the last in worker threads, the last in this
    thread meanwhile (one thread hand-off fewer per step); results end in call order."""
    for item in pending:
        if item.result is not None:
            loop.tool_ended(item, item.result, None)
    for item in todo:
        loop.tool_started(item)
    *others, last = todo
    futures = [workers.submit(item) for item in others]
    try:
        here: Any = _call_sync(last)
        failed: Exception | None = None
    except Exception as exc:
        here, failed = None, exc
    for item, future in zip(others, futures, strict=True):
        _settle(loop, item, future, None, None, False)
    if failed is not None:
        loop.tool_ended(last, loop.outcome(last, error=failed), failed)
    else:
        loop.tool_ended(last, loop.outcome(last, here), None)


def _settle(
    loop: _Loop, item: _Pending, future: Any, wait: float | None, seconds: float | None, deadline: bool
) -> None:
    try:
        value = future.result(timeout=wait)
    except FutureTimeout:
        future.cancel()
        if deadline:
            error = loop.deadline_error(item)
            loop.tool_ended(item, loop.timed_out(item, seconds), error)
            raise error from None
        loop.tool_ended(item, loop.timed_out(item, seconds), None)
    except Exception as exc:
        loop.tool_ended(item, loop.outcome(item, error=exc), exc)
    else:
        loop.tool_ended(item, loop.outcome(item, value), None)


# -- running tools: async -----------------------------------------------------------------------------
async def _acall(item: _Pending) -> Any:
    assert item.tool is not None
    if item.tool.ahandler is not None:
        return await item.tool.ahandler(**item.arguments)
    handler = item.tool.handler
    if handler is None:
        return FINAL_TOOL_RESULT
    if inspect.iscoroutinefunction(handler):
        return await handler(**item.arguments)
    value = await asyncio.to_thread(handler, **item.arguments)  # sync tools never block the loop
    if inspect.isawaitable(value):
        return await value
    return value


async def _arun_one(loop: _Loop, item: _Pending) -> BaseException | None:
    """Run one call; returns an error that must stop the run (the deadline), else None."""
    seconds, is_deadline = loop.tool_timeout_for(item)
    loop.tool_started(item)
    try:
        value = await asyncio.wait_for(_acall(item), seconds)
    except asyncio.CancelledError as cancelled:  # the run was cancelled: the call still ends for hooks
        loop.tool_ended(item, _error_result(item.call, "the run was cancelled", "cancelled"), cancelled)
        raise
    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
        if is_deadline:
            error = loop.deadline_error(item)
            loop.tool_ended(item, loop.timed_out(item, seconds), error)
            return error
        loop.tool_ended(item, loop.timed_out(item, seconds), None)
    except Exception as exc:
        loop.tool_ended(item, loop.outcome(item, error=exc), exc)
    else:
        loop.tool_ended(item, loop.outcome(item, value), None)
    return None


async def _arun_tools(loop: _Loop, pending: list[_Pending]) -> None:
    for item in pending:
        if item.result is None and loop.needs_approval(item):
            assert loop.approve is not None
            verdict = loop.approve(item.call)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                loop.denied(item)
    todo = [item for item in pending if item.result is None]
    if loop.parallel and len(todo) > 1:
        for item in pending:
            if item.result is not None:
                loop.tool_ended(item, item.result, None)
        tasks = [asyncio.ensure_future(_arun_one(loop, item)) for item in todo]
        try:
            stops = await asyncio.gather(*tasks)
        except BaseException:
            # Cancelled (or interrupted): every tool task is cancelled and waited for, so none
            # outlives the run.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    else:
        stops = []
        for item in pending:  # in call order
            if item.result is not None:
                loop.tool_ended(item, item.result, None)
            else:
                stops.append(await _arun_one(loop, item))
    stop = next((s for s in stops if s is not None), None)
    if stop is not None:
        raise stop


# -- the four drivers ---------------------------------------------------------------------------------
CompleteFn = Callable[..., Completion]
ACompleteFn = Callable[..., Awaitable[Completion]]


def run(complete: CompleteFn, hooks: Sequence[Hook], prompt: Any, **options: Any) -> Run:
    """The loop over ``complete`` (a client's bound method); ``options`` are :class:`_Loop`'s."""
    loop = _make(hooks, prompt, False, **options)
    workers = _Workers()
    loop.start()
    try:
        while (arguments := loop.next_call()) is not None:
            pending = loop.answered(complete(list(loop.run.messages), **arguments))
            if pending:
                _run_tools(loop, pending, workers)
                loop.results(pending)
    except BaseException as error:
        loop.end(error)
        raise
    finally:
        workers.close()
    return loop.end(None)


async def arun(acomplete: ACompleteFn, hooks: Sequence[Hook], prompt: Any, **options: Any) -> Run:
    loop = _make(hooks, prompt, False, **options)
    loop.start()
    try:
        while (arguments := loop.next_call()) is not None:
            pending = loop.answered(await acomplete(list(loop.run.messages), **arguments))
            if pending:
                await _arun_tools(loop, pending)
                loop.results(pending)
    except BaseException as error:
        loop.end(error)
        raise
    return loop.end(None)


class RunStream:
    """``client.run_stream(...)``: iterate for :data:`RunEvent` objects, then read ``.run``."""

    def __init__(self, events: Iterator[RunEvent], loop: _Loop) -> None:
        self._events = events
        self._loop = loop

    def __iter__(self) -> Iterator[RunEvent]:
        return self._events

    @property
    def run(self) -> Run:
        """The run, once the events are all read."""
        if not self._loop.run.stopped:
            raise RuntimeError("the run is not over: iterate over its events first")
        return self._loop.run

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> RunStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRunStream:
    """``client.arun_stream(...)``: ``async for event in ...``, then read ``.run``."""

    def __init__(self, events: AsyncIterator[RunEvent], loop: _Loop) -> None:
        self._events = events
        self._loop = loop

    def __aiter__(self) -> AsyncIterator[RunEvent]:
        return self._events

    @property
    def run(self) -> Run:
        if not self._loop.run.stopped:
            raise RuntimeError("the run is not over: iterate over its events first")
        return self._loop.run

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> AsyncRunStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def run_stream(stream: Callable[..., Stream], hooks: Sequence[Hook], prompt: Any, **options: Any) -> RunStream:
    loop = _make(hooks, prompt, True, **options)

    def events() -> Iterator[RunEvent]:
        workers = _Workers()
        loop.start()
        try:
            while (arguments := loop.next_call()) is not None:
                number = len(loop.run.steps) + 1
                answer = stream(list(loop.run.messages), **arguments)
                for chunk in answer:
                    if chunk.reasoning:
                        yield ReasoningDelta(number, chunk.reasoning)
                    if chunk.text:
                        yield TextDelta(number, chunk.text)
                pending = loop.answered(answer.completion)
                for item in pending:
                    yield ToolCallEvent(number, item.call)
                if pending:
                    _run_tools(loop, pending, workers)
                    loop.results(pending)
                    for item in pending:
                        assert item.result is not None
                        yield ToolResultEvent(number, item.result)
                yield StepEnd(loop.run.steps[-1])
        except BaseException as error:
            loop.end(error)
            raise
        finally:
            workers.close()
        loop.end(None)

    return RunStream(events(), loop)


def arun_stream(
    astream: Callable[..., AsyncStream], hooks: Sequence[Hook], prompt: Any, **options: Any
) -> AsyncRunStream:
    loop = _make(hooks, prompt, True, **options)

    async def events() -> AsyncIterator[RunEvent]:
        loop.start()
        try:
            while (arguments := loop.next_call()) is not None:
                number = len(loop.run.steps) + 1
                answer = astream(list(loop.run.messages), **arguments)
                async for chunk in answer:
                    if chunk.reasoning:
                        yield ReasoningDelta(number, chunk.reasoning)
                    if chunk.text:
                        yield TextDelta(number, chunk.text)
                pending = loop.answered(await answer.get_completion())
                for item in pending:
                    yield ToolCallEvent(number, item.call)
                if pending:
                    await _arun_tools(loop, pending)
                    loop.results(pending)
                    for item in pending:
                        assert item.result is not None
                        yield ToolResultEvent(number, item.result)
                yield StepEnd(loop.run.steps[-1])
        except BaseException as error:
            loop.end(error)
            raise
        loop.end(None)

    return AsyncRunStream(events(), loop)


def _make(
    hooks: Sequence[Hook],
    prompt: Any,
    streaming: bool,
    *,
    tools: Any,
    model: str | None = None,
    max_steps: int = 10,
    stop_when: Callable[[Run], bool] | None = None,
    approve: Callable[[ToolCall], Any] | None = None,
    parallel_tools: bool = True,
    tool_timeout: float | None = None,
    on_tool_error: str = "return",
    max_tool_failures: int | None = 3,
    timeout: float | None = None,
    **call_args: Any,
) -> _Loop:
    if streaming and call_args.get("output_retries"):
        raise ValueError("output_retries re-asks whole answers: use run() or arun(), not a streamed run")
    return _Loop(
        hooks,
        prompt,
        tools,
        model,
        max_steps,
        stop_when,
        approve,
        parallel_tools,
        tool_timeout,
        on_tool_error,
        max_tool_failures,
        timeout,
        streaming,
        call_args,
    )
