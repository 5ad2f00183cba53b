"""The user API: one Client with sync and async twins, whatever provider answers.

The path of one call: validate input into a Request, resolve the model name to targets
(primary + fallbacks), then for each target check capabilities and readiness, and run the
adapter under the retry layer within one deadline. The client knows nothing of any SDK.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from fmclient import _validation
from fmclient._stream import AsyncStream, Stream, StreamAssembler
from fmclient.circuit import CircuitBreaker, CircuitOpenError, breaker_from_settings
from fmclient.config import Settings, Target, load_settings
from fmclient.errors import FMClientError, UnsupportedFeatureError
from fmclient.providers import Provider, adapter_class
from fmclient.providers.base import Capabilities
from fmclient.retry import Deadline, RetryPolicy, acall_with_retries, call_with_retries
from fmclient.types import Chunk, Completion, Embeddings, EmbedRequest, Request

__all__ = ["Attempt", "Client"]

T = TypeVar("T")

# Providers that answer every model instead of the configured ones (fmclient.testing's mock).
# A plain list, not a contextvar, so threads an app starts see the override too.
_overrides: list[Provider] = []


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model tried during a call: who, and the error it ended with (None if it answered)."""

    provider: str
    model: str
    error: FMClientError | None = None


class _Route:
    """Everything about one target that does not change between calls, resolved once.

    (A plain class: a dataclass would cost more at import than it saves in code.)
    """

    __slots__ = ("capabilities", "policy", "provider", "ready", "target", "timeout", "where")

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
        self.where: dict[str, str] = {"provider": target.provider, "model": target.model}
        self.ready = False

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
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        embedding_model: str | None = None,
        config_path: str | None = None,
        providers: Mapping[str, Mapping[str, Any]] | None = None,
        aliases: Mapping[str, str] | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        max_retry_wait: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        overrides: dict[str, Any] = {
            "default_model": model,
            "default_embedding_model": embedding_model,
            "max_retries": _validation.check_max_retries(max_retries),
            "timeout": _validation.check_timeout(timeout),
            "max_retry_wait": max_retry_wait,
        }
        # Passed through as given: the config layer checks their shape like a config file's.
        for key, value in (("providers", providers), ("aliases", aliases), ("fallbacks", fallbacks)):
            if value is not None:
                overrides[key] = value
        self.settings: Settings = load_settings(env=env, config_path=config_path, overrides=overrides)
        self._providers: dict[str, Provider] = {}
        self._routes: dict[tuple[str, int | None], _Route] = {}
        self._lock = threading.Lock()
        self._breaker_config = breaker_from_settings(self.settings.circuit_breaker)
        self._breakers: dict[str, CircuitBreaker] = {}

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
            return _Route(target, mock, mock.capabilities(target.model), self._policy(target, max_retries), None)
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
            self._routes[key] = route
        return route

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
        **params: Any,
    ) -> _Call:
        request = _validation.build_request(
            prompt, model=self._peek_model_id(model, max_retries), provider_options=provider_options, **params
        )
        routes = self._routes_for(model, fallbacks, _validation.check_max_retries(max_retries))
        # The primary target is checked now, so bad input or configuration fails before any
        # request (and, for a stream, before the caller starts iterating).
        first = self._prepare(routes[0], request, streaming=streaming)
        return _Call(self, request, routes, first, self._deadline(timeout, routes[0]), streaming)

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
        )
        for route, prepared in call.plan():

            def attempt(left: float | None, route: _Route = route, prepared: Request = prepared) -> Completion:
                return _guard(route.provider.complete, _with_timeout(prepared, left), route=route)

            try:
                completion = call_with_retries(attempt, route.policy, call.deadline, **route.where)
            except FMClientError as error:
                call.failed(route, error)
                continue
            return call.finish(route, completion)
        raise AssertionError("unreachable: plan() raises when no target is left")

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
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
        )
        for route, prepared in call.plan():

            async def attempt(left: float | None, route: _Route = route, prepared: Request = prepared) -> Completion:
                return await _aguard(route.provider.acomplete(_with_timeout(prepared, left)), route)

            try:
                completion = await acall_with_retries(attempt, route.policy, call.deadline, **route.where)
            except FMClientError as error:
                call.failed(route, error)
                continue
            return call.finish(route, completion)
        raise AssertionError("unreachable: plan() raises when no target is left")

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
        )

        def chunks(stream: Stream) -> Iterator[Chunk]:
            for route, prepared in call.plan():

                def open_stream(
                    left: float | None, route: _Route = route, prepared: Request = prepared
                ) -> tuple[Iterator[Chunk], Chunk | None]:
                    iterator = _guard(route.provider.stream, _with_timeout(prepared, left), route=route)
                    return iterator, _guard(next, iterator, None, route=route)

                try:
                    iterator, first = call_with_retries(open_stream, route.policy, call.deadline, **route.where)
                except FMClientError as error:
                    call.failed(route, error)
                    continue
                assembler = stream._assembler = StreamAssembler(route.target.provider, prepared.model)
                try:
                    chunk = first
                    while chunk is not None:
                        assembler.add(chunk)
                        yield chunk
                        chunk = _guard(next, iterator, None, route=route)
                except FMClientError as error:
                    call.broke_off(route, error, assembler.text)
                    raise
                finally:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()
                stream._completion = call.finish(route, assembler.completion())
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
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> AsyncStream:
        """The async twin of :meth:`stream`: ``async for chunk in client.astream(...)``."""
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
        )

        async def chunks(stream: AsyncStream) -> AsyncIterator[Chunk]:
            for route, prepared in call.plan():

                async def open_stream(
                    left: float | None, route: _Route = route, prepared: Request = prepared
                ) -> tuple[AsyncIterator[Chunk], Chunk | None]:
                    iterator = route.provider.astream(_with_timeout(prepared, left))
                    return iterator, await _aguard(_anext_or_none(iterator), route)

                try:
                    iterator, first = await acall_with_retries(open_stream, route.policy, call.deadline, **route.where)
                except FMClientError as error:
                    call.failed(route, error)
                    continue
                assembler = stream._assembler = StreamAssembler(route.target.provider, prepared.model)
                try:
                    chunk = first
                    while chunk is not None:
                        assembler.add(chunk)
                        yield chunk
                        chunk = await _aguard(_anext_or_none(iterator), route)
                except FMClientError as error:
                    call.broke_off(route, error, assembler.text)
                    raise
                finally:
                    aclose = getattr(iterator, "aclose", None)
                    if aclose is not None:
                        await aclose()
                stream._completion = call.finish(route, assembler.completion())
                return

        return AsyncStream(chunks)

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
        route.ensure_ready(request.model)
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
        """Embed texts; vectors come back in input order."""
        route, request, deadline = self._embed_call(texts, model, timeout, max_retries, provider_options)

        def attempt(left: float | None) -> Embeddings:
            return _guard(route.provider.embed, replace(request, timeout=left), route=route)

        return call_with_retries(attempt, route.policy, deadline, **route.where)

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

        async def attempt(left: float | None) -> Embeddings:
            return await _aguard(route.provider.aembed(replace(request, timeout=left)), route)

        return await acall_with_retries(attempt, route.policy, deadline, **route.where)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        for provider in list(self._providers.values()):
            provider.close()

    async def aclose(self) -> None:
        for provider in list(self._providers.values()):
            await provider.aclose()

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

    __slots__ = ("attempts", "client", "deadline", "first", "request", "routes", "streaming")

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
        self.request = request
        self.routes = routes
        self.first = first
        self.deadline = deadline
        self.streaming = streaming
        self.attempts: list[Attempt] = []

    def plan(self) -> Iterator[tuple[_Route, Request]]:
        """Each target in turn, ready to send; a target that cannot take the request is skipped."""
        for index, route in enumerate(self.routes):
            breaker = self.client.breaker(route.target.provider)
            if breaker is not None and not breaker.allow():
                self.failed(
                    route,
                    CircuitOpenError(
                        "circuit open: the provider failed repeatedly",
                        provider=route.target.provider,
                        model=route.target.model,
                    ),
                )
                continue
            try:
                prepared = (
                    self.first if index == 0 else self.client._prepare(route, self.request, streaming=self.streaming)
                )
            except FMClientError as error:
                self.failed(route, error)
                continue
            yield route, prepared

    def _record(self, route: _Route, error: FMClientError | None) -> None:
        breaker = self.client.breaker(route.target.provider)
        if breaker is None or isinstance(error, CircuitOpenError):
            return
        if error is None:
            breaker.record_success()
        elif error.retryable:
            breaker.record_failure()  # the provider's fault: counts towards opening
        else:
            breaker.release()  # the caller's fault says nothing of the provider's health

    def failed(self, route: _Route, error: FMClientError) -> None:
        """Record a target's failure; raise it unless another target may answer instead."""
        self._record(route, error)
        self.attempts.append(Attempt(route.target.provider, route.target.model, error))
        if route is self.routes[-1] or not self.client._may_fall_back(error):
            error.attempts = self.attempts
            raise error

    def broke_off(self, route: _Route, error: FMClientError, text: str) -> None:
        """A stream failed after reaching the caller: no retry, no fallback, keep what came."""
        self._record(route, error)
        self.attempts.append(Attempt(route.target.provider, route.target.model, error))
        error.partial_text = text
        error.attempts = self.attempts

    def finish(self, route: _Route, completion: Completion) -> Completion:
        self._record(route, None)
        self.attempts.append(Attempt(route.target.provider, route.target.model))
        completion.attempts = self.attempts
        if _overrides:
            completion.provider = _overrides[-1].name
        response_format = self.request.response_format
        if response_format is not None and completion.parsed is None:
            _validation.parse_structured(completion, response_format)
        return completion


def _with_timeout(request: Request, left: float | None) -> Request:
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
