"""No API key ever shows: not in results, errors, tracebacks, log records (any logger, DEBUG),
reprs, or the CLI's output, whatever path a call takes.

Every provider gets a distinctive canary key, set where users set keys: the SDKs' standard
environment variables, or ``api_key`` in a config file (a named OpenAI-compatible provider and a
hosted Ollama). One loopback server speaks every provider's wire format. It answers success, or,
when the prompt asks for it, each kind of failure; and its error bodies echo back the key the
request carried, as real providers and gateways sometimes do (OpenAI masks most of it; a gateway
may not). Then every text fmclient can produce is searched for any 10-character piece of a key.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fmclient import Client, FMClientError
from fmclient.errors import AuthenticationError
from fmclient.secret import Secret, scrub_exception
from fmclient.telemetry import OpenTelemetryHook
from tests.fakes.profiles import PROFILES, Profile, embeddings_reply, is_streamed, profile_for
from tests.fakes.server import FakeServer, RecordedRequest, Reply

# The key variables and config-file keys, each distinctive enough to find in any text.
CANARIES = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-AnthCanary-Qx2Lr9Zk4Wm7",
    "OPENAI_API_KEY": "sk-proj-OpenCanary-Jd8Wp1Vn6Tz3",
    "GEMINI_API_KEY": "AIzaSyGemCanary-Hb7Tc2Mq9Xe4",
    "AWS_SECRET_ACCESS_KEY": "AwsCanary/Gz6Ny8Ks1Rb5Vc0Lp3Qw+Ht",
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjSessCanary-Vb2Nx7Kq4Ds9",
    "MISTRAL_API_KEY": "MistralCanary-Rf3Yk7Ud2Wq8",
    "corp api_key": "corp-CorpCanary-Le5Xs8Bw4Hn1",
    "ollama api_key": "ollama-OllaCanary-Pz4Mk9Tv2Jc6",
}
ENV_KEYS = {k: v for k, v in CANARIES.items() if k.isupper()}
# A piece this long of a key is a leak; OpenAI's own masking shows 8 characters and the last 4.
WINDOW = 10

# provider name -> (profile speaking its wire format, chat model, embedding model or None)
PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "anthropic": ("anthropic", "anthropic/claude-sonnet-4-6", None),
    "openai": ("openai", "openai/gpt-4o", "openai/text-embedding-3-small"),
    "gemini": ("gemini", "gemini/gemini-3.8-flash", "gemini/gemini-embedding-001"),
    "bedrock": ("bedrock", f"bedrock/{PROFILES['bedrock'].model_id}", "bedrock/amazon.titan-embed-text-v2:0"),
    "ollama": ("ollama", "ollama/llama3.2", "ollama/nomic-embed-text"),
    "mistral": ("openai", "mistral/mistral-small-latest", "mistral/mistral-embed"),
    "corp": ("openai", "corp/corp-chat-1", "corp/corp-embed-1"),
}

WHOLE_FAULTS = [
    "bad-key",
    "bad-request",
    "unknown-model",
    "429",
    "500",
    "503",
    "overloaded",
    "reset",
    "truncated",
    "malformed",
    "slow",
]
STREAM_FAULTS = ["bad-key", "error-event", "error-event-mid", "truncated", "unfinished"]
PIECES = ["canary ", "free ", "text"]
FAULT = re.compile(rb"secret-fault-([a-z0-9-]+)")


def leaks(text: str) -> list[str]:
    """The canaries any 10-character piece of which appears in ``text``."""
    found = []
    for name, key in CANARIES.items():
        if any(key[i : i + WINDOW] in text for i in range(len(key) - WINDOW + 1)):
            found.append(name)
    return found


def presented_key(request: RecordedRequest) -> str:
    """The credential a request carried, the way each provider reads it."""
    headers = request.headers
    for name in ("x-api-key", "x-goog-api-key"):
        if name in headers:
            return headers[name]
    auth = headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""


def openai_masked(key: str) -> str:
    """How OpenAI echoes a wrong key: the first characters and the last four."""
    return key[:8] + "*" * 20 + key[-4:]


class EchoServer:
    """Every provider on one server: success, or the fault the prompt names, echoing the key."""

    def __init__(self) -> None:
        self.server = FakeServer(handler=self.handle)

    @property
    def url(self) -> str:
        return self.server.url

    def handle(self, request: RecordedRequest) -> Reply:
        embedded = embeddings_reply(request)
        if embedded is not None:
            return embedded
        profile = profile_for(request)
        streamed = is_streamed(request, profile)
        found = FAULT.search(request.body)
        if found is None:
            return profile.stream(PIECES) if streamed else profile.reply("".join(PIECES))
        return self.fault(profile, found.group(1).decode(), presented_key(request), streamed)

    @staticmethod
    def fault(profile: Profile, fault: str, key: str, streamed: bool) -> Reply:
        echo = f"Invalid API key provided: {key}"
        if fault == "bad-key":
            shown = openai_masked(key) if profile.name == "openai" else key
            return profile.status("bad-key", message=f"Incorrect API key provided: {shown}")
        if fault in ("bad-request", "unknown-model", "429", "500", "503", "overloaded"):
            return profile.status(fault, message=f"{fault}: the request with header {key!r} failed")
        if fault == "reset":
            return Reply(reset=True)
        if fault == "slow":
            reply = profile.stream(PIECES) if streamed else profile.reply("late")
            return dataclasses.replace(reply, delay=1.0)
        if fault == "malformed":
            return Reply(body=f'{{"error": "{echo}", "half": [', content_type="application/json")
        if not streamed:  # truncated
            return profile.truncated_body(echo)
        if fault == "truncated":
            return profile.truncated_stream(PIECES, 1)
        if fault == "unfinished":
            return profile.unfinished_stream(PIECES, 1)
        after = 1 if fault == "error-event-mid" else 0
        return profile.stream_with_error(PIECES, after, fatal=True, message=echo)


def write_config(path: Path, url: str) -> Path:
    config = f"""
max_retries = 1

[providers.anthropic]
base_url = "{url}"

[providers.openai]
base_url = "{url}/v1"

[providers.gemini]
base_url = "{url}"

[providers.bedrock]
base_url = "{url}"
region = "us-east-1"

[providers.ollama]
base_url = "{url}"
api_key = "{CANARIES["ollama api_key"]}"

[providers.mistral]
base_url = "{url}/v1"

[providers.corp]
type = "openai"
base_url = "{url}/v1"
api_key = "{CANARIES["corp api_key"]}"
"""
    path.write_text(config)
    return path


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    echo = EchoServer()
    with echo.server:
        yield echo


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in ENV_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFMCLIENTTESTID01")  # an id, not a secret
    return ENV_KEYS


class Captured:
    """Every text a user could see or store: results, errors, tracebacks, reprs, log records."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def add_error(self, where: str, error: BaseException) -> None:
        self.add(where, str(error))
        self.add(where, repr(error))
        # The whole chain: the SDK's own exception is the __cause__, with the provider's text.
        self.add(where, "".join(traceback.format_exception(error)))
        if isinstance(error, FMClientError):
            self.add(where, repr(error.attempts))
            self.add(where, repr(error.partial_text))

    def leaks(self) -> list[str]:
        return [
            f"{where}: {', '.join(names)} in {text[:300]!r}" for where, text in self.texts if (names := leaks(text))
        ]


class RecordAll(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, self.format(record)))  # message, args and any traceback


@pytest.fixture
def debug_logs() -> Iterator[RecordAll]:
    """Every logger at DEBUG, fmclient's and the SDKs' (imported first, so their loggers exist)."""
    import anthropic  # noqa: F401
    import boto3  # noqa: F401
    import google.genai  # noqa: F401
    import ollama  # noqa: F401
    import openai  # noqa: F401

    handler = RecordAll()
    root = logging.getLogger()
    saved = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    saved_root = root.level
    for name in saved:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def drive(client: Client, provider: str, captured: Captured) -> None:
    """Every path for one provider: success whole/streamed/async, embeddings, each fault."""
    _, model, embedding_model = PROVIDERS[provider]

    def attempt(where: str, fn: Any) -> None:
        try:
            result = fn()
        except FMClientError as error:
            captured.add_error(where, error)
        else:
            captured.add(where, repr(result))
            to_dict = getattr(result, "to_dict", None)
            if to_dict is not None:
                captured.add(where, json.dumps(to_dict(), default=str))

    def streamed(prompt: str, **kwargs: Any) -> Any:
        stream = client.stream(prompt, model=model, **kwargs)
        chunks = [repr(chunk) for chunk in stream]
        captured.add(f"{provider} stream chunks", "".join(chunks))
        return stream.completion

    async def astreamed(prompt: str) -> Any:
        stream = client.astream(prompt, model=model)
        chunks = [repr(chunk) async for chunk in stream]
        captured.add(f"{provider} astream chunks", "".join(chunks))
        return stream.completion

    attempt(f"{provider} complete", lambda: client.complete("hello", model=model))
    attempt(f"{provider} stream", lambda: streamed("hello"))
    attempt(f"{provider} acomplete", lambda: asyncio.run(client.acomplete("hello", model=model)))
    attempt(f"{provider} astream", lambda: asyncio.run(astreamed("hello")))
    if embedding_model is not None:
        attempt(f"{provider} embed", lambda: client.embed(["one", "two"], model=embedding_model))
        attempt(f"{provider} aembed", lambda: asyncio.run(client.aembed(["one"], model=embedding_model)))
    for fault in WHOLE_FAULTS:
        timeout = 0.2 if fault == "slow" else None
        prompt = f"secret-fault-{fault}"
        attempt(f"{provider} complete {fault}", lambda p=prompt, t=timeout: client.complete(p, model=model, timeout=t))
    for fault in STREAM_FAULTS:
        prompt = f"secret-fault-{fault}"
        attempt(f"{provider} stream {fault}", lambda p=prompt: streamed(p))
        attempt(f"{provider} astream {fault}", lambda p=prompt: asyncio.run(astreamed(p)))


def test_no_key_in_any_output_error_traceback_repr_or_log_record(
    echo_server: EchoServer,
    canary_env: dict[str, str],
    debug_logs: RecordAll,
    retry_sleeps: list[float],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path / "fmclient.toml", echo_server.url)
    captured = Captured()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    # Spans with message content on: the most a span can hold.
    telemetry = OpenTelemetryHook(tracer_provider=tracer_provider, capture_content=True)
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        client = Client(config_path=str(config), hooks=[telemetry])
        for provider in PROVIDERS:
            drive(client, provider, captured)
        # Reprs and strs of everything that holds a key.
        captured.add("Client", f"{client!r} {client}")
        captured.add("Settings", f"{client.settings!r} {client.settings}")
        for provider in PROVIDERS:
            settings = client.settings.provider_settings(provider)
            adapter = client.provider(provider)
            captured.add(f"{provider} settings", f"{settings!r} {settings} {dataclasses.asdict(settings)!r}")
            captured.add(f"{provider} adapter", f"{adapter!r} {adapter}")
        client.close()
    out = capsys.readouterr()
    captured.add("stdout", out.out)
    captured.add("stderr", out.err)
    captured.add("warnings", "\n".join(str(w.message) for w in caught_warnings))
    finished = spans.get_finished_spans()
    for span in finished:
        captured.add(f"span {span.name}", span.to_json())  # attributes, events, status, resource
    sdk_own: list[str] = []
    for name, line in debug_logs.lines:
        if name.startswith("botocore"):
            sdk_own.append(line)
        captured.add(f"log {name}", line)

    assert captured.leaks() == []
    # botocore's own DEBUG logging prints the canonical request it signs, headers included: the
    # Bedrock adapter's filter redacts the session token there (it is in the leak check above).
    assert any("x-amz-security-token:**********" in line for line in sdk_own)
    assert len({span.context.trace_id for span in finished if span.parent is None}) > 100
    # The test means something: the keys were used, the server echoed them, and every provider
    # logged at DEBUG and failed in each way.
    sent = {presented_key(r) for r in echo_server.server.requests}
    for name, key in CANARIES.items():
        if not name.startswith("AWS_"):
            assert key in sent, name
    # Bedrock signs with the secret key (it never travels) and sends the session token.
    bedrock = [r for r in echo_server.server.requests if r.path.startswith("/model/")]
    assert bedrock and all(r.headers["authorization"].startswith("AWS4-HMAC-SHA256 ") for r in bedrock)
    assert all(r.headers["x-amz-security-token"] == CANARIES["AWS_SESSION_TOKEN"] for r in bedrock)
    errors = [text for where, text in captured.texts if "Incorrect API key provided" in text]
    assert len(errors) >= len(PROVIDERS)
    assert any("**********" in text for text in errors)  # an echoed key, redacted
    assert any(name == "fmclient" and "retrying" in line for name, line in debug_logs.lines)
    for sdk in ("anthropic", "openai", "botocore", "httpx"):
        assert any(name.startswith(sdk) for name, _ in debug_logs.lines), sdk
    assert retry_sleeps  # retryable faults were retried (and logged) before failing


class SDKError(Exception):
    """Shaped like the SDKs' exceptions: the text in args, again in attributes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = 401


def test_an_error_built_while_handling_an_sdk_exception_scrubs_the_whole_chain() -> None:
    key = "sk-scrub-test-0123456789abcdef"
    Secret(key)  # known to fmclient, as every configured key is
    try:
        try:
            raise ConnectionError(f"proxy said: bad token {key}")
        except ConnectionError as inner:
            outer = SDKError(f"Error code: 401 - invalid x-api-key {key}")
            outer.add_note(f"request had header x-api-key: {key}")
            raise outer from inner
    except SDKError as exc:
        error = AuthenticationError("the key was refused")  # what an adapter's map_error builds
        chained = exc
    error.__cause__ = chained
    text = "".join(traceback.format_exception(error)) + repr(chained) + chained.message
    assert key not in text and key[:12] not in text
    assert "**********" in text and chained.status_code == 401  # only the text changed

    unrelated = ValueError(f"not handled while building an error: {key}")
    scrub_exception(None)  # nothing to do
    assert key in str(unrelated)  # only the exception being handled, and its chain, are touched


def test_settings_holding_a_secret_can_be_copied_and_shown() -> None:
    secret = Secret("sk-copy-test-0123456789")
    assert copy.copy(secret) is secret and copy.deepcopy(secret) is secret
    client = Client(
        providers={"corp": {"type": "openai", "base_url": "http://127.0.0.1:9", "api_key": "sk-copy-test-0123456789"}}
    )
    settings = client.settings.provider_settings("corp")
    shown = repr(dataclasses.asdict(settings)) + repr(copy.deepcopy(settings))
    assert "copy-test" not in shown and "Secret('**********')" in shown


def test_canary_detection_finds_partial_keys() -> None:
    key = CANARIES["OPENAI_API_KEY"]
    assert leaks(f"bad key {key}") == ["OPENAI_API_KEY"]
    assert leaks(f"bad key {key[:14]}...") == ["OPENAI_API_KEY"]
    assert leaks(f"bad key {openai_masked(key)}") == []  # what OpenAI itself shows is not a leak


# -- the CLI, as a subprocess ------------------------------------------------------------------------

FMCLIENT = shutil.which("fmclient", path=str(Path(sys.executable).parent)) or "fmclient"


def test_cli_never_prints_a_key(echo_server: EchoServer, canary_env: dict[str, str], tmp_path: Path) -> None:
    config = write_config(tmp_path / "fmclient.toml", echo_server.url)
    env = {**os.environ, "FMCLIENT_CONFIG": str(config)}
    commands: dict[str, list[str]] = {
        "stream": ["complete", "hello", "-m", PROVIDERS["anthropic"][1]],
        "json": ["complete", "hello", "--json", "-m", PROVIDERS["openai"][1]],
        "embed": ["embed", "one", "two", "-m", "openai/text-embedding-3-small"],
        "models": ["models"],
        "config": ["config"],
        **{
            f"{provider} bad-key": ["complete", "secret-fault-bad-key", "--no-stream", "-m", PROVIDERS[provider][1]]
            # a key from the environment, one the SDK sends in its own header, one from the file
            for provider in ("anthropic", "gemini", "corp")
        },
        "stream error event": ["complete", "secret-fault-error-event-mid", "-m", PROVIDERS["mistral"][1]],
        "bad request": ["complete", "secret-fault-bad-request", "--no-stream", "-m", PROVIDERS["ollama"][1]],
    }
    # Started together: each is a fresh interpreter, and they need not wait for one another.
    running = {
        name: subprocess.Popen(
            [FMCLIENT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
        )
        for name, args in commands.items()
    }
    results = {name: process.communicate(timeout=120) for name, process in running.items()}
    codes = {name: process.returncode for name, process in running.items()}

    found = [f"{name}: {names}" for name, (out, err) in results.items() if (names := leaks(out + err))]
    assert found == []
    # Each command did what it should, so the check above looked at real output.
    assert codes["stream"] == 0 and results["stream"][0] == "canary free text\n"
    assert codes["json"] == 0 and json.loads(results["json"][0])["text"] == "canary free text"
    assert codes["embed"] == 0 and len(results["embed"][0].splitlines()) == 2
    assert codes["models"] == 0 and "ready" in results["models"][0]
    assert codes["config"] == 0 and 'api_key = "**********"' in results["config"][0]
    for name in commands:
        if "bad-key" in name or name in ("stream error event", "bad request"):
            _, err = results[name]
            assert codes[name] == 1 and "Traceback" not in err, (name, err)
            assert "Error" in err, (name, err)
    assert "AuthenticationError" in results["corp bad-key"][1] and "**********" in results["corp bad-key"][1]


def test_botocore_log_filter_redacts_a_bedrock_api_key_and_signature() -> None:
    from fmclient.providers.bedrock import install_botocore_log_redaction

    install_botocore_log_redaction()
    handler = RecordAll()
    logger = logging.getLogger("botocore.endpoint")
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    token = "ABSKQmVkcm9ja0FQSUtleS1CanaryToken0123456789"
    try:
        logger.debug(
            "Sending http request: %s",
            {"headers": {"Authorization": f"Bearer {token}", "X-Amz-Security-Token": b"IQoJTokenCanary0123456789"}},
        )
        logger.debug("Signed: AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=%s", "ab" * 32)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
    text = "\n".join(line for _, line in handler.lines)
    assert token[:10] not in text and "TokenCanary" not in text and "ab" * 32 not in text
    assert text.count("**********") == 3


# -- credentials the SDKs read themselves are redacted too ------------------------------------------
TOKEN = "Canary-Zq8Rm3Kv7Xw2-sdk-read"


def anthropic_echo(said: str) -> Any:
    return {"type": "error", "error": {"type": "permission_error", "message": said}}


def bedrock_echo(said: str) -> Any:
    return {"message": said}


def ollama_echo(said: str) -> Any:
    return {"error": said}


# name -> (model, provider settings without a key, the header the credential travels in, error body)
SDK_READ: dict[str, tuple[str, dict[str, Any], str, Any]] = {
    "ANTHROPIC_AUTH_TOKEN": ("anthropic/claude-sonnet-4-6", {"base_url": "{url}"}, "authorization", anthropic_echo),
    "OLLAMA_API_KEY": ("ollama/llama3.2", {"base_url": "{url}"}, "authorization", ollama_echo),
    # Not from the environment at all: a session token in the AWS credentials file.
    "aws profile file": (
        "bedrock/anthropic.claude-sonnet-4-6",
        {"endpoint_url": "{url}", "region": "us-east-1", "profile": "work"},
        "x-amz-security-token",
        bedrock_echo,
    ),
}


@pytest.mark.parametrize("source", sorted(SDK_READ))
def test_a_credential_the_sdk_reads_itself_is_never_echoed(
    source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, table, header, body = SDK_READ[source]

    def echo(request: RecordedRequest) -> Reply:
        # A gateway that quotes the credential it was given in its error.
        said = f"credential {request.headers.get(header, '')!r} is not valid here"
        return Reply(status=403, body=body(said), headers={"x-amzn-ErrorType": "AccessDeniedException"})

    if source.isupper():
        monkeypatch.setenv(source, TOKEN)
    else:
        for var in [v for v in os.environ if v.startswith("AWS_")]:
            monkeypatch.delenv(var)
        credentials = tmp_path / "aws-credentials"
        credentials.write_text(
            f"[work]\naws_access_key_id = AKIAWORKEXAMPLE\naws_secret_access_key = secret-{TOKEN}\n"
            f"aws_session_token = {TOKEN}\n"
        )
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    provider = model.partition("/")[0]
    texts: list[str] = []
    with FakeServer(handler=echo) as server:
        settings = {k: v.format(url=server.url) for k, v in table.items()}
        with caplog.at_level(logging.DEBUG), Client(providers={provider: settings}, max_retries=0) as client:
            with pytest.raises(FMClientError) as caught:
                client.complete("hi", model=model, max_tokens=5)
            error = caught.value
            texts += [str(error), repr(error), *traceback.format_exception(error)]
            output = tmp_path / "out.jsonl"
            result = client.batch(["one", "two"], model=model, output=output)
            texts += [output.read_text(), repr(result.items), str(result.summary())]
        texts += [record.getMessage() for record in caplog.records]
        sent = [r.headers.get(header, "") for r in server.requests]
    assert len(sent) == 3 and all(TOKEN in value for value in sent)  # the SDK sent it; the gateway echoed it
    assert "is not valid here" in str(error) and "**********" in str(error)
    items = [line for line in output.read_text().splitlines() if '"fmclient_batch"' not in line]  # not the header
    assert len(items) == 2 and result.failed == 2
    assert [text for text in texts if TOKEN[:WINDOW] in text] == []


def test_two_ollama_keys_are_two_cache_identities(monkeypatch: pytest.MonkeyPatch) -> None:
    # The ollama SDK sends $OLLAMA_API_KEY itself: two tenants of a hosted Ollama with different
    # keys must not share cached answers (sibling of the redaction fix above).
    from fmclient.cache import provider_identity
    from fmclient.providers.base import ProviderSettings

    settings = ProviderSettings(name="ollama", type="ollama", base_url="https://ollama.example")
    monkeypatch.setenv("OLLAMA_API_KEY", "tenant-one-key-123456")
    first = provider_identity(settings)
    monkeypatch.setenv("OLLAMA_API_KEY", "tenant-two-key-123456")
    second = provider_identity(settings)
    assert first is not None and second is not None and first != second
    assert "tenant" not in first + second
