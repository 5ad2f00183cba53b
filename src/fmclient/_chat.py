"""Chat: complete, stream and count tokens, over the call engine (fmclient._engine).

Each function takes the :class:`~fmclient._engine.Engine` and the call's arguments as
:class:`fmclient.Client` received them (``params``: complete()'s keyword arguments that shape the
request: system, max_tokens, temperature, ...). Retries, fallbacks, hooks, the response cache and
the budget come from the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fmclient import _validation
from fmclient._engine import (
    Call,
    OpenedStream,
    Route,
    aguard,
    anext_or_none,
    guard,
    with_timeout,
)
from fmclient._stream import AsyncStream, Stream, StreamAssembler
from fmclient.errors import ContextWindowExceededError, FMClientError, StructuredOutputError
from fmclient.retry import Deadline, acall_with_retries, call_with_retries
from fmclient.types import Chunk, Completion, Cost, Message, Request, TokenCount, Usage

if TYPE_CHECKING:
    from fmclient._engine import Engine

__all__ = [
    "acomplete",
    "acomplete_reasking",
    "acount_tokens",
    "astream",
    "complete",
    "complete_reasking",
    "count_tokens",
    "stream",
]


def complete(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Completion:
    call = engine.chat_call(prompt, model, fallbacks, max_retries, timeout, provider_options, False, **params)
    if call.cached is not None:
        return call.hit()
    return engine.walk(call, "complete", call.finish)


async def acomplete(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Completion:
    call = engine.chat_call(
        prompt, model, fallbacks, max_retries, timeout, provider_options, False, look_up=False, **params
    )
    await call.alook_up()
    if call.cached is not None:
        return call.hit()
    return await call.aend(await engine.awalk(call, "acomplete", call.answered))


# -- structured output that re-asks ---------------------------------------------------------------
#: What a re-ask says after the reply that did not validate.
REASK = "Your reply did not match the required format: {problem}\nReply again with only the JSON, nothing else."


def _check_output_retries(value: Any, params: Mapping[str, Any]) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"output_retries must be an int >= 0, got {value!r}")
    if value and params.get("response_format") is None:
        raise ValueError("output_retries needs a response_format to check replies against")
    return value


def _reask(messages: list[Message], failed: Completion, error: StructuredOutputError) -> list[Message]:
    """The prompt again, then only the last failed answer and what was wrong with it: the
    context stays the same size however many times the model is asked again."""
    return [*messages, failed.message, Message(role="user", content=REASK.format(problem=error.message))]


def _summed(answers: list[Completion]) -> tuple[Usage, Cost | None, str | None]:
    usage = answers[0].usage  # not Usage(): a service tier every attempt shares is kept
    cost: Cost | None = None
    reason: str | None = None
    for index, answer in enumerate(answers):
        if index:
            usage = usage + answer.usage
        if reason is None:
            if answer.cost is None:
                cost, reason = None, answer.cost_reason
            else:
                cost = answer.cost if cost is None else cost + answer.cost
    return usage, cost, reason


def _outcome(answers: list[Completion], error: StructuredOutputError | None) -> Completion:
    """The last answer, with usage and cost over every attempt; or the error carrying them."""
    usage, cost, reason = _summed(answers)
    if error is not None:
        error.completions, error.usage, error.cost = answers, usage, cost
        raise error
    answer = answers[-1]
    answer.usage = usage
    answer._priced = (cost, reason)
    return answer


def complete_reasking(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
    output_retries: int,
) -> Completion:
    """:func:`complete`, asking again (up to ``output_retries`` times) while the reply does not
    validate against ``response_format``; the deadline covers every attempt."""
    retries = _check_output_retries(output_retries, params)
    messages = _validation.messages_from_prompt(prompt)
    deadline = Deadline(_validation.check_timeout(timeout)) if timeout is not None else None
    answers: list[Completion] = []
    asked: Any = prompt
    for attempt in range(retries + 1):
        left = timeout if deadline is None else deadline.check()
        try:
            answers.append(complete(engine, asked, model, fallbacks, max_retries, left, provider_options, params))
        except StructuredOutputError as error:
            failed = error.completion
            if failed is None:
                raise
            answers.append(failed)
            if attempt == retries:
                return _outcome(answers, error)
            asked = _reask(messages, failed, error)
            continue
        return _outcome(answers, None)
    raise AssertionError("unreachable")


async def acomplete_reasking(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
    output_retries: int,
) -> Completion:
    """The async twin of :func:`complete_reasking`."""
    retries = _check_output_retries(output_retries, params)
    messages = _validation.messages_from_prompt(prompt)
    deadline = Deadline(_validation.check_timeout(timeout)) if timeout is not None else None
    answers: list[Completion] = []
    asked: Any = prompt
    for attempt in range(retries + 1):
        left = timeout if deadline is None else deadline.check()
        try:
            answers.append(
                await acomplete(engine, asked, model, fallbacks, max_retries, left, provider_options, params)
            )
        except StructuredOutputError as error:
            failed = error.completion
            if failed is None:
                raise
            answers.append(failed)
            if attempt == retries:
                return _outcome(answers, error)
            asked = _reask(messages, failed, error)
            continue
        return _outcome(answers, None)
    raise AssertionError("unreachable")


def stream(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Stream:
    call = engine.chat_call(prompt, model, fallbacks, max_retries, timeout, provider_options, True, **params)

    def chunks(stream: Stream) -> Iterator[Chunk]:
        if call.cached is not None:
            yield from call.replay(stream)
            return
        for route, prepared in call.plan():

            def open_stream(
                left: float | None, route: Route = route, prepared: Request = prepared
            ) -> OpenedStream[Iterator[Chunk]]:
                sent = with_timeout(prepared, left)

                def opened() -> OpenedStream[Iterator[Chunk]]:
                    iterator = guard(route.provider.stream, sent, route=route)
                    return OpenedStream(iterator, guard(next, iterator, None, route=route))

                if call.observer is None:
                    return opened()
                return call.observer.open_stream(route.target.provider, route.target.model, sent, opened)

            try:
                stream_opened = call_with_retries(
                    engine.limited(route, open_stream, prepared, call.deadline, call.reservation),
                    route.policy,
                    call.deadline,
                    **call.where(route),
                )
            except FMClientError as error:
                call.failed(route, error)
                continue
            except BaseException as error:  # cancelled, interrupted or closed early: hand back a breaker trial
                call.interrupted(error)
                raise
            iterator = stream_opened.iterator
            assembler = stream._assembler = StreamAssembler(
                route.target.provider, prepared.model, audio_format=(prepared.audio or {}).get("format")
            )
            try:
                chunk = stream_opened.first
                while chunk is not None:
                    assembler.add(chunk)
                    # The deadline covers the whole stream: a reply that keeps trickling in
                    # never trips the per-read timeout, so each chunk is checked.
                    call.deadline.check(**route.where)
                    yield chunk
                    chunk = guard(next, iterator, None, route=route)
            except FMClientError as error:
                call.broke_off(route, error, assembler.text)
                raise
            except BaseException as error:  # cancelled, interrupted or closed early: hand back a breaker trial
                call.interrupted(error)
                raise
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            assembled = assembler.completion()
            stream_opened.settle_usage(assembled.usage.total_tokens)  # what it used, whatever follows
            stream._completion = call.finish(route, assembled)
            return

    return Stream(chunks)


def astream(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> AsyncStream:
    deferred = engine.cache is not None and engine.cache.blocking
    call: Call = engine.chat_call(
        prompt, model, fallbacks, max_retries, timeout, provider_options, True, look_up=not deferred, **params
    )

    async def chunks(stream: AsyncStream) -> AsyncIterator[Chunk]:
        if deferred:
            await call.alook_up()
        if call.cached is not None:
            for replayed in call.replay(stream):
                yield replayed
            return
        await engine.aprepare_breaker(call.routes[0])
        for route, prepared in call.plan():

            async def open_stream(
                left: float | None, route: Route = route, prepared: Request = prepared
            ) -> OpenedStream[AsyncIterator[Chunk]]:
                sent = with_timeout(prepared, left)

                async def opened() -> OpenedStream[AsyncIterator[Chunk]]:
                    iterator = route.provider.astream(sent)
                    return OpenedStream(iterator, await aguard(anext_or_none(iterator), route))

                if call.observer is None:
                    return await opened()
                return await call.observer.aopen_stream(route.target.provider, route.target.model, sent, opened)

            try:
                stream_opened = await acall_with_retries(
                    engine.alimited(route, open_stream, prepared, call.deadline, call.reservation),
                    route.policy,
                    call.deadline,
                    **call.where(route),
                )
            except FMClientError as error:
                call.failed(route, error)
                continue
            except BaseException as error:  # cancelled, interrupted or closed early: hand back a breaker trial
                call.interrupted(error)
                raise
            iterator = stream_opened.iterator
            assembler = stream._assembler = StreamAssembler(
                route.target.provider, prepared.model, audio_format=(prepared.audio or {}).get("format")
            )
            try:
                chunk = stream_opened.first
                while chunk is not None:
                    assembler.add(chunk)
                    call.deadline.check(**route.where)  # the whole stream, as in stream()
                    yield chunk
                    chunk = await aguard(anext_or_none(iterator), route)
            except FMClientError as error:
                call.broke_off(route, error, assembler.text)
                raise
            except BaseException as error:  # cancelled, interrupted or closed early: hand back a breaker trial
                call.interrupted(error)
                raise
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            assembled = assembler.completion()
            stream_opened.settle_usage(assembled.usage.total_tokens)  # what it used, whatever follows
            stream._completion = await call.aend(call.answered(route, assembled))
            return

    return AsyncStream(chunks)


# -- count tokens ----------------------------------------------------------------------------------
def _count_call(
    engine: Engine,
    prompt: Any,
    model: str | None,
    system: str | None,
    tools: Sequence[Any] | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
) -> tuple[Route, Request, Deadline]:
    request = _validation.build_request(prompt, system=system, tools=tools, provider_options=provider_options)
    route = engine.route(model or engine.settings.default_model, None)
    return route, engine.prepare(route, request, streaming=False), engine.deadline(timeout, route)


def _checked_count(route: Route, counted: TokenCount, check: bool) -> TokenCount:
    window = route.capabilities.context_window
    if check and window is not None and counted.input_tokens > window:
        raise ContextWindowExceededError(
            f"the prompt has {counted.input_tokens} tokens ({counted.method}); the model's context window is {window}",
            provider=route.target.provider,
            model=route.target.model,
        )
    return counted


def count_tokens(
    engine: Engine,
    prompt: Any,
    model: str | None,
    system: str | None,
    tools: Sequence[Any] | None,
    check: bool,
    timeout: float | None,
    provider_options: Mapping[str, Any],
) -> TokenCount:
    route, request, deadline = _count_call(engine, prompt, model, system, tools, timeout, provider_options)

    def attempt(left: float | None) -> TokenCount:
        return guard(route.provider.count_tokens, with_timeout(request, left), route=route)

    return _checked_count(route, call_with_retries(attempt, route.policy, deadline, **route.where), check)


async def acount_tokens(
    engine: Engine,
    prompt: Any,
    model: str | None,
    system: str | None,
    tools: Sequence[Any] | None,
    check: bool,
    timeout: float | None,
    provider_options: Mapping[str, Any],
) -> TokenCount:
    route, request, deadline = _count_call(engine, prompt, model, system, tools, timeout, provider_options)

    async def attempt(left: float | None) -> TokenCount:
        return await aguard(route.provider.acount_tokens(with_timeout(request, left)), route)

    counted = await acall_with_retries(attempt, route.policy, deadline, **route.where)
    return _checked_count(route, counted, check)
