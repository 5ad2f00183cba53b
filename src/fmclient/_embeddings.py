"""Embeddings over the call engine: batched as the provider takes them, each batch under its own
retries within one deadline (a retry re-sends only the batch that failed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from fmclient import _validation
from fmclient._engine import Route, aguard, guard
from fmclient._fan_out import afan_out, fan_out
from fmclient.errors import FMClientError, UnsupportedFeatureError
from fmclient.retry import Deadline, acall_with_retries, call_with_retries
from fmclient.types import Embeddings, EmbedRequest

if TYPE_CHECKING:
    from fmclient._engine import Engine
    from fmclient.budget import Reservation
    from fmclient.hooks import CallObserver
    from fmclient.providers.base import EmbedBatching

__all__ = ["aembed", "embed"]

T = TypeVar("T")


# -- embed -------------------------------------------------------------------------------------
def _embed_call(
    engine: Engine,
    texts: Any,
    model: str | None,
    timeout: float | None,
    max_retries: int | None,
    provider_options: Mapping[str, Any],
    defer: bool = False,
) -> tuple[Route, EmbedRequest, Deadline, Reservation | None]:
    request = _validation.build_embed_request(texts, provider_options=provider_options)
    route = engine.route(model or engine.settings.default_embedding_model, _validation.check_max_retries(max_retries))
    request = replace(request, model=engine.model_id(route))
    route.check_lifecycle(request.model)
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
    deadline = engine.deadline(timeout, route)
    try:
        # An async call takes a shared reservation itself (aembed), off its event loop.
        reservation = engine.reserve_budget(route, request, deadline, defer=defer)
    except FMClientError as error:  # the call started, and ends here: hooks see it
        observer = engine.observer_for("embeddings", request, False, route.target)
        if observer is not None:
            observer.end(None, error)
        raise
    return route, request, deadline, reservation


def _released_on_error(engine: Engine, reservation: Reservation | None, fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except BaseException:
        if engine.budget is not None:
            engine.budget.release(reservation)
        raise


def embed(
    engine: Engine,
    texts: str | Sequence[str],
    model: str | None,
    timeout: float | None,
    max_retries: int | None,
    provider_options: Mapping[str, Any],
) -> Embeddings:
    """``Client.embed``: the batches go out one by one, or fanned out as the provider allows."""
    route, request, deadline, reservation = _embed_call(engine, texts, model, timeout, max_retries, provider_options)
    observer = engine.observer_for("embeddings", request, False, route.target)
    if observer is not None:
        request = _released_on_error(engine, reservation, observed_embed_request, observer, route, request)
    batching = route.provider.embed_batching(route.target.model)
    batches = embed_batches(request, batching)
    where = route.where if observer is None else {**route.where, "on_retry": observer.retry}

    def embed_batch(batch: EmbedRequest) -> Embeddings:
        def attempt(left: float | None) -> Embeddings:
            sent = replace(batch, timeout=left)
            if observer is None:
                return guard(route.provider.embed, sent, route=route)
            return observer.attempt(
                route.target.provider,
                route.target.model,
                sent,
                lambda: guard(route.provider.embed, sent, route=route),
            )

        return call_with_retries(engine.limited(route, attempt, batch, deadline), route.policy, deadline, **where)

    try:
        if len(batches) == 1:
            result = embed_batch(batches[0])
        elif batching.max_concurrency <= 1:
            result = joined_embeddings([embed_batch(batch) for batch in batches])
        else:
            result = joined_embeddings(fan_out(embed_batch, batches, batching.max_concurrency))
    except BaseException as error:
        if engine.budget is not None:
            engine.budget.release(reservation)  # failed, cancelled or interrupted: not billed
        if observer is not None:
            observer.end(None, error)
        raise
    result = engine.priced(route, result, reservation)
    if observer is not None:
        observer.end(result, None)
    return result


async def aembed(
    engine: Engine,
    texts: str | Sequence[str],
    model: str | None,
    timeout: float | None,
    max_retries: int | None,
    provider_options: Mapping[str, Any],
) -> Embeddings:
    """``Client.aembed``: the async twin of :func:`embed`."""
    route, request, deadline, reservation = _embed_call(
        engine, texts, model, timeout, max_retries, provider_options, defer=True
    )
    if reservation is not None and engine.budget is not None:
        try:
            await engine.budget.atake(reservation)
        except FMClientError as error:  # the call started, and ends here: hooks see it
            refused = engine.observer_for("embeddings", request, False, route.target)
            if refused is not None:
                refused.end(None, error)
            raise
    observer = engine.observer_for("embeddings", request, False, route.target)
    if observer is not None:
        request = _released_on_error(engine, reservation, observed_embed_request, observer, route, request)
    batching = route.provider.embed_batching(route.target.model)
    batches = embed_batches(request, batching)
    where = route.where if observer is None else {**route.where, "on_retry": observer.retry}

    async def embed_batch(batch: EmbedRequest) -> Embeddings:
        async def attempt(left: float | None) -> Embeddings:
            sent = replace(batch, timeout=left)
            if observer is None:
                return await aguard(route.provider.aembed(sent), route)
            return await observer.aattempt(
                route.target.provider, route.target.model, sent, lambda: aguard(route.provider.aembed(sent), route)
            )

        return await acall_with_retries(
            engine.alimited(route, attempt, batch, deadline), route.policy, deadline, **where
        )

    try:
        if len(batches) == 1:
            result = await embed_batch(batches[0])
        elif batching.max_concurrency <= 1:
            result = joined_embeddings([await embed_batch(batch) for batch in batches])
        else:
            result = joined_embeddings(await afan_out(embed_batch, batches, batching.max_concurrency))
    except BaseException as error:
        if engine.budget is not None:
            engine.budget.release(reservation)  # failed, cancelled or interrupted: not billed
        if observer is not None:
            observer.end(None, error)
        raise
    result = engine.priced(route, result, reservation)
    if reservation is not None:
        await reservation.settled()  # the budget's settle, so ``spent`` reads it on return
    if observer is not None:
        observer.end(result, None)
    return result


def embed_batches(request: EmbedRequest, batching: EmbedBatching) -> list[EmbedRequest]:
    size = batching.max_texts
    texts = request.texts
    if size is None or len(texts) <= size:
        return [request]
    images = request.images
    return [
        replace(request, texts=texts[start : start + size], images=images[start : start + size] if images else ())
        for start in range(0, len(texts), size)
    ]


def joined_embeddings(parts: Sequence[Embeddings]) -> Embeddings:
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


def observed_embed_request(observer: CallObserver, route: Route, request: EmbedRequest) -> EmbedRequest:
    try:
        return observer.before_request(request)
    except FMClientError as error:
        observer.refuse(error)
        raise
