"""Hooks: see (and change) every call, attempt, retry and fallback.

A hook is an object with any of the methods of :class:`Hook` (subclass it and override what you
need). Register hooks on a client: ``Client(hooks=[MyHook()])`` or ``client.add_hook(MyHook())``.
Sync and async calls, streams and embeddings all go through the same hooks, in this order::

    on_call_start(call)
    before_request(call, request)          -> a changed request, or None to keep it
      on_attempt_start(attempt)            one per request sent: retries and fallbacks included
                                           (``attempt.rate_limit_wait``: seconds it waited for the
                                           client-side rate limits, in process or shared)
      on_attempt_sent(attempt)             same context as on_attempt_start, once the SDK returned
      on_first_chunk(attempt, chunk)       streams only
      on_response(attempt, result)  |  on_error(attempt, error)
      on_retry(attempt, wait)              the failed attempt will be retried after ``wait`` s
    on_fallback(attempt, error)            the target failed; the next one is tried
    on_call_end(call, result, error)       exactly once per call that started

A tool loop (``client.run`` / ``arun`` / ``run_stream``) adds its own events around those calls;
each step's model call is an ordinary call with the events above::

    on_run_start(run)
      (the step's call)  on_call_start ... on_call_end
      on_tool_start(tool)                  one per tool call the loop runs (or refuses)
      on_tool_end(tool)                    ``tool.result`` / ``tool.error`` say how it went
      on_step_end(run, step)
    on_run_end(run, result, error)         exactly once per run that started

``before_request`` runs once per target (the primary, then each fallback tried), before any of
its attempts; ``attempt.request`` is what was sent. A result's ``cost`` is known from
``on_call_end`` on: in ``on_response`` the answer is not yet the call's and reads None.

**Calls that send nothing.** A call starts once its input has been checked; from then on it ends
with ``on_call_end`` exactly once, also when no request leaves:

* A response-cache hit (``Client(cache=...)``) is a call with no attempt: ``on_call_start`` then
  ``on_call_end(call, result, None)``, where ``call.cache_hit`` is True, ``call.attempts == []`` and
  ``result.cached`` is True (its usage is the original call's, its cost zero). A stream replayed from
  the cache ends when the replay ends; ``before_request`` does not run (nothing is sent).
* A call refused before its request leaves ends with ``on_call_end(call, None, error)`` and no
  attempt for the request that was never sent: the budget is spent (``BudgetExceededError``), the
  client-side rate limits cannot admit it before its deadline (``RateLimitError``), every target's
  circuit is open or no target could take the request, or ``before_request`` refused it. (A refusal
  after a failed attempt, say at a retry or a fallback, comes after that attempt's events.)
* Input or configuration that is invalid raises before the call starts, and no hook runs: a
  malformed prompt or argument, a request the primary target's model cannot take (its profile), an
  unknown model, or the primary provider's missing key or extra.

``call.provider``, ``call.model`` and ``call.settings`` name the primary target, so a hook can tell
where a call that sent nothing would have gone.

**The rule for a hook that raises.** Observing methods (all but ``before_request``) fail open: an
exception is logged on the ``fmclient`` logger (WARNING, with its traceback) and swallowed; the
call goes on as if the hook had returned, and later hooks still run. ``before_request`` fails
closed, because it is where guardrails and redaction live: raising an :class:`FMClientError`
refuses the call with that error (no request is sent, no fallback is tried), and any other
exception refuses it with an ``FMClientError`` whose ``__cause__`` is that exception. A changed
request is checked against the model's capabilities again before it is sent.

**Cost.** With no hook registered (and the ``fmclient`` logger not enabled for INFO) a call builds
no observer at all, cache hits and refusals included: the client's hot path checks one attribute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from fmclient.errors import FMClientError
from fmclient.limits import current_wait

if TYPE_CHECKING:
    import logging

    from fmclient.providers.base import ProviderSettings
    from fmclient.types import (
        Chunk,
        Completion,
        Embeddings,
        EmbedRequest,
        ImageRequest,
        Images,
        Request,
        Speech,
        SpeechRequest,
        Transcription,
        TranscriptionRequest,
    )

__all__ = ["AttemptInfo", "CallInfo", "Hook", "RunInfo", "ToolCallInfo"]

T = TypeVar("T")
AnyRequest = TypeVar("AnyRequest", "Request", "EmbedRequest", "ImageRequest", "TranscriptionRequest", "SpeechRequest")


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("fmclient")


@dataclass(slots=True, eq=False)
class CallInfo:
    """One call as hooks see it. ``state`` is free for hooks to keep per-call data in."""

    # "chat", "embeddings" or, for generate_image, "generate_content" (the GenAI semantic
    # conventions' operation names); "transcription" and "text_to_speech" for transcribe and speak
    operation: str
    streaming: bool
    request: (
        Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest
    )  # the primary target's request, before before_request
    started: float  # time.perf_counter() at the start
    attempts: list[AttemptInfo] = field(default_factory=list)
    result: Completion | Embeddings | Images | Transcription | Speech | None = None
    error: BaseException | None = None
    ended: float | None = None
    state: dict[Any, Any] = field(default_factory=dict)
    # The primary target: its configured provider name, model and settings ("" and None when unknown).
    provider: str = ""
    model: str = ""
    settings: ProviderSettings | None = None
    cache_hit: bool = False  # answered from fmclient's response cache: no attempts, ``result.cached``
    # Where the primary target's requests go, as its SDK client says (None: no client built yet).
    endpoint: str | None = None


@dataclass(slots=True, eq=False)
class AttemptInfo:
    """One request sent to a provider."""

    call: CallInfo
    provider: str  # the configured provider name ("mistral", "corp", "openai")
    settings: ProviderSettings  # its settings: ``type`` is the adapter, ``base_url`` where it goes
    model: str
    request: Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest
    number: int  # 1 for the first attempt on this target, 2 for its first retry ...
    target_index: int  # 0 for the primary target, 1 for the first fallback ...
    started: float
    ended: float | None = None
    first_chunk_at: float | None = None
    result: Completion | Embeddings | Images | Transcription | Speech | None = None
    error: FMClientError | None = None
    retry_wait: float | None = None
    state: dict[Any, Any] = field(default_factory=dict)
    # Seconds this attempt waited for the client's rate limits before it was sent (in process or
    # shared over Redis alike); None when its target has no rate limits.
    rate_limit_wait: float | None = None
    # Where the request went: the base URL of the adapter's SDK client, including the SDK's own
    # environment settings (None when unknown: a client not built yet, a mock, an in-process model).
    # Known from ``on_attempt_sent`` on; at ``on_attempt_start`` only when a client was built before.
    endpoint: str | None = None

    @property
    def latency(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass(slots=True, eq=False)
class RunInfo:
    """One tool-loop run as hooks see it (``client.run`` and its twins)."""

    model: str  # the model name the run was given (an alias or "provider/model")
    streaming: bool
    started: float  # time.perf_counter() at the start
    tools: tuple[str, ...] = ()  # the names of the tools offered on the first step
    #: the run so far (a :class:`fmclient.tool_loop.Run`): its steps, messages, usage and cost
    run: Any = None
    ended: float | None = None
    state: dict[Any, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class ToolCallInfo:
    """One tool call a run executes. ``result`` is the :class:`fmclient.tool_loop.ToolResult`
    that goes back to the model (also for an unknown tool, invalid arguments or a denied call);
    ``error`` the exception the tool raised, if it did."""

    run: RunInfo
    call: Any  # the fmclient.ToolCall the model made
    kind: str  # gen_ai.tool.type: "function" (a Python function), "extension" (an MCP server's)
    step: int  # 1 for the run's first step
    started: float
    ended: float | None = None
    result: Any = None
    error: BaseException | None = None
    state: dict[Any, Any] = field(default_factory=dict)


def notify(hooks: Sequence[Hook], method: str, *args: Any) -> None:
    """Run one observing method of each hook, failing open (see the module doc)."""
    for hook in hooks:
        function = getattr(hook, method, None)
        if function is None:
            continue
        try:
            function(*args)
        except Exception:
            _logger().warning("fmclient hook %r raised in %s; ignored", hook, method, exc_info=True)


class Hook:
    """Base class: every method does nothing. Override the ones you need (see the module doc)."""

    def on_run_start(self, run: RunInfo) -> None:
        pass

    def on_tool_start(self, tool: ToolCallInfo) -> None:
        pass

    def on_tool_end(self, tool: ToolCallInfo) -> None:
        pass

    def on_step_end(self, run: RunInfo, step: Any) -> None:
        pass

    def on_run_end(self, run: RunInfo, result: Any, error: BaseException | None) -> None:
        pass

    def on_call_start(self, call: CallInfo) -> None:
        pass

    def before_request(self, call: CallInfo, request: AnyRequest) -> AnyRequest | None:
        return None

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        pass

    def on_attempt_sent(self, attempt: AttemptInfo) -> None:
        pass

    def on_first_chunk(self, attempt: AttemptInfo, chunk: Chunk) -> None:
        pass

    def on_response(
        self, attempt: AttemptInfo, result: Completion | Embeddings | Images | Transcription | Speech
    ) -> None:
        pass

    def on_error(self, attempt: AttemptInfo, error: FMClientError) -> None:
        pass

    def on_retry(self, attempt: AttemptInfo, wait: float) -> None:
        pass

    def on_fallback(self, attempt: AttemptInfo | None, error: FMClientError) -> None:
        pass

    def on_call_end(
        self,
        call: CallInfo,
        result: Completion | Embeddings | Images | Transcription | Speech | None,
        error: BaseException | None,
    ) -> None:
        pass


class LoggingHook(Hook):
    """One ``fmclient`` log record per attempt: provider, model, status, latency, retry wait, request id.

    The client adds it by itself whenever the ``fmclient`` logger is enabled for INFO. An answered
    attempt logs at INFO, a failed one at WARNING; a response-cache hit logs one INFO record
    ("cache hit provider/model: ok in ...", ``fmclient_status`` "cache hit", ``fmclient_attempt`` 0).
    """

    def __init__(self) -> None:
        self._log = _logger()

    def on_response(
        self, attempt: AttemptInfo, result: Completion | Embeddings | Images | Transcription | Speech
    ) -> None:
        self._log.info(
            "attempt %d %s/%s: ok in %.3fs%s",
            attempt.number,
            attempt.provider,
            attempt.model,
            attempt.latency or 0.0,
            _request_id_text(getattr(result, "request_id", None)),
            extra=self._extra(attempt, "ok", getattr(result, "request_id", None)),
        )

    def on_error(self, attempt: AttemptInfo, error: FMClientError) -> None:
        # Logged when the retry decision is known (on_retry) or, if none comes, at once.
        attempt.state[LoggingHook] = error
        if not error.retryable:
            self._failed(attempt, error)

    def on_retry(self, attempt: AttemptInfo, wait: float) -> None:
        error = attempt.state.pop(LoggingHook, None)
        if error is not None:
            self._failed(attempt, error)

    def on_fallback(self, attempt: AttemptInfo | None, error: FMClientError) -> None:
        if attempt is not None and attempt.state.pop(LoggingHook, None) is not None:
            self._failed(attempt, error)

    def on_call_end(
        self,
        call: CallInfo,
        result: Completion | Embeddings | Images | Transcription | Speech | None,
        error: BaseException | None,
    ) -> None:
        for attempt in call.attempts:
            pending = attempt.state.pop(LoggingHook, None)
            if pending is not None:
                self._failed(attempt, pending)
        if call.cache_hit and result is not None:
            latency = (call.ended or time.perf_counter()) - call.started
            self._log.info(
                "cache hit %s/%s: ok in %.3fs",
                call.provider,
                call.model,
                latency,
                extra={
                    "fmclient_provider": call.provider,
                    "fmclient_model": call.model,
                    "fmclient_status": "cache hit",
                    "fmclient_latency": latency,
                    "fmclient_retry_wait": None,
                    "fmclient_request_id": None,
                    "fmclient_attempt": 0,
                },
            )

    def _failed(self, attempt: AttemptInfo, error: FMClientError) -> None:
        attempt.state.pop(LoggingHook, None)
        status = error.status_code if error.status_code is not None else type(error).__name__
        # The SDKs' status errors keep the response's request id; fmclient chains them as __cause__.
        request_id = getattr(error.__cause__, "request_id", None)
        request_id = request_id if isinstance(request_id, str) else None
        wait = "" if attempt.retry_wait is None else f", retrying in {attempt.retry_wait:.2f}s"
        self._log.warning(
            "attempt %d %s/%s: %s after %.3fs%s%s",
            attempt.number,
            attempt.provider,
            attempt.model,
            status,
            attempt.latency or 0.0,
            wait,
            _request_id_text(request_id),
            extra=self._extra(attempt, status, request_id),
        )

    @staticmethod
    def _extra(attempt: AttemptInfo, status: object, request_id: str | None) -> dict[str, Any]:
        return {
            "fmclient_provider": attempt.provider,
            "fmclient_model": attempt.model,
            "fmclient_status": status,
            "fmclient_latency": attempt.latency,
            "fmclient_retry_wait": attempt.retry_wait,
            "fmclient_request_id": request_id,
            "fmclient_attempt": attempt.number,
        }


def _request_id_text(request_id: str | None) -> str:
    return f" (request id {request_id})" if request_id else ""


# Hooks every client runs besides its own, registered by the OpenTelemetry instrumentor
# (fmclient.instrumentation) so `opentelemetry-instrument python app.py` traces clients that were
# written without telemetry. Replaced, never mutated, so a call reads one consistent tuple.
global_hooks: tuple[Hook, ...] = ()
_global_lock = threading.Lock()


def add_global_hook(hook: Hook) -> None:
    """Run ``hook`` on every call of every client (built before or after) until removed."""
    global global_hooks
    with _global_lock:
        if hook not in global_hooks:
            global_hooks = (*global_hooks, hook)


def remove_global_hook(hook: Hook) -> None:
    global global_hooks
    with _global_lock:
        global_hooks = tuple(h for h in global_hooks if h is not hook)


def with_global_hooks(hooks: list[Hook]) -> list[Hook]:
    """A client's hooks plus the global ones it does not already run one of the same kind of.

    A client built with ``telemetry=True`` under the instrumentor keeps its own hook: one span per call.
    """
    kinds = {type(hook) for hook in hooks}
    extra = [hook for hook in global_hooks if type(hook) not in kinds]
    return [*hooks, *extra] if extra else hooks


class CallObserver:
    """What the client calls at the few points of a call; runs the hooks under the rule above.

    Built per call only when there is a hook to run (the client passes ``None`` otherwise).
    """

    __slots__ = ("_current", "_endpoint", "_hooks", "_number", "_settings", "_target_index", "_target_key", "call")

    def __init__(
        self,
        hooks: Sequence[Hook],
        settings: Callable[[str], ProviderSettings],
        operation: str,
        request: Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest,
        streaming: bool,
        provider: str = "",
        model: str = "",
        cache_hit: bool = False,
        endpoint: Callable[[str], str | None] | None = None,
    ) -> None:
        self._hooks = hooks
        self._settings = settings
        self._endpoint = endpoint
        self.call = CallInfo(operation, streaming, request, time.perf_counter())
        if provider:
            self.call.provider = provider
            self.call.model = model
            self.call.settings = settings(provider)
            self.call.endpoint = None if endpoint is None else endpoint(provider)
        self.call.cache_hit = cache_hit
        self._current: AttemptInfo | None = None
        self._target_key: tuple[str, str] | None = None
        self._target_index = -1
        self._number = 0
        self._each("on_call_start", self.call)

    # -- running hooks -----------------------------------------------------------------------------
    def _each(self, method: str, *args: Any) -> None:
        for hook in self._hooks:
            function = getattr(hook, method, None)
            if function is None:
                continue
            try:
                function(*args)
            except Exception:
                _logger().warning("fmclient hook %r raised in %s; ignored", hook, method, exc_info=True)

    def before_request(self, request: AnyRequest, check: Callable[[AnyRequest], None] | None = None) -> AnyRequest:
        """Let each hook change the request; raise to refuse the call (fail closed)."""
        original = request
        for hook in self._hooks:
            function = getattr(hook, "before_request", None)
            if function is None:
                continue
            try:
                changed = function(self.call, request)
            except FMClientError:
                raise
            except Exception as exc:
                raise FMClientError(f"hook {type(hook).__name__}.before_request refused the call: {exc}") from exc
            if changed is not None:
                if type(changed) is not type(request):
                    raise FMClientError(
                        f"hook {type(hook).__name__}.before_request returned a {type(changed).__name__}, "
                        f"not a {type(request).__name__}"
                    )
                request = changed
        if request is not original:
            if request.model != original.model:
                request = replace(request, model=original.model)  # the target decides the model
            if check is not None:
                check(request)
        return request

    def refuse(self, error: FMClientError) -> None:
        """``before_request`` refused: the call ends with that error."""
        self.end(None, error)

    # -- attempts ------------------------------------------------------------------------------------
    def _start(
        self,
        provider: str,
        model: str,
        request: Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest,
    ) -> AttemptInfo:
        key = (provider, model)
        if key != self._target_key:
            self._target_key = key
            self._target_index += 1
            self._number = 0
        self._number += 1
        attempt = AttemptInfo(
            self.call,
            provider,
            self._settings(provider),
            model,
            request,
            self._number,
            self._target_index,
            time.perf_counter(),
        )
        if self._endpoint is not None:
            attempt.endpoint = self._endpoint(provider)
        attempt.rate_limit_wait = current_wait()
        self.call.attempts.append(attempt)
        self._current = attempt
        self._each("on_attempt_start", attempt)
        return attempt

    def _failed(self, attempt: AttemptInfo, error: BaseException) -> None:
        attempt.ended = time.perf_counter()
        if isinstance(error, FMClientError):
            attempt.error = error
            self._each("on_error", attempt, error)
        else:  # cancelled, interrupted: the client's loop never sees it, so the call ends here
            self.end(None, error)

    def attempt(
        self,
        provider: str,
        model: str,
        request: Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest,
        fn: Callable[[], T],
    ) -> T:
        """Run one attempt that ends when ``fn`` returns (a whole answer)."""
        return self._run(self._start(provider, model, request), fn, self._whole_answer)

    async def aattempt(
        self,
        provider: str,
        model: str,
        request: Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest,
        fn: Callable[[], Awaitable[T]],
    ) -> T:
        return await self._arun(self._start(provider, model, request), fn, self._whole_answer)

    def open_stream(self, provider: str, model: str, request: Request, fn: Callable[[], T]) -> T:
        """Run the opening of a stream (request and first chunk); the attempt stays open."""
        return self._run(self._start(provider, model, request), fn, self._first_chunk)

    async def aopen_stream(self, provider: str, model: str, request: Request, fn: Callable[[], Awaitable[T]]) -> T:
        return await self._arun(self._start(provider, model, request), fn, self._first_chunk)

    def _run(self, attempt: AttemptInfo, fn: Callable[[], T], then: Callable[[AttemptInfo, Any], None]) -> T:
        try:
            result = fn()
        except BaseException as error:
            self._sent(attempt)
            self._failed(attempt, error)
            raise
        self._sent(attempt)
        then(attempt, result)
        return result

    async def _arun(
        self, attempt: AttemptInfo, fn: Callable[[], Awaitable[T]], then: Callable[[AttemptInfo, Any], None]
    ) -> T:
        try:
            result = await fn()
        except BaseException as error:
            self._sent(attempt)
            self._failed(attempt, error)
            raise
        self._sent(attempt)
        then(attempt, result)
        return result

    def _sent(self, attempt: AttemptInfo) -> None:
        if attempt.endpoint is None and self._endpoint is not None:
            # The adapter built its SDK client for this request: now it knows where it went.
            attempt.endpoint = self._endpoint(attempt.provider)
        self._each("on_attempt_sent", attempt)

    def _whole_answer(self, attempt: AttemptInfo, result: Any) -> None:
        self.answered(result)

    def _first_chunk(self, attempt: AttemptInfo, opened: Any) -> None:
        first = opened.first
        if first is not None:
            attempt.first_chunk_at = time.perf_counter()
            self._each("on_first_chunk", attempt, first)

    def answered(self, result: Completion | Embeddings | Images | Transcription | Speech) -> None:
        """The current attempt produced its whole answer (for a stream: the assembled one)."""
        attempt = self._current
        if attempt is None or attempt.result is not None:
            return
        attempt.ended = attempt.ended or time.perf_counter()
        attempt.result = result
        self._each("on_response", attempt, result)

    def broke_off(self, error: FMClientError) -> None:
        """A stream failed after its first chunk."""
        attempt = self._current
        if attempt is not None and attempt.error is None:
            self._failed(attempt, error)

    def retry(self, error: FMClientError, wait: float) -> None:
        attempt = self._current
        if attempt is not None:
            attempt.retry_wait = wait
            self._each("on_retry", attempt, wait)

    def fallback(self, error: FMClientError) -> None:
        """The target failed (or was skipped) and the next one will be tried."""
        attempt = self._current
        if attempt is not None and attempt.error is not error:
            attempt = None  # skipped before any request (circuit open, capabilities)
        self._each("on_fallback", attempt, error)

    def end(
        self, result: Completion | Embeddings | Images | Transcription | Speech | None, error: BaseException | None
    ) -> None:
        """The call is over; runs ``on_call_end`` once, whatever calls it first."""
        call = self.call
        if call.ended is not None:
            return
        call.ended = time.perf_counter()
        call.result = result
        call.error = error
        self._each("on_call_end", call, result, error)
