"""Provider batch APIs (client.submit_batch / batch_job) over fakes of each provider's batch API.

The real SDKs talk to the fakes in tests/fakes/batches.py; Bedrock's S3 side is moto's server.
Every test checks what the fake received (the lines uploaded, the requests made) and the typed
result in every slot, in input order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fmclient import Client
from fmclient.errors import (
    BadRequestError,
    BatchItemCancelledError,
    BatchItemExpiredError,
    ConfigurationError,
    RequestTimeoutError,
    UnsupportedFeatureError,
)
from fmclient.provider_batch import BatchStatus
from fmclient.types import Completion
from tests.fakes.batches import (
    BatchEngine,
    FakeAnthropicBatches,
    FakeBedrockBatches,
    FakeGeminiBatches,
    FakeOpenAIBatches,
)
from tests.fakes.server import FakeServer

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["alpha", "bravo FAIL", "charlie", "delta"]
BUCKET = "fmclient-batch-test"
ROLE = "arn:aws:iam::123456789012:role/bedrock-batch"


@dataclass
class Setup:
    name: str
    model: str
    providers: dict[str, Any]
    engine: BatchEngine
    server: FakeServer
    fake: Any
    env: dict[str, str]

    def client(self) -> Client:
        return Client(providers=self.providers)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIDFAKEFAKEFAKE", "AWS_SECRET_ACCESS_KEY": "fake-secret", "AWS_REGION": "us-east-1"}


def _setup(name: str, server: FakeServer, monkeypatch: pytest.MonkeyPatch, moto: Callable[[], str]) -> Setup:
    env: dict[str, str] = {}
    if name == "openai":
        fake: Any = FakeOpenAIBatches(server)
        providers = {"openai": {"base_url": server.url + "/v1", "api_key": "sk-test-0123456789"}}
        model = "openai/gpt-4o-mini"
    elif name == "anthropic":
        fake = FakeAnthropicBatches(server)
        providers = {"anthropic": {"base_url": server.url, "api_key": "test-key-anthropic"}}
        model = "anthropic/claude-sonnet-4-6"
    elif name == "gemini":
        fake = FakeGeminiBatches(server)
        providers = {"gemini": {"base_url": server.url, "api_key": "test-key-not-real"}}
        model = "gemini/gemini-2.5-flash"
    else:
        import boto3

        url = moto()
        env = {**AWS_ENV, "AWS_ENDPOINT_URL_S3": url}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        fake = FakeBedrockBatches(server, s3)
        table = {"base_url": server.url, "batch_s3_uri": f"s3://{BUCKET}/jobs", "batch_role_arn": ROLE}
        providers = {"bedrock": table}
        model = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
    return Setup(name, model, providers, fake.engine, server, fake, env)


@pytest.fixture(params=["openai", "anthropic", "gemini", "bedrock"])
def setup(request: pytest.FixtureRequest, fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Setup:
    return _setup(request.param, fake_server, monkeypatch, lambda: request.getfixturevalue("moto_url"))


def _sent_texts(setup: Setup) -> list[str]:
    """The prompt of every item the provider got, in the order of the job's items."""
    (job,) = setup.engine.jobs.values()
    return [setup.engine.prompt_text(body) for _, body in job.items]


def _check_slots(results: list[Any], expired_from: int | None = None) -> None:
    assert len(results) == len(PROMPTS)
    for index, (prompt, result) in enumerate(zip(PROMPTS, results, strict=True)):
        if expired_from is not None and index >= expired_from:
            assert isinstance(result, BatchItemExpiredError), (index, result)
        elif "FAIL" in prompt:
            assert isinstance(result, BadRequestError), (index, result)
            assert result.status_code == 400
            assert prompt in str(result)
        else:
            assert isinstance(result, Completion), (index, result)
            assert result.text == f"echo: {prompt}"
            assert (result.usage.input_tokens, result.usage.output_tokens) == (10, 3)


# -- the whole round trip, per provider ------------------------------------------------------------
def test_partly_failed_job_gives_completions_and_typed_errors_in_input_order(setup: Setup) -> None:
    client = setup.client()
    job = client.submit_batch(PROMPTS, model=setup.model, max_tokens=50, system="be brief")
    assert job.id and len(setup.engine.jobs) == 1
    # What the provider got: one item per prompt, custom ids fmclient-<index>, in order.
    (fake_job,) = setup.engine.jobs.values()
    assert [cid for cid, _ in fake_job.items] == [f"fmclient-{i}" for i in range(len(PROMPTS))]
    assert _sent_texts(setup) == PROMPTS
    status = job.wait(poll_interval=0.01)
    assert status.state == "completed" and status.done
    assert (status.succeeded, status.failed) == (3, 1)
    _check_slots(job.results())


def test_expired_job_marks_unrun_items_expired(setup: Setup) -> None:
    setup.engine.expire_after = 2
    client = setup.client()
    job = client.submit_batch(PROMPTS, model=setup.model)
    status = job.wait(poll_interval=0.01)
    assert status.state == "expired"
    _check_slots(job.results(), expired_from=2)


def test_cancel_stops_the_job_and_every_unrun_item_says_cancelled(setup: Setup) -> None:
    setup.engine.runs_after = 100
    client = setup.client()
    job = client.submit_batch(PROMPTS[:2], model=setup.model)
    assert job.status().state in ("validating", "in_progress")
    job.cancel()
    cancel_requests = [
        r for r in setup.server.requests if r.method == "POST" and ("cancel" in r.path or "stop" in r.path)
    ]
    assert len(cancel_requests) == 1
    assert job.wait(poll_interval=0.01).state == "cancelled"
    results = job.results()
    assert len(results) == 2 and all(isinstance(r, BatchItemCancelledError) for r in results)


def test_wait_polls_with_a_fake_clock_and_reports_progress(setup: Setup) -> None:
    setup.engine.runs_after = 3
    client = setup.client()
    job = client.submit_batch(PROMPTS[:1], model=setup.model)
    now = [0.0]
    sleeps: list[float] = []
    seen: list[BatchStatus] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    status = job.wait(poll_interval=5.0, progress=seen.append, sleep=sleep, clock=lambda: now[0])
    assert sleeps == [5.0, 5.0]  # two polls while running, the third finds it done
    assert [s.done for s in seen] == [False, False, True]
    assert status.state == "completed"
    results = job.results()
    assert isinstance(results[0], Completion) and results[0].text == "echo: alpha"


def test_wait_timeout_raises_and_leaves_the_job_running(setup: Setup) -> None:
    setup.engine.runs_after = 100
    client = setup.client()
    job = client.submit_batch(PROMPTS[:1], model=setup.model)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(RequestTimeoutError, match="still"):
        job.wait(poll_interval=10.0, timeout=25.0, sleep=sleep, clock=lambda: now[0])
    assert now[0] == 20.0
    (fake_job,) = setup.engine.jobs.values()
    assert fake_job.state == "running"


def test_reattach_from_another_process_gets_the_same_results(setup: Setup) -> None:
    client = setup.client()
    job = client.submit_batch(PROMPTS, model=setup.model)
    script = (
        "import json, sys\n"
        "from fmclient import Client\n"
        "client = Client(providers=json.loads(sys.argv[1]))\n"
        "job = client.batch_job(sys.argv[2], model=sys.argv[3])\n"
        "job.wait(poll_interval=0.01)\n"
        "out = []\n"
        "for r in job.results():\n"
        "    out.append({'text': r.text} if hasattr(r, 'text') else {'error': type(r).__name__})\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, **setup.env, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(setup.providers), job.id, setup.model],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"text": "echo: alpha"},
        {"error": "BadRequestError"},
        {"text": "echo: charlie"},
        {"text": "echo: delta"},
    ]
    assert len(setup.engine.jobs) == 1  # re-attaching submitted nothing


# -- provider-specific details ------------------------------------------------------------------------
@pytest.fixture
def openai_setup(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Setup:
    return _setup("openai", fake_server, monkeypatch, lambda: "")


def test_openai_line_is_the_chat_body_a_normal_call_sends(openai_setup: Setup) -> None:
    client = openai_setup.client()
    client.submit_batch(["hi"], model=openai_setup.model, max_tokens=7, temperature=0.5, seed=3)
    (line,) = openai_setup.fake.uploaded_lines()
    assert line == {
        "custom_id": "fmclient-0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 7,
            "temperature": 0.5,
            "seed": 3,
        },
    }
    create = next(r.json() for r in openai_setup.server.requests if r.path.endswith("/batches"))
    assert (create["endpoint"], create["completion_window"]) == ("/v1/chat/completions", "24h")


def test_bedrock_needs_bucket_and_role(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    client = Client(providers={"bedrock": {"base_url": "http://127.0.0.1:9"}})
    with pytest.raises(ConfigurationError, match="batch_s3_uri"):
        client.submit_batch(["hi"], model="bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0")


@pytest.fixture
def bedrock_setup(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Setup:
    return _setup("bedrock", fake_server, monkeypatch, lambda: request.getfixturevalue("moto_url"))


def test_bedrock_job_is_converse_shaped_over_s3(bedrock_setup: Setup) -> None:
    setup = bedrock_setup
    client = setup.client()
    client.submit_batch(["hi"], model=setup.model, max_tokens=9)
    (created,) = setup.fake.created
    assert created["modelInvocationType"] == "Converse"
    assert created["roleArn"] == ROLE
    assert created["modelId"] == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert created["inputDataConfig"]["s3InputDataConfig"]["s3Uri"].startswith(f"s3://{BUCKET}/jobs/input/")
    assert created["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] == f"s3://{BUCKET}/jobs/output/"
    (fake_job,) = setup.engine.jobs.values()
    ((record_id, record),) = fake_job.items
    assert record_id == "fmclient-0"
    assert record["modelInput"] == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": 9},
    }


def test_bedrock_batch_refuses_forced_tool_structured_output_with_reasoning(bedrock_setup: Setup) -> None:
    # Claude Sonnet 4 on Bedrock makes structured output by forcing a tool, which thinking refuses:
    # the job is refused as complete() is, before anything is uploaded (issue 19 item 8).
    client = bedrock_setup.client()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    with pytest.raises(UnsupportedFeatureError, match="structured output together with reasoning="):
        client.submit_batch(
            ["n?"], model="bedrock/anthropic.claude-sonnet-4-20250514-v1:0", response_format=schema, reasoning="low"
        )
    assert bedrock_setup.fake.created == []


def test_bad_input_and_unsupported_providers_fail_before_any_request(fake_server: FakeServer) -> None:
    FakeOpenAIBatches(fake_server)
    client = Client(providers={"openai": {"base_url": fake_server.url, "api_key": "sk-test-0123456789"}})
    with pytest.raises(ValueError, match="at least one"):
        client.submit_batch([], model="openai/gpt-4o-mini")
    for single in ("hi", {"role": "user", "content": "hi"}):  # one prompt, not a list of them
        with pytest.raises(TypeError, match="single prompt"):
            client.submit_batch(single, model="openai/gpt-4o-mini")
    with pytest.raises(UnsupportedFeatureError, match="timeout"):
        client.submit_batch(["hi"], model="openai/gpt-4o-mini", timeout=3)
    with pytest.raises(UnsupportedFeatureError, match="not 'ollama'"):
        Client().submit_batch(["hi"], model="ollama/llama3.2")
    assert fake_server.requests == []


def test_results_before_the_job_is_done_refuse(openai_setup: Setup) -> None:
    openai_setup.engine.runs_after = 100
    job = openai_setup.client().submit_batch(["hi"], model=openai_setup.model)
    with pytest.raises(Exception, match="wait"):
        job.results()


def test_cost_is_the_batch_price_where_genai_prices_has_one_else_standard_and_flagged(setup: Setup) -> None:
    pytest.importorskip("genai_prices")
    from fmclient.pricing import PriceRef, Unpriced, price_usage

    client = setup.client()
    if setup.name == "openai":
        # a loopback base_url has no price table of its own: name OpenAI's, as a gateway would
        config = Path("fmclient.toml")
        config.write_text('[prices]\nopenai = "openai"\n')
        client = Client(providers=setup.providers, config_path=str(config))
    job = client.submit_batch(["alpha"], model=setup.model)
    job.wait(poll_interval=0.01)
    (result,) = job.results()
    assert isinstance(result, Completion)
    provider_type = setup.name
    standard = price_usage(PriceRef(provider_type), (result.model, setup.model.split("/", 1)[1]), result.usage, None)
    assert result.cost is not None and not isinstance(standard, Unpriced)
    if setup.name == "bedrock":
        # no batch variant for this Bedrock model in genai-prices: the standard price, said so
        assert result.cost.total == standard.total
        assert "standard price" in (result.cost_reason or "")
    else:
        assert result.cost.total * 2 == standard.total
        assert result.cost_reason is None


def test_wait_rides_out_a_transient_poll_failure_but_not_a_lasting_one(openai_setup: Setup) -> None:
    from fmclient.errors import ServiceUnavailableError
    from tests.fakes.server import Reply

    job = openai_setup.client().submit_batch(["hi"], model=openai_setup.model)
    polls_before = len(openai_setup.server.requests)
    openai_setup.server.queue(Reply(status=503, body={"error": {"message": "busy", "type": "server_error"}}))
    sleeps: list[float] = []
    assert job.wait(poll_interval=1.0, sleep=sleeps.append).state == "completed"
    assert sleeps == [1.0] and len(openai_setup.server.requests) == polls_before + 2
    busy = Reply(status=503, body={"error": {"message": "busy", "type": "server_error"}})
    openai_setup.server.queue(*[busy] * 6)
    with pytest.raises(ServiceUnavailableError):
        job.wait(poll_interval=1.0, sleep=sleeps.append)
    assert len(sleeps) == 1 + 5  # five failures ridden out, the sixth raised


# -- every argument means what it means in complete() --------------------------------------------
LOOKUP = {
    "name": "lookup",
    "description": "Look up a word",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
COMMON = {"system": "be brief", "max_tokens": 300, "tools": [LOOKUP], "response_format": SCHEMA}
JSON_REPLY = '{"a": "x"}'


def _reply_for(name: str, model: str, args: dict[str, Any]) -> Any:
    """What complete() gets back from the fake (JSON, so the response_format check passes)."""
    from tests.fakes import anthropic as anthropic_fake
    from tests.fakes import bedrock as bedrock_fake
    from tests.fakes import gemini as gemini_fake
    from tests.fakes import openai as openai_fake
    from tests.fakes.server import Reply

    if name == "openai":
        answer = openai_fake.Answer(JSON_REPLY)
        responses = "gpt-6" in model and args.get("api") != "chat"
        return Reply(body=openai_fake.response_body(answer) if responses else openai_fake.completion_body(answer))
    if name == "anthropic":
        return anthropic_fake.message_reply(JSON_REPLY)
    if name == "gemini":
        return gemini_fake.generate_reply(JSON_REPLY)
    return bedrock_fake.converse_reply(text=JSON_REPLY)


def _batch_body(setup: Setup) -> Any:
    """The body of the (only) item of the last job, as the provider got it."""
    job = list(setup.engine.jobs.values())[-1]
    ((_, body),) = job.items
    if setup.name == "gemini":
        return body["request"]  # the inlined request's generateContent body, beside its metadata key
    if setup.name == "bedrock":
        return body["modelInput"]
    return body


# A 1x1 PNG: an image given as bytes goes on the wire base64-encoded, in the batch line too.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


PARITY_CASES = [
    # Chat Completions, with sampling, stop sequences and a provider option (OpenAI's seed)
    ("openai", "openai/gpt-4o-mini", {**COMMON, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "seed": 3}),
    # a reasoning model on Chat Completions (api="chat"): reasoning= is reasoning_effort there
    ("openai", "openai/gpt-6-luna", {**COMMON, "reasoning": "none", "api": "chat", "tool_choice": "auto"}),
    # a reasoning model whose profile selects the Responses API
    ("openai", "openai/gpt-6-luna", {**COMMON, "reasoning": "high", "parallel_tool_calls": False}),
    (
        "anthropic",
        "anthropic/claude-sonnet-4-6",
        {**COMMON, "reasoning": "high", "stop": ["END"], "metadata": {"user_id": "u-1"}},
    ),
    # a forced tool, without reasoning
    ("anthropic", "anthropic/claude-haiku-4-5", {**COMMON, "tool_choice": "lookup", "stop": ["END"]}),
    (
        "gemini",
        "gemini/gemini-2.5-flash",
        {**COMMON, "reasoning": 1024, "temperature": 0.2, "stop": ["END"], "seed": 4},
    ),
    (
        "bedrock",
        "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
        {**COMMON, "max_tokens": 4096, "reasoning": 2048, "stop": ["END"], "requestMetadata": {"team": "a"}},
    ),
    (
        "bedrock",
        "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
        {**COMMON, "temperature": 0.2, "tool_choice": "auto", "stop": ["END"]},
    ),
]


@pytest.mark.parametrize(
    ("name", "model", "args"), PARITY_CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(PARITY_CASES)]
)
def test_a_batch_line_is_the_body_complete_sends_for_the_same_arguments(
    name: str,
    model: str,
    args: dict[str, Any],
    fake_server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    setup = _setup(name, fake_server, monkeypatch, lambda: request.getfixturevalue("moto_url"))
    client = setup.client()
    from fmclient import ImagePart, Message, TextPart

    prompt = [Message("user", (TextPart("hi"), ImagePart.from_source(PNG)))]
    fake_server.queue(_reply_for(name, model, args))
    completion = client.complete(prompt, model=model, **args)
    assert completion.parsed == {"a": "x"}
    sent = fake_server.requests[-1].json()
    job = client.submit_batch([prompt], model=model, **args)
    assert _batch_body(setup) == sent
    if name == "openai":
        (line,) = setup.fake.uploaded_lines()[-1:]
        endpoint = "/v1/responses" if "input" in sent else "/v1/chat/completions"
        assert line["url"] == endpoint
        create = [r.json() for r in fake_server.requests if r.path.endswith("/batches")][-1]
        assert create["endpoint"] == endpoint
    assert job.wait(poll_interval=0.01).state == "completed"


def test_what_complete_refuses_submit_batch_refuses_the_same_way_before_uploading(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = _setup("anthropic", fake_server, monkeypatch, lambda: "")
    client = setup.client()
    # the installed SDK's API version refuses temperature on Claude; so does the batch
    with pytest.raises(UnsupportedFeatureError) as live:
        client.complete("hi", model=setup.model, temperature=0.2)
    with pytest.raises(UnsupportedFeatureError) as batched:
        client.submit_batch(["hi"], model=setup.model, temperature=0.2)
    assert str(batched.value) == str(live.value)
    assert fake_server.requests == []


def test_call_only_arguments_are_refused_before_anything_is_sent(openai_setup: Setup) -> None:
    client = openai_setup.client()
    for refused in (
        {"timeout": 30},
        {"max_retries": 2},
        {"fallbacks": ["anthropic/claude-sonnet-4-6"]},
        {"stream": True},
    ):
        with pytest.raises(UnsupportedFeatureError, match=next(iter(refused))):
            client.submit_batch(["hi"], model=openai_setup.model, **refused)
    # a profile refusal comes before any upload too: gpt-4o-mini does not reason
    with pytest.raises(UnsupportedFeatureError):
        client.submit_batch(["hi"], model=openai_setup.model, reasoning="high")
    assert openai_setup.server.requests == []
    # None means "not given", as in complete()
    client.submit_batch(["hi"], model=openai_setup.model, timeout=None, fallbacks=None)
    assert len(openai_setup.engine.jobs) == 1


# -- OpenAI: the Responses API where the model's profile selects it --------------------------------
def test_openai_reasoning_model_batches_on_the_responses_endpoint_and_parses_responses(openai_setup: Setup) -> None:
    client = openai_setup.client()
    model = "openai/gpt-6-luna"
    job = client.submit_batch(PROMPTS, model=model, reasoning="low")
    lines = openai_setup.fake.uploaded_lines()
    assert {line["url"] for line in lines} == {"/v1/responses"}
    assert lines[0]["body"]["reasoning"]["effort"] == "low" and "messages" not in lines[0]["body"]
    create = next(r.json() for r in openai_setup.server.requests if r.path.endswith("/batches"))
    assert create["endpoint"] == "/v1/responses"
    assert job.wait(poll_interval=0.01).state == "completed"
    _check_slots(job.results())
    # re-attached, the batch's own endpoint picks the parser
    _check_slots(client.batch_job(job.id, model=model).results())


# -- a job that fails as a whole, and items the results leave out -----------------------------------
@pytest.fixture(params=["openai", "gemini", "bedrock"])
def failing_setup(request: pytest.FixtureRequest, fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Setup:
    """The providers whose batch job can fail as a whole (Anthropic validates at create)."""
    return _setup(request.param, fake_server, monkeypatch, lambda: request.getfixturevalue("moto_url"))


def test_a_job_refused_as_a_whole_gives_every_input_its_typed_error(failing_setup: Setup) -> None:
    from fmclient.errors import BatchJobFailedError

    setup = failing_setup
    setup.engine.fail = {"code": "invalid_request", "message": "the input file is not valid", "line": 2}
    client = setup.client()
    job = client.submit_batch(PROMPTS, model=setup.model)
    status = job.wait(poll_interval=0.01)
    assert status.state == "failed"
    for results in (job.results(), client.batch_job(job.id, model=setup.model).results()):
        assert len(results) == len(PROMPTS)
        assert all(isinstance(r, BatchJobFailedError) and not r.retryable for r in results), results
        if setup.name != "gemini":  # the Gemini SDK keeps no reason for a failed job, only its state
            assert all("the input file is not valid" in str(r) for r in results)
        if setup.name == "openai":  # OpenAI names the line at fault: that item says so
            assert "line 2" in str(results[1]) and "line 2" not in str(results[0])


def test_items_missing_from_the_results_come_back_as_errors_in_input_order(setup: Setup) -> None:
    from fmclient.errors import BatchItemMissingError

    setup.engine.missing = {"fmclient-0", "fmclient-3"}
    client = setup.client()
    job = client.submit_batch(PROMPTS, model=setup.model)
    assert job.wait(poll_interval=0.01).state == "completed"
    for results in (job.results(), client.batch_job(job.id, model=setup.model).results()):
        assert len(results) == len(PROMPTS)
        assert isinstance(results[0], BatchItemMissingError) and isinstance(results[3], BatchItemMissingError)
        assert isinstance(results[1], BadRequestError)
        assert isinstance(results[2], Completion) and results[2].text == "echo: charlie"


# -- structured output: checked and parsed as complete() does ---------------------------------------
def test_structured_output_results_are_parsed_or_refused_as_complete_would(setup: Setup) -> None:
    from fmclient.errors import StructuredOutputError

    setup.engine.answer = lambda text: text  # each item answers its own prompt
    client = setup.client()
    job = client.submit_batch([JSON_REPLY, "not json"], model=setup.model, response_format=SCHEMA)
    job.wait(poll_interval=0.01)
    reattached = client.batch_job(job.id, model=setup.model, response_format=SCHEMA)
    for results in (job.results(), reattached.results()):
        first, second = results
        assert isinstance(first, Completion) and first.parsed == {"a": "x"}
        assert isinstance(second, StructuredOutputError) and second.text == "not json"


# -- what a batch line cannot carry is refused, not dropped ------------------------------------------
def test_transport_options_are_refused_not_dropped(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    anthropic = _setup("anthropic", fake_server, monkeypatch, lambda: "")
    with pytest.raises(UnsupportedFeatureError, match="extra_headers"):
        anthropic.client().submit_batch(["hi"], model=anthropic.model, extra_headers={"x-team": "a"})
    gemini = _setup("gemini", fake_server, monkeypatch, lambda: "")
    with pytest.raises(UnsupportedFeatureError, match="http_options"):
        gemini.client().submit_batch(["hi"], model=gemini.model, http_options={"headers": {"x-team": "a"}})
    assert fake_server.requests == []


def test_a_gemini_batch_with_media_over_the_inline_limit_is_refused_unsent(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.media import wav

    gemini = _setup("gemini", fake_server, monkeypatch, lambda: "")
    big = [{"role": "user", "content": ["transcribe", {"type": "audio", "audio": wav(0.1) + bytes(21 * 1024 * 1024)}]}]
    with pytest.raises(UnsupportedFeatureError, match="batch job cannot inline"):
        gemini.client().submit_batch([big], model=gemini.model)
    assert fake_server.requests == []


def test_bedrock_titan_text_is_refused_unless_converse_is_asked_for(bedrock_setup: Setup) -> None:
    client = bedrock_setup.client()
    with pytest.raises(UnsupportedFeatureError, match="api='converse'"):
        client.submit_batch(["hi"], model="bedrock/amazon.titan-text-express-v1")
    assert bedrock_setup.engine.jobs == {}
    from tests.fakes.bedrock import converse_reply

    bedrock_setup.server.queue(converse_reply(text="ok"))
    client.complete("hi", model="bedrock/amazon.titan-text-express-v1", api="converse", max_tokens=20)
    sent = bedrock_setup.server.requests[-1].json()
    client.submit_batch(["hi"], model="bedrock/amazon.titan-text-express-v1", api="converse", max_tokens=20)
    assert _batch_body(bedrock_setup) == sent


# -- one malformed answer is that item's error, not the whole job's ----------------------------------
def test_a_malformed_answer_is_its_items_error() -> None:
    from fmclient.errors import ServiceUnavailableError
    from fmclient.providers import batch_anthropic, batch_bedrock, batch_openai

    where = {"provider": "p", "model": "m"}
    _, anthropic = batch_anthropic.parse_result(
        {"custom_id": "fmclient-0", "result": {"type": "succeeded", "message": {"type": "error"}}}, **where
    )
    _, openai = batch_openai.parse_output_line(
        {"custom_id": "fmclient-0", "response": {"status_code": 200, "body": {"object": "nonsense"}}}, **where
    )
    _, bedrock = batch_bedrock.parse_record({"recordId": "fmclient-0", "modelOutput": {"nothing": 1}}, **where)
    for result in (anthropic, openai, bedrock):
        assert isinstance(result, ServiceUnavailableError), result


def test_a_before_request_hook_is_never_bypassed_by_a_batch_job(openai_setup: Setup) -> None:
    from fmclient.hooks import Hook

    class Redact(Hook):
        def before_request(self, call: Any, request: Any) -> Any:
            return None

    class Observe(Hook):  # only observes: a batch job does not bypass anything it does
        pass

    client = Client(providers=openai_setup.providers, hooks=[Observe(), Redact()])
    with pytest.raises(UnsupportedFeatureError, match="Redact"):
        client.submit_batch(["hi"], model=openai_setup.model)
    assert openai_setup.server.requests == []
    Client(providers=openai_setup.providers, hooks=[Observe()]).submit_batch(["hi"], model=openai_setup.model)
    assert len(openai_setup.engine.jobs) == 1
