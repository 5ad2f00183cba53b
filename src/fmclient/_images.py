"""Image generation over the call engine: the same fallback walk, circuit breakers, budget and
hooks as chat (:class:`ImageCall` is a :class:`~fmclient._engine.Call` over an ImageRequest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fmclient import _validation
from fmclient._engine import Attempt, Call, Route, overrides
from fmclient.errors import FMClientError
from fmclient.types import ImageRequest, Images

if TYPE_CHECKING:
    from fmclient._engine import Engine
    from fmclient.hooks import CallObserver

__all__ = ["agenerate_image", "generate_image"]


# -- generate images ---------------------------------------------------------------------------
def prepare_image(engine: Engine, route: Route, request: ImageRequest) -> ImageRequest:
    request = replace(request, model=engine.model_id(route))
    route.check_lifecycle(request.model)
    route.capabilities.check_image(request, provider=route.target.provider)
    route.ensure_ready(request.model)
    return request


def _image_call(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    **params: Any,
) -> ImageCall:
    request = _validation.build_image_request(prompt, provider_options=provider_options, **params)
    routes = engine.routes_for(
        model or engine.settings.default_image_model, fallbacks, _validation.check_max_retries(max_retries)
    )
    # The primary is checked now: a size or count it cannot make fails before any request.
    first = prepare_image(engine, routes[0], request)
    call = ImageCall(engine, request, routes, first, engine.deadline(timeout, routes[0]), False)  # type: ignore[arg-type]
    call.check_budget()
    return call


def generate_image(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Images:
    """``Client.generate_image``: ``params`` are its image arguments (size, n, seed...)."""
    call = _image_call(engine, prompt, model, fallbacks, max_retries, timeout, provider_options, **params)
    return engine.walk(call, "generate_image", call.finish_images)


async def agenerate_image(
    engine: Engine,
    prompt: Any,
    model: str | None,
    fallbacks: Sequence[str] | None,
    max_retries: int | None,
    timeout: float | None,
    provider_options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Images:
    """``Client.agenerate_image``: the async twin of :func:`generate_image`."""
    call = _image_call(engine, prompt, model, fallbacks, max_retries, timeout, provider_options, **params)
    return await engine.awalk(call, "agenerate_image", call.finish_images)


class ImageCall(Call):
    """A generate_image call: the same fallback walk, circuit breakers and budget checks as
    :class:`~fmclient._engine.Call`, over :class:`ImageRequest` (no response cache, no structured output)."""

    request: ImageRequest  # type: ignore[assignment]
    first: ImageRequest  # type: ignore[assignment]

    def _start_observer(self, cache_hit: bool = False) -> CallObserver | None:
        # "generate_content": the GenAI semantic conventions' operation for multimodal output.
        return self.engine.observer_for("generate_content", self.first, False, self.routes[0].target)

    def _before_request(self, route: Route, prepared: Any) -> Any:
        assert self.observer is not None

        def check(changed: ImageRequest) -> None:
            route.capabilities.check_image(changed, provider=route.target.provider)

        try:
            return self.observer.before_request(prepared, check)
        except FMClientError as error:  # refused by a hook: no request, no fallback
            error.attempts = self.attempts
            self.observer.refuse(error)
            raise

    def _prepare_for(self, route: Route) -> ImageRequest:
        return prepare_image(self.engine, route, self.request)

    def finish_images(self, route: Route, images: Images) -> Images:
        self._record(route, None)
        self.attempts.append(Attempt(route.target.provider, route.target.model))
        images.attempts = self.attempts
        if overrides:
            images.provider = overrides[-1].name
        self.engine.priced(route, images, self.take_reservation())
        self._end(images, None)
        return images
