"""OpenAI Batch API: a JSONL file of request bodies, uploaded and run as a batch.

Each line's body is what :meth:`OpenAIProvider.complete` would send for the same request: a
``/v1/chat/completions`` body (``build_params``), or a ``/v1/responses`` body for a model whose
profile selects the Responses API (or with ``api="responses"``), each line's ``url`` and the
batch's ``endpoint`` naming it. Each output line's body is parsed by the same endpoint's parser.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from fmclient.errors import BatchJobFailedError, FMClientError, UnsupportedFeatureError, error_for_status
from fmclient.provider_batch import BatchResult, BatchState, BatchStatus, custom_id, index_of
from fmclient.providers.openai import OpenAIProvider, parse_response
from fmclient.types import Completion, Request

CHAT_ENDPOINT: Final = "/v1/chat/completions"
RESPONSES_ENDPOINT: Final = "/v1/responses"
#: kept for callers of the older name: the Chat Completions endpoint
ENDPOINT: Final = CHAT_ENDPOINT
# The item count fmclient records in the batch's metadata, so every input gets a slot even when
# the provider counts nothing (a batch refused at validation reports zeros).
ITEMS_KEY: Final = "fmclient_items"
_STATES: dict[str, BatchState] = {
    "validating": "validating",
    "in_progress": "in_progress",
    "finalizing": "in_progress",
    "cancelling": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
# SDK keyword arguments that are not part of the JSON body; a batch line cannot carry them.
_TRANSPORT_ONLY = ("extra_headers", "extra_query")


def batch_line(body: Mapping[str, Any], index: int, endpoint: str = CHAT_ENDPOINT) -> dict[str, Any]:
    """One JSONL line: the body as the SDK would send it to ``endpoint`` (``extra_body`` merged in)."""
    body = dict(body)
    body.pop("timeout", None)
    for key in _TRANSPORT_ONLY:
        if body.get(key):
            raise UnsupportedFeatureError(f"{key} cannot be sent in a batch line")
        body.pop(key, None)
    body.update(body.pop("extra_body", None) or {})
    return {"custom_id": custom_id(index), "method": "POST", "url": endpoint, "body": body}


def _submitted(batch: Mapping[str, Any]) -> int | None:
    value = str((batch.get("metadata") or {}).get(ITEMS_KEY) or "")
    return int(value) if value.isdigit() else None


def parse_status(batch: Mapping[str, Any]) -> BatchStatus:
    counts = batch.get("request_counts") or {}
    errors = (batch.get("errors") or {}).get("data") or []
    failed = counts.get("failed")
    completed = counts.get("completed")
    total = counts.get("total") or None
    submitted = _submitted(batch)
    if submitted is not None and (total is None or submitted > total):
        total = submitted
    return BatchStatus(
        state=_STATES.get(str(batch.get("status")), "in_progress"),
        total=total,
        succeeded=None if completed is None else completed,
        failed=failed,
        provider_status=str(batch.get("status")),
        message="; ".join(_error_text(e) for e in errors) or None,
    )


def _error_text(error: Mapping[str, Any]) -> str:
    code, message = error.get("code"), error.get("message")
    return f"{code}: {message}" if code else str(message)


def validation_errors(batch: Mapping[str, Any], *, provider: str, model: str) -> dict[int, BatchResult]:
    """A batch refused as a whole names the input lines at fault (1-based ``line``): those items
    get the error of their own line; the job's other items are left to its overall reason."""
    found: dict[int, BatchResult] = {}
    for error in (batch.get("errors") or {}).get("data") or []:
        line = error.get("line")
        if isinstance(line, int) and line >= 1:
            text = f"batch {batch.get('id')} was refused: line {line} of its input: {_error_text(error)}"
            found[line - 1] = BatchJobFailedError(text, provider=provider, model=model)
    return found


def parse_output_line(
    line: Mapping[str, Any],
    *,
    provider: str,
    model: str,
    parse: Callable[..., Completion] = parse_response,
) -> tuple[int | None, BatchResult]:
    """An output or error file line -> (input index, Completion or typed error); ``parse`` is the
    endpoint's own response parser (Chat Completions' or the Responses API's)."""
    index = index_of(line.get("custom_id"))
    response = line.get("response") or {}
    error = line.get("error")
    if error:
        code = str(error.get("code") or "")
        message = str(error.get("message") or code or "batch item failed")
        if code == "batch_expired":
            from fmclient.errors import BatchItemExpiredError

            return index, BatchItemExpiredError(message, provider=provider, model=model)
        if code == "batch_cancelled":
            from fmclient.errors import BatchItemCancelledError

            return index, BatchItemCancelledError(message, provider=provider, model=model)
        return index, FMClientError(f"{code}: {message}", provider=provider, model=model)
    status = int(response.get("status_code") or 0)
    body = response.get("body") or {}
    if status != 200:
        detail = body.get("error") if isinstance(body, Mapping) else None
        message = str((detail or {}).get("message") or body)
        result: FMClientError = error_for_status(status, message, provider=provider, model=model)
        return index, result
    try:
        completion = parse(body, provider=provider, model=model)
    except FMClientError as failed:  # a failed or refused response: that item's own error
        return index, failed
    completion.request_id = response.get("request_id")
    return index, completion


def parser_for(endpoint: str) -> Callable[..., Completion]:
    if endpoint == RESPONSES_ENDPOINT:
        from fmclient.providers._openai_responses import parse_responses_body

        return parse_responses_body
    return parse_response


class Backend:
    def __init__(self, provider: OpenAIProvider, model: str) -> None:
        self.provider = provider
        self.model = model

    def _errors(self) -> Any:
        return self.provider._errors(self.model)

    def _line(self, request: Request, index: int) -> dict[str, Any]:
        if self.provider.uses_responses(request):
            return batch_line(self.provider._responses_kwargs(request, stream=False), index, RESPONSES_ENDPOINT)
        return batch_line(self.provider._chat_kwargs(request, stream=False), index, CHAT_ENDPOINT)

    def submit(self, requests: Sequence[Request]) -> str:
        self.provider.check_ready(self.model)  # the SDK parameter tables the bodies are built with
        lines = [self._line(r, i) for i, r in enumerate(requests)]
        endpoints = {line["url"] for line in lines}
        if len(endpoints) != 1:
            # One batch runs against one endpoint; every line must name it.
            raise UnsupportedFeatureError(
                "these inputs would go to both the Chat Completions and the Responses API; a batch "
                "job takes one (pass api='chat' or api='responses')",
                provider=self.provider.name,
                model=self.model,
            )
        (endpoint,) = endpoints
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        client = self.provider._sync_client()
        with self._errors():
            uploaded = client.files.create(file=("fmclient-batch.jsonl", io.BytesIO(data)), purpose="batch")
            batch = client.batches.create(
                input_file_id=uploaded.id,
                endpoint=endpoint,
                completion_window="24h",
                metadata={ITEMS_KEY: str(len(lines))},
            )
        return str(batch.id)

    def _retrieve(self, job_id: str) -> dict[str, Any]:
        with self._errors():
            batch = self.provider._sync_client().batches.retrieve(job_id)
        dumped: dict[str, Any] = batch.model_dump()
        return dumped

    def status(self, job_id: str) -> BatchStatus:
        return parse_status(self._retrieve(job_id))

    def results(self, job_id: str, status: BatchStatus) -> dict[int, BatchResult]:
        batch = self._retrieve(job_id)
        client = self.provider._sync_client()
        parse = parser_for(str(batch.get("endpoint") or CHAT_ENDPOINT))
        found = validation_errors(batch, provider=self.provider.name, model=self.model)
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.get(key)
            if not file_id:
                continue
            with self._errors():
                text = client.files.content(file_id).text
            for raw in text.splitlines():
                if raw.strip():
                    index, result = parse_output_line(
                        json.loads(raw), provider=self.provider.name, model=self.model, parse=parse
                    )
                    if index is not None:
                        found[index] = result
        return found

    def cancel(self, job_id: str) -> None:
        with self._errors():
            self.provider._sync_client().batches.cancel(job_id)
