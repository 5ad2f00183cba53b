"""Gemini batch mode (Gemini Developer API): inlined ``generateContent`` requests.

Each inlined request holds the ``contents`` and ``config`` the adapter's ``build_params`` makes for
a normal call, keyed by ``metadata.key = fmclient-<index>``; each inlined response is parsed by
the adapter's ``parse_response``. The job's display name records the item count, so a re-attached
job knows which items never ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fmclient.errors import FMClientError, UnsupportedFeatureError, error_for_status
from fmclient.profiles import profile_for
from fmclient.provider_batch import BatchResult, BatchState, BatchStatus, custom_id, index_of
from fmclient.providers._gemini_files import parts_to_upload
from fmclient.providers.gemini import GeminiProvider, build_params, map_error, parse_response
from fmclient.providers.shared_io import MappedErrors
from fmclient.types import Request

_STATES: dict[str, BatchState] = {
    "JOB_STATE_PENDING": "validating",
    "JOB_STATE_QUEUED": "validating",
    "JOB_STATE_RUNNING": "in_progress",
    "JOB_STATE_CANCELLING": "in_progress",
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "expired",
}
# google.rpc.Code -> the HTTP status the same failure has on a normal call.
_RPC_STATUS = {1: 499, 3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 13: 500, 14: 503, 16: 401}
_DISPLAY_PREFIX = "fmclient-batch-"
# GenerateContentConfig fields that steer the SDK on this machine and have no place in a job.
_CLIENT_SIDE = ("automatic_function_calling", "http_options")


def inlined_request(params: Mapping[str, Any], index: int) -> dict[str, Any]:
    config = {k: v for k, v in dict(params.get("config") or {}).items() if k not in _CLIENT_SIDE}
    return {"contents": params["contents"], "config": config, "metadata": {"key": custom_id(index)}}


def display_name(count: int) -> str:
    return f"{_DISPLAY_PREFIX}{count}"


def parse_status(job: Any) -> BatchStatus:
    state_name = str(getattr(job.state, "value", job.state) or "")
    name = job.display_name or ""
    total = (
        int(name[len(_DISPLAY_PREFIX) :])
        if name.startswith(_DISPLAY_PREFIX) and name[len(_DISPLAY_PREFIX) :].isdigit()
        else None
    )
    responses = list(getattr(job.dest, "inlined_responses", None) or []) if job.dest else []
    failed = sum(1 for r in responses if r.error is not None)
    error = getattr(job, "error", None)
    return BatchStatus(
        state=_STATES.get(state_name, "in_progress"),
        total=total,
        succeeded=len(responses) - failed if responses else None,
        failed=failed if responses else None,
        provider_status=state_name,
        message=str(getattr(error, "message", "") or "") or None,
    )


def parse_inlined(response: Any, position: int, *, provider: str, model: str) -> tuple[int | None, BatchResult]:
    """An inlined response -> (input index, result). Without our metadata key, its position counts."""
    metadata = response.metadata or {}
    index = index_of(metadata.get("key")) if isinstance(metadata, Mapping) else None
    index = position if index is None else index
    error = response.error
    if error is not None:
        code = int(getattr(error, "code", None) or 13)
        message = str(getattr(error, "message", None) or "batch request failed")
        result: FMClientError = error_for_status(_RPC_STATUS.get(code, 500), message, provider=provider, model=model)
        return index, result
    if response.response is None:
        return index, error_for_status(
            500, "the batch output has neither a response nor an error", provider=provider, model=model
        )
    try:
        return index, parse_response(response.response, provider=provider, model=model)
    except FMClientError as blocked:
        return index, blocked


class Backend:
    def __init__(self, provider: GeminiProvider, model: str) -> None:
        if provider._vertex():
            raise UnsupportedFeatureError(
                "Gemini batch mode with inlined requests is the Gemini Developer API's; Vertex AI batch "
                "prediction (GCS/BigQuery input) is not supported by submit_batch",
                provider=provider.name,
                model=model,
            )
        self.provider = provider
        self.model = model

    def _errors(self) -> MappedErrors:
        return MappedErrors(
            lambda exc: map_error(exc, self.provider.name, self.model), provider=self.provider.name, model=self.model
        )

    def submit(self, requests: Sequence[Request]) -> str:
        inlined = []
        for index, request in enumerate(requests):
            if request.provider_options.get("http_options"):
                # Headers, base URL or extra_body for one live call: an inlined request has no place
                # for them, and dropping them would send something else than complete() does.
                raise UnsupportedFeatureError(
                    "http_options steer one live call and cannot be sent in a Gemini batch job",
                    provider=self.provider.name,
                    model=self.model,
                )
            prepared = self.provider._prepare(request)  # the adapter's own checks of what it would send
            limit = profile_for(request.model, "gemini").max_inline_media_bytes
            if limit is not None and parts_to_upload(prepared["contents"], limit):
                # A live call uploads such media through the Files API; a batch job is sent later,
                # from inlined requests, and is not given uploads that may expire before it runs.
                raise UnsupportedFeatureError(
                    f"request {index} carries more than {limit:,} bytes of inline media, which a Gemini "
                    "batch job cannot inline: send it with complete() (which uploads it through the Files API)",
                    provider=self.provider.name,
                    model=self.model,
                )
            inlined.append(inlined_request(build_params(request, self.provider.name), index))
        with self._errors():
            job = self.provider._sdk().batches.create(
                model=self.model,
                src=inlined,  # type: ignore[arg-type]  # plain dicts of InlinedRequest's fields
                config={"display_name": display_name(len(inlined))},
            )
        return str(job.name)

    def _get(self, job_id: str) -> Any:
        with self._errors():
            return self.provider._sdk().batches.get(name=job_id)

    def status(self, job_id: str) -> BatchStatus:
        return parse_status(self._get(job_id))

    def results(self, job_id: str, status: BatchStatus) -> dict[int, BatchResult]:
        job = self._get(job_id)
        responses = list(getattr(job.dest, "inlined_responses", None) or []) if job.dest else []
        found: dict[int, BatchResult] = {}
        for position, response in enumerate(responses):
            index, result = parse_inlined(response, position, provider=self.provider.name, model=self.model)
            if index is not None:
                found[index] = result
        return found

    def cancel(self, job_id: str) -> None:
        with self._errors():
            self.provider._sdk().batches.cancel(name=job_id)
