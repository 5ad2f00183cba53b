"""The call engine: routes, the fallback walk, and the record of one call.

What every capability (chat, embeddings, images, counting, provider batches) shares: a name
resolved once into a :class:`Route` (target, adapter, profile, retry policy, rate-limit buckets),
the deadline, circuit breakers, budget, response cache and hooks around each attempt. The public
:class:`fmclient.Client` is a thin facade over one :class:`Engine`; the capability modules take the
engine, never the client. The engine knows nothing of any SDK.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from fmclient import _validation, pricing
from fmclient import hooks as hooks_module
from fmclient._stream import AsyncStream, Stream, StreamAssembler
from fmclient.budget import Reservation, budget_from_settings, estimate_cost
from fmclient.circuit import CircuitBreaker, CircuitOpenError, breaker_from_settings
from fmclient.errors import (
    BudgetExceededError,
    ConfigurationError,
    FMClientError,
    StructuredOutputError,
    UnsupportedFeatureError,
)
from fmclient.hooks import CallObserver, Hook, LoggingHook
from fmclient.limits import PendingUsage, RateLimiter, alimit_attempt, limit_attempt
from fmclient.pricing import PriceRef
from fmclient.providers import Provider, adapter_class
from fmclient.providers.base import Capabilities
from fmclient.retry import Deadline, RetryPolicy, acall_with_retries, call_with_retries
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

if TYPE_CHECKING:
    from decimal import Decimal

    from fmclient.cache import ResponseCache
    from fmclient.config import Settings, Target
    from fmclient.shared import SharedState

__all__ = ["Attempt", "Call", "Engine", "Route"]

T = TypeVar("T")
R = TypeVar("R", Completion, Embeddings, Images)
#: what a whole-answer call returns (the fallback walk of complete, generate_image, transcribe, speak)
A = TypeVar("A", Completion, Images, Transcription, Speech)
Q = TypeVar("Q", Request, ImageRequest)
It = TypeVar("It")


class Override(Protocol):
    """What the engine needs of a provider that answers every model (fmclient.testing's mock)."""

    name: str

    def route_capabilities(self, model: str, adapter: Callable[[], Capabilities]) -> Capabilities: ...


class OpenedStream(PendingUsage, Generic[It]):
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
overrides: list[Any] = []  # of Override and Provider (the mock is both)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model tried during a call: who, and the error it ended with (None if it answered)."""

    provider: str
    model: str
    error: FMClientError | None = None
    #: True when the request was never sent to it: it could not take it (a feature it lacks, its key
    #: or extra missing) or its circuit was open.
    skipped: bool = False


class Route:
    """Everything about one target that does not change between calls, resolved once.

    (A plain class: a dataclass would cost more at import than it saves in code.)
    """

    __slots__ = (
        "buckets",
        "capabilities",
        "lifecycle_checked",
        "policy",
        "provider",
        "ready",
        "target",
        "timeout",
        "where",
    )

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
        self.lifecycle_checked = False
        self.buckets: list[Any] = []  # the client-side rate limits this target is under

    def ensure_ready(self, model: str, *, sending: bool = True) -> None:
        """Ask the adapter once whether it can call (extra installed, key found); remember a yes.

        Readiness is set-up state: the first call pays for it, later calls on this route do not.
        Before the first request that sends to the model (``sending``; not reattaching to a batch
        job submitted earlier), a retired model is refused and a retiring one warns once.
        """
        if not self.ready:
            self.provider.check_ready(model)
            self.ready = True
        if sending:
            self.check_lifecycle(model)

    def check_lifecycle(self, model: str) -> None:
        """Refuse a retired model (naming its successor), warn once for a retiring one; once per route.

        Every capability's prepare asks this first, before the profile check and the key: "retired,
        use X" says more than "does not generate images" (DALL-E is in no family) or "no key".
        """
        if not self.lifecycle_checked:
            from fmclient.deprecations import check_lifecycle  # set-up work, not on `import fmclient`

            check_lifecycle(self.provider.settings, model)
            self.lifecycle_checked = True


class Engine:
    """The state a Client's calls share, and the machinery they run on (see the module docstring)."""

    def __init__(
        self, settings: Settings, hooks: Sequence[Hook], cache: ResponseCache | None, owns_cache: bool
    ) -> None:
        self.settings = settings
        self._providers: dict[str, Provider] = {}
        self._routes: dict[tuple[str, int | None], Route] = {}
        self._lock = threading.Lock()
        self._breaker_config = breaker_from_settings(settings.circuit_breaker)
        self._breakers: dict[str, CircuitBreaker] = {}
        # Shared over Redis when [shared] is configured; nothing below knows which (fmclient.shared).
        self.shared: SharedState | None = None
        if settings.shared.get("url"):
            from fmclient.shared import state_from_settings

            self.shared = state_from_settings(settings.shared)
        self.budget = budget_from_settings(settings.budget, self.shared)
        self._reserve_rates: dict[tuple[str, str], tuple[Decimal | None, Decimal | None] | None] = {}
        self._price_refs: dict[str, PriceRef] = {}
        self._identities: dict[str, str | None] = {}
        self.hooks: list[Hook] = list(hooks)
        import logging

        self._log = logging.getLogger("fmclient")
        self._logging_hook = LoggingHook()
        self.cache = cache
        self._owns_cache = owns_cache  # one passed in is the caller's to close
        self.limiter: RateLimiter = (
            RateLimiter(settings.rate_limits) if self.shared is None else self.shared.limiter(settings.rate_limits)
        )

    def check_budget_for(self, route: Route) -> None:
        if self.budget is not None:
            self.budget.check(route.target.provider, route.target.model)

    def reserve_budget(self, route: Route, request: Any, deadline: Deadline, defer: bool = False) -> Reservation | None:
        """Reserve what a target's request may cost before it is sent (see fmclient.budget).

        ``defer``: the reservation is passed to :meth:`limited` with the request, which may take it
        with the rate-limit admission (one round trip to Redis for both), or take it before the
        first attempt (an async call then awaits it rather than block its event loop).
        """
        budget = self.budget
        if budget is None:
            return None
        target = route.target
        key = (target.provider, target.model)
        if key in self._reserve_rates:
            rates = self._reserve_rates[key]
        else:  # looked up once per target: the price table is not cheap to search
            found = pricing.model_prices(self.price_ref(route), target.model)
            rates = self._reserve_rates[key] = None if isinstance(found, pricing.Unpriced) else found[:2]
        estimate = estimate_cost(rates, request)
        return budget.reserve(estimate, target.provider, target.model, deadline.remaining(), defer)

    def priced(self, route: Route, result: R, reservation: Reservation | None = None) -> R:
        """Tell a result how to price itself (lazily, on first read); charge it to the budget."""
        target = route.target
        ref = self.price_ref(route)
        # The id that answered first (dated, or a router's choice), then the one asked for; the
        # mock answers as "provider/model", so only the target's id means anything there.
        models = (target.model,) if overrides else (result.model, target.model)
        result._pricer = partial(pricing.priced, ref, models, time.time(), result.usage)
        if self.budget is not None:
            self.budget.charge(result, target.provider, target.model, reservation)
        return result

    def price_ref(self, route: Route) -> PriceRef:
        """Where a route's results are priced: its adapter type, endpoint and ``[prices]`` table."""
        target = route.target
        ref = self._price_refs.get(target.provider)
        if ref is None:
            settings = self.settings.provider_settings(target.provider)
            # Where the request really went: OPENAI_BASE_URL may point the SDK elsewhere too.
            base_url = settings.base_url or self.endpoint_of(target.provider)
            ref = self._price_refs[target.provider] = PriceRef(
                settings.type, base_url, self.settings.prices.get(target.provider)
            )
        return ref

    def identity(self, route: Route) -> str | None:
        """Who a route's requests go to, for the response cache's key: a secret-free fingerprint
        of the provider's account and endpoint (fmclient.cache.provider_identity), made once per
        provider; None when it has no stable form (the call then bypasses the cache)."""
        if overrides:
            return "mock"  # the mock answers every target, whoever it stands for
        name = route.target.provider
        if name not in self._identities:
            from fmclient.cache import provider_identity

            self._identities[name] = provider_identity(self.settings.provider_settings(name))
        return self._identities[name]

    def add_hook(self, hook: Hook) -> None:
        """Register a hook for every later call (see :mod:`fmclient.hooks`)."""
        self.hooks = [*self.hooks, hook]

    def observer_for(
        self,
        operation: str,
        request: Request | EmbedRequest | ImageRequest | TranscriptionRequest | SpeechRequest,
        streaming: bool,
        target: Target | None = None,
        cache_hit: bool = False,
    ) -> CallObserver | None:
        """The call's observer, or None on the fast path: no hook, and the log would drop records."""
        hooks = self.hooks
        if hooks_module.global_hooks:  # an instrumentor (opentelemetry-instrument) traces every client
            hooks = hooks_module.with_global_hooks(hooks)
        if self._log.isEnabledFor(20):  # logging.INFO
            hooks = [*hooks, self._logging_hook]
        elif not hooks:
            return None
        provider, model = ("", "") if target is None else (target.provider, target.model)
        return CallObserver(
            hooks,
            self.settings.provider_settings,
            operation,
            request,
            streaming,
            provider,
            model,
            cache_hit,
            endpoint=self.endpoint_of,
        )

    def endpoint_of(self, provider: str) -> str | None:
        """Where a provider's requests go, as its built SDK client says (None before it is built)."""
        adapter = self._providers.get(provider)
        return None if adapter is None else adapter.endpoint

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

    def route(self, name: str, max_retries: int | None) -> Route:
        key = (name, max_retries)
        route = self._routes.get(key)
        if overrides:
            # The mock answers: resolve the name (typos still fail) but build no real adapter.
            mock = overrides[-1]
            target = route.target if route else self.settings.resolve(name)
            # By default the mock enforces what the real adapter would (mock.enforce_profiles).
            capabilities = mock.route_capabilities(target.model, self._adapter_capabilities(target))
            mocked = Route(target, mock, capabilities, self._policy(target, max_retries), None)
            mocked.buckets = self.limiter.buckets_for(target.provider, target.model, target.requested)
            return mocked
        if route is None:
            target = self.settings.resolve(name)
            provider = self.provider(target.provider)
            route = Route(
                target=target,
                provider=provider,
                capabilities=provider.capabilities(target.model),
                policy=self._policy(target, max_retries),
                timeout=self.settings.timeout_for(target.provider),
            )
            route.buckets = self.limiter.buckets_for(target.provider, target.model, target.requested)
            self._routes[key] = route
        return route

    def _adapter_capabilities(self, target: Target) -> Callable[[], Capabilities]:
        return lambda: self.provider(target.provider).capabilities(target.model)

    def _policy(self, target: Target, max_retries: int | None) -> RetryPolicy:
        retries = self.settings.max_retries_for(target.provider) if max_retries is None else max_retries
        return RetryPolicy(max_retries=retries, max_retry_wait=self.settings.max_retry_wait)

    def routes_for(self, model: str | None, fallbacks: Sequence[str] | None, max_retries: int | None) -> list[Route]:
        name = model or self.settings.default_model
        if not isinstance(name, str):
            raise TypeError(f"model must be a str, not {type(name).__name__}")
        chain = self.settings.fallbacks.get(name, ()) if fallbacks is None else tuple(fallbacks)
        # Every name is resolved now, so a typo in a fallback fails before any request.
        return [self.route(n, max_retries) for n in (name, *chain)]

    @staticmethod
    def model_id(route: Route) -> str:
        # The mock sees the full "provider/model" so app tests can assert where a call would go.
        target = route.target
        return f"{target.provider}/{target.model}" if overrides else target.model

    def peek_model_id(self, model: str | None, max_retries: Any) -> str:
        """The primary target's model id if its route is cached, else "" (never raises).

        Building the Request with it saves a copy per call; :meth:`_prepare` checks it anyway.
        """
        name = model or self.settings.default_model
        if overrides or type(name) is not str or not (max_retries is None or type(max_retries) is int):
            return ""  # anything odd is left to the checks that name the argument at fault
        route = self._routes.get((name, max_retries))
        return "" if route is None else route.target.model

    def prepare(self, route: Route, request: Request, *, streaming: bool) -> Request:
        model_id = self.model_id(route)
        if request.model != model_id:
            request = replace(request, model=model_id)
        route.check_lifecycle(model_id)
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
                found = self._breakers.get(provider)
                if found is None:
                    found = self._breakers[provider] = (
                        CircuitBreaker(*self._breaker_config)
                        if self.shared is None
                        else self.shared.breaker(provider, *self._breaker_config)
                    )
        return found

    async def aprepare_breaker(self, route: Route) -> None:
        """Before an async call's admission: a shared breaker reads its state off the event loop."""
        if self._breaker_config is not None and self.shared is not None:
            breaker = self.breaker(route.target.provider)
            if breaker is not None:
                await breaker.aprepare()

    def may_fall_back(self, error: FMClientError) -> bool:
        if isinstance(error, CircuitOpenError):
            return True
        if type(error).__name__ in self.settings.fallback_on:
            return True
        return any(cls.__name__ in self.settings.fallback_on for cls in type(error).__mro__) or error.retryable

    def deadline(self, timeout: float | None, first: Route) -> Deadline:
        return Deadline(_validation.check_timeout(timeout) if timeout is not None else first.timeout)

    def limited(
        self,
        route: Route,
        attempt: Callable[[float | None], T],
        request: Any,
        deadline: Deadline,
        reservation: Reservation | None = None,
    ) -> Callable[[float | None], T]:
        """The attempt, behind the route's rate limits (each attempt waits for a slot); the
        target's budget reservation rides along (see :meth:`reserve_budget`)."""
        if not route.buckets:
            return attempt if reservation is None or self.budget is None else self.budget.taken(attempt, reservation)
        return limit_attempt(attempt, self.limiter, route.buckets, request, deadline, route.where, reservation)

    def alimited(
        self,
        route: Route,
        attempt: Callable[[float | None], Awaitable[T]],
        request: Any,
        deadline: Deadline,
        reservation: Reservation | None = None,
    ) -> Callable[[float | None], Awaitable[T]]:
        if not route.buckets:
            return attempt if reservation is None or self.budget is None else self.budget.ataken(attempt, reservation)
        return alimit_attempt(attempt, self.limiter, route.buckets, request, deadline, route.where, reservation)

    # -- the fallback walk of a call that ends with one whole answer --------------------------------
    def walk(self, call: Call, method: str, finish: Callable[[Route, A], A]) -> A:
        """Each target in turn, ``route.provider.<method>`` under its rate limits, retries, deadline
        and hooks, until one answers (``finish``) or none is left (``call.failed`` raises).

        One walk for complete and generate_image, so what wraps an attempt cannot drift apart.
        """
        for route, prepared in call.plan():
            attempt = whole_attempt(call, route, prepared, getattr(route.provider, method))
            try:
                answer = call_with_retries(
                    self.limited(route, attempt, prepared, call.deadline, call.reservation),
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

    async def awalk(self, call: Call, method: str, finish: Callable[[Route, A], A]) -> A:
        """The async twin of :meth:`walk` (``method`` is the adapter's coroutine method)."""
        await self.aprepare_breaker(call.routes[0])
        for route, prepared in call.plan():
            attempt = awhole_attempt(call, route, prepared, getattr(route.provider, method))
            try:
                answer = await acall_with_retries(
                    self.alimited(route, attempt, prepared, call.deadline, call.reservation),
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
    def chat_call(
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
    ) -> Call:
        request = _validation.build_request(
            prompt, model=self.peek_model_id(model, max_retries), provider_options=provider_options, **params
        )
        routes = self.routes_for(model, fallbacks, _validation.check_max_retries(max_retries))
        # The primary target is checked now, so bad input or configuration fails before any
        # request (and, for a stream, before the caller starts iterating).
        first = self.prepare(routes[0], request, streaming=streaming)
        call = Call(self, request, routes, first, self.deadline(timeout, routes[0]), streaming)
        if look_up:  # else the async caller awaits call.alook_up() (the cache may do I/O)
            call.look_up()
        return call

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        for provider in list(self._providers.values()):
            provider.close()
        if self.cache is not None and self._owns_cache:
            self.cache.close()
        if self.shared is not None:
            self.shared.close()

    async def aclose(self) -> None:
        for provider in list(self._providers.values()):
            await provider.aclose()
        if self.cache is not None and self._owns_cache:
            self.cache.close()
        if self.shared is not None:
            await self.shared.aclose()


class Call:
    """One complete/stream call across its targets: the fallback walk and its record."""

    __slots__ = (
        "attempts",
        "cache_key",
        "cached",
        "deadline",
        "engine",
        "first",
        "hooked",
        "observer",
        "position",
        "request",
        "reservation",
        "routes",
        "settling",
        "streaming",
        "trial",
    )

    def __init__(
        self,
        engine: Engine,
        request: Request,
        routes: list[Route],
        first: Request,
        deadline: Deadline,
        streaming: bool,
    ) -> None:
        self.engine = engine
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
        #: the primary's before_request hooks already ran on ``first`` (see _keyed_cache)
        self.hooked = False
        self.cached: Completion | None = None  # the response cache's answer, when it had one
        #: what the target being tried reserved of the budget, until settled or released
        self.reservation: Reservation | None = None
        self.settling: Reservation | None = None  # the answer's, whose settle an async call awaits

    def _keyed_cache(self) -> tuple[ResponseCache, str] | None:
        """The client's cache and this call's key in it, or None when the call bypasses the cache.

        The key is that of the request actually sent, to whom: hooks may rewrite the request (a
        per-tenant system prompt), so with hooks the call starts here and the primary's
        ``before_request`` hooks run now, once; :meth:`plan` then sends what they returned.
        """
        cache = self.engine.cache
        if cache is None:
            return None
        from fmclient.cache import request_key

        route = self.routes[0]
        self.observer = self._start_observer()
        if self.observer is not None:
            self.first = self._before_request(route, self.first)
            self.hooked = True
        identity = self.engine.identity(route)
        self.cache_key = None if identity is None else request_key(identity, self.first)
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
        """The budget before the primary's request; a refusal is a call that started and ended.

        A whole-answer call reserves now (its walk follows at once); a stream only checks, and
        reserves when the caller starts iterating (one never iterated must not hold budget).
        """
        try:
            if self.streaming:
                self.engine.check_budget_for(self.routes[0])
            else:
                self.reservation = self.engine.reserve_budget(self.routes[0], self.first, self.deadline, defer=True)
        except FMClientError as error:
            if self.observer is None:
                self.observer = self._start_observer()
            self._end(None, error)
            raise

    def _observe_hit(self) -> None:
        """The call is a response-cache hit: for hooks, a call with no attempt."""
        if self.observer is None:
            self.observer = self._start_observer(cache_hit=True)
        else:  # started when the key was made (hooks ran before_request first)
            self.observer.call.cache_hit = True

    def hit(self) -> Completion:
        """The cached answer as the call's result: for hooks, a call with no attempt."""
        self._observe_hit()
        return self._hit_ends()

    def _hit_ends(self) -> Completion:
        completion = self.cached
        assert completion is not None
        if overrides:
            completion.provider = overrides[-1].name
        response_format = self.request.response_format
        try:
            if response_format is not None and not completion.tool_calls:
                _validation.parse_structured(completion, response_format)
        except BaseException as error:
            if isinstance(error, StructuredOutputError):
                error.completion = completion
            self._end(None, error)
            raise
        self._end(completion, None)
        return completion

    def replay(self, stream: Stream | AsyncStream) -> Iterator[Chunk]:
        """The cached answer as chunks; the stream's completion is the hit itself."""
        from fmclient.cache import replay_chunks

        completion = self.cached
        assert completion is not None
        self._observe_hit()  # the call starts with the iteration (or started when keyed)
        assembler = stream._assembler = StreamAssembler(completion.provider, completion.model)
        try:
            for chunk in replay_chunks(completion):
                assembler.add(chunk)
                yield chunk
        except BaseException as error:  # closed early, cancelled or interrupted
            self._end(None, error)
            raise
        stream._completion = self._hit_ends()

    def plan(self) -> Iterator[tuple[Route, Request]]:
        """Each target in turn, ready to send; a target that cannot take the request is skipped."""
        # The call starts here (for a stream: when the caller starts iterating), hooks with it,
        # unless it started when its cache key was made.
        if self.observer is None:
            self.observer = self._start_observer()
        for index, route in enumerate(self.routes):
            self.position = index
            breaker = self.engine.breaker(route.target.provider)
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
            if self.reservation is None and self.engine.budget is not None:
                # A stream's primary, or a fallback (a new request: another call may have spent
                # the budget meanwhile): reserve before it is sent.
                try:
                    self.reservation = self.engine.reserve_budget(route, prepared, self.deadline, defer=True)
                except FMClientError as error:
                    self.abandon()  # the trial this target was admitted for never ran
                    error.attempts = self.attempts
                    self._end(None, error)
                    raise
            if self.observer is not None and not (index == 0 and self.hooked):
                try:
                    prepared = self._before_request(route, prepared)
                except BaseException:
                    self.release_budget()  # refused by a hook: nothing is sent
                    raise
            yield route, prepared

    def _start_observer(self, cache_hit: bool = False) -> CallObserver | None:
        return self.engine.observer_for("chat", self.first, self.streaming, self.routes[0].target, cache_hit)

    def _prepare_for(self, route: Route) -> Any:
        """The request as a fallback target takes it (its model id), checked against its profile."""
        return self.engine.prepare(route, self.request, streaming=self.streaming)

    def where(self, route: Route) -> dict[str, Any]:
        """The retry layer's keywords; with an observer, retries are reported to it."""
        if self.observer is None:
            return route.where
        return {**route.where, "on_retry": self.observer.retry}

    def _before_request(self, route: Route, prepared: Request) -> Request:
        assert self.observer is not None

        def check(changed: Request) -> None:
            route.capabilities.check(changed, provider=route.target.provider, streaming=self.streaming)

        try:
            return self.observer.before_request(prepared, check)
        except FMClientError as error:  # refused by a hook: no request, no fallback
            error.attempts = self.attempts
            self.observer.refuse(error)
            raise

    def _record(self, route: Route, error: FMClientError | None) -> None:
        self.trial = None  # whatever is recorded below ends a trial this call held
        breaker = self.engine.breaker(route.target.provider)
        if breaker is None or isinstance(error, CircuitOpenError):
            return
        if error is None:
            breaker.record_success()
        elif error.retryable:
            breaker.record_failure()  # the provider's fault: counts towards opening
        else:
            breaker.release()  # the caller's fault says nothing of the provider's health

    def release_budget(self) -> None:
        """The target's request failed or was never sent: give its reservation back."""
        reservation, self.reservation = self.reservation, None
        if reservation is not None and self.engine.budget is not None:
            self.engine.budget.release(reservation)

    def take_reservation(self) -> Reservation | None:
        """The reservation an answer settles (it is the answer's from now on)."""
        reservation, self.reservation = self.reservation, None
        return reservation

    def abandon(self) -> None:
        """The call ended with no outcome to record (cancelled, interrupted, a stream closed early).

        A half-open trial it held is handed back, so the breaker lets the next call be the trial
        instead of staying open for good; its budget reservation is released.
        """
        self.release_budget()
        trial, self.trial = self.trial, None
        if trial is not None:
            trial.release()

    def failed(self, route: Route, error: FMClientError) -> None:
        """Record a target's failure; raise when no other target may answer instead."""
        self.release_budget()  # a failure is not billed
        if isinstance(error, BudgetExceededError):
            # Refused with the rate-limit admission (a reservation taken there): nothing was
            # sent, as when refused before the walk.
            self.abandon()
            error.attempts = self.attempts
            self._end(None, error)
            raise error
        self._record(route, error)
        skipped = isinstance(error, CircuitOpenError) or self._cannot_take(error)
        self.attempts.append(Attempt(route.target.provider, route.target.model, error, skipped))
        last = self.position == len(self.routes) - 1
        if not last and (skipped or self.engine.may_fall_back(error)):
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

    def broke_off(self, route: Route, error: FMClientError, text: str) -> None:
        """A stream failed after reaching the caller: no retry, no fallback, keep what came."""
        self.release_budget()  # its usage never arrived: nothing to settle to
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

    def finish(self, route: Route, completion: Completion) -> Completion:
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
        if self.settling is not None:
            await self.settling.settled()  # the budget's settle, so ``spent`` reads it on return
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
        cache = self.engine.cache
        if cache is None or self.cache_key is None or self.position != 0:
            return None
        return cache, self.cache_key

    def answered(self, route: Route, completion: Completion) -> Completion:
        """Record a target's whole answer: its outcome, its cost, its structured output checked."""
        self._record(route, None)
        self.attempts.append(Attempt(route.target.provider, route.target.model))
        completion.attempts = self.attempts
        if overrides:
            completion.provider = overrides[-1].name
        # Charged before the answer is checked: a reply that fails validation was still billed.
        self.settling = self.take_reservation()
        self.engine.priced(route, completion, self.settling)
        response_format = self.request.response_format
        observer = self.observer
        if observer is not None:
            observer.answered(completion)
        try:
            # A reply that calls tools is not the structured answer yet (a tool loop's step).
            if response_format is not None and completion.parsed is None and not completion.tool_calls:
                _validation.parse_structured(completion, response_format)
        except BaseException as error:
            if isinstance(error, StructuredOutputError):
                error.completion = completion  # what was answered (and billed): for a re-ask
            if observer is not None:
                observer.end(None, error)
            raise
        return completion


def whole_attempt(call: Call, route: Route, prepared: Any, send: Callable[[Any], A]) -> Callable[[float | None], A]:
    """One retry-layer attempt of a whole-answer call: the request with the time left, through
    the call's hooks when it has any."""

    def attempt(left: float | None) -> A:
        sent = with_timeout(prepared, left)
        if call.observer is None:
            return guard(send, sent, route=route)
        return call.observer.attempt(
            route.target.provider, route.target.model, sent, lambda: guard(send, sent, route=route)
        )

    return attempt


def awhole_attempt(
    call: Call, route: Route, prepared: Any, send: Callable[[Any], Awaitable[A]]
) -> Callable[[float | None], Awaitable[A]]:
    """The async twin of :func:`whole_attempt`."""

    async def attempt(left: float | None) -> A:
        sent = with_timeout(prepared, left)
        if call.observer is None:
            return await aguard(send(sent), route)
        return await call.observer.aattempt(
            route.target.provider, route.target.model, sent, lambda: aguard(send(sent), route)
        )

    return attempt


def with_timeout(request: Q, left: float | None) -> Q:
    return request if left is None else replace(request, timeout=left)


def _unexpected(exc: Exception, route: Route) -> FMClientError:
    # An adapter bug must still surface as an fmclient error: callers catch one hierarchy.
    return FMClientError(
        f"unexpected {type(exc).__name__} from the {route.target.provider} adapter: {exc}",
        provider=route.target.provider,
        model=route.target.model,
    )


def guard(fn: Callable[..., T], *args: Any, route: Route) -> T:
    try:
        return fn(*args)
    except FMClientError:
        raise
    except Exception as exc:
        raise _unexpected(exc, route) from exc


async def aguard(awaitable: Awaitable[T], route: Route) -> T:
    try:
        return await awaitable
    except FMClientError:
        raise
    except Exception as exc:
        raise _unexpected(exc, route) from exc


async def anext_or_none(iterator: AsyncIterator[Chunk]) -> Chunk | None:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None
