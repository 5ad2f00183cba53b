"""Anthropic Message Batches: each request's ``params`` are what ``messages.create`` would get
(the adapter's ``build_params``); each succeeded message is parsed by its ``parse_response``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fmclient.errors import (
    BatchItemCancelledError,
    BatchItemExpiredError,
    FMClientError,
    UnsupportedFeatureError,
    error_for_status,
)
from fmclient.provider_batch import BatchResult, BatchStatus, custom_id, index_of
from fmclient.providers.anthropic import AnthropicProvider, MalformedResponse, map_error, parse_response
from fmclient.providers.shared_io import MappedErrors
from fmclient.types import Request

# Anthropic's error types and the HTTP status each one comes with on a normal call.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


# create() keywords that are not part of the JSON body: a batch entry cannot carry them.
_TRANSPORT_ONLY = ("extra_headers", "extra_query")


def batch_request(params: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One entry of ``messages.batches.create(requests=[...])``: the create() body as JSON."""
    params = dict(params)
    params.pop("timeout", None)
    for key in _TRANSPORT_ONLY:
        if params.pop(key, None):
            raise UnsupportedFeatureError(f"{key} cannot be sent in a batch request (only its body is)")
    params.update(params.pop("extra_body", None) or {})
    return {"custom_id": custom_id(index), "params": params}


def parse_status(batch: Mapping[str, Any]) -> BatchStatus:
    counts = batch.get("request_counts") or {}
    processing = str(batch.get("processing_status"))
    succeeded = int(counts.get("succeeded") or 0)
    failed = sum(int(counts.get(k) or 0) for k in ("errored", "canceled", "expired"))
    total = succeeded + failed + int(counts.get("processing") or 0)
    if processing != "ended":
        state: Any = "in_progress"
    elif batch.get("cancel_initiated_at"):
        state = "cancelled"
    elif int(counts.get("expired") or 0):
        state = "expired"
    else:
        state = "completed"
    return BatchStatus(state, total or None, succeeded, failed, provider_status=processing)


def parse_result(item: Mapping[str, Any], *, provider: str, model: str) -> tuple[int | None, BatchResult]:
    index = index_of(item.get("custom_id"))
    result = item.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        try:
            return index, parse_response(result.get("message"), provider=provider, model=model)
        except (FMClientError, MalformedResponse) as malformed:  # that item's own error, not the job's
            return index, map_error(malformed, provider, model)
    if kind == "expired":
        return index, BatchItemExpiredError("the batch expired before this request ran", provider=provider, model=model)
    if kind == "canceled":
        return index, BatchItemCancelledError(
            "the batch was cancelled before this request ran", provider=provider, model=model
        )
    detail = ((result.get("error") or {}).get("error")) or {}
    error_type = str(detail.get("type") or "api_error")
    message = f"{error_type}: {detail.get('message') or 'batch request errored'}"
    error: FMClientError = error_for_status(_ERROR_STATUS.get(error_type, 500), message, provider=provider, model=model)
    return index, error


class Backend:
    def __init__(self, provider: AnthropicProvider, model: str) -> None:
        self.provider = provider
        self.model = model

    def _errors(self) -> MappedErrors:
        return MappedErrors(
            lambda exc: map_error(exc, self.provider.name, self.model), provider=self.provider.name, model=self.model
        )

    def submit(self, requests: Sequence[Request]) -> str:
        entries = [batch_request(self.provider._params(r), i) for i, r in enumerate(requests)]
        with self._errors():
            batch = self.provider._client().messages.batches.create(requests=entries)
        return str(batch.id)

    def status(self, job_id: str) -> BatchStatus:
        with self._errors():
            batch = self.provider._client().messages.batches.retrieve(job_id)
        return parse_status(batch.model_dump())

    def results(self, job_id: str, status: BatchStatus) -> dict[int, BatchResult]:
        found: dict[int, BatchResult] = {}
        with self._errors():
            for item in self.provider._client().messages.batches.results(job_id):
                index, result = parse_result(item.model_dump(), provider=self.provider.name, model=self.model)
                if index is not None:
                    found[index] = result
        return found

    def cancel(self, job_id: str) -> None:
        with self._errors():
            self.provider._client().messages.batches.cancel(job_id)
