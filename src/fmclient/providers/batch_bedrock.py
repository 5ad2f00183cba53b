"""Bedrock batch inference: ``CreateModelInvocationJob`` over S3, Converse-shaped records.

Each input record is ``{"recordId": "fmclient-<i>", "modelInput": <converse params>}`` with the
params the adapter's ``build_converse_params`` makes for a normal call (``modelId`` aside: the job
names the model), and the job runs with ``modelInvocationType="Converse"``, so each output
record's ``modelOutput`` is a Converse response, parsed by ``parse_converse_response``.

Settings, in ``[providers.<name>]``: ``batch_s3_uri`` (``s3://bucket/prefix``: input is written
under it, output read from ``<prefix>/output/<job id>/``) and ``batch_role_arn`` (the service role
Bedrock assumes to read and write there). The S3 client honours ``AWS_ENDPOINT_URL_S3``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fmclient.errors import ConfigurationError, FMClientError, UnsupportedFeatureError, error_for_status
from fmclient.provider_batch import BatchResult, BatchState, BatchStatus, custom_id, index_of
from fmclient.providers.base import import_sdk
from fmclient.providers.bedrock import (
    BedrockProvider,
    build_converse_params,
    map_error,
    parse_converse_response,
    structured_tool_name,
)
from fmclient.providers.shared_io import MappedErrors
from fmclient.secret import register_secret
from fmclient.types import Request

_STATES: dict[str, BatchState] = {
    "Submitted": "validating",
    "Validating": "validating",
    "Scheduled": "validating",
    "InProgress": "in_progress",
    "Stopping": "in_progress",
    "Completed": "completed",
    "PartiallyCompleted": "completed",
    "Failed": "failed",
    "Stopped": "cancelled",
    "Expired": "expired",
}
_ERROR_CODES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ConfigurationError(f"batch_s3_uri must look like s3://bucket/prefix, got {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def _wire_json(value: Any) -> Any:
    """Converse params as botocore puts them on the wire: blobs (image, document and video bytes,
    redacted reasoning) base64-encoded, so a record holds what ``converse`` would send."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {k: _wire_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire_json(v) for v in value]
    return value


def record(params: Mapping[str, Any], index: int) -> dict[str, Any]:
    model_input = {k: _wire_json(v) for k, v in params.items() if k != "modelId"}
    return {"recordId": custom_id(index), "modelInput": model_input}


def parse_status(job: Mapping[str, Any]) -> BatchStatus:
    status = str(job.get("status"))

    def count(key: str) -> int | None:
        value = job.get(key)
        return None if value is None else int(value)

    return BatchStatus(
        state=_STATES.get(status, "in_progress"),
        total=count("totalRecordCount"),
        succeeded=count("successRecordCount"),
        failed=count("errorRecordCount"),
        provider_status=status,
        message=job.get("message"),
    )


def parse_record(line: Mapping[str, Any], *, provider: str, model: str) -> tuple[int | None, BatchResult]:
    index = index_of(line.get("recordId"))
    error = line.get("error")
    if error:
        status = int(error.get("errorCode") or 500)
        message = str(error.get("errorMessage") or "batch record failed")
        result: FMClientError = error_for_status(status, message, provider=provider, model=model)
        return index, result
    output = line.get("modelOutput")
    if not isinstance(output, Mapping):
        return index, error_for_status(500, "batch record has no modelOutput", provider=provider, model=model)
    try:
        return index, parse_converse_response(output, provider=provider, model=model)
    except FMClientError as malformed:  # that item's own error, not the whole job's
        return index, malformed


class Backend:
    def __init__(self, provider: BedrockProvider, model: str) -> None:
        options = provider.settings.options
        uri, role = options.get("batch_s3_uri"), options.get("batch_role_arn")
        if not isinstance(uri, str) or not isinstance(role, str) or not uri or not role:
            raise ConfigurationError(
                f"Bedrock batch inference needs batch_s3_uri (s3://bucket/prefix) and batch_role_arn "
                f"(the service role Bedrock assumes) in [providers.{provider.name}]",
                provider=provider.name,
                model=model,
            )
        self.bucket, self.prefix = split_s3_uri(uri)
        self.role_arn = role
        self.provider = provider
        self.model = model
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        with self._lock:
            found = self._clients.get(service)
            if found is None:
                boto3 = import_sdk("boto3", extra="bedrock", provider=self.provider.name)
                from botocore.config import Config

                settings = self.provider.settings
                region = settings.region or os.environ.get("AWS_REGION") or None
                session = boto3.Session(profile_name=settings.profile, region_name=region)
                credentials = session.get_credentials()
                if credentials is not None:  # never echoed in clear, wherever they came from
                    register_secret(credentials.secret_key)
                    register_secret(credentials.token)
                # The control plane shares the runtime's endpoint override (one fake serves both in
                # tests); S3 takes boto3's own AWS_ENDPOINT_URL_S3.
                endpoint = self.provider._endpoint_url if service == "bedrock" else None
                config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="fmclient")
                found = self._clients[service] = session.client(service, config=config, endpoint_url=endpoint)
            return found

    def _errors(self) -> MappedErrors:
        return MappedErrors(
            lambda exc: map_error(exc, self.provider.name, self.model), provider=self.provider.name, model=self.model
        )

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def submit(self, requests: Sequence[Request]) -> str:
        lines = []
        for index, request in enumerate(requests):
            self.provider._check_chat_model(request)
            if self.provider._uses_titan_invoke(request):
                # complete() sends Titan Text's own InvokeModel body; this job runs Converse records.
                raise UnsupportedFeatureError(
                    "Titan Text goes through InvokeModel in complete(), but a Bedrock batch job here runs "
                    "Converse records: pass api='converse' to send the Converse request in both",
                    provider=self.provider.name,
                    model=self.model,
                )
            if structured_tool_name(request) is not None:
                # The answer would come back as a tool call only this request knows to unwrap;
                # a re-attached job could not tell, so it is refused rather than half-parsed.
                raise UnsupportedFeatureError(
                    "response_format through a tool (this model has no native structured output) "
                    "is not supported in a Bedrock batch job",
                    provider=self.provider.name,
                    model=self.model,
                )
            lines.append(record(build_converse_params(request, provider=self.provider.name), index))
        name = f"fmclient-{uuid.uuid4().hex[:16]}"
        input_key = self._key("input", f"{name}.jsonl")
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        with self._errors():
            self._client("s3").put_object(Bucket=self.bucket, Key=input_key, Body=body)
            answer = self._client("bedrock").create_model_invocation_job(
                jobName=name,
                roleArn=self.role_arn,
                modelId=self.model,
                modelInvocationType="Converse",
                inputDataConfig={
                    "s3InputDataConfig": {"s3Uri": f"s3://{self.bucket}/{input_key}", "s3InputFormat": "JSONL"}
                },
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{self.bucket}/{self._key('output')}/"}},
            )
        return str(answer["jobArn"])

    def _job(self, job_id: str) -> dict[str, Any]:
        with self._errors():
            job: dict[str, Any] = self._client("bedrock").get_model_invocation_job(jobIdentifier=job_id)
        return job

    def status(self, job_id: str) -> BatchStatus:
        job = self._job(job_id)
        found = parse_status(job)
        if found.total is None or (found.done and not found.total):
            # Older jobs report no counts, and a job that failed validation reports zeros: the
            # input file says how many records there were, so every one gets its slot.
            input_uri = job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
            bucket, key = split_s3_uri(input_uri)
            with self._errors():
                text = self._client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            total = sum(1 for line in text.splitlines() if line.strip())
            found = BatchStatus(found.state, total, found.succeeded, found.failed, found.provider_status, found.message)
        return found

    def results(self, job_id: str, status: BatchStatus) -> dict[int, BatchResult]:
        job = self._job(job_id)
        input_uri = job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        output_uri = job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        bucket, output_prefix = split_s3_uri(output_uri)
        file_name = input_uri.rsplit("/", 1)[-1]
        # Bedrock writes <output prefix>/<job id>/<input file name>.out.
        key = f"{output_prefix}/{job_id.rsplit('/', 1)[-1]}/{file_name}.out".lstrip("/")
        s3 = self._client("s3")
        found: dict[int, BatchResult] = {}
        with self._errors():
            try:
                text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            except s3.exceptions.NoSuchKey:
                return found  # nothing ran (stopped or expired early): every slot gets its error
        for raw in text.splitlines():
            if raw.strip():
                index, result = parse_record(json.loads(raw), provider=self.provider.name, model=self.model)
                if index is not None:
                    found[index] = result
        return found

    def cancel(self, job_id: str) -> None:
        with self._errors():
            self._client("bedrock").stop_model_invocation_job(jobIdentifier=job_id)
