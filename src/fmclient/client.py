"""The user API: one Client with sync and async twins, whatever provider answers.

The path of one call: validate input into a Request, resolve the model name to targets
(primary + fallbacks), then for each target check capabilities and readiness, and run the
adapter under the retry layer within one deadline. The client knows nothing of any SDK.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fmclient import _validation
from fmclient._fan_out import afan_out, fan_out
from fmclient._stream import AsyncStream, Stream, StreamAssembler
from fmclient.budget import budget_from_settings
from fmclient.cache import ResponseCache, cache_from_settings
from fmclient.circuit import CircuitBreaker, CircuitOpenError, breaker_from_settings
from fmclient.config import Settings, Target, load_settings
from fmclient.errors import ConfigurationError, ContextWindowExceededError, FMClientError, UnsupportedFeatureError
from fmclient.hooks import CallObserver, Hook, LoggingHook
from fmclient.limits import PendingUsage, RateLimit, RateLimiter, alimit_attempt, limit_attempt
from fmclient.pricing import PriceRef
from fmclient.providers import Provider, adapter_class
from fmclient.providers.base import Capabilities, EmbedBatching
from fmclient.retry import Deadline, RetryPolicy, acall_with_retries, call_with_retries
from fmclient.types import Chunk, Completion, Embeddings, EmbedRequest, ImageRequest, Images, Request, TokenCount

if TYPE_CHECKING:
    import os
    from decimal import Decimal

    from fmclient.batch import BatchResult
    from fmclient.provider_batch import BatchJob
    from fmclient.testing.mock import MockProvider

__all__ = ["Attempt", "Client"]

T = TypeVar("T")
R = TypeVar("R", Completion, Embeddings, Images)
#: what a whole-answer call returns (the fallback walk of complete and generate_image)
A = TypeVar("A", Completion, Images)
Q = TypeVar("Q", Request, ImageRequest)
It = TypeVar("It")


class _OpenedStream(PendingUsage, Generic[It]):
    """A stream whose request was answered: its chunk iterator and first chunk (None: it was empty).

    The rate limits read the first chunk's rate-limit headers when the stream opens and correct
    the token charge from its usage when it ends (see :class:`fmclient.limits.PendingUsage`).
    """

    __slots__ = ("first", "iterator")

    def __init__(self, iterator: It, first: Chunk | None) -> None:
        super().__init__(first.rate_limit_headers if first is not None else None)
        self.iterator = iterator
        self.first = first


# Providers that answer every model instead of the configured ones (fmclient.testing's mock).
# A plain list, not a contextvar, so threads an app starts see the override too.
_overrides: list[MockProvider] = []


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model tried during a call: who, and the error it ended with (None if it answered)."""

    provider: str
    model: str
    error: FMClientError | None = None
    #: True when the request was never sent to it: it could not take it (a feature it lacks, its key
    #: or extra missing) or its circuit was open.
    skipped: bool = False


class _Route:
    """Everything about one target that does not change between calls, resolved once.

    (A plain class: a dataclass would cost more at import than it saves in code.)
    """

    __slots__ = ("buckets", "capabilities", "policy", "provider", "ready", "target", "timeout", "where")

    def __init__(
        self,
        target: Target,
        provider: Provider,
        capabilities: Capabilities,
        policy: RetryPolicy,
        timeout: float | None,
    ) -> None:
        self.target = target
        self.provider = provider
        self.capabilities = capabilities
        self.policy = policy
        self.timeout = timeout
        # The keywords every retry-layer call takes, built once.
        self.where: dict[str, Any] = {"provider": target.provider, "model": target.model}
        self.ready = False
        self.buckets: list[Any] = []  # the client-side rate limits this target is under

    def ensure_ready(self, model: str) -> None:
        """Ask the adapter once whether it can call (extra installed, key found); remember a yes.

        Readiness is set-up state: the first call pays for it, later calls on this route do not.
        """
        if not self.ready:
            self.provider.check_ready(model)
            from fmclient.deprecations import warn_once  # set-up work, not on `import fmclient`

            # A model its SDK lists as retiring: one warning per process, looked up here, once.
            warn_once(self.provider.settings.type, self.target.provider, model)
            self.ready = True


class Client:
    """A client for every configured provider. Build one and reuse it: SDK clients inside are
    built once per provider and keep their connection pools.

    Arguments override environment variables, which override the config file, which overrides
    built-in defaults. ``providers`` and ``aliases`` take the same shape as the config file's
    ``[providers.<name>]`` and ``[aliases]`` tables.

    ``max_cost`` (USD, or the config's ``[budget]`` table) caps what this client may spend: see
    :mod:`fmclient.budget`. It needs ``fmclient[cost]``.

    ``cache`` (or the config's ``[cache]`` table) answers identical requests from a response cache:
    ``True`` for in-memory, a table's keys, or a :class:`~fmclient.cache.ResponseCache`. Off by
    default; see :mod:`fmclient.cache`.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        embedding_model: str | None = None,
        image_model: str | None = None,
        config_path: str | None = None,
        providers: Mapping[str, Mapping[str, Any]] | None = None,
        aliases: Mapping[str, str] | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        max_retry_wait: float | None = None,
        env: Mapping[str, str] | None = None,
        max_cost: float | str | Decimal | None = None,
        hooks: Sequence[Hook] | None = None,
        telemetry: bool = False,
        cache: bool | Mapping[str, Any] | ResponseCache | None = None,
        rate_limits: Mapping[str, Mapping[str, int] | RateLimit] | None = None,
    ) -> None:
        overrides: dict[str, Any] = {
            "default_model": model,
            "default_embedding_model": embedding_model,
            "default_image_model": image_model,
            "max_retries": _validation.check_max_retries(max_retries),
            "timeout": _validation.check_timeout(timeout),
            "max_retry_wait": max_retry_wait,
        }
        # Passed through as given: the config layer checks their shape like a config file's.
        for key, value in (
            ("providers", providers),
            ("aliases", aliases),
            ("fallbacks", fallbacks),
            ("rate_limits", rate_limits),
        ):
            if value is not None:
                overrides[key] = value
        if max_cost is not None:
            overrides["budget"] = {"max_cost": max_cost}
        if cache is not None and not isinstance(cache, ResponseCache):
            overrides["cache"] = ({"backend": "memory"} if cache else {}) if isinstance(cache, bool) else cache
        self.settings: Settings = load_settings(env=env, config_path=config_path, overrides=overrides)
        self._providers: dict[str, Provider] = {}
        self._routes: dict[tuple[str, int | None], _Route] = {}
        self._lock = threading.Lock()
        self._breaker_config = breaker_from_settings(self.settings.circuit_breaker)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._budget = budget_from_settings(self.settings.budget)
        self._price_refs: dict[str, PriceRef] = {}
        self._hooks: list[Hook] = list(hooks or ())
        if telemetry:
            # Imported only when asked for: opentelemetry-api is the [otel] extra.
            from fmclient.telemetry import OpenTelemetryHook

            self._hooks.append(OpenTelemetryHook())
        import logging

        self._log = logging.getLogger("fmclient")
        self._logging_hook = LoggingHook()
        self.cache = cache if isinstance(cache, ResponseCache) else cache_from_settings(self.settings.cache)
        self._owns_cache = not isinstance(cache, ResponseCache)  # one passed in is the caller's to close
        self._limiter = RateLimiter(self.settings.rate_limits)

    @property
    def spent(self) -> Decimal | None:
        """USD spent by this client's calls so far (known costs only), or None without a budget."""
        return None if self._budget is None else self._budget.spent

    @property
    def max_cost(self) -> Decimal | None:
        return None if self._budget is None else self._budget.max_cost

    def _check_budget(self, route: _Route) -> None:
        if self._budget is not None:
            self._budget.check(route.target.provider, route.target.model)

    def _priced(self, route: _Route, result: R) -> R:
        """Tell a result how to price itself (lazily, on first read); charge it to the budget."""
        target = route.target
        ref = self._price_refs.get(target.provider)
        if ref is None:
            settings = self.settings.provider_settings(target.provider)
            ref = self._price_refs[target.provider] = PriceRef(
                settings.type, settings.base_url, self.settings.prices.get(target.provider)
            )
        # The id that answered first (dated, or a router's choice), then the one asked for; the
        # mock answers as "provider/model", so only the target's id means anything there.
        models = (target.model,) if _overrides else (result.model, target.model)
        result._pricing = (ref, models, time.time())
        if self._budget is not None:
            self._budget.charge(result, target.provider, target.model)
        return result

    def add_hook(self, hook: Hook) -> None:
        """Register a hook for every later call (see :mod:`fmclient.hooks`)."""
        self._hooks = [*self._hooks, hook]

    def _observer(
        self,
        operation: str,
        request: Request | EmbedRequest | ImageRequest,
        streaming: bool,
        target: Target | None = None,
        cache_hit: bool = False,
    ) -> CallObserver | None:
        """The call's observer, or None on the fast path: no hook, and the log would drop records."""
        hooks = self._hooks
        if self._log.isEnabledFor(20):  # logging.INFO
            hooks = [*hooks, self._logging_hook]
        elif not hooks:
            return None
        provider, model = ("", "") if target is None else (target.provider, target.model)
        return CallObserver(
            hooks, self.settings.provider_settings, operation, request, streaming, provider, model, cache_hit
        )

    def __repr__(self) -> str:
        return f"<fmclient.Client default_model={self.settings.default_model!r}>"

    # -- set-up, cached -------------------------------------------------------------------------
    def provider(self, name: str) -> Provider:
        """The adapter instance for a named provider, built on first use."""
        found = self._providers.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._providers.get(name)
            if found is None:
                settings = self.settings.provider_settings(name)
                found = adapter_class(settings.type)(settings)
                self._providers[name] = found
        return found

    def resolve(self, model: str | None) -> Target:
        return self.settings.resolve(model or self.settings.default_model)

    def _route(self, name: str, max_retries: int | None) -> _Route:
        key = (name, max_retries)
        route = self._routes.get(key)
        if _overrides:
            # The mock answers: resolve the name (typos still fail) but build no real adapter.
            mock = _overrides[-1]
            target = route.target if route else self.settings.resolve(name)
            # By default the mock enforces what the real adapter would (mock.enforce_profiles).
            capabilities = mock.route_capabilities(target.model, self._adapter_capabilities(target))
            mocked = _Route(target, mock, capabilities, self._policy(target, max_retries), None)
            mocked.buckets = self._limiter.buckets_for(target.provider, target.model, target.requested)
            return mocked
        if route is None:
            target = self.settings.resolve(name)
            provider = self.provider(target.provider)
            route = _Route(
                target=target,
                provider=provider,
                capabilities=provider.capabilities(target.model),
                policy=self._policy(target, max_retries),
                timeout=self.settings.timeout_for(target.provider),
            )
            route.buckets = self._limiter.buckets_for(target.provider, target.model, target.requested)
            self._routes[key] = route
        return route

    def _adapter_capabilities(self, target: Target) -> Callable[[], Capabilities]:
        return lambda: self.provider(target.provider).capabilities(target.model)

    def _policy(self, target: Target, max_retries: int | None) -> RetryPolicy:
        retries = self.settings.max_retries_for(target.provider) if max_retries is None else max_retries
        return RetryPolicy(max_retries=retries, max_retry_wait=self.settings.max_retry_wait)

    def _routes_for(self, model: str | None, fallbacks: Sequence[str] | None, max_retries: int | None) -> list[_Route]:
        name = model or self.settings.default_model
        if not isinstance(name, str):
            raise TypeError(f"model must be a str, not {type(name).__name__}")
        chain = self.settings.fallbacks.get(name, ()) if fallbacks is None else tuple(fallbacks)
        # Every name is resolved now, so a typo in a fallback fails before any request.
        return [self._route(n, max_retries) for n in (name, *chain)]

    @staticmethod
    def _model_id(route: _Route) -> str:
        # The mock sees the full "provider/model" so app tests can assert where a call would go.
        target = route.target
        return f"{target.provider}/{target.model}" if _overrides else target.model

    def _peek_model_id(self, model: str | None, max_retries: Any) -> str:
        """The primary target's model id if its route is cached, else "" (never raises).

        Building the Request with it saves a copy per call; :meth:`_prepare` checks it anyway.
        """
        name = model or self.settings.default_model
        if _overrides or type(name) is not str or not (max_retries is None or type(max_retries) is int):
            return ""  # anything odd is left to the checks that name the argument at fault
        route = self._routes.get((name, max_retries))
        return "" if route is None else route.target.model

    def _prepare(self, route: _Route, request: Request, *, streaming: bool) -> Request:
        model_id = self._model_id(route)
        if request.model != model_id:
            request = replace(request, model=model_id)
        route.capabilities.check(request, provider=route.target.provider, streaming=streaming)
        route.ensure_ready(request.model)
        return request

    def breaker(self, provider: str) -> CircuitBreaker | None:
        """The provider's circuit breaker, when ``[circuit_breaker]`` is configured."""
        if self._breaker_config is None:
            return None
        found = self._breakers.get(provider)
        if found is None:
            with self._lock:
                found = self._breakers.setdefault(provider, CircuitBreaker(*self._breaker_config))
        return found

    def _may_fall_back(self, error: FMClientError) -> bool:
        if isinstance(error, CircuitOpenError):
            return True
        if type(error).__name__ in self.settings.fallback_on:
            return True
        return any(cls.__name__ in self.settings.fallback_on for cls in type(error).__mro__) or error.retryable

    def _deadline(self, timeout: float | None, first: _Route) -> Deadline:
        return Deadline(_validation.check_timeout(timeout) if timeout is not None else first.timeout)

    def _limited(
        self, route: _Route, attempt: Callable[[float | None], T], request: Any, deadline: Deadline
    ) -> Callable[[float | None], T]:
        """The attempt, behind the route's rate limits (each attempt waits for a slot)."""
        if not route.buckets:
            return attempt
        return limit_attempt(attempt, self._limiter, route.buckets, request, deadline, route.where)

    def _alimited(
        self, route: _Route, attempt: Callable[[float | None], Awaitable[T]], request: Any, deadline: Deadline
    ) -> Callable[[float | None], Awaitable[T]]:
        if not route.buckets:
            return attempt
        return alimit_attempt(attempt, self._limiter, route.buckets, request, deadline, route.where)

    # -- the fallback walk of a call that ends with one whole answer --------------------------------
    def _walk(self, call: _Call, method: str, finish: Callable[[_Route, A], A]) -> A:
        """Each target in turn, ``route.provider.<method>`` under its rate limits, retries, deadline
        and hooks, until one answers (``finish``) or none is left (``call.failed`` raises).

        One walk for complete and generate_image, so what wraps an attempt cannot drift apart.
        """
        for route, prepared in call.plan():
            attempt = _whole_attempt(call, route, prepared, getattr(route.provider, method))
            try:
                answer = call_with_retries(
                    self._limited(route, attempt, prepared, call.deadline),
                    route.policy,
                    call.deadline,
                    **call.where(route),
                )
            except FMClientError as error:
                call.failed(route, error)
                continue
            except BaseException as error:  # cancelled or interrupted: hand back a breaker trial
                call.interrupted(error)
                raise
            return finish(route, answer)
        raise AssertionError("unreachable: plan() raises when no target is left")

    async def _awalk(self, call: _Call, method: str, finish: Callable[[_Route, A], A]) -> A:
        """The async twin of :meth:`_walk` (``method`` is the adapter's coroutine method)."""
        for route, prepared in call.plan():
            attempt = _awhole_attempt(call, route, prepared, getattr(route.provider, method))
            try:
                answer = await acall_with_retries(
                    self._alimited(route, attempt, prepared, call.deadline),
                    route.policy,
                    call.deadline,
                    **call.where(route),
                )
            except FMClientError as error:
                call.failed(route, error)
                continue
            except BaseException as error:  # cancelled or interrupted: hand back a breaker trial
                call.interrupted(error)
                raise
            return finish(route, answer)
        raise AssertionError("unreachable: plan() raises when no target is left")

    # -- complete and stream ------------------------------------------------------------------
    def _call(
        self,
        prompt: Any,
        model: str | None,
        fallbacks: Sequence[str] | None,
        max_retries: int | None,
        timeout: float | None,
        provider_options: Mapping[str, Any],
        streaming: bool,
        look_up: bool = True,
        **params: Any,
    ) -> _Call:
        request = _validation.build_request(
            prompt, model=self._peek_model_id(model, max_retries), provider_options=provider_options, **params
        )
        routes = self._routes_for(model, fallbacks, _validation.check_max_retries(max_retries))
        # The primary target is checked now, so bad input or configuration fails before any
        # request (and, for a stream, before the caller starts iterating).
        first = self._prepare(routes[0], request, streaming=streaming)
        call = _Call(self, request, routes, first, self._deadline(timeout, routes[0]), streaming)
        if look_up:  # else the async caller awaits call.alook_up() (the cache may do I/O)
            call.look_up()
        return call

    def complete(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Any = None,
        reasoning: str | int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Completion:
        """Ask a model and wait for the whole answer."""
        call = self._call(
            prompt,
            model,
            fallbacks,
            max_retries,
            timeout,
            provider_options,
            False,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            reasoning=reasoning,
        )
        if call.cached is not None:
            return call.hit()
        return self._walk(call, "complete", call.finish)

    async def acomplete(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Any = None,
        reasoning: str | int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Completion:
        """The async twin of :meth:`complete`."""
        call = self._call(
            prompt,
            model,
            fallbacks,
            max_retries,
            timeout,
            provider_options,
            False,
            look_up=False,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            reasoning=reasoning,
        )
        await call.alook_up()
        if call.cached is not None:
            return call.hit()
        return await call.aend(await self._awalk(call, "acomplete", call.answered))

    def stream(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Any = None,
        reasoning: str | int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Stream:
        """Stream the answer: iterate for chunks, then read ``.completion``.

        Retries and fallbacks happen only before the first chunk reaches the caller; a failure
        after that raises a typed error whose ``partial_text`` holds what was received.
        """
        call = self._call(
            prompt,
            model,
            fallbacks,
            max_retries,
            timeout,
            provider_options,
            True,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            reasoning=reasoning,
        )

        def chunks(stream: Stream) -> Iterator[Chunk]:
            if call.cached is not None:
                yield from call.replay(stream)
                return
            for route, prepared in call.plan():

                def open_stream(
                    left: float | None, route: _Route = route, prepared: Request = prepared
                ) -> _OpenedStream[Iterator[Chunk]]:
                    sent = _with_timeout(prepared, left)

                    def opened() -> _OpenedStream[Iterator[Chunk]]:
                        iterator = _guard(route.provider.stream, sent, route=route)
                        return _OpenedStream(iterator, _guard(next, iterator, None, route=route))

                    if call.observer is None:
                        return opened()
                    return call.observer.open_stream(route.target.provider, route.target.model, sent, opened)

                try:
                    stream_opened = call_with_retries(
                        self._limited(route, open_stream, prepared, call.deadline),
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
                assembler = stream._assembler = StreamAssembler(route.target.provider, prepared.model)
                try:
                    chunk = stream_opened.first
                    while chunk is not None:
                        assembler.add(chunk)
                        # The deadline covers the whole stream: a reply that keeps trickling in
                        # never trips the per-read timeout, so each chunk is checked.
                        call.deadline.check(**route.where)
                        yield chunk
                        chunk = _guard(next, iterator, None, route=route)
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
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Any = None,
        reasoning: str | int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> AsyncStream:
        """The async twin of :meth:`stream`: ``async for chunk in client.astream(...)``.

        With a cache that does I/O (disk, Redis), the cache lookup and then the budget check
        happen when iteration starts, off the event loop; bad input still raises here.
        """
        deferred = self.cache is not None and self.cache.blocking
        call = self._call(
            prompt,
            model,
            fallbacks,
            max_retries,
            timeout,
            provider_options,
            True,
            look_up=not deferred,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            reasoning=reasoning,
        )

        async def chunks(stream: AsyncStream) -> AsyncIterator[Chunk]:
            if deferred:
                await call.alook_up()
            if call.cached is not None:
                for replayed in call.replay(stream):
                    yield replayed
                return
            for route, prepared in call.plan():

                async def open_stream(
                    left: float | None, route: _Route = route, prepared: Request = prepared
                ) -> _OpenedStream[AsyncIterator[Chunk]]:
                    sent = _with_timeout(prepared, left)

                    async def opened() -> _OpenedStream[AsyncIterator[Chunk]]:
                        iterator = route.provider.astream(sent)
                        return _OpenedStream(iterator, await _aguard(_anext_or_none(iterator), route))

                    if call.observer is None:
                        return await opened()
                    return await call.observer.aopen_stream(route.target.provider, route.target.model, sent, opened)

                try:
                    stream_opened = await acall_with_retries(
                        self._alimited(route, open_stream, prepared, call.deadline),
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
                assembler = stream._assembler = StreamAssembler(route.target.provider, prepared.model)
                try:
                    chunk = stream_opened.first
                    while chunk is not None:
                        assembler.add(chunk)
                        call.deadline.check(**route.where)  # the whole stream, as in stream()
                        yield chunk
                        chunk = await _aguard(_anext_or_none(iterator), route)
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

    # -- count tokens ------------------------------------------------------------------------------
    def _count_call(
        self,
        prompt: Any,
        model: str | None,
        system: str | None,
        tools: Sequence[Any] | None,
        timeout: float | None,
        provider_options: Mapping[str, Any],
    ) -> tuple[_Route, Request, Deadline]:
        request = _validation.build_request(prompt, system=system, tools=tools, provider_options=provider_options)
        route = self._route(model or self.settings.default_model, None)
        return route, self._prepare(route, request, streaming=False), self._deadline(timeout, route)

    @staticmethod
    def _checked_count(route: _Route, counted: TokenCount, check: bool) -> TokenCount:
        window = route.capabilities.context_window
        if check and window is not None and counted.input_tokens > window:
            raise ContextWindowExceededError(
                f"the prompt has {counted.input_tokens} tokens ({counted.method}); the model's context window "
                f"is {window}",
                provider=route.target.provider,
                model=route.target.model,
            )
        return counted

    def count_tokens(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        check: bool = False,
        timeout: float | None = None,
        **provider_options: Any,
    ) -> TokenCount:
        """Count a prompt's input tokens without generating: the provider's count API (Anthropic,
        Gemini, Bedrock), tiktoken offline (OpenAI, ``fmclient[tokens]``) or the model's own
        tokenizer (llama.cpp); elsewhere an estimate. ``TokenCount.exact`` says which.

        ``check=True`` raises :class:`ContextWindowExceededError` when the count exceeds the
        model's context window (from its profile), so a prompt that cannot fit is never sent.
        """
        route, request, deadline = self._count_call(prompt, model, system, tools, timeout, provider_options)

        def attempt(left: float | None) -> TokenCount:
            return _guard(route.provider.count_tokens, _with_timeout(request, left), route=route)

        return self._checked_count(route, call_with_retries(attempt, route.policy, deadline, **route.where), check)

    async def acount_tokens(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        check: bool = False,
        timeout: float | None = None,
        **provider_options: Any,
    ) -> TokenCount:
        """The async twin of :meth:`count_tokens`."""
        route, request, deadline = self._count_call(prompt, model, system, tools, timeout, provider_options)

        async def attempt(left: float | None) -> TokenCount:
            return await _aguard(route.provider.acount_tokens(_with_timeout(request, left)), route)

        counted = await acall_with_retries(attempt, route.policy, deadline, **route.where)
        return self._checked_count(route, counted, check)

    # -- embed -------------------------------------------------------------------------------------
    def _embed_call(
        self,
        texts: Any,
        model: str | None,
        timeout: float | None,
        max_retries: int | None,
        provider_options: Mapping[str, Any],
    ) -> tuple[_Route, EmbedRequest, Deadline]:
        request = _validation.build_embed_request(texts, provider_options=provider_options)
        route = self._route(model or self.settings.default_embedding_model, _validation.check_max_retries(max_retries))
        request = replace(request, model=self._model_id(route))
        if not route.capabilities.embeddings:
            raise UnsupportedFeatureError(
                f"model {route.target.model!r} does not make embeddings",
                provider=route.target.provider,
                model=request.model,
            )
        if request.images and not route.capabilities.image_embeddings:
            raise UnsupportedFeatureError(
                f"model {route.target.model!r} does not embed images (a multimodal embedding model such as "
                "amazon.titan-embed-image-v1 does)",
                provider=route.target.provider,
                model=request.model,
            )
        route.ensure_ready(request.model)
        try:
            self._check_budget(route)
        except FMClientError as error:  # the call started, and ends here: hooks see it
            observer = self._observer("embeddings", request, False, route.target)
            if observer is not None:
                observer.end(None, error)
            raise
        return route, request, self._deadline(timeout, route)

    def embed(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **provider_options: Any,
    ) -> Embeddings:
        """Embed texts; vectors come back in input order.

        The input goes out in the batches the provider takes, each under its own retries within
        the one deadline: a retry re-sends only the batch that failed.
        """
        route, request, deadline = self._embed_call(texts, model, timeout, max_retries, provider_options)
        observer = self._observer("embeddings", request, False, route.target)
        if observer is not None:
            request = _observed_embed_request(observer, route, request)
        batching = route.provider.embed_batching(route.target.model)
        batches = _embed_batches(request, batching)
        where = route.where if observer is None else {**route.where, "on_retry": observer.retry}

        def embed_batch(batch: EmbedRequest) -> Embeddings:
            def attempt(left: float | None) -> Embeddings:
                sent = replace(batch, timeout=left)
                if observer is None:
                    return _guard(route.provider.embed, sent, route=route)
                return observer.attempt(
                    route.target.provider,
                    route.target.model,
                    sent,
                    lambda: _guard(route.provider.embed, sent, route=route),
                )

            return call_with_retries(self._limited(route, attempt, batch, deadline), route.policy, deadline, **where)

        try:
            if len(batches) == 1:
                result = embed_batch(batches[0])
            elif batching.max_concurrency <= 1:
                result = _joined_embeddings([embed_batch(batch) for batch in batches])
            else:
                result = _joined_embeddings(fan_out(embed_batch, batches, batching.max_concurrency))
        except BaseException as error:
            if observer is not None:
                observer.end(None, error)
            raise
        result = self._priced(route, result)
        if observer is not None:
            observer.end(result, None)
        return result

    async def aembed(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **provider_options: Any,
    ) -> Embeddings:
        """The async twin of :meth:`embed`."""
        route, request, deadline = self._embed_call(texts, model, timeout, max_retries, provider_options)
        observer = self._observer("embeddings", request, False, route.target)
        if observer is not None:
            request = _observed_embed_request(observer, route, request)
        batching = route.provider.embed_batching(route.target.model)
        batches = _embed_batches(request, batching)
        where = route.where if observer is None else {**route.where, "on_retry": observer.retry}

        async def embed_batch(batch: EmbedRequest) -> Embeddings:
            async def attempt(left: float | None) -> Embeddings:
                sent = replace(batch, timeout=left)
                if observer is None:
                    return await _aguard(route.provider.aembed(sent), route)
                return await observer.aattempt(
                    route.target.provider, route.target.model, sent, lambda: _aguard(route.provider.aembed(sent), route)
                )

            return await acall_with_retries(
                self._alimited(route, attempt, batch, deadline), route.policy, deadline, **where
            )

        try:
            if len(batches) == 1:
                result = await embed_batch(batches[0])
            elif batching.max_concurrency <= 1:
                result = _joined_embeddings([await embed_batch(batch) for batch in batches])
            else:
                result = _joined_embeddings(await afan_out(embed_batch, batches, batching.max_concurrency))
        except BaseException as error:
            if observer is not None:
                observer.end(None, error)
            raise
        result = self._priced(route, result)
        if observer is not None:
            observer.end(result, None)
        return result

    # -- batch -------------------------------------------------------------------------------------
    def batch(
        self,
        inputs: Iterable[Any],
        *,
        model: str | None = None,
        concurrency: int = 8,
        output: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        redo_failed: bool = False,
        **call_args: Any,
    ) -> BatchResult:
        """Complete many prompts with bounded concurrency; resumable through ``output`` (JSONL).

        See :mod:`fmclient.batch`. ``call_args`` are :meth:`complete`'s keyword arguments.
        """
        from fmclient.batch import run_batch

        return run_batch(
            self,
            inputs,
            model=model,
            concurrency=concurrency,
            output=output,
            progress=progress,
            redo_failed=redo_failed,
            call_args=call_args,
        )

    async def abatch(
        self,
        inputs: Iterable[Any],
        *,
        model: str | None = None,
        concurrency: int = 8,
        output: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        redo_failed: bool = False,
        **call_args: Any,
    ) -> BatchResult:
        """The async twin of :meth:`batch` (asyncio tasks over :meth:`acomplete`)."""
        from fmclient.batch import arun_batch

        return await arun_batch(
            self,
            inputs,
            model=model,
            concurrency=concurrency,
            output=output,
            progress=progress,
            redo_failed=redo_failed,
            call_args=call_args,
        )

    # -- provider batch APIs ----------------------------------------------------------------------
    def submit_batch(self, inputs: Iterable[Any], *, model: str | None = None, **call_args: Any) -> BatchJob:
        """Submit prompts as one provider batch job (about half price, asynchronous): see
        :mod:`fmclient.provider_batch`. ``call_args`` are complete()'s (system, max_tokens...)."""
        from fmclient.provider_batch import submit_batch

        return submit_batch(self, inputs, model, call_args)

    def batch_job(self, job_id: str, *, model: str | None = None, response_format: Any = None) -> BatchJob:
        """Re-attach to a job submitted earlier (by any process) with the same ``model`` (and the
        same ``response_format``, so its answers are checked and parsed as complete() would)."""
        from fmclient.provider_batch import batch_job

        return batch_job(self, job_id, model, response_format)

    # -- generate images ---------------------------------------------------------------------------
    def _prepare_image(self, route: _Route, request: ImageRequest) -> ImageRequest:
        request = replace(request, model=self._model_id(route))
        route.capabilities.check_image(request, provider=route.target.provider)
        route.ensure_ready(request.model)
        return request

    def _image_call(
        self,
        prompt: Any,
        model: str | None,
        fallbacks: Sequence[str] | None,
        max_retries: int | None,
        timeout: float | None,
        provider_options: Mapping[str, Any],
        **params: Any,
    ) -> _ImageCall:
        request = _validation.build_image_request(prompt, provider_options=provider_options, **params)
        routes = self._routes_for(
            model or self.settings.default_image_model, fallbacks, _validation.check_max_retries(max_retries)
        )
        # The primary is checked now: a size or count it cannot make fails before any request.
        first = self._prepare_image(routes[0], request)
        call = _ImageCall(self, request, routes, first, self._deadline(timeout, routes[0]), False)  # type: ignore[arg-type]
        call.check_budget()
        return call

    def generate_image(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        n: int = 1,
        negative_prompt: str | None = None,
        seed: int | None = None,
        quality: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Images:
        """Generate ``n`` images from a text prompt (default model: ``default_image_model``).

        ``size`` is ``"WIDTHxHEIGHT"``, an aspect ratio (``"16:9"``, for Imagen) or ``"auto"``; a
        size, count, negative prompt, seed or quality the model cannot take is refused before
        sending. Retries, the deadline, fallbacks and circuit breakers work as for :meth:`complete`.
        """
        call = self._image_call(
            prompt,
            model,
            fallbacks,
            max_retries,
            timeout,
            provider_options,
            size=size,
            n=n,
            negative_prompt=negative_prompt,
            seed=seed,
            quality=quality,
        )
        return self._walk(call, "generate_image", call.finish_images)

    async def agenerate_image(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        n: int = 1,
        negative_prompt: str | None = None,
        seed: int | None = None,
        quality: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Images:
        """The async twin of :meth:`generate_image`."""
        call = self._image_call(
            prompt,
            model,
            fallbacks,
            max_retries,
            timeout,
            provider_options,
            size=size,
            n=n,
            negative_prompt=negative_prompt,
            seed=seed,
            quality=quality,
        )
        return await self._awalk(call, "agenerate_image", call.finish_images)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        for provider in list(self._providers.values()):
            provider.close()
        if self.cache is not None and self._owns_cache:
            self.cache.close()

    async def aclose(self) -> None:
        for provider in list(self._providers.values()):
            await provider.aclose()
        if self.cache is not None and self._owns_cache:
            self.cache.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Call:
    """One complete/stream call across its targets: the fallback walk and its record."""

    __slots__ = (
        "attempts",
        "cache_key",
        "cached",
        "client",
        "deadline",
        "first",
        "observer",
        "position",
        "request",
        "routes",
        "streaming",
        "trial",
    )

    def __init__(
        self,
        client: Client,
        request: Request,
        routes: list[_Route],
        first: Request,
        deadline: Deadline,
        streaming: bool,
    ) -> None:
        self.client = client
        self.observer: CallObserver | None = None
        self.request = request
        self.routes = routes
        self.first = first
        self.deadline = deadline
        self.streaming = streaming
        self.attempts: list[Attempt] = []
        self.position = 0  # index in routes of the target being tried
        # The breaker whose half-open trial this call holds until the trial's outcome is recorded.
        self.trial: CircuitBreaker | None = None
        self.cache_key: str | None = None
        self.cached: Completion | None = None  # the response cache's answer, when it had one

    def _keyed_cache(self) -> tuple[ResponseCache, str] | None:
        """The client's cache and this call's key in it, or None when the call bypasses the cache."""
        cache = self.client.cache
        if cache is None:
            return None
        from fmclient.cache import request_key

        self.cache_key = request_key(self.routes[0].target.provider, self.first)
        return None if self.cache_key is None else (cache, self.cache_key)

    def look_up(self) -> None:
        """Take the response cache's answer if it has one; else check the budget (a hit is free)."""
        keyed = self._keyed_cache()
        if keyed is not None:
            from fmclient.cache import lookup

            self.cached = lookup(*keyed)
        if self.cached is None:  # a hit sends nothing and costs nothing
            self.check_budget()

    async def alook_up(self) -> None:
        """The async twin of :meth:`look_up`: a cache that does I/O is read off the event loop."""
        keyed = self._keyed_cache()
        if keyed is not None:
            from fmclient.cache import alookup

            self.cached = await alookup(*keyed)
        if self.cached is None:
            self.check_budget()

    def _end(self, result: Any, error: BaseException | None) -> None:
        """End the call for its hooks, when it has any (exactly once: the observer sees to that)."""
        if self.observer is not None:
            self.observer.end(result, error)

    def check_budget(self) -> None:
        """The budget check before the primary's request; a refusal is a call that started and ended."""
        try:
            self.client._check_budget(self.routes[0])
        except FMClientError as error:
            self.observer = self._start_observer()
            self._end(None, error)
            raise

    def hit(self) -> Completion:
        """The cached answer as the call's result: for hooks, a call with no attempt."""
        self.observer = self._start_observer(cache_hit=True)
        return self._hit_ends()

    def _hit_ends(self) -> Completion:
        completion = self.cached
        assert completion is not None
        if _overrides:
            completion.provider = _overrides[-1].name
        response_format = self.request.response_format
        try:
            if response_format is not None:
                _validation.parse_structured(completion, response_format)
        except BaseException as error:
            self._end(None, error)
            raise
        self._end(completion, None)
        return completion

    def replay(self, stream: Stream | AsyncStream) -> Iterator[Chunk]:
        """The cached answer as chunks; the stream's completion is the hit itself."""
        from fmclient.cache import replay_chunks

        completion = self.cached
        assert completion is not None
        self.observer = self._start_observer(cache_hit=True)  # the call starts with the iteration
        assembler = stream._assembler = StreamAssembler(completion.provider, completion.model)
        try:
            for chunk in replay_chunks(completion):
                assembler.add(chunk)
                yield chunk
        except BaseException as error:  # closed early, cancelled or interrupted
            self._end(None, error)
            raise
        stream._completion = self._hit_ends()

    def plan(self) -> Iterator[tuple[_Route, Request]]:
        """Each target in turn, ready to send; a target that cannot take the request is skipped."""
        # The call starts here (for a stream: when the caller starts iterating), hooks with it.
        self.observer = self._start_observer()
        for index, route in enumerate(self.routes):
            self.position = index
            breaker = self.client.breaker(route.target.provider)
            if breaker is not None:
                admitted = breaker.admit()
                if admitted is None:
                    self.failed(
                        route,
                        CircuitOpenError(
                            "circuit open: the provider failed repeatedly",
                            provider=route.target.provider,
                            model=route.target.model,
                        ),
                    )
                    continue
                if admitted == "trial":
                    self.trial = breaker
            try:
                prepared = self.first if index == 0 else self._prepare_for(route)
            except FMClientError as error:
                self.failed(route, error)
                continue
            except BaseException:
                self.abandon()  # interrupted while preparing (an SDK import, say)
                raise
            if index:
                # A fallback is a new request: another call may have spent the budget meanwhile.
                try:
                    self.client._check_budget(route)
                except FMClientError as error:
                    self.abandon()  # the trial this target was admitted for never ran
                    error.attempts = self.attempts
                    self._end(None, error)
                    raise
            if self.observer is not None:
                prepared = self._before_request(route, prepared)
            yield route, prepared

    def _start_observer(self, cache_hit: bool = False) -> CallObserver | None:
        return self.client._observer("chat", self.first, self.streaming, self.routes[0].target, cache_hit)

    def _prepare_for(self, route: _Route) -> Any:
        """The request as a fallback target takes it (its model id), checked against its profile."""
        return self.client._prepare(route, self.request, streaming=self.streaming)

    def where(self, route: _Route) -> dict[str, Any]:
        """The retry layer's keywords; with an observer, retries are reported to it."""
        if self.observer is None:
            return route.where
        return {**route.where, "on_retry": self.observer.retry}

    def _before_request(self, route: _Route, prepared: Request) -> Request:
        assert self.observer is not None

        def check(changed: Request) -> None:
            route.capabilities.check(changed, provider=route.target.provider, streaming=self.streaming)

        try:
            return self.observer.before_request(prepared, check)
        except FMClientError as error:  # refused by a hook: no request, no fallback
            error.attempts = self.attempts
            self.observer.refuse(error)
            raise

    def _record(self, route: _Route, error: FMClientError | None) -> None:
        self.trial = None  # whatever is recorded below ends a trial this call held
        breaker = self.client.breaker(route.target.provider)
        if breaker is None or isinstance(error, CircuitOpenError):
            return
        if error is None:
            breaker.record_success()
        elif error.retryable:
            breaker.record_failure()  # the provider's fault: counts towards opening
        else:
            breaker.release()  # the caller's fault says nothing of the provider's health

    def abandon(self) -> None:
        """The call ended with no outcome to record (cancelled, interrupted, a stream closed early).

        A half-open trial it held is handed back, so the breaker lets the next call be the trial
        instead of staying open for good.
        """
        trial, self.trial = self.trial, None
        if trial is not None:
            trial.release()

    def failed(self, route: _Route, error: FMClientError) -> None:
        """Record a target's failure; raise when no other target may answer instead."""
        self._record(route, error)
        skipped = isinstance(error, CircuitOpenError) or self._cannot_take(error)
        self.attempts.append(Attempt(route.target.provider, route.target.model, error, skipped))
        last = self.position == len(self.routes) - 1
        if not last and (skipped or self.client._may_fall_back(error)):
            if self.observer is not None:
                self.observer.fallback(error)
            return
        # A target the request never reached must not hide the failure of one it did reach (the
        # primary's 429 behind a fallback without a key): raise the last error from a target that
        # was tried, the primary's if none was. Every target's own error is in ``attempts``.
        tried = [a.error for a in self.attempts if not a.skipped]
        final = (tried[-1] if tried else self.attempts[0].error) or error
        final.attempts = self.attempts
        self._end(None, final)
        raise final

    def _cannot_take(self, error: FMClientError) -> bool:
        """A fallback that cannot take this request (a feature it lacks, its key or extra missing)
        was never sent to: skip it. The primary's own such error is the caller's to fix."""
        return self.position > 0 and isinstance(error, (UnsupportedFeatureError, ConfigurationError))

    def broke_off(self, route: _Route, error: FMClientError, text: str) -> None:
        """A stream failed after reaching the caller: no retry, no fallback, keep what came."""
        self._record(route, error)
        self.attempts.append(Attempt(route.target.provider, route.target.model, error))
        error.partial_text = text
        error.attempts = self.attempts
        if self.observer is not None:
            self.observer.broke_off(error)
            self.observer.end(None, error)

    def abandoned(self, stopped: BaseException) -> None:
        """The caller closed a stream before its end (or the call was cancelled or interrupted)."""
        self.abandon()
        self._end(None, stopped)

    interrupted = abandoned  # cancelled or interrupted (KeyboardInterrupt) between attempts

    def finish(self, route: _Route, completion: Completion) -> Completion:
        self.answered(route, completion)
        keyed = self._store_in()
        if keyed is not None:
            from fmclient.cache import store

            store(*keyed, completion)
        self._end(completion, None)
        return completion

    async def aend(self, completion: Completion) -> Completion:
        """What :meth:`finish` does after :meth:`answered`, for async calls: the answer is stored
        off the event loop, then the call ends."""
        keyed = self._store_in()
        if keyed is not None:
            from fmclient.cache import astore

            try:
                await astore(*keyed, completion)
            except BaseException as error:  # cancelled while storing: the call ends with that
                self._end(None, error)
                raise
        self._end(completion, None)
        return completion

    def _store_in(self) -> tuple[ResponseCache, str] | None:
        # Only the primary's answer is stored under the primary's key (see fmclient.cache).
        cache = self.client.cache
        if cache is None or self.cache_key is None or self.position != 0:
            return None
        return cache, self.cache_key

    def answered(self, route: _Route, completion: Completion) -> Completion:
        """Record a target's whole answer: its outcome, its cost, its structured output checked."""
        self._record(route, None)
        self.attempts.append(Attempt(route.target.provider, route.target.model))
        completion.attempts = self.attempts
        if _overrides:
            completion.provider = _overrides[-1].name
        # Charged before the answer is checked: a reply that fails validation was still billed.
        self.client._priced(route, completion)
        response_format = self.request.response_format
        observer = self.observer
        if observer is not None:
            observer.answered(completion)
        try:
            if response_format is not None and completion.parsed is None:
                _validation.parse_structured(completion, response_format)
        except BaseException as error:
            if observer is not None:
                observer.end(None, error)
            raise
        return completion


class _ImageCall(_Call):
    """A generate_image call: the same fallback walk, circuit breakers and budget checks as
    :class:`_Call`, over :class:`ImageRequest` (no response cache, no structured output)."""

    request: ImageRequest  # type: ignore[assignment]
    first: ImageRequest  # type: ignore[assignment]

    def _start_observer(self, cache_hit: bool = False) -> CallObserver | None:
        # "generate_content": the GenAI semantic conventions' operation for multimodal output.
        return self.client._observer("generate_content", self.first, False, self.routes[0].target)

    def _before_request(self, route: _Route, prepared: Any) -> Any:
        assert self.observer is not None

        def check(changed: ImageRequest) -> None:
            route.capabilities.check_image(changed, provider=route.target.provider)

        try:
            return self.observer.before_request(prepared, check)
        except FMClientError as error:  # refused by a hook: no request, no fallback
            error.attempts = self.attempts
            self.observer.refuse(error)
            raise

    def _prepare_for(self, route: _Route) -> ImageRequest:
        return self.client._prepare_image(route, self.request)

    def finish_images(self, route: _Route, images: Images) -> Images:
        self._record(route, None)
        self.attempts.append(Attempt(route.target.provider, route.target.model))
        images.attempts = self.attempts
        if _overrides:
            images.provider = _overrides[-1].name
        self.client._priced(route, images)
        self._end(images, None)
        return images


def _embed_batches(request: EmbedRequest, batching: EmbedBatching) -> list[EmbedRequest]:
    size = batching.max_texts
    texts = request.texts
    if size is None or len(texts) <= size:
        return [request]
    images = request.images
    return [
        replace(request, texts=texts[start : start + size], images=images[start : start + size] if images else ())
        for start in range(0, len(texts), size)
    ]


def _joined_embeddings(parts: Sequence[Embeddings]) -> Embeddings:
    """The batches' vectors in input order; usage summed, each text counted once."""
    usage = parts[0].usage
    for part in parts[1:]:
        usage = usage + part.usage
    return Embeddings(
        vectors=[vector for part in parts for vector in part.vectors],
        usage=usage,
        model=parts[0].model,
        provider=parts[0].provider,
        raw=[part.raw for part in parts],
    )


def _observed_embed_request(observer: CallObserver, route: _Route, request: EmbedRequest) -> EmbedRequest:
    try:
        return observer.before_request(request)
    except FMClientError as error:
        observer.refuse(error)
        raise


def _whole_attempt(call: _Call, route: _Route, prepared: Any, send: Callable[[Any], A]) -> Callable[[float | None], A]:
    """One retry-layer attempt of a whole-answer call: the request with the time left, through
    the call's hooks when it has any."""

    def attempt(left: float | None) -> A:
        sent = _with_timeout(prepared, left)
        if call.observer is None:
            return _guard(send, sent, route=route)
        return call.observer.attempt(
            route.target.provider, route.target.model, sent, lambda: _guard(send, sent, route=route)
        )

    return attempt


def _awhole_attempt(
    call: _Call, route: _Route, prepared: Any, send: Callable[[Any], Awaitable[A]]
) -> Callable[[float | None], Awaitable[A]]:
    """The async twin of :func:`_whole_attempt`."""

    async def attempt(left: float | None) -> A:
        sent = _with_timeout(prepared, left)
        if call.observer is None:
            return await _aguard(send(sent), route)
        return await call.observer.aattempt(
            route.target.provider, route.target.model, sent, lambda: _aguard(send(sent), route)
        )

    return attempt


def _with_timeout(request: Q, left: float | None) -> Q:
    return request if left is None else replace(request, timeout=left)


def _unexpected(exc: Exception, route: _Route) -> FMClientError:
    # An adapter bug must still surface as an fmclient error: callers catch one hierarchy.
    return FMClientError(
        f"unexpected {type(exc).__name__} from the {route.target.provider} adapter: {exc}",
        provider=route.target.provider,
        model=route.target.model,
    )


def _guard(fn: Callable[..., T], *args: Any, route: _Route) -> T:
    try:
        return fn(*args)
    except FMClientError:
        raise
    except Exception as exc:
        raise _unexpected(exc, route) from exc


async def _aguard(awaitable: Awaitable[T], route: _Route) -> T:
    try:
        return await awaitable
    except FMClientError:
        raise
    except Exception as exc:
        raise _unexpected(exc, route) from exc


async def _anext_or_none(iterator: AsyncIterator[Chunk]) -> Chunk | None:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None
