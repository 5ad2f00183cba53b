"""Provider batch APIs: submit many prompts as one asynchronous job at the provider's batch price.

``client.submit_batch(inputs, model=...)`` translates every input exactly as a normal call would
(the adapter's own request builder), uploads them as one job and hands back a :class:`BatchJob`.
Each item's custom id is ``fmclient-<index>``, so input order is recovered from the results alone
and a job can be re-attached from another process with ``client.batch_job(job.id, model=...)``.

Results are parsed by the adapter's own response parser: each slot holds a
:class:`~fmclient.types.Completion` or the typed fmclient error the item ended with (an item the
provider never ran because the job expired or was cancelled gets :class:`BatchItemExpiredError`
or :class:`BatchItemCancelledError`).

Every argument ``complete()`` takes means the same here: the request fields (``system``,
``reasoning``, ``response_format``...) go through the same validation into a ``Request``, the
model's profile is checked before anything is uploaded, and the rest are provider options, as in
``complete()``. Arguments that steer one live call (``timeout``, ``max_retries``, ``fallbacks``,
``stream``) have no meaning for a job and are refused, not dropped.

A job that fails as a whole (OpenAI refusing its input file, a Gemini or Bedrock job that
fails) still gives one slot per input, each a :class:`BatchJobFailedError` with the provider's
reason; an item the finished job has no result for gets :class:`BatchItemMissingError`.

Per-provider translation lives in ``fmclient.providers.batch_<type>``; this module holds what
they share. Submitting is never retried (a retried submission could run and bill the job twice);
status polls are plain reads.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fmclient import _validation
from fmclient.errors import (
    BatchItemCancelledError,
    BatchItemExpiredError,
    BatchItemMissingError,
    BatchJobFailedError,
    ConfigurationError,
    FMClientError,
    RequestTimeoutError,
    StructuredOutputError,
    UnsupportedFeatureError,
)
from fmclient.types import Completion, Request, ResponseFormat

if TYPE_CHECKING:
    from fmclient._engine import Engine, Route
    from fmclient.providers.base import Provider

__all__ = ["BatchJob", "BatchResult", "BatchState", "BatchStatus", "custom_id", "index_of"]

BatchState = Literal["validating", "in_progress", "completed", "failed", "expired", "cancelled"]
BatchResult = Completion | FMClientError

_PREFIX = "fmclient-"
#: consecutive retryable failures of a status poll that wait() rides out before raising
MAX_POLL_FAILURES = 5
_DONE: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})
# The Request's own fields are exactly what the one validation (build_request) takes, so an argument
# complete() gains is a request field here too; the rest are provider options, as in complete().
_REQUEST_ARGS = frozenset(inspect.signature(_validation.build_request).parameters) - {
    "prompt",
    "model",
    "provider_options",
    "timeout",
}
# complete()'s arguments that steer one live call: a job has no deadline, retries or fallbacks of
# fmclient's, and its answers are never streamed.
_CALL_ONLY_ARGS = ("timeout", "max_retries", "fallbacks", "stream")


def custom_id(index: int) -> str:
    return f"{_PREFIX}{index}"


def index_of(value: str | None) -> int | None:
    """The input index a custom id stands for, or None for one fmclient did not write."""
    if not value or not value.startswith(_PREFIX) or not value[len(_PREFIX) :].isdigit():
        return None
    return int(value[len(_PREFIX) :])


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """Where a job stands. Counts are None where the provider does not report them (yet)."""

    state: BatchState
    total: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    #: the provider's own status word (``in_progress``, ``ended``, ``JOB_STATE_RUNNING``, ``InProgress``...)
    provider_status: str = ""
    message: str | None = None

    @property
    def done(self) -> bool:
        return self.state in _DONE

    @property
    def finished(self) -> int | None:
        if self.succeeded is None and self.failed is None:
            return None
        return (self.succeeded or 0) + (self.failed or 0)


class BatchBackend(Protocol):
    """What one provider's batch module implements over its adapter's SDK client."""

    def submit(self, requests: Sequence[Request]) -> str: ...

    def status(self, job_id: str) -> BatchStatus: ...

    def results(self, job_id: str, status: BatchStatus) -> dict[int, BatchResult]: ...

    def cancel(self, job_id: str) -> None: ...


def backend_for(provider: Provider, model: str) -> BatchBackend:
    """The batch translation of an adapter, imported on first use."""
    import importlib

    kind = provider.settings.type
    modules = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini", "bedrock": "bedrock"}
    if kind not in modules:
        raise UnsupportedFeatureError(
            f"provider batch APIs are supported for OpenAI, Anthropic, Gemini and Bedrock, not {kind!r}",
            provider=provider.name,
            model=model,
        )
    module = importlib.import_module(f"fmclient.providers.batch_{modules[kind]}")
    backend: BatchBackend = module.Backend(provider, model)
    return backend


class BatchJob:
    """A submitted provider batch job. ``id`` is the provider's own job id."""

    def __init__(
        self,
        client: Engine,
        route: Route,
        backend: BatchBackend,
        job_id: str,
        model: str,
        *,
        submitted: int | None = None,
        response_format: ResponseFormat | None = None,
    ) -> None:
        self._client = client
        self._route = route
        self._backend = backend
        self.id = job_id
        #: the model name as given to submit_batch (alias or ``provider/model``), for batch_job()
        self.model = model
        self.provider = route.target.provider
        # How many inputs went in, when this process submitted them: every one gets a slot even
        # when the provider reports no counts (a job refused as a whole reports zeros).
        self._submitted = submitted
        # Checked on every answer, as complete() checks it (Completion.parsed, StructuredOutputError).
        self._response_format = response_format

    def __repr__(self) -> str:
        return f"<BatchJob {self.id!r} provider={self.provider!r} model={self.model!r}>"

    def status(self) -> BatchStatus:
        return self._backend.status(self.id)

    def wait(
        self,
        *,
        poll_interval: float = 30.0,
        timeout: float | None = None,
        progress: Callable[[BatchStatus], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> BatchStatus:
        """Poll until the job is done; ``progress`` gets every status seen. Raises
        :class:`RequestTimeoutError` after ``timeout`` seconds (the job keeps running)."""
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        deadline = None if timeout is None else clock() + timeout
        transient = 0
        while True:
            try:
                status = self.status()
            except FMClientError as error:
                # A poll is a read: a passing outage (429, 5xx, reset) must not end a day-long wait.
                transient += 1
                if not error.retryable or transient > MAX_POLL_FAILURES:
                    raise
                if deadline is not None and clock() + poll_interval > deadline:
                    raise
                sleep(poll_interval)
                continue
            transient = 0
            if progress is not None:
                progress(status)
            if status.done:
                return status
            if deadline is not None and clock() + poll_interval > deadline:
                raise RequestTimeoutError(
                    f"batch job {self.id} is still {status.state} after {timeout} s; wait() again or batch_job() later",
                    provider=self.provider,
                    model=self._route.target.model,
                )
            sleep(poll_interval)

    def results(self) -> list[BatchResult]:
        """One result per input, in input order. Raises if the job is not done yet."""
        status = self.status()
        if not status.done:
            raise FMClientError(
                f"batch job {self.id} is still {status.state}: wait() for it first",
                provider=self.provider,
                model=self._route.target.model,
            )
        found = self._backend.results(self.id, status)
        counts = [n for n in (status.total, self._submitted) if n is not None]
        total = max([*counts, max(found) + 1 if found else 0])
        model = self._route.target.model
        out: list[BatchResult] = []
        for index in range(total):
            item = found.get(index)
            if item is None:
                item = _unfinished(status, self.id, self.provider, model)
            elif isinstance(item, Completion):
                _price_batch(self._client, self._route, item)
                if self._response_format is not None and item.parsed is None:
                    try:
                        _validation.parse_structured(item, self._response_format)
                    except StructuredOutputError as error:
                        item = error  # what complete() raises for the same reply
            out.append(item)
        return out

    def cancel(self) -> BatchStatus:
        """Ask the provider to stop the job; items already finished keep their results."""
        self._backend.cancel(self.id)
        return self.status()


def _unfinished(status: BatchStatus, job_id: str, provider: str, model: str) -> FMClientError:
    """The error of an item the finished job has no result for, by how the job ended."""
    if status.state == "cancelled":
        return BatchItemCancelledError(
            f"batch job {job_id} was cancelled before this item ran", provider=provider, model=model
        )
    if status.state == "failed":
        return BatchJobFailedError(
            f"batch job {job_id} failed before this item ran: {status.message or status.provider_status}",
            provider=provider,
            model=model,
        )
    if status.state == "expired":
        return BatchItemExpiredError(f"batch job {job_id} expired before this item ran", provider=provider, model=model)
    return BatchItemMissingError(
        f"batch job {job_id} is {status.state} but its results hold nothing for this item",
        provider=provider,
        model=model,
    )


def _price_batch(client: Engine, route: Route, completion: Completion) -> None:
    """Price a result at the provider's batch rate (genai-prices' ``processing=batch`` variant)."""
    from fmclient.pricing import PriceRef, price_batch_usage

    target = route.target
    settings = client.settings.provider_settings(target.provider)
    base_url = settings.base_url or client.endpoint_of(target.provider)  # OPENAI_BASE_URL included
    ref = PriceRef(settings.type, base_url, client.settings.prices.get(target.provider))
    completion._priced = price_batch_usage(ref, (completion.model, target.model), completion.usage, time.time())


def _split_args(call_args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    params = {k: v for k, v in call_args.items() if k in _REQUEST_ARGS}
    options = {k: v for k, v in call_args.items() if k not in _REQUEST_ARGS}
    for refused in _CALL_ONLY_ARGS:
        if options.pop(refused, None) is not None:
            raise UnsupportedFeatureError(
                f"{refused!r} steers one live call and does not apply to a provider batch job "
                "(it runs at the provider, with no deadline, retries or fallbacks of fmclient's)"
            )
    return params, options


def _refuse_rewriting_hooks(client: Engine) -> None:
    """A ``before_request`` hook is where guardrails and redaction live, and it sees live calls
    only: a job sent past it would carry what the hook would have changed or refused."""
    from fmclient.hooks import Hook

    rewriting = [
        type(hook).__name__
        for hook in client.hooks
        if getattr(type(hook), "before_request", Hook.before_request) is not Hook.before_request
    ]
    if rewriting:
        raise UnsupportedFeatureError(
            f"this client's before_request hook(s) {', '.join(rewriting)} cannot see a provider batch job's "
            "requests (hooks run around live calls); use client.batch(...), which makes each call through "
            "them, or a client without them"
        )


def submit_batch(client: Engine, inputs: Iterable[Any], model: str | None, call_args: Mapping[str, Any]) -> BatchJob:
    name = model or client.settings.default_model
    if not isinstance(name, str):
        raise ConfigurationError("submit_batch needs a model (model=... or a default model)")
    if isinstance(inputs, (str, bytes, Mapping)):
        # Iterating one prompt would submit each of its characters (or keys) as a prompt.
        raise TypeError("inputs must be a sequence of prompts (str or message list), not a single prompt")
    params, options = _split_args(call_args)
    _refuse_rewriting_hooks(client)
    route = client.route(name, None)
    requests = []
    for prompt in inputs:
        # The same validation and profile checks as complete(): bad input fails before any upload.
        request = _validation.build_request(prompt, model=route.target.model, provider_options=options, **params)
        requests.append(client.prepare(route, request, streaming=False))
    if not requests:
        raise ValueError("submit_batch needs at least one input")
    backend = backend_for(route.provider, route.target.model)
    job_id = backend.submit(requests)
    return BatchJob(
        client,
        route,
        backend,
        job_id,
        name,
        submitted=len(requests),
        response_format=requests[0].response_format,
    )


def batch_job(client: Engine, job_id: str, model: str | None, response_format: Any = None) -> BatchJob:
    name = model or client.settings.default_model
    if not isinstance(name, str) or not isinstance(job_id, str) or not job_id:
        raise ConfigurationError("batch_job needs the job id and the model it was submitted with")
    route = client.route(name, None)
    # Reattaching sends nothing to the model: a job submitted before its model retired still
    # gives its results.
    route.ensure_ready(route.target.model, sending=False)
    checked = _validation.response_format_from_input(response_format)
    backend = backend_for(route.provider, route.target.model)
    return BatchJob(client, route, backend, job_id, name, response_format=checked)
