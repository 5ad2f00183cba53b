"""Fakes of the four provider batch APIs, each speaking its wire format to the real SDK.

One small engine runs every fake's jobs the same way, so a test scripts outcomes once:

* a job finishes on its ``runs_after``-th status poll (default: the first);
* an item whose prompt contains ``FAIL`` errors (a 400 invalid-request of that provider);
* with ``expire_after = n`` only the first ``n`` items run and the job ends expired;
* a cancelled job runs nothing more;
* with ``fail = {"code", "message", "line"?}`` the job is refused as a whole when it would run
  (state failed, nothing run, the counts all zero where the provider reports them);
* custom ids in ``missing`` ran but are left out of the results (the counts still include them);
* a successful item answers ``echo: <its last user text>`` (or what ``answer`` makes of that text)
  with usage 10 in / 3 out.

The OpenAI fake takes ``/v1/chat/completions`` and ``/v1/responses`` batches; a line whose
``url`` is not the batch's endpoint fails the batch at validation, as OpenAI does.

``FakeOpenAIBatches``: ``POST /files`` (multipart JSONL upload), ``POST /batches``,
``GET /batches/{id}``, ``POST /batches/{id}/cancel``, ``GET /files/{id}/content``.
``FakeAnthropicBatches``: ``/v1/messages/batches`` create/retrieve/cancel and its JSONL
``results_url``. ``FakeGeminiBatches``: ``models/{m}:batchGenerateContent``, ``batches/{id}`` and
``batches/{id}:cancel`` with inlined responses. ``FakeBedrockBatches``: the Bedrock control
plane's ``/model-invocation-job`` routes; it reads the input from (moto) S3 and writes the output
``<output prefix>/<job id>/<input file>.out`` there, as Bedrock does.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.fakes import anthropic as anthropic_fake
from tests.fakes import gemini as gemini_fake
from tests.fakes.openai import Answer, completion_body, response_body
from tests.fakes.server import FakeServer, RecordedRequest, Reply

_ids = itertools.count(1)


@dataclass
class FakeJob:
    id: str
    items: list[tuple[str, Any]]  # (custom id, the request body as sent)
    extra: dict[str, Any] = field(default_factory=dict)
    polls: int = 0
    state: str = "running"  # running, ended, cancelled, expired, failed
    # custom id -> (True, answer text) | (False, error message); items never run are absent
    outcomes: dict[str, tuple[bool, str]] = field(default_factory=dict)


class BatchEngine:
    def __init__(self, prompt_text: Callable[[Any], str]) -> None:
        self.prompt_text = prompt_text
        self.jobs: dict[str, FakeJob] = {}
        self.runs_after = 1
        self.expire_after: int | None = None
        self.fail: dict[str, Any] | None = None
        self.missing: set[str] = set()
        #: what a successful item answers, from its prompt text
        self.answer: Callable[[str], str] = lambda text: f"echo: {text}"
        self.lock = threading.Lock()

    def create(self, prefix: str, items: list[tuple[str, Any]], **extra: Any) -> FakeJob:
        job = FakeJob(f"{prefix}{next(_ids):06d}", items, dict(extra))
        with self.lock:
            self.jobs[job.id] = job
        return job

    def poll(self, job_id: str) -> FakeJob | None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            job.polls += 1
            if job.state == "running" and job.polls >= self.runs_after:
                self._run(job)
            return job

    def cancel(self, job_id: str) -> FakeJob | None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is not None and job.state == "running":
                job.state = "cancelled"
            return job

    def _run(self, job: FakeJob) -> None:
        failure = job.extra.get("failure") or self.fail
        if failure is not None:
            job.extra["failure"] = failure
            job.state = "failed"
            return
        for index, (cid, body) in enumerate(job.items):
            if self.expire_after is not None and index >= self.expire_after:
                continue
            text = self.prompt_text(body)
            job.outcomes[cid] = (False, f"bad item: {text}") if "FAIL" in text else (True, self.answer(text))
        job.state = "expired" if self.expire_after is not None and self.expire_after < len(job.items) else "ended"

    def reported(self, job: FakeJob) -> list[tuple[str, tuple[bool, str]]]:
        """The outcomes the results file holds, in input order (``missing`` ones left out)."""
        return [(cid, job.outcomes[cid]) for cid, _ in job.items if cid in job.outcomes and cid not in self.missing]


def _last_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))


_OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/responses")


def _openai_prompt(body: Any) -> str:
    """The last user text of a Chat Completions body or a Responses body."""
    if "messages" in body:
        return _last_text(body["messages"][-1]["content"])
    items = body["input"]
    return items if isinstance(items, str) else _last_text(items[-1]["content"])


def _error(status: int, message: str) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": "invalid_request_error"}})


# -- OpenAI ---------------------------------------------------------------------------------------
class FakeOpenAIBatches:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.files: dict[str, bytes] = {}
        self.engine = BatchEngine(_openai_prompt)
        server.handler = self._handle

    def uploaded_lines(self) -> list[dict[str, Any]]:
        """Every line of every uploaded input file, in upload order."""
        return [json.loads(line) for data in self.files.values() for line in data.decode().splitlines() if line]

    def _handle(self, request: RecordedRequest) -> Reply:
        path = request.path.split("?")[0].removeprefix("/v1")
        parts = path.strip("/").split("/")
        if request.method == "POST" and path == "/files":
            return self._upload(request)
        if request.method == "POST" and path == "/batches":
            return self._create(request.json())
        if parts[0] == "batches" and len(parts) >= 2:
            if request.method == "POST" and parts[-1] == "cancel":
                job = self.engine.cancel(parts[1])
            else:
                job = self.engine.poll(parts[1])
            return Reply(body=self._batch(job)) if job else _error(404, f"no batch {parts[1]}")
        if parts[0] == "files" and parts[-1] == "content" and parts[1] in self.files:
            return Reply(body=self.files[parts[1]], content_type="application/octet-stream")
        return _error(404, f"Invalid URL ({request.method} {path})")

    def _upload(self, request: RecordedRequest) -> Reply:
        boundary = request.headers["content-type"].split("boundary=")[1].encode()
        fields: dict[str, bytes] = {}
        for part in request.body.split(b"--" + boundary):
            head, _, content = part.partition(b"\r\n\r\n")
            if b'name="' in head:
                name = head.split(b'name="')[1].split(b'"')[0].decode()
                fields[name] = content.removesuffix(b"\r\n")
        if fields.get("purpose") != b"batch":
            return _error(400, "purpose must be batch")
        file_id = f"file-{next(_ids):06d}"
        self.files[file_id] = fields["file"]
        body = {"id": file_id, "object": "file", "bytes": len(fields["file"]), "created_at": 1, "filename": "x"}
        return Reply(body={**body, "purpose": "batch", "status": "processed"})

    def _create(self, body: dict[str, Any]) -> Reply:
        data = self.files.get(body.get("input_file_id", ""))
        endpoint = body.get("endpoint")
        if data is None or endpoint not in _OPENAI_ENDPOINTS or body.get("completion_window") != "24h":
            return _error(400, "bad batch")
        lines = [json.loads(line) for line in data.decode().splitlines() if line]
        job = self.engine.create("batch_", [(line["custom_id"], line["body"]) for line in lines], **body)
        for number, line in enumerate(lines, 1):
            if line.get("url") != endpoint:
                message = f"The url {line.get('url')!r} does not match the batch endpoint {endpoint!r}."
                job.extra["failure"] = {"code": "mismatched_url", "message": message, "line": number}
                break
        return Reply(body=self._batch(job))

    def _batch(self, job: FakeJob | None) -> dict[str, Any]:
        assert job is not None
        status = {"running": "in_progress", "ended": "completed"}.get(job.state, job.state)
        output_id = error_id = None
        if job.state != "running":
            ok, bad = [], []
            for cid, (succeeded, text) in self.engine.reported(job):
                response: dict[str, Any]
                if succeeded:
                    answer_ = Answer(text=text, prompt_tokens=10, completion_tokens=3)
                    responses = job.extra["endpoint"] == "/v1/responses"
                    answer = response_body(answer_) if responses else completion_body(answer_)
                    response = {"status_code": 200, "request_id": f"req-{cid}", "body": answer}
                    ok.append({"id": f"br-{cid}", "custom_id": cid, "response": response, "error": None})
                else:
                    error = {"error": {"message": text, "type": "invalid_request_error", "code": None}}
                    response = {"status_code": 400, "request_id": f"req-{cid}", "body": error}
                    bad.append({"id": f"br-{cid}", "custom_id": cid, "response": response, "error": None})
            if job.state == "expired":
                for cid, _ in job.items:
                    if cid not in job.outcomes:
                        error = {
                            "code": "batch_expired",
                            "message": "This request could not be executed before the completion window expired.",
                        }
                        bad.append({"id": f"br-{cid}", "custom_id": cid, "response": None, "error": error})
            if ok:
                output_id = f"file-out-{job.id}"
                self.files[output_id] = "".join(json.dumps(x) + "\n" for x in ok).encode()
            if bad:
                error_id = f"file-err-{job.id}"
                self.files[error_id] = "".join(json.dumps(x) + "\n" for x in bad).encode()
        failed = sum(1 for ok_, _ in job.outcomes.values() if not ok_)
        failure = job.extra.get("failure") if job.state == "failed" else None
        errors = None
        if failure is not None:
            error = {"code": failure["code"], "message": failure["message"], "param": None, "line": failure.get("line")}
            errors = {"object": "list", "data": [error]}
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": job.extra["endpoint"],
            "errors": errors,
            "input_file_id": job.extra["input_file_id"],
            "completion_window": "24h",
            "status": status,
            "output_file_id": output_id,
            "error_file_id": error_id,
            "created_at": 1,
            # a batch refused at validation never counted its lines
            "request_counts": {
                "total": 0 if failure is not None else len(job.items),
                "completed": len(job.outcomes) - failed,
                "failed": failed,
            },
            "metadata": job.extra.get("metadata"),
        }


# -- Anthropic ------------------------------------------------------------------------------------
class FakeAnthropicBatches:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.engine = BatchEngine(lambda params: _last_text(params["messages"][-1]["content"]))
        server.handler = self._handle

    def _handle(self, request: RecordedRequest) -> Reply:
        path = request.path.split("?")[0]
        parts = path.strip("/").split("/")  # v1 messages batches {id} [cancel|results]
        if parts[:3] != ["v1", "messages", "batches"]:
            return Reply(status=404, body=anthropic_fake.error_body("not_found_error", path))
        if len(parts) == 3 and request.method == "POST":
            entries = request.json()["requests"]
            job = self.engine.create("msgbatch_", [(e["custom_id"], e["params"]) for e in entries])
            return Reply(body=self._batch(job))
        job_id = parts[3]
        if parts[-1] == "results":
            job = self.engine.jobs.get(job_id)
            if job is None or job.state == "running":
                return Reply(status=404, body=anthropic_fake.error_body("not_found_error", "no results yet"))
            lines = "".join(json.dumps(x) + "\n" for x in self._results(job))
            return Reply(body=lines, content_type="application/binary")
        job = self.engine.cancel(job_id) if parts[-1] == "cancel" else self.engine.poll(job_id)
        if job is None:
            return Reply(status=404, body=anthropic_fake.error_body("not_found_error", job_id))
        return Reply(body=self._batch(job))

    def _results(self, job: FakeJob, *, reported: bool = True) -> list[dict[str, Any]]:
        out = []
        for cid, _ in job.items:
            if reported and cid in self.engine.missing:
                continue
            outcome = job.outcomes.get(cid)
            result: dict[str, Any]
            if outcome is None:
                result = {"type": "canceled" if job.state == "cancelled" else "expired"}
            elif outcome[0]:
                usage = anthropic_fake.usage(input_tokens=10, output_tokens=3)
                result = {"type": "succeeded", "message": anthropic_fake.message(outcome[1], usage_=usage)}
            else:
                result = {"type": "errored", "error": anthropic_fake.error_body("invalid_request_error", outcome[1])}
            out.append({"custom_id": cid, "result": result})
        return list(reversed(out))  # not in input order: the client must sort by custom id

    def _batch(self, job: FakeJob) -> dict[str, Any]:
        done = job.state != "running"
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if done:
            for item in self._results(job, reported=False):
                counts[item["result"]["type"]] += 1
        else:
            counts["processing"] = len(job.items)
        return {
            "id": job.id,
            "type": "message_batch",
            "processing_status": "ended" if done else "in_progress",
            "request_counts": counts,
            "ended_at": "2026-12-01T12:00:00Z" if done else None,
            "created_at": "2026-12-01T11:00:00Z",
            "expires_at": "2026-12-02T11:00:00Z",
            "archived_at": None,
            "cancel_initiated_at": "2026-12-01T11:30:00Z" if job.state == "cancelled" else None,
            "results_url": f"{self.server.url}/v1/messages/batches/{job.id}/results" if done else None,
        }


# -- Gemini ---------------------------------------------------------------------------------------
class FakeGeminiBatches:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.engine = BatchEngine(lambda req: _last_text(req["request"]["contents"][-1]["parts"]))
        server.handler = self._handle

    def _handle(self, request: RecordedRequest) -> Reply:
        path = request.path.split("?")[0].lstrip("/").partition("/")[2]  # without the API version
        if request.method == "POST" and path.endswith(":batchGenerateContent"):
            batch = request.json()["batch"]
            requests = batch["inputConfig"]["requests"]["requests"]
            model = path.removesuffix(":batchGenerateContent")
            job = self.engine.create("batches/", [(r["metadata"]["key"], r) for r in requests], **batch, model=model)
            return Reply(body=self._operation(job))
        if path.startswith("batches/"):
            if path.endswith(":cancel"):
                self.engine.cancel(path.removesuffix(":cancel"))
                return Reply(body={})
            job = self.engine.poll(path)
            if job is not None:
                return Reply(body=self._operation(job))
        return Reply(status=404, body=gemini_fake.error_body(404, f"{path} not found", "NOT_FOUND"))

    def _operation(self, job: FakeJob) -> dict[str, Any]:
        state = {
            "running": "RUNNING",
            "ended": "SUCCEEDED",
            "cancelled": "CANCELLED",
            "expired": "EXPIRED",
            "failed": "FAILED",
        }[job.state]
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": job.extra["model"],
            "displayName": job.extra.get("displayName"),
            "state": f"BATCH_STATE_{state}",
            "createTime": "2026-12-01T11:00:00Z",
        }
        if job.state == "failed":
            failure = job.extra["failure"]
            error = {"code": 3, "message": failure["message"]}
            return {"name": job.id, "metadata": metadata, "done": True, "error": error}
        if job.state != "running":
            responses = []
            for cid, _ in job.items:
                outcome = job.outcomes.get(cid)
                if outcome is None or cid in self.engine.missing:
                    continue  # never ran (or left out): not in the output
                usage = gemini_fake.usage_metadata(prompt=10, candidates=3) if outcome[0] else None
                if outcome[0]:
                    body = gemini_fake.response_body(outcome[1], usage=usage)
                    responses.append({"response": body, "metadata": {"key": cid}})
                else:
                    responses.append({"error": {"code": 3, "message": outcome[1]}, "metadata": {"key": cid}})
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
        return {"name": job.id, "metadata": metadata, "done": job.state != "running"}


# -- Bedrock --------------------------------------------------------------------------------------
class FakeBedrockBatches:
    """The Bedrock control plane's batch routes; ``s3`` is a boto3 S3 client (moto's server)."""

    def __init__(self, server: FakeServer, s3: Any) -> None:
        self.server = server
        self.s3 = s3
        self.engine = BatchEngine(lambda rec: _last_text(rec["modelInput"]["messages"][-1]["content"]))
        self.created: list[dict[str, Any]] = []
        server.handler = self._handle

    def _handle(self, request: RecordedRequest) -> Reply:
        path = unquote(request.path.split("?")[0])
        if request.method == "POST" and path == "/model-invocation-job":
            return self._create(request.json())
        if path.startswith("/model-invocation-job/"):
            arn = path.removeprefix("/model-invocation-job/")
            if request.method == "POST" and arn.endswith("/stop"):
                job = self.engine.cancel(arn.removesuffix("/stop"))
                return Reply(body={}) if job else self._not_found(arn)
            job = self.engine.poll(arn)
            return Reply(body=self._describe(job)) if job else self._not_found(arn)
        return self._not_found(path)

    @staticmethod
    def _not_found(what: str) -> Reply:
        return Reply(
            status=404, body={"message": f"{what} not found"}, headers={"x-amzn-ErrorType": "ResourceNotFoundException"}
        )

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bucket, key

    def _create(self, body: dict[str, Any]) -> Reply:
        self.created.append(body)
        bucket, key = self._split(body["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
        text = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        records = [json.loads(line) for line in text.splitlines() if line]
        arn_prefix = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/"
        job = self.engine.create(arn_prefix, [(r["recordId"], r) for r in records], **body)
        return Reply(body={"jobArn": job.id})

    def _describe(self, job: FakeJob) -> dict[str, Any]:
        status = {
            "running": "InProgress",
            "ended": "Completed",
            "cancelled": "Stopped",
            "expired": "Expired",
            "failed": "Failed",
        }[job.state]
        if job.state != "running" and not job.extra.get("written"):
            self._write_output(job)
        answer: dict[str, Any] = {
            "jobArn": job.id,
            "jobName": job.extra["jobName"],
            "modelId": job.extra["modelId"],
            "roleArn": job.extra["roleArn"],
            "status": status,
            "submitTime": "2026-12-01T11:00:00Z",
            "inputDataConfig": job.extra["inputDataConfig"],
            "outputDataConfig": job.extra["outputDataConfig"],
            "modelInvocationType": job.extra.get("modelInvocationType"),
        }
        if job.state == "failed":
            answer.update(
                message=job.extra["failure"]["message"],
                totalRecordCount=0,
                processedRecordCount=0,
                successRecordCount=0,
                errorRecordCount=0,
            )
        elif job.state != "running":
            failed = sum(1 for ok, _ in job.outcomes.values() if not ok)
            answer.update(
                totalRecordCount=len(job.items),
                processedRecordCount=len(job.outcomes),
                successRecordCount=len(job.outcomes) - failed,
                errorRecordCount=failed,
            )
        return answer

    def _write_output(self, job: FakeJob) -> None:
        job.extra["written"] = True
        if not job.outcomes:
            return
        lines = []
        for cid, rec in job.items:
            outcome = job.outcomes.get(cid)
            if outcome is None or cid in self.engine.missing:
                continue
            line: dict[str, Any] = {"recordId": cid, "modelInput": rec["modelInput"]}
            if outcome[0]:
                line["modelOutput"] = {
                    "output": {"message": {"role": "assistant", "content": [{"text": outcome[1]}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 13},
                    "metrics": {"latencyMs": 5},
                }
            else:
                line["error"] = {"errorCode": 400, "errorMessage": outcome[1]}
            lines.append(line)
        _, in_key = self._split(job.extra["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
        out_bucket, out_prefix = self._split(job.extra["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])
        key = f"{out_prefix.rstrip('/')}/{job.id.rsplit('/', 1)[-1]}/{in_key.rsplit('/', 1)[-1]}.out"
        body = "".join(json.dumps(x) + "\n" for x in reversed(lines)).encode()
        self.s3.put_object(Bucket=out_bucket, Key=key, Body=body)
