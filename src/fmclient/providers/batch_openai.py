"""OpenAI Batch API: a JSONL file of ``/v1/chat/completions`` bodies, uploaded and run as a batch.

Each line's body is what :meth:`OpenAIProvider.complete` would send (the same ``build_params``);
each output line's body is parsed by the same ``parse_response``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fmclient.errors import FMClientError, UnsupportedFeatureError, error_for_status
from fmclient.provider_batch import BatchResult, BatchState, BatchStatus, custom_id, index_of
from fmclient.providers.openai import OpenAIProvider, parse_response
from fmclient.types import Request

ENDPOINT: Final = "/v1/chat/completions"
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


def batch_line(body: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One JSONL line: the chat body as the SDK would send it (``extra_body`` merged in)."""
    body = dict(body)
    body.pop("timeout", None)
    for key in _TRANSPORT_ONLY:
        if body.get(key):
            raise UnsupportedFeatureError(f"{key} cannot be sent in a batch line")
        body.pop(key, None)
    body.update(body.pop("extra_body", None) or {})
    return {"custom_id": custom_id(index), "method": "POST", "url": ENDPOINT, "body": body}


def parse_status(batch: Mapping[str, Any]) -> BatchStatus:
    counts = batch.get("request_counts") or {}
    errors = (batch.get("errors") or {}).get("data") or []
    failed = counts.get("failed")
    completed = counts.get("completed")
    return BatchStatus(
        state=_STATES.get(str(batch.get("status")), "in_progress"),
        total=counts.get("total") or None,
        succeeded=None if completed is None else completed,
        failed=failed,
        provider_status=str(batch.get("status")),
        message="; ".join(str(e.get("message")) for e in errors) or None,
    )


def parse_output_line(line: Mapping[str, Any], *, provider: str, model: str) -> tuple[int | None, BatchResult]:
    """An output or error file line -> (input index, Completion or typed error)."""
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
    completion = parse_response(body, provider=provider, model=model)
    completion.request_id = response.get("request_id")
    return index, completion


class Backend:
    def __init__(self, provider: OpenAIProvider, model: str) -> None:
        self.provider = provider
        self.model = model

    def _errors(self) -> Any:
        return self.provider._errors(self.model)

    def submit(self, requests: Sequence[Request]) -> str:
        lines = [batch_line(self.provider._chat_kwargs(r, stream=False), i) for i, r in enumerate(requests)]
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        client = self.provider._sync_client()
        with self._errors():
            uploaded = client.files.create(file=("fmclient-batch.jsonl", io.BytesIO(data)), purpose="batch")
            batch = client.batches.create(
                input_file_id=uploaded.id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={"fmclient_items": str(len(lines))},
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
        found: dict[int, BatchResult] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.get(key)
            if not file_id:
                continue
            with self._errors():
                text = client.files.content(file_id).text
            for raw in text.splitlines():
                if raw.strip():
                    index, result = parse_output_line(json.loads(raw), provider=self.provider.name, model=self.model)
                    if index is not None:
                        found[index] = result
        return found

    def cancel(self, job_id: str) -> None:
        with self._errors():
            self.provider._sync_client().batches.cancel(job_id)
